/**
 * `llava-lens serve` flags. One of `--stdio`, `--node-ipc`, `--ws <port>`; the limits, the
 * backend (`--backend openai --base-url URL --backend-model NAME [--api-key-env VAR]`) and the
 * graph tuning switches (`--no-graph-tuning`, `--tuning-off P,…`) apply to every mode (a private
 * daemon rarely needs the limits); the rest only to `--ws`. Errors are thrown as plain `Error`s
 * whose message names the flag; the caller prints usage and exits 2.
 */
import { parseArgs } from 'node:util';
import { DEVICES, DTYPES } from '../../../common/protocol';
import type { Device, GraphTuningPasses } from '../../../common/protocol';
import { GRAPH_TUNING_OPTIONS, parseGraphTuningFlags } from '../cli/args';
import type { DaemonLimits } from './access';
import { isLoopback } from './wsServer';

/** Generation on an OpenAI-compatible server instead of the local ONNX runtime. */
export interface BackendFlags {
  kind: 'openai';
  /** e.g. http://127.0.0.1:8000/v1 */
  baseUrl: string;
  model: string;
  /** The environment variable holding the API key (the key itself never goes on a command line). */
  apiKeyEnv?: string;
  /** How the tool loop offers its tools: as OpenAI `tools` (default), or in a system prompt (servers or models without tool calling). */
  tools: 'api' | 'prompt';
}

export interface ServeFlags {
  mode: 'stdio' | 'ipc' | 'ws';
  backend?: BackendFlags;
  port?: number;
  host: string;
  allowRemote: boolean;
  allowedOrigins: string[];
  tlsCert?: string;
  tlsKey?: string;
  stateDir?: string;
  noPersist: boolean;
  model?: string;
  modelRoots: string[];
  device?: Device;
  dtype?: string;
  /** `--no-graph-tuning` (false) / `--tuning-off P,…`: the default of every load that names none (all modes). */
  graphTuning?: GraphTuningPasses | false;
  maxHistoryTurns?: number;
  /** KV cache kept over all conversations, MiB. */
  maxKvMb?: number;
  /** KV cache kept per client, MiB. */
  maxKvMbPerClient?: number;
  maxMessageBytes?: number;
  maxConnections?: number;
  limits: Partial<DaemonLimits>;
}

function int(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new Error(`--${name} expects an integer >= ${min}; got "${v}".`);
  return n;
}

