/**
 * `llavaLens.*` settings -> what the daemon gets. Pure: the 'vscode' layer passes a getter over
 * `workspace.getConfiguration('llavaLens')`. Each setting is checked where it enters; a bad value
 * falls back to its default and produces a problem message the extension shows (never silently
 * ignored).
 */
import { DEVICES, DTYPES, GRAPH_TUNING_PASSES, MODEL_FILE_ROLES } from '../../common/protocol';
import { daemonEnv, daemonNodeFlags } from '../../server/src/daemon/nodeFlags';
import type { AskParams, Device, DtypeSpec, GraphTuningPasses, LensInitializationOptions, LoadModelParams, ModelFileRole } from '../../common/protocol';

export const SECTION = 'llavaLens';
/** SecretStorage key of the remote daemon's token (command "Set Remote Daemon Token…"). */
export const REMOTE_TOKEN_SECRET = 'llavaLens.remoteToken';
/** SecretStorage key of the serving engine's API key (command "Set Backend API Key…"). */
export const BACKEND_API_KEY_SECRET = 'llavaLens.backendApiKey';
/**
 * The variable the spawned daemon reads that key from (`serve --api-key-env`): the key goes into
 * the daemon's environment, never on its command line (which other users of the machine can read).
 */
export const BACKEND_API_KEY_ENV = 'LLAVA_LENS_BACKEND_API_KEY';

/** `llavaLens.backend.kind`: the local ONNX runtime, or an OpenAI-compatible server (`serve --backend`). */
export const BACKEND_KINDS = ['onnx', 'openai'] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];
/** `llavaLens.backend.tools`: how the tool loop offers its tools to the server (`serve --backend-tools`). */
export const BACKEND_TOOL_MODES = ['api', 'prompt'] as const;
export type BackendToolMode = (typeof BACKEND_TOOL_MODES)[number];

/** `llavaLens.graphTuning.*`: the master switch and one per pass (all on by default). */
export type GraphTuningSettings = { enabled: boolean } & Required<GraphTuningPasses>;

export interface LensSettings {
  modelFolders: string[];
  /** Model folder; '' = the embedded default test model. */
  model: string;
  /** undefined = the engine's choice. */
  dtype: DtypeSpec | undefined;
  device: Device;
  /** Load-time graph tuning of the local model (see `toGraphTuning`). */
  graphTuning: GraphTuningSettings;
  maxNewTokens: number;
  temperature: number;
  maxImageMegapixels: number;
  toolsEnabled: boolean;
  altTextDiagnostics: boolean;
  /** '' = local daemon; else the `ws://` / `wss://` URL of a shared daemon (its token is in SecretStorage). */
  remoteUrl: string;
  /** PEM file of certificate(s) to trust for a `wss://` daemon ('' = the system's CAs). */
  remoteTlsCa: string;
  /** '' = the Node that runs the extension host. */
  nodePath: string;
  /** Where the spawned daemon generates: 'onnx' (the local model) or 'openai' (the server below). */
  backend: BackendKind;
  /** The server's API, e.g. `http://127.0.0.1:11434/v1` ('' = not set; required with 'openai'). */
  backendBaseUrl: string;
  /** The model id the server serves ('' = not set; required with 'openai'). */
  backendModel: string;
  backendTools: BackendToolMode;
}

export const DEFAULT_SETTINGS: LensSettings = {
  modelFolders: [],
  model: '',
  dtype: undefined,
  device: 'auto',
  graphTuning: { enabled: true, int8Activations: true, lastLogitsOnly: true, groupedAttention: true, int8Vision: true },
  maxNewTokens: 256,
  temperature: 0,
  maxImageMegapixels: 50,
  toolsEnabled: false,
  altTextDiagnostics: true,
  remoteUrl: '',
  remoteTlsCa: '',
  nodePath: '',
  backend: 'onnx',
  backendBaseUrl: '',
  backendModel: '',
  backendTools: 'api',
};

/**
 * Node flags the daemon process is started with (`execArgv`): `DAEMON_NODE_FLAGS`
 * (server/src/daemon/nodeFlags.ts, measured in docs/performance.md), none with `LLAVA_LENS_NODE_FLAGS=none`.
 */
export const DAEMON_NODE_ARGS: readonly string[] = daemonNodeFlags(process.env);

/**
 * Variables added to the daemon process's environment: `daemonEnv` (server/src/daemon/nodeFlags.ts:
 * glibc's malloc tunables on Linux, merged with the user's own `GLIBC_TUNABLES`), none with
 * `LLAVA_LENS_NODE_FLAGS=none` or off Linux.
 */
