/**
 * Contracts between the daemon and the runtime. The daemon never touches onnxruntime; it talks
 * to an `Engine` (the real ONNX one in `engine.ts`, or a deterministic fake in tests).
 *
 * Vocabulary of dimension names used in shape comments across runtime files:
 *   B batch (always 1 here), S new sequence length, P past length, T = P + S total length,
 *   H LLM hidden size, V vocab size, Hkv KV heads, D head dim,
 *   C channels (3), Hpx/Wpx pixel height/width, N image feature rows, Hv vision hidden size.
 */
import type { LensError } from '../../../common/errors';

export type Device = 'auto' | 'cuda' | 'webgpu' | 'dml' | 'coreml' | 'cpu';

/** Per-file precision: a suffix name (`fp32`, `fp16`, `q4`, `q4f16`, `quantized`, `int8`, `uint8`, `bnb4`). */
export type Dtype = string;
/** Either one precision for all three files, or per file (`vision_encoder`, `embed_tokens`, `decoder_model_merged`). */
export type DtypeSpec = Dtype | Partial<Record<ModelFileRole, Dtype>>;
export type ModelFileRole = 'vision_encoder' | 'embed_tokens' | 'decoder_model_merged';

/**
 * Load-time graph tuning passes (runtime/graphTuning.ts). Each is on unless set to false; the
 * whole of tuning is off with `graphTuning: false` in `LoadOptions`.
 */
export interface GraphTuningPasses {
  /** Decoder: `accuracy_level = 4` on 4-bit MatMulNBits (int8 activations). Not bit-exact. */
  int8Activations?: boolean;
  /** Decoder: logits for the last position only, when the export computes every position's. Exact. */
  lastLogitsOnly?: boolean;
  /** Decoder: grouped-query attention multiplies against the shared KV heads instead of repeating them. */
  groupedAttention?: boolean;
  /** Vision encoder: fp32 MatMul weights quantized to int8 per column at load (int8 activations). Not bit-exact. */
  int8Vision?: boolean;
}

export const GRAPH_TUNING_PASSES: readonly (keyof GraphTuningPasses)[] = ['int8Activations', 'lastLogitsOnly', 'groupedAttention', 'int8Vision'];

/** What load-time tuning did to one file (runtime/graphTuning.ts `TunedGraph`, without paths). */
export interface TuningSummary {
  /** What was changed, in words; empty when the file loaded as it is. */
  applied: string[];
  /** Passes that did not apply, and why. */
  skipped: string[];
  /** True when the tuned file (or the "nothing to do" note) came from the on-disk cache. */
  cacheHit: boolean;
  /** Time spent tuning or finding the cached copy, ms. */
  ms: number;
}

export interface LoadOptions {
  dtype?: DtypeSpec;
  device?: Device;
  /** Load-time graph tuning; `false` loads the files as they are. Default: the engine's option, then every pass on. */
  graphTuning?: GraphTuningPasses | false;
  /** Max pixels of a decoded image (default 50e6). */
  maxImagePixels?: number;
  /** Max bytes of an image file or buffer (default 64 MiB). */
  maxImageBytes?: number;
}

export interface LoadProgress {
  /** 0..100 */
  percent: number;
  message: string;
}

/** What a loaded model is; sent in `initialize` results and `lens/status`. */
export interface ModelInfo {
  path: string;
  name: string;
  /** `config.json` model_type, e.g. `llava` or `llava_onevision`. */
  modelType: string;
  /** Execution provider actually running (e.g. `cpu`, `cuda`). */
  device: string;
  /** Precision actually loaded per file. */
  dtype: Record<ModelFileRole, Dtype>;
  contextLength: number;
  imagesPerPrompt: number;
  /** The vision encoder's input side, pixels (336, 384, …): what one view of an image is resized to. */
  imageSize: number;
  /** Tool-call format the chat template/family suggests: `llava-plus`, `chatml`, or `none`. */
  toolCallFormat: 'llava-plus' | 'chatml' | 'none';
  /** True for the embedded tiny test model (answers carry no meaning). */
  isTestModel: boolean;
  /** Load-time graph tuning per tuned file; absent when tuning was off. */
  tuning?: Partial<Record<ModelFileRole, TuningSummary>>;
}

