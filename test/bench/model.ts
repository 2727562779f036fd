/**
 * The bench model: the `bench` test-model preset (llava-onevision-qwen2-0.5b dimensions, 4-bit
 * decoder), generated once into a cache folder, plus a single-view twin of it.
 *
 * transformers.js runs LLaVA-OneVision without anyres tiling: one 384×384 view, 729 image
 * tokens. Ours tiles (base view + up to 9 tiles, several thousand tokens) when the folder asks for
 * it. To compare the same work, the twin folder has the same ONNX files (linked) and JSON files
 * without the anyres grid, so both sides run one view and the same ~760-token prompt.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTestModel } from '../../server/src/testmodel';

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LLAVA_LENS_CACHE) return env.LLAVA_LENS_CACHE;
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'llava-lens');
}

const MARKER = 'config.json';

/** Generates the bench preset into `dir` unless it is already there. Returns seconds spent generating (0 when reused). */
export async function ensureBenchModel(dir: string, log: (m: string) => void): Promise<number> {
  const files = ['vision_encoder.onnx', 'embed_tokens.onnx', 'decoder_model_merged.onnx'].map((f) => path.join(dir, 'onnx', f));
  if (fs.existsSync(path.join(dir, MARKER)) && files.every((f) => fs.existsSync(f))) return 0;
  const t = performance.now();
  log(`generating the bench model into ${dir} (~2.5 GB, about 30 s)`);
  const tmp = `${dir}.partial`;
  fs.rmSync(tmp, { recursive: true, force: true });
  await makeTestModel(tmp, { preset: 'bench', onProgress: (m) => log(`  ${m}`) });
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  return (performance.now() - t) / 1000;
}

/** The single-view twin of `dir` (see the module doc); (re)written every run, cheap. */
export function singleViewTwin(dir: string): string {
  const twin = `${dir}-single-view`;
  fs.mkdirSync(twin, { recursive: true });
  const onnxLink = path.join(twin, 'onnx');
  const target = path.join(dir, 'onnx');
  let linked = false;
  try {
    linked = fs.realpathSync(onnxLink) === fs.realpathSync(target);
  } catch {
    linked = false;
  }
  if (!linked) {
    fs.rmSync(onnxLink, { recursive: true, force: true });
    fs.symlinkSync(target, onnxLink, process.platform === 'win32' ? 'junction' : 'dir');
  }
  for (const name of fs.readdirSync(dir)) {
    if (!name.endsWith('.json')) continue;
    const j = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
    delete j.image_grid_pinpoints;
    delete j.vision_aspect_ratio;
    if (name === 'preprocessor_config.json') j.do_pad = false;
    fs.writeFileSync(path.join(twin, name), JSON.stringify(j, null, 2) + '\n');
  }
  return twin;
}

/** Bytes of the decoder graph file and its external data (≈ weight bytes read per decoded token). */
export function decoderBytes(dir: string): number {
  const onnxDir = path.join(dir, 'onnx');
  return fs
    .readdirSync(onnxDir)
    .filter((n) => n === 'decoder_model_merged.onnx' || n.startsWith('decoder_model_merged.onnx_data'))
    .reduce((n, f) => n + fs.statSync(path.join(onnxDir, f)).size, 0);
}
