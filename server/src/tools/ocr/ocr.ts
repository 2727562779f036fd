/**
 * OCR of one image: detection (DBNet) -> recognition (SVTR + CTC) -> reading order.
 *
 * Tuned for screenshots and diagrams (PaddleOCR's defaults target photos):
 *  - the detector runs at native resolution up to `maxSide` (PaddleOCR shrinks to 960, which
 *    loses 10–14 px UI text on a 1920 px screenshot); images up to `upscaleBelow` are detected at 2×;
 *  - dark themes are detected inverted, mixed images both ways;
 *  - a lower box threshold (0.5 instead of 0.6) keeps lines of thin glyphs (underscores, quotes);
 *  - overlapping boxes of one row are joined before recognition (no characters read twice);
 *  - recognition crops the raw image, recovers word spaces the Chinese recogniser drops, and
 *    turns full-width punctuation in Latin lines into ASCII.
 *
 * Debug: with `LLAVA_LENS_DEBUG_DIR` set, the detector's probability maps (`ocr_det_prob*.f32`)
 * and the boxes, raw texts, lines and timings (`ocr.json`) are written there.
 */
import { DebugDump } from '../../runtime/debug';
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
  /**
   * 'auto' (default): detect inverted when the image is mostly dark, and both ways when it has
   * large dark and light areas; 'never' / 'always': one pass, as is / inverted.
   */
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

  const dump = process.env.LLAVA_LENS_DEBUG_DIR ? new DebugDump() : undefined;
  const t0 = Date.now();
  // The detector finds dark-on-light text best, so a mostly dark image (a dark theme) is detected
  // inverted. An image with large areas of both (a light page with a dark code block) is detected
  // both ways, keeping the union.
  const { dark, light } = polarity(img);
  const invert = o.invert === 'always' || (o.invert === 'auto' && dark > light);
  let boxes = await detectText(models.det, img, { ...DEFAULT_DETECT, scale, boxThreshold: o.boxThreshold, invert }, signal, dump);
  if (o.invert === 'auto' && Math.min(dark, light) > MIXED_FRACTION) {
    const other = await detectText(models.det, img, { ...DEFAULT_DETECT, scale, boxThreshold: o.boxThreshold, invert: !invert }, signal, dump);
    boxes = boxes.concat(other); // the same text found twice overlaps and is joined below
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
  const stats = { scale, boxes: rects.length, detectMs: t1 - t0, recognizeMs: t2 - t1 };
  dump?.json('ocr', { stats, polarity: { dark, light, inverted: invert }, rects, texts, lines });
  return { lines, stats };
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

/** Both polarities are detected when dark and light pixels each cover more than this share of the image. */
const MIXED_FRACTION = 0.15;

/** Shares of dark (luma < 96) and light (luma > 160) pixels, over a sparse sample. */
function polarity(img: Rgb): { dark: number; light: number } {
  const n = img.width * img.height;
  const step = Math.max(1, Math.floor(n / 20000));
  let dark = 0;
  let light = 0;
  let count = 0;
  for (let i = 0; i < n; i += step) {
    const p = i * 3;
    const y = 0.299 * img.data[p] + 0.587 * img.data[p + 1] + 0.114 * img.data[p + 2];
    if (y < 96) dark++;
    else if (y > 160) light++;
    count++;
  }
  return { dark: dark / count, light: light / count };
}

/**
 * Joins boxes of one row that overlap or nearly touch (gap under a third of the height): the
 * unclip expansion makes neighbouring DB boxes overlap, and recognising them separately reads
 * the shared characters twice; the two polarity passes find the same text twice. Repeats until
 * nothing changes.
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

