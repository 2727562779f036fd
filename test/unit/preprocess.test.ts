import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LensErrorCode, isLensError } from '../../common/errors';
import sharp from 'sharp';
import { decodeImage } from '../../server/src/runtime/image';
import {
  decodeResize, meanColour, parsePreprocessSpec, preprocess, PreprocessSpec, resizeAndPadGeometry, selectBestResolution, shortestEdgeSize,
} from '../../server/src/runtime/preprocess';
import { jpegOrientation6, quadrants, rawRgb } from '../fixtures/images';

const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];
const f = Math.fround;

/** What HF's numpy path gives for u8 level v of channel c: float32(v * scale), then (x - mean) / std in float32. */
function expected(v: number, c: number, mean = CLIP_MEAN, std = CLIP_STD, scale = 1 / 255): number {
  return f(f(f(v * scale) - f(mean[c])) / f(std[c]));
}

/** No rescale, no normalise: pixel values are the u8 levels, so geometry can be read off directly. */
function rawSpec(over: Partial<PreprocessSpec>): PreprocessSpec {
  return {
    imageSize: { height: 4, width: 4 }, doCenterCrop: false, padToSquare: false, resample: 'nearest',
    rescaleFactor: 1, doNormalize: false, imageMean: [0, 0, 0], imageStd: [1, 1, 1], ...over,
  };
}

/** Value at (view, channel, y, x) of [views, 3, H, W]. */
function at(pv: { data: Float32Array; dims: number[] }, v: number, c: number, y: number, x: number): number {
  const [, , h, w] = pv.dims;
  return pv.data[((v * 3 + c) * h + y) * w + x];
}

function plane(pv: { data: Float32Array; dims: number[] }, v: number, c: number): number[][] {
  const [, , h, w] = pv.dims;
  return Array.from({ length: h }, (_, y) => Array.from({ length: w }, (_, x) => at(pv, v, c, y, x)));
}

// --- parsePreprocessSpec ---------------------------------------------------------------------

const clipConfig = {
  crop_size: { height: 336, width: 336 }, do_center_crop: true, do_convert_rgb: true, do_normalize: true, do_pad: true,
  do_rescale: true, do_resize: true, image_mean: CLIP_MEAN, image_std: CLIP_STD, resample: 3,
  rescale_factor: 0.00392156862745098, size: { shortest_edge: 336 }, image_processor_type: 'CLIPImageProcessor',
};
const ovPinpoints = Array.from({ length: 36 }, (_, k) => [384 * (Math.floor(k / 6) + 1), 384 * ((k % 6) + 1)]);
const ovPre = {
  do_convert_rgb: true, do_normalize: true, do_pad: true, do_rescale: true, do_resize: true,
  image_grid_pinpoints: ovPinpoints, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], resample: 3,
  rescale_factor: 0.00392156862745098, size: { height: 384, width: 384 },
};

test('parse: LLaVA-1.5 CLIP with do_pad', () => {
  const s = parsePreprocessSpec(clipConfig, { model_type: 'llava' });
  assert.deepEqual(s, {
    imageSize: { height: 336, width: 336 }, shortestEdge: 336, doCenterCrop: true, padToSquare: true, resample: 'bicubic',
    rescaleFactor: 0.00392156862745098, doNormalize: true, imageMean: CLIP_MEAN, imageStd: CLIP_STD,
  });
  assert.equal(parsePreprocessSpec({ ...clipConfig, do_pad: undefined }, {}).padToSquare, false);
  assert.equal(parsePreprocessSpec({ ...clipConfig, do_pad: undefined }, { image_aspect_ratio: 'pad' }).padToSquare, true);
});

test('parse: SigLIP resizes straight to size', () => {
  const s = parsePreprocessSpec({ ...ovPre, image_grid_pinpoints: undefined, do_pad: undefined }, {});
  assert.equal(s.shortestEdge, undefined);
  assert.deepEqual(s.imageSize, { height: 384, width: 384 });
  assert.equal(s.doCenterCrop, false);
  assert.equal(s.anyres, undefined);
});

