/**
 * Reference check: our runtime against transformers.js (@huggingface/transformers) on the same
 * generated model folders. Both run the same ONNX files on the same onnxruntime, so what is
 * compared is everything around the sessions: prompt rendering and tokenization, image-token
 * expansion, embedding merge, KV-cache feeding, the greedy loop, multi-turn continuation.
 *
 * transformers.js implements neither pad-to-square nor anyres tiling, so both sides get the same
 * pixel values (ours, dumped by LLAVA_LENS_DEBUG_DIR); for OneVision the test packs the anyres
 * features itself from the encoder's raw per-tile output (an independent few lines below) and
 * hands them to transformers.js's merge. Preprocessing is checked against the math separately
 * (test/unit/preprocess*.test.ts).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { OnnxEngine } from '../../server/src/runtime/engine';
import type { AskResult, GenerationOptions } from '../../server/src/runtime/types';
import { makeTestModel, type MakeTestModelOptions } from '../../server/src/testmodel';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const T = require('@huggingface/transformers');

const NEW_TOKENS = 16;
const greedy: GenerationOptions = { maxTokens: NEW_TOKENS, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [] };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-ref-'));
const debugDir = path.join(root, 'debug');

before(() => {
  T.env.allowRemoteModels = false;
  T.env.localModelPath = root;
  process.env.LLAVA_LENS_DEBUG_DIR = debugDir;
});
after(() => {
  delete process.env.LLAVA_LENS_DEBUG_DIR;
  fs.rmSync(root, { recursive: true, force: true });
});

/** A photo-like test image with structure (gradients and shapes), w×h. */
async function testImage(w: number, h: number): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">
    <defs><linearGradient id="g"><stop offset="0" stop-color="#1e90ff"/><stop offset="1" stop-color="#ffcc00"/></linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#g)"/>
    <circle cx="${w * 0.3}" cy="${h * 0.5}" r="${Math.min(w, h) * 0.25}" fill="#c0392b"/>
    <rect x="${w * 0.55}" y="${h * 0.2}" width="${w * 0.3}" height="${h * 0.5}" fill="#2ecc71"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** Reads the latest debug dump of `name` (written by the engine's DebugDump). */
function lastDump(name: string): { data: Float32Array; dims: number[] } {
  const files = fs.readdirSync(debugDir).filter((f) => f.endsWith(`-${name}.json`)).sort();
  assert.ok(files.length, `no ${name} dump`);
  const meta = JSON.parse(fs.readFileSync(path.join(debugDir, files[files.length - 1]), 'utf8'));
  const buf = fs.readFileSync(path.join(debugDir, files[files.length - 1].replace(/\.json$/, '.f32')));
  return { data: new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice(), dims: meta.dims };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Independent anyres packing (LLaVA-OneVision `pack_image_features` for grids whose downsample
 * ratio stays <= 1.1, true for the tiny presets): tiles -> (rows*side, cols*side) grid, unpad to
 * the original aspect, newline after each row, base view first.
 */
function packReference(feat: Float32Array, views: number, side: number, hidden: number, rows: number, cols: number, orig: { width: number; height: number }, newline: Float32Array): Float32Array {
  const gh = rows * side, gw = cols * side;
  const at = (y: number, x: number) => {
    const tile = 1 + Math.floor(y / side) * cols + Math.floor(x / side);
    const r = (y % side) * side + (x % side);
    return feat.subarray((tile * side * side + r) * hidden, (tile * side * side + r + 1) * hidden);
  };
  assert.equal(views, 1 + rows * cols);
  let y0 = 0, y1 = gh, x0 = 0, x1 = gw;
  if (orig.width / orig.height > gw / gh) {
    const newH = Math.round(orig.height * (gw / orig.width) * 1e7) / 1e7 | 0;
    const pad = Math.floor((gh - newH) / 2);
    y0 = pad; y1 = gh - pad;
  } else if (orig.width / orig.height < gw / gh) {
    const newW = Math.round(orig.width * (gh / orig.height) * 1e7) / 1e7 | 0;
    const pad = Math.floor((gw - newW) / 2);
    x0 = pad; x1 = gw - pad;
  }
  const out: number[] = Array.from(feat.subarray(0, side * side * hidden));
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) out.push(...at(y, x));
    out.push(...newline);
  }
  return Float32Array.from(out);
}

