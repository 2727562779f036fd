import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LensErrorCode, isLensError } from '../../common/errors';
import { AnyresGeometry, anyresRowCount, packAnyresFeatures } from '../../server/src/runtime/anyres';
import { selectBestResolution } from '../../server/src/runtime/preprocess';

const NL = -1; // image_newline value in these tests (hidden = 1..3, all components -1)

/** Rows of a packed [M, Hf] buffer as arrays. */
function rowsOf(p: { data: Float32Array; rows: number }, hidden: number): number[][] {
  return Array.from({ length: p.rows }, (_, r) => Array.from(p.data.subarray(r * hidden, (r + 1) * hidden)));
}

/**
 * Encoder output [views, N, Hf] where view v, patch p (row-major in the view), channel h holds
 * v*100 + p*10 + h, so every packed value names where it came from.
 */
function labelled(views: number, n: number, hidden: number): Float32Array {
  const f = new Float32Array(views * n * hidden);
  for (let v = 0; v < views; v++) for (let p = 0; p < n; p++) for (let h = 0; h < hidden; h++) f[(v * n + p) * hidden + h] = v * 100 + p * 10 + h;
  return f;
}

const vec = (base: number, hidden: number) => Array.from({ length: hidden }, (_, h) => base + h);

test('pack: 2×1 grid of 2×2 tiles, unpad drops the top and bottom rows', () => {
  // Square 10×10 image on a tall map (4 rows × 2 cols): scale 2/10, new height 2, padding (4 - 2) // 2 = 1 -> rows 1..2.
  const hidden = 3;
  const geometry: AnyresGeometry = { grid: { rows: 2, cols: 1 }, originalSize: { width: 10, height: 10 }, imageSize: 4, patchSize: 2, maxTiles: 0 };
  const p = packAnyresFeatures({ ...geometry, features: labelled(3, 4, hidden), views: 3, rowsPerView: 4, hidden, imageNewline: new Float32Array(hidden).fill(NL) });
  const nl = Array(hidden).fill(NL);
  assert.deepEqual(rowsOf(p, hidden), [
    vec(0, 3), vec(10, 3), vec(20, 3), vec(30, 3), // base view, no newline
    vec(120, 3), vec(130, 3), nl, // map row 1 = tile 1 (view 1), its patch row 1 (patches 2, 3)
    vec(200, 3), vec(210, 3), nl, // map row 2 = tile 2 (view 2), its patch row 0 (patches 0, 1)
  ]);
  assert.equal(p.rows, 10);
  assert.equal(anyresRowCount(geometry), 10);
});

test('pack: 1×2 grid, a tall image loses the outer columns', () => {
  // 10×10 image on a wide map (2 rows × 4 cols): scale 2/10, new width 2, padding 1 -> columns 1..2.
  const hidden = 2;
  const geometry: AnyresGeometry = { grid: { rows: 1, cols: 2 }, originalSize: { width: 10, height: 10 }, imageSize: 4, patchSize: 2, maxTiles: 0 };
  const p = packAnyresFeatures({ ...geometry, features: labelled(3, 4, hidden), views: 3, rowsPerView: 4, hidden, imageNewline: new Float32Array([NL, NL]) });
  assert.deepEqual(rowsOf(p, hidden).slice(4), [
    vec(110, 2), vec(200, 2), [NL, NL], // map row 0: tile 1 column 1, tile 2 column 0
    vec(130, 2), vec(220, 2), [NL, NL], // map row 1: tile 1 patch 3, tile 2 patch 2
  ]);
  assert.equal(anyresRowCount(geometry), p.rows);
});

test('pack: no unpadding when the aspect matches; hidden 1', () => {
  // 8×2 image on a 2×4 map: aspect 4 > 2, new height int(2 * 4 / 8) = 1, padding (2 - 1) // 2 = 0 -> both rows kept.
  const geometry: AnyresGeometry = { grid: { rows: 1, cols: 2 }, originalSize: { width: 8, height: 2 }, imageSize: 4, patchSize: 2, maxTiles: 0 };
  const p = packAnyresFeatures({ ...geometry, features: labelled(3, 4, 1), views: 3, rowsPerView: 4, hidden: 1, imageNewline: new Float32Array([NL]) });
  assert.deepEqual(Array.from(p.data), [0, 10, 20, 30, 100, 110, 200, 210, NL, 120, 130, 220, 230, NL]);
});