test('parse: OneVision anyres_max_9; do_pad there is batch padding, not pad-to-square', () => {
  const s = parsePreprocessSpec(ovPre, { image_grid_pinpoints: ovPinpoints, vision_aspect_ratio: 'anyres_max_9' });
  assert.equal(s.padToSquare, false);
  assert.equal(s.anyres?.maxTiles, 9);
  assert.equal(s.anyres?.gridPinpoints.length, 36);
  assert.deepEqual(s.anyres?.gridPinpoints[1], [384, 768]);
  // LLaVA-NeXT: CLIP sizes, pinpoints only in config.json, no vision_aspect_ratio -> no downsampling.
  const next = parsePreprocessSpec(clipConfig, { image_grid_pinpoints: [[336, 672], [672, 336]] });
  assert.deepEqual(next.anyres, { gridPinpoints: [[336, 672], [672, 336]], maxTiles: 0 });
  assert.equal(next.shortestEdge, 336);
});

test('parse: the original LLaVA-NeXT range string "(1x1),...,(2x3)" means (width, height) in tiles', () => {
  const s = parsePreprocessSpec({ ...ovPre, image_grid_pinpoints: undefined }, { image_grid_pinpoints: '(1x1),...,(2x3)', image_aspect_ratio: 'anyres_max_4' });
  assert.deepEqual(s.anyres?.gridPinpoints, [[384, 384], [768, 384], [1152, 384], [384, 768], [768, 768], [1152, 768]]);
  assert.equal(s.anyres?.maxTiles, 4);
});

test('parse: nonsense fails with InvalidModelFolder naming the field', () => {
  const cases: Array<[any, any, RegExp]> = [
    [{ ...clipConfig, resample: 1 }, {}, /preprocessor_config\.json: resample is 1/],
    [{ ...clipConfig, size: undefined }, {}, /size is undefined/],
    [{ ...clipConfig, image_mean: [0.5, 0.5] }, {}, /image_mean is \[0\.5,0\.5\]/],
    [{ ...clipConfig, image_std: [0.5, 0, 0.5] }, {}, /image_std/],
    [{ ...clipConfig, crop_size: 'big' }, {}, /crop_size/],
    [{ ...clipConfig, do_resize: false }, {}, /do_resize/],
    [{ ...clipConfig, size: { height: 400, width: 400 } }, {}, /size is 400×400 but crop_size is 336×336/],
    [ovPre, { image_grid_pinpoints: [[384, 500]] }, /config\.json: image_grid_pinpoints differs/],
    [{ ...ovPre, image_grid_pinpoints: [[384, 500]] }, {}, /image_grid_pinpoints has 384×500, not a multiple of the 384-pixel tile/],
    [{ ...ovPre, image_grid_pinpoints: [[384]] }, {}, /image_grid_pinpoints\[0\]/],
    [ovPre, { vision_aspect_ratio: 'squash' }, /config\.json: vision_aspect_ratio is "squash"/],
    [null, {}, /preprocessor_config\.json/],
  ];
  for (const [pp, mc, re] of cases) {
    assert.throws(() => parsePreprocessSpec(pp, mc), (e: unknown) => {
      assert.ok(isLensError(e));
      assert.equal(e.code, LensErrorCode.InvalidModelFolder);
      assert.match(e.message, re);
      return true;
    });
  }
});

// --- geometry helpers (expected values worked by hand / with the Python formulas) ---------------

