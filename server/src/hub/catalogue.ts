/**
 * Known-good repositories: LLaVA-family ONNX exports in the layout the runtime reads
 * (onnx/vision_encoder, embed_tokens, decoder_model_merged with precision suffixes, plus
 * config/tokenizer/preprocessor JSON). Any other repository id in that layout works too; this
 * list only offers a choice and a sensible default precision.
 *
 * Sizes are the Hub's file listings (onnx/ folders of the commits "Upload ONNX weights"),
 * rounded, plus ~10 MB of JSON and tokenizer; where a file's size was not seen it is estimated
 * and the variant says so. Memory is an estimate for the CPU: the weights plus ~0.7 GB for
 * activations and a few thousand tokens of KV cache. Both are approximate.
 *
 * No LLaVA-1.5 export in this layout was confirmed to exist, so none is listed (7B exports are
 * also larger than the 2 GB protobuf limit per graph and need `.onnx_data` files).
 */
import type { DtypeSpec } from '../runtime/types';

export interface CatalogueVariant {
  /** Short name shown in lists. */
  label: string;
  dtype: DtypeSpec;
  /** Approximate download, MB (10^6 bytes). */
  approxDownloadMB: number;
  /** Approximate memory to run it on the CPU, MB. */
  approxMemoryMB: number;
  note?: string;
}

export interface CatalogueEntry {
  repo: string;
  title: string;
  /** Architecture in one line. */
  architecture: string;
  licence: string;
  /** The first variant is the default of `llava-lens pull <repo>`. */
  variants: readonly CatalogueVariant[];
}

const OVERHEAD_MB = 700;
const META_MB = 10;

function variant(label: string, dtype: DtypeSpec, filesMB: number[], note?: string): CatalogueVariant {
  const download = filesMB.reduce((a, b) => a + b, META_MB);
  return { label, dtype, approxDownloadMB: Math.round(download / 10) * 10, approxMemoryMB: Math.round((download + OVERHEAD_MB) / 100) * 100, ...(note ? { note } : {}) };
}

export const CATALOGUE: readonly CatalogueEntry[] = [
  {
    repo: 'llava-hf/llava-onevision-qwen2-0.5b-ov-hf',
    title: 'LLaVA-OneVision 0.5B',
    architecture: 'SigLIP-400M/14 at 384 px (anyres tiling) + Qwen2-0.5B, ChatML',
    licence: 'apache-2.0',
    variants: [
      // vision_encoder_fp16 800 MB, embed_tokens_fp16 272 MB, decoder_model_merged_q4 327 MB
      variant('fp16 vision, q4 decoder', { vision_encoder: 'fp16', embed_tokens: 'fp16', decoder_model_merged: 'q4' }, [800, 272, 327], "the mix transformers.js's example uses"),
      // int8 vision 404 MB, fp32 embeddings 545 MB, int8 decoder 512 MB
      variant('int8', { vision_encoder: 'int8', embed_tokens: 'fp32', decoder_model_merged: 'int8' }, [404, 545, 512]),
      variant('fp16', 'fp16', [800, 272, 997]),
      // fp32 vision encoder not seen: estimated at twice its fp16 file
      variant('fp32', 'fp32', [1600, 545, 1990], 'vision encoder size estimated'),
    ],
  },
  {
    repo: 'llava-hf/llava-interleave-qwen-0.5b-hf',
    title: 'LLaVA-Interleave 0.5B',
    architecture: 'SigLIP-400M/14 at 384 px + Qwen1.5-0.5B (LLaVA-NeXT-Interleave), multi-image',
    licence: 'tongyi-qianwen-research',
    variants: [
      // decoder q4 308 MB, embed fp16 311 MB; vision encoder estimated from the same SigLIP tower (800 MB fp16)
      variant('fp16 vision, q4 decoder', { vision_encoder: 'fp16', embed_tokens: 'fp16', decoder_model_merged: 'q4' }, [800, 311, 308], 'vision encoder size estimated'),
      variant('fp16', 'fp16', [800, 311, 937], 'vision encoder size estimated'),
      variant('fp32', 'fp32', [1600, 623, 1870], 'vision encoder size estimated'),
    ],
  },
];

export function findCatalogueEntry(repo: string): CatalogueEntry | undefined {
  return CATALOGUE.find((e) => e.repo.toLowerCase() === repo.toLowerCase());
}

/** `vision_encoder=fp16,embed_tokens=fp16,decoder_model_merged=q4`, or `fp16`: what `--dtype` takes. */
export function dtypeFlag(dtype: DtypeSpec): string {
  return typeof dtype === 'string' ? dtype : Object.entries(dtype).map(([r, d]) => `${r}=${d}`).join(',');
}

/** 1410 -> "1.4 GB", 870 -> "870 MB": no more digits than the estimate has. */
function approx(mb: number): string {
  return mb < 1000 ? `${Math.round(mb / 10) * 10} MB` : `${(mb / 1000).toFixed(1)} GB`;
}

/** The catalogue as text, for `llava-lens pull --list`. */
export function formatCatalogue(): string {
  const lines = ['Known-good repositories (sizes and memory are approximate; the first line of each is the default):', ''];
  for (const e of CATALOGUE) {
    lines.push(`${e.repo}`, `  ${e.title}: ${e.architecture}; licence ${e.licence}`);
    for (const v of e.variants) {
      const size = `~${approx(v.approxDownloadMB)} download, ~${approx(v.approxMemoryMB)} memory`;
      lines.push(`  --dtype ${dtypeFlag(v.dtype)}`, `      ${v.label}: ${size}${v.note ? ` (${v.note})` : ''}`);
    }
    lines.push('');
  }
  lines.push('Any other repository in the same layout works too: llava-lens pull owner/name [--dtype …].', '');
  return lines.join('\n');
}
