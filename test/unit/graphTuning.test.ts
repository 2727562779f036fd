/**
 * Load-time graph tuning (server/src/runtime/graphTuning.ts): the passes on hand-made protos, the
 * last-position Slice against the untuned graph on generated models (same last-row logits), the
 * on-disk cache (hit, key change, unwritable folder), external data, and the engine end to end.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { createSession } from '../../server/src/runtime/backend';
import { OnnxEngine } from '../../server/src/runtime/engine';
import { groupQueryHeads, quantizeColumnsInt8, setMatMulNBitsAccuracy, sliceBeforeLmHead, tuneGraph, tuneModelProto } from '../../server/src/runtime/graphTuning';
import { f32ToF16Bits } from '../../server/src/runtime/tensorUtil';
import { testModels } from '../fixtures/testModels';

const { root, model } = testModels('llava-lens-tuning-');
const noLog = () => undefined;

function nbits(name: string, attrs: Record<string, number>): onnx.INodeProto {
  return {
    name,
    opType: 'MatMulNBits',
    domain: 'com.microsoft',
    input: ['x', `${name}.w`, `${name}.s`],
    output: [`${name}.y`],
    attribute: Object.entries(attrs).map(([k, v]) => ({ name: k, type: onnx.AttributeProto.AttributeType.INT, i: v })),
  };
}
const level = (n: onnx.INodeProto) => Number(n.attribute?.find((a) => a.name === 'accuracy_level')?.i ?? -1);

describe('accuracy_level pass', () => {
  test('sets level 4 on 4-bit nodes that leave it unset, in subgraphs too, and nowhere else', () => {
    const inner = nbits('inner', { K: 32, N: 8, bits: 4, block_size: 32 });
    const g: onnx.IGraphProto = {
      node: [
        nbits('a', { K: 32, N: 8, bits: 4, block_size: 32 }),
        nbits('b', { K: 32, N: 8, bits: 4, block_size: 32, accuracy_level: 0 }),
        nbits('c', { K: 32, N: 8, bits: 4, block_size: 32, accuracy_level: 1 }),
        nbits('d', { K: 32, N: 8, bits: 8, block_size: 32 }),
        nbits('e', { K: 32, N: 8, block_size: 32 }), // bits defaults to 4
        { name: 'if', opType: 'If', input: ['cond'], output: ['o'], attribute: [{ name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: { node: [inner] } }] },
      ],
    };
    assert.deepEqual(setMatMulNBitsAccuracy(g, 4), { changed: 4, total: 5 });
    assert.deepEqual(g.node!.slice(0, 5).map(level), [4, 4, 1, -1, 4]);
    assert.equal(level(inner), 4);
    assert.equal(g.node![1].attribute!.filter((a) => a.name === 'accuracy_level').length, 1, 'no duplicate attribute');
    assert.deepEqual(setMatMulNBitsAccuracy(g, 4), { changed: 0, total: 5 }, 'idempotent');
  });
});

describe('last-position logits pass', () => {
  test('refuses graphs it does not understand, with a reason', () => {
    const m: onnx.IModelProto = { opsetImport: [{ domain: '', version: 17 }], graph: { input: [{ name: 'num_logits_to_keep' }], output: [{ name: 'logits' }], node: [] } };
    assert.match(sliceBeforeLmHead(m, m.graph!)!, /num_logits_to_keep/);
    const m2: onnx.IModelProto = {
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        input: [{ name: 'h' }],
        output: [{ name: 'logits' }],
        initializer: [{ name: 'W', dims: [4, 4], dataType: 1 }],
        node: [
          { name: 'mm', opType: 'MatMul', input: ['h', 'W'], output: ['y'] },
          { name: 'r', opType: 'Reshape', input: ['y', 'shape'], output: ['logits'] },
        ],
      },
    };
    assert.match(sliceBeforeLmHead(m2, m2.graph!)!, /Reshape/);
    const r = tuneModelProto(m2, { int8Activations: false, groupedAttention: false });
    assert.deepEqual(r.applied, []);
    assert.equal(r.skipped.length, 1);
  });

  for (const [preset, variant] of [['tiny-llava', 'fp32'], ['tiny-llava', 'q4'], ['tiny-llava', 'fp16']] as const) {
    test(`${preset} ${variant}: the tuned decoder returns the untuned last logits row`, async () => {
      const dir = await model(preset, { preset, seed: 5, variants: ['fp16', 'q4'] });
      const file = path.join(dir, 'onnx', `decoder_model_merged${variant === 'fp32' ? '' : `_${variant}`}.onnx`);
      const tuned = await tuneGraph(file, { int8Activations: false, cacheDirs: [path.join(root, 'cache', `${preset}-${variant}`)] }, noLog);
      assert.deepEqual(tuned.applied, ['last-position Slice before the LM head']);
      const a = await ort.InferenceSession.create(file);
      const b = await ort.InferenceSession.create(tuned.path);
      const S = 6;
      const H = (a.inputMetadata.find((m) => m.name === 'inputs_embeds') as unknown as { shape: readonly number[] }).shape[2];
      const fp16 = variant === 'fp16';
      const embeds = Float32Array.from({ length: S * H }, (_, i) => Math.sin(i * 0.37));
      const feeds: Record<string, ort.Tensor> = {
        inputs_embeds: fp16 ? new ort.Tensor('float16', Uint16Array.from(embeds, (v) => f32ToF16Bits(v)), [1, S, H]) : new ort.Tensor('float32', embeds, [1, S, H]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(S).fill(1n), [1, S]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: S }, (_, i) => BigInt(i)), [1, S]),
        use_cache_branch: new ort.Tensor('bool', new Uint8Array([0]), [1]),
      };
      for (const m of a.inputMetadata) {
        if (!m.name.startsWith('past_key_values')) continue;
        const shape = (m as unknown as { shape: ReadonlyArray<number | string> }).shape.map((d, i) => (i === 2 ? 0 : typeof d === 'number' ? d : 1));
        feeds[m.name] = fp16 ? new ort.Tensor('float16', new Uint16Array(0), shape) : new ort.Tensor('float32', new Float32Array(0), shape);
      }
      const ra = await a.run(feeds);
      const rb = await b.run(feeds);
      const [, rows, V] = ra.logits.dims;
      assert.equal(rows, S);
      assert.deepEqual(rb.logits.dims, [1, 1, V]);
      const last = Array.from(ra.logits.data as ArrayLike<number>).slice((S - 1) * V);
      const got = Array.from(rb.logits.data as ArrayLike<number>);
      const diff = Math.max(...last.map((v, i) => Math.abs(v - got[i])));
      assert.ok(diff <= (fp16 ? 0 : 1e-5), `last row differs by ${diff}`);
      for (const k of Object.keys(ra)) if (k !== 'logits') assert.deepEqual(rb[k].dims, ra[k].dims, k);
      await a.release();
      await b.release();
    });
  }

  test('tiny-onevision has num_logits_to_keep: no Slice; the MatMulNBits and grouped-attention passes apply to its q4 decoder', async () => {
    const dir = await model('tiny-onevision', { preset: 'tiny-onevision', seed: 6, variants: ['q4'] });
    const t = await tuneGraph(path.join(dir, 'onnx', 'decoder_model_merged_q4.onnx'), { cacheDirs: [path.join(root, 'cache', 'ov')] }, noLog);
    assert.equal(t.applied.length, 2);
    assert.match(t.applied[0], /^accuracy_level=4 on (\d+) of \1 4-bit MatMulNBits$/);
    assert.equal(t.applied[1], 'grouped attention without repeated KV heads in 4 of 4 repeats', '2 layers × K and V');
    assert.match(t.skipped.join(), /num_logits_to_keep/);
  });
});

describe('tuned-graph cache', () => {
  test('second call is a hit; a changed source gets a new key; unwritable folders fall through', async () => {
    const dir = await model('tiny-llava-cache', { preset: 'tiny-llava', seed: 7 });
    const file = path.join(dir, 'onnx', 'decoder_model_merged.onnx');
    const first = await tuneGraph(file, {}, noLog);
    assert.equal(first.cacheHit, false);
    assert.equal(path.dirname(first.path), path.join(dir, '.llava-lens-cache'), 'beside the model by default');
    const second = await tuneGraph(file, {}, noLog);
    assert.equal(second.cacheHit, true);
    assert.equal(second.path, first.path);

    const other = await tuneGraph(file, { lastLogitsOnly: false }, noLog);
    assert.notEqual(other.path, first.path, 'options are part of the key');
    assert.equal(other.path, file, 'nothing to do for an fp32 graph without the Slice pass');
    assert.equal((await tuneGraph(file, { lastLogitsOnly: false }, noLog)).cacheHit, true, '"nothing to do" is remembered');

    const later = new Date(Date.now() + 5000);
    fs.utimesSync(file, later, later);
    const changed = await tuneGraph(file, {}, noLog);
    assert.equal(changed.cacheHit, false);
    assert.notEqual(changed.path, first.path);

    const blocker = path.join(root, 'not-a-folder');
    fs.writeFileSync(blocker, 'x');
    const fallback = path.join(root, 'cache', 'fallback');
    const fb = await tuneGraph(file, { cacheDirs: [path.join(blocker, 'sub'), fallback] }, noLog);
    assert.equal(path.dirname(fb.path), fallback);
    const none = await tuneGraph(file, { cacheDirs: [path.join(blocker, 'sub')] }, noLog);
    assert.equal(none.path, file);
    assert.match(none.skipped.join(), /no writable cache folder/);
    const off = { int8Activations: false, lastLogitsOnly: false, groupedAttention: false, int8Vision: false };
    assert.deepEqual((await tuneGraph(file, off, noLog)).skipped, ['graph tuning is off']);
  });

  test('a folder keeps the two most recently used tuned copies per source and drops older tuning versions', async () => {
    const dir = await model('tiny-onevision-prune', { preset: 'tiny-onevision', seed: 11, variants: ['q4'] });
    const file = path.join(dir, 'onnx', 'decoder_model_merged_q4.onnx');
    const cache = path.join(root, 'cache', 'prune');
    fs.mkdirSync(cache, { recursive: true });
    const stale = path.join(cache, 'decoder_model_merged_q4-000000000000000000000000');
    fs.writeFileSync(`${stale}.onnx`, 'old');
    fs.writeFileSync(`${stale}.json`, JSON.stringify({ version: 1, source: file, tuned: true, applied: ['x'], skipped: [], external: false }));
    fs.writeFileSync(path.join(cache, 'unrelated.json'), '{"hello": 1}');
    const copies = () => fs.readdirSync(cache).filter((n) => n.endsWith('.onnx')).sort();
    const all = await tuneGraph(file, { cacheDirs: [cache] }, noLog);
    assert.ok(!fs.existsSync(`${stale}.onnx`), 'an older tuning version is removed');
    assert.ok(fs.existsSync(path.join(cache, 'unrelated.json')), 'files that are not ours stay');
    const noGqa = await tuneGraph(file, { groupedAttention: false, cacheDirs: [cache] }, noLog);
    assert.deepEqual(copies(), [all.path, noGqa.path].map((p) => path.basename(p)).sort());
    const past = new Date(Date.now() - 60_000);
    fs.utimesSync(noGqa.path.replace(/\.onnx$/, '.json'), past, past);
    assert.equal((await tuneGraph(file, { cacheDirs: [cache] }, noLog)).cacheHit, true, 'a hit marks the copy as used');
    const noInt8 = await tuneGraph(file, { int8Activations: false, cacheDirs: [cache] }, noLog);
    assert.deepEqual(copies(), [all.path, noInt8.path].map((p) => path.basename(p)).sort(), 'the least recently used third copy is gone');
  });

  test('external data stays where it is and loads through the source folder', async () => {
    const dir = await model('tiny-llava-ext', { preset: 'tiny-llava', seed: 8, externalData: true });
    const file = path.join(dir, 'onnx', 'decoder_model_merged.onnx');
    assert.ok(fs.existsSync(`${file}_data`));
    const t = await tuneGraph(file, {}, noLog);
    assert.equal(t.externalDataDir, path.join(dir, 'onnx'));
    assert.ok(fs.statSync(t.path).size < fs.statSync(`${file}_data`).size, 'the tuned graph does not copy the weights');
    const { session } = await createSession(t, 'cpu', { log: noLog });
    assert.ok(session.outputNames.includes('logits'));
    await session.release();
  });
});

describe('engine with tuning', () => {
  test('tuned and untuned engines give the same greedy tokens on tiny-llava (fp32: the Slice only)', async () => {
    const dir = await model('tiny-llava-engine', { preset: 'tiny-llava', seed: 1 });
    const opts = { maxTokens: 12, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [] };
    const sig = new AbortController().signal;
    const ids: number[][] = [];
    for (const graphTuning of [false, {}] as const) {
      const e = new OnnxEngine({ graphTuning });
      await e.load(dir, { device: 'cpu' }, () => undefined, sig);
      if (graphTuning) assert.deepEqual(e.graphTuning()?.applied, ['last-position Slice before the LM head']);
      else assert.equal(e.graphTuning(), undefined);
      const r = await e.ask({ images: [], prompt: 'Say something about tuning.', options: opts }, () => undefined, sig);
      ids.push(r.tokenIds);
      await e.unload();
    }
    assert.deepEqual(ids[1], ids[0]);
  });
});

/** Runs a decoder: a prefill of `S` positions, then one cached step; returns both outputs. */
async function prefillAndStep(s: ort.InferenceSession, S: number): Promise<Record<string, ort.Tensor>[]> {
  const meta = s.inputMetadata as unknown as { name: string; shape: ReadonlyArray<number | string> }[];
  const H = meta.find((m) => m.name === 'inputs_embeds')!.shape[2] as number;
  const outs: Record<string, ort.Tensor>[] = [];
  let past: Record<string, ort.Tensor> = {};
  for (const m of meta) if (m.name.startsWith('past_key_values')) past[m.name] = new ort.Tensor('float32', new Float32Array(0), m.shape.map((d, i) => (i === 2 ? 0 : typeof d === 'number' ? d : 1)));
  let P = 0;
  for (const len of [S, 1]) {
    const T = P + len;
    const feeds: Record<string, ort.Tensor> = {
      ...past,
      inputs_embeds: new ort.Tensor('float32', Float32Array.from({ length: len * H }, (_, i) => Math.sin((P * H + i) * 0.37)), [1, len, H]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: len }, (_, i) => BigInt(P + i)), [1, len]),
    };
    if (meta.some((m) => m.name === 'num_logits_to_keep')) feeds.num_logits_to_keep = new ort.Tensor('int64', new BigInt64Array([0n]), []);
    if (meta.some((m) => m.name === 'use_cache_branch')) feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([P > 0 ? 1 : 0]), [1]);
    const out = await s.run(feeds);
    outs.push(out);
    past = {};
    for (const k of Object.keys(out)) if (k.startsWith('present.')) past[k.replace('present.', 'past_key_values.')] = out[k];
    P = T;
  }
  return outs;
}