test('selectBestResolution matches LLaVA-NeXT select_best_resolution', () => {
  const next: Array<[number, number]> = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];
  // 800×600: effective 150528 / 84672 / 338688 / 84672 / 150528 -> 672×672.
  assert.deepEqual(selectBestResolution(800, 600, next), { height: 672, width: 672 });
  // 1000×200: 336×1008 keeps all 200000 px.
  assert.deepEqual(selectBestResolution(1000, 200, next), { height: 336, width: 1008 });
  assert.deepEqual(selectBestResolution(200, 1000, next), { height: 1008, width: 336 });
  // 100×100: every candidate keeps all 10000 px; 336×672 and 672×336 waste the same: the first wins.
  assert.deepEqual(selectBestResolution(100, 100, next), { height: 336, width: 672 });
  const ov = [[384, 384], [384, 768], [768, 384], [768, 768], [768, 1152], [1152, 768]] as Array<[number, number]>;
  // 1000×500: 768×1152 scales by 1.152 -> 1152×576 > 500000 px, the only candidate keeping everything.
  assert.deepEqual(selectBestResolution(1000, 500, ov), { height: 768, width: 1152 });
  const ovFull = Array.from({ length: 36 }, (_, k) => [384 * (Math.floor(k / 6) + 1), 384 * ((k % 6) + 1)] as [number, number]);
  assert.deepEqual(selectBestResolution(1920, 1080, ovFull), { height: 1152, width: 1920 });
  assert.deepEqual(selectBestResolution(640, 400, ovFull), { height: 768, width: 768 });
  assert.deepEqual(selectBestResolution(500, 3000, ovFull), { height: 2304, width: 384 });
});

test('resizeAndPadGeometry: tighter ratio, ceil on the other axis, centred black padding', () => {
  assert.deepEqual(resizeAndPadGeometry(1000, 500, { height: 768, width: 1152 }), { resized: { width: 1152, height: 576 }, pad: { top: 96, bottom: 96, left: 0, right: 0 } });
  assert.deepEqual(resizeAndPadGeometry(800, 600, { height: 672, width: 672 }), { resized: { width: 672, height: 504 }, pad: { top: 84, bottom: 84, left: 0, right: 0 } });
  assert.deepEqual(resizeAndPadGeometry(1920, 1080, { height: 1152, width: 1920 }), { resized: { width: 1920, height: 1080 }, pad: { top: 36, bottom: 36, left: 0, right: 0 } });
  // 200×1000 into 1008×336: width ceil(200 * 1.008) = 202, odd padding 134 -> left 67, right 67.
  assert.deepEqual(resizeAndPadGeometry(200, 1000, { height: 1008, width: 336 }), { resized: { width: 202, height: 1008 }, pad: { top: 0, bottom: 0, left: 67, right: 67 } });
  // 10×7 into 8×8: height ceil(5.6) = 6, padding 2 -> 1 / 1; 10×5: height 4, padding 4 -> 2 / 2; 8×3 into 4×8: 1 -> 0 / 1.
  assert.deepEqual(resizeAndPadGeometry(10, 7, { height: 8, width: 8 }).pad, { top: 1, bottom: 1, left: 0, right: 0 });
  assert.deepEqual(resizeAndPadGeometry(10, 5, { height: 8, width: 8 }), { resized: { width: 8, height: 4 }, pad: { top: 2, bottom: 2, left: 0, right: 0 } });
  assert.deepEqual(resizeAndPadGeometry(8, 3, { height: 4, width: 8 }).pad, { top: 0, bottom: 1, left: 0, right: 0 });
});

test('shortestEdgeSize: int(edge * long / short)', () => {
  assert.deepEqual(shortestEdgeSize(640, 480, 336), { width: 448, height: 336 });
  assert.deepEqual(shortestEdgeSize(7, 3, 2), { width: 4, height: 2 }); // 4.67 -> 4
  assert.deepEqual(shortestEdgeSize(3, 7, 2), { width: 2, height: 4 });
  assert.deepEqual(meanColour(CLIP_MEAN), [122, 116, 104]);
});

// --- the pipeline ----------------------------------------------------------------------------