export const DAEMON_NODE_ENV: Readonly<Record<string, string>> = Object.freeze(daemonEnv(process.env));

export interface SettingsRead {
  settings: LensSettings;
  /** One message per setting whose value was wrong and replaced by its default. */
  problems: string[];
}

/** `get(key)` returns the configured value of `llavaLens.<key>` (undefined when unset). */
export function readSettings(get: (key: string) => unknown): SettingsRead {
  const problems: string[] = [];
  const s: LensSettings = { ...DEFAULT_SETTINGS, modelFolders: [], graphTuning: { ...DEFAULT_SETTINGS.graphTuning } };
  const bad = (key: string, expected: string, got: unknown) =>
    problems.push(`Setting ${SECTION}.${key} must be ${expected}; got ${JSON.stringify(got)}. Using the default.`);

  const folders = get('modelFolders');
  if (folders !== undefined) {
    if (Array.isArray(folders) && folders.every((f) => typeof f === 'string')) s.modelFolders = folders.map((f) => f.trim()).filter((f) => f !== '');
    else bad('modelFolders', 'a list of folder paths', folders);
  }
  const model = get('model');
  if (model !== undefined) {
    if (typeof model === 'string') s.model = model.trim();
    else bad('model', 'a folder path (empty for the embedded test model)', model);
  }
  const dtype = get('dtype');
  if (dtype !== undefined && dtype !== '' && dtype !== null) {
    const parsed = parseDtype(dtype);
    if (parsed.ok) s.dtype = parsed.value;
    else bad('dtype', parsed.expected, dtype);
  }
  const device = get('device');
  if (device !== undefined) {
    if (typeof device === 'string' && (DEVICES as readonly string[]).includes(device)) s.device = device as Device;
    else bad('device', `one of ${DEVICES.join(', ')}`, device);
  }
  for (const key of ['enabled', ...GRAPH_TUNING_PASSES] as const) {
    const on = get(`graphTuning.${key}`);
    if (on === undefined) continue;
    if (typeof on === 'boolean') s.graphTuning[key] = on;
    else bad(`graphTuning.${key}`, 'true or false', on);
  }
  const maxNewTokens = get('maxNewTokens');
  if (maxNewTokens !== undefined) {
    if (typeof maxNewTokens === 'number' && Number.isInteger(maxNewTokens) && maxNewTokens >= 1) s.maxNewTokens = maxNewTokens;
    else bad('maxNewTokens', 'an integer >= 1', maxNewTokens);
  }
  const temperature = get('temperature');
  if (temperature !== undefined) {
    if (typeof temperature === 'number' && Number.isFinite(temperature) && temperature >= 0) s.temperature = temperature;
    else bad('temperature', 'a number >= 0 (0 = greedy)', temperature);
  }
  const mp = get('maxImageMegapixels');
  if (mp !== undefined) {
    if (typeof mp === 'number' && Number.isFinite(mp) && mp > 0) s.maxImageMegapixels = mp;
    else bad('maxImageMegapixels', 'a number > 0', mp);
  }
  const tools = get('tools.enabled');
  if (tools !== undefined) {
    if (typeof tools === 'boolean') s.toolsEnabled = tools;
    else bad('tools.enabled', 'true or false', tools);
  }
  const alt = get('altTextDiagnostics.enabled');
  if (alt !== undefined) {
    if (typeof alt === 'boolean') s.altTextDiagnostics = alt;
    else bad('altTextDiagnostics.enabled', 'true or false', alt);
  }
  const remote = get('remote.url');
  if (remote !== undefined) {
    if (typeof remote === 'string' && (remote.trim() === '' || /^wss?:\/\/\S+$/i.test(remote.trim()))) s.remoteUrl = remote.trim();
    else bad('remote.url', 'a ws:// or wss:// URL (empty for the local daemon)', remote);
  }
  const ca = get('remote.tlsCa');
  if (ca !== undefined) {
    if (typeof ca === 'string') s.remoteTlsCa = ca.trim();
    else bad('remote.tlsCa', 'a path to a PEM certificate file (empty for the system certificates)', ca);
  }
  const nodePath = get('daemon.nodePath');
  if (nodePath !== undefined) {
    if (typeof nodePath === 'string') s.nodePath = nodePath.trim();
    else bad('daemon.nodePath', 'a path to a node executable (empty for the default)', nodePath);
  }
  const backend = get('backend.kind');
  if (backend !== undefined) {
    if (typeof backend === 'string' && (BACKEND_KINDS as readonly string[]).includes(backend)) s.backend = backend as BackendKind;
    else bad('backend.kind', `one of ${BACKEND_KINDS.join(', ')}`, backend);
  }
  const baseUrl = get('backend.baseUrl');
  if (baseUrl !== undefined) {
    if (typeof baseUrl === 'string' && (baseUrl.trim() === '' || isServerUrl(baseUrl.trim()))) s.backendBaseUrl = baseUrl.trim();
    else bad('backend.baseUrl', 'an http:// or https:// URL without credentials or query, e.g. http://127.0.0.1:11434/v1 (the key goes in "Set Backend API Key…")', baseUrl);
  }
  const backendModel = get('backend.model');
  if (backendModel !== undefined) {
    if (typeof backendModel === 'string') s.backendModel = backendModel.trim();
    else bad('backend.model', "the id of a model the server serves (its GET /v1/models lists them)", backendModel);
  }
  const backendTools = get('backend.tools');
  if (backendTools !== undefined) {
    if (typeof backendTools === 'string' && (BACKEND_TOOL_MODES as readonly string[]).includes(backendTools)) s.backendTools = backendTools as BackendToolMode;
    else bad('backend.tools', `one of ${BACKEND_TOOL_MODES.join(', ')}`, backendTools);
  }
  return { settings: s, problems };
}