/** Largest |a - b| over every output of two runs, relative to the largest |a|. */
function relMaxDiff(a: Record<string, ort.Tensor>, b: Record<string, ort.Tensor>): number {
  let d = 0;
  let m = 0;
  for (const k of Object.keys(a)) {
    assert.deepEqual(b[k].dims, a[k].dims, k);
    const x = a[k].data as Float32Array;
    const y = b[k].data as Float32Array;
    for (let i = 0; i < x.length; i++) {
      d = Math.max(d, Math.abs(x[i] - y[i]));
      m = Math.max(m, Math.abs(x[i]));
    }
  }
  return d / m;
}

describe('grouped-attention pass', () => {
  for (const variant of ['fp32', 'q4'] as const) {
    test(`tiny-onevision ${variant} (4 query heads on 2 KV heads): same logits and presents, prefill and cached step`, async () => {
      const dir = await model('tiny-onevision-gqa', { preset: 'tiny-onevision', seed: 9, variants: ['q4'] });
      const file = path.join(dir, 'onnx', `decoder_model_merged${variant === 'fp32' ? '' : '_q4'}.onnx`);
      const t = await tuneGraph(file, { int8Activations: false, cacheDirs: [path.join(root, 'cache', `gqa-${variant}`)] }, noLog);
      assert.deepEqual(t.applied, ['grouped attention without repeated KV heads in 4 of 4 repeats']);
      const tuned = onnx.ModelProto.decode(fs.readFileSync(t.path));
      const ops = new Set(tuned.graph!.node!.map((n) => n.opType));
      assert.ok(!ops.has('Tile'), 'no KV repeat is left');
      const a = await ort.InferenceSession.create(file);
      const b = await ort.InferenceSession.create(t.path);
      const ra = await prefillAndStep(a, 7);
      const rb = await prefillAndStep(b, 7);
      for (let i = 0; i < 2; i++) assert.ok(relMaxDiff(ra[i], rb[i]) < 1e-5, `run ${i}: ${relMaxDiff(ra[i], rb[i])}`);
      await a.release();
      await b.release();
    });
  }

  /**
   * The torch-export form of repeat_kv: Unsqueeze(axes input) → Expand to a shape Concat-ed from
   * Shape/Gather parts and constants → Reshape to a Concat-ed shape; SDPA-style Kᵀ scaled by a
   * scalar before the MatMul. q [1, 4, S, 8], k/v [1, 2, T, 8].
   */
  function torchStyleAttention(): onnx.IModelProto {
    const I = onnx.TensorProto.DataType.INT64;
    const i64 = (name: string, v: number[]): onnx.ITensorProto => ({ name, dims: [v.length], dataType: I, rawData: new Uint8Array(new BigInt64Array(v.map(BigInt)).buffer) });
    const f32 = (name: string, v: number): onnx.ITensorProto => ({ name, dims: [], dataType: 1, rawData: new Uint8Array(new Float32Array([v]).buffer) });
    const node = (opType: string, input: string[], output: string, attribute: onnx.IAttributeProto[] = []): onnx.INodeProto => ({ name: output, opType, domain: '', input, output: [output], attribute });
    const ints = (name: string, v: number[]): onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
    const int = (name: string, v: number): onnx.IAttributeProto => ({ name, type: onnx.AttributeProto.AttributeType.INT, i: v });
    const repeat = (x: string): onnx.INodeProto[] => [
      node('Shape', [x], `${x}_shape`),
      node('Gather', [`${x}_shape`, 'i0'], `${x}_b`, [int('axis', 0)]),
      node('Gather', [`${x}_shape`, 'i2'], `${x}_t`, [int('axis', 0)]),
      node('Unsqueeze', [`${x}_b`, 'ax0'], `${x}_b1`),
      node('Unsqueeze', [`${x}_t`, 'ax0'], `${x}_t1`),
      node('Concat', [`${x}_b1`, 'c2', 'c2', `${x}_t1`, 'c8'], `${x}_expand_shape`, [int('axis', 0)]),
      node('Concat', [`${x}_b1`, 'c4', `${x}_t1`, 'c8'], `${x}_reshape_shape`, [int('axis', 0)]),
      node('Unsqueeze', [x, 'ax2'], `${x}_u`),
      node('Expand', [`${x}_u`, `${x}_expand_shape`], `${x}_e`),
      node('Reshape', [`${x}_e`, `${x}_reshape_shape`], `${x}_rep`),
    ];
    const vi = (name: string, dims: (number | string)[]): onnx.IValueInfoProto => ({
      name,
      type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
    });
    return {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'attn',
        input: [vi('q', [1, 4, 'S', 8]), vi('k', [1, 2, 'T', 8]), vi('v', [1, 2, 'T', 8])],
        output: [vi('out', [1, 4, 'S', 8])],
        initializer: [{ ...i64('i0', [0]), dims: [] }, { ...i64('i2', [2]), dims: [] }, i64('ax0', [0]), i64('ax2', [2]), i64('c2', [2]), i64('c4', [4]), i64('c8', [8]), f32('half', 0.5)],
        node: [
          ...repeat('k'),
          ...repeat('v'),
          node('Transpose', ['k_rep'], 'kT', [ints('perm', [0, 1, 3, 2])]),
          node('Mul', ['kT', 'half'], 'kT_scaled'),
          node('MatMul', ['q', 'kT_scaled'], 'scores'),
          node('Softmax', ['scores'], 'probs', [int('axis', -1)]),
          node('MatMul', ['probs', 'v_rep'], 'out'),
        ],
      },
    };
  }

  test('the torch-export form (Expand to a Concat-ed shape, scaled Kᵀ) is rewritten and computes the same', async () => {
    const m = torchStyleAttention();
    const untuned = onnx.ModelProto.encode(m).finish();
    const r = groupQueryHeads(m.graph!);
    assert.deepEqual(r, { changed: 2, total: 2, why: '' });
    const a = await ort.InferenceSession.create(untuned);
    const b = await ort.InferenceSession.create(onnx.ModelProto.encode(m).finish());
    for (const [S, T] of [[5, 5], [1, 9]]) {
      const x = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.7 + k));
      const feeds = { q: new ort.Tensor('float32', x(4 * S * 8, 1), [1, 4, S, 8]), k: new ort.Tensor('float32', x(2 * T * 8, 2), [1, 2, T, 8]), v: new ort.Tensor('float32', x(2 * T * 8, 3), [1, 2, T, 8]) };
      const d = relMaxDiff(await a.run(feeds), await b.run(feeds));
      assert.ok(d < 1e-6, `S ${S} T ${T}: ${d}`);
    }
  });

  test('a repeat used by anything but a MatMul is left alone, with the reason', () => {
    const m = torchStyleAttention();
    m.graph!.node!.push({ name: 'extra', opType: 'Relu', domain: '', input: ['v_rep'], output: ['other'] });
    const r = groupQueryHeads(m.graph!);
    assert.equal(r.changed, 1);
    assert.equal(r.total, 2);
    assert.match(r.why, /used by something other than a MatMul/);
  });
});