test('normalisation of solid colours is exact (white, black, the pad colour)', async () => {
  const spec = parsePreprocessSpec(clipConfig, {});
  for (const v of [255, 0, 77]) {
    const pv = await preprocess(rawRgb(5, 5, () => [v, v, v]), spec); // square: resized (bicubic) and cropped, still solid
    assert.deepEqual(pv.dims, [1, 3, 336, 336]);
    for (let c = 0; c < 3; c++) {
      const want = expected(v, c);
      assert.ok(pv.data.subarray(c * 336 * 336, (c + 1) * 336 * 336).every((x) => x === want), `level ${v} channel ${c}`);
    }
  }
  // A 2:1 image of exactly the pad colour pads to a solid square.
  const bg = await preprocess(rawRgb(6, 3, () => [122, 116, 104]), spec);
  for (let c = 0; c < 3; c++) {
    const want = expected([122, 116, 104][c], c);
    assert.ok(bg.data.subarray(c * 336 * 336, (c + 1) * 336 * 336).every((x) => x === want), `pad colour channel ${c}`);
  }
  // Sanity against the plain formula: white -> (1 - mean) / std.
  const white = await preprocess(rawRgb(2, 2, () => [255, 255, 255]), spec);
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(at(white, 0, c, 0, 0) - (1 - CLIP_MEAN[c]) / CLIP_STD[c]) < 1e-6);
  assert.ok(Math.abs(at(white, 0, 0, 0, 0) - 1.9303363) < 1e-6);
});

test('CHW layout per view', async () => {
  const px: Array<[number, number, number]> = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]];
  const img = rawRgb(2, 2, (x, y) => px[y * 2 + x]);
  const pv = await preprocess(img, rawSpec({ imageSize: { height: 2, width: 2 } }));
  assert.deepEqual(pv.dims, [1, 3, 2, 2]);
  assert.deepEqual(Array.from(pv.data), [1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12]);
  assert.deepEqual(pv.originalSize, { width: 2, height: 2 });
  assert.equal(pv.grid, undefined);
});

test('pad to square: mean colour, image centred at floor((max - side) / 2)', async () => {
  const red = (w: number, h: number) => rawRgb(w, h, () => [255, 0, 0]);
  const BG = [122, 116, 104];
  // 8×4 (2:1): rows 0-1 and 6-7 are background, 2-5 the image.
  let pv = await preprocess(red(8, 4), rawSpec({ imageSize: { height: 8, width: 8 }, padToSquare: true, imageMean: CLIP_MEAN }));
  assert.deepEqual(pv.dims, [1, 3, 8, 8]);
  for (let y = 0; y < 8; y++) {
    const want = y >= 2 && y < 6 ? [255, 0, 0] : BG;
    for (let c = 0; c < 3; c++) assert.deepEqual(plane(pv, 0, c)[y], Array(8).fill(want[c]), `row ${y} channel ${c}`);
  }
  // 7×4: offset floor(3 / 2) = 1 -> background rows 0, 5, 6.
  pv = await preprocess(red(7, 4), rawSpec({ imageSize: { height: 7, width: 7 }, padToSquare: true, imageMean: CLIP_MEAN }));
  assert.deepEqual(plane(pv, 0, 0).map((r) => r[3]), [122, 255, 255, 255, 255, 122, 122]);
  // 3×6 (tall): offset floor(3 / 2) = 1 -> background columns 0, 4, 5.
  pv = await preprocess(red(3, 6), rawSpec({ imageSize: { height: 6, width: 6 }, padToSquare: true, imageMean: CLIP_MEAN }));
  assert.deepEqual(plane(pv, 0, 1)[2], [116, 0, 0, 0, 116, 116]);
  // Then the CLIP chain: 8×4 -> 8×8 square -> shortest edge 4 (nearest: rows 1, 3, 5, 7) -> crop 4.
  pv = await preprocess(red(8, 4), rawSpec({ shortestEdge: 4, doCenterCrop: true, padToSquare: true, imageMean: CLIP_MEAN }));
  assert.deepEqual(plane(pv, 0, 2).map((r) => r[0]), [104, 0, 0, 104]);
});

