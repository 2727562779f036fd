/**
 * Tool calls in a model's answer, in the three forms we meet:
 *
 *  - LLaVA-Plus (lmm-runtime.md §5):
 *      "thoughts🤔" … "actions🚀" [{"API_name": "ocr", "API_params": {}}] "value👉" …
 *    Real checkpoints drop or move the quotes, put spaces before the emoji, or write `actions:`
 *    without it; all of that is accepted.
 *  - ChatML: `<tool_call>{"name": "ocr", "arguments": {…}}</tool_call>`, any number of them; the
 *    closing tag may be missing when it was a stop string.
 *  - Plain JSON alone in the answer: `{"tool": …, "args": …}`, `{"name": …, "arguments": …}`, or a
 *    list of those (a ```json fence around it is fine).
 *
 * `parseActions` never throws: anything malformed or cut off ends up in `errors`, which the loop
 * shows the model as "could not parse …". Whichever form appears is parsed, whatever the model
 * family, since models drift between them.
 */
import { parseLooseJson } from './looseJson';

export interface Action {
  tool: string;
  /** The arguments object as written (the tool's `parseArgs` checks it). */
  args: Record<string, unknown>;
}

export type ActionForm = 'llava-plus' | 'chatml' | 'json' | 'text';

export interface ParsedReply {
  /** Why the model wants a tool (LLaVA-Plus "thoughts", or ChatML text before the first call). */
  thought?: string;
  actions: Action[];
  /** The text for the user (LLaVA-Plus "value"; the whole answer when it carries no tool form). */
  value?: string;
  /** One message per problem, worded for the model. Empty when everything parsed. */
  errors: string[];
  form: ActionForm;
  /** The answer stopped inside a tool call (a cut-off stream or a token limit). */
  partial: boolean;
}

// --- LLaVA-Plus ----------------------------------------------------------------------------

type Section = 'thought' | 'actions' | 'value';
const EMOJI: Record<Section, string> = { thought: '🤔', actions: '🚀', value: '👉' };
const WORD: Record<Section, string> = { thought: 'thoughts?', actions: 'actions?', value: 'values?' };

/** Word then emoji ("thoughts🤔", `"actions 🚀":`), or the emoji alone, quotes anywhere. */
const markerRe = (s: Section) => new RegExp(`["'“”]?[ \\t]*(?:${WORD[s]})?[ \\t]*["'“”]?[ \\t]*${EMOJI[s]}\\uFE0F?[ \\t]*["'“”]?[ \\t]*:?`, 'giu');
/**
 * The word without the emoji at a line start, followed by a colon (`actions: [...]`). Counted only
 * next to an emoji marker, or for actions directly followed by a list, so that a plain answer
 * with a line "Actions: click Save" stays a plain answer.
 */
const bareMarkerRe = (s: Section) => new RegExp(`(?:^|\\n)[ \\t]*["']?(?:${WORD[s]})["']?[ \\t]*:${s === 'actions' ? '(?=\\s*\\[)' : ''}`, 'gi');

interface Marker {
  section: Section;
  start: number;
  end: number;
}

/** Every marker occurrence, in text order. */
function findMarkers(text: string): Marker[] {
  const all: Marker[] = [];
  const collect = (re: RegExp, section: Section) => {
    for (const m of text.matchAll(re)) all.push({ section, start: m.index, end: m.index + m[0].length });
  };
  const sections: Section[] = ['thought', 'actions', 'value'];
  for (const s of sections) collect(markerRe(s), s);
  const withEmoji = all.length > 0;
  for (const s of sections) if (!all.some((m) => m.section === s)) collect(bareMarkerRe(s), s);
  if (!withEmoji && !all.some((m) => m.section === 'actions')) return [];
  all.sort((a, b) => a.start - b.start);
  return all.filter((m, k) => k === 0 || m.start >= all[k - 1].end);
}

function parseLlavaPlus(text: string, markers: Marker[]): ParsedReply {
  const out: ParsedReply = { actions: [], errors: [], form: 'llava-plus', partial: false };
  // The first section of each kind counts; it runs to the next marker of any kind (a model that
  // goes on to invent the next turn repeats the markers).
  const seen = new Set<Section>();
  markers.forEach((m, k) => {
    if (seen.has(m.section)) return;
    seen.add(m.section);
    const last = k + 1 === markers.length;
    const body = text.slice(m.end, last ? text.length : markers[k + 1].start);
    if (m.section === 'thought') out.thought = clean(body);
    else if (m.section === 'value') out.value = clean(body);
    else readActionList(body, last, out);
  });
  if (out.thought === '') delete out.thought;
  return out;
}

