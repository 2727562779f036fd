/**
 * OCR stage 1: text detection with DBNet (PP-OCRv4 det), following PaddleOCR's inference path:
 *   resize (sides multiples of 32) -> ImageNet mean/std on BGR -> probability map
 *   -> threshold -> connected components -> box score -> unclip (expand) -> boxes in image pixels.
 *
 * Boxes are axis-aligned (screenshots and diagrams are not rotated), which replaces PaddleOCR's
 * contour + min-area-rectangle step; the unclip distance is DB's `area * ratio / perimeter`.
 *
 * Next stage: `recognize.ts`.
 */
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import type { DebugDump } from '../../runtime/debug';
import type { Rgb } from '../pixels';

export interface DetectOptions {
  /** Resize factor applied before detection (1 = native). The result is rounded to multiples of 32 per side. */
  scale: number;
  /** Probability above which a pixel is text (PaddleOCR det_db_thresh). */
  threshold: number;
  /** Minimum mean probability inside a box (det_db_box_thresh). */
  boxThreshold: number;
  /** DB unclip ratio (det_db_unclip_ratio). */
  unclipRatio: number;
  /** Boxes whose short side (detection pixels) is below this are dropped (DB min_size). */
  minSize: number;
  /** Invert the image first (light text on a dark background). */
  invert: boolean;
}

export const DEFAULT_DETECT: DetectOptions = { scale: 1, threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5, minSize: 3, invert: false };

/** A detected text region in the raw image's pixels (x1/y1 exclusive, fractional). */
export interface DetBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  /** Mean text probability inside the region, 0..1. */
  score: number;
}

// PaddleOCR normalises BGR pixels with the ImageNet constants listed in RGB order, i.e. channel 0 (B)
// gets 0.485/0.229. The weights were trained that way, so we do the same.
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** Detection input size for an image of `w`×`h` at `scale`: each side rounded to a multiple of 32, at least 32. */
export function detInputSize(w: number, h: number, scale: number): { width: number; height: number } {
  const r = (v: number) => Math.max(32, Math.round((v * scale) / 32) * 32);
  return { width: r(w), height: r(h) };
}

/** Runs the detector on `img`. Pure apart from the session call; `signal` is checked between stages; `dump` receives the probability map. */
export async function detectText(det: ort.InferenceSession, img: Rgb, o: DetectOptions, signal?: AbortSignal, dump?: DebugDump): Promise<DetBox[]> {
  const size = detInputSize(img.width, img.height, o.scale);
  const resized = await resizeForDetection(img, size.width, size.height);
  signal?.throwIfAborted();

  // [1, 3, Hd, Wd] f32, BGR planes.
  const plane = size.width * size.height;
  const x = new Float32Array(3 * plane);
  const a = new Float32Array(3);
  const b = new Float32Array(3);
  for (let c = 0; c < 3; c++) {
    a[c] = 1 / (255 * STD[c]);
    b[c] = -MEAN[c] / STD[c];
  }
  const src = resized;
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    let r = src[p];
    let g = src[p + 1];
    let bl = src[p + 2];
    if (o.invert) {
      r = 255 - r;
      g = 255 - g;
      bl = 255 - bl;
    }
    x[i] = bl * a[0] + b[0];
    x[plane + i] = g * a[1] + b[1];
    x[2 * plane + i] = r * a[2] + b[2];
  }
  const input = new ort.Tensor('float32', x, [1, 3, size.height, size.width]);
  const out = await det.run({ [det.inputNames[0]]: input });
  input.dispose();
  const probT = out[det.outputNames[0]];
  const prob = (probT.data as Float32Array).slice(); // [1, 1, Hd, Wd] f32
  probT.dispose();
  dump?.tensor(o.invert ? 'ocr_det_prob_inverted' : 'ocr_det_prob', prob, [1, 1, size.height, size.width]);
  signal?.throwIfAborted();

  const boxes = boxesFromProbability(prob, size.width, size.height, o);
  const sx = img.width / size.width;
  const sy = img.height / size.height;
  return boxes.map((bx) => ({
    x0: Math.max(0, bx.x0 * sx),
    y0: Math.max(0, bx.y0 * sy),
    x1: Math.min(img.width, bx.x1 * sx),
    y1: Math.min(img.height, bx.y1 * sy),
    score: bx.score,
  }));
}

async function resizeForDetection(img: Rgb, width: number, height: number): Promise<Uint8Array> {
  if (width === img.width && height === img.height) return img.data;
  const buf = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .resize(width, height, { fit: 'fill', kernel: 'linear' })
    .raw()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * DB post-processing on a probability map [Hd, Wd]: 4-connected components of `p > threshold`,
 * each scored by the mean probability over its bounding box, then expanded by the unclip distance.
 * Boxes are in detection pixels.
 */
export function boxesFromProbability(prob: Float32Array, width: number, height: number, o: DetectOptions): DetBox[] {
  const n = width * height;
  const label = new Int32Array(n).fill(-1);
  const stack = new Int32Array(n);
  const boxes: DetBox[] = [];
  let next = 0;
  for (let start = 0; start < n; start++) {
    if (label[start] !== -1 || !(prob[start] > o.threshold)) continue;
    // Flood fill one component, tracking its bounding box.
    let top = 0;
    stack[top++] = start;
    label[start] = next;
    let x0 = width;
    let y0 = height;
    let x1 = -1;
    let y1 = -1;
    while (top > 0) {
      const i = stack[--top];
      const y = (i / width) | 0;
      const x = i - y * width;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      if (x > 0 && label[i - 1] === -1 && prob[i - 1] > o.threshold) (label[i - 1] = next), (stack[top++] = i - 1);
      if (x < width - 1 && label[i + 1] === -1 && prob[i + 1] > o.threshold) (label[i + 1] = next), (stack[top++] = i + 1);
      if (y > 0 && label[i - width] === -1 && prob[i - width] > o.threshold) (label[i - width] = next), (stack[top++] = i - width);
      if (y < height - 1 && label[i + width] === -1 && prob[i + width] > o.threshold) (label[i + width] = next), (stack[top++] = i + width);
    }
    next++;
    const w = x1 - x0 + 1;
    const h = y1 - y0 + 1;
    if (Math.min(w, h) < o.minSize) continue;
    let sum = 0;
    for (let y = y0; y <= y1; y++) {
      for (let x = x0, i = y * width + x0; x <= x1; x++, i++) sum += prob[i];
    }
    const score = sum / (w * h);
    if (score < o.boxThreshold) continue;
    // Unclip: DB grows the shrunk text kernel back by d = area * ratio / perimeter.
    const d = (w * h * o.unclipRatio) / (2 * (w + h));
    if (Math.min(w, h) + 2 * d < o.minSize + 2) continue;
    boxes.push({ x0: x0 - d, y0: y0 - d, x1: x1 + 1 + d, y1: y1 + 1 + d, score });
  }
  return boxes;
}