test('shortest-edge resize then HF centre crop (top/left = floor(diff / 2))', async () => {
  const img = rawRgb(6, 4, (x, y) => [x * 10, y * 10, 0]);
  // Shortest edge already 4 -> no resize; crop 3×3 -> top 0, left 1.
  let pv = await preprocess(img, rawSpec({ shortestEdge: 4, doCenterCrop: true, imageSize: { height: 3, width: 3 } }));
  assert.deepEqual(plane(pv, 0, 0)[0], [10, 20, 30]);
  assert.deepEqual(plane(pv, 0, 1).map((r) => r[0]), [0, 10, 20]);
  // Crop 2 high × 4 wide -> top 1, left 1.
  pv = await preprocess(img, rawSpec({ shortestEdge: 4, doCenterCrop: true, imageSize: { height: 2, width: 4 } }));
  assert.deepEqual(pv.dims, [1, 3, 2, 4]);
  assert.deepEqual(plane(pv, 0, 0)[0], [10, 20, 30, 40]);
  assert.deepEqual(plane(pv, 0, 1).map((r) => r[0]), [10, 20]);
  // 12×6, shortest edge 3 -> 6×3 (nearest picks source 2i + 1), crop 3×3 at left 1 -> source columns 3, 5, 7.
  const big = rawRgb(12, 6, (x, y) => [x * 10, y * 10, 0]);
  pv = await preprocess(big, rawSpec({ shortestEdge: 3, doCenterCrop: true, imageSize: { height: 3, width: 3 } }));
  assert.deepEqual(plane(pv, 0, 0)[0], [30, 50, 70]);
  assert.deepEqual(plane(pv, 0, 1).map((r) => r[0]), [10, 30, 50]);
  // Crop larger than the image: HF pads with zeros centred at ceil(diff / 2).
  pv = await preprocess(rawRgb(2, 2, () => [9, 9, 9]), rawSpec({ shortestEdge: 2, doCenterCrop: true, imageSize: { height: 3, width: 5 } }));
  assert.deepEqual(plane(pv, 0, 0), [[0, 0, 0, 0, 0], [0, 0, 9, 9, 0], [0, 0, 9, 9, 0]]);
});

test('SigLIP: straight resize to imageSize, aspect not kept', async () => {
  const img = rawRgb(8, 4, (x, y) => [x * 10, y * 10, 5]);
  const pv = await preprocess(img, rawSpec({}));
  assert.deepEqual(pv.dims, [1, 3, 4, 4]);
  assert.deepEqual(plane(pv, 0, 0)[0], [10, 30, 50, 70]); // columns 1, 3, 5, 7
  assert.deepEqual(plane(pv, 0, 1).map((r) => r[0]), [0, 10, 20, 30]); // rows unchanged
  // Bicubic through sharp on a solid image is exact; SigLIP mean/std 0.5 -> white = 1, black = -1.
  const spec = parsePreprocessSpec({ ...ovPre, image_grid_pinpoints: undefined, do_pad: undefined }, {});
  for (const [v, want] of [[255, 1], [0, -1]] as const) {
    const out = await preprocess(rawRgb(40, 10, () => [v, v, v]), spec);
    assert.deepEqual(out.dims, [1, 3, 384, 384]);
    assert.ok(out.data.every((x) => x === want));
  }
});

test('bicubic/bilinear by exact 2x on a smooth image stay close to the source', async () => {
  const img = rawRgb(16, 16, (x, y) => [x * 8, y * 8, 100]);
  for (const resample of ['bicubic', 'bilinear'] as const) {
    const pv = await preprocess(img, rawSpec({ imageSize: { height: 8, width: 8 }, resample }));
    // Halving a linear ramp: each output averages source columns 2i, 2i+1 -> about 16i + 4.
    for (let i = 1; i < 7; i++) assert.ok(Math.abs(at(pv, 0, 0, 3, i) - (16 * i + 4)) <= 2, `${resample} col ${i}: ${at(pv, 0, 0, 3, i)}`);
    assert.ok(pv.data.subarray(128, 192).every((v) => v === 100), `${resample}: flat channel stays flat`);
  }
});

