/**
 * One line saying what load-time graph tuning did to a loaded model (`ModelInfo.tuning`), for the
 * daemon's log, the CLI and the extension's status tooltip. Pure.
 */
import type { ModelFileRole, ModelInfo } from './protocol';

const LABELS: ReadonlyArray<[ModelFileRole, string]> = [
  ['decoder_model_merged', 'decoder'],
  ['vision_encoder', 'vision encoder'],
  ['embed_tokens', 'embeddings'],
];

/**
 * E.g. `decoder — accuracy_level=4 on 169 of 169 4-bit MatMulNBits; vision encoder — int8 weights (cached)`.
 * A file that loaded as it is reads `unchanged`; no summary at all (tuning off) reads `off`.
 */
export function describeTuning(tuning: ModelInfo['tuning']): string {
  if (!tuning) return 'off';
  const parts: string[] = [];
  for (const [role, label] of LABELS) {
    const t = tuning[role];
    if (!t) continue;
    parts.push(t.applied.length ? `${label} — ${t.applied.join(', ')}${t.cacheHit ? ' (cached)' : ''}` : `${label} — unchanged`);
  }
  return parts.length ? parts.join('; ') : 'off';
}

/** True when tuning changed at least one file (what was loaded differs from the files as published). */
export function tuningApplied(tuning: ModelInfo['tuning']): boolean {
  return Object.values(tuning ?? {}).some((t) => t !== undefined && t.applied.length > 0);
}
