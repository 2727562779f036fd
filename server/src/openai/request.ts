/**
 * Checks a `POST /v1/chat/completions` body where it enters the daemon. Every problem is an
 * `HttpError(400)` naming the field; OpenAI parameters this daemon cannot honour (n > 1,
 * logprobs, JSON mode, presence/frequency penalties, forced tool choice) are refused, never
 * silently ignored. Unknown fields are ignored, as OpenAI-compatible servers do.
 */
import { HttpError, type ChatRequest, type ContentPart, type WireMessage, type WireTool, type WireToolCall } from './wire';

export interface ParsedChat {
  model?: string;
  messages: WireMessage[];
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with `usage`. */
  includeUsage: boolean;
  /** `max_completion_tokens`, else `max_tokens`, when sent. */
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  /** 0..2^32-1 (other integers are taken modulo 2^32). */
  seed?: number;
  stop: string[];
  /** The tools offered to the model (empty without tools or with `tool_choice: "none"`). */
  tools: WireTool[];
  parallelToolCalls: boolean;
}

const bad = (message: string, code = 'invalid_value') => new HttpError(400, message, 'invalid_request_error', code);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'] as const;

function num(body: Record<string, unknown>, key: string, ok: (n: number) => boolean, rule: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw bad(`"${key}" must be ${rule}; got ${JSON.stringify(v)}.`);
  return v;
}

function parts(content: unknown, field: string, imagesAllowed: boolean): ContentPart[] | string | null {
  if (content === null || content === undefined) return null;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw bad(`${field} must be a string or a list of content parts.`);
  return content.map((p, i): ContentPart => {
    const f = `${field}[${i}]`;
    if (!isObject(p)) throw bad(`${f} must be an object like {"type": "text", "text": "..."}.`);
    if (p.type === 'text') {
      if (typeof p.text !== 'string') throw bad(`${f}.text must be a string.`);
      return { type: 'text', text: p.text };
    }
    if (p.type === 'image_url') {
      if (!imagesAllowed) throw bad(`${f}: images are not accepted in this message's role.`);
      const iu = p.image_url;
      const url = typeof iu === 'string' ? iu : isObject(iu) && typeof iu.url === 'string' ? iu.url : undefined;
      if (url === undefined) throw bad(`${f}.image_url must be {"url": "data:image/png;base64,..."}.`);
      return { type: 'image_url', image_url: { url } };
    }
    throw bad(`${f}: content parts of type ${JSON.stringify(p.type)} are not supported; use "text" and "image_url".`);
  });
}

function toolCalls(v: unknown, field: string): WireToolCall[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw bad(`${field} must be a list.`);
  return v.map((c, i) => {
    const f = `${field}[${i}]`;
    if (!isObject(c) || !isObject(c.function) || typeof c.function.name !== 'string') throw bad(`${f} must be {"id", "type": "function", "function": {"name", "arguments"}}.`);
    const args = c.function.arguments;
    if (args !== undefined && typeof args !== 'string') throw bad(`${f}.function.arguments must be a JSON string.`);
    return { id: typeof c.id === 'string' ? c.id : `call_${i}`, type: 'function', function: { name: c.function.name, arguments: args ?? '{}' } };
  });
}

function message(v: unknown, i: number): WireMessage {
  const f = `messages[${i}]`;
  if (!isObject(v)) throw bad(`${f} must be an object with "role" and "content".`);
  const role = v.role;
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw bad(`${f}.role must be one of ${ROLES.join(', ')}; got ${JSON.stringify(role)}.`);
  const m: WireMessage = { role: role as WireMessage['role'] };
  const content = parts(v.content, `${f}.content`, role === 'user');
  if (content !== null) m.content = content;
  if (role === 'assistant') {
    const calls = toolCalls(v.tool_calls, `${f}.tool_calls`);
    if (calls?.length) m.tool_calls = calls;
  } else if (content === null) throw bad(`${f}.content is required for a ${role} message.`);
  if (role === 'tool') {
    if (typeof v.tool_call_id !== 'string') throw bad(`${f}.tool_call_id must name the call this result answers.`);
    m.tool_call_id = v.tool_call_id;
  }
  if (typeof v.name === 'string') m.name = v.name;
  return m;
}

function tools(v: unknown): WireTool[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad('"tools" must be a list of {"type": "function", "function": {...}}.');
  return v.map((t, i) => {
    const f = `tools[${i}]`;
    if (!isObject(t) || t.type !== 'function' || !isObject(t.function)) throw bad(`${f} must be {"type": "function", "function": {"name", "description", "parameters"}}.`);
    const fn = t.function;
    if (typeof fn.name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(fn.name)) throw bad(`${f}.function.name must be 1-64 letters, digits, "_", "." or "-".`);
    if (fn.description !== undefined && typeof fn.description !== 'string') throw bad(`${f}.function.description must be a string.`);
    if (fn.parameters !== undefined && !isObject(fn.parameters)) throw bad(`${f}.function.parameters must be a JSON schema object.`);
    return { type: 'function', function: { name: fn.name, ...(fn.description !== undefined ? { description: fn.description as string } : {}), ...(fn.parameters !== undefined ? { parameters: fn.parameters as Record<string, unknown> } : {}) } };
  });
}

