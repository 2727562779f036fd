/**
 * One decoder forward step over new embeddings with the KV cache.
 *
 *   inputs_embeds  [1, S, H]  (float32 or float16, as the session declares)
 *   attention_mask [1, P + S] int64, all ones (batch 1, no padding)
 *   position_ids   [1, S]     int64, P .. P + S - 1
 *   past_key_values.{i}.key|value [1, Hkv, P, D]
 *   use_cache_branch [1] bool (optional input): P > 0
 *   num_logits_to_keep [] int64 (optional input): 1
 * -> logits [1, S or 1, V]; we return the last row as f32 [V] (a view of the output, owned by the caller).
 */
import type * as ort from 'onnxruntime-node';
import * as ortRt from 'onnxruntime-node';
import { LensError, LensErrorCode } from '../../../common/errors';
import { inputMeta, outputMeta } from './backend';
import { KvCache, kvLayout, type KvLayout } from './kvcache';
import { floatTensor, int64Tensor, tensorToF32, type FloatType } from './tensorUtil';

export class Decoder {
  readonly kv: KvLayout;
  private readonly embedsType: FloatType;
  private readonly has: { attentionMask: boolean; positionIds: boolean; useCacheBranch: boolean; numLogitsToKeep: boolean };
  /** Hidden size the decoder expects (last dim of inputs_embeds) or undefined when symbolic. */
  readonly hiddenSize: number | undefined;

  constructor(
    private readonly session: ort.InferenceSession,
    numKvHeads: number,
    headDim: number,
  ) {
    const ins = inputMeta(session);
    const outs = outputMeta(session);
    const embeds = ins.get('inputs_embeds');
    if (!embeds) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `decoder_model_merged has no 'inputs_embeds' input (it has ${[...ins.keys()].slice(0, 6).join(', ')}…): a LLaVA decoder must take embeddings so image features can be merged.`);
    }
    if (!outs.has('logits')) throw new LensError(LensErrorCode.InvalidModelFolder, `decoder_model_merged has no 'logits' output.`);
    this.embedsType = embeds.type === 'float16' ? 'float16' : 'float32';
    const h = embeds.shape[2];
    this.hiddenSize = typeof h === 'number' ? h : undefined;
    this.has = {
      attentionMask: ins.has('attention_mask'),
      positionIds: ins.has('position_ids'),
      useCacheBranch: ins.has('use_cache_branch'),
      numLogitsToKeep: ins.has('num_logits_to_keep'),
    };
    this.kv = kvLayout(ins, outs, numKvHeads, headDim);
  }

  emptyCache(): KvCache {
    return KvCache.empty(this.kv);
  }

  /**
   * Runs S new positions as consecutive steps of at most `chunk` positions, each with the previous
   * one's KV as past. Every position attends to the same keys as in one step and the graph
   * computes rows independently, so the logits are the same (bench decoder, 4,770 positions:
   * identical); but the attention's score tensors are [1, nH, chunk, T] instead of [1, nH, S, T]
   * (14 × 4,770² floats, 1.3 GB, per layer for one anyres image). Measured there: one step 31.4 s
   * and 4.3 GB peak; chunks of 1024 18.2–19.3 s and 1.7–2.5 GB; 512 19.5 s, 2048 22.6 s.
   * Stops after the chunk in which `signal` aborts (the cache then covers fewer than S positions).
   * Does not dispose `cache`; disposes the intermediate ones.
   * @param embeds [S, H] f32
   */
  async prefill(embeds: Float32Array, seqLen: number, cache: KvCache, chunk: number, signal?: AbortSignal): Promise<{ logits: Float32Array; cache: KvCache }> {
    if (!(chunk >= 1) || seqLen <= chunk) return this.step(embeds, seqLen, cache);
    const hidden = embeds.length / seqLen;
    let out: { logits: Float32Array; cache: KvCache } | undefined;
    for (let p = 0; p < seqLen; p += chunk) {
      const n = Math.min(chunk, seqLen - p);
      const next = await this.step(embeds.subarray(p * hidden, (p + n) * hidden), n, out?.cache ?? cache);
      out?.cache.dispose();
      out = next;
      if (signal?.aborted) break;
    }
    return out!;
  }

  /**
   * Runs S new positions. Does not dispose `cache` (the caller may keep it for reuse).
   * @param embeds [S, H] f32
   */
  async step(embeds: Float32Array, seqLen: number, cache: KvCache): Promise<{ logits: Float32Array; cache: KvCache }> {
    const past = cache.length;
    const hidden = embeds.length / seqLen;
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: floatTensor(this.embedsType, embeds, [1, seqLen, hidden]),
    };
    if (this.has.attentionMask) feeds.attention_mask = new ortRt.Tensor('int64', new BigInt64Array(past + seqLen).fill(1n), [1, past + seqLen]);
    if (this.has.positionIds) feeds.position_ids = int64Tensor(Array.from({ length: seqLen }, (_, i) => past + i), [1, seqLen]);
    if (this.has.useCacheBranch) feeds.use_cache_branch = new ortRt.Tensor('bool', new Uint8Array([past > 0 ? 1 : 0]), [1]);
    if (this.has.numLogitsToKeep) feeds.num_logits_to_keep = new ortRt.Tensor('int64', new BigInt64Array([1n]), []);
    for (const [name, t] of cache.tensors) feeds[name] = t;

    const out = await this.session.run(feeds);
    const logitsT = out.logits;
    const [, rows, vocab] = logitsT.dims;
    const all = tensorToF32(logitsT);
    // [V] f32, last position: a view, no copy (the output buffer is ours; rows is 1 whenever the
    // graph keeps last logits only, via num_logits_to_keep or the tuning Slice).
    const logits = all.subarray((rows - 1) * vocab, rows * vocab);
    return { logits, cache: cache.next(out, seqLen) };
  }
}
