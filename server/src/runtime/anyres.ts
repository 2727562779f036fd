/**
 * anyres feature packing (LLaVA-NeXT / OneVision), for exports whose vision encoder returns one
 * feature map per view and leaves the packing to the runtime.
 *
 * Same result as Hugging Face LlavaOnevisionModel.pack_image_features for one image:
 *   1. tile features [tiles, side*side, Hf] -> one map (Hf, rows*side, cols*side), tiles row-major
 *   2. unpad_image: drop the feature rows/columns that came from the black padding
 *   3. anyres_max_N: if the map holds more than ~N tiles' worth (ratio > 1.1), bilinear-downsample
 *      it (torch F.interpolate, align_corners=False, no antialias)
 *   4. image_newline appended after each row of the map
 *   5. base view rows (side*side, no newline) first, then the map rows
 * With maxTiles = 0 step 3 is skipped, which is LLaVA-NeXT's packing.
 *
 * Vocabulary: N feature rows per view (= side*side, side = imageSize / patchSize), Hf feature width.
 */
import { LensError, LensErrorCode } from '../../../common/errors';

/** What decides the packed shape; all of it is known before the encoder runs. */
export interface AnyresGeometry {
  /** Tile grid chosen by preprocessing (PixelValues.grid). */
  grid: { rows: number; cols: number };
  /** The decoded image's size, pixels (PixelValues.originalSize). */
  originalSize: { width: number; height: number };
  /** Encoder input (tile) size, pixels. */
  imageSize: number;
  /** Encoder patch size, pixels. */
  patchSize: number;
  /** anyres_max_N -> N; 0 = never downsample. */
  maxTiles: number;
}

export interface AnyresPackArgs extends AnyresGeometry {
  /** [views, N, Hf] f32 from the vision encoder; views[0] is the base view, then tiles row-major. Not modified. */
  features: Float32Array;
  views: number;
  /** N, rows per view. */
  rowsPerView: number;
  /** Hf. */
  hidden: number;
  /** [Hf] f32, the model's learned image_newline. */
  imageNewline: Float32Array;
}

/** Where the kept part of the tile map sits and what size it ends up. Pure geometry. */
interface PackPlan {
  side: number;
  /** Rows/columns of the full tile map kept by unpad: [rowStart, rowEnd) × [colStart, colEnd). */
  rowStart: number;
  rowEnd: number;
  colStart: number;
  colEnd: number;
  /** Size after the optional downsample (= the kept size when there is none). */
  outH: number;
  outW: number;
  downsample: boolean;
}

/**
 * Packs one image's features. Returns a new [M, Hf] f32 buffer owned by the caller, M = N + outH * (outW + 1).
 * Throws LensError when the shapes disagree with the geometry (a hint names the likely cause).
 */
export function packAnyresFeatures(args: AnyresPackArgs): { data: Float32Array; rows: number } {
  const { features, views, rowsPerView: n, hidden, grid, imageNewline } = args;
  const plan = planPacking(args);
  const { side } = plan;
  if (n !== side * side) {
    throw new LensError(
      LensErrorCode.InvalidModelFolder,
      `vision encoder returned ${n} feature rows per view but image_size ${args.imageSize} / patch_size ${args.patchSize} gives ${side}×${side} = ${side * side}: ` +
        'check vision_config in config.json, or whether the export already packs anyres features',
    );
  }
  if (views !== 1 + grid.rows * grid.cols) {
    throw new LensError(LensErrorCode.Internal, `anyres packing got ${views} views for a ${grid.rows}×${grid.cols} grid (expected ${1 + grid.rows * grid.cols}: base + tiles)`);
  }
  if (features.length !== views * n * hidden) {
    throw new LensError(LensErrorCode.Internal, `anyres features hold ${features.length} values, expected views ${views} × N ${n} × Hf ${hidden}`);
  }
  if (imageNewline.length !== hidden) {
    throw new LensError(LensErrorCode.InvalidModelFolder, `image_newline has ${imageNewline.length} values but the features are ${hidden} wide: wrong image_newline for this model?`);
  }

  const rows = n + plan.outH * (plan.outW + 1);
  const out = new Float32Array(rows * hidden); // [M, Hf]
  out.set(features.subarray(0, n * hidden), 0); // base view rows

  // Offset in `features` of the Hf vector at (Y, X) of the full (rows*side) × (cols*side) tile map.
  const at = (Y: number, X: number): number => {
    const view = 1 + Math.floor(Y / side) * grid.cols + Math.floor(X / side);
    return (view * n + (Y % side) * side + (X % side)) * hidden;
  };

  let o = n * hidden;
  if (!plan.downsample) {
    for (let y = plan.rowStart; y < plan.rowEnd; y++) {
      for (let x = plan.colStart; x < plan.colEnd; x++) {
        const s = at(y, x);
        out.set(features.subarray(s, s + hidden), o);
        o += hidden;
      }
      out.set(imageNewline, o);
      o += hidden;
    }
  } else {
    const ty = linearTaps(plan.rowEnd - plan.rowStart, plan.outH);
    const tx = linearTaps(plan.colEnd - plan.colStart, plan.outW);
    const f = Math.fround;
    for (let y = 0; y < plan.outH; y++) {
      const y0 = plan.rowStart + ty.i0[y];
      const y1 = plan.rowStart + ty.i1[y];
      for (let x = 0; x < plan.outW; x++) {
        const x0 = plan.colStart + tx.i0[x];
        const x1 = plan.colStart + tx.i1[x];
        const a = at(y0, x0), b = at(y0, x1), c = at(y1, x0), d = at(y1, x1);
        const wx0 = tx.l0[x], wx1 = tx.l1[x], wy0 = ty.l0[y], wy1 = ty.l1[y];
        for (let h = 0; h < hidden; h++) {
          // torch's CPU kernel order: outer (height) taps over inner (width) taps, in float32.
          const top = f(f(features[a + h] * wx0) + f(features[b + h] * wx1));
          const bottom = f(f(features[c + h] * wx0) + f(features[d + h] * wx1));
          out[o + h] = f(f(top * wy0) + f(bottom * wy1));
        }
        o += hidden;
      }
      out.set(imageNewline, o);
      o += hidden;
    }
  }
  return { data: out, rows };
}

