/**
 * Which files of a repository a pull needs (the model-folder contract of
 * ../shared/design/lmm-runtime.md §1 and runtime/modelFolder.ts):
 *
 * - the JSON and tokenizer files at the top level (config, generation and preprocessor config,
 *   processor config, tokenizer, chat template, the model card and licence), never weights in
 *   other formats (`*.safetensors`, `*.bin`, `*.gguf`), videos or images;
 * - per role (`vision_encoder`, `embed_tokens`, `decoder_model_merged`) exactly one precision:
 *   `onnx/<role><suffix>.onnx` plus its external data `onnx/<role><suffix>.onnx_data`,
 *   `…onnx_data_1`, … when the repository has them.
 *
 * Pure: works on a listing, no I/O. Throws LensError(InvalidParams) for a precision the
 * repository lacks (naming those it has) and InvalidModelFolder for a repository that is not in
 * this layout.
 */
import { LensError, LensErrorCode } from '../../../common/errors';
import { DTYPE_SUFFIX, FILE_ROLES } from '../runtime/modelFolder';
import type { Dtype, DtypeSpec, ModelFileRole } from '../runtime/types';
import { isSafeRepoPath, type HubFile, type RepoListing } from './hubApi';

/** Top-level files copied when present. */
export const METADATA_FILES: readonly string[] = [
  'config.json',
  'generation_config.json',
  'preprocessor_config.json',
  'processor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'chat_template.jinja',
  'chat_template.json',
  'README.md',
  'LICENSE',
  'LICENSE.md',
  'LICENSE.txt',
];

/** Top-level files the runtime cannot load without. */
export const REQUIRED_FILES: readonly string[] = ['config.json', 'preprocessor_config.json', 'tokenizer.json'];

/**
 * The default choice when the user names no precision and the catalogue has no entry: per role,
 * the first precision present. Half precision for the vision encoder and embeddings and 4-bit for
 * the decoder is what transformers.js recommends for these 0.5B models, and runs on every
 * onnxruntime execution provider, including the CPU.
 */
export const DEFAULT_PULL_PREFERENCE: Readonly<Record<ModelFileRole, readonly Dtype[]>> = {
  vision_encoder: ['fp16', 'fp32', 'q4f16', 'quantized', 'int8', 'uint8', 'q4', 'bnb4'],
  embed_tokens: ['fp16', 'fp32', 'quantized', 'int8', 'uint8', 'q4', 'q4f16', 'bnb4'],
  decoder_model_merged: ['q4', 'q4f16', 'fp16', 'quantized', 'int8', 'uint8', 'fp32', 'bnb4'],
};

/** Precisions per role present in a listing (canonical names: `quantized`, not `q8`). */
export function availableDtypes(files: readonly HubFile[]): Record<ModelFileRole, Dtype[]> {
  const names = new Set(files.map((f) => f.path));
  const out = {} as Record<ModelFileRole, Dtype[]>;
  for (const role of FILE_ROLES) {
    out[role] = Object.entries(DTYPE_SUFFIX)
      .filter(([d, suffix]) => d !== 'q8' && names.has(`onnx/${role}${suffix}.onnx`))
      .map(([d]) => d);
  }
  return out;
}

export interface Selection {
  /** Chosen precision per role. */
  dtype: Record<ModelFileRole, Dtype>;
  /** Files to fetch, metadata first, then graphs with their external data. */
  files: HubFile[];
  /** Sum of their sizes, bytes. */
  bytes: number;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Picks the files for `dtype` (a precision for every role, or per role; roles left out use
 * `fallback`, then DEFAULT_PULL_PREFERENCE).
 */
export function selectFiles(listing: RepoListing, dtype: DtypeSpec | undefined, fallback?: DtypeSpec): Selection {
  const files = listing.files.filter((f) => isSafeRepoPath(f.path));
  const have = availableDtypes(files);
  const byPath = new Map(files.map((f) => [f.path, f]));
  const missingRequired = REQUIRED_FILES.filter((f) => !byPath.has(f));
  const noGraphs = FILE_ROLES.filter((r) => have[r].length === 0);
  if (missingRequired.length > 0 || noGraphs.length > 0) {
    const lacks = [...missingRequired, ...noGraphs.map((r) => `onnx/${r}*.onnx`)].join(', ');
    throw new LensError(
      LensErrorCode.InvalidModelFolder,
      `${listing.repo} (${listing.commit.slice(0, 12)}) has no ${lacks}: it is not a LLaVA-family ONNX export in the layout LLaVA Lens reads ` +
        `(config.json, tokenizer.json, onnx/vision_encoder, embed_tokens, decoder_model_merged). "llava-lens pull --list" shows repositories that are.`,
    );
  }
  const wantedFor = (spec: DtypeSpec | undefined, role: ModelFileRole): string | undefined => (typeof spec === 'string' ? spec : spec?.[role]);
  const chosen = {} as Record<ModelFileRole, Dtype>;
  for (const role of FILE_ROLES) {
    const asked = wantedFor(dtype, role);
    if (asked !== undefined) {
      const canonical = asked === 'q8' ? 'quantized' : asked;
      if (!(asked in DTYPE_SUFFIX) || !have[role].includes(canonical)) {
        throw new LensError(
          LensErrorCode.InvalidParams,
          `${listing.repo} has no ${role} in ${asked}: it has ${have[role].join(', ')}; pick one of those (e.g. --dtype ${role}=${have[role][0]}).`,
        );
      }
      chosen[role] = canonical;
      continue;
    }
    const hint = wantedFor(fallback, role);
    const order = [...(hint !== undefined ? [hint === 'q8' ? 'quantized' : hint] : []), ...DEFAULT_PULL_PREFERENCE[role]];
    chosen[role] = order.find((d) => have[role].includes(d)) ?? have[role][0];
  }

  const out: HubFile[] = METADATA_FILES.filter((f) => byPath.has(f)).map((f) => byPath.get(f)!);
  for (const role of FILE_ROLES) {
    const stem = `onnx/${role}${DTYPE_SUFFIX[chosen[role]]}`;
    const data = new RegExp(`^${escapeRe(stem)}\\.onnx_data(?:_\\d+)?$`);
    out.push(byPath.get(`${stem}.onnx`)!);
    out.push(...files.filter((f) => data.test(f.path)).sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true })));
  }
  return { dtype: chosen, files: out, bytes: out.reduce((n, f) => n + Math.max(0, f.size), 0) };
}
