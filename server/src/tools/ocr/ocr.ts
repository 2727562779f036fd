/**
 * OCR of one image: detection (DBNet) -> recognition (SVTR + CTC) -> reading order.
 *
 * Tuned for screenshots and diagrams: the detector runs at native resolution up to
 * `maxSide` (so 10–14 px UI text is not shrunk away), small images are upscaled (text under
 * ~16 px is found more reliably at 2×), and dark images are detected a second time inverted
 * (light-on-dark text), keeping the union of the boxes. Recognition always crops the raw image.
 */
import type { Rgb } from '../pixels';
import { DEFAULT_DETECT, detectText, type DetBox } from './detect';
import { readingOrder } from './lines';
import { loadOcrModels } from './models';
import { recognizeText } from './recognize';

export interface OcrLine {
  text: string;
  /** [x0, y0, x1, y1] normalised to the raw image. */
  box: [number, number, number, number];
  /** Mean character confidence, 0..1. */
  score: number;
}

export interface OcrOptions {
  /** Largest detector input side, pixels (default 2048); larger images are downscaled. */
  maxSide: number;
  /** Images whose longer side is at most this are detected at 2× (default 1024). */
  upscaleBelow: number;
  /** Lines whose confidence is below this are dropped (PaddleOCR drop_score; default 0.5). */
  minScore: number;
  /** 'auto' (default): detect inverted too when the image is mostly dark; 'never' / 'always'. */
  invert: 'auto' | 'never' | 'always';
  /** Detector box threshold (mean text probability in a box; PaddleOCR det_db_box_thresh, default 0.5). */
  boxThreshold: number;
}

export const DEFAULT_OCR: OcrOptions = { maxSide: 2048, upscaleBelow: 1024, minScore: 0.5, invert: 'auto', boxThreshold: 0.5 };

export interface OcrResult {
  lines: OcrLine[];
  /** Detector scale used and timings, ms. */
  stats: { scale: number; boxes: number; detectMs: number; recognizeMs: number };
}

/** OCR of an RGB image. Loads the models on first use. Rejects on abort (`signal.reason`) and on model errors. */
export async function runOcr(img: Rgb, options: Partial<OcrOptions> = {}, signal?: AbortSignal): Promise<OcrResult> {
  const o = { ...DEFAULT_OCR, ...options };
  const models = await loadOcrModels();
  signal?.throwIfAborted();
  const long = Math.max(img.width, img.height);
  const scale = long <= o.upscaleBelow ? 2 : Math.min(1, o.maxSide / long);

  const t0 = Date.now();
  const dark = o.invert === 'always' || (o.invert === 'auto' && meanLuma(img) < 110);
  let boxes = await detectText(models.det, img, { ...DEFAULT_DETECT, scale, boxThreshold: o.boxThreshold }, signal);
  if (dark) {
    const inverted = await detectText(models.det, img, { ...DEFAULT_DETECT, scale, boxThreshold: o.boxThreshold, invert: true }, signal);
    boxes = unionBoxes(boxes, inverted);
  }
  const t1 = Date.now();

  const rects = boxes.map((b) => ({
    x0: Math.max(0, Math.floor(b.x0)),
    y0: Math.max(0, Math.floor(b.y0)),
    x1: Math.min(img.width, Math.ceil(b.x1)),
    y1: Math.min(img.height, Math.ceil(b.y1)),
  })).filter((r) => r.x1 - r.x0 >= 2 && r.y1 - r.y0 >= 2);
  const texts = await recognizeText(models.rec, models.charset, img, rects, signal);
  const t2 = Date.now();

  const pieces = rects
    .map((r, i) => ({ ...r, text: texts[i].text.trim(), score: texts[i].score }))
    .filter((p) => p.text.length > 0 && p.score >= o.minScore);
  const lines = readingOrder(pieces).map(
    (p): OcrLine => ({ text: p.text, box: [p.x0 / img.width, p.y0 / img.height, p.x1 / img.width, p.y1 / img.height], score: p.score }),
  );
  return { lines, stats: { scale, boxes: rects.length, detectMs: t1 - t0, recognizeMs: t2 - t1 } };
}

/** Mean luma (0..255) over a sparse sample of pixels. */
function meanLuma(img: Rgb): number {
  const n = img.width * img.height;
  const step = Math.max(1, Math.floor(n / 20000));
  let sum = 0;
  let count = 0;
  for (let i = 0; i < n; i += step) {
    const p = i * 3;
    sum += 0.299 * img.data[p] + 0.587 * img.data[p + 1] + 0.114 * img.data[p + 2];
    count++;
  }
  return sum / count;
}

/** `a` plus the boxes of `b` that do not overlap a box of `a` by more than a third of the smaller area. */
function unionBoxes(a: DetBox[], b: DetBox[]): DetBox[] {
  const area = (r: DetBox) => (r.x1 - r.x0) * (r.y1 - r.y0);
  const extra = b.filter((q) =>
    a.every((p) => {
      const w = Math.min(p.x1, q.x1) - Math.max(p.x0, q.x0);
      const h = Math.min(p.y1, q.y1) - Math.max(p.y0, q.y0);
      return w <= 0 || h <= 0 || (w * h) / Math.min(area(p), area(q)) < 1 / 3;
    }),
  );
  return [...a, ...extra];
}
