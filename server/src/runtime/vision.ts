/**
 * Vision stage: pixel values -> image feature rows in the LLM's embedding space.
 *
 *   pixel_values [views, 3, Hpx, Wpx] -> vision_encoder (one view per run, so a cancel is seen
 *   between views) -> image_features [1, N, H] per view -> (anyres) packed rows [M, H] f32.
 *
 * Which packing applies is decided once, at load, from the encoder's own inputs/outputs:
 *  - `pixel_values` of rank 5 with an `image_sizes` input: the export packs anyres itself; we
 *    pass all views at once and take its rows as they are.
 *  - rank 4 with anyres in the preprocessor spec and an `image_newline` output: we pack
 *    (unpad, downsample, newline per row, base first) in `anyres.ts`.
 *  - otherwise: the base view only (LLaVA-1.5 style), rows as returned.
 */
import type * as ort from 'onnxruntime-node';
import { LensError, LensErrorCode } from '../../../common/errors';
import { anyresRowCount, packAnyresFeatures } from './anyres';
import { inputMeta, outputMeta } from './backend';
import type { ImageFeatures } from './merge';
import type { PixelValues, PreprocessSpec } from './preprocess';
import { floatTensor, int64Tensor, tensorToF32, type FloatType } from './tensorUtil';

export type PackingMode = 'encoder' | 'runtime-anyres' | 'base-only';

export class VisionEncoder {
  readonly mode: PackingMode;
  private readonly inputType: FloatType;
  private newline: Float32Array | undefined;
  /** Feature width (LLM hidden) when the export declares it. */
  readonly featureWidth: number | undefined;
  /** Rows per view when declared, else computed from the patch grid. */
  readonly rowsPerView: number;

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly spec: PreprocessSpec,
    private readonly patchSize: number,
    log: (m: string) => void,
  ) {
    const ins = inputMeta(session);
    const outs = outputMeta(session);
    const pv = ins.get('pixel_values');
    if (!pv) throw new LensError(LensErrorCode.InvalidModelFolder, `vision_encoder has no 'pixel_values' input (it has ${[...ins.keys()].join(', ')}).`);
    const feat = outs.get('image_features');
    if (!feat) throw new LensError(LensErrorCode.InvalidModelFolder, `vision_encoder has no 'image_features' output (it has ${[...outs.keys()].join(', ')}): is this a LLaVA vision encoder export?`);
    this.inputType = pv.type === 'float16' ? 'float16' : 'float32';
    const w = feat.shape[feat.shape.length - 1];
    this.featureWidth = typeof w === 'number' ? w : undefined;
    const side = Math.floor(spec.imageSize.height / patchSize) * Math.floor(spec.imageSize.width / patchSize);
    const declaredRows = feat.shape.length === 3 ? feat.shape[1] : undefined;
    this.rowsPerView = typeof declaredRows === 'number' ? declaredRows : side;

    if (pv.shape.length === 5 && ins.has('image_sizes')) this.mode = 'encoder';
    else if (spec.anyres && outs.has('image_newline')) this.mode = 'runtime-anyres';
    else {
      if (spec.anyres) log(`anyres tiling is configured but vision_encoder has no 'image_newline' output and does not pack itself: using the base view only (${this.rowsPerView} rows per image).`);
      this.mode = 'base-only';
    }
  }

  /** Whether the preprocessor should produce anyres tiles for this encoder. */
  get wantsTiles(): boolean {
    return this.mode !== 'base-only';
  }

  /** Rows the merged image will occupy, before running the encoder (for context checks). */
  expectedRows(pv: PixelValues): number {
    if (this.mode === 'runtime-anyres' && pv.grid) {
      return anyresRowCount({
        views: pv.dims[0],
        rowsPerView: this.rowsPerView,
        grid: pv.grid,
        originalSize: pv.originalSize,
        imageSize: this.spec.imageSize.height,
        patchSize: this.patchSize,
        maxTiles: this.spec.anyres?.maxTiles ?? 0,
      } as Parameters<typeof anyresRowCount>[0]);
    }
    return this.rowsPerView;
  }

  /**
   * Runs the encoder. Checks `signal` before each view; returns undefined when cancelled.
   * @returns rows [M, H] f32
   */
  async encode(pv: PixelValues, signal: AbortSignal, onView?: (index: number, total: number) => void): Promise<ImageFeatures | undefined> {
    const [views, c, h, w] = pv.dims;
    const viewSize = c * h * w;
    if (this.mode === 'encoder') {
      if (signal.aborted) return undefined;
      onView?.(0, 1);
      const out = await this.session.run({
        pixel_values: floatTensor(this.inputType, pv.data, [1, views, c, h, w]),
        image_sizes: int64Tensor([pv.originalSize.height, pv.originalSize.width], [1, 2]),
      });
      const f = out.image_features;
      const width = f.dims[f.dims.length - 1];
      const data = tensorToF32(f);
      return { data: Float32Array.from(data), rows: data.length / width };
    }
    const n = this.mode === 'runtime-anyres' && pv.grid ? views : 1;
    let width = 0;
    let rows = 0;
    const parts: Float32Array[] = [];
    for (let v = 0; v < n; v++) {
      if (signal.aborted) return undefined;
      onView?.(v, n);
      const out = await this.session.run({
        pixel_values: floatTensor(this.inputType, pv.data.subarray(v * viewSize, (v + 1) * viewSize), [1, c, h, w]),
      });
      const f = out.image_features; // [1, N, H]
      width = f.dims[f.dims.length - 1];
      rows = f.dims.length === 3 ? f.dims[1] : f.dims[0];
      parts.push(Float32Array.from(tensorToF32(f)));
      if (this.mode === 'runtime-anyres' && !this.newline && out.image_newline) this.newline = Float32Array.from(tensorToF32(out.image_newline));
    }
    if (this.mode === 'runtime-anyres' && pv.grid) {
      const all = new Float32Array(n * rows * width);
      parts.forEach((p, i) => all.set(p, i * rows * width));
      const packed = packAnyresFeatures({
        features: all,
        views: n,
        rowsPerView: rows,
        hidden: width,
        grid: pv.grid,
        originalSize: pv.originalSize,
        imageSize: this.spec.imageSize.height,
        patchSize: this.patchSize,
        imageNewline: this.newline!,
        maxTiles: this.spec.anyres?.maxTiles ?? 0,
      });
      return { data: packed.data, rows: packed.rows };
    }
    return { data: parts[0], rows };
  }
}
