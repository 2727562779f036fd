/**
 * The generated test models: determinism, onnxruntime loading and I/O metadata, the KV cache
 * path of our decoder against a full-sequence run, precision variants, and transformers.js as
 * an independent runtime (greedy generation from the folder, offline).
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { MakeTestModelOptions } from '../../server/src/testmodel';
import { fromHalfBits, toHalfBits } from '../../server/src/testmodel/onnx/tensorData';
import { Rng } from '../../server/src/testmodel/prng';
import { testModels } from '../fixtures/testModels';

const TJS = require('@huggingface/transformers');

/** Generates (once per name) a model folder under a temp root. */
const { root, model } = testModels('llava-lens-testmodel-');

const LLAVA = () => model('tiny-llava', { preset: 'tiny-llava', variants: ['fp16', 'q4'] });
const ONEVISION = () => model('tiny-onevision', { preset: 'tiny-onevision', variants: ['fp16', 'q4'] });


type Feeds = Record<string, ort.Tensor>;

function toF32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  const h = t.data as Uint16Array;
  return Float32Array.from(h, (x) => fromHalfBits(x));
}

function floatTensor(type: string, data: Float32Array, dims: number[]): ort.Tensor {
  return type === 'float16'
    ? new ort.Tensor('float16', Uint16Array.from(data, (x) => toHalfBits(x)), dims)
    : new ort.Tensor('float32', data, dims);
}

function meta(sess: ort.InferenceSession, name: string) {
  const m = sess.inputMetadata.find((x) => x.name === name);
  if (!m || !m.isTensor) throw new Error(`no tensor input ${name}`);
  return m;
}

async function embed(dir: string, ids: number[]): Promise<Float32Array> {
  const sess = await ort.InferenceSession.create(path.join(dir, 'onnx/embed_tokens.onnx'));
  const out = await sess.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
  return toF32(out.inputs_embeds);
}

/**
 * One decoder call on `embeds` [1, S, H] after `past` (null = empty cache), positions
 * continuing from the past length. `mask` overrides the all-ones attention mask and
 * `positions` the position ids. Returns logits [S|k, V] and the cache for the next call.
 */
async function decoderStep(
  sess: ort.InferenceSession,
  embeds: Float32Array,
  H: number,
  past: Feeds | null,
  opts: { mask?: number[]; positions?: number[]; keep?: number } = {},
): Promise<{ logits: Float32Array; present: Feeds; rows: number }> {
  const S = embeds.length / H;
  const P = past ? (past['past_key_values.0.key'].dims[2] as number) : 0;
  const embType = meta(sess, 'inputs_embeds').type;
  const feeds: Feeds = {
    inputs_embeds: floatTensor(embType, embeds, [1, S, H]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(opts.mask ?? Array(P + S).fill(1), BigInt), [1, P + S]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from(opts.positions ?? Array.from({ length: S }, (_, i) => P + i), BigInt), [1, S]),
  };
  for (const m of sess.inputMetadata) {
    if (!m.name.startsWith('past_key_values.')) continue;
    if (past) feeds[m.name] = past[m.name];
    else {
      if (!m.isTensor) throw new Error('tensor expected');
      const dims = m.shape.map((d) => (d === 'batch_size' ? 1 : typeof d === 'number' ? d : 0));
      feeds[m.name] = floatTensor(m.type, new Float32Array(0), dims);
    }
  }
  if (sess.inputNames.includes('use_cache_branch')) feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.from([past ? 1 : 0]), [1]);
  if (sess.inputNames.includes('num_logits_to_keep')) feeds.num_logits_to_keep = new ort.Tensor('int64', BigInt64Array.from([BigInt(opts.keep ?? 0)]), []);
  const out = await sess.run(feeds);
  const present: Feeds = {};
  for (const [k, v] of Object.entries(out)) if (k.startsWith('present.')) present[k.replace('present.', 'past_key_values.')] = v;
  return { logits: toF32(out.logits), present, rows: out.logits.dims[1] as number };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function std(a: Float32Array): number {
  let s = 0;
  let s2 = 0;
  for (const x of a) {
    s += x;
    s2 += x * x;
  }
  const m = s / a.length;
  return Math.sqrt(s2 / a.length - m * m);
}

function rmsDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s / a.length);
}

/** Fraction of rows ([.., V]) whose argmax agrees. */
function argmaxAgreement(a: Float32Array, b: Float32Array, V: number): number {
  const argmax = (x: Float32Array, r: number) => {
    let best = 0;
    for (let i = 1; i < V; i++) if (x[r * V + i] > x[r * V + best]) best = i;
    return best;
  };
  const rows = a.length / V;
  let same = 0;
  for (let r = 0; r < rows; r++) if (argmax(a, r) === argmax(b, r)) same++;
  return same / rows;
}

