/**
 * Which model the CLI uses: `--model`, else `$LLAVA_LENS_MODEL`, else the embedded default — the
 * `tiny-onevision` test model, generated on first use into the cache folder. It is generated into
 * a temporary sibling and renamed into place, so a half-written folder is never used.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTestModel } from '../testmodel';

export const DEFAULT_PRESET = 'tiny-onevision';

export const TEST_MODEL_NOTICE =
  'Note: using the embedded tiny test model (tiny-onevision). It has random weights, so its answers ' +
  'are meaningless text; it only shows that the pipeline works.\n' +
  'To ask a real model, pass --model DIR or set LLAVA_LENS_MODEL (see README, "Using a real model").';

/** `$LLAVA_LENS_CACHE`, else `$XDG_CACHE_HOME/llava-lens`, else `~/.cache/llava-lens`. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LLAVA_LENS_CACHE) return path.resolve(env.LLAVA_LENS_CACHE);
  if (env.XDG_CACHE_HOME) return path.join(path.resolve(env.XDG_CACHE_HOME), 'llava-lens');
  return path.join(os.homedir(), '.cache', 'llava-lens');
}

export interface ModelChoice {
  path: string;
  /** True for the embedded default (print `TEST_MODEL_NOTICE`). */
  embedded: boolean;
}

async function isModelFolder(dir: string): Promise<boolean> {
  return fs.stat(path.join(dir, 'config.json')).then((s) => s.isFile(), () => false);
}

/** Generates the embedded default model unless it is already in the cache; returns its folder. */
export async function ensureDefaultModel(log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const final = path.join(cacheDir(env), 'models', DEFAULT_PRESET);
  if (await isModelFolder(final)) return final;
  await fs.mkdir(path.dirname(final), { recursive: true });
  const tmp = await fs.mkdtemp(`${final}.tmp-`);
  log(`Generating the embedded test model into ${final} (first run only)…`);
  try {
    await makeTestModel(tmp, { preset: DEFAULT_PRESET });
    try {
      await fs.rename(tmp, final);
    } catch (e) {
      // Another process finished first: use its folder.
      if (!(await isModelFolder(final))) throw e;
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return final;
}

/** Picks the model for `ask`/`demo`. */
export async function chooseModel(flag: string | undefined, log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<ModelChoice> {
  const explicit = flag ?? env.LLAVA_LENS_MODEL;
  if (explicit) return { path: path.resolve(explicit), embedded: false };
  return { path: await ensureDefaultModel(log, env), embedded: true };
}
