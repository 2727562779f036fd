/**
 * Stage 2 of a request: decoded RGB pixels -> `pixel_values` for the vision encoder.
 *
 * Reproduces the Hugging Face image processors the LLaVA family ships with (facts in the design
 * notes, lmm-runtime.md §3), chosen once from the model folder's preprocessor_config.json:
 *   - CLIP (LLaVA-1.5): [pad to square with the mean colour] -> resize shortest edge -> centre crop
 *   - SigLIP: resize straight to the encoder size
 *   - anyres (LLaVA-NeXT / OneVision): best grid pinpoint -> resize keeping aspect -> pad black
 *     -> tiles, after a base view of the whole image
 * then rescale (1/255) and normalise ((x - mean) / std) into CHW float32.
 *
 * Resampling: bicubic and bilinear use sharp (libvips) with `kernel: 'cubic'` / `'linear'`.
 * libvips' cubic is Catmull-Rom (a = -0.5), the same kernel as PIL's BICUBIC, and both widen the
 * kernel when shrinking (antialias), but they are not bit-exact: PIL convolves with 22-bit
 * fixed-point weights and rounds to u8 between the horizontal and vertical passes, while libvips
 * uses its own fixed-point weights and rounding and may box-shrink by an integer factor before the
 * kernel pass on large reductions; expect differences of a few u8 levels near edges. Flat areas,
 * linear ramps and identity sizes come out the same. Nearest is done here in JS with PIL's
 * rule (source = floor((dst + 0.5) * in / out)) and is exact. Everything else (geometry, padding,
 * cropping, rescale, normalise) is exact against the Python processors.
 *
 * Next stage: the vision encoder; for anyres exports that leave packing to us, `anyres.ts`.
 */
import sharp from 'sharp';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { DecodedImage, DecodeResize } from './image';

export type Resample = 'bicubic' | 'bilinear' | 'nearest';

export interface PreprocessSpec {
  /** Encoder input size (the crop size / tile size), pixels. */
  imageSize: { height: number; width: number };
  /** Resize the shortest edge to this (CLIP), or undefined: resize straight to imageSize (SigLIP). */
  shortestEdge?: number;
  doCenterCrop: boolean;
  /** LLaVA-1.5: pad to a square with the mean colour BEFORE resizing. Not used with anyres. */
  padToSquare: boolean;
  resample: Resample;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  /** Present => LLaVA-NeXT/OneVision anyres tiling. */
  anyres?: {
    /** [height, width] pixels, each a multiple of the tile size (imageSize). */
    gridPinpoints: Array<[number, number]>;
    /** From vision_aspect_ratio 'anyres_max_9' -> 9; 0 = no feature downsampling (plain 'anyres'). */
    maxTiles: number;
  };
}

export interface PixelValues {
  /** [views, 3, H, W] f32, CHW per view. Owned by the caller. */
  data: Float32Array;
  dims: [number, number, number, number];
  /** anyres: views[0] is the base view (whole image resized), then tiles row-major. */
  grid?: { rows: number; cols: number; bestResolution: { height: number; width: number } };
  /** The decoded image's size, pixels (the `image_sizes` the model packs features with). */
  originalSize: { width: number; height: number };
}

/** An RGB u8 image, [Hpx, Wpx, 3] HWC. */
interface Rgb {
  data: Uint8Array;
  width: number;
  height: number;
}

// ---------------------------------------------------------------------------------------------
// Reading the spec from the model folder

const PIL_RESAMPLE: Record<number, Resample> = { 0: 'nearest', 2: 'bilinear', 3: 'bicubic' };

/**
 * Reads preprocessor_config.json (+ config.json for image_grid_pinpoints / vision_aspect_ratio).
 * Pure; throws LensError(InvalidModelFolder) naming the file and field on anything it cannot honour.
 * `do_pad` means "pad to a square" only without anyres; with anyres it is HF's batch padding of the
 * tile dimension, which does not apply to one image.
 */
