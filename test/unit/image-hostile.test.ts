/**
 * Hostile images are refused fast and safely (issue 6 §3/§6): every refusal is a LensError with the
 * right code and a message that says what to do, comes within 1 s (a bound, not a benchmark), and
 * the whole run grows resident memory by less than RSS_BOUND_MB — so nothing was decoded that the
 * header or the SVG policy already ruled out. Times and memory are printed as test diagnostics.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { LensErrorCode, isLensError } from '../../common/errors';
import { decodeImage, DecodeOptions, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS } from '../../server/src/runtime/image';
import type { ImageInput } from '../../server/src/runtime/types';
import * as hx from '../fixtures/hostileImages';
import * as fx from '../fixtures/images';

const TIME_BOUND_MS = 1000;
const RSS_BOUND_MB = 200;
const opts: DecodeOptions = { maxPixels: DEFAULT_MAX_PIXELS };

interface Refusal {
  name: string;
  input: () => ImageInput;
  opts?: DecodeOptions;
  code: LensErrorCode;
  message: RegExp;
}

let dir = '';
const refusals: Refusal[] = [];
let baselineRss = 0;
let peakRss = 0;
const measured: string[] = [];

const SELF_CONTAINED = /: only self-contained SVGs are rendered; /;
/** What each `hx.externalRefSvgs` case must name in its refusal. */
const EXTERNAL_DETAIL: Record<string, RegExp> = {
  'image href file:///etc/hostname': /refers to an external resource \(<image href="file:\/\/\/etc\/hostname">\).*embed the resource as a data: URI/,
  'image xlink:href relative path': /external resource \(<image xlink:href="\.\.\/secrets\/id_rsa\.png">\)/,
  'use href to another file': /external resource \(<use href="sprites\.svg#icon">\)/,
  'feImage to a metadata URL': /external resource \(<feImage href="http:\/\/169\.254\.169\.254\/latest\/meta-data\/">\)/,
  'href hidden in character references': /external resource \(<image href="file:\/\/\/etc\/hostname">\)/,
  'CSS url() in a style attribute': /external resource \(url\(https:\/\/example\.com\/p\.svg#g\) in CSS\)/,
  'CSS url() hidden by CSS escapes': /external resource \(url\(file:\/\/\/etc\/hostname\) in CSS\)/,
  'CSS @import': /whose CSS uses @import: .*put the rules in the SVG's own <style>/,
  'xml-stylesheet processing instruction': /external resource \(<\?xml-stylesheet href="theme\.css">\)/,
  'XInclude of /etc/passwd': /external resource \(<xi:include href="file:\/\/\/etc\/passwd">\)/,
  'external entity': /declares an external entity \(<!ENTITY h SYSTEM "file:\/\/\/etc\/hostname">\).*remove the DOCTYPE/,
  'parameter entity': /declares a parameter entity \(<!ENTITY % p SYSTEM/,
  'external DTD': /refers to an external DTD \(file:\/\/\/etc\/hostname\)/,
  'billion laughs': /declares an entity that nests or contains markup \(<!ENTITY a1 "&a0;/,
  'script element': /with a <script> element: .*remove the script/,
  'external ref inside an embedded data: SVG': /external resource \(<image href="file:\/\/\/etc\/hostname">\) \(inside one of its data: URIs\)/,
};

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-hostile-'));
  const notes = path.join(dir, 'notes.png');
  await fs.writeFile(notes, hx.textFile());
  const big = path.join(dir, 'big.png');
  await fs.writeFile(big, await fx.quadrantsPng());
  await fs.truncate(big, 65 * 1024 * 1024); // sparse: 65 MiB that take no disk and must never be read

  const bomb = await hx.pngBomb();
  const svgBomb = await hx.svgEmbeddingPngBomb();
  const [truncPng, truncPngHeader, truncJpeg, busy] = [await hx.truncatedPng(), await hx.truncatedPngHeader(), await hx.truncatedJpeg(), await hx.busyPng()];
  const random = hx.randomBytes();
  const svgz = hx.svgzBomb(2 << 20);

  const add = (name: string, input: ImageInput, code: LensErrorCode, message: RegExp, o: DecodeOptions = opts) =>
    refusals.push({ name, input: () => input, opts: o, code, message });
  add('zero bytes', { bytes: hx.zeroBytes() }, LensErrorCode.ImageDecodeFailed, /^the image is empty \(0 bytes\): pass the image's contents$/);
  add('4096 random bytes', { bytes: random }, LensErrorCode.UnsupportedImage, /^the image is not in a recognised image format \(.*\): supported formats are PNG, JPEG, WebP/);
  add('text file named .png', { path: notes }, LensErrorCode.ImageDecodeFailed, /notes\.png should be a PNG \(file extension \.png\) but its content is not a valid image \(.*\): the file is corrupt$/);
  add('truncated PNG (IDAT cut)', { bytes: truncPng }, LensErrorCode.ImageDecodeFailed, /^the image \(a PNG\) could not be decoded: .+: the file is probably corrupt or truncated; re-save or re-export it$/);
  add('truncated PNG (IHDR cut)', { bytes: truncPngHeader }, LensErrorCode.ImageDecodeFailed, /^the image looks like a PNG but its header could not be read: .+: the file is corrupt or truncated/);
  add('truncated JPEG', { bytes: truncJpeg, mimeType: 'image/jpeg' }, LensErrorCode.ImageDecodeFailed, /^the image \(a JPEG\) could not be decoded: .*premature end.*: the file is probably corrupt or truncated/);
  add('30000×30000 PNG bomb', { bytes: bomb }, LensErrorCode.ImageTooLarge, /^image is 30000×30000 \(900\.0 MP\), over the 50 MP limit: downscale it or raise the limit \(VS Code setting llavaLens\.maxImageMegapixels, or serve --max-image-megapixels\)$/);
  add('SVG width/height 100000×100000', { bytes: hx.hugeSvgWidthHeight() }, LensErrorCode.ImageTooLarge, /^image is 100000×100000 \(10000\.0 MP\), over the 50 MP limit/);
  add('SVG viewBox 100000×100000', { bytes: hx.hugeSvgViewBox() }, LensErrorCode.ImageTooLarge, /^image is 100000×100000 \(10000\.0 MP\), over the 50 MP limit/);
  add('SVG 1e9×1e9 (int overflow)', { bytes: hx.hugeSvgOverflow() }, LensErrorCode.ImageTooLarge, /^image is 1000000000×1000000000 .*over the 50 MP limit/);
  add('SVG embedding the PNG bomb as data:', { bytes: svgBomb }, LensErrorCode.ImageTooLarge,
    /^the image is an SVG that embeds a PNG of 30000×30000 \(900\.0 MP\), over the 50 MP limit \(it applies to the images an SVG embeds, all together\): downscale the embedded images or raise/);
  add('svgz inflating to 2 MiB, maxBytes 1 MiB', { bytes: svgz }, LensErrorCode.ImageTooLarge,
    /^the image is gzip-compressed and inflates to more than 1 MiB, the limit on image data: send it uncompressed or as PNG, or raise the maxBytes decode option$/, { ...opts, maxBytes: 1 << 20 });
  add(`bytes over maxBytes (${busy.length} B, limit 1000 B)`, { bytes: busy }, LensErrorCode.ImageTooLarge,
    /^the image is 0\.\d+ MiB, over the 0\.000954 MiB limit on image data: send a smaller file \(downscale it, or re-encode it as JPEG or WebP\) or raise the maxBytes decode option$/, { ...opts, maxBytes: 1000 });
  add('65 MiB sparse file, default maxBytes', { path: big }, LensErrorCode.ImageTooLarge, /big\.png is 65 MiB, over the 64 MiB limit on image data: /);
  for (const [name, make] of Object.entries(hx.externalRefSvgs)) {
    add(`SVG: ${name}`, { bytes: make() }, LensErrorCode.UnsupportedImage, EXTERNAL_DETAIL[name]);
  }

  // Warm up sharp, libvips and librsvg so the first case does not pay for loading them.
  await decodeImage({ bytes: await fx.quadrantsPng() }, opts);
  await decodeImage({ bytes: fx.smallSvg() }, opts);
  baselineRss = peakRss = process.memoryUsage().rss;
});

after(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('every hostile input is refused with its LensError, each within 1 s', async (t) => {
  assert.equal(refusals.length, 14 + Object.keys(hx.externalRefSvgs).length);
  for (const c of refusals) {
    const t0 = performance.now();
    let error: unknown;
    try {
      await decodeImage(c.input(), c.opts);
    } catch (e) {
      error = e;
    }
    const ms = performance.now() - t0;
    const rss = process.memoryUsage().rss;
    peakRss = Math.max(peakRss, rss);
    measured.push(`${c.name}: ${ms.toFixed(1)} ms, rss +${((rss - baselineRss) / 2 ** 20).toFixed(1)} MiB`);
    t.diagnostic(measured[measured.length - 1]);
    assert.ok(isLensError(error), `${c.name}: expected a LensError, got ${String(error)}`);
    assert.equal(error.code, c.code, `${c.name}: code ${error.code} for: ${error.message}`);
    assert.match(error.message, c.message, c.name);
    if (c.name.startsWith('SVG: ')) assert.match(error.message, SELF_CONTAINED, c.name);
    assert.ok(ms < TIME_BOUND_MS, `${c.name}: ${ms.toFixed(0)} ms, over the ${TIME_BOUND_MS} ms bound`);
  }
});

test(`resident memory grew by less than ${RSS_BOUND_MB} MB over all the refusals`, (t) => {
  const grewMb = (peakRss - baselineRss) / 1e6;
  t.diagnostic(`rss baseline ${(baselineRss / 1e6).toFixed(0)} MB, peak after a case ${(peakRss / 1e6).toFixed(0)} MB, growth ${grewMb.toFixed(1)} MB`);
  assert.ok(peakRss > 0 && measured.length === refusals.length, 'the refusals ran');
  assert.ok(grewMb < RSS_BOUND_MB, `rss grew by ${grewMb.toFixed(0)} MB`);
});

test('the bomb generator is a real PNG: 30000×30000 in its header, a small one decodes to black', async () => {
  const bomb = await hx.pngBomb();
  assert.ok(bomb.length < 200_000, `bomb file is ${bomb.length} bytes`);
  const meta = await sharp(bomb, { limitInputPixels: false }).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', 30000, 30000, 1]);
  const small = await decodeImage({ bytes: await hx.pngBomb(70, 9) }, opts);
  assert.deepEqual([small.width, small.height, small.format], [70, 9, 'png']);
  assert.ok(small.data.every((v) => v === 0));
});

test('the truncated fixtures come from real images that decode whole', async () => {
  const png = await decodeImage({ bytes: await hx.busyPng() }, opts);
  assert.deepEqual([png.width, png.height], [256, 256]);
  const jpeg = await decodeImage({ bytes: await fx.patternJpeg() }, opts);
  assert.deepEqual([jpeg.width, jpeg.height], [128, 128]);
});

test('a real PNG named .jpg, or sent with a wrong mimeType, is decoded by its content', async () => {
  const png = await fx.quadrantsPng();
  const named = path.join(dir, 'photo.jpg');
  await fs.writeFile(named, png);
  for (const input of [{ path: named }, { bytes: png, mimeType: 'image/jpeg' }, { bytes: png, mimeType: 'image/svg+xml' }, { bytes: png, mimeType: 'text/plain' }]) {
    const img = await decodeImage(input, opts);
    assert.deepEqual([img.format, img.width, img.height], ['png', 32, 24]);
    assert.deepEqual([...img.data.subarray(0, 3)], [255, 0, 0]);
  }
  const noted = await decodeImage({ path: named }, opts);
  assert.match(noted.notes?.[0] ?? '', /file extension \.jpg says jpeg but the content is png; decoded as png/);
});

test('a self-contained SVG that uses what the policy allows still renders', async () => {
  const img = await decodeImage({ bytes: await hx.trickySafeSvg() }, opts);
  assert.deepEqual([img.format, img.width, img.height], ['svg', 40, 20]);
  const px = (x: number, y: number) => [...img.data.subarray((y * 40 + x) * 3, (y * 40 + x) * 3 + 3)];
  assert.deepEqual(px(5, 10), [255, 0, 0], 'the embedded data: PNG');
  assert.deepEqual(px(25, 10), [0, 255, 0], 'the <use>d bar inside the <a> link');
  assert.deepEqual(px(15, 10), [255, 255, 255], 'the url(#g) gradient');
  assert.deepEqual(px(35, 10), [0, 0, 255], 'the percent-encoded nested SVG and its url(%23g)');
  const diagram = await decodeImage({ bytes: Buffer.from(fx.diagramSvg()) }, opts); // marker-end="url(#head)"
  assert.deepEqual([diagram.width, diagram.height], [640, 400]);
});

test('embedded images share the pixel budget, and maxBytes is validated', async () => {
  const png = await fx.quadrantsPng(); // 32×24 = 768 px
  const two = Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">' +
      `<image href="data:image/png;base64,${png.toString('base64')}" width="2" height="2"/>` +
      `<image href="data:image/png;base64,${Buffer.concat([png, Buffer.from([0])]).toString('base64')}" x="2" width="2" height="2"/></svg>`,
  );
  const ok = await decodeImage({ bytes: two }, { maxPixels: 1536 });
  assert.deepEqual([ok.width, ok.height], [4, 4]);
  await assert.rejects(decodeImage({ bytes: two }, { maxPixels: 1535 }), (e: unknown) => {
    assert.ok(isLensError(e));
    assert.equal(e.code, LensErrorCode.ImageTooLarge);
    assert.match(e.message, /embeds a PNG of 32×24 \(0\.0 MP\) besides 0\.0 MP of other embedded images, over the 0\.00153 MP limit/);
    return true;
  });
  assert.equal(DEFAULT_MAX_BYTES, 64 * 1024 * 1024);
  await assert.rejects(decodeImage({ bytes: png }, { maxPixels: 1e6, maxBytes: 0 }), (e: unknown) => isLensError(e) && e.code === LensErrorCode.InvalidParams && /maxBytes/.test(e.message));
});
