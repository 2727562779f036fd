/**
 * Seeded pseudo-random numbers for the test-model generator.
 *
 * Weights use a *counter-based* generator: element `i` of the tensor named `name` is a pure
 * function of `(seed, name, i)`. That makes every tensor independent of the order in which
 * tensors (or chunks of one tensor) are produced, so a weight can be streamed in any layout
 * (row-major [K, N] for MatMul, [N, K] blocks for 4-bit quantisation) and still hold the same
 * numbers in the fp32, fp16 and q4 files. Only 32-bit integer arithmetic (`Math.imul`) is used,
 * so results are identical on every platform.
 *
 * `Rng` is a small sequential generator for everything else (test inputs, pixel values).
 */

/** A 32-bit integer finaliser with good avalanche (two multiply-xorshift rounds). */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d);
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b);
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** FNV-1a over the UTF-16 code units of `s`, then mixed with the seed. */
export function hashKey(seed: number, s: string): number {
  let h = 0x811c9dc5 ^ mix32(seed >>> 0);
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h >>> 0);
}

const GOLDEN = 0x9e3779b9;
/** 1 / (standard deviation of the sum of four uniform 16-bit integers). */
const IRWIN_HALL_4_INV_STD = Math.sqrt(3) / 65536;
const IRWIN_HALL_4_MEAN = 2 * 65535;

/**
 * Approximately standard-normal value number `i` of the stream `key` (Irwin–Hall sum of four
 * 16-bit uniforms: mean 0, variance 1, bounded to about ±3.46). `i` must be < 2^32.
 */
export function normalAt(key: number, i: number): number {
  const a = mix32((key + Math.imul(i, GOLDEN)) >>> 0);
  const b = mix32((a ^ 0x85ebca6b ^ key) >>> 0);
  const sum = (a & 0xffff) + (a >>> 16) + (b & 0xffff) + (b >>> 16);
  return (sum - IRWIN_HALL_4_MEAN) * IRWIN_HALL_4_INV_STD;
}

/** Sequential seeded generator (splitmix32 stepping). Not for cryptography. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = mix32((seed ^ 0x5bd1e995) >>> 0);
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + GOLDEN) >>> 0;
    return mix32(this.state);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Approximately standard normal (same construction as `normalAt`). */
  normal(): number {
    return normalAt(this.nextU32(), 0);
  }

  /** Float32Array of `n` uniform values in [lo, hi). */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.next();
    return out;
  }
}
