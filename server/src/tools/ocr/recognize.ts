/**
 * OCR stage 2: text recognition with PP-OCRv4 rec (SVTR-LCNet + CTC), following PaddleOCR's
 * `TextRecognizer`: crop -> resize to height 48 keeping the aspect ratio -> (x/255 - 0.5)/0.5 on
 * BGR -> pad the width with zeros to the batch's widest -> softmax [B, T, classes] -> CTC greedy.
 *
 * Crops are batched by aspect ratio (sorted), so a batch holds similar widths and little padding.
 *
 * Next stage: `lines.ts` (reading order).
 */
import * as ort from 'onnxruntime-node';
import { crop, resizeBilinear, type PxRect, type Rgb } from '../pixels';

export const REC_HEIGHT = 48;
/** The narrowest batch width. PaddleOCR pads to 320; 160 reads our test images the same and spends less on short labels. */
const REC_MIN_WIDTH = 160;
/** Crops wider than this (after resizing to height 48) are squeezed to it: a full-width line of 13 px text on a 1920 px screenshot fits. */
const REC_MAX_WIDTH = 4800;
/** Most padded pixels a batch may hold (bounds memory: 48 × width × 3 × batch floats). */
const BATCH_PIXEL_WIDTH = 6 * 1280;
const BATCH_MAX = 8;
/** See `ctcGreedy`. */
export const DEFAULT_SPACE_THRESHOLD = 0.12;

export interface Recognised {
  text: string;
  /** Mean probability of the kept characters, 0..1 (0 for an empty text). */
  score: number;
}

/** Recognises each rectangle of `img` (pixels, inside the image). Result i belongs to rect i. */
export async function recognizeText(
  rec: ort.InferenceSession,
  charset: string[],
  img: Rgb,
  rects: PxRect[],
  signal?: AbortSignal,
  spaceThreshold = DEFAULT_SPACE_THRESHOLD,
): Promise<Recognised[]> {
  const results: Recognised[] = new Array(rects.length);
  const items = rects.map((r, i) => {
    const w = r.x1 - r.x0;
    const h = r.y1 - r.y0;
    const width = Math.min(REC_MAX_WIDTH, Math.max(1, Math.ceil((REC_HEIGHT * w) / h)));
    return { i, r, width };
  });
  items.sort((p, q) => p.width - q.width);

  let k = 0;
  while (k < items.length) {
    signal?.throwIfAborted();
    // Take crops while the padded batch stays within budget (always at least one).
    let end = k + 1;
    while (end < items.length && end - k < BATCH_MAX && Math.max(REC_MIN_WIDTH, items[end].width) * (end - k + 1) <= BATCH_PIXEL_WIDTH) end++;
    const batch = items.slice(k, end);
    k = end;
    const batchW = Math.max(REC_MIN_WIDTH, ...batch.map((b) => b.width));
    const plane = REC_HEIGHT * batchW;
    const x = new Float32Array(batch.length * 3 * plane); // [B, 3, 48, Wb] f32, zeros = padding
    batch.forEach((b, n) => {
      const line = resizeBilinear(crop(img, b.r), b.width, REC_HEIGHT);
      const base = n * 3 * plane;
      for (let y = 0; y < REC_HEIGHT; y++) {
        for (let xx = 0; xx < b.width; xx++) {
          const p = (y * b.width + xx) * 3;
          const o = base + y * batchW + xx;
          x[o] = line.data[p + 2] / 127.5 - 1; // B
          x[o + plane] = line.data[p + 1] / 127.5 - 1; // G
          x[o + 2 * plane] = line.data[p] / 127.5 - 1; // R
        }
      }
    });
    const input = new ort.Tensor('float32', x, [batch.length, 3, REC_HEIGHT, batchW]);
    const out = await rec.run({ [rec.inputNames[0]]: input });
    input.dispose();
    const probs = out[rec.outputNames[0]];
    const [, steps, classes] = probs.dims as number[];
    const data = probs.data as Float32Array; // [B, T, classes] f32
    batch.forEach((b, n) => {
      results[b.i] = ctcGreedy(data.subarray(n * steps * classes, (n + 1) * steps * classes), steps, classes, charset, spaceThreshold);
    });
    probs.dispose();
  }
  return results;
}

/**
 * CTC greedy decoding of one [T, classes] softmax: argmax per step, drop repeats, drop blank (0).
 * The score is the mean of the kept steps' maxima.
 *
 * Space recovery: the Chinese PP-OCRv4 recogniser often lets the blank win by a small margin
 * over the space class at English word gaps (space at 0.1–0.3 where it is ~0 elsewhere). When,
 * between two emitted characters, the space probability of some blank step reaches
 * `spaceThreshold`, a space is inserted (0 turns this off; 1 is plain greedy decoding), except
 * before closing punctuation and after opening brackets, which monospaced fonts space widely.
 */
const NO_SPACE_BEFORE = /^[.,;:!?)\]}）】，。；：]$/u;
const NO_SPACE_AFTER = /[([{（【]$/u;

export function ctcGreedy(p: Float32Array, steps: number, classes: number, charset: string[], spaceThreshold = 0): Recognised {
  const space = charset.length - 1;
  let text = '';
  let sum = 0;
  let kept = 0;
  let prev = -1;
  let gapSpace = 0; // max space probability since the last emitted character
  for (let t = 0; t < steps; t++) {
    const row = t * classes;
    let best = 0;
    let bestP = p[row];
    for (let c = 1; c < classes; c++) {
      if (p[row + c] > bestP) {
        bestP = p[row + c];
        best = c;
      }
    }
    if (best === 0) {
      if (kept > 0 && p[row + space] > gapSpace) gapSpace = p[row + space];
    } else if (best !== prev) {
      const ch = charset[best] ?? '';
      if (spaceThreshold > 0 && gapSpace >= spaceThreshold && best !== space && !text.endsWith(' ') && !NO_SPACE_BEFORE.test(ch) && !NO_SPACE_AFTER.test(text)) {
        text += ' ';
      }
      text += ch;
      sum += bestP;
      kept++;
      gapSpace = 0;
    }
    prev = best;
  }
  return { text, score: kept ? sum / kept : 0 };
}
