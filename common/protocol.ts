/**
 * The LLaVA Lens daemon protocol: one module for both sides (daemon, CLI, VS Code extension).
 *
 * Transport: JSON-RPC 2.0 with LSP base-protocol framing (`Content-Length` headers) over stdio or
 * node-ipc. Lifecycle is LSP's: `initialize` -> `initialized` -> ... -> `shutdown` -> `exit`.
 * Every product method is a typed constant below; `docs/protocol.md` describes the same thing
 * for people writing other clients and must be kept in step with this file.
 *
 * Errors: handlers answer with a JSON-RPC error whose `code` is a `LensErrorCode`
 * (`common/errors.ts`, 1000..1999) and whose message says what went wrong and what to do.
 * Malformed parameters get `LensErrorCode.InvalidParams` (1030) naming the field and the
 * expected type. A cancelled `lens/loadModel` (and a cancelled-while-queued unload/forget) gets
 * `Cancelled` (1041); a cancelled `lens/ask` is not an error. Transport-level errors keep their
 * JSON-RPC codes (MethodNotFound -32601, ParseError -32700).
 */
import { NotificationType, NotificationType0, ProgressType, RequestType, RequestType0 } from 'vscode-jsonrpc';
import type { ProgressToken } from 'vscode-jsonrpc';
import type {
  AgentStepInfo,
  Artefact,
  AskResult,
  AskStage,
  ToolInfo,
  ToolRunResult,
  Device,
  DtypeSpec,
  FinishReason,
  ModelFileRole,
  ModelInfo,
  Timings,
  GraphTuningPasses,
  TuningSummary,
} from '../server/src/runtime/types';
import { GRAPH_TUNING_PASSES } from '../server/src/runtime/types';

import type { CatalogueEntry } from '../server/src/hub/catalogue';

export type { CatalogueEntry };
export type { Artefact, ToolInfo, ToolRunResult, AskResult, AskStage, Device, DtypeSpec, FinishReason, ModelFileRole, ModelInfo, Timings, ProgressToken, GraphTuningPasses, TuningSummary };

// ---------------------------------------------------------------------------------------------
// Constants shared by both sides
// ---------------------------------------------------------------------------------------------

export const SERVER_NAME = 'llava-lens';
export const DEVICES: readonly Device[] = ['auto', 'cuda', 'webgpu', 'dml', 'coreml', 'cpu'];
/** Precision names, as they appear as file-name suffixes (`fp32` = no suffix). */
export const DTYPES = ['fp32', 'fp16', 'q4', 'q4f16', 'quantized', 'int8', 'uint8', 'bnb4'] as const;
export const MODEL_FILE_ROLES: readonly ModelFileRole[] = ['vision_encoder', 'embed_tokens', 'decoder_model_merged'];
/** The load-time graph tuning passes a `graphTuning` object may switch off (docs/performance.md). */
export { GRAPH_TUNING_PASSES };

/** What `lens/ask` uses for every option the client leaves out. */
export const ASK_DEFAULTS = {
  maxTokens: 256,
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  stop: [] as string[],
} as const;

/** Images per prompt assumed when no model is loaded yet. */
export const DEFAULT_IMAGES_PER_PROMPT = 4;
/** Default bound on requests waiting behind the running one. */
export const DEFAULT_QUEUE_LIMIT = 16;

// ---------------------------------------------------------------------------------------------
// Lifecycle: initialize / initialized / shutdown / exit (standard LSP)
// ---------------------------------------------------------------------------------------------