export function parsePreprocessSpec(preprocessorConfig: any, modelConfig: any): PreprocessSpec {
  const pp = preprocessorConfig;
  const mc = modelConfig ?? {};
  if (!isObject(pp)) bad('preprocessor_config.json', '(the whole file)', 'is not a JSON object');
  if (!isObject(mc)) bad('config.json', '(the whole file)', 'is not a JSON object');
  const P = 'preprocessor_config.json';

  if (pp.do_resize === false) bad(P, 'do_resize', 'is false; this runtime always resizes to the encoder input size');
  const doCenterCrop = pp.do_center_crop === true;

  // size: {shortest_edge} (CLIP), {height, width} (SigLIP), or a bare number (older exports).
  let shortestEdge: number | undefined;
  let sizeHW: { height: number; width: number } | undefined;
  if (typeof pp.size === 'number') {
    if (doCenterCrop) shortestEdge = posInt(pp.size, P, 'size');
    else sizeHW = { height: posInt(pp.size, P, 'size'), width: posInt(pp.size, P, 'size') };
  } else if (isObject(pp.size) && pp.size.shortest_edge !== undefined) {
    shortestEdge = posInt(pp.size.shortest_edge, P, 'size.shortest_edge');
  } else if (isObject(pp.size) && pp.size.height !== undefined && pp.size.width !== undefined) {
    sizeHW = { height: posInt(pp.size.height, P, 'size.height'), width: posInt(pp.size.width, P, 'size.width') };
  } else {
    bad(P, 'size', `is ${JSON.stringify(pp.size)}; expected {"shortest_edge": n} or {"height": h, "width": w}`);
  }

  let imageSize: { height: number; width: number };
  if (doCenterCrop) {
    const c = pp.crop_size;
    if (typeof c === 'number') imageSize = { height: posInt(c, P, 'crop_size'), width: posInt(c, P, 'crop_size') };
    else if (isObject(c)) imageSize = { height: posInt(c.height, P, 'crop_size.height'), width: posInt(c.width, P, 'crop_size.width') };
    else bad(P, 'crop_size', `is ${JSON.stringify(c)} but do_center_crop is true; expected {"height": h, "width": w}`);
    if (sizeHW && (sizeHW.height !== imageSize.height || sizeHW.width !== imageSize.width)) {
      bad(P, 'size', `is ${sizeHW.height}×${sizeHW.width} but crop_size is ${imageSize.height}×${imageSize.width}; resizing to a fixed size and then cropping is not supported`);
    }
  } else {
    imageSize = sizeHW ?? { height: shortestEdge!, width: shortestEdge! };
  }

  const rs = pp.resample ?? 3;
  const resample = PIL_RESAMPLE[rs];
  if (!resample) bad(P, 'resample', `is ${JSON.stringify(rs)}; supported PIL filters: 0 (nearest), 2 (bilinear), 3 (bicubic)`);

  let rescaleFactor = 1;
  if (pp.do_rescale !== false) {
    rescaleFactor = pp.rescale_factor ?? 1 / 255;
    if (!(typeof rescaleFactor === 'number' && Number.isFinite(rescaleFactor) && rescaleFactor > 0)) {
      bad(P, 'rescale_factor', `is ${JSON.stringify(pp.rescale_factor)}; expected a positive number such as 1/255`);
    }
  }

  const doNormalize = pp.do_normalize !== false;
  const imageMean = doNormalize ? triple(pp.image_mean, P, 'image_mean', false) : ([0, 0, 0] as [number, number, number]);
  const imageStd = doNormalize ? triple(pp.image_std, P, 'image_std', true) : ([1, 1, 1] as [number, number, number]);

  const spec: PreprocessSpec = { imageSize, shortestEdge, doCenterCrop, padToSquare: false, resample, rescaleFactor, doNormalize, imageMean, imageStd };

  const pinpoints = parsePinpoints(mc, pp, imageSize);
  if (pinpoints) {
    spec.anyres = { gridPinpoints: pinpoints, maxTiles: parseMaxTiles(mc) };
  } else {
    spec.padToSquare = pp.do_pad === true || mc.image_aspect_ratio === 'pad';
  }
  return spec;
}

