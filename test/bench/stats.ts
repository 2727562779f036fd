/** Medians and ranges of repeated measurements. */

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(xs: readonly number[]): Summary {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

/** "1234 (1200–1300)" with `digits` decimals; "–" when empty. */
export function fmt(s: Summary | undefined, digits = 0): string {
  if (!s || s.n === 0) return '–';
  const f = (x: number) => x.toFixed(digits);
  return s.n === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}
