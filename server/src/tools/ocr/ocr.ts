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
  // Light-on-dark text is found better inverted: detect in the dominant polarity first, then add
  // what the other polarity finds elsewhere (a blue button on a light page, a light panel on a dark one).
  const dark = o.invert === 'always' || (o.invert === 'auto' && meanLuma(img) < 110);
  let boxes = await detectText(models.det, img, { ...DEFAULT_DETECT, scale, boxThreshold: o.boxThreshold, invert: dark }, signal);
  if (dark && o.invert === 'auto') {
    const other = await detectText(models.det, img, { ...DEFAULT_DETECT, scale, boxThreshold: o.boxThreshold }, signal);
    boxes = unionBoxes(boxes, other);
  }
  boxes = joinTouching(boxes);
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
    .map((r, i) => ({ ...r, text: latinPunctuation(texts[i].text.trim()), score: texts[i].score }))
    .filter((p) => p.text.length > 0 && p.score >= o.minScore);
  const lines = readingOrder(pieces).map(
    (p): OcrLine => ({ text: p.text, box: [p.x0 / img.width, p.y0 / img.height, p.x1 / img.width, p.y1 / img.height], score: p.score }),
  );
  return { lines, stats: { scale, boxes: rects.length, detectMs: t1 - t0, recognizeMs: t2 - t1 } };
}

/**
 * The recogniser was trained on Chinese text and often writes full-width punctuation (，）：) or
 * the ideographic full stop in Latin text. In a line that is mostly ASCII, those become ASCII.
 */
export function latinPunctuation(text: string): string {
  let ascii = 0;
  for (const ch of text) if (ch.charCodeAt(0) < 128) ascii++;
  if (ascii < 0.6 * [...text].length) return text;
  return text.replace(/[\uff01-\uff5e]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0)).replace(/\u3002/g, '.');
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

/**
 * Joins boxes of one row that overlap or nearly touch (gap under a third of the height): the
 * unclip expansion makes neighbouring DB boxes overlap, and recognising them separately reads
 * the shared characters twice. Repeats until nothing changes.
 */
function joinTouching(boxes: DetBox[]): DetBox[] {
  const out = boxes.map((b) => ({ ...b }));
  let changed = true;
  while (changed) {
    changed = false;
    for (let i = 0; i < out.length && !changed; i++) {
      for (let j = i + 1; j < out.length; j++) {
        const a = out[i];
        const b = out[j];
        const h = Math.min(a.y1 - a.y0, b.y1 - b.y0);
        const vOverlap = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
        const gap = Math.max(a.x0, b.x0) - Math.min(a.x1, b.x1);
        if (vOverlap >= 0.6 * h && gap < h / 3) {
          out[i] = { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1), score: Math.max(a.score, b.score) };
          out.splice(j, 1);
          changed = true;
          break;
        }
      }
    }
  }
  return out;
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
