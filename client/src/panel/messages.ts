/**
 * Messages between the extension host and the panel's webview: ONE module, imported by both
 * sides (the webview bundle only takes types and the guards from here). Every message is a
 * member of a discriminated union on `type`; `isWebviewMessage` checks what the webview sends
 * before the host acts on it (the webview renders model output, so treat it as untrusted).
 */
import type { Artefact } from '../../../common/protocol';

export type AnswerState = 'streaming' | 'done' | 'cancelled' | 'error';

/** An image shown in the panel. `src` is the webview URI, filled in by the host on every send. */
export interface ImageView {
  /** Absolute file path (the source of truth; `src` is derived from it). */
  path: string;
  /** File name, for labels and alt text. */
  name: string;
  src?: string;
}

export type BoxesArtefact = Extract<Artefact, { kind: 'boxes' }>;
export type ImageArtefact = Extract<Artefact, { kind: 'image' }>;

/** One tool-loop step as the panel shows it (from `lens/agentStep`). */
export interface StepView {
  index: number;
  thought?: string;
  tool?: string;
  /** The arguments, pretty-printed JSON (cut to a few KB). */
  args?: string;
  observation?: string;
  error?: string;
  ms: number;
  /** Which of the turn's images boxes refer to (from the call's `image` argument; default 0). */
  imageIndex: number;
  boxes: BoxesArtefact['boxes'];
  images: ImageArtefact[];
}

export interface TimingsView {
  /** Time to first token, ms. */
  firstTokenMs: number;
  tokensPerSec: number;
  newTokens: number;
  totalMs: number;
  device: string;
  model: string;
}

export interface TurnView {
  id: string;
  /** True for the first turn of a conversation (a separator is drawn above it). */
  newConversation: boolean;
  images: ImageView[];
  question: string;
  answer: string;
  state: AnswerState;
  steps: StepView[];
  timings?: TimingsView;
  /** Why the answer failed or stopped early, shown under it. */
  note?: string;
}

/** The whole conversation: what the webview persists with `setState` and the host restores. */
export interface PanelState {
  version: 1;
  turns: TurnView[];
  /** Images pasted or dropped into the panel, waiting for the next question. */
  pending: ImageView[];
  /** A line about the daemon while a turn waits (starting, loading 45%); '' when nothing to say. */
  statusLine: string;
}

export const EMPTY_STATE: PanelState = { version: 1, turns: [], pending: [], statusLine: '' };

/** host -> webview */
export type HostMessage =
  | { type: 'reset'; state: PanelState }
  | { type: 'turnStart'; turn: TurnView }
  | { type: 'delta'; turnId: string; text: string }
  | { type: 'step'; turnId: string; step: StepView }
  | { type: 'turnEnd'; turnId: string; state: Exclude<AnswerState, 'streaming'>; answer: string; timings?: TimingsView; note?: string }
  | { type: 'pending'; images: ImageView[] }
  | { type: 'statusLine'; text: string }
  | { type: 'focusInput' };

/** webview -> host */
export type WebviewMessage =
  | { type: 'ready' }
  | { type: 'send'; text: string }
  | { type: 'stop' }
  | { type: 'copy'; turnId: string }
  | { type: 'insert'; turnId: string }
  | { type: 'openImage'; path: string }
  | { type: 'openLink'; href: string }
  | { type: 'attach'; name: string; mimeType: string; base64: string }
  | { type: 'attachUris'; uris: string[] }
  | { type: 'removePending'; index: number }
  | { type: 'newConversation' };

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const str = (v: unknown): v is string => typeof v === 'string';

/** Checks a message from the webview before the host acts on it. */
export function isWebviewMessage(v: unknown): v is WebviewMessage {
  if (!isObj(v) || !str(v.type)) return false;
  switch (v.type) {
    case 'ready':
    case 'stop':
    case 'newConversation':
      return true;
    case 'send':
      return str(v.text);
    case 'copy':
    case 'insert':
      return str(v.turnId);
    case 'openImage':
      return str(v.path);
    case 'openLink':
      return str(v.href);
    case 'attach':
      return str(v.name) && str(v.mimeType) && str(v.base64);
    case 'attachUris':
      return Array.isArray(v.uris) && v.uris.every(str);
    case 'removePending':
      return typeof v.index === 'number' && Number.isInteger(v.index);
    default:
      return false;
  }
}

function isImageView(v: unknown): v is ImageView {
  return isObj(v) && str(v.path) && str(v.name) && (v.src === undefined || str(v.src));
}

const STATES: readonly string[] = ['streaming', 'done', 'cancelled', 'error'];

function isStepView(v: unknown): v is StepView {
  return (
    isObj(v) &&
    typeof v.index === 'number' &&
    typeof v.ms === 'number' &&
    typeof v.imageIndex === 'number' &&
    Array.isArray(v.boxes) &&
    Array.isArray(v.images) &&
    ['thought', 'tool', 'args', 'observation', 'error'].every((k) => v[k] === undefined || str(v[k]))
  );
}

function isTurnView(v: unknown): v is TurnView {
  return (
    isObj(v) &&
    str(v.id) &&
    typeof v.newConversation === 'boolean' &&
    Array.isArray(v.images) &&
    v.images.every(isImageView) &&
    str(v.question) &&
    str(v.answer) &&
    str(v.state) &&
    STATES.includes(v.state) &&
    Array.isArray(v.steps) &&
    v.steps.every(isStepView) &&
    (v.note === undefined || str(v.note))
  );
}

/** Checks persisted state (from `setState`, handed back by the serializer after a reload). */
export function isPanelState(v: unknown): v is PanelState {
  return isObj(v) && v.version === 1 && Array.isArray(v.turns) && v.turns.every(isTurnView) && Array.isArray(v.pending) && v.pending.every(isImageView);
}
