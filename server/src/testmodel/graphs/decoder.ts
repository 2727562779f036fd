/**
 * decoder_model_merged: a pre-RMSNorm LLaMA (llava) or Qwen2 (onevision) decoder with a KV
 * cache, in standard opset-17 operators (MatMulNBits for the q4 linears).
 *
 * Inputs:  inputs_embeds [B, S, H], attention_mask i64 [B, T], position_ids i64 [B, S],
 *          past_key_values.{i}.key|value [B, Hkv, P, D];
 *          llava: use_cache_branch bool [1]; onevision: num_logits_to_keep i64 scalar.
 * Outputs: logits [B, S|k, V], present.{i}.key|value [B, Hkv, T, D]   (T = P + S).
 */
import { onnx } from 'onnx-proto';
import { GraphBuilder, INT64_MAX, Precision, subgraph, valueInfo } from '../onnx/builder';
import { DataType } from '../onnx/tensorData';
import type { ModelSpec } from '../presets';
import { INIT, fanIn, mergeHeads, rmsNorm, scaledDotProduct, silu, sliceAxis, splitHeads } from './layers';

const FLOAT_MIN = -3.4028234663852886e38;

/**
 * Consumes `use_cache_branch` the way merged exports do, with an If. Both branches return the
 * past length computed from the cache inputs, so the flag cannot change the result (the runtime
 * passes false with an empty cache and true afterwards).
 */
function pastLengthViaUseCacheBranch(b: GraphBuilder, useCache: string, pastLen: string): string {
  const branch = (name: string): onnx.IGraphProto => {
    const out = `${name}/past_length`;
    return subgraph(name, [{ name: `${name}/Identity`, opType: 'Identity', input: [pastLen], output: [out], domain: '' }], [
      valueInfo(out, DataType.INT64, [1]),
    ]);
  };
  return b.op('If', [useCache], { then_branch: branch('with_past'), else_branch: branch('without_past') });
}

/**
 * Additive attention bias [B, 1, S, T] f32: 0 where key t is visible to new token s (t <= P + s
 * and attention_mask[b, t] == 1), float-min elsewhere.
 */
function attentionBias(b: GraphBuilder, mask: string, pastLen: string): string {
  const total = b.op('Shape', [mask], { start: 1, end: 2 }); // [1] T
  const T = b.op('Squeeze', [total, b.constI64([0])]); // scalar
  const P = b.op('Squeeze', [pastLen, b.constI64([0])]); // scalar
  const one = b.constI64([1], []);
  const keyIdx = b.op('Range', [b.constI64([0], []), T, one]); // [T]
  const queryIdx = b.op('Range', [P, T, one]); // [S] absolute cache index of each new token
  const causal = b.op('LessOrEqual', [
    b.op('Unsqueeze', [keyIdx, b.constI64([0])]), // [1, T]
    b.op('Unsqueeze', [queryIdx, b.constI64([1])]), // [S, 1]
  ]); // [S, T] bool
  const notPadded = b.op('Unsqueeze', [b.op('Cast', [mask], { to: DataType.BOOL }), b.constI64([1, 2])]); // [B, 1, 1, T]
  const allowed = b.op('And', [causal, notPadded]); // [B, 1, S, T]
  return b.op('Where', [allowed, b.scalar(0), b.scalar(FLOAT_MIN)]); // [B, 1, S, T] f32
}

/** cos/sin tables [B, 1, S, D] for rotate-half rotary embeddings at `position_ids`. */
function rotaryTables(b: GraphBuilder, positionIds: string, D: number, theta: number): { cos: string; sin: string } {
  const invFreq = Array.from({ length: D / 2 }, (_, j) => 1 / Math.pow(theta, (2 * j) / D));
  const pos = b.op('Unsqueeze', [b.op('Cast', [positionIds], { to: DataType.FLOAT }), b.constI64([2])]); // [B, S, 1]
  const freqs = b.op('Mul', [pos, b.constF32(invFreq)]); // [B, S, D/2]
  const emb = b.op('Concat', [freqs, freqs], { axis: -1 }); // [B, S, D]
  const cos = b.op('Unsqueeze', [b.op('Cos', [emb]), b.constI64([1])]); // [B, 1, S, D]
  const sin = b.op('Unsqueeze', [b.op('Sin', [emb]), b.constI64([1])]); // [B, 1, S, D]
  return { cos, sin };
}

/** x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x[.., D/2:], x[.., :D/2]). x [B, h, S, D]. */
function applyRotary(b: GraphBuilder, x: string, rope: { cos: string; sin: string }, D: number): string {
  const x1 = sliceAxis(b, x, 3, 0, D / 2);
  const x2 = sliceAxis(b, x, 3, D / 2);
  const rotated = b.op('Concat', [b.op('Neg', [x2]), x1], { axis: 3 });
  return b.op('Add', [b.op('Mul', [x, rope.cos]), b.op('Mul', [rotated, rope.sin])]);
}

/** Grouped-query attention: repeat each KV head `rep` times. [B, Hkv, T, D] -> [B, Hkv*rep, T, D]. */
function repeatKv(b: GraphBuilder, x: string, rep: number, D: number, heads: number): string {
  if (rep === 1) return x;
  const u = b.op('Unsqueeze', [x, b.constI64([2])]); // [B, Hkv, 1, T, D]
  const tiled = b.op('Tile', [u, b.constI64([1, 1, rep, 1, 1])]); // [B, Hkv, rep, T, D]
  return b.op('Reshape', [tiled, b.constI64([0, heads, -1, D])]); // [B, nH, T, D]
}