test('downsample (anyres_max_1): 2×4 map -> 1×2 averages 2×2 blocks', () => {
  // ratio sqrt(2*4 / (1*2*2)) = 1.414 > 1.1 -> [2 // 1.414, 4 // 1.414] = [1, 2]; source positions 0.5 / 0.5, 2.5: equal weights.
  const hidden = 2;
  const geometry: AnyresGeometry = { grid: { rows: 1, cols: 2 }, originalSize: { width: 8, height: 2 }, imageSize: 4, patchSize: 2, maxTiles: 1 };
  const p = packAnyresFeatures({ ...geometry, features: labelled(3, 4, hidden), views: 3, rowsPerView: 4, hidden, imageNewline: new Float32Array([NL, NL]) });
  // Block 1 = view 1 patches 0..3 -> 100 + mean(0, 10, 20, 30) = 115 (+h); block 2 = 215.
  assert.deepEqual(rowsOf(p, hidden).slice(4), [vec(115, 2), vec(215, 2), [NL, NL]]);
  assert.equal(anyresRowCount(geometry), 7);
});

test('downsample with uneven bilinear weights (3×6 map -> 2×4)', () => {
  // side 3, grid 1×2, 12×6 image: no unpadding. ratio sqrt(18 / 9) = 1.414 -> [3 // 1.414, 6 // 1.414] = [2, 4].
  // Source rows (d + 0.5) * 1.5 - 0.5 = 0.25, 1.75; columns 0.25, 1.75, 3.25, 4.75.
  // With map value 10 * Y + X (linear) bilinear gives exactly 10 * srcY + srcX.
  const side = 3, n = 9;
  const features = new Float32Array(3 * n);
  for (let Y = 0; Y < 3; Y++) for (let X = 0; X < 6; X++) features[(1 + Math.floor(X / 3)) * n + Y * 3 + (X % 3)] = 10 * Y + X;
  const geometry: AnyresGeometry = { grid: { rows: 1, cols: 2 }, originalSize: { width: 12, height: 6 }, imageSize: 6, patchSize: 2, maxTiles: 1 };
  const p = packAnyresFeatures({ ...geometry, features, views: 3, rowsPerView: n, hidden: 1, imageNewline: new Float32Array([NL]) });
  assert.equal(p.rows, side * side + 2 * 5);
  assert.deepEqual(Array.from(p.data.subarray(n)), [2.75, 4.25, 5.75, 7.25, NL, 17.75, 19.25, 20.75, 22.25, NL]);
});

test('downsample: maps that would shrink to nothing are refused; side-1 tiles', () => {
  // 1 row × 5 cols (side 1, grid 1×5, 5×1 image), anyres_max_2: ratio sqrt(5 / 2) = 1.58 -> [1 // 1.58, 5 // 1.58] = [0 -> error].
  const bad: AnyresGeometry = { grid: { rows: 1, cols: 5 }, originalSize: { width: 5, height: 1 }, imageSize: 1, patchSize: 1, maxTiles: 2 };
  assert.throws(() => anyresRowCount(bad), (e: unknown) => isLensError(e) && e.code === LensErrorCode.UnsupportedImage && /too elongated/.test(e.message));
  // 2 rows × 5 cols, anyres_max_2: ratio sqrt(10 / 2) = 2.236 -> [0, 2]: also too small. 4×5 with max 4: sqrt(20/4) = 2.236 -> [1, 2].
  // Columns: scale 2.5, src (d + 0.5) * 2.5 - 0.5 = 0.75, 3.25; rows: scale 4, src 1.5.
  const g: AnyresGeometry = { grid: { rows: 4, cols: 5 }, originalSize: { width: 5, height: 4 }, imageSize: 1, patchSize: 1, maxTiles: 4 };
  const features = new Float32Array(21);
  for (let Y = 0; Y < 4; Y++) for (let X = 0; X < 5; X++) features[1 + Y * 5 + X] = 10 * Y + X;
  const p = packAnyresFeatures({ ...g, features, views: 21, rowsPerView: 1, hidden: 1, imageNewline: new Float32Array([NL]) });
  assert.deepEqual(Array.from(p.data), [0, 15.75, 18.25, NL]);
});

test('unpad uses round(x, 7) like HF (49×49 on a 2×1 grid of side 27)', () => {
  // 49 * (27 / 49) = 26.999999999999996: int() alone gives 26 (padding 14, 26 rows); HF rounds to 27 first
  // -> padding (54 - 27) // 2 = 13 -> rows 13..40 = 28 rows.
  const g: AnyresGeometry = { grid: { rows: 2, cols: 1 }, originalSize: { width: 49, height: 49 }, imageSize: 378, patchSize: 14, maxTiles: 0 };
  assert.equal(anyresRowCount(g), 729 + 28 * 28);
});