/** Sent by the client in `initialize.initializationOptions`; every field is optional. */
export interface LensInitializationOptions {
  /** Folders scanned by `lens/listModels` (absolute, or relative to the first workspace folder). */
  modelRoots?: string[];
  /** A model folder to load in the background right after `initialized`. */
  model?: string;
  /** Default precision for `lens/loadModel` (and for `model`). */
  dtype?: DtypeSpec;
  /** Default execution provider for `lens/loadModel` (and for `model`). */
  device?: Device;
  /**
   * Default load-time graph tuning for `lens/loadModel` (and for `model`): `false` loads the files
   * as they are; an object switches single passes off (`{ int8Vision: false }`), every pass left
   * out stays on. Absent: the daemon's default (`serve --no-graph-tuning` / `--tuning-off`), else
   * every pass on. What each file got is in `ModelInfo.tuning`.
   */
  graphTuning?: GraphTuningPasses | false;
  /** Largest decoded image accepted, in megapixels (engine default 50). */
  maxImageMegapixels?: number;
  /** User turns a conversation keeps (older ones dropped); given to the engine when it is created. */
  maxHistoryTurns?: number;
  /** Requests allowed to wait behind the running one (default 16); more get `Busy`. */
  queueLimit?: number;
}

export interface WorkspaceFolder {
  uri: string;
  name: string;
}

/** The subset of LSP `InitializeParams` the daemon reads. */
export interface LensInitializeParams {
  processId: number | null;
  clientInfo?: { name: string; version?: string };
  rootUri?: string | null;
  capabilities: Record<string, unknown>;
  initializationOptions?: LensInitializationOptions;
  workspaceFolders?: WorkspaceFolder[] | null;
}

/** Product capabilities, in `initialize`'s result next to the LSP `capabilities`. */
export interface LensCapabilities {
  /** The model loaded at this moment (normally null: `initializationOptions.model` loads after `initialized`). */
  modelLoaded: ModelInfo | null;
  /** Images one `lens/ask` may carry (from the loaded model; `DEFAULT_IMAGES_PER_PROMPT` before). */
  imagesPerPrompt: number;
  toolCallFormat: ModelInfo['toolCallFormat'];
  /** Execution providers available in this onnxruntime build, e.g. `['cpu', 'webgpu']`. */
  executionProviders: string[];
  /** Execution provider in use, or null when no model is loaded. */
  device: string | null;
  /** Daemon version (same as `serverInfo.version`). */
  version: string;
  /** The notification carrying streamed tokens. */
  streaming: 'lens/answerDelta';
}

export interface LensInitializeResult {
  capabilities: Record<string, unknown>;
  serverInfo: { name: typeof SERVER_NAME; version: string };
  lensCapabilities: LensCapabilities;
}

/**
 * client -> daemon. First message. Result: `LensInitializeResult`.
 * Errors: `InvalidParams` (1030) when `initializationOptions` has a wrong field.
 */
export const InitializeRequest = new RequestType<LensInitializeParams, LensInitializeResult, void>('initialize');
/** client -> daemon, after the `initialize` result. Starts the background load of `initializationOptions.model`. */
export const InitializedNotification = new NotificationType<Record<string, never>>('initialized');
/** client -> daemon. Cancels queued requests, aborts the running one, unloads the model. Result: null. */
export const ShutdownRequest = new RequestType0<null, void>('shutdown');
/** client -> daemon, after `shutdown`. The daemon closes the connection and its process exits (0, or 1 without `shutdown`). */
export const ExitNotification = new NotificationType0('exit');

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

export interface LoadModelParams {
  /** Model folder (with `config.json` and `onnx/`); absolute or relative to the first workspace folder. */
  path: string;
  /** Precision, for all files or per file; defaults to `initializationOptions.dtype`, then the engine's choice. */
  dtype?: DtypeSpec;
  /** Defaults to `initializationOptions.device`, then `auto`. */
  device?: Device;
  /**
   * Load-time graph tuning: `false` (none), or `{ int8Activations?, lastLogitsOnly?,
   * groupedAttention?, int8Vision? }` with `false` for the passes to skip (the others run; `{}` =
   * all). Defaults to `initializationOptions.graphTuning`, then the daemon's default, then all on.
   * The result's `tuning` says what each file got (absent when tuning was off).
   */
  graphTuning?: GraphTuningPasses | false;
  /** LSP work-done progress token: the daemon sends `$/progress` begin / report (percentage) / end on it. */
  workDoneToken?: ProgressToken;
}

