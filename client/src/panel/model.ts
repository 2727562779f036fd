/**
 * The panel's conversation as data, and the one reducer both sides apply: the host updates its
 * copy and posts the same message; the webview applies it to its copy, renders, and persists it
 * with `setState`. Pure (no DOM, no 'vscode'); the webview bundle imports it.
 */
import type { AgentStepParams, AskResult } from '../../../common/protocol';
import type { HostMessage, PanelState, StepView, TimingsView, TurnView } from './messages';

/** Returns the state after `msg` (a new object; turns that did not change are shared). */
export function applyHostMessage(state: PanelState, msg: HostMessage): PanelState {
  switch (msg.type) {
    case 'reset':
      return msg.state;
    case 'turnStart':
      return { ...state, turns: [...state.turns, msg.turn] };
    case 'delta':
      return updateTurn(state, msg.turnId, (t) => ({ ...t, answer: t.answer + msg.text }));
    case 'step':
      return updateTurn(state, msg.turnId, (t) => ({ ...t, steps: [...t.steps.filter((s) => s.index !== msg.step.index), msg.step].sort((a, b) => a.index - b.index) }));
    case 'turnEnd':
      return updateTurn(state, msg.turnId, (t) => {
        const next: TurnView = { ...t, state: msg.state, answer: msg.answer };
        if (msg.timings) next.timings = msg.timings;
        if (msg.note !== undefined) next.note = msg.note;
        return next;
      });
    case 'pending':
      return { ...state, pending: msg.images };
    case 'statusLine':
      return { ...state, statusLine: msg.text };
    case 'focusInput':
      return state;
  }
}

function updateTurn(state: PanelState, id: string, f: (t: TurnView) => TurnView): PanelState {
  const i = state.turns.findIndex((t) => t.id === id);
  if (i < 0) return state;
  const turns = state.turns.slice();
  turns[i] = f(turns[i]);
  return { ...state, turns };
}

/** True while the latest turn is still answering (follow-ups wait for its conversation id). */
export function isStreaming(state: PanelState): boolean {
  return state.turns.some((t) => t.state === 'streaming');
}

/**
 * State restored after a window reload: answers that were streaming are over (the daemon that
 * produced them is gone), and nothing waits on the daemon any more.
 */
export function restoredState(state: PanelState): PanelState {
  return {
    ...state,
    statusLine: '',
    turns: state.turns.map((t) =>
      t.state === 'streaming' ? { ...t, state: 'cancelled', note: 'Interrupted by a window reload; ask again to get the full answer.' } : t,
    ),
  };
}

const MAX_ARGS_CHARS = 4000;
const MAX_OBSERVATION_CHARS = 8000;

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}… (${s.length - max} more characters)` : s;
}

function isBox(v: unknown): v is [number, number, number, number] {
  return Array.isArray(v) && v.length === 4 && v.every((n) => typeof n === 'number' && Number.isFinite(n));
}

/** Which image a tool call was about: an integer `image` / `imageIndex` / `image_index` argument, else 0. */
function imageIndexOf(args: unknown): number {
  if (typeof args !== 'object' || args === null) return 0;
  const a = args as Record<string, unknown>;
  for (const key of ['image', 'imageIndex', 'image_index']) {
    const v = a[key];
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  }
  return 0;
}

/** A `lens/agentStep` notification as a card: arguments pretty-printed, boxes clamped to 0..1, malformed artefacts dropped. */
export function stepView(p: AgentStepParams): StepView {
  const view: StepView = { index: p.index, ms: p.ms, imageIndex: imageIndexOf(p.args), boxes: [], images: [] };
  if (p.thought) view.thought = p.thought;
  if (p.tool) view.tool = p.tool;
  if (p.args !== undefined) {
    let text: string;
    try {
      text = typeof p.args === 'string' ? p.args : JSON.stringify(p.args, null, 2);
    } catch {
      text = String(p.args);
    }
    view.args = cut(text, MAX_ARGS_CHARS);
  }
  if (p.observation) view.observation = cut(p.observation, MAX_OBSERVATION_CHARS);
  if (p.error) view.error = p.error;
  for (const a of p.artefacts ?? []) {
    if (a.kind === 'boxes' && Array.isArray(a.boxes)) {
      for (const b of a.boxes) {
        if (!b || !isBox(b.box)) continue;
        const c = b.box.map((n) => Math.min(1, Math.max(0, n))) as [number, number, number, number];
        const [x0, y0, x1, y1] = [Math.min(c[0], c[2]), Math.min(c[1], c[3]), Math.max(c[0], c[2]), Math.max(c[1], c[3])];
        const box: StepView['boxes'][number] = { box: [x0, y0, x1, y1] };
        if (typeof b.label === 'string') box.label = b.label.slice(0, 200);
        if (typeof b.score === 'number' && Number.isFinite(b.score)) box.score = b.score;
        view.boxes.push(box);
      }
    } else if (a.kind === 'image' && /^image\/(png|jpeg|gif|webp|bmp)$/.test(a.mimeType) && /^[A-Za-z0-9+/]+=*$/.test(a.base64)) {
      view.images.push(a.caption === undefined ? { kind: 'image', mimeType: a.mimeType, base64: a.base64 } : { kind: 'image', mimeType: a.mimeType, base64: a.base64, caption: a.caption });
    }
  }
  return view;
}

export function timingsView(r: AskResult): TimingsView {
  return {
    firstTokenMs: r.timings.firstTokenMs,
    tokensPerSec: r.timings.decodeTokensPerSec,
    newTokens: r.timings.newTokens,
    totalMs: r.timings.totalMs,
    device: r.device,
    model: r.model,
  };
}

/** The quiet footer under an answer: "first token 0.42 s · 31.5 tokens/s · 120 tokens · cpu". */
export function timingsLine(t: TimingsView): string {
  const parts = [
    `first token ${(t.firstTokenMs / 1000).toFixed(2)} s`,
    `${t.tokensPerSec.toFixed(1)} tokens/s`,
    `${t.newTokens} tokens in ${(t.totalMs / 1000).toFixed(1)} s`,
  ];
  if (t.device) parts.push(t.device);
  return parts.join(' · ');
}
