/**
 * The decoder's key/value cache: the `present.*` outputs of one step fed back as the
 * `past_key_values.*` inputs of the next.
 *
 * Layout is read from the decoder session: every input named `past_key_values.{i}.key|value`
 * with shape [B, Hkv, P, D] and its output `present.{i}.key|value` [B, Hkv, T, D].
 * The empty cache (first step) has P = 0; symbolic dims are filled as: batch -> 1, dim 1 -> Hkv,
 * dim 3 -> D (from the model config), any other symbol -> 0.
 */
import * as ort from 'onnxruntime-node';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { IoMeta } from './backend';

export interface KvLayout {
  /** past input name -> present output name, in input order */
  pairs: Array<{ past: string; present: string }>;
  dtype: 'float32' | 'float16';
  /** [B, Hkv, 0, D] for the empty cache */
  emptyDims: number[];
}

export function kvLayout(inputs: Map<string, IoMeta>, outputs: Map<string, IoMeta>, numKvHeads: number, headDim: number): KvLayout {
  const pairs: KvLayout['pairs'] = [];
  let dtype: KvLayout['dtype'] = 'float32';
  let emptyDims: number[] = [1, numKvHeads, 0, headDim];
  for (const [name, meta] of inputs) {
    const m = /^past_key_values\.(\d+)\.(key|value)$/.exec(name);
    if (!m) continue;
    const present = `present.${m[1]}.${m[2]}`;
    if (!outputs.has(present)) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `decoder input ${name} has no matching output ${present}: the decoder export is not a KV-cache ("merged") decoder.`);
    }
    pairs.push({ past: name, present });
    dtype = meta.type === 'float16' ? 'float16' : 'float32';
    emptyDims = meta.shape.map((d, i) => {
      if (typeof d === 'number' && d >= 0) return i === 2 ? 0 : d;
      if (i === 0) return 1;
      if (i === 1) return numKvHeads;
      if (i === 3) return headDim;
      return 0;
    });
    if (emptyDims.length !== 4) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `decoder input ${name} has rank ${emptyDims.length}, expected [batch, kv_heads, past, head_dim].`);
    }
  }
  if (pairs.length === 0) {
    throw new LensError(LensErrorCode.InvalidModelFolder, `decoder_model_merged has no past_key_values.* inputs: use a decoder exported with a KV cache ("merged" or "with past").`);
  }
  return { pairs, dtype, emptyDims };
}

/** Immutable view of the cache after some number of tokens. Owns its tensors. */
export class KvCache {
  private constructor(
    readonly layout: KvLayout,
    /** past input name -> tensor [1, Hkv, length, D] */
    readonly tensors: ReadonlyMap<string, ort.Tensor>,
    /** tokens covered */
    readonly length: number,
  ) {}

  static empty(layout: KvLayout): KvCache {
    const t = new Map<string, ort.Tensor>();
    const empty = layout.dtype === 'float16' ? new Uint16Array(0) : new Float32Array(0);
    for (const { past } of layout.pairs) t.set(past, new ort.Tensor(layout.dtype, empty, layout.emptyDims));
    return new KvCache(layout, t, 0);
  }

  /** Builds the next cache from a decoder step's outputs (`present.*`). */
  next(outputs: ort.InferenceSession.ReturnType, added: number): KvCache {
    const t = new Map<string, ort.Tensor>();
    for (const { past, present } of this.layout.pairs) {
      const v = outputs[present];
      const len = v.dims[2];
      if (len !== this.length + added) {
        throw new LensError(LensErrorCode.Internal, `decoder returned ${present} with ${len} positions, expected ${this.length + added}.`);
      }
      t.set(past, v);
    }
    return new KvCache(this.layout, t, this.length + added);
  }

  /**
   * A new cache holding the first `length` positions of this one (copied; this one is
   * unchanged). Exact: in a causal decoder the keys and values of position i depend only on
   * tokens 0..i, so a prefix of a longer prefill is the prefill of that prefix.
   */
  prefix(length: number): KvCache {
    if (!Number.isInteger(length) || length < 0 || length > this.length) {
      throw new LensError(LensErrorCode.Internal, `KV prefix of ${length} positions asked of a cache of ${this.length}.`);
    }
    const t = new Map<string, ort.Tensor>();
    for (const [name, v] of this.tensors) {
      const [b, h, total, d] = v.dims;
      const src = v.data as Float32Array | Uint16Array;
      const out = new (src.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(b * h * length * d);
      for (let row = 0; row < b * h; row++) out.set(src.subarray(row * total * d, (row * total + length) * d), row * length * d);
      t.set(name, new ort.Tensor(v.type as 'float32' | 'float16', out, [b, h, length, d]));
    }
    return new KvCache(this.layout, t, length);
  }

  /** Bytes held (for status and memory limits). */
  bytes(): number {
    let n = 0;
    for (const v of this.tensors.values()) n += (v.data as ArrayBufferView).byteLength;
    return n;
  }

  /** Releases tensors (matters for GPU-resident data; cheap on CPU). */
  dispose(): void {
    for (const v of this.tensors.values()) (v as { dispose?: () => void }).dispose?.();
  }
}