/**
 * client -> daemon. Loads a model, replacing the loaded one; queued behind running asks.
 * Result: `ModelInfo`. Progress: `$/progress` on `workDoneToken`, and `lens/status` with state
 * `loading` and `percent`.
 * Errors: `InvalidParams` (1030), `InvalidModelFolder` (1002, names the missing file),
 * `ModelLoadFailed` (1003), `DeviceUnavailable` (1004), `Busy` (1040), `Cancelled` (1041).
 */
export const LoadModelRequest = new RequestType<LoadModelParams, ModelInfo, void>('lens/loadModel');

export interface DownloadModelParams {
  /** `owner/name` on the Hugging Face Hub (or the mirror in the daemon's `HF_ENDPOINT`). */
  repo: string;
  /** Branch, tag or commit; default `main`. */
  revision?: string;
  /** Precisions to fetch, for all files or per file; default: the catalogue's choice for that repository. */
  dtype?: DtypeSpec;
  /** LSP work-done progress token: `$/progress` begin / report (percentage, bytes, rate, ETA in the message) / end. */
  workDoneToken?: ProgressToken;
}

export interface DownloadModelResult {
  /** The model folder, ready for `lens/loadModel`. */
  path: string;
  repo: string;
  revision: string;
  /** The commit the files came from. */
  commit: string;
  /** Size of the model's files, bytes. */
  bytes: number;
  /** Bytes fetched this time (0 when everything was already there). */
  downloadedBytes: number;
}

/**
 * client -> daemon (private daemon only). Downloads the files the chosen precisions need into
 * the daemon's models folder (`LLAVA_LENS_MODELS_DIR`, else the cache), resuming partial files,
 * checking sizes and SHA-256, and moving the folder into place only when complete. Runs
 * immediately (not queued); cancellable (partial files are kept for the next attempt).
 * Errors: `1030`, `1060` RepoNotFound, `1061` AccessDenied, `1062` DownloadFailed, `1063`
 * DownloadCorrupt, `1002` (not a layout the runtime reads), `1040` (the same repository is being
 * downloaded), `1041` Cancelled, `1014` (a shared daemon: its operator runs `llava-lens pull`).
 */
export const DownloadModelRequest = new RequestType<DownloadModelParams, DownloadModelResult, void>('lens/downloadModel');

/**
 * client -> daemon, immediate. The built-in catalogue of known-good repositories, each with its
 * precision variants (first = default) and their approximate download and memory in MB.
 * Result: `{models: CatalogueEntry[]}`.
 */
export const ListCatalogueRequest = new RequestType0<{ models: CatalogueEntry[] }, void>('lens/listCatalogue');

/** client -> daemon. Unloads the model (queued behind running asks). Result: null; fine when nothing is loaded. Errors: `Cancelled` (1041) when cancelled before it ran. */
export const UnloadModelRequest = new RequestType0<null, void>('lens/unloadModel');

export interface ListModelsParams {
  /** Folders to scan instead of `initializationOptions.modelRoots`. */
  roots?: string[];
}

export interface ModelVariants {
  vision_encoder: string[];
  embed_tokens: string[];
  decoder_model_merged: string[];
}

export interface ModelEntry {
  /** Absolute folder path, suitable for `lens/loadModel`. */
  path: string;
  /** Folder name. */
  name: string;
  /** `config.json` `model_type`, or `unknown` when it is missing or the file does not parse. */
  modelType: string;
  /** Precisions present per file, from the file names (`fp32` = no suffix). */
  variants: ModelVariants;
}

export interface ListModelsResult {
  models: ModelEntry[];
}