test('anyres: base view, tiles row-major, black padding', async () => {
  // 8×3 image, tiles of 4, pinpoints: 4×8 wins (keeps all 24 px, wastes 8) -> grid 1×2, one black row at the bottom.
  const img = rawRgb(8, 3, (x, y) => [x * 30, 60 + y * 60, 7]);
  const spec = rawSpec({ anyres: { gridPinpoints: [[4, 8], [8, 4], [8, 8]], maxTiles: 9 } });
  const pv = await preprocess(img, spec);
  assert.deepEqual(pv.dims, [3, 3, 4, 4]);
  assert.deepEqual(pv.grid, { rows: 1, cols: 2, bestResolution: { height: 4, width: 8 } });
  assert.deepEqual(pv.originalSize, { width: 8, height: 3 });
  // Base: 8×3 straight to 4×4 (nearest: columns 1, 3, 5, 7; rows 0, 1, 1, 2).
  assert.deepEqual(plane(pv, 0, 0)[0], [30, 90, 150, 210]);
  assert.deepEqual(plane(pv, 0, 1).map((r) => r[0]), [60, 120, 120, 180]);
  // Tile 1 = columns 0-3, tile 2 = columns 4-7; rows 0-2 image, row 3 black padding.
  assert.deepEqual(plane(pv, 1, 0), [[0, 30, 60, 90], [0, 30, 60, 90], [0, 30, 60, 90], [0, 0, 0, 0]]);
  assert.deepEqual(plane(pv, 2, 0)[1], [120, 150, 180, 210]);
  assert.deepEqual(plane(pv, 2, 1).map((r) => r[0]), [60, 120, 180, 0]);
  assert.deepEqual(plane(pv, 2, 2)[3], [0, 0, 0, 0]);

  // With normalisation the padding is (0 - mean) / std.
  const norm = await preprocess(img, { ...spec, rescaleFactor: 1 / 255, doNormalize: true, imageMean: CLIP_MEAN, imageStd: CLIP_STD });
  for (let c = 0; c < 3; c++) assert.equal(at(norm, 1, c, 3, 2), expected(0, c));
  assert.equal(at(norm, 1, 0, 0, 1), expected(30, 0));
});

test('anyres: 2×2 grid order is row-major (TL, TR, BL, BR)', async () => {
  // 4×4 quadrants upscaled 2x (nearest, exact) onto an 8×8 pinpoint: each tile is one flat colour.
  const pv = await preprocess(quadrants(4, 4), rawSpec({ anyres: { gridPinpoints: [[8, 8]], maxTiles: 0 } }));
  assert.deepEqual(pv.dims, [5, 3, 4, 4]);
  assert.deepEqual(pv.grid, { rows: 2, cols: 2, bestResolution: { height: 8, width: 8 } });
  const colourOf = (v: number) => [0, 1, 2].map((c) => {
    const vals = new Set(plane(pv, v, c).flat());
    assert.equal(vals.size, 1, `view ${v} channel ${c} is flat`);
    return [...vals][0];
  });
  assert.deepEqual([1, 2, 3, 4].map(colourOf), [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]);
  assert.deepEqual(plane(pv, 0, 0), [[255, 255, 0, 0], [255, 255, 0, 0], [0, 0, 255, 255], [0, 0, 255, 255]]); // base = the image itself
});

