/**
 * OpenAI function tools for a local model, which knows tools only as text in its family's format
 * (agent/: LLaVA-Plus, ChatML `<tool_call>`, or plain JSON):
 *   - `tools` become a system prompt (agent/prompts.ts's, listing the client's functions);
 *   - an assistant message's `tool_calls` are written back as the model would have written them;
 *   - `tool` results become the format's observation turn;
 *   - the model's answer is parsed (agent/actions.ts) into `tool_calls`.
 */
import { randomUUID } from 'node:crypto';
import { parseActions } from '../agent/actions';
import { parseLooseJson } from '../agent/looseJson';
import { observationTurn, toolSystemPrompt } from '../agent/prompts';
import type { ToolFormat } from '../agent/types';
import type { WireTool, WireToolCall } from './wire';

/** The system text: the client's own (if any), then the tools in the model's format. */
export function toolsSystemText(tools: WireTool[], format: ToolFormat, clientSystem: string | undefined): string {
  const described = tools.map((t) => ({ name: t.function.name, description: t.function.description ?? '', schema: t.function.parameters ?? { type: 'object', properties: {} } }));
  const prompt = toolSystemPrompt({ describe: () => described }, format);
  return clientSystem ? `${clientSystem}\n\n${prompt}` : prompt;
}

function argsOf(call: WireToolCall): unknown {
  const r = parseLooseJson(call.function.arguments || '{}');
  return r.ok ? r.value : call.function.arguments;
}

/** An assistant turn that called tools, written as the model family writes calls. */
export function assistantCallText(content: string | null | undefined, calls: WireToolCall[], format: ToolFormat): string {
  const text = content?.trim() ?? '';
  if (format === 'llava-plus') {
    const actions = calls.map((c) => ({ API_name: c.function.name, API_params: argsOf(c) }));
    return `"thoughts🤔" ${text}\n"actions🚀" ${JSON.stringify(actions)}\n"value👉" `;
  }
  if (format === 'chatml') {
    const blocks = calls.map((c) => `<tool_call>\n${JSON.stringify({ name: c.function.name, arguments: argsOf(c) })}\n</tool_call>`);
    return [...(text ? [text] : []), ...blocks].join('\n');
  }
  const list = calls.map((c) => ({ tool: c.function.name, args: argsOf(c) }));
  return JSON.stringify(list.length === 1 ? list[0] : list);
}

/** Tool results (consecutive `tool` messages) as the format's observation turn. */
export function toolResultsTurn(results: Array<{ name: string; content: string }>, format: ToolFormat, question: string): { role: 'user' | 'tool'; text: string } {
  return observationTurn(format, question, results.map((r) => ({ tool: r.name, summary: r.content })), []);
}

/**
 * The tool calls in a model's answer, for the tools the request offered (calls to other names
 * stay text). `content` is the text for the user: the LLaVA-Plus "value", the text around ChatML
 * calls, or the whole answer; null when the answer is only calls.
 */
export function extractToolCalls(text: string, tools: WireTool[], parallel: boolean): { content: string | null; calls: WireToolCall[] } {
  const parsed = parseActions(text);
  const known = parsed.actions.filter((a) => tools.some((t) => t.function.name === a.tool));
  const calls = (parallel ? known : known.slice(0, 1)).map(
    (a): WireToolCall => ({ id: `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`, type: 'function', function: { name: a.tool, arguments: JSON.stringify(a.args) } }),
  );
  if (calls.length === 0) {
    const answer = parsed.value ?? (parsed.form === 'text' ? text.trim() : (parsed.thought ?? text.trim()));
    return { content: answer, calls };
  }
  const words = parsed.thought ?? parsed.value;
  return { content: words ? words : null, calls };
}