/**
 * The `graphTuning` the daemon gets: `false` with `graphTuning.enabled` off, else an object naming
 * the passes switched off (`{}` when every pass is on).
 */
export function toGraphTuning(s: LensSettings): GraphTuningPasses | false {
  if (!s.graphTuning.enabled) return false;
  const passes: GraphTuningPasses = {};
  for (const pass of GRAPH_TUNING_PASSES) if (!s.graphTuning[pass]) passes[pass] = false;
  return passes;
}

/** What `serve --base-url` accepts: http(s), no user, password or query (the key travels apart). */
function isServerUrl(v: string): boolean {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return false;
  }
  return (u.protocol === 'http:' || u.protocol === 'https:') && !u.username && !u.password && !u.search;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; expected: string };

/** A precision name for all files, or `{vision_encoder?, embed_tokens?, decoder_model_merged?}`. */
export function parseDtype(v: unknown): Parsed<DtypeSpec> {
  const expected = `one of ${DTYPES.join(', ')}, or an object {${MODEL_FILE_ROLES.join(', ')}} of those`;
  const isName = (x: unknown): x is string => typeof x === 'string' && (DTYPES as readonly string[]).includes(x);
  if (isName(v)) return { ok: true, value: v };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, expected };
  const out: Partial<Record<ModelFileRole, string>> = {};
  for (const [key, value] of Object.entries(v)) {
    if (!(MODEL_FILE_ROLES as readonly string[]).includes(key) || !isName(value)) return { ok: false, expected };
    out[key as ModelFileRole] = value;
  }
  return Object.keys(out).length > 0 ? { ok: true, value: out } : { ok: false, expected };
}

/**
 * How to spawn the local daemon: the `serve` flags after `serve` (the transport flag,
 * `--node-ipc`, is vscode-languageclient's to add) and the variables to add to its environment.
 * With `backend` 'openai': `--backend openai --base-url … --backend-model … --backend-tools …`,
 * and with an API key (`apiKey`, from SecretStorage) `--api-key-env LLAVA_LENS_BACKEND_API_KEY`
 * plus that variable — the key itself is never an argument. Not ok when the base URL or the model
 * is not set (`missing` names the setting, `message` says what to put there).
 */
export type DaemonSpawn =
  | { ok: true; args: string[]; env: Record<string, string> }
  | { ok: false; missing: 'backend.baseUrl' | 'backend.model'; message: string };

export function toDaemonSpawn(s: LensSettings, apiKey: string | undefined): DaemonSpawn {
  if (s.backend === 'onnx') return { ok: true, args: [], env: {} };
  const using = `${SECTION}.backend.kind is "openai"`;
  if (!s.backendBaseUrl) {
    return {
      ok: false,
      missing: 'backend.baseUrl',
      message: `${using} but ${SECTION}.backend.baseUrl is empty: set it to the server's API, e.g. http://127.0.0.1:11434/v1 (Ollama) or http://gpu-box:8000/v1 (vLLM), or set ${SECTION}.backend.kind to "onnx" for the local model.`,
    };
  }
  if (!s.backendModel) {
    return {
      ok: false,
      missing: 'backend.model',
      message: `${using} but ${SECTION}.backend.model is empty: set it to the id of a model ${s.backendBaseUrl} serves (its GET /models lists them, e.g. llava:7b in Ollama).`,
    };
  }
  const key = apiKey?.trim();
  return {
    ok: true,
    args: ['--backend', 'openai', '--base-url', s.backendBaseUrl, '--backend-model', s.backendModel, '--backend-tools', s.backendTools, ...(key ? ['--api-key-env', BACKEND_API_KEY_ENV] : [])],
    env: key ? { [BACKEND_API_KEY_ENV]: key } : {},
  };
}