/** Checks the body; throws `HttpError(400)`. */
export function parseChatRequest(body: unknown): ParsedChat {
  if (!isObject(body)) throw bad('the body must be a JSON object (a chat completion request).');
  const b = body as Record<string, unknown> & Partial<ChatRequest>;
  if (b.model !== undefined && typeof b.model !== 'string') throw bad('"model" must be a string.');
  if (!Array.isArray(b.messages) || b.messages.length === 0) throw bad('"messages" must be a non-empty list.');
  const messages = b.messages.map(message);

  const refuse = (what: string, why: string) => {
    throw bad(`${what} is not supported by this server (${why}).`, 'unsupported_parameter');
  };
  if (b.n !== undefined && b.n !== null && b.n !== 1) refuse('"n" other than 1', 'it generates one answer per request');
  if (b.logprobs === true || (b.top_logprobs !== undefined && b.top_logprobs !== null)) refuse('"logprobs"', 'it does not return token probabilities');
  if (isObject(b.response_format) && b.response_format.type !== 'text') refuse(`"response_format" ${JSON.stringify(b.response_format.type)}`, 'it has no constrained JSON output; ask for JSON in the prompt');
  for (const k of ['presence_penalty', 'frequency_penalty'] as const) {
    if (b[k] !== undefined && b[k] !== null && b[k] !== 0) refuse(`"${k}"`, 'use "repetition_penalty"');
  }
  if (isObject(b.logit_bias) && Object.keys(b.logit_bias).length > 0) refuse('"logit_bias"', 'it does not bias tokens');

  const positiveInt = (n: number) => Number.isInteger(n) && n >= 1;
  const maxTokens = num(b, 'max_completion_tokens', positiveInt, 'a positive integer') ?? num(b, 'max_tokens', positiveInt, 'a positive integer');
  const temperature = num(b, 'temperature', (n) => n >= 0 && n <= 2, 'between 0 and 2');
  const topP = num(b, 'top_p', (n) => n > 0 && n <= 1, 'in (0, 1]');
  const topK = num(b, 'top_k', (n) => Number.isInteger(n) && n >= -1, 'an integer >= 0 (-1 or 0 = off)');
  const repetitionPenalty = num(b, 'repetition_penalty', (n) => n > 0, 'a number > 0 (1 = off)');
  const seed = num(b, 'seed', Number.isInteger, 'an integer');

  let stop: string[] = [];
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop)) {
    if (!b.stop.every((s) => typeof s === 'string') || b.stop.length > 16) throw bad('"stop" must be a string or a list of at most 16 strings.');
    stop = b.stop;
  } else if (b.stop !== undefined && b.stop !== null) throw bad('"stop" must be a string or a list of strings.');
  stop = stop.filter((s) => s !== '');

  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw bad('"stream" must be true or false.');
  const so = b.stream_options;
  if (so !== undefined && so !== null && (!isObject(so) || (so.include_usage !== undefined && typeof so.include_usage !== 'boolean'))) throw bad('"stream_options" must be {"include_usage": true|false}.');

  let offered = tools(b.tools);
  const choice = b.tool_choice;
  if (choice === 'none') offered = [];
  else if (choice !== undefined && choice !== null && choice !== 'auto') {
    refuse(`"tool_choice" ${JSON.stringify(choice)}`, 'a local model cannot be forced to call a tool; use "auto" and say in the prompt which tool to use');
  }
  if (b.parallel_tool_calls !== undefined && b.parallel_tool_calls !== null && typeof b.parallel_tool_calls !== 'boolean') throw bad('"parallel_tool_calls" must be true or false.');

  const out: ParsedChat = {
    messages,
    stream: b.stream === true,
    includeUsage: b.stream === true && isObject(so) && so.include_usage === true,
    stop,
    tools: offered,
    parallelToolCalls: b.parallel_tool_calls !== false,
  };
  if (b.model !== undefined) out.model = b.model;
  if (maxTokens !== undefined) out.maxTokens = maxTokens;
  if (temperature !== undefined) out.temperature = temperature;
  if (topP !== undefined) out.topP = topP;
  if (topK !== undefined) out.topK = Math.max(0, topK);
  if (repetitionPenalty !== undefined) out.repetitionPenalty = repetitionPenalty;
  if (seed !== undefined) out.seed = ((seed % 2 ** 32) + 2 ** 32) % 2 ** 32;
  return out;
}
