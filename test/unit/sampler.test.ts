import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyRepetitionPenalty, argmax, makeRng, sample, validateSamplerOptions, type SamplerOptions } from '../../server/src/runtime/sampler';

const greedy: SamplerOptions = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };
const logits = Float32Array.from([1, 3, 2, 3, -1]);

test('greedy is argmax with the lowest id on ties', () => {
  assert.equal(argmax(logits), 1);
  assert.equal(sample(logits, greedy, makeRng(1)), 1);
});

test('the rng is deterministic per seed and in [0,1)', () => {
  const a = makeRng(42), b = makeRng(42), c = makeRng(43);
  const xs = Array.from({ length: 100 }, a);
  assert.deepEqual(xs, Array.from({ length: 100 }, b));
  assert.notDeepEqual(xs, Array.from({ length: 100 }, c));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
});

test('repetition penalty divides positive and multiplies negative logits, once per id', () => {
  const x = Float32Array.from([2, -2, 4]);
  applyRepetitionPenalty(x, [0, 1, 0], 2);
  assert.deepEqual(Array.from(x), [1, -4, 4]);
  // greedy with a penalty moves off a repeated token
  assert.equal(sample(Float32Array.from([3, 2.5]), { ...greedy, repetitionPenalty: 1.5 }, makeRng(0), [0]), 1);
  // input is not modified
  const y = Float32Array.from([3, 2.5]);
  sample(y, { ...greedy, repetitionPenalty: 1.5 }, makeRng(0), [0]);
  assert.deepEqual(Array.from(y), [3, 2.5]);
});

function histogram(o: SamplerOptions, x: Float32Array, n = 4000, seed = 7): number[] {
  const rng = makeRng(seed);
  const h = new Array(x.length).fill(0);
  for (let i = 0; i < n; i++) h[sample(x, o, rng)]++;
  return h.map((c) => c / n);
}

test('temperature sampling follows the softmax', () => {
  const x = Float32Array.from([0, Math.log(3)]); // p = [0.25, 0.75]
  const h = histogram({ ...greedy, temperature: 1 }, x);
  assert.ok(Math.abs(h[1] - 0.75) < 0.03, `got ${h[1]}`);
  // higher temperature flattens: T=2 -> p1 = sqrt3/(1+sqrt3) = 0.634
  const h2 = histogram({ ...greedy, temperature: 2 }, x);
  assert.ok(Math.abs(h2[1] - 0.634) < 0.03, `got ${h2[1]}`);
});

test('top-k keeps only the k most likely tokens', () => {
  const x = Float32Array.from([1, 1.1, 5, 4.9, 0]);
  const h = histogram({ ...greedy, temperature: 1, topK: 2 }, x);
  assert.equal(h[0] + h[1] + h[4], 0);
  assert.ok(h[2] > 0.4 && h[3] > 0.4);
});

test('top-p keeps the smallest set reaching the mass', () => {
  // p = [0.5, 0.3, 0.2] -> topP 0.7 keeps {0, 1}; topP 0.5 keeps {0}
  const x = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
  const h = histogram({ ...greedy, temperature: 1, topP: 0.7 }, x);
  assert.equal(h[2], 0);
  assert.ok(Math.abs(h[0] - 0.625) < 0.03, `got ${h[0]}`);
  const h1 = histogram({ ...greedy, temperature: 1, topP: 0.5 }, x);
  assert.deepEqual(h1, [1, 0, 0]);
});

test('same seed, same samples', () => {
  const x = Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5]);
  const o = { ...greedy, temperature: 0.8, topK: 4, topP: 0.9 };
  assert.deepEqual(histogram(o, x, 200, 3), histogram(o, x, 200, 3));
});

test('invalid options are named', () => {
  assert.match(validateSamplerOptions({ ...greedy, temperature: -1 })!, /temperature/);
  assert.match(validateSamplerOptions({ ...greedy, topK: 1.5 })!, /topK/);
  assert.match(validateSamplerOptions({ ...greedy, topP: 0 })!, /topP/);
  assert.match(validateSamplerOptions({ ...greedy, repetitionPenalty: 0 })!, /repetitionPenalty/);
  assert.equal(validateSamplerOptions(greedy), undefined);
});
