/**
 * Logit-level effect of graph tuning on the bench decoder: the same inputs (a 200-position
 * prefill of unit-variance embeddings, then 24 single-token steps) through the untuned and the
 * tuned graph, compared step by step. Explains token divergence: a greedy path changes where the
 * logit error exceeds the gap between the two best tokens.
 */
import * as ort from 'onnxruntime-node';
import { Decoder } from '../../server/src/runtime/decoder';
import type { KvCache } from '../../server/src/runtime/kvcache';

export interface LogitError {
  steps: number;
  maxAbs: number;
  /** Median over steps of the RMS difference. */
  rms: number;
  /** Median standard deviation of the untuned logits. */
  std: number;
  /** Steps whose untuned top-1/top-2 gap is smaller than that step's max difference. */
  closeCalls: number;
  sameArgmax: number;
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export async function logitError(original: string, tuned: string, hidden: number, kvHeads: number, headDim: number, threads?: number): Promise<LogitError> {
  const opts = { graphOptimizationLevel: 'all' as const, logSeverityLevel: 3 as const, ...(threads ? { intraOpNumThreads: threads } : {}) };
  const a = new Decoder(await ort.InferenceSession.create(original, opts), kvHeads, headDim);
  const b = new Decoder(await ort.InferenceSession.create(tuned, opts), kvHeads, headDim);
  let s = 12345;
  const gauss = () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const u = s / 0x7fffffff + 1e-12;
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos((2 * Math.PI * s) / 0x7fffffff);
  };
  let ca: KvCache = a.emptyCache(), cb: KvCache = b.emptyCache();
  let S = 200;
  const r: LogitError = { steps: 0, maxAbs: 0, rms: 0, std: 0, closeCalls: 0, sameArgmax: 0 };
  const rms: number[] = [], std: number[] = [];
  for (let step = 0; step < 25; step++) {
    const x = Float32Array.from({ length: S * hidden }, gauss);
    const ra = await a.step(x, S, ca);
    const rb = await b.step(x, S, cb);
    ca.dispose();
    cb.dispose();
    ca = ra.cache;
    cb = rb.cache;
    S = 1;
    const la = ra.logits, lb = rb.logits;
    let m = 0, sq = 0, mean = 0, top = -Infinity, second = -Infinity, ia = 0, ib = 0;
    for (let i = 0; i < la.length; i++) {
      const d = Math.abs(la[i] - lb[i]);
      if (d > m) m = d;
      sq += d * d;
      mean += la[i];
      if (la[i] > top) (second = top), (top = la[i]), (ia = i);
      else if (la[i] > second) second = la[i];
      if (lb[i] > lb[ib]) ib = i;
    }
    mean /= la.length;
    let v = 0;
    for (let i = 0; i < la.length; i++) v += (la[i] - mean) ** 2;
    r.steps++;
    r.maxAbs = Math.max(r.maxAbs, m);
    rms.push(Math.sqrt(sq / la.length));
    std.push(Math.sqrt(v / la.length));
    if (top - second < m) r.closeCalls++;
    if (ia === ib) r.sameArgmax++;
  }
  ca.dispose();
  cb.dispose();
  r.rms = med(rms);
  r.std = med(std);
  return r;
}