/**
 * client -> daemon. Scans the roots (a few levels deep) for folders holding `config.json` and
 * `onnx/`. Runs immediately (not queued). Missing roots are skipped (logged). Result: `ListModelsResult`.
 * Errors: `InvalidParams` (1030).
 */
export const ListModelsRequest = new RequestType<ListModelsParams, ListModelsResult, void>('lens/listModels');

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/**
 * `starting`: before `initialized`. `loading`: a model load is running. `busy`: an ask (or
 * unload) is running. `ready`: idle (check `model` to know whether one is loaded). `error`: idle,
 * and the last load failed (`message` says why); the next successful load clears it.
 */
export type LensState = 'starting' | 'loading' | 'ready' | 'busy' | 'error';

export interface LensStatus {
  state: LensState;
  /** Load progress 0..100, only in `loading`. */
  percent?: number;
  message?: string;
  /** Execution provider of the loaded model. */
  device?: string;
  /** The loaded model. */
  model?: ModelInfo;
  /** Resident set size of the daemon process, bytes. */
  rssBytes: number;
  /** Requests waiting behind the running one (the running one not counted). */
  queueLength: number;
  /** In `busy` while an ask runs: its stage (image decode, vision encoder view i of n, prefill, generate). */
  stage?: AskStage;
}

/** daemon -> client, whenever any field but `rssBytes` changes. */
export const StatusNotification = new NotificationType<LensStatus>('lens/status');

// ---------------------------------------------------------------------------------------------
// Asking
// ---------------------------------------------------------------------------------------------

/** An image path (absolute, or relative to the first workspace folder) or base64 bytes (no `data:` prefix). */
export type ImageParam = { path: string } | { bytes: string; mimeType?: string };

export interface AskParams {
  /** Continue a conversation (the id comes from a previous result); omit to start a new one. */
  conversationId?: string;
  /** At most `lensCapabilities.imagesPerPrompt` (the loaded model's `imagesPerPrompt`). */
  images: ImageParam[];
  /** The question; a non-empty string. */
  prompt: string;
  /** Integer 1..model context length. Default 256. */
  maxTokens?: number;
  /** >= 0; 0 = greedy. Default 0. */
  temperature?: number;
  /** Integer >= 0; 0 = off. Default 0. */
  topK?: number;
  /** In (0, 1]; 1 = off. Default 1. */
  topP?: number;
  /** > 0; 1 = off. Default 1. */
  repetitionPenalty?: number;
  /** Integer 0..2^32-1 for a reproducible sample; omit for a random seed. */
  seed?: number;
  /** Extra stop strings. Default []. */
  stop?: string[];
  /** Client-chosen id; when present the daemon streams `lens/answerDelta` (and `lens/agentStep`) notifications carrying it. */
  streamId?: string;
  /** Run the tool loop: the model may call tools (`lens/listTools`) for up to `maxSteps` turns. Needs exactly one image. */
  tools?: boolean;
  /** With `tools` or `explain`: most model turns that may call tools. Integer >= 1, default 4. */
  maxSteps?: number;
  /** "Explain Screenshot" / "Explain Diagram": OCR runs first and its lines go to the model with a prompt suited to the kind (implies the tool loop). */
  explain?: 'screenshot' | 'diagram';
}

/**
 * client -> daemon. Answers a question about images. Queued FIFO (one engine call at a time).
 * Result: `AskResult` (`text` equals the concatenated deltas). `$/cancelRequest` is not an error:
 * the result comes back with `finishReason: 'cancelled'` and the text generated so far (empty
 * when the ask was still queued).
 * Errors: `InvalidParams` (1030), `ModelNotLoaded` (1001), `ImageNotFound` (1013),
 * `ImageDecodeFailed` (1010), `UnsupportedImage` (1011), `ImageTooLarge` (1012),
 * `PromptTooLong` (1020), `UnknownConversation` (1031), `Busy` (1040), `Internal` (1099).
 */
export const AskRequest = new RequestType<AskParams, AskResult, void>('lens/ask');

