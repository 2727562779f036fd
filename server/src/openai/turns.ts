/**
 * A checked chat request's messages as the engine's stateless ask: the earlier turns
 * (`AskRequest.history`) and the turn to answer (the last user message, or the last run of tool
 * results). Leading system/developer messages merge into one system turn, which also describes
 * the offered tools; images come from data URIs only. Deterministic: the same messages give the
 * same turns, so the engine recognises a conversation that a later request extends.
 */
import type { ToolFormat } from '../agent/types';
import type { HistoryMessage, ImageInput } from '../runtime/types';
import { fromDataUri } from './dataUri';
import { assistantCallText, toolResultsTurn, toolsSystemText } from './toolText';
import { HttpError, type ContentPart, type WireMessage, type WireTool } from './wire';

export interface EngineTurns {
  history: HistoryMessage[];
  turn: { role: 'user' | 'tool'; text: string; images: ImageInput[] };
}

const bad = (message: string) => new HttpError(400, message, 'invalid_request_error', 'invalid_value');

function textOf(content: string | ContentPart[] | null | undefined): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content
    .filter((p): p is Extract<ContentPart, { type: 'text' }> => p.type === 'text')
    .map((p) => p.text)
    .join('\n');
}

function imagesOf(content: string | ContentPart[] | null | undefined, field: string): ImageInput[] {
  if (!Array.isArray(content)) return [];
  const out: ImageInput[] = [];
  content.forEach((p, i) => {
    if (p.type !== 'image_url') return;
    const r = fromDataUri(p.image_url.url, `${field}[${i}].image_url.url`);
    if ('error' in r) throw bad(r.error);
    out.push(r);
  });
  return out;
}

/** Throws `HttpError(400)` for a conversation the engine cannot answer (e.g. ending with an assistant message). */
export function toEngineTurns(messages: WireMessage[], tools: WireTool[], format: ToolFormat): EngineTurns {
  let i = 0;
  const system: string[] = [];
  for (; i < messages.length && (messages[i].role === 'system' || messages[i].role === 'developer'); i++) system.push(textOf(messages[i].content));
  const turns: HistoryMessage[] = [];
  const systemText = tools.length ? toolsSystemText(tools, format, system.join('\n\n') || undefined) : system.length ? system.join('\n\n') : undefined;
  if (systemText !== undefined) turns.push({ role: 'system', text: systemText, images: [] });

  const question = textOf(messages.find((m) => m.role === 'user')?.content);
  const callNames = new Map<string, string>(); // tool_call_id -> function name
  while (i < messages.length) {
    const m = messages[i];
    const field = `messages[${i}].content`;
    if (m.role === 'tool') {
      const results: Array<{ name: string; content: string }> = [];
      for (; i < messages.length && messages[i].role === 'tool'; i++) {
        const t = messages[i];
        results.push({ name: callNames.get(t.tool_call_id ?? '') ?? t.name ?? 'tool', content: textOf(t.content) });
      }
      const obs = toolResultsTurn(results, format, question);
      turns.push({ role: obs.role, text: obs.text, images: [] });
      continue;
    }
    if (m.role === 'assistant') {
      for (const c of m.tool_calls ?? []) callNames.set(c.id, c.function.name);
      const text = m.tool_calls?.length ? assistantCallText(textOf(m.content), m.tool_calls, format) : textOf(m.content);
      turns.push({ role: 'assistant', text, images: [] });
    } else {
      turns.push({ role: m.role === 'developer' ? 'system' : m.role, text: textOf(m.content), images: imagesOf(m.content, field) });
    }
    i++;
  }
  const last = turns.pop();
  if (!last || (last.role !== 'user' && last.role !== 'tool')) {
    throw bad('the last message must be from the user (or tool results): this server answers the next assistant turn and does not continue an assistant message.');
  }
  return { history: turns, turn: { role: last.role, text: last.text, images: last.images } };
}