function parsePinpoints(mc: any, pp: any, imageSize: { height: number; width: number }): Array<[number, number]> | undefined {
  const fromModel = mc.image_grid_pinpoints;
  const fromPre = pp.image_grid_pinpoints;
  if (fromModel === undefined && fromPre === undefined) return undefined;
  const a = fromModel !== undefined ? pinpointList(fromModel, 'config.json', imageSize.height) : undefined;
  const b = fromPre !== undefined ? pinpointList(fromPre, 'preprocessor_config.json', imageSize.height) : undefined;
  if (a && b && JSON.stringify(a) !== JSON.stringify(b)) {
    bad('config.json', 'image_grid_pinpoints', 'differs from preprocessor_config.json image_grid_pinpoints; the tiling and the feature packing would disagree');
  }
  const list = (a ?? b)!;
  if (imageSize.height !== imageSize.width) {
    bad('preprocessor_config.json', 'size/crop_size', `is ${imageSize.height}×${imageSize.width}; anyres tiling needs square tiles`);
  }
  const tile = imageSize.height;
  for (const [h, w] of list) {
    if (h % tile !== 0 || w % tile !== 0) {
      bad(fromModel !== undefined ? 'config.json' : 'preprocessor_config.json', 'image_grid_pinpoints', `has ${h}×${w}, not a multiple of the ${tile}-pixel tile`);
    }
  }
  return list;
}

/**
 * A list of [height, width] pairs (Hugging Face), or the original LLaVA-NeXT range string
 * "(1x1),...,(6x6)" whose pairs are (width, height) in tiles.
 */
function pinpointList(v: unknown, file: string, tile: number): Array<[number, number]> {
  const F = 'image_grid_pinpoints';
  if (typeof v === 'string') {
    const m = [...v.matchAll(/\((\d+)x(\d+)\)/g)].map((x) => [Number(x[1]), Number(x[2])]);
    if (m.length === 0) bad(file, F, `is ${JSON.stringify(v)}; expected [[h, w], ...] or "(1x1),...,(6x6)"`);
    const [s, e] = [m[0], m[m.length - 1]];
    const out: Array<[number, number]> = [];
    for (let i = s[0]; i <= e[0]; i++) for (let j = s[1]; j <= e[1]; j++) out.push([j * tile, i * tile]);
    if (out.length === 0) bad(file, F, `is ${JSON.stringify(v)}, an empty range`);
    return out;
  }
  if (!Array.isArray(v) || v.length === 0) bad(file, F, `is ${JSON.stringify(v)}; expected a non-empty list of [height, width]`);
  return v.map((p, i) => {
    if (!Array.isArray(p) || p.length !== 2) bad(file, `${F}[${i}]`, `is ${JSON.stringify(p)}; expected [height, width]`);
    return [posInt(p[0], file, `${F}[${i}][0]`), posInt(p[1], file, `${F}[${i}][1]`)] as [number, number];
  });
}

function parseMaxTiles(mc: any): number {
  const field = mc.vision_aspect_ratio !== undefined ? 'vision_aspect_ratio' : 'image_aspect_ratio';
  const v = mc[field];
  if (v === undefined) return 0;
  if (typeof v === 'string') {
    const m = /^anyres_max_(\d+)$/.exec(v);
    if (m && Number(m[1]) > 0) return Number(m[1]);
    if (v === 'anyres') return 0;
  }
  bad('config.json', field, `is ${JSON.stringify(v)}; expected "anyres" or "anyres_max_N"`);
}

function isObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function posInt(v: unknown, file: string, field: string): number {
  if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  bad(file, field, `is ${JSON.stringify(v)}; expected a positive integer`);
}

function triple(v: unknown, file: string, field: string, nonZero: boolean): [number, number, number] {
  const arr = typeof v === 'number' ? [v, v, v] : Array.isArray(v) && v.length === 1 ? [v[0], v[0], v[0]] : v;
  if (Array.isArray(arr) && arr.length === 3 && arr.every((x) => typeof x === 'number' && Number.isFinite(x) && (!nonZero || x !== 0))) {
    return [arr[0], arr[1], arr[2]];
  }
  bad(file, field, `is ${JSON.stringify(v)}; expected three ${nonZero ? 'non-zero ' : ''}numbers (one per RGB channel)`);
}