export interface AnswerDeltaParams {
  /** The `streamId` of the `lens/ask` this belongs to. */
  streamId: string;
  /** The ask's `conversationId` when it continues a conversation; a new conversation's id arrives in the result. */
  conversationId?: string;
  /** Newly decodable text (may be empty). */
  text: string;
  tokenId: number;
  /** 0, 1, 2, ... per ask. */
  index: number;
  /** With the tool loop: the model turn (0, 1, …) this text belongs to; the result's `text` is the final answer only. */
  turn?: number;
}

/** daemon -> client, once per generated token of a `lens/ask` that carried a `streamId`, before its result. */
export const AnswerDeltaNotification = new NotificationType<AnswerDeltaParams>('lens/answerDelta');

export interface QueuePositionParams {
  /** The `streamId` of the waiting `lens/ask`. */
  streamId: string;
  /** Requests that will run before this one (the running one included). */
  ahead: number;
}

/**
 * daemon -> client, for a `lens/ask` with a `streamId` while it waits: when it is queued and
 * whenever the number of requests ahead of it changes. A shared daemon serves clients round robin.
 */
export const QueuePositionNotification = new NotificationType<QueuePositionParams>('lens/queuePosition');

/** One tool-loop step (runtime/types.ts `AgentStepInfo`): thought, tool, arguments, observation, artefacts to draw. */
export type AgentStep = AgentStepInfo;

export interface AgentStepParams extends AgentStep {
  /** The `streamId` of the `lens/ask` this belongs to. */
  streamId: string;
}

/** daemon -> client, once per tool-loop step of a `lens/ask` that carried a `streamId`, as it happens, before its result. */
export const AgentStepNotification = new NotificationType<AgentStepParams>('lens/agentStep');

/** client -> daemon. The tools the daemon can run. Result `{tools: [{name, description, schema (JSON schema of the arguments)}]}`. */
export const ListToolsRequest = new RequestType0<ListToolsResult, void>('lens/listTools');
export interface ListToolsResult {
  tools: ToolInfo[];
}

export interface RunToolParams {
  name: string;
  /** The tool's arguments (see its schema); default {}. */
  args?: unknown;
  image: ImageParam;
  /** Time limit, ms (default: the tool's own). */
  timeoutMs?: number;
}

/**
 * client -> daemon. Runs one tool on one image (queued with the asks; needs no model). A tool that
 * fails or times out is a result with `error` and `status`, not a JSON-RPC error; `$/cancelRequest`
 * gives `status: 'cancelled'`. Errors: `InvalidParams` (1030), image errors (1010–1013).
 */
export const RunToolRequest = new RequestType<RunToolParams, ToolRunResult, void>('lens/runTool');

export interface ForgetConversationParams {
  conversationId: string;
}

/** client -> daemon. Drops a conversation's history (queued); unknown ids are ignored. Result: null. Errors: `InvalidParams` (1030), `Cancelled` (1041). */
export const ForgetConversationRequest = new RequestType<ForgetConversationParams, null, void>('lens/forgetConversation');

// ---------------------------------------------------------------------------------------------
// Work-done progress (LSP `$/progress` values), used by `lens/loadModel`
// ---------------------------------------------------------------------------------------------

export interface WorkDoneProgressBegin {
  kind: 'begin';
  title: string;
  cancellable?: boolean;
  message?: string;
  percentage?: number;
}
export interface WorkDoneProgressReport {
  kind: 'report';
  message?: string;
  percentage?: number;
}
export interface WorkDoneProgressEnd {
  kind: 'end';
  message?: string;
}
export type WorkDoneProgressValue = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;
export const WorkDoneProgress = new ProgressType<WorkDoneProgressValue>();

// ---------------------------------------------------------------------------------------------
// Parameter checks. Each `check*` returns undefined when the value is acceptable, or a message
// naming the field, the expected type and what was sent. `is*` are the matching type guards.
// ---------------------------------------------------------------------------------------------