export function buildDecoder(spec: ModelSpec, vocabRows: number, precision: Precision, seed: number): GraphBuilder {
  const t = spec.text;
  const H = t.hiddenSize;
  const nH = t.numHeads;
  const Hkv = t.numKvHeads;
  const D = H / nH;
  const qwen = spec.family === 'onevision';
  const b = new GraphBuilder('decoder_model_merged', precision, seed);

  let x = b.input('inputs_embeds', 'float', ['batch_size', 'sequence_length', H]); // [B, S, H] f32
  const mask = b.input('attention_mask', 'int64', ['batch_size', 'total_sequence_length']); // [B, T] i64
  const positionIds = b.input('position_ids', 'int64', ['batch_size', 'sequence_length']); // [B, S] i64
  const pastShape = ['batch_size', Hkv, 'past_sequence_length', D];
  const past: { key: string; value: string }[] = [];
  for (let i = 0; i < t.numLayers; i++) {
    past.push({
      key: b.input(`past_key_values.${i}.key`, 'float', pastShape), // [B, Hkv, P, D]
      value: b.input(`past_key_values.${i}.value`, 'float', pastShape),
    });
  }
  const keep = qwen ? b.input('num_logits_to_keep', 'int64', []) : null;
  const useCache = qwen ? null : b.input('use_cache_branch', 'bool', [1]);

  // Past length P from the first layer's cache: [1] i64.
  let pastLen = b.op('Shape', [past[0].key], { start: 2, end: 3 });
  if (useCache) pastLen = pastLengthViaUseCacheBranch(b, useCache, pastLen);
  const bias = b.scoped('attention_mask', () => attentionBias(b, mask, pastLen)); // [B, 1, S, T]
  const rope = b.scoped('rotary_emb', () => rotaryTables(b, positionIds, D, t.ropeTheta));
  const presentShape = ['batch_size', Hkv, 'total_sequence_length', D];

  for (let i = 0; i < t.numLayers; i++) {
    const p = `model.layers.${i}`;
    x = b.scoped(`model/layers.${i}`, () => {
      // Self-attention.
      const h = rmsNorm(b, x, `${p}.input_layernorm.weight`, H, t.rmsNormEps);
      const qkvBias = qwen ? INIT.bias : null;
      let q = splitHeads(b, b.linear(h, `${p}.self_attn.q_proj`, H, nH * D, fanIn(H), qkvBias), nH, D); // [B, nH, S, D]
      let k = splitHeads(b, b.linear(h, `${p}.self_attn.k_proj`, H, Hkv * D, fanIn(H), qkvBias), Hkv, D); // [B, Hkv, S, D]
      const v = splitHeads(b, b.linear(h, `${p}.self_attn.v_proj`, H, Hkv * D, fanIn(H), qkvBias), Hkv, D);
      q = applyRotary(b, q, rope, D);
      k = applyRotary(b, k, rope, D);
      const presentK = b.op('Concat', [past[i].key, k], { axis: 2 }, { outputs: [b.outName(`present.${i}.key`)] }); // [B, Hkv, T, D]
      const presentV = b.op('Concat', [past[i].value, v], { axis: 2 }, { outputs: [b.outName(`present.${i}.value`)] });
      b.output(`present.${i}.key`, presentK, 'float', presentShape);
      b.output(`present.${i}.value`, presentV, 'float', presentShape);
      const attn = scaledDotProduct(b, q, repeatKv(b, presentK, nH / Hkv, D, nH), repeatKv(b, presentV, nH / Hkv, D, nH), D, bias);
      const o = b.linear(mergeHeads(b, attn, nH, D), `${p}.self_attn.o_proj`, nH * D, H, fanIn(nH * D)); // [B, S, H]
      const afterAttn = b.op('Add', [x, o]);

      // SwiGLU MLP.
      const h2 = rmsNorm(b, afterAttn, `${p}.post_attention_layernorm.weight`, H, t.rmsNormEps);
      const gate = b.linear(h2, `${p}.mlp.gate_proj`, H, t.intermediateSize, fanIn(H)); // [B, S, I]
      const up = b.linear(h2, `${p}.mlp.up_proj`, H, t.intermediateSize, fanIn(H));
      const down = b.linear(b.op('Mul', [silu(b, gate), up]), `${p}.mlp.down_proj`, t.intermediateSize, H, fanIn(t.intermediateSize));
      return b.op('Add', [afterAttn, down]); // [B, S, H]
    });
  }

  let hidden = rmsNorm(b, x, 'model.norm.weight', H, t.rmsNormEps); // [B, S, H]
  if (keep) {
    // Last k positions only; k = 0 keeps all (Slice from -0 = 0).
    const start = b.op('Reshape', [b.op('Neg', [keep]), b.constI64([1])]);
    hidden = b.op('Slice', [hidden, start, b.constI64([INT64_MAX]), b.constI64([1])]); // [B, k, H]
  }
  const logits = b.linear(hidden, 'lm_head', H, vocabRows, fanIn(H), null, b.outName('logits')); // [B, S|k, V]
  b.output('logits', logits, 'float', ['batch_size', 'sequence_length', vocabRows]);
  b.outputFirst('logits');
  return b;
}