/** How many rows packAnyresFeatures will return, without features (for prompt sizing / context checks). */
export function anyresRowCount(geometry: AnyresGeometry): number {
  const plan = planPacking(geometry);
  return plan.side * plan.side + plan.outH * (plan.outW + 1);
}

function planPacking(g: AnyresGeometry): PackPlan {
  const { grid, originalSize: orig, imageSize, patchSize, maxTiles } = g;
  for (const [name, v] of [['grid.rows', grid.rows], ['grid.cols', grid.cols], ['originalSize.width', orig.width],
    ['originalSize.height', orig.height], ['imageSize', imageSize], ['patchSize', patchSize]] as const) {
    if (!(Number.isInteger(v) && v > 0)) throw new LensError(LensErrorCode.Internal, `anyres geometry: ${name} must be a positive integer, got ${v}`);
  }
  if (!(Number.isInteger(maxTiles) && maxTiles >= 0)) throw new LensError(LensErrorCode.Internal, `anyres geometry: maxTiles must be an integer >= 0, got ${maxTiles}`);
  const side = Math.floor(imageSize / patchSize);
  if (side < 1) throw new LensError(LensErrorCode.Internal, `anyres geometry: patchSize ${patchSize} is larger than imageSize ${imageSize}`);

  // unpad_image, with HF's arithmetic: int(round(x, 7)) for the kept extent, floor-halved padding.
  const curH = grid.rows * side;
  const curW = grid.cols * side;
  let rowStart = 0, rowEnd = curH, colStart = 0, colEnd = curW;
  if (orig.width / orig.height > curW / curH) {
    const newH = Math.trunc(round7(orig.height * (curW / orig.width)));
    const pad = Math.floor((curH - newH) / 2);
    rowStart = pad;
    rowEnd = curH - pad;
  } else {
    const newW = Math.trunc(round7(orig.width * (curH / orig.height)));
    const pad = Math.floor((curW - newW) / 2);
    colStart = pad;
    colEnd = curW - pad;
  }
  const h = Math.max(0, rowEnd - rowStart);
  const w = Math.max(0, colEnd - colStart);

  let outH = h, outW = w, downsample = false;
  if (maxTiles > 0) {
    const ratio = Math.sqrt((h * w) / (maxTiles * side * side));
    if (ratio > 1.1) {
      outH = pyFloorDiv(h, ratio);
      outW = pyFloorDiv(w, ratio);
      downsample = true;
      if (outH < 1 || outW < 1) {
        throw new LensError(
          LensErrorCode.UnsupportedImage,
          `image is ${orig.width}×${orig.height}, too elongated to pack (${h}×${w} feature map -> ${outH}×${outW}): crop it to a less extreme aspect ratio`,
        );
      }
    }
  }
  return { side, rowStart, rowEnd: rowStart + h, colStart, colEnd: colStart + w, outH, outW, downsample };
}

/** Python round(x, 7) for the magnitudes used here (ties are not reachable in practice). */
function round7(x: number): number {
  return Math.round(x * 1e7) / 1e7;
}

/** Python float floor division a // b for a >= 0, b > 0 (fmod-based, as CPython computes it). */
function pyFloorDiv(a: number, b: number): number {
  const mod = a % b;
  const div = (a - mod) / b;
  let q = Math.floor(div);
  if (div - q > 0.5) q += 1;
  return q;
}

/**
 * torch upsample_bilinear2d index/weight tables for one axis, align_corners=False, scale = in/out,
 * in float32 as its CPU kernel computes them: src = max(0, (dst + 0.5) * scale - 0.5),
 * i0 = floor(src), i1 = min(i0 + 1, in - 1), l1 = src - i0, l0 = 1 - l1.
 */
function linearTaps(inSize: number, outSize: number) {
  const f = Math.fround;
  const i0 = new Int32Array(outSize), i1 = new Int32Array(outSize);
  const l0 = new Float32Array(outSize), l1 = new Float32Array(outSize);
  const scale = f(inSize / outSize);
  for (let d = 0; d < outSize; d++) {
    if (inSize === outSize) {
      i0[d] = d; i1[d] = d; l0[d] = 1; l1[d] = 0;
      continue;
    }
    let src = f(f(scale * f(d + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const idx = Math.min(Math.floor(src), inSize - 1);
    const lam = Math.min(Math.max(f(src - idx), 0), 1);
    i0[d] = idx;
    i1[d] = idx < inSize - 1 ? idx + 1 : idx;
    l1[d] = lam;
    l0[d] = f(1 - lam);
  }
  return { i0, i1, l0, l1 };
}