type Problem = string | undefined;

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return typeof v;
}

function describe(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  return kindOf(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function wrong(method: string, field: string, expected: string, got: unknown): string {
  return `${method}: "${field}" must be ${expected}; got ${describe(got)}.`;
}

function checkString(method: string, field: string, v: unknown, nonEmpty = false): Problem {
  if (typeof v !== 'string') return wrong(method, field, nonEmpty ? 'a non-empty string' : 'a string', v);
  if (nonEmpty && v.trim() === '') return wrong(method, field, 'a non-empty string', v);
  return undefined;
}

function checkStringArray(method: string, field: string, v: unknown): Problem {
  if (!Array.isArray(v)) return wrong(method, field, 'an array of strings', v);
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'string') return wrong(method, `${field}[${i}]`, 'a string', v[i]);
  }
  return undefined;
}

/** A finite number satisfying `ok`; `expected` says what to send instead. */
function checkNumber(method: string, field: string, v: unknown, expected: string, ok: (n: number) => boolean): Problem {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) return wrong(method, field, expected, v);
  return undefined;
}

function checkDevice(method: string, field: string, v: unknown): Problem {
  if (typeof v !== 'string' || !(DEVICES as readonly string[]).includes(v)) {
    return wrong(method, field, `one of ${DEVICES.join(', ')}`, v);
  }
  return undefined;
}

function checkDtypeName(method: string, field: string, v: unknown): Problem {
  if (typeof v !== 'string' || !(DTYPES as readonly string[]).includes(v)) {
    return wrong(method, field, `one of ${DTYPES.join(', ')}`, v);
  }
  return undefined;
}

function checkDtypeSpec(method: string, field: string, v: unknown): Problem {
  if (typeof v === 'string') return checkDtypeName(method, field, v);
  if (!isObject(v)) {
    return wrong(method, field, `a precision name or an object {${MODEL_FILE_ROLES.join('?, ')}?}`, v);
  }
  for (const [key, value] of Object.entries(v)) {
    if (!(MODEL_FILE_ROLES as readonly string[]).includes(key)) {
      const shown = key.length > 40 ? `${key.slice(0, 40)}…` : key;
      return `${method}: "${field}.${shown}" is not a model file; use ${MODEL_FILE_ROLES.join(', ')}.`;
    }
    const p = checkDtypeName(method, `${field}.${key}`, value);
    if (p) return p;
  }
  return undefined;
}

/** `false`, or an object whose keys are pass names (`GRAPH_TUNING_PASSES`) with boolean values. */
function checkGraphTuning(method: string, field: string, v: unknown): Problem {
  const passes = GRAPH_TUNING_PASSES.join(', ');
  if (v === false) return undefined;
  if (!isObject(v)) return wrong(method, field, `false (no tuning) or an object of passes {${GRAPH_TUNING_PASSES.join('?, ')}?} with boolean values ({} = every pass)`, v);
  for (const [key, value] of Object.entries(v)) {
    if (!(GRAPH_TUNING_PASSES as readonly string[]).includes(key)) {
      const shown = key.length > 40 ? `${key.slice(0, 40)}…` : key;
      return `${method}: "${field}.${shown}" is not a graph tuning pass; use ${passes}.`;
    }
    if (typeof value !== 'boolean') return wrong(method, `${field}.${key}`, 'true or false', value);
  }
  return undefined;
}

/** Runs `check` for each present (not undefined) optional field. */
function optional(obj: Record<string, unknown>, checks: Record<string, (v: unknown) => Problem>): Problem {
  for (const [field, check] of Object.entries(checks)) {
    if (obj[field] !== undefined) {
      const p = check(obj[field]);
      if (p) return p;
    }
  }
  return undefined;
}

function checkParamsObject(method: string, v: unknown): Problem {
  return isObject(v) ? undefined : `${method}: params must be an object; got ${kindOf(v)}.`;
}

