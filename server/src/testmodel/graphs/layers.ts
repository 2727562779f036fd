/**
 * Building blocks shared by the vision encoder and the decoder, written with standard opset-17
 * operators. Shape vocabulary: B batch, S/N sequence rows, T total (past + new) length,
 * H hidden, nH heads, Hkv KV heads, D head dim.
 */
import { GraphBuilder, INT64_MAX } from '../onnx/builder';
import { WeightInit } from '../onnx/tensorData';

/**
 * Initialisation of the generated weights. Linear weights are N(0, 1/fan_in) (see `fanIn`) so
 * activations keep unit scale through the layers: attention is not uniform and logits have a
 * standard deviation near 1, which keeps greedy decoding from collapsing onto one token and makes
 * mask or cache mistakes show up clearly in the logits.
 */
export const INIT = {
  bias: { std: 0.02 } as WeightInit,
  norm: { mean: 1, std: 0.05 } as WeightInit,
  normBias: { std: 0.02 } as WeightInit,
  /** Token embeddings (unit scale, like the image features the projector produces). */
  tokenEmbedding: { std: 1 } as WeightInit,
  /** Vision class and position embeddings. */
  visionEmbedding: { std: 0.1 } as WeightInit,
};

/** N(0, 1/K) for a weight with K inputs. */
export function fanIn(K: number): WeightInit {
  return { std: 1 / Math.sqrt(K) };
}

/** RMSNorm: x / sqrt(mean(x^2) + eps) * w. `x` [.., H] -> [.., H] f32. */
export function rmsNorm(b: GraphBuilder, x: string, weightName: string, H: number, eps: number): string {
  return b.scoped(weightName.replace(/\.weight$/, ''), () => {
    const sq = b.op('Pow', [x, b.scalar(2)]);
    const mean = b.op('ReduceMean', [sq], { axes: [-1], keepdims: 1 }); // [.., 1]
    const std = b.op('Sqrt', [b.op('Add', [mean, b.scalar(eps)])]);
    const normed = b.op('Div', [x, std]);
    return b.op('Mul', [normed, b.param(weightName, [H], INIT.norm)]);
  });
}

/** LayerNorm with weight `${prefix}.weight` and bias `${prefix}.bias`. `x` [.., H] f32. */
export function layerNorm(b: GraphBuilder, x: string, prefix: string, H: number, eps: number): string {
  const w = b.param(`${prefix}.weight`, [H], INIT.norm);
  const bias = b.param(`${prefix}.bias`, [H], INIT.normBias);
  return b.op('LayerNormalization', [x, w, bias], { axis: -1, epsilon: { f: eps } });
}

/** GELU, exact erf form: 0.5 x (1 + erf(x / sqrt 2)). */
export function geluErf(b: GraphBuilder, x: string): string {
  const e = b.op('Erf', [b.op('Div', [x, b.scalar(Math.SQRT2)])]);
  return b.op('Mul', [b.op('Mul', [x, b.scalar(0.5)]), b.op('Add', [e, b.scalar(1)])]);
}

/** GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function geluTanh(b: GraphBuilder, x: string): string {
  const x3 = b.op('Mul', [b.op('Pow', [x, b.scalar(3)]), b.scalar(0.044715)]);
  const inner = b.op('Mul', [b.op('Add', [x, x3]), b.scalar(Math.sqrt(2 / Math.PI))]);
  const t = b.op('Tanh', [inner]);
  return b.op('Mul', [b.op('Mul', [x, b.scalar(0.5)]), b.op('Add', [t, b.scalar(1)])]);
}

/** quick_gelu: x * sigmoid(1.702 x). */
export function quickGelu(b: GraphBuilder, x: string): string {
  return b.op('Mul', [x, b.op('Sigmoid', [b.op('Mul', [x, b.scalar(1.702)])])]);
}

/** SiLU: x * sigmoid(x). */
export function silu(b: GraphBuilder, x: string): string {
  return b.op('Mul', [x, b.op('Sigmoid', [x])]);
}

/** [B, S, heads*D] -> [B, heads, S, D]. */
export function splitHeads(b: GraphBuilder, x: string, heads: number, D: number): string {
  const r = b.op('Reshape', [x, b.constI64([0, 0, heads, D])]);
  return b.op('Transpose', [r], { perm: [0, 2, 1, 3] });
}

/** [B, heads, S, D] -> [B, S, heads*D]. */
export function mergeHeads(b: GraphBuilder, x: string, heads: number, D: number): string {
  const t = b.op('Transpose', [x], { perm: [0, 2, 1, 3] });
  return b.op('Reshape', [t, b.constI64([0, 0, heads * D])]);
}

/**
 * softmax(q k^T * scale + mask) v. q [B, nH, S, D], k/v [B, nH, T, D], mask additive
 * [B|1, 1, S, T] or null -> [B, nH, S, D].
 */
export function scaledDotProduct(b: GraphBuilder, q: string, k: string, v: string, D: number, mask: string | null): string {
  const kT = b.op('Transpose', [k], { perm: [0, 1, 3, 2] }); // [B, nH, D, T]
  let scores = b.op('Mul', [b.op('MatMul', [q, kT]), b.scalar(1 / Math.sqrt(D))]); // [B, nH, S, T]
  if (mask) scores = b.op('Add', [scores, mask]);
  const probs = b.op('Softmax', [scores], { axis: -1 });
  return b.op('MatMul', [probs, v]); // [B, nH, S, D]
}

/** Slice `x` on one axis: [start, end). */
export function sliceAxis(b: GraphBuilder, x: string, axis: number, start: number, end: number = INT64_MAX): string {
  return b.op('Slice', [x, b.constI64([start]), b.constI64([end]), b.constI64([axis])]);
}
