/**
 * `ask --backend openai --base-url URL [--model NAME] [--api-key K | --api-key-env VAR]`: the
 * daemon the CLI spawns hands generation to an OpenAI-compatible server (vLLM, SGLang,
 * llama.cpp's server, Ollama, or a LLaVA Lens daemon's `/v1`). The server is asked for its
 * models first (a wrong URL or key fails here); without `--model` the first one listed is used. The key reaches the daemon through its environment, never its
 * command line.
 */
import { listModels } from '../openai/client';
import { UsageError } from './args';

/** The `util.parseArgs` options of `--backend` and its companions. */
export const BACKEND_OPTIONS = {
  backend: { type: 'string' },
  'base-url': { type: 'string' },
  'api-key': { type: 'string' },
  'api-key-env': { type: 'string' },
  'backend-tools': { type: 'string' },
} as const;

export interface BackendSettings {
  baseUrl: string;
  apiKey?: string;
  /** `--backend-tools`: how `--tools` offers the tools (serve's flag of the same name). */
  tools?: 'api' | 'prompt';
}

type BackendValues = { backend?: string; 'base-url'?: string; 'api-key'?: string; 'api-key-env'?: string; 'backend-tools'?: string };

/** Undefined for the local engine; companions without `--backend openai` are a usage error. */
export function parseBackendArgs(values: BackendValues, env: NodeJS.ProcessEnv = process.env): BackendSettings | undefined {
  const kind = values.backend ?? 'onnx';
  if (kind !== 'onnx' && kind !== 'openai') throw new UsageError(`--backend takes onnx (the local runtime, default) or openai (an OpenAI-compatible server), not "${kind}".`);
  if (kind === 'onnx') {
    const stray = (['base-url', 'api-key', 'api-key-env', 'backend-tools'] as const).find((k) => values[k] !== undefined);
    if (stray) throw new UsageError(`--${stray} only applies with --backend openai.`);
    return undefined;
  }
  const baseUrl = values['base-url'];
  if (baseUrl === undefined) throw new UsageError('--backend openai needs --base-url, e.g. http://127.0.0.1:11434/v1 (Ollama) or http://gpu-box:8000/v1 (vLLM).');
  let u: URL;
  try {
    u = new URL(baseUrl);
  } catch {
    throw new UsageError(`--base-url: "${baseUrl}" is not a URL; use http(s)://host:port/v1.`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--base-url: "${baseUrl}" must be an http:// or https:// URL.`);
  if (u.username || u.password || u.search) throw new UsageError('--base-url: put no credentials or query in the URL; pass the key with --api-key-env VAR.');
  if (values['api-key'] !== undefined && values['api-key-env'] !== undefined) throw new UsageError('pass the key once: --api-key or --api-key-env, not both.');
  let apiKey = values['api-key'];
  const keyEnv = values['api-key-env'];
  if (keyEnv !== undefined) {
    apiKey = env[keyEnv]?.trim();
    if (!apiKey) throw new UsageError(`--api-key-env ${keyEnv}: that environment variable is not set (or empty).`);
  }
  const tools = values['backend-tools'];
  if (tools !== undefined && tools !== 'api' && tools !== 'prompt') throw new UsageError(`--backend-tools takes api (OpenAI tools, default) or prompt (tools described in a system prompt), not "${tools}".`);
  return { baseUrl, ...(apiKey ? { apiKey } : {}), ...(tools ? { tools } : {}) };
}

const KEY_VAR = 'LLAVA_LENS_BACKEND_API_KEY';

/**
 * The `serve --stdio` flags and environment for a daemon on this backend, and the model it will
 * ask: `model`, else the first the server lists. Rejects (LensError BackendFailed) when the
 * server cannot be reached or refuses, so a wrong URL or key fails before anything starts.
 */
export async function backendDaemon(b: BackendSettings, model: string | undefined): Promise<{ model: string; args: string[]; env: NodeJS.ProcessEnv }> {
  const ids = (await listModels(b)).map((m) => m.id);
  const name = model ?? ids[0];
  if (name === undefined) throw new UsageError(`${b.baseUrl} lists no models: name one with --model NAME.`);
  if (ids.length > 0 && !ids.includes(name)) {
    throw new UsageError(`--model: ${b.baseUrl} does not serve "${name}"; it serves ${ids.slice(0, 8).map((i) => JSON.stringify(i)).join(', ')}${ids.length > 8 ? ', …' : ''}.`);
  }
  const args = ['--backend', 'openai', '--base-url', b.baseUrl, '--backend-model', name, ...(b.apiKey ? ['--api-key-env', KEY_VAR] : []), ...(b.tools ? ['--backend-tools', b.tools] : [])];
  const env = { ...process.env, ...(b.apiKey ? { [KEY_VAR]: b.apiKey } : {}) };
  return { model: name, args, env };
}