const isPositiveInt = (n: number) => Number.isInteger(n) && n >= 1;

export function checkInitializationOptions(v: unknown): Problem {
  const m = 'initialize';
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) return wrong(m, 'initializationOptions', 'an object', v);
  const f = (name: string) => `initializationOptions.${name}`;
  return optional(v, {
    modelRoots: (x) => checkStringArray(m, f('modelRoots'), x),
    model: (x) => checkString(m, f('model'), x, true),
    dtype: (x) => checkDtypeSpec(m, f('dtype'), x),
    device: (x) => checkDevice(m, f('device'), x),
    graphTuning: (x) => checkGraphTuning(m, f('graphTuning'), x),
    maxImageMegapixels: (x) => checkNumber(m, f('maxImageMegapixels'), x, 'a number > 0 (megapixels)', (n) => n > 0),
    maxHistoryTurns: (x) => checkNumber(m, f('maxHistoryTurns'), x, 'an integer >= 0', (n) => Number.isInteger(n) && n >= 0),
    queueLimit: (x) => checkNumber(m, f('queueLimit'), x, 'an integer >= 1', isPositiveInt),
  });
}

export function checkLoadModelParams(v: unknown): Problem {
  const m = 'lens/loadModel';
  const p = checkParamsObject(m, v);
  if (p || !isObject(v)) return p;
  return (
    checkString(m, 'path', v.path, true) ??
    optional(v, {
      dtype: (x) => checkDtypeSpec(m, 'dtype', x),
      device: (x) => checkDevice(m, 'device', x),
      graphTuning: (x) => checkGraphTuning(m, 'graphTuning', x),
      workDoneToken: (x) =>
        typeof x === 'string' || (typeof x === 'number' && Number.isInteger(x)) ? undefined : wrong(m, 'workDoneToken', 'a string or an integer', x),
    })
  );
}

export function checkListModelsParams(v: unknown): Problem {
  const m = 'lens/listModels';
  if (v === undefined || v === null) return undefined;
  const p = checkParamsObject(m, v);
  if (p || !isObject(v)) return p;
  return optional(v, { roots: (x) => checkStringArray(m, 'roots', x) });
}

export function checkDownloadModelParams(v: unknown): Problem {
  const m = 'lens/downloadModel';
  const p = checkParamsObject(m, v);
  if (p || !isObject(v)) return p;
  return (
    checkString(m, 'repo', v.repo, true) ??
    (/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(v.repo as string) ? undefined : wrong(m, 'repo', 'an "owner/name" repository id', v.repo)) ??
    optional(v, {
      revision: (x) => checkString(m, 'revision', x, true),
      dtype: (x) => checkDtypeSpec(m, 'dtype', x),
      workDoneToken: (x) =>
        typeof x === 'string' || (typeof x === 'number' && Number.isInteger(x)) ? undefined : wrong(m, 'workDoneToken', 'a string or an integer', x),
    })
  );
}

/** For requests without params: accepts none, null or an empty object. */
export function checkNoParams(method: string): (v: unknown) => Problem {
  return (v) =>
    v === undefined || v === null || (isObject(v) && Object.keys(v).length === 0)
      ? undefined
      : `${method}: takes no params; got ${kindOf(v)}.`;
}

export function checkForgetConversationParams(v: unknown): Problem {
  const m = 'lens/forgetConversation';
  const p = checkParamsObject(m, v);
  if (p || !isObject(v)) return p;
  return checkString(m, 'conversationId', v.conversationId, true);
}

function checkImage(m: string, field: string, v: unknown): Problem {
  const expected = '{path: string} or {bytes: base64 string, mimeType?: string}';
  if (!isObject(v)) return wrong(m, field, expected, v);
  if ('path' in v) return checkString(m, `${field}.path`, v.path, true);
  if ('bytes' in v) {
    return checkString(m, `${field}.bytes`, v.bytes, true) ?? optional(v, { mimeType: (x) => checkString(m, `${field}.mimeType`, x) });
  }
  return `${m}: "${field}" must be ${expected}; it has neither "path" nor "bytes".`;
}