/** Reads the "actions🚀" section: a JSON list (or one object); `last` = nothing follows it in the answer. */
function readActionList(body: string, last: boolean, out: ParsedReply): void {
  const start = body.search(/[[{]/);
  if (start < 0) {
    if (body.trim() === '') {
      if (last) {
        out.partial = true;
        out.errors.push('the answer ends right after "actions🚀" with no action list (cut off?)');
      }
      return;
    }
    out.errors.push(`the actions ${quote(body)} are not a JSON list like [{"API_name": "ocr", "API_params": {}}]`);
    return;
  }
  const r = parseLooseJson(body, start);
  if (!r.ok) {
    if (r.incomplete) {
      out.partial = true;
      out.errors.push(`the actions list is cut off: ${quote(body.slice(start))}`);
    } else {
      out.errors.push(`the actions ${quote(body.slice(start))} are not valid JSON: ${r.error}`);
    }
    return;
  }
  const list = Array.isArray(r.value) ? r.value : [r.value];
  list.forEach((item, n) => addAction(item, `action ${n + 1}`, out));
}

// --- ChatML ----------------------------------------------------------------------------------

const TOOL_CALL_RE = /<tool_call>([\s\S]*?)(<\/tool_call>|(?=<tool_call>)|$)/g;

function parseChatml(text: string): ParsedReply {
  const out: ParsedReply = { actions: [], errors: [], form: 'chatml', partial: false };
  const first = text.indexOf('<tool_call>');
  const before = clean(text.slice(0, first));
  let lastEnd = first;
  let n = 0;
  for (const m of text.matchAll(TOOL_CALL_RE)) {
    n++;
    lastEnd = m.index + m[0].length;
    const body = m[1];
    const closed = m[2] === '</tool_call>';
    const start = body.search(/\S/);
    if (start < 0) {
      if (closed) out.errors.push(`tool call ${n} is empty`);
      else {
        out.partial = true;
        out.errors.push(`tool call ${n} is cut off (nothing after <tool_call>)`);
      }
      continue;
    }
    const r = parseLooseJson(body, start);
    if (!r.ok) {
      if (r.incomplete && !closed) out.partial = true;
      out.errors.push(r.incomplete && !closed ? `tool call ${n} is cut off: ${quote(body.trim())}` : `tool call ${n} ${quote(body.trim())} is not valid JSON: ${r.error}`);
      continue;
    }
    addAction(r.value, `tool call ${n}`, out);
  }
  const after = clean(text.slice(lastEnd).replace(/<\/?tool_call>/g, ''));
  if (before) out.thought = before;
  if (after) out.value = after;
  return out;
}

// --- plain JSON ------------------------------------------------------------------------------

function parseJsonAlone(text: string): ParsedReply | undefined {
  let t = text.trim();
  const fence = /^```(?:json)?\s*\n?([\s\S]*?)(?:\n?```\s*)?$/i.exec(t);
  if (fence) t = fence[1].trim();
  if (!/^[[{]/.test(t)) return undefined;
  const r = parseLooseJson(t);
  if (!r.ok) {
    // Only call it a cut-off tool call when it starts like one.
    if (r.incomplete && /^\[?\s*\{\s*["']?(tool|name|API_name|function)["']?\s*:/i.test(t)) {
      return { actions: [], errors: [`the tool call is cut off: ${quote(t)}`], form: 'json', partial: true };
    }
    return undefined;
  }
  if (t.slice(r.end).trim() !== '') return undefined;
  const list = Array.isArray(r.value) ? r.value : [r.value];
  if (!list.length || !list.every((x) => isObject(x) && nameOf(x) !== undefined)) return undefined; // JSON, but not a tool call: an answer
  const out: ParsedReply = { actions: [], errors: [], form: 'json', partial: false };
  list.forEach((item, n) => addAction(item, list.length > 1 ? `tool call ${n + 1}` : 'the tool call', out));
  return out;
}

// --- shared ----------------------------------------------------------------------------------

const NAME_KEYS = ['API_name', 'api_name', 'name', 'tool', 'tool_name', 'function'];
const ARG_KEYS = ['API_params', 'api_params', 'arguments', 'args', 'parameters', 'params', 'input'];

function nameOf(o: Record<string, unknown>): string | undefined {
  for (const k of NAME_KEYS) {
    const v = o[k];
    if (typeof v === 'string') return v;
    if (k === 'function' && isObject(v) && typeof v.name === 'string') return v.name; // OpenAI {"function": {"name", "arguments"}}
  }
  return undefined;
}

function addAction(item: unknown, where: string, out: ParsedReply): void {
  if (!isObject(item)) {
    out.errors.push(`${where} is ${JSON.stringify(item)}, not an object like {"API_name": "ocr", "API_params": {}}`);
    return;
  }
  const src = isObject(item.function) && typeof item.function.name === 'string' ? item.function : item;
  const name = nameOf(src);
  if (name === undefined || name.trim() === '') {
    out.errors.push(`${where} has no tool name: ${quote(JSON.stringify(item))}`);
    return;
  }
  let args: unknown = {};
  for (const k of ARG_KEYS) {
    if (src[k] !== undefined) {
      args = src[k];
      break;
    }
  }
  if (typeof args === 'string') {
    const r = args.trim() === '' ? { ok: true as const, value: {} } : parseLooseJson(args);
    if (!r.ok) {
      out.errors.push(`${where} (${name}): its arguments ${quote(args)} are not valid JSON: ${r.error}`);
      return;
    }
    args = r.value;
  }
  if (args === null) args = {};
  if (!isObject(args)) {
    out.errors.push(`${where} (${name}): arguments must be an object, got ${quote(JSON.stringify(args))}`);
    return;
  }
  out.actions.push({ tool: name.trim(), args });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Section text without surrounding whitespace and stray quotes left by the markers. */
const clean = (s: string) => s.trim().replace(/^["'“”]\s*/, '').replace(/\s*["'“”]$/, '').trim();

function quote(s: string, n = 80): string {
  const t = s.trim();
  return JSON.stringify(t.length > n ? `${t.slice(0, n)}…` : t);
}

/**
 * Parses a model answer. The LLaVA-Plus form wins when its markers are present, then ChatML
 * tool calls, then a JSON tool call alone; anything else is a plain answer (`value` = the text).
 */
export function parseActions(text: string): ParsedReply {
  const markers = findMarkers(text);
  if (markers.some((m) => m.section === 'actions') || (markers.length && !text.includes('<tool_call>'))) return parseLlavaPlus(text, markers);
  if (text.includes('<tool_call>')) return parseChatml(text);
  const json = parseJsonAlone(text);
  if (json) return json;
  const value = text.trim();
  return { actions: [], errors: [], form: 'text', partial: false, ...(value ? { value } : {}) };
}