/**
 * `initialize.initializationOptions` for the daemon. `modelPath` is the folder to load (the
 * configured one, or the embedded default's folder). A remote daemon gets none: its model, model
 * folders, device and limits are its operator's choice, and this machine's paths mean nothing there.
 * A daemon on a serving engine (`backend` 'openai') gets only the image limit: its model is
 * `backend.model` on the server (a spawn flag), so no folder, device or precision applies.
 */
export function toInitializationOptions(s: LensSettings, modelPath: string | undefined): LensInitializationOptions {
  if (s.remoteUrl) return {};
  if (s.backend === 'openai') return { maxImageMegapixels: s.maxImageMegapixels };
  const init: LensInitializationOptions = {
    modelRoots: [...s.modelFolders],
    device: s.device,
    maxImageMegapixels: s.maxImageMegapixels,
  };
  if (modelPath) init.model = modelPath;
  if (s.dtype !== undefined) init.dtype = s.dtype;
  const graphTuning = toGraphTuning(s);
  if (graphTuning === false || Object.keys(graphTuning).length > 0) init.graphTuning = graphTuning;
  return init;
}

/**
 * `lens/loadModel` of the configured model into the running local daemon (after a settings
 * change). `graphTuning` is always sent, `{}` included: the daemon would otherwise fall back to
 * the `initializationOptions.graphTuning` it started with, which the change may have undone.
 */
export function toLoadModelParams(s: LensSettings, modelPath: string): LoadModelParams {
  return { path: modelPath, device: s.device, ...(s.dtype !== undefined ? { dtype: s.dtype } : {}), graphTuning: toGraphTuning(s) };
}

/**
 * The generation options of a `lens/ask` about `imageCount` images. With `llavaLens.tools.enabled`
 * a question about one image runs the tool loop (the loop works on one image).
 */
export function toAskOptions(s: LensSettings, imageCount = 0): Pick<AskParams, 'maxTokens' | 'temperature' | 'tools'> {
  return { maxTokens: s.maxNewTokens, temperature: s.temperature, ...(s.toolsEnabled && imageCount === 1 ? { tools: true } : {}) };
}

/**
 * What a settings change needs, from the old and new values:
 * - `restartDaemon`: options only given at `initialize` or spawn changed (image limit, node path,
 *   the backend: its kind, or the server, model or tool mode of an 'openai' one);
 * - `reloadModel`: model, precision, device or graph tuning changed (sent as `lens/loadModel`; never to a
 *   remote daemon, whose model is its operator's choice, nor with `backend` 'openai');
 * - `diagnostics`: the alt-text hints were switched;
 * - `remote`: the remote URL or its CA changed: the daemon in use (local or remote) is left and
 *   the new one is used (connected to at once when one was in use).
 * Everything else (tokens, temperature, folders, tools) applies to the next ask or scan by itself.
 */
export interface SettingsEffects {
  restartDaemon: boolean;
  reloadModel: boolean;
  diagnostics: boolean;
  remote: boolean;
}

export function settingsEffects(before: LensSettings, after: LensSettings): SettingsEffects {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const remote = before.remoteUrl !== after.remoteUrl || (after.remoteUrl !== '' && before.remoteTlsCa !== after.remoteTlsCa);
  const local = before.remoteUrl === '' && after.remoteUrl === '';
  const backend =
    before.backend !== after.backend ||
    (after.backend === 'openai' && (before.backendBaseUrl !== after.backendBaseUrl || before.backendModel !== after.backendModel || before.backendTools !== after.backendTools));
  const restartDaemon = local && (before.maxImageMegapixels !== after.maxImageMegapixels || before.nodePath !== after.nodePath || backend);
  return {
    restartDaemon,
    reloadModel: local && !restartDaemon && after.backend === 'onnx' && (before.model !== after.model || !same(before.dtype, after.dtype) || before.device !== after.device || !same(toGraphTuning(before), toGraphTuning(after))),
    diagnostics: before.altTextDiagnostics !== after.altTextDiagnostics,
    remote,
  };
}