test('real OneVision geometries (384 px tiles, patch 14 -> 27×27, anyres_max_9)', () => {
  const pinpoints = Array.from({ length: 36 }, (_, k) => [384 * (Math.floor(k / 6) + 1), 384 * ((k % 6) + 1)] as [number, number]);
  const count = (w: number, h: number, maxTiles = 9) => {
    const best = selectBestResolution(w, h, pinpoints);
    return anyresRowCount({ grid: { rows: best.height / 384, cols: best.width / 384 }, originalSize: { width: w, height: h }, imageSize: 384, patchSize: 14, maxTiles });
  };
  // 1920×1080: grid 3×5, map 81×135, unpad to 75×135, ratio 1.242 -> 60×108: 729 + 60 * 109.
  assert.equal(count(1920, 1080), 7269);
  // 640×400: grid 2×2, map 54×54, new height int(33.75) = 33, padding 10 -> 34×54; no downsampling.
  assert.equal(count(640, 400), 729 + 34 * 55);
  assert.equal(count(384, 384), 729 + 27 * 28);
  // Without anyres_max the 1920×1080 map is kept whole: 729 + 75 * 136.
  assert.equal(count(1920, 1080, 0), 729 + 75 * 136);
});

test('anyresRowCount equals packAnyresFeatures rows on many geometries', () => {
  const pinpoints: Array<[number, number]> = [[6, 6], [6, 12], [12, 6], [12, 12], [6, 18], [18, 6], [18, 18]];
  let checked = 0;
  for (const [w, h] of [[5, 5], [40, 10], [10, 40], [33, 21], [7, 100], [100, 7], [64, 48], [2, 3], [300, 299]]) {
    for (const maxTiles of [0, 1, 2, 4]) {
      const best = selectBestResolution(w, h, pinpoints);
      const grid = { rows: best.height / 6, cols: best.width / 6 };
      const geometry: AnyresGeometry = { grid, originalSize: { width: w, height: h }, imageSize: 6, patchSize: 2, maxTiles };
      let expected: number;
      try {
        expected = anyresRowCount(geometry);
      } catch (e) {
        assert.ok(isLensError(e) && e.code === LensErrorCode.UnsupportedImage);
        continue;
      }
      const views = 1 + grid.rows * grid.cols;
      const hidden = 2;
      const p = packAnyresFeatures({ ...geometry, features: labelled(views, 9, hidden), views, rowsPerView: 9, hidden, imageNewline: new Float32Array([NL, NL]) });
      assert.equal(p.rows, expected, `${w}×${h} max ${maxTiles}`);
      assert.equal(p.data.length, expected * hidden);
      // Base rows first, and every map row ends with the newline.
      assert.deepEqual(Array.from(p.data.subarray(0, 4)), [0, 1, 10, 11]);
      assert.deepEqual(Array.from(p.data.subarray(p.data.length - 2)), [NL, NL]);
      checked++;
    }
  }
  assert.ok(checked >= 30, `checked ${checked}`);
});

test('shape mismatches fail with a hint', () => {
  const geometry: AnyresGeometry = { grid: { rows: 1, cols: 2 }, originalSize: { width: 8, height: 4 }, imageSize: 4, patchSize: 2, maxTiles: 0 };
  const base = { ...geometry, features: labelled(3, 4, 1), views: 3, rowsPerView: 4, hidden: 1, imageNewline: new Float32Array([NL]) };
  const fails = (args: Parameters<typeof packAnyresFeatures>[0], code: LensErrorCode, re: RegExp) =>
    assert.throws(() => packAnyresFeatures(args), (e: unknown) => isLensError(e) && e.code === code && re.test(e.message));
  fails({ ...base, rowsPerView: 3, features: labelled(3, 3, 1) }, LensErrorCode.InvalidModelFolder, /3 feature rows per view.*2×2 = 4/);
  fails({ ...base, views: 2, features: labelled(2, 4, 1) }, LensErrorCode.Internal, /2 views for a 1×2 grid/);
  fails({ ...base, imageNewline: new Float32Array(2) }, LensErrorCode.InvalidModelFolder, /image_newline has 2 values/);
  fails({ ...base, features: new Float32Array(5) }, LensErrorCode.Internal, /hold 5 values/);
});