/** An image as it arrives: a path (already resolved/validated by the daemon) or raw bytes. */
export type ImageInput = { path: string } | { bytes: Uint8Array; mimeType?: string };

export interface GenerationOptions {
  maxTokens: number;
  /** 0 = greedy (argmax). */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  /** 1 = off. */
  repetitionPenalty: number;
  /** Seed for the sampler's RNG; undefined = random seed. */
  seed?: number;
  /** Stop strings (in addition to EOS ids and the template's turn separator). */
  stop: string[];
}

/** The tool loop for one ask (see server/src/agent): LLaVA-Plus style, local tools, several steps. */
export interface AgentAskOptions {
  /** Let the model call tools (ocr, zoom, image_info, grid) in a loop. */
  tools: boolean;
  /** Most model turns that may call tools (default 4). */
  maxSteps?: number;
  /** Run OCR first and give its lines to the model, with a prompt suited to UIs or diagrams. */
  explain?: 'screenshot' | 'diagram';
  /** Per-tool time limit, ms. */
  toolTimeoutMs?: number;
}

/** Something a tool produced that a client can show over or beside the image. Boxes are normalised to the raw image ([x0, y0, x1, y1] in 0..1). */
export type Artefact =
  | { kind: 'boxes'; boxes: Array<{ box: [number, number, number, number]; label?: string; score?: number }> }
  | { kind: 'image'; mimeType: string; /** the image file, base64 (no data: prefix) */ base64: string; caption?: string };

/** One step of the tool loop (LLaVA-Plus style): the model's thought, the tool it called and what came back. */
export interface AgentStepInfo {
  /** 0, 1, 2, ... per ask, in the order the steps happened. */
  index: number;
  thought?: string;
  tool?: string;
  args?: unknown;
  /** The observation as the model sees it (a summary; bulky fields stripped). */
  observation?: string;
  artefacts?: Artefact[];
  /** Set when the tool failed, timed out or its call could not be parsed (or the step limit was reached). */
  error?: string;
  /** The tool's time, or the model turn's for steps without a tool, ms. */
  ms: number;
  /** The step that ends the loop with the answer. */
  final?: boolean;
}

/** An earlier turn that a stateless caller (the OpenAI-compatible endpoint) sends with its ask. */
export interface HistoryMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  text: string;
  /** The turn's images, placed before its text (any role but `assistant`). */
  images: ImageInput[];
}

export interface AskRequest {
  conversationId?: string;
  /**
   * Stateless ask: the whole conversation before this turn (possibly empty), instead of a
   * `conversationId` (never both). The engine answers as if the conversation had happened; it
   * may keep it (and its KV cache) for a request whose history extends it, never on disk.
   */
  history?: HistoryMessage[];
  images: ImageInput[];
  prompt: string;
  /** Who speaks this turn: the user (default) or a tool result (ChatML `tool` role, used by the tool loop). */
  role?: 'user' | 'tool';
  /** A system prompt for a new conversation (ignored when continuing one: it is already in the history). */
  system?: string;
  /** Run the tool loop around the model (engines that support tools; others refuse). */
  agent?: AgentAskOptions;
  /**
   * Most tokens this turn's message may add: its text tokens plus its image tokens (template
   * markup and history not counted). Over it, the ask fails with PromptTooLong before the vision
   * encoder runs. Undefined: only the model's context bounds the prompt.
   */
  maxPromptTokens?: number;
  /** Who asks (a shared daemon's client id): bounds KV cache memory per client (`maxKvBytesPerOwner`). */
  owner?: string;
  /**
   * Tools offered to the model through its API's own function calling (engines with
   * `nativeToolCalls` only; others refuse it). Calls come back in the answer text as ChatML
   * `<tool_call>{"name", "arguments"}</tool_call>` blocks, and results go back as `tool` turns.
   */
  tools?: ToolInfo[];
  options: GenerationOptions;
}

