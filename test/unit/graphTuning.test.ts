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
import { setMatMulNBitsAccuracy, sliceBeforeLmHead, tuneGraph, tuneModelProto } from '../../server/src/runtime/graphTuning';
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
    const r = tuneModelProto(m2, { int8Activations: false });
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

  test('tiny-onevision has num_logits_to_keep: only the MatMulNBits pass applies to its q4 decoder', async () => {
    const dir = await model('tiny-onevision', { preset: 'tiny-onevision', seed: 6, variants: ['q4'] });
    const t = await tuneGraph(path.join(dir, 'onnx', 'decoder_model_merged_q4.onnx'), { cacheDirs: [path.join(root, 'cache', 'ov')] }, noLog);
    assert.equal(t.applied.length, 1);
    assert.match(t.applied[0], /^accuracy_level=4 on (\d+) of \1 4-bit MatMulNBits$/);
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
    assert.deepEqual((await tuneGraph(file, { int8Activations: false, lastLogitsOnly: false }, noLog)).skipped, ['graph tuning is off']);
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