function lastRow(logits: Float32Array, V: number): Float32Array {
  return logits.subarray(logits.length - V);
}

function readConfig(dir: string) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
}

const TOKENS = [5, 17, 260, 301, 42, 99, 7, 350, 12, 450, 33, 78];

before(async () => {
  await Promise.all([LLAVA(), ONEVISION()]);
});

test('same seed and options give byte-identical folders; another seed changes the weights', async () => {
  const opts: MakeTestModelOptions = { preset: 'tiny-onevision', seed: 7, variants: ['fp16', 'q4'], externalData: true };
  const a = await model('det-a', opts);
  const b = await model('det-b', opts);
  const c = await model('det-c', { ...opts, seed: 8 });
  const files = fs.readdirSync(a, { recursive: true }).map(String).filter((f) => fs.statSync(path.join(a, f)).isFile()).sort();
  assert.ok(files.includes(path.join('onnx', 'decoder_model_merged.onnx_data')));
  for (const f of files) assert.ok(fs.readFileSync(path.join(a, f)).equals(fs.readFileSync(path.join(b, f))), `${f} differs`);
  const data = (d: string) => fs.readFileSync(path.join(d, 'onnx', 'decoder_model_merged.onnx_data'));
  assert.ok(!data(a).equals(data(c)), 'seed 8 should change the weights');
  assert.ok(fs.readFileSync(path.join(a, 'tokenizer.json')).equals(fs.readFileSync(path.join(c, 'tokenizer.json'))));
});

test('onnxruntime loads every file with the documented inputs and outputs', async () => {
  const shapes = (ms: readonly ort.InferenceSession.ValueMetadata[]) =>
    Object.fromEntries(ms.map((m) => [m.name, m.isTensor ? `${m.type}[${m.shape.join(',')}]` : '?']));
  for (const [dir, llava] of [[await LLAVA(), true], [await ONEVISION(), false]] as const) {
    const cfg = readConfig(dir);
    const H = cfg.text_config.hidden_size;
    const V = cfg.text_config.vocab_size;
    const Hkv = cfg.text_config.num_key_value_heads;
    const D = H / cfg.text_config.num_attention_heads;
    for (const suffix of ['', '_fp16', '_q4']) {
      const ft = suffix === '_fp16' ? 'float16' : 'float32';
      const dec = await ort.InferenceSession.create(path.join(dir, `onnx/decoder_model_merged${suffix}.onnx`));
      const ins = shapes(dec.inputMetadata);
      assert.equal(ins.inputs_embeds, `${ft}[batch_size,sequence_length,${H}]`);
      assert.equal(ins.attention_mask, 'int64[batch_size,total_sequence_length]');
      assert.equal(ins.position_ids, 'int64[batch_size,sequence_length]');
      assert.equal(ins['past_key_values.1.value'], `${ft}[batch_size,${Hkv},past_sequence_length,${D}]`);
      assert.equal(ins.use_cache_branch, llava ? 'bool[1]' : undefined);
      assert.equal(ins.num_logits_to_keep, llava ? undefined : 'int64[]');
      const outs = shapes(dec.outputMetadata);
      assert.equal(dec.outputNames[0], 'logits');
      assert.equal(outs.logits, `${ft}[batch_size,sequence_length,${V}]`);
      assert.equal(outs['present.1.key'], `${ft}[batch_size,${Hkv},total_sequence_length,${D}]`);
      if (suffix === '_q4') continue;
      const emb = await ort.InferenceSession.create(path.join(dir, `onnx/embed_tokens${suffix}.onnx`));
      assert.deepEqual(shapes(emb.inputMetadata), { input_ids: 'int64[batch_size,sequence_length]' });
      assert.deepEqual(shapes(emb.outputMetadata), { inputs_embeds: `${ft}[batch_size,sequence_length,${H}]` });
      const vis = await ort.InferenceSession.create(path.join(dir, `onnx/vision_encoder${suffix}.onnx`));
      const px = cfg.vision_config.image_size;
      assert.deepEqual(shapes(vis.inputMetadata), { pixel_values: `${ft}[batch_size,3,${px},${px}]` });
      const rows = (px / cfg.vision_config.patch_size) ** 2;
      assert.deepEqual(
        shapes(vis.outputMetadata),
        llava
          ? { image_features: `${ft}[batch_size,${rows},${H}]` }
          : { image_features: `${ft}[batch_size,${rows},${H}]`, image_newline: `${ft}[${H}]` },
      );
    }
  }
  // External-data form (written by the determinism test).
  const ext = await model('det-a', { preset: 'tiny-onevision', seed: 7, variants: ['fp16', 'q4'], externalData: true });
  for (const f of fs.readdirSync(path.join(ext, 'onnx')).filter((f) => f.endsWith('.onnx'))) {
    assert.ok(fs.existsSync(path.join(ext, 'onnx', `${f}_data`)), `${f}_data missing`);
    await ort.InferenceSession.create(path.join(ext, 'onnx', f));
  }
  assert.deepEqual(Object.keys(readConfig(ext)['transformers.js_config'].use_external_data_format).length, 7);
});

