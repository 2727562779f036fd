/**
 * Observation text for the model: compact JSON with numbers rounded to 2 decimals, bulky fields
 * (images, masks, raw pixels) left out and long arrays/strings cut, as LLaVA-Plus sends tool
 * outputs back (lmm-runtime.md §5).
 */

export interface CompactOptions {
  /** Longest array kept; the rest is replaced by one `"… N more"` entry. Default 100. */
  maxItems: number;
  /** Longest string kept, characters. Default 500. */
  maxString: number;
}

/** Keys never sent to the model (binary or very large payloads). */
const BULKY_KEYS = new Set(['base64', 'png', 'bytes', 'pixels', 'mask', 'masks', 'image', 'images', 'data_url']);

export const round2 = (v: number): number => Math.round(v * 100) / 100;

/** A copy of `value` ready for `JSON.stringify`: rounded, bulk-free, cut. Binary arrays and functions are dropped. */
export function compact(value: unknown, o: Partial<CompactOptions> = {}): unknown {
  const opts: CompactOptions = { maxItems: 100, maxString: 500, ...o };
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'number') return Number.isFinite(v) ? round2(v) : null;
    if (typeof v === 'string') return v.length > opts.maxString ? `${v.slice(0, opts.maxString)}…` : v;
    if (v === null || typeof v === 'boolean') return v;
    if (typeof v !== 'object' || ArrayBuffer.isView(v) || v instanceof ArrayBuffer || depth > 8) return undefined;
    if (Array.isArray(v)) {
      const kept = v.slice(0, opts.maxItems).map((x) => walk(x, depth + 1) ?? null);
      if (v.length > opts.maxItems) kept.push(`… ${v.length - opts.maxItems} more`);
      return kept;
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (BULKY_KEYS.has(k)) continue;
      const w = walk(x, depth + 1);
      if (w !== undefined) out[k] = w;
    }
    return out;
  };
  return walk(value, 0);
}

/** `JSON.stringify(compact(value))`. */
export const summarise = (value: unknown, o?: Partial<CompactOptions>): string => JSON.stringify(compact(value, o));
