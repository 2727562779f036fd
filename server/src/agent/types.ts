/**
 * Contracts of the agent loop. The loop knows nothing of onnxruntime: the daemon adapts its engine
 * to `Model`, tests script one.
 */
import type { ToolRegistry } from '../tools/registry';
import type { AgentStepInfo } from '../runtime/types';
import type { NormBox, ToolImage } from '../tools/types';

/** The tool-call convention a model family was trained on; decides prompts and observation turns. */
export type ToolFormat = 'llava-plus' | 'chatml' | 'json';

/** An image carried by a model turn (the same shape as the runtime's `ImageInput` bytes form). */
export interface TurnImage {
  bytes: Uint8Array;
  mimeType: string;
  /** 'original': the user's image; 'derived': a tool's view of it (a zoomed crop, the grid overlay). */
  origin: 'original' | 'derived';
  /** For derived images: the part of the original shown, normalised. */
  box?: NormBox;
}

export interface ModelTurn {
  /** 'user': the question or (LLaVA-Plus, JSON) an observation; 'tool': a ChatML tool result. */
  role: 'user' | 'tool';
  text: string;
  /** Images that belong to this turn, in order, to be placed before its text. */
  images?: TurnImage[];
  /** First turn only, when set: the system prompt (e.g. `toolSystemPrompt`). */
  system?: string;
  /** role 'tool': the tools whose results the text carries (for templates that name them). */
  toolNames?: string[];
}

export interface ModelReply {
  text: string;
  /** The engine's reason ('eos' | 'length' | 'stop' | 'cancelled'). */
  finishReason: string;
}

/**
 * One conversation with a model. `ask` appends `turn` to the conversation, generates the
 * assistant's reply and appends it too; the adapter keeps the history (and KV cache). The loop
 * calls `ask` once per step, never concurrently. It may reject (the loop passes that on); on
 * abort it should resolve quickly with `finishReason: 'cancelled'` (or reject).
 */
export interface Model {
  ask(turn: ModelTurn, signal: AbortSignal): Promise<ModelReply>;
}

/** The user's image: what tools get (`ToolImage`) plus its MIME type for the model. */
export interface AgentImage extends ToolImage {
  mimeType: string;
}

/**
 * One thing the loop did, streamed to the client as it happens (`lens/agentStep`). A model turn
 * with N tool calls gives N steps (same `turn`); a turn that could not be parsed gives one step
 * with `error`; the final answer is a step with `final: true`.
 */
export interface AgentStep extends AgentStepInfo {
  /** Which model turn produced this step, 0-based. */
  turn: number;
  /** The model turn's time, ms. */
  modelMs: number;
  /** The model's raw reply for this turn. */
  modelText: string;
  /** Final step only: the answer for the user. */
  answer?: string;
}

export interface AgentOptions {
  /** Most model turns that may call tools (default 4). */
  maxSteps: number;
  format: ToolFormat;
  /** Time limit per tool call, ms (default: the tool's own, else 30 s). */
  toolTimeoutMs?: number;
  /** Sent with the first turn (e.g. `toolSystemPrompt(registry, format)` for models without tool training). */
  systemPrompt?: string;
  /** The vision encoder's input side, pixels, for `zoom` (default 336). */
  encoderSize?: number;
  /** Attach the original image again to every observation turn (default: true for 'llava-plus', which was trained that way). */
  repeatImage?: boolean;
  /** Extra text for the first turn after the question (e.g. OCR lines), not repeated in observations. */
  context?: string;
}

export interface AgentRequest {
  model: Model;
  registry: ToolRegistry;
  question: string;
  image: AgentImage;
  options?: Partial<AgentOptions>;
  /** Called for every step, in order, as soon as it happens. Exceptions it throws are ignored. */
  onStep?: (step: AgentStep) => void;
  signal?: AbortSignal;
}

export interface AgentResult {
  answer: string;
  steps: AgentStep[];
  /** 'answer': the model answered without tools; 'step-limit': `maxSteps` turns all called tools; 'cancelled'. */
  stoppedBy: 'answer' | 'step-limit' | 'cancelled';
  /** Said to the user next to the answer, e.g. why it stopped. */
  note?: string;
  /** The last model reply's finish reason. */
  finishReason: string;
}