export type FinishReason = 'eos' | 'length' | 'stop' | 'cancelled';

export interface Timings {
  decodeImageMs: number;
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  firstTokenMs: number;
  totalMs: number;
  /** Tokens in the context before generation (history + this turn's prompt, image tokens included). */
  promptTokens: number;
  /** Of those, tokens whose KV cache was reused from the conversation (not prefilled again). */
  cachedTokens: number;
  /** Image tokens added by this turn's images. */
  imageTokens: number;
  newTokens: number;
  decodeTokensPerSec: number;
}

export interface AskResult {
  text: string;
  tokenIds: number[];
  conversationId: string;
  finishReason: FinishReason;
  timings: Timings;
  device: string;
  model: string;
  /** Tool-loop steps, in order, when `agent` was used. */
  steps?: AgentStepInfo[];
}

/** Where an ask is, for progress displays ("encoding image 2/5") and tests. */
export interface AskStage {
  stage: 'image' | 'vision' | 'prefill' | 'generate';
  /** 0-based item within the stage (image number, vision view), when it has several. */
  index?: number;
  total?: number;
}

/** One streamed piece of the answer. `text` is the newly decodable text (may be empty). */
export interface AnswerDelta {
  text: string;
  tokenId: number;
  /** With the tool loop: which model turn (0, 1, …) the text belongs to. */
  turn?: number;
}

/** A tool's description for `lens/listTools`. */
export interface ToolInfo {
  name: string;
  description: string;
  /** JSON schema of the arguments. */
  schema: Record<string, unknown>;
}

/** What a tool run returns to a client (`lens/runTool`). */
export interface ToolRunResult {
  summary: string;
  data: unknown;
  artefacts?: Artefact[];
  error?: string;
  status: 'ok' | 'error' | 'timeout' | 'cancelled';
  ms: number;
}

/**
 * The engine runs one request at a time (the daemon queues); calls must not overlap.
 * All methods throw `LensError` for expected failures.
 */
export interface Engine {
  /** Loads (replacing any loaded model). Checks `signal` between sessions. */
  load(path: string, options: LoadOptions, onProgress: (p: LoadProgress) => void, signal: AbortSignal): Promise<ModelInfo>;
  unload(): Promise<void>;
  info(): ModelInfo | undefined;
  /**
   * Answers one turn. `onDelta` is called for each generated token, in order, before the promise
   * resolves. When `signal` aborts (also during the vision encoder), resolves with what was
   * generated so far and `finishReason: 'cancelled'`.
   */
  ask(req: AskRequest, onDelta: (d: AnswerDelta) => void, signal: AbortSignal, onStage?: (s: AskStage) => void, onStep?: (s: AgentStepInfo) => void): Promise<AskResult>;
  /** Tools this engine can run (empty when it has none). */
  listTools?(): ToolInfo[];
  /** Runs one tool directly on an image; failures come back as results with `error`, not throws. */
  runTool?(name: string, args: unknown, image: ImageInput, signal: AbortSignal, timeoutMs?: number): Promise<ToolRunResult>;
  /**
   * Drops a conversation's history; unknown ids are ignored. With `keepSaved`, only from memory:
   * a persisted conversation is restored from its file when it is used again. May resolve later
   * (a worker): once it has, the conversation's file is gone.
   */
  forget(conversationId: string, keepSaved?: boolean): void | Promise<void>;
  /** True when `ask` takes `AskRequest.tools` (an API with function calling, e.g. an OpenAI-compatible server). */
  readonly nativeToolCalls?: boolean;
}

export type { LensError };
