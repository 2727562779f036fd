/**
 * vision_encoder: `pixel_values` [B, 3, Hpx, Wpx] -> `image_features` [B, N, H] (the projected
 * rows the decoder consumes), plus for OneVision `image_newline` [H].
 *
 *  - llava (CLIP): Conv patches (no bias), class embedding in front, position embeddings,
 *    pre-LayerNorm, encoder layers (quick_gelu MLP), hidden state `vision_feature_layer`
 *    (layers past it are not built), CLS row dropped ("default" strategy).
 *  - onevision (SigLIP): Conv patches with bias, position embeddings, encoder layers (tanh GELU
 *    MLP), hidden state `vision_feature_layer`, all rows ("full"). B is the number of views
 *    (base view + anyres tiles).
 * Both end in the projector Linear -> GELU (erf) -> Linear.
 */
import { GraphBuilder, Precision } from '../onnx/builder';
import { computedVisionLayers, ModelSpec, visionRows } from '../presets';
import { INIT, fanIn, geluErf, geluTanh, layerNorm, mergeHeads, quickGelu, scaledDotProduct, sliceAxis, splitHeads } from './layers';

function encoderLayer(b: GraphBuilder, x: string, i: number, spec: ModelSpec): string {
  const v = spec.vision;
  const Hv = v.hiddenSize;
  const D = Hv / v.numHeads;
  const p = `vision_tower.vision_model.encoder.layers.${i}`;
  return b.scoped(`vision_model/encoder/layers.${i}`, () => {
    const h = layerNorm(b, x, `${p}.layer_norm1`, Hv, v.layerNormEps); // [B, N, Hv]
    const q = splitHeads(b, b.linear(h, `${p}.self_attn.q_proj`, Hv, Hv, fanIn(Hv), INIT.bias), v.numHeads, D); // [B, nH, N, D]
    const k = splitHeads(b, b.linear(h, `${p}.self_attn.k_proj`, Hv, Hv, fanIn(Hv), INIT.bias), v.numHeads, D);
    const val = splitHeads(b, b.linear(h, `${p}.self_attn.v_proj`, Hv, Hv, fanIn(Hv), INIT.bias), v.numHeads, D);
    const attn = mergeHeads(b, scaledDotProduct(b, q, k, val, D, null), v.numHeads, D); // [B, N, Hv]
    const out = b.linear(attn, `${p}.self_attn.out_proj`, Hv, Hv, fanIn(Hv), INIT.bias);
    const afterAttn = b.op('Add', [x, out]);
    const h2 = layerNorm(b, afterAttn, `${p}.layer_norm2`, Hv, v.layerNormEps);
    const fc1 = b.linear(h2, `${p}.mlp.fc1`, Hv, v.intermediateSize, fanIn(Hv), INIT.bias); // [B, N, I]
    const act = spec.family === 'llava' ? quickGelu(b, fc1) : geluTanh(b, fc1);
    const fc2 = b.linear(act, `${p}.mlp.fc2`, v.intermediateSize, Hv, fanIn(v.intermediateSize), INIT.bias); // [B, N, Hv]
    return b.op('Add', [afterAttn, fc2]);
  });
}

export function buildVisionEncoder(spec: ModelSpec, precision: Precision, seed: number): GraphBuilder {
  const v = spec.vision;
  const Hv = v.hiddenSize;
  const H = spec.text.hiddenSize;
  const P = v.patchSize;
  const numPatches = visionRows(spec); // the Conv floors: 384 px / 14 -> 27 x 27
  const clip = spec.family === 'llava';
  const e = 'vision_tower.vision_model.embeddings';
  const b = new GraphBuilder('vision_encoder', precision === 'q4' ? 'fp32' : precision, seed);

  const pixels = b.input('pixel_values', 'float', ['batch_size', 3, v.imageSize, v.imageSize]); // [B, 3, Hpx, Wpx] f32
  let x = b.scoped('vision_model/embeddings', () => {
    const kernel = b.param(`${e}.patch_embedding.weight`, [Hv, 3, P, P], fanIn(3 * P * P));
    const convIn = clip ? [pixels, kernel] : [pixels, kernel, b.param(`${e}.patch_embedding.bias`, [Hv], INIT.bias)];
    const grid = b.op('Conv', convIn, { kernel_shape: [P, P], strides: [P, P] }); // [B, Hv, g, g]
    const flat = b.op('Reshape', [grid, b.constI64([0, Hv, -1])]); // [B, Hv, Np]
    let patches = b.op('Transpose', [flat], { perm: [0, 2, 1] }); // [B, Np, Hv]
    let rows = numPatches;
    if (clip) {
      const cls = b.param(`${e}.class_embedding`, [1, 1, Hv], INIT.visionEmbedding); // [1, 1, Hv]
      const batch = b.op('Shape', [pixels], { start: 0, end: 1 }); // [1]
      const clsShape = b.op('Concat', [batch, b.constI64([1, Hv])], { axis: 0 });
      const clsRows = b.op('Expand', [cls, clsShape]); // [B, 1, Hv]
      patches = b.op('Concat', [clsRows, patches], { axis: 1 }); // [B, Np+1, Hv]
      rows += 1;
    }
    const posEmb = b.param(`${e}.position_embedding.weight`, [rows, Hv], INIT.visionEmbedding); // [N, Hv]
    const embedded = b.op('Add', [patches, posEmb]);
    return clip ? layerNorm(b, embedded, 'vision_tower.vision_model.pre_layrnorm', Hv, v.layerNormEps) : embedded;
  });

  for (let i = 0; i < computedVisionLayers(v); i++) x = encoderLayer(b, x, i, spec);
  if (clip) x = sliceAxis(b, x, 1, 1); // drop CLS: [B, Np, Hv]

  const features = b.scoped('multi_modal_projector', () => {
    const l1 = b.linear(x, 'multi_modal_projector.linear_1', Hv, H, fanIn(Hv), INIT.bias); // [B, Np, H]
    return b.linear(geluErf(b, l1), 'multi_modal_projector.linear_2', H, H, fanIn(H), INIT.bias, b.outName('image_features'));
  });
  b.output('image_features', features, 'float', ['batch_size', numPatches, H]);

  if (!clip) {
    // The learned newline vector the runtime appends after each row of tile features.
    const newline = b.param('model.image_newline', [H], { std: 1 / Math.sqrt(H) }); // [H]
    b.output('image_newline', newline, 'float', [H]);
  }
  return b;
}
