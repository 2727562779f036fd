import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { LensErrorCode, isLensError } from '../../common/errors';
import { decodeImage, DecodedImage, DEFAULT_MAX_PIXELS, SUPPORTED_FORMATS } from '../../server/src/runtime/image';
import * as fx from '../fixtures/images';

const opts = { maxPixels: DEFAULT_MAX_PIXELS };

function px(img: DecodedImage, x: number, y: number): number[] {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function near(actual: number[], expected: number[], tol: number, what: string) {
  assert.ok(actual.every((v, i) => Math.abs(v - expected[i]) <= tol), `${what}: got ${actual}, expected ${expected} ±${tol}`);
}

/** Quadrant fixtures: red top-left, green top-right, blue bottom-left, white bottom-right. */
function assertQuadrants(img: DecodedImage, tol: number) {
  assert.equal(img.width, 32);
  assert.equal(img.height, 24);
  assert.equal(img.data.length, 32 * 24 * 3);
  near(px(img, 2, 2), [255, 0, 0], tol, 'top-left');
  near(px(img, 29, 2), [0, 255, 0], tol, 'top-right');
  near(px(img, 2, 21), [0, 0, 255], tol, 'bottom-left');
  near(px(img, 29, 21), [255, 255, 255], tol, 'bottom-right');
}

async function rejects(p: Promise<unknown>, code: LensErrorCode, pattern: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isLensError(e), `expected LensError, got ${String(e)}`);
    assert.equal(e.code, code, `code for: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('PNG, WebP, GIF, TIFF decode to exact RGB pixels', async () => {
  for (const [name, make] of [['png', fx.quadrantsPng], ['webp', fx.quadrantsWebp], ['gif', fx.quadrantsGif], ['tiff', fx.quadrantsTiff]] as const) {
    const img = await decodeImage({ bytes: await make() }, opts);
    assert.equal(img.format, name);
    assertQuadrants(img, 0);
    assert.equal(img.notes, undefined);
  }
});

test('animated GIF: the first frame', async () => {
  const img = await decodeImage({ bytes: await fx.animatedGif() }, opts);
  assert.deepEqual([img.width, img.height, img.format], [8, 6, 'gif']);
  assert.deepEqual(px(img, 4, 3), [255, 0, 0]);
});

test('AVIF decodes when this sharp build has it', { skip: !SUPPORTED_FORMATS.includes('avif') && 'no AVIF decoder in this sharp build' }, async () => {
  const img = await decodeImage({ bytes: await fx.quadrantsAvif() }, opts);
  assert.equal(img.format, 'avif');
  assertQuadrants(img, 12); // lossless AVIF still goes through YUV
});

test('JPEG with EXIF orientation 6 is rotated upright', async () => {
  const img = await decodeImage({ bytes: await fx.jpegOrientation6(), mimeType: 'image/jpeg' }, opts);
  assert.equal(img.format, 'jpeg');
  assert.deepEqual([img.width, img.height], [20, 40]);
  near(px(img, 15, 5), [255, 0, 0], 8, 'displayed top-right is the stored top-left');
  near(px(img, 5, 5), [0, 0, 255], 8, 'displayed top-left');
  near(px(img, 15, 35), [0, 0, 255], 8, 'displayed bottom-right');
});

test('SVG is rasterised at its own size', async () => {
  const img = await decodeImage({ bytes: fx.smallSvg() }, opts);
  assert.equal(img.format, 'svg');
  assert.deepEqual([img.width, img.height], [30, 20]);
  assert.deepEqual(px(img, 3, 10), [255, 0, 0]);
  assert.deepEqual(px(img, 25, 10), [255, 255, 255]);
});

test('the demo diagram renders at 640x400', async () => {
  const img = await decodeImage({ bytes: await fx.diagramPng() }, opts);
  assert.deepEqual([img.width, img.height, img.format], [640, 400, 'png']);
  assert.deepEqual(px(img, 5, 5), [255, 255, 255]);
  assert.deepEqual(px(img, 60, 100), [0xbf, 0xdb, 0xfe]); // inside the "Image" box
});

test('alpha is flattened onto white; 16-bit grey becomes 8-bit RGB', async () => {
  const a = await decodeImage({ bytes: await fx.alphaPng() }, opts);
  assert.deepEqual([a.width, a.height], [4, 2]);
  assert.deepEqual(px(a, 0, 0), [255, 255, 255]);
  assert.deepEqual(px(a, 3, 1), [0, 0, 255]);
  const g = await decodeImage({ bytes: await fx.grey16Png() }, opts);
  assert.equal(g.data.length, 8 * 6 * 3);
  assert.deepEqual(px(g, 4, 3), [128, 128, 128]);
});

test('path input, and a path whose extension disagrees with the content', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-image-'));
  try {
    const png = path.join(dir, 'q.png');
    await fs.writeFile(png, await fx.quadrantsPng());
    assertQuadrants(await decodeImage({ path: png }, opts), 0);

    const lying = path.join(dir, 'really-a-png.jpg');
    await fs.writeFile(lying, await fx.quadrantsPng());
    const img = await decodeImage({ path: lying }, opts);
    assert.equal(img.format, 'png');
    assert.match(img.notes?.[0] ?? '', /extension \.jpg.*content is png/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a mimeType that disagrees with the content is noted, not fatal', async () => {
  const img = await decodeImage({ bytes: await fx.quadrantsPng(), mimeType: 'image/jpeg' }, opts);
  assert.equal(img.format, 'png');
  assertQuadrants(img, 0);
  assert.match(img.notes?.[0] ?? '', /mimeType image\/jpeg says jpeg but the content is png/);
});

test('empty, truncated and corrupt inputs fail with ImageDecodeFailed', async () => {
  await rejects(decodeImage({ bytes: new Uint8Array(0) }, opts), LensErrorCode.ImageDecodeFailed, /empty/);

  const png = await fx.quadrantsPng();
  await rejects(decodeImage({ bytes: png.subarray(0, 40) }, opts), LensErrorCode.ImageDecodeFailed, /PNG.*corrupt/);

  const jpeg = await fx.patternJpeg();
  await rejects(decodeImage({ bytes: jpeg.subarray(0, jpeg.length >> 1) }, opts), LensErrorCode.ImageDecodeFailed, /a JPEG\) could not be decoded: .*premature end/);

  const garbled = Buffer.from(png);
  garbled.fill(0x5a, 33); // keep signature + IHDR, destroy the rest
  await rejects(decodeImage({ bytes: garbled }, opts), LensErrorCode.ImageDecodeFailed, /PNG/);

  // Not an image at all, but labelled as one: treat as a corrupt file of that type.
  await rejects(decodeImage({ bytes: Buffer.from('hello, not an image'), mimeType: 'image/png' }, opts), LensErrorCode.ImageDecodeFailed, /should be a PNG/);
});

test('unsupported formats fail with UnsupportedImage listing what works', async () => {
  await rejects(decodeImage({ bytes: fx.tinyBmp() }, opts), LensErrorCode.UnsupportedImage, /BMP.*PNG, JPEG, WebP/);
  await rejects(decodeImage({ bytes: Buffer.from('just some text') }, opts), LensErrorCode.UnsupportedImage, /not in a recognised image format.*PNG/);
  await rejects(decodeImage({ bytes: Buffer.from('%PDF-1.4\n%...') }, opts), LensErrorCode.UnsupportedImage, /PDF/);
});

test('missing path, folder, unreadable file fail with ImageNotFound', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-image-'));
  try {
    await rejects(decodeImage({ path: path.join(dir, 'nope.png') }, opts), LensErrorCode.ImageNotFound, /not found: .*nope\.png: check the path/);
    await rejects(decodeImage({ path: dir }, opts), LensErrorCode.ImageNotFound, /not a file/);
    const locked = path.join(dir, 'locked.png');
    await fs.writeFile(locked, await fx.quadrantsPng());
    await fs.chmod(locked, 0o000);
    let readable = true;
    try { await fs.readFile(locked); } catch { readable = false; } // root can read anything
    if (!readable) await rejects(decodeImage({ path: locked }, opts), LensErrorCode.ImageNotFound, /permission/);
    const empty = path.join(dir, 'empty.png');
    await fs.writeFile(empty, '');
    await rejects(decodeImage({ path: empty }, opts), LensErrorCode.ImageDecodeFailed, /empty/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a 30000x30000 PNG bomb is refused from its header, quickly', async () => {
  const bomb = fx.pngBomb(30000, 30000);
  assert.ok(bomb.length < 2e6, `bomb file is ${bomb.length} bytes`);
  const meta = await sharp(bomb, { limitInputPixels: false }).metadata();
  assert.deepEqual([meta.width, meta.height], [30000, 30000]); // a real, well-formed PNG header
  const t0 = performance.now();
  await rejects(
    decodeImage({ bytes: bomb }, opts),
    LensErrorCode.ImageTooLarge,
    /^image is 30000×30000 \(900\.0 MP\), over the 50 MP limit: downscale it or raise the limit \(VS Code setting llavaLens\.maxImageMegapixels, or serve --max-image-megapixels\)$/,
  );
  assert.ok(performance.now() - t0 < 1000, 'refused without decoding pixels');
});

test('the bomb generator makes valid PNGs (small one decodes to black)', async () => {
  const img = await decodeImage({ bytes: fx.pngBomb(20, 6) }, opts);
  assert.deepEqual([img.width, img.height, img.format], [20, 6, 'png']);
  assert.ok(img.data.every((v) => v === 0));
});

test('pixel limit applies to SVG canvases and follows opts.maxPixels', async () => {
  await rejects(decodeImage({ bytes: fx.hugeSvg() }, opts), LensErrorCode.ImageTooLarge, /100000×100000 \(10000\.0 MP\)/);
  const png = await fx.quadrantsPng(); // 32×24 = 768 px
  await rejects(decodeImage({ bytes: png }, { maxPixels: 700 }), LensErrorCode.ImageTooLarge, /32×24 \(0\.0 MP\), over the 0\.0007 MP limit/);
  assertQuadrants(await decodeImage({ bytes: png }, { maxPixels: 768 }), 0);
  await rejects(decodeImage({ bytes: png }, { maxPixels: 0 }), LensErrorCode.InvalidParams, /maxPixels/);
});
