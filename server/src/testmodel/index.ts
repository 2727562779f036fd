/**
 * Deterministic generator of complete tiny LLaVA-family model folders in the Hugging Face ONNX
 * layout (config/tokenizer/processor JSON + onnx/vision_encoder, embed_tokens,
 * decoder_model_merged), used by `llava-lens make-test-model`, by tests, and for the embedded
 * default model.
 *
 * Same preset + config + seed + options => byte-identical files.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configJson, FolderContext, generationConfigJson, preprocessorConfigJson, processorConfigJson, readme } from './folderFiles';
import { buildDecoder } from './graphs/decoder';
import { buildEmbedTokens } from './graphs/embed';
import { buildVisionEncoder } from './graphs/vision';
import { GraphBuilder, Precision } from './onnx/builder';
import { writeModel } from './onnx/writer';
import { PRESET_NAMES, PresetName, resolveSpec } from './presets';
import { buildTokenizer } from './tokenizer/tokenizerFiles';

export type { PresetName } from './presets';
export { describePresets, PRESET_NAMES } from './presets';

export type Variant = 'fp16' | 'q4';
export const VARIANTS: readonly Variant[] = ['fp16', 'q4'];

export interface MakeTestModelOptions {
  preset: PresetName;
  /** Deep-merged overrides: `{ text: {...}, vision: {...}, tokenizer: {...} }` (see `describePresets()`). Unknown keys throw. */
  config?: Record<string, unknown>;
  /** Default 0; an integer in [0, 2^32). */
  seed?: number;
  /** Write every graph's weights to `<file>.onnx_data`. Otherwise only files that would pass ~1.8 GB do. */
  externalData?: boolean;
  /** Extra precision files: `fp16` (all three graphs, `_fp16`), `q4` (`decoder_model_merged_q4`). */
  variants?: string[];
  onProgress?: (msg: string) => void;
}

/** One ONNX file to write. */
interface GraphJob {
  file: string;
  precision: Precision;
  build: () => GraphBuilder;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function writeJson(dir: string, name: string, obj: unknown, files: string[]): void {
  fs.writeFileSync(path.join(dir, name), JSON.stringify(obj, null, 2) + '\n');
  files.push(name);
}

/**
 * Writes a complete model folder into `dir` (created if missing; files of the same names are
 * overwritten, other files are left alone). Returns the written paths relative to `dir`
 * (`.onnx_data` files included). Throws on invalid options before writing anything.
 * Not safe to run twice concurrently on the same `dir`.
 */
export async function makeTestModel(dir: string, opts: MakeTestModelOptions): Promise<{ files: string[] }> {
  if (!PRESET_NAMES.includes(opts.preset)) {
    throw new Error(`testmodel: unknown preset "${opts.preset}"; valid presets: ${PRESET_NAMES.join(', ')}`);
  }
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`testmodel: seed must be an integer in [0, 2^32), got ${seed}`);
  const variants = opts.variants ?? [];
  for (const v of variants) {
    if (!(VARIANTS as string[]).includes(v)) throw new Error(`testmodel: unknown variant "${v}"; valid variants: ${VARIANTS.join(', ')}`);
  }
  const overrides = opts.config ?? {};
  const spec = resolveSpec(opts.preset, overrides);
  const tok = buildTokenizer(spec.family, spec.tokenizer.numMerges, spec.text.maxPositions);
  const vocabRows = spec.text.vocabSize || tok.size;
  if (vocabRows < tok.size) {
    throw new Error(`testmodel config: text.vocabSize: ${vocabRows} is smaller than the tokenizer (${tok.size} ids)`);
  }
  const progress = opts.onProgress ?? (() => {});

  const jobs: GraphJob[] = [
    { file: 'vision_encoder.onnx', precision: 'fp32', build: () => buildVisionEncoder(spec, 'fp32', seed) },
    { file: 'embed_tokens.onnx', precision: 'fp32', build: () => buildEmbedTokens(spec, vocabRows, 'fp32', seed) },
    {
      file: 'decoder_model_merged.onnx',
      precision: spec.defaultDecoderPrecision,
      build: () => buildDecoder(spec, vocabRows, spec.defaultDecoderPrecision, seed),
    },
  ];
  if (variants.includes('fp16')) {
    jobs.push(
      { file: 'vision_encoder_fp16.onnx', precision: 'fp16', build: () => buildVisionEncoder(spec, 'fp16', seed) },
      { file: 'embed_tokens_fp16.onnx', precision: 'fp16', build: () => buildEmbedTokens(spec, vocabRows, 'fp16', seed) },
      { file: 'decoder_model_merged_fp16.onnx', precision: 'fp16', build: () => buildDecoder(spec, vocabRows, 'fp16', seed) },
    );
  }
  if (variants.includes('q4')) {
    jobs.push({ file: 'decoder_model_merged_q4.onnx', precision: 'q4', build: () => buildDecoder(spec, vocabRows, 'q4', seed) });
  }

  const onnxDir = path.join(dir, 'onnx');
  fs.mkdirSync(onnxDir, { recursive: true });
  const files: string[] = [];
  const externalFiles: string[] = [];
  for (const job of jobs) {
    const started = Date.now();
    progress(`writing onnx/${job.file} (${job.precision})`);
    await tick();
    const res = writeModel(path.join(onnxDir, job.file), job.build(), { external: opts.externalData ? true : 'auto' });
    for (const f of res.files) files.push(path.relative(dir, f).split(path.sep).join('/'));
    if (res.external) externalFiles.push(job.file);
    progress(`wrote onnx/${job.file}: ${(res.bytes / 1e6).toFixed(1)} MB in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  const ctx: FolderContext = { spec, tok, vocabRows, externalFiles };
  writeJson(dir, 'config.json', configJson(ctx), files);
  writeJson(dir, 'generation_config.json', generationConfigJson(ctx), files);
  writeJson(dir, 'preprocessor_config.json', preprocessorConfigJson(ctx), files);
  writeJson(dir, 'processor_config.json', processorConfigJson(ctx), files);
  writeJson(dir, 'tokenizer.json', tok.tokenizerJson, files);
  writeJson(dir, 'tokenizer_config.json', tok.tokenizerConfig, files);
  writeJson(dir, 'special_tokens_map.json', tok.specialTokensMap, files);
  fs.writeFileSync(path.join(dir, 'README.md'), readme(ctx, opts.preset, seed, overrides, jobs.map((j) => `onnx/${j.file}`)));
  files.push('README.md');
  progress(`done: ${files.length} files in ${dir}`);
  return { files };
}