function bad(file: string, field: string, problem: string): never {
  throw new LensError(LensErrorCode.InvalidModelFolder, `${file}: ${field} ${problem}: fix the file or re-export the model`, { file, field });
}

// ---------------------------------------------------------------------------------------------
// anyres geometry (pure)

/**
 * LLaVA-NeXT's select_best_resolution: the pinpoint ([height, width]) that keeps the most
 * effective resolution when the image is scaled to fit it, ties broken by the least wasted area;
 * the first such candidate in list order wins.
 */
export function selectBestResolution(origW: number, origH: number, pinpoints: ReadonlyArray<readonly [number, number]>): { height: number; width: number } {
  let best: { height: number; width: number } | undefined;
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const [height, width] of pinpoints) {
    const scale = Math.min(width / origW, height / origH);
    const downW = Math.trunc(origW * scale);
    const downH = Math.trunc(origH * scale);
    const effective = Math.min(downW * downH, origW * origH);
    const wasted = width * height - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = { height, width };
    }
  }
  if (!best) throw new LensError(LensErrorCode.Internal, 'selectBestResolution: no grid pinpoint fits (empty list?)');
  return best;
}

export interface PadGeometry {
  /** Size the image is resized to (aspect kept), pixels. */
  resized: { width: number; height: number };
  /** Black borders around it that fill the target, pixels; top/left = floor(diff / 2). */
  pad: { top: number; bottom: number; left: number; right: number };
}

/**
 * LLaVA-NeXT's resize_and_pad_image / HF get_patch_output_size + _pad_for_patching: scale by the
 * tighter ratio; that axis takes the target size exactly, the other min(ceil(orig * scale), target).
 */
export function resizeAndPadGeometry(origW: number, origH: number, target: { height: number; width: number }): PadGeometry {
  const scaleW = target.width / origW;
  const scaleH = target.height / origH;
  let width: number;
  let height: number;
  if (scaleW < scaleH) {
    width = target.width;
    height = Math.min(Math.ceil(origH * scaleW), target.height);
  } else {
    height = target.height;
    width = Math.min(Math.ceil(origW * scaleH), target.width);
  }
  const top = Math.floor((target.height - height) / 2);
  const left = Math.floor((target.width - width) / 2);
  return { resized: { width, height }, pad: { top, bottom: target.height - height - top, left, right: target.width - width - left } };
}

/** HF get_resize_output_image_size(default_to_square=False): short side -> `edge`, long side -> int(edge * long / short). */
export function shortestEdgeSize(width: number, height: number, edge: number): { width: number; height: number } {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.trunc((edge * long) / short);
  return width <= height ? { width: edge, height: newLong } : { width: newLong, height: edge };
}

// ---------------------------------------------------------------------------------------------
// The pipeline

/**
 * Turns one decoded image into pixel values. Does not modify `img`. May run concurrently.
 * Throws LensError(Internal) only on an inconsistent spec that parsePreprocessSpec would refuse.
 */
/**
 * The resize this spec starts with when it is taken straight from the decoded image, for
 * `decodeImage`'s `resize` option: the view size (SigLIP) or the shortest-edge size (CLIP, whose
 * centre crop then follows here). Undefined when the first resize works on a derived canvas
 * (anyres, pad to square) or is done here in JS (nearest). `preprocess` then finds the image at
 * its target size and does not resize again.
 */
export function decodeResize(spec: PreprocessSpec): DecodeResize | undefined {
  if (spec.anyres || spec.padToSquare || spec.resample === 'nearest') return undefined;
  const kernel = spec.resample === 'bicubic' ? 'cubic' : 'linear';
  const edge = spec.shortestEdge;
  if (edge !== undefined) return { kernel, size: (w, h) => shortestEdgeSize(w, h, edge) };
  return { kernel, size: () => ({ width: spec.imageSize.width, height: spec.imageSize.height }) };
}

