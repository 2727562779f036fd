/**
 * Where pulls go and how they reach the Hub, from the environment (explicit options win; see
 * pull.ts):
 *
 * - endpoint: `HF_ENDPOINT` (a mirror such as https://hf-mirror.com), else https://huggingface.co;
 * - token: `HF_TOKEN`, else the legacy `HUGGING_FACE_HUB_TOKEN`, else the file `huggingface-cli
 *   login` writes (`HF_TOKEN_PATH`, else `$HF_HOME/token`, else `$XDG_CACHE_HOME/huggingface/token`
 *   or `~/.cache/huggingface/token`), as huggingface_hub reads them. It is sent to the endpoint's
 *   origin only — with a mirror, to the mirror;
 * - models folder: `LLAVA_LENS_MODELS_DIR`, else `<cache>/models` (the folder of the embedded
 *   test model, cli/defaultModel.ts); a repository `owner/name` lands in `<models>/owner/name`;
 * - proxies: proxy.ts.
 */
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cacheDir } from '../cli/defaultModel';
import { DEFAULT_ENDPOINT } from './hubApi';

export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  const v = env.HF_ENDPOINT?.trim();
  return v ? v.replace(/\/+$/, '') : DEFAULT_ENDPOINT;
}

/** The token file huggingface_hub uses. */
export function hubTokenPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_TOKEN_PATH) return path.resolve(env.HF_TOKEN_PATH);
  const home = env.HF_HOME ? path.resolve(env.HF_HOME) : path.join(env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(home, 'token');
}

/** The access token, or undefined when none is configured. */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const direct = (env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN)?.trim();
  if (direct) return direct;
  try {
    const fromFile = readFileSync(hubTokenPath(env), 'utf8').trim();
    return fromFile !== '' ? fromFile : undefined;
  } catch {
    return undefined;
  }
}

export function defaultModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  const v = env.LLAVA_LENS_MODELS_DIR?.trim();
  return v ? path.resolve(v) : path.join(cacheDir(env), 'models');
}

/** `<modelsDir>/owner/name` for `owner/name`. */
export function modelFolderFor(modelsDir: string, repo: string): string {
  return path.join(path.resolve(modelsDir), ...repo.split('/'));
}
