/**
 * Guards for tool arguments that come from a model or a client: each returns the checked value
 * or throws `ArgError` with a message meant for the model ("rows must be an integer 1..10, got 0").
 * `parseWith` turns that into `parseArgs`' `{ ok, args } | { ok, error }`.
 */
import type { NormBox, ParsedArgs } from './types';

export class ArgError extends Error {}

/** Runs `fn` on the arguments object (`undefined`/`null` -> `{}`); unknown keys are an error. */
export function parseWith<A>(raw: unknown, known: readonly string[], fn: (o: Record<string, unknown>) => A): ParsedArgs<A> {
  try {
    let obj = raw ?? {};
    if (typeof obj === 'string') {
      // OpenAI-style `arguments` arrive as a JSON string.
      try {
        obj = obj.trim() === '' ? {} : JSON.parse(obj);
      } catch {
        throw new ArgError(`arguments must be a JSON object, got the string ${JSON.stringify(truncate(obj as string))}`);
      }
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ArgError(`arguments must be a JSON object, got ${describe(obj)}`);
    const o = obj as Record<string, unknown>;
    const extra = Object.keys(o).filter((k) => !known.includes(k));
    if (extra.length) {
      throw new ArgError(`unknown argument${extra.length > 1 ? 's' : ''} ${extra.map((k) => JSON.stringify(k)).join(', ')}; expected ${known.length ? known.join(', ') : 'none'}`);
    }
    return { ok: true, args: fn(o) };
  } catch (e) {
    if (e instanceof ArgError) return { ok: false, error: e.message };
    return { ok: false, error: `arguments could not be read: ${(e as Error)?.message ?? String(e)}` };
  }
}

/** An integer in [min, max], or `dflt` when absent. Numeric strings ("4") are accepted. */
export function intArg(o: Record<string, unknown>, key: string, min: number, max: number, dflt: number): number {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new ArgError(`${key} must be an integer ${min}..${max}, got ${describe(v)}`);
  return n;
}

/**
 * A normalised box `[x0, y0, x1, y1]` in 0..1 (also accepted: `{x0, y0, x1, y1}`). Corners are
 * put in order; a box with no area is an error.
 */
export function boxArg(v: unknown, key: string): NormBox {
  let a: unknown[] | undefined;
  if (Array.isArray(v)) a = v;
  else if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (['x0', 'y0', 'x1', 'y1'].every((k) => k in o)) a = [o.x0, o.y0, o.x1, o.y1];
  }
  if (!a || a.length !== 4) throw new ArgError(`${key} must be [x0, y0, x1, y1] normalised to 0..1, got ${describe(v)}`);
  const n = a.map((x) => (typeof x === 'string' && x.trim() !== '' ? Number(x) : x));
  if (!n.every((x): x is number => typeof x === 'number' && Number.isFinite(x))) throw new ArgError(`${key} must hold 4 numbers, got ${describe(v)}`);
  if (n.some((x) => x < 0 || x > 1)) {
    throw new ArgError(`${key} must be normalised to 0..1 (fractions of the image width and height), got ${describe(v)}`);
  }
  const [x0, x1] = n[0] <= n[2] ? [n[0], n[2]] : [n[2], n[0]];
  const [y0, y1] = n[1] <= n[3] ? [n[1], n[3]] : [n[3], n[1]];
  if (x1 - x0 <= 0 || y1 - y0 <= 0) throw new ArgError(`${key} ${describe(v)} has no area`);
  return [x0, y0, x1, y1];
}

function truncate(s: string, n = 60): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(truncate(v));
  try {
    return truncate(JSON.stringify(v) ?? String(v), 80);
  } catch {
    return String(v);
  }
}