export async function preprocess(img: DecodedImage, spec: PreprocessSpec): Promise<PixelValues> {
  const original: Rgb = { data: img.data, width: img.width, height: img.height };
  const originalSize = img.resizedFrom ?? { width: img.width, height: img.height };
  if (img.resizedFrom && (spec.anyres || spec.padToSquare)) {
    throw new LensError(LensErrorCode.Internal, 'an image resized while decoding reached an anyres or pad-to-square preprocessing');
  }
  const lut = normalisationTable(spec);

  if (!spec.anyres) {
    const squared = spec.padToSquare ? expandToSquare(original, meanColour(spec.imageMean)) : original;
    const view = await viewPipeline(squared, spec);
    return { data: toChw([view], lut), dims: [1, 3, view.height, view.width], originalSize };
  }

  // anyres: base view, then the pinpoint canvas cut into tiles, row-major.
  const tile = spec.imageSize.height;
  const best = selectBestResolution(img.width, img.height, spec.anyres.gridPinpoints);
  if (best.height % tile !== 0 || best.width % tile !== 0) {
    throw new LensError(LensErrorCode.Internal, `anyres pinpoint ${best.height}×${best.width} is not a multiple of the ${tile}-pixel tile`);
  }
  const geo = resizeAndPadGeometry(img.width, img.height, best);
  const resized = await resize(original, geo.resized.width, geo.resized.height, spec.resample);
  const canvas = place(resized, best.width, best.height, geo.pad.top, geo.pad.left, [0, 0, 0]);
  const rows = best.height / tile;
  const cols = best.width / tile;

  // HF resizes the base view to size (height, width), or (shortest_edge, shortest_edge).
  const baseW = spec.shortestEdge ?? spec.imageSize.width;
  const baseH = spec.shortestEdge ?? spec.imageSize.height;
  const views: Rgb[] = [await viewPipeline(await resize(original, baseW, baseH, spec.resample), spec)];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      views.push(await viewPipeline(crop(canvas, r * tile, c * tile, tile, tile), spec));
    }
  }
  const { width, height } = views[0];
  if (views.some((v) => v.width !== width || v.height !== height)) {
    throw new LensError(LensErrorCode.Internal, 'anyres views came out with different sizes: the preprocessor spec is inconsistent');
  }
  return {
    data: toChw(views, lut),
    dims: [views.length, 3, height, width],
    grid: { rows, cols, bestResolution: best },
    originalSize,
  };
}

/** Per view, as HF's _preprocess: resize (shortest edge, or straight to imageSize), then centre crop. */
async function viewPipeline(img: Rgb, spec: PreprocessSpec): Promise<Rgb> {
  const target = spec.shortestEdge !== undefined
    ? shortestEdgeSize(img.width, img.height, spec.shortestEdge)
    : { width: spec.imageSize.width, height: spec.imageSize.height };
  const resized = await resize(img, target.width, target.height, spec.resample);
  return spec.doCenterCrop ? centreCrop(resized, spec.imageSize.height, spec.imageSize.width) : resized;
}

/** LLaVA's expand2square background: int(mean * 255) per channel (CLIP mean -> 122, 116, 104). */
export function meanColour(mean: readonly [number, number, number]): [number, number, number] {
  return [Math.trunc(mean[0] * 255), Math.trunc(mean[1] * 255), Math.trunc(mean[2] * 255)];
}

/** expand2square: a max(w, h) square of `bg`, the image at offset floor((max - w) / 2), floor((max - h) / 2). */
function expandToSquare(img: Rgb, bg: [number, number, number]): Rgb {
  if (img.width === img.height) return img;
  const side = Math.max(img.width, img.height);
  return place(img, side, side, Math.floor((side - img.height) / 2), Math.floor((side - img.width) / 2), bg);
}

/**
 * HF center_crop: top = floor((h - ch) / 2), left = floor((w - cw) / 2). Where the image is smaller
 * than the crop, HF first pads it with zeros, centred at ceil(diff / 2), which this reproduces.
 */
function centreCrop(img: Rgb, ch: number, cw: number): Rgb {
  const top = img.height >= ch ? Math.floor((img.height - ch) / 2) : -Math.ceil((ch - img.height) / 2);
  const left = img.width >= cw ? Math.floor((img.width - cw) / 2) : -Math.ceil((cw - img.width) / 2);
  return crop(img, top, left, ch, cw);
}