export function parseServeFlags(argv: string[]): ServeFlags {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        stdio: { type: 'boolean' },
        'node-ipc': { type: 'boolean' },
        ws: { type: 'string' },
        host: { type: 'string' },
        'allow-remote': { type: 'boolean' },
        'allow-origin': { type: 'string', multiple: true },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'state-dir': { type: 'string' },
        'no-persist': { type: 'boolean' },
        model: { type: 'string' },
        'model-root': { type: 'string', multiple: true },
        device: { type: 'string' },
        dtype: { type: 'string' },
        'max-history-turns': { type: 'string' },
        'max-kv-mb': { type: 'string' },
        'max-kv-mb-per-client': { type: 'string' },
        'queue-limit': { type: 'string' },
        'max-message-bytes': { type: 'string' },
        'max-connections': { type: 'string' },
        'max-image-bytes': { type: 'string' },
        'max-image-megapixels': { type: 'string' },
        'max-prompt-tokens': { type: 'string' },
        'max-new-tokens': { type: 'string' },
        'max-conversations': { type: 'string' },
        'requests-per-minute': { type: 'string' },
        'keep-conversations-minutes': { type: 'string' },
        backend: { type: 'string' },
        'base-url': { type: 'string' },
        'backend-model': { type: 'string' },
        'api-key-env': { type: 'string' },
        'backend-tools': { type: 'string' },
        ...GRAPH_TUNING_OPTIONS,
        // accepted for node-ipc spawns (vscode-languageclient appends it)
        clientProcessId: { type: 'string' },
      },
    });
  } catch (e) {
    throw new Error((e as Error).message);
  }
  const v = parsed.values;
  const modes = [v.stdio && 'stdio', v['node-ipc'] && 'ipc', v.ws !== undefined && 'ws'].filter(Boolean) as ServeFlags['mode'][];
  if (modes.length !== 1) throw new Error('choose exactly one of --stdio, --node-ipc or --ws <port>.');
  const mode = modes[0];
  const wsOnly = ['host', 'allow-remote', 'allow-origin', 'tls-cert', 'tls-key', 'model', 'model-root', 'device', 'dtype', 'max-history-turns', 'max-kv-mb', 'max-kv-mb-per-client', 'max-connections', 'max-message-bytes', 'keep-conversations-minutes'] as const;
  if (mode !== 'ws') {
    const stray = wsOnly.filter((k) => v[k] !== undefined);
    if (stray.length) throw new Error(`${stray.map((k) => `--${k}`).join(', ')} only apply to --ws (a private daemon takes these from its client's initializationOptions).`);
  }
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new Error('--tls-cert and --tls-key go together.');
  if (v.device !== undefined && !(DEVICES as readonly string[]).includes(v.device)) throw new Error(`--device: use one of ${DEVICES.join(', ')}.`);
  if (v.dtype !== undefined && !(DTYPES as readonly string[]).includes(v.dtype)) throw new Error(`--dtype: use one of ${DTYPES.join(', ')}.`);
  const limits: Partial<DaemonLimits> = {};
  const set = <K extends keyof DaemonLimits>(k: K, n: number | undefined) => {
    if (n !== undefined) limits[k] = n;
  };
  set('queueLimit', int('queue-limit', v['queue-limit'], 1));
  set('maxImageBytes', int('max-image-bytes', v['max-image-bytes'], 1));
  const mp = v['max-image-megapixels'];
  if (mp !== undefined) {
    const n = Number(mp);
    if (!(n > 0)) throw new Error(`--max-image-megapixels expects a number > 0; got "${mp}".`);
    limits.maxImagePixels = Math.round(n * 1e6);
  }
  set('maxPromptTokens', int('max-prompt-tokens', v['max-prompt-tokens'], 0));
  set('maxNewTokens', int('max-new-tokens', v['max-new-tokens'], 1));
  set('maxConversationsPerClient', int('max-conversations', v['max-conversations'], 1));
  set('requestsPerMinute', int('requests-per-minute', v['requests-per-minute'], 0));
  const keep = int('keep-conversations-minutes', v['keep-conversations-minutes'], 0);
  if (keep !== undefined) limits.conversationKeepMs = keep * 60_000;
  if (mode === 'ws' && limits.requestsPerMinute === undefined) limits.requestsPerMinute = 600;
  const flags: ServeFlags = {
    mode,
    host: v.host ?? '127.0.0.1',
    allowRemote: v['allow-remote'] ?? false,
    allowedOrigins: v['allow-origin'] ?? [],
    noPersist: v['no-persist'] ?? false,
    modelRoots: v['model-root'] ?? [],
    limits,
  };
  const backend = parseBackend(v);
  if (backend) {
    const local = (['model', 'model-root', 'device', 'dtype', 'max-kv-mb', 'max-kv-mb-per-client', 'no-graph-tuning', 'tuning-off'] as const).filter((k) => v[k] !== undefined);
    if (local.length) throw new Error(`${local.map((k) => `--${k}`).join(', ')} ${local.length > 1 ? 'apply' : 'applies'} to the local ONNX engine, not to --backend openai (name the remote model with --backend-model).`);
    flags.backend = backend;
  }
  if (mode === 'ws') {
    flags.port = int('ws', v.ws, 0);
    if (flags.port! > 65535) throw new Error(`--ws expects a TCP port 0..65535 (0: any free port); got "${v.ws}".`);
    if (!isLoopback(flags.host) && !flags.allowRemote) {
      throw new Error(`refusing to listen on ${flags.host}: that is reachable from other machines. Pass --allow-remote to mean it (and use --tls-cert/--tls-key), or bind 127.0.0.1.`);
    }
  }
  if (v['tls-cert'] !== undefined) flags.tlsCert = v['tls-cert'];
  if (v['tls-key'] !== undefined) flags.tlsKey = v['tls-key'];
  if (v['state-dir'] !== undefined) flags.stateDir = v['state-dir'];
  if (v.model !== undefined) flags.model = v.model;
  if (v.device !== undefined) flags.device = v.device as Device;
  if (v.dtype !== undefined) flags.dtype = v.dtype;
  const graphTuning = parseGraphTuningFlags(v);
  if (graphTuning !== undefined) flags.graphTuning = graphTuning;
  const mht = int('max-history-turns', v['max-history-turns'], 0);
  if (mht !== undefined) flags.maxHistoryTurns = mht;
  const kvAll = int('max-kv-mb', v['max-kv-mb'], 1);
  if (kvAll !== undefined) flags.maxKvMb = kvAll;
  const kvClient = int('max-kv-mb-per-client', v['max-kv-mb-per-client'], 1);
  if (kvClient !== undefined) flags.maxKvMbPerClient = kvClient;
  const mmb = int('max-message-bytes', v['max-message-bytes'], 1024);
  if (mmb !== undefined) flags.maxMessageBytes = mmb;
  const mc = int('max-connections', v['max-connections'], 1);
  if (mc !== undefined) flags.maxConnections = mc;
  return flags;
}

/** `--backend`: undefined for the local ONNX engine (`--backend onnx` or none). */
function parseBackend(v: { backend?: string; 'base-url'?: string; 'backend-model'?: string; 'api-key-env'?: string; 'backend-tools'?: string }): BackendFlags | undefined {
  const kind = v.backend ?? 'onnx';
  if (kind !== 'onnx' && kind !== 'openai') throw new Error(`--backend: use onnx (the local runtime, default) or openai (an OpenAI-compatible server); got "${kind}".`);
  if (kind === 'onnx') {
    const stray = (['base-url', 'backend-model', 'api-key-env', 'backend-tools'] as const).filter((k) => v[k] !== undefined);
    if (stray.length) throw new Error(`${stray.map((k) => `--${k}`).join(', ')} only apply with --backend openai.`);
    return undefined;
  }
  const baseUrl = v['base-url'];
  if (baseUrl === undefined) throw new Error('--backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1 (vLLM) or http://127.0.0.1:11434/v1 (Ollama).');
  let u: URL;
  try {
    u = new URL(baseUrl);
  } catch {
    throw new Error(`--base-url: "${baseUrl}" is not a URL; use http(s)://host:port/v1.`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--base-url: "${baseUrl}" must be an http:// or https:// URL.`);
  if (u.username || u.password || u.search) throw new Error('--base-url: put no credentials or query in the URL; pass the key with --api-key-env VAR.');
  const model = v['backend-model'];
  if (!model) throw new Error('--backend openai needs --backend-model NAME: the model id the server serves (its GET /v1/models lists them).');
  const tools = v['backend-tools'] ?? 'api';
  if (tools !== 'api' && tools !== 'prompt') throw new Error(`--backend-tools: use api (OpenAI tools, default) or prompt (tools described in a system prompt, for servers or models without tool calling); got "${tools}".`);
  const out: BackendFlags = { kind: 'openai', baseUrl, model, tools };
  if (v['api-key-env'] !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(v['api-key-env'])) throw new Error(`--api-key-env takes the NAME of an environment variable; got "${v['api-key-env']}".`);
    out.apiKeyEnv = v['api-key-env'];
  }
  return out;
}