describe('int8 vision weights pass', () => {
  test('per-column symmetric int8: error at most half a step, an all-zero column gets scale 1', () => {
    const K = 3;
    const N = 3;
    const w = Float32Array.from([1, 0, -0.5, -2, 0, 0.25, 0.5, 0, 0.125]);
    const { q, scales } = quantizeColumnsInt8(w, K, N);
    assert.deepEqual(Array.from(scales), [2 / 127, 1, 0.5 / 127].map(Math.fround));
    assert.deepEqual(Array.from(q), [64, 0, -127, -127, 0, 64, 32, 0, 32]);
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(q[i] * scales[i % N] - w[i]) <= scales[i % N] / 2 + 1e-9);
  });

  test('a vision encoder with 128-wide layers (external data): DynamicQuantizeMatMul, features within 1% of fp32', async () => {
    const dir = await model('tiny-onevision-wide', { preset: 'tiny-onevision', seed: 10, externalData: true, config: { vision: { hiddenSize: 128, intermediateSize: 256, numHeads: 2 }, text: { hiddenSize: 128, numHeads: 4 } } });
    const file = path.join(dir, 'onnx', 'vision_encoder.onnx');
    const t = await tuneGraph(file, { role: 'vision', cacheDirs: [path.join(root, 'cache', 'int8')] }, noLog);
    assert.equal(t.applied.length, 1);
    assert.match(t.applied[0], /^int8 weights \(DynamicQuantizeMatMul, per-column scales\) on (\d+) of (\d+) fp32 MatMuls by a constant weight$/);
    const tuned = onnx.ModelProto.decode(fs.readFileSync(t.path));
    const ops = tuned.graph!.node!.map((n) => n.opType);
    assert.ok(ops.includes('DynamicQuantizeMatMul'));
    assert.ok(tuned.opsetImport!.some((o) => o.domain === 'com.microsoft'));
    const a = await ort.InferenceSession.create(file);
    const { session: b } = await createSession(t, 'cpu', { log: noLog });
    const px = Float32Array.from({ length: 3 * 42 * 42 }, (_, i) => Math.sin(i * 0.11));
    const feeds = { pixel_values: new ort.Tensor('float32', px, [1, 3, 42, 42]) };
    const fa = (await a.run(feeds)).image_features.data as Float32Array;
    const fb = (await b.run(feeds)).image_features.data as Float32Array;
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let i = 0; i < fa.length; i++) {
      dot += fa[i] * fb[i];
      na += fa[i] * fa[i];
      nb += fb[i] * fb[i];
    }
    const cos = dot / Math.sqrt(na * nb);
    assert.ok(cos > 0.99 && cos < 1, `cosine ${cos}`);
    await a.release();
    await b.release();
  });

  test('the tiny presets have no weight worth quantizing, and say so; a decoder file is not touched by it', async () => {
    const dir = await model('tiny-onevision', { preset: 'tiny-onevision', seed: 6, variants: ['q4'] });
    const v = await tuneGraph(path.join(dir, 'onnx', 'vision_encoder.onnx'), { role: 'vision', cacheDirs: [path.join(root, 'cache', 'int8-tiny')] }, noLog);
    assert.deepEqual(v.applied, []);
    assert.match(v.skipped.join(), /none of \d+ fp32 MatMuls by a constant weight qualified \(weights smaller than 128×128\)/);
    const d = await tuneGraph(path.join(dir, 'onnx', 'decoder_model_merged.onnx'), { cacheDirs: [path.join(root, 'cache', 'int8-dec')] }, noLog);
    assert.ok(!d.applied.some((a) => a.startsWith('int8 weights')));
  });
});
