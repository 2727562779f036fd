/**
 * Memory read bandwidth, the decode ceiling on a CPU (every weight is read once per token).
 *
 * Two native-free methods over a buffer much larger than the caches, best of several passes:
 *  - `memchr`: `Buffer.indexOf` of a byte that is not there, i.e. glibc's SIMD memchr, which
 *    Node calls for it: close to what the hardware gives one thread;
 *  - `sum`: a JavaScript loop summing a Float64Array (4 accumulators): what a JS loop reaches.
 * The ceiling uses the larger. One thread: onnxruntime's decode is bandwidth-bound per core
 * anyway, and a second reader on this machine does not add bandwidth (measured, see
 * docs/performance.md).
 */

export interface Bandwidth {
  memchrGBs: number;
  sumGBs: number;
  bestGBs: number;
  bufferMB: number;
}

export function measureBandwidth(mb = 512, passes = 9): Bandwidth {
  const buf = Buffer.alloc(mb << 20, 1);
  const f64 = new Float64Array(buf.buffer, buf.byteOffset, buf.byteLength / 8);
  const best = (fn: () => void): number => {
    fn();
    let ms = Infinity;
    for (let i = 0; i < passes; i++) {
      const t = performance.now();
      fn();
      ms = Math.min(ms, performance.now() - t);
    }
    return buf.byteLength / ms / 1e6;
  };
  let sink = 0;
  const memchrGBs = best(() => {
    sink += buf.indexOf(7);
  });
  const sumGBs = best(() => {
    let a = 0, b = 0, c = 0, d = 0;
    for (let i = 0; i < f64.length; i += 4) {
      a += f64[i];
      b += f64[i + 1];
      c += f64[i + 2];
      d += f64[i + 3];
    }
    sink += a + b + c + d;
  });
  if (sink === 42) process.stdout.write('');
  return { memchrGBs, sumGBs, bestGBs: Math.max(memchrGBs, sumGBs), bufferMB: mb };
}