/** A h×w window at (top, left); pixels outside the source are black. */
function crop(img: Rgb, top: number, left: number, h: number, w: number): Rgb {
  if (top === 0 && left === 0 && h === img.height && w === img.width) return img;
  const out = new Uint8Array(h * w * 3);
  const x0 = Math.max(0, -left);
  const x1 = Math.min(w, img.width - left);
  for (let y = 0; y < h; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= img.height || x1 <= x0) continue;
    const src = (sy * img.width + left + x0) * 3;
    out.set(img.data.subarray(src, src + (x1 - x0) * 3), (y * w + x0) * 3);
  }
  return { data: out, width: w, height: h };
}

/** The image pasted at (top, left) on a w×h canvas of `bg`. */
function place(img: Rgb, w: number, h: number, top: number, left: number, bg: [number, number, number]): Rgb {
  const out = new Uint8Array(w * h * 3);
  if (bg[0] !== 0 || bg[1] !== 0 || bg[2] !== 0) {
    out.set(bg, 0); // one pixel, then double the filled prefix until the canvas is full
    for (let filled = 3; filled < out.length; filled *= 2) out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
  }
  for (let y = 0; y < img.height; y++) {
    out.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), ((y + top) * w + left) * 3);
  }
  return { data: out, width: w, height: h };
}

async function resize(img: Rgb, width: number, height: number, resample: Resample): Promise<Rgb> {
  if (width === img.width && height === img.height) return img; // PIL returns a copy: no resampling
  if (resample === 'nearest') return resizeNearest(img, width, height);
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: resample === 'bicubic' ? 'cubic' : 'linear' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height };
}

/**
 * PIL NEAREST (ImagingScaleAffine): source position starts at 0.5 * in / out and advances by
 * in / out per output pixel (accumulated, as PIL does), truncated to an index.
 */
function resizeNearest(img: Rgb, width: number, height: number): Rgb {
  const out = new Uint8Array(width * height * 3);
  const sx = nearestIndices(img.width, width);
  const sy = nearestIndices(img.height, height);
  for (let y = 0; y < height; y++) {
    const row = sy[y] * img.width;
    for (let x = 0; x < width; x++) {
      const s = (row + sx[x]) * 3;
      const d = (y * width + x) * 3;
      out[d] = img.data[s]; out[d + 1] = img.data[s + 1]; out[d + 2] = img.data[s + 2];
    }
  }
  return { data: out, width, height };
}

function nearestIndices(inSize: number, outSize: number): Int32Array {
  const step = inSize / outSize;
  const idx = new Int32Array(outSize);
  let pos = step * 0.5;
  for (let i = 0; i < outSize; i++) {
    idx[i] = Math.min(inSize - 1, Math.trunc(pos));
    pos += step;
  }
  return idx;
}

/**
 * [3][256] f32 values for each u8 level, computed as HF's numpy path does: rescale in float64 then
 * cast to float32, then (x - mean) / std in float32 (Math.fround after each op reproduces it).
 */
function normalisationTable(spec: PreprocessSpec): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const m = Math.fround(spec.imageMean[c]);
    const s = Math.fround(spec.imageStd[c]);
    for (let v = 0; v < 256; v++) {
      const x = Math.fround(v * spec.rescaleFactor);
      lut[c * 256 + v] = spec.doNormalize ? Math.fround(Math.fround(x - m) / s) : x;
    }
  }
  return lut;
}

/** HWC u8 views of one size -> [views, 3, H, W] f32 through the lookup table. */
function toChw(views: Rgb[], lut: Float32Array): Float32Array {
  const { width, height } = views[0];
  const plane = width * height;
  const out = new Float32Array(views.length * 3 * plane);
  views.forEach((v, n) => {
    const base = n * 3 * plane;
    for (let i = 0; i < plane; i++) {
      out[base + i] = lut[v.data[i * 3]];
      out[base + plane + i] = lut[256 + v.data[i * 3 + 1]];
      out[base + 2 * plane + i] = lut[512 + v.data[i * 3 + 2]];
    }
  });
  return out;
}
