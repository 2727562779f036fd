/**
 * The text the loop writes for the model, per family: the tool list for models without tool
 * training, and the observation turn that carries tool results back.
 *
 * LLaVA-Plus (lmm-runtime.md §5): the result is a new user turn
 *   "{tool} model outputs: {json}\n\nPlease summarize the model outputs and answer my first question: {question}".
 * ChatML: a `tool` turn holding the JSON result. JSON: a user turn listing the results.
 */
import type { ToolRegistry } from '../tools/registry';
import type { ToolFormat } from './types';

/** One tool call's outcome as the model sees it. */
export interface Observation {
  tool: string;
  /** The tool's summary (compact JSON, `{"error": …}` on failure). */
  summary: string;
}

/** A system prompt that teaches the tools and the family's call format to a model without tool training. */
export function toolSystemPrompt(registry: Pick<ToolRegistry, 'describe'>, format: ToolFormat): string {
  const tools = registry.describe();
  if (format === 'chatml') {
    const sigs = tools.map((t) => JSON.stringify({ type: 'function', function: { name: t.name, description: t.description, parameters: t.schema } }));
    return [
      'You are a helpful assistant that answers questions about images.',
      '',
      '# Tools',
      '',
      'You may call one or more functions to look at the image more closely. The function signatures are within <tools></tools> XML tags:',
      '<tools>',
      ...sigs,
      '</tools>',
      '',
      'For each function call, return a JSON object with the function name and arguments within <tool_call></tool_call> XML tags:',
      '<tool_call>',
      '{"name": <function-name>, "arguments": <args-json-object>}',
      '</tool_call>',
      'The results come back in a tool message. When you can answer, answer without a tool call.',
    ].join('\n');
  }
  const list = tools.map((t) => `- ${t.name}: ${t.description}\n  arguments (JSON schema): ${JSON.stringify(t.schema)}`).join('\n');
  if (format === 'llava-plus') {
    return [
      'You answer questions about images and can call tools to look at the image more closely. Tools:',
      list,
      '',
      'Always answer in this format:',
      '"thoughts🤔" why a tool is needed, or why not',
      '"actions🚀" [{"API_name": "<tool>", "API_params": {<arguments>}}]  (write [] when no tool is needed)',
      '"value👉" your answer for the user',
      'After a tool runs you receive "<tool> model outputs: ..."; then call another tool or give the answer with "actions🚀" [].',
    ].join('\n');
  }
  return [
    'You answer questions about images and can call tools to look at the image more closely. Tools:',
    list,
    '',
    'To call a tool, reply with only a JSON object: {"tool": "<name>", "args": {<arguments>}}',
    'You then receive the tool results and may call another tool. When you can answer, reply with the answer in plain text.',
  ].join('\n');
}

/**
 * The observation turn after tool calls (`results`) and/or unparseable actions (`parseErrors`).
 * Returns the role and text; the loop adds images.
 */
export function observationTurn(format: ToolFormat, question: string, results: Observation[], parseErrors: string[]): { role: 'user' | 'tool'; text: string } {
  const parseNote = parseErrors.length ? `could not parse ${parseErrors.length > 1 ? 'parts of your answer' : 'your answer'}: ${parseErrors.join('; ')}` : '';
  if (format === 'llava-plus') {
    const lines = results.map((r) => `${r.tool} model outputs: ${r.summary}`);
    if (parseNote) lines.push(`${parseNote}. Write the actions as "actions🚀" [{"API_name": "<tool>", "API_params": {...}}].`);
    return { role: 'user', text: `${lines.join('\n')}\n\nPlease summarize the model outputs and answer my first question: ${question}` };
  }
  if (format === 'chatml') {
    const parts = results.map((r) => (results.length === 1 && !parseNote ? r.summary : JSON.stringify({ name: r.tool, content: safeJson(r.summary) })));
    if (parseNote) parts.push(JSON.stringify({ error: `${parseNote}. Write each call as <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>.` }));
    return { role: 'tool', text: parts.join('\n') };
  }
  const lines = results.map((r) => `${r.tool} result: ${r.summary}`);
  if (parseNote) lines.push(`${parseNote}. Call a tool with only a JSON object {"tool": "<name>", "args": {...}}.`);
  return { role: 'user', text: `Tool results:\n${lines.join('\n')}\n\nCall another tool, or answer my first question: ${question}` };
}

/** A summary back as a value when it is JSON (so it nests as an object, not an escaped string). */
function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}