test('anyres with CLIP sizes (LLaVA-NeXT) and a real OneVision spec', async () => {
  const next = parsePreprocessSpec(clipConfig, { image_grid_pinpoints: [[336, 672], [672, 336], [672, 672]] });
  // 60×40 is smaller than every pinpoint: all keep 2400 px, 336×672 and 672×336 waste least, the first wins.
  const pv = await preprocess(rawRgb(60, 40, () => [255, 255, 255]), next);
  assert.deepEqual(pv.dims, [3, 3, 336, 336]);
  assert.deepEqual(pv.grid, { rows: 1, cols: 2, bestResolution: { height: 336, width: 672 } });
  // Resized to 504×336 (height fits), padded 84 left and right: columns 0-83 and 588-671 are black.
  assert.equal(at(pv, 1, 0, 10, 83), expected(0, 0));
  assert.equal(at(pv, 1, 0, 10, 84), expected(255, 0));
  assert.equal(at(pv, 2, 0, 10, 251), expected(255, 0));
  assert.equal(at(pv, 2, 0, 10, 252), expected(0, 0));
  assert.equal(at(pv, 0, 1, 200, 200), expected(255, 1)); // base view: the whole image, white

  const ov = parsePreprocessSpec(ovPre, { image_grid_pinpoints: ovPinpoints, vision_aspect_ratio: 'anyres_max_9' });
  const t0 = performance.now();
  const big = await preprocess(rawRgb(1920, 1080, () => [0, 128, 255]), ov);
  const ms = performance.now() - t0;
  assert.deepEqual(big.dims, [16, 3, 384, 384]); // base + 3×5 tiles
  assert.deepEqual(big.grid, { rows: 3, cols: 5, bestResolution: { height: 1152, width: 1920 } });
  assert.equal(at(big, 0, 2, 100, 100), 1);
  assert.equal(at(big, 1, 2, 0, 0), -1); // 36 px of black padding on top
  assert.equal(at(big, 1, 2, 36, 0), 1);
  assert.ok(ms < 3000, `1920×1080 anyres took ${ms.toFixed(0)} ms`);
});

// --- decode + first resize in one libvips pipeline ---------------------------------------------

test('decodeResize: resizing while decoding gives exactly the pixels of decoding then resizing', async () => {
  const siglip = parsePreprocessSpec({ ...ovPre, image_grid_pinpoints: undefined, do_pad: undefined }, {});
  const clip = parsePreprocessSpec({ ...clipConfig, do_pad: undefined }, {});
  const photo = rawRgb(301, 187, (x, y) => [(x * 7 + y * 3) & 255, (x * y) & 255, Math.round(128 + 100 * Math.sin(x / 9 + y / 5))]);
  const raw = { raw: { width: photo.width, height: photo.height, channels: 3 as const } };
  const files: Array<[string, Buffer]> = [
    ['jpeg', await sharp(photo.data, raw).jpeg({ quality: 85 }).toBuffer()],
    ['png', await sharp(photo.data, raw).png().toBuffer()],
    ['webp', await sharp(photo.data, raw).webp({ quality: 80 }).toBuffer()],
    ['jpeg rotated by EXIF (decoded at full size)', await jpegOrientation6()],
  ];
  for (const spec of [siglip, clip]) {
    const resize = decodeResize(spec);
    assert.ok(resize, 'a straight first resize');
    for (const [name, bytes] of files) {
      const full = await decodeImage({ bytes }, { maxPixels: 50e6 });
      const direct = await decodeImage({ bytes }, { maxPixels: 50e6, resize });
      if (name.includes('EXIF')) assert.equal(direct.resizedFrom, undefined, 'a rotated image is not resized in the decoder');
      else assert.deepEqual(direct.resizedFrom, { width: photo.width, height: photo.height }, name);
      const a = await preprocess(full, spec);
      const b = await preprocess(direct, spec);
      assert.deepEqual(b.dims, a.dims, name);
      assert.deepEqual(b.originalSize, a.originalSize, name);
      assert.ok(a.data.every((v, i) => v === b.data[i]), `${name}: same pixel values`);
    }
  }
  assert.equal(decodeResize(parsePreprocessSpec(ovPre, { image_grid_pinpoints: ovPinpoints, vision_aspect_ratio: 'anyres_max_9' })), undefined, 'anyres resizes a canvas');
  assert.equal(decodeResize(parsePreprocessSpec(clipConfig, { model_type: 'llava' })), undefined, 'pad to square resizes a canvas');
});