test('vision encoder: batch of views, CLS dropped, image_newline exposed', async () => {
  const ov = await ORT_RUN(await ONEVISION(), 'vision_encoder', 3, 42);
  assert.deepEqual(ov.image_features.dims, [3, 9, 64]);
  assert.deepEqual(ov.image_newline.dims, [64]);
  const lv = await ORT_RUN(await LLAVA(), 'vision_encoder', 1, 56);
  assert.deepEqual(lv.image_features.dims, [1, 16, 64]);
  const f = lv.image_features.data as Float32Array;
  assert.ok(std(f) > 1e-3 && f.every(Number.isFinite));
});

async function ORT_RUN(dir: string, file: string, views: number, px: number): Promise<ort.InferenceSession.OnnxValueMapType> {
  const sess = await ort.InferenceSession.create(path.join(dir, `onnx/${file}.onnx`));
  const pixels = new Rng(3).uniformArray(views * 3 * px * px, -1, 1);
  return sess.run({ pixel_values: new ort.Tensor('float32', pixels, [views, 3, px, px]) });
}

test('KV cache path: prefill + single steps match one full-sequence run (1e-4)', async () => {
  for (const dir of [await LLAVA(), await ONEVISION()]) {
    const cfg = readConfig(dir);
    const H = cfg.text_config.hidden_size;
    const V = cfg.text_config.vocab_size;
    const sess = await ort.InferenceSession.create(path.join(dir, 'onnx/decoder_model_merged.onnx'));
    const emb = await embed(dir, TOKENS);
    const full = await decoderStep(sess, emb, H, null);
    assert.equal(full.rows, TOKENS.length);

    const prefix = 5;
    let step = await decoderStep(sess, emb.subarray(0, prefix * H), H, null);
    assert.ok(maxAbsDiff(lastRow(step.logits, V), full.logits.subarray((prefix - 1) * V, prefix * V)) < 1e-4);
    for (let i = prefix; i < TOKENS.length; i++) {
      step = await decoderStep(sess, emb.subarray(i * H, (i + 1) * H), H, step.present);
      const d = maxAbsDiff(step.logits, full.logits.subarray(i * V, (i + 1) * V));
      assert.ok(d < 1e-4, `${path.basename(dir)} position ${i}: ${d}`);
    }
    assert.equal(step.present['past_key_values.0.key'].dims[2], TOKENS.length);

    // Left padding: masked positions are invisible (same logits as the unpadded sequence).
    const pad = 3;
    const padded = new Float32Array((pad + TOKENS.length) * H);
    padded.set(new Rng(9).uniformArray(pad * H, -1, 1));
    padded.set(emb, pad * H);
    const p = await decoderStep(sess, padded, H, null, {
      mask: [...Array(pad).fill(0), ...Array(TOKENS.length).fill(1)],
      positions: [...Array(pad).fill(1), ...TOKENS.map((_, i) => i)],
    });
    assert.ok(maxAbsDiff(lastRow(p.logits, V), lastRow(full.logits, V)) < 1e-4, 'padding leaks into attention');
  }
});

test('num_logits_to_keep keeps the last k positions (0 = all)', async () => {
  const dir = await ONEVISION();
  const cfg = readConfig(dir);
  const H = cfg.text_config.hidden_size;
  const V = cfg.text_config.vocab_size;
  const sess = await ort.InferenceSession.create(path.join(dir, 'onnx/decoder_model_merged.onnx'));
  const emb = await embed(dir, TOKENS);
  const all = await decoderStep(sess, emb, H, null, { keep: 0 });
  const two = await decoderStep(sess, emb, H, null, { keep: 2 });
  assert.equal(two.rows, 2);
  assert.ok(maxAbsDiff(two.logits, all.logits.subarray(all.logits.length - 2 * V)) < 1e-5);
});