interface Case {
  name: string;
  options: MakeTestModelOptions;
  image: { w: number; h: number };
}

const CASES: Case[] = [
  { name: 'tiny-llava', options: { preset: 'tiny-llava', seed: 1 }, image: { w: 90, h: 60 } },
  { name: 'tiny-onevision', options: { preset: 'tiny-onevision', seed: 2 }, image: { w: 100, h: 70 } },
  {
    name: 'tiny-onevision-wide',
    options: { preset: 'tiny-onevision', seed: 3, config: { text: { hiddenSize: 96, numHeads: 6, numKvHeads: 2, numLayers: 3 } } },
    image: { w: 120, h: 40 },
  },
];

for (const c of CASES) {
  describe(`reference: ${c.name}`, () => {
    const dir = path.join(root, c.name);
    let engine: OnnxEngine;
    let model: any;
    let tokenizer: any;
    let image: Buffer;

    before(async () => {
      await makeTestModel(dir, c.options);
      image = await testImage(c.image.w, c.image.h);
      engine = new OnnxEngine();
      await engine.load(dir, { device: 'cpu' }, () => undefined, new AbortController().signal);
      model = await T.AutoModelForImageTextToText.from_pretrained(c.name, { dtype: 'fp32', device: 'cpu' });
      tokenizer = await T.AutoTokenizer.from_pretrained(c.name);
    });
    after(async () => {
      await engine?.unload();
      await model?.dispose();
    });

    /** transformers.js's vision features for our pixel values, packed for anyres models. */
    async function referenceFeatures(pixels: { data: Float32Array; dims: number[] }): Promise<Float32Array> {
      const [views, , h] = pixels.dims;
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      const per: Float32Array[] = [];
      let newline: Float32Array | undefined;
      const size = pixels.data.length / views;
      for (let v = 0; v < views; v++) {
        const out = await model.sessions.vision_encoder.run({ pixel_values: new T.Tensor('float32', pixels.data.slice(v * size, (v + 1) * size), [1, ...pixels.dims.slice(1)]) });
        per.push(out.image_features.data);
        newline = out.image_newline?.data;
      }
      if (views === 1) return per[0];
      const hidden = cfg.text_config.hidden_size;
      const side = h / cfg.vision_config.patch_size;
      const flat = new Float32Array(per.reduce((n, p) => n + p.length, 0));
      per.reduce((o, p) => (flat.set(p, o), o + p.length), 0);
      const g = bestGrid(cfg.image_grid_pinpoints, c.image.w, c.image.h);
      return packReference(flat, views, side, hidden, g[0] / h, g[1] / h, { width: c.image.w, height: c.image.h }, newline!);
    }

    /** transformers.js greedy run over explicit ids, with its encode_image returning `features`. */
    async function referenceRun(ids: number[], pixels: { data: Float32Array; dims: number[] }, features: Float32Array, hidden: number) {
      model.encode_image = async () => new T.Tensor('float32', features, [features.length / hidden, hidden]);
      const input_ids = new T.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
      const attention_mask = new T.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
      const pixel_values = new T.Tensor('float32', pixels.data, pixels.dims);
      const fwd = await model({ input_ids, attention_mask, pixel_values });
      const V = fwd.logits.dims[2];
      const logits = fwd.logits.data.slice((fwd.logits.dims[1] - 1) * V);
      const out = await model.generate({ input_ids, attention_mask, pixel_values, max_new_tokens: NEW_TOKENS, do_sample: false });
      const tokens = Array.from(out.data as BigInt64Array).slice(ids.length).map(Number);
      return { logits, tokens };
    }

    function imageIdsFor(text: string, rows: number): number[] {
      const imageId = model.config.image_token_index ?? model.config.image_token_id;
      const ids: number[] = tokenizer.encode(text, { add_special_tokens: false });
      return ids.flatMap((id) => (id === imageId ? new Array(rows).fill(imageId) : [id]));
    }

    test('greedy tokens and first logits match, then a follow-up turn matches', async () => {
      const q1 = 'What is shown in this picture?';
      const ours1: AskResult = await engine.ask({ images: [{ bytes: image, mimeType: 'image/png' }], prompt: q1, options: greedy }, () => undefined, new AbortController().signal);
      const pixels = lastDump('pixel_values');
      const ourLogits1 = lastDump('logits_first').data;
      const hidden = model.config.text_config.hidden_size;
      const feats = await referenceFeatures(pixels);
      const rows = feats.length / hidden;
      assert.equal(ours1.timings.imageTokens, rows, 'image token count');

      const msgs1 = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: q1 }] }];
      const text1: string = tokenizer.apply_chat_template(msgs1, { tokenize: false, add_generation_prompt: true });
      const ids1 = imageIdsFor(text1, rows);
      assert.equal(ours1.timings.promptTokens, ids1.length, 'prompt length');
      const ref1 = await referenceRun(ids1, pixels, feats, hidden);
      const d1 = maxAbsDiff(ourLogits1, ref1.logits);
      assert.ok(d1 < 1e-5, `first-step logits differ by ${d1}`);
      const spread = Math.max(...ourLogits1) - Math.min(...ourLogits1);
      console.log(`${c.name}: turn-1 logits max diff ${d1.toExponential(2)} (logit spread ${spread.toFixed(3)}), ${ours1.tokenIds.length} tokens`);
      assert.ok(ours1.tokenIds.length >= NEW_TOKENS || ours1.finishReason === 'eos');
      assert.deepEqual(ours1.tokenIds, ref1.tokens.slice(0, ours1.tokenIds.length), 'greedy tokens, turn 1');
      assert.ok(ours1.tokenIds.length >= NEW_TOKENS, `the model should generate ${NEW_TOKENS} tokens before EOS (got ${ours1.tokenIds.length}); change the seed`);

      // Turn 2: the reference sees turn-1 ids + generated ids + the template's continuation.
      const q2 = 'And what colour is the circle?';
      const ours2 = await engine.ask({ conversationId: ours1.conversationId, images: [], prompt: q2, options: greedy }, () => undefined, new AbortController().signal);
      const ourLogits2 = lastDump('logits_first').data;
      const msgs2 = [...msgs1, { role: 'assistant', content: [{ type: 'text', text: ours1.text }] }];
      const before = tokenizer.apply_chat_template(msgs1, { tokenize: false, add_generation_prompt: true });
      const withAnswer: string = tokenizer.apply_chat_template(msgs2, { tokenize: false, add_generation_prompt: false });
      const full: string = tokenizer.apply_chat_template([...msgs2, { role: 'user', content: [{ type: 'text', text: q2 }] }], { tokenize: false, add_generation_prompt: true });
      const produced: string = tokenizer.decode(ours1.tokenIds, { skip_special_tokens: false });
      const answerPart = withAnswer.slice(before.length);
      let ids2: number[];
      if (answerPart.startsWith(produced)) {
        ids2 = [...ids1, ...ours1.tokenIds, ...tokenizer.encode(answerPart.slice(produced.length) + full.slice(withAnswer.length), { add_special_tokens: false })];
      } else {
        ids2 = imageIdsFor(full, rows); // the template re-renders the answer: whole conversation re-encoded
      }
      assert.equal(ours2.timings.promptTokens, ids2.length, 'turn-2 prompt length');
      const ref2 = await referenceRun(ids2, pixels, feats, hidden);
      const d2 = maxAbsDiff(ourLogits2, ref2.logits);
      assert.ok(d2 < 1e-5, `turn-2 first-step logits differ by ${d2}`);
      console.log(`${c.name}: turn-2 logits max diff ${d2.toExponential(2)}, ${ours2.tokenIds.length} tokens, incremental prompt: ${answerPart.startsWith(produced)}`);
      assert.deepEqual(ours2.tokenIds, ref2.tokens.slice(0, ours2.tokenIds.length), 'greedy tokens, turn 2');
    });
  });
}

/** LLaVA-NeXT select_best_resolution, for the reference packing's grid. */
function bestGrid(pinpoints: [number, number][], w: number, h: number): [number, number] {
  let best: [number, number] = pinpoints[0];
  let bestEff = -1, bestWaste = Infinity;
  for (const [ph, pw] of pinpoints) {
    const s = Math.min(pw / w, ph / h);
    const eff = Math.min(Math.floor(w * s) * Math.floor(h * s), w * h);
    const waste = pw * ph - eff;
    if (eff > bestEff || (eff === bestEff && waste < bestWaste)) {
      best = [ph, pw]; bestEff = eff; bestWaste = waste;
    }
  }
  return best;
}