/** Shape and range checks that do not depend on the loaded model (image count and `maxTokens` vs context are checked by the daemon). */
export function checkAskParams(v: unknown): Problem {
  const m = 'lens/ask';
  const p = checkParamsObject(m, v);
  if (p || !isObject(v)) return p;
  const prompt = checkString(m, 'prompt', v.prompt, true);
  if (prompt) return prompt;
  if (!Array.isArray(v.images)) return wrong(m, 'images', 'an array of images (send [] for none)', v.images);
  for (let i = 0; i < v.images.length; i++) {
    const ip = checkImage(m, `images[${i}]`, v.images[i]);
    if (ip) return ip;
  }
  return optional(v, {
    conversationId: (x) => checkString(m, 'conversationId', x, true),
    maxTokens: (x) => checkNumber(m, 'maxTokens', x, 'an integer >= 1 (default 256)', isPositiveInt),
    temperature: (x) => checkNumber(m, 'temperature', x, 'a number >= 0 (0 = greedy)', (n) => n >= 0),
    topK: (x) => checkNumber(m, 'topK', x, 'an integer >= 0 (0 = off)', (n) => Number.isInteger(n) && n >= 0),
    topP: (x) => checkNumber(m, 'topP', x, 'a number in (0, 1] (1 = off)', (n) => n > 0 && n <= 1),
    repetitionPenalty: (x) => checkNumber(m, 'repetitionPenalty', x, 'a number > 0 (1 = off)', (n) => n > 0),
    seed: (x) => checkNumber(m, 'seed', x, 'an integer in 0..4294967295', (n) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff),
    stop: (x) => checkStringArray(m, 'stop', x),
    streamId: (x) => checkString(m, 'streamId', x, true),
    tools: (x) => (typeof x === 'boolean' ? undefined : wrong(m, 'tools', 'a boolean', x)),
    maxSteps: (x) => checkNumber(m, 'maxSteps', x, 'an integer >= 1 (default 4)', isPositiveInt),
    explain: (x) => (x === 'screenshot' || x === 'diagram' ? undefined : wrong(m, 'explain', '"screenshot" or "diagram"', x)),
  });
}

export function checkRunToolParams(v: unknown): Problem {
  const m = 'lens/runTool';
  const p = checkParamsObject(m, v);
  if (p || !isObject(v)) return p;
  return (
    checkString(m, 'name', v.name, true) ??
    checkImage(m, 'image', v.image) ??
    optional(v, {
      args: (x) => (isObject(x) ? undefined : wrong(m, 'args', 'an object', x)),
      timeoutMs: (x) => checkNumber(m, 'timeoutMs', x, 'a number of milliseconds > 0', (n) => n > 0),
    })
  );
}

export const isLensInitializationOptions = (v: unknown): v is LensInitializationOptions | undefined =>
  checkInitializationOptions(v) === undefined;
export const isLoadModelParams = (v: unknown): v is LoadModelParams => checkLoadModelParams(v) === undefined;
export const isListModelsParams = (v: unknown): v is ListModelsParams | undefined => checkListModelsParams(v) === undefined;
export const isForgetConversationParams = (v: unknown): v is ForgetConversationParams =>
  checkForgetConversationParams(v) === undefined;
export const isAskParams = (v: unknown): v is AskParams => checkAskParams(v) === undefined;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes standard base64 (whitespace allowed); undefined when it is not valid base64. */
export function decodeBase64(s: string): Uint8Array | undefined {
  const compact = s.replace(/\s+/g, '');
  if (compact.length % 4 !== 0 || !BASE64.test(compact)) return undefined;
  const buf = Buffer.from(compact, 'base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