test('fp16 and q4 variants track fp32 logits', async (t) => {
  for (const dir of [await LLAVA(), await ONEVISION()]) {
    const cfg = readConfig(dir);
    const H = cfg.text_config.hidden_size;
    const emb = await embed(dir, TOKENS);
    const run = async (suffix: string) =>
      (await decoderStep(await ort.InferenceSession.create(path.join(dir, `onnx/decoder_model_merged${suffix}.onnx`)), emb, H, null)).logits;
    const V = cfg.text_config.vocab_size;
    const ref = await run('');
    const q4 = await run('_q4');
    const s = std(ref);
    const d16 = maxAbsDiff(ref, await run('_fp16'));
    const dq4 = maxAbsDiff(ref, q4);
    const rq4 = rmsDiff(ref, q4);
    const agree = argmaxAgreement(ref, q4, V);
    t.diagnostic(
      `${path.basename(dir)}: logits std ${s.toFixed(3)}; fp16 max|diff| ${d16.toExponential(2)}; ` +
        `q4 max|diff| ${dq4.toFixed(3)}, rms diff ${rq4.toFixed(3)}, argmax agreement ${agree.toFixed(2)}`,
    );
    assert.ok(d16 < 1e-2, `fp16 diff ${d16}`);
    assert.ok(rq4 < 0.3 * s, `q4 rms diff ${rq4} vs logits std ${s}`);

    const px = cfg.vision_config.image_size;
    const pixels = new Rng(4).uniformArray(3 * px * px, -1, 1);
    const features = async (suffix: string) => {
      const sess = await ort.InferenceSession.create(path.join(dir, `onnx/vision_encoder${suffix}.onnx`));
      const out = await sess.run({ pixel_values: floatTensor(meta(sess, 'pixel_values').type, pixels, [1, 3, px, px]) });
      return toF32(out.image_features);
    };
    const v32 = await features('');
    const v16 = maxAbsDiff(v32, await features('_fp16'));
    t.diagnostic(`${path.basename(dir)}: image_features std ${std(v32).toFixed(3)}, fp16 max|diff| ${v16.toExponential(2)}`);
    assert.ok(v16 < 1e-2, `vision fp16 diff ${v16}`);
  }
});

/** Greedy generation with transformers.js from the folder; returns the new token ids. */
async function transformersJsGenerate(dir: string, views: number): Promise<number[]> {
  TJS.env.allowRemoteModels = false;
  TJS.env.localModelPath = path.dirname(dir) + path.sep;
  const name = path.basename(dir);
  const cfg = readConfig(dir);
  const px = cfg.vision_config.image_size;
  const rows = (px / cfg.vision_config.patch_size) ** 2;
  const tok = await TJS.AutoTokenizer.from_pretrained(name);
  const m = await TJS.AutoModelForImageTextToText.from_pretrained(name, { dtype: 'fp32' });
  try {
    const messages = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What does the chart show?' }] }];
    const prompt: string = tok.apply_chat_template(messages, { add_generation_prompt: true, tokenize: false });
    const text = prompt.replace('<image>', '<image>'.repeat(rows * views));
    const inputs = tok(text, { add_special_tokens: false });
    const ids = (inputs.input_ids.tolist()[0] as bigint[]).map(Number);
    assert.equal(ids.filter((x) => x === cfg.image_token_index).length, rows * views);
    const pixel_values = new TJS.Tensor('float32', new Rng(5).uniformArray(views * 3 * px * px, -1, 1), [views, 3, px, px]);
    const out = await m.generate({ ...inputs, pixel_values, max_new_tokens: 20, do_sample: false });
    return (out.tolist()[0] as bigint[]).slice(ids.length).map(Number);
  } finally {
    await m.dispose();
  }
}

test('transformers.js generates 20 varied tokens from both tiny presets (offline)', async (t) => {
  for (const dir of [await LLAVA(), await ONEVISION()]) {
    const started = Date.now();
    const gen = await transformersJsGenerate(dir, 1);
    t.diagnostic(`${path.basename(dir)}: ${JSON.stringify(gen)} in ${Date.now() - started} ms`);
    assert.equal(gen.length, 20);
    assert.ok(new Set(gen).size > 1, 'greedy decoding repeats one token');
    assert.ok(gen.every((x) => x < readConfig(dir).text_config.vocab_size));
  }
});

test('a non-default config (hidden 96, 6 heads, 2 KV heads, 3 layers) runs in transformers.js', async () => {
  const dir = await model('custom', {
    preset: 'tiny-llava',
    seed: 3,
    config: { text: { hiddenSize: 96, numHeads: 6, numKvHeads: 2, numLayers: 3 }, vision: { imageSize: 28, numLayers: 2 } },
  });
  const cfg = readConfig(dir);
  assert.equal(cfg.text_config.hidden_size, 96);
  assert.equal(cfg.text_config.num_key_value_heads, 2);
  assert.equal(cfg.vision_config.image_size, 28);
  const gen = await transformersJsGenerate(dir, 1);
  assert.equal(gen.length, 20);
  assert.ok(new Set(gen).size > 1);
});
