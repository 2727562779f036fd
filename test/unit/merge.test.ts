import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LensError } from '../../common/errors';
import { expandImageTokens, mergeImageFeatures } from '../../server/src/runtime/merge';

const IMG = 9;

test('each placeholder expands to its image rows, in order', () => {
  assert.deepEqual(expandImageTokens([1, IMG, 2, IMG, 3], IMG, [2, 3]), [1, IMG, IMG, 2, IMG, IMG, IMG, 3]);
  assert.deepEqual(expandImageTokens([1, 2], IMG, []), [1, 2]);
});

test('placeholder and image counts must agree', () => {
  assert.throws(() => expandImageTokens([IMG, IMG], IMG, [1]), LensError);
  assert.throws(() => expandImageTokens([1], IMG, [1]), LensError);
});

test('feature rows are written over the image slots', () => {
  const H = 2;
  const ids = [1, IMG, IMG, 2, IMG];
  const embeds = new Float32Array(ids.length * H).fill(0.5);
  mergeImageFeatures(embeds, ids, IMG, H, [
    { data: Float32Array.from([10, 11, 12, 13]), rows: 2 },
    { data: Float32Array.from([20, 21]), rows: 1 },
  ]);
  assert.deepEqual(Array.from(embeds), [0.5, 0.5, 10, 11, 12, 13, 0.5, 0.5, 20, 21]);
});

test('slot/row mismatch and wrong feature width fail with a hint', () => {
  const e = new Float32Array(6);
  assert.throws(() => mergeImageFeatures(e, [IMG, IMG, 1], IMG, 2, [{ data: new Float32Array(2), rows: 1 }]), /slots \(2\) != image feature rows \(1\)/);
  assert.throws(() => mergeImageFeatures(e, [IMG, 1, 1], IMG, 2, [{ data: new Float32Array(3), rows: 1 }]), /wrong vision encoder/);
});
