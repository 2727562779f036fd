import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { defaultRegistry } from '../../server/src/tools';
import { gridCells, parseCell } from '../../server/src/tools/grid';
import type { ImageInfo } from '../../server/src/tools/imageInfo';
import type { CropImage, ToolContext, ToolImage } from '../../server/src/tools/types';
import type { GridData } from '../../server/src/tools/grid';
import type { ZoomData } from '../../server/src/tools/zoom';
import * as fx from '../fixtures/images';

const reg = defaultRegistry();

async function toolImage(bytes: Buffer): Promise<ToolImage> {
  const m = await sharp(bytes).metadata();
  return { bytes: new Uint8Array(bytes), width: m.autoOrient?.width ?? m.width, height: m.autoOrient?.height ?? m.height };
}

const ctxOf = (image: ToolImage, extra: Partial<ToolContext> = {}): ToolContext => ({ image, signal: new AbortController().signal, ...extra });

async function pixel(png: Uint8Array | Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * 3;
  return [data[i], data[i + 1], data[i + 2]];
}

/** 800×600 white with a red 48×36 block at (400, 300) and a blue 20×20 block at the bottom-right corner. */
const targetPng = () =>
  sharp({ create: { width: 800, height: 600, channels: 3, background: '#ffffff' } })
    .composite([
      { input: { create: { width: 48, height: 36, channels: 3, background: '#ff0000' } }, left: 400, top: 300 },
      { input: { create: { width: 20, height: 20, channels: 3, background: '#0000ff' } }, left: 780, top: 580 },
    ])
    .png()
    .toBuffer();

// --- image_info -------------------------------------------------------------------------------

test('image_info: format, size, colour space, no alpha, dominant colours of four quadrants', async () => {
  const r = await reg.runTool('image_info', {}, ctxOf(await toolImage(await fx.quadrantsPng(64, 48))));
  assert.equal(r.status, 'ok', r.error);
  const d = r.data as ImageInfo;
  assert.deepEqual([d.format, d.width, d.height, d.colourSpace, d.hasAlpha, d.exifOrientation], ['png', 64, 48, 'srgb', false, null]);
  const colours = Object.fromEntries(d.dominantColours.map((c) => [c.hex, c.fraction]));
  assert.deepEqual(Object.keys(colours).sort(), ['#0000ff', '#00ff00', '#ff0000', '#ffffff']);
  for (const f of Object.values(colours)) assert.ok(Math.abs(f - 0.25) < 0.02, `fraction ${f}`);
  const s = JSON.parse(r.summary);
  assert.deepEqual(s.size, [64, 48]);
  assert.equal(s.dominant_colours.length, 4);
  assert.match(s.dominant_colours[0], /^#[0-9a-f]{6} 2[45]%$/);
});

test('image_info: EXIF orientation, alpha, greyscale; the same answer every run', async () => {
  const jpeg = await reg.runTool('image_info', {}, ctxOf(await toolImage(await fx.jpegOrientation6())));
  const j = jpeg.data as ImageInfo;
  assert.deepEqual([j.format, j.exifOrientation, j.orientation, j.width, j.height, j.storedWidth, j.storedHeight], ['jpeg', 6, 'rotated 90° clockwise', 20, 40, 40, 20]);

  const alpha = (await reg.runTool('image_info', { colours: 2 }, ctxOf(await toolImage(await fx.alphaPng())))).data as ImageInfo;
  assert.equal(alpha.hasAlpha, true);
  assert.equal(alpha.channels, 4);
  // Transparent pixels are on white, as the model sees them.
  assert.deepEqual(alpha.dominantColours.map((c) => c.hex).sort(), ['#0000ff', '#ffffff']);

  const grey = (await reg.runTool('image_info', {}, ctxOf(await toolImage(await fx.grey16Png())))).data as ImageInfo;
  assert.equal(grey.colourSpace, 'grey16');
  assert.deepEqual(grey.dominantColours.map((c) => c.hex), ['#808080']);

  const img = await toolImage(await fx.patternJpeg());
  const a = await reg.runTool('image_info', { colours: 6 }, ctxOf(img));
  const b = await reg.runTool('image_info', { colours: 6 }, ctxOf({ ...img }));
  assert.equal(a.summary, b.summary);
  assert.equal((a.data as ImageInfo).dominantColours.length, 6);

  assert.match((await reg.runTool('image_info', { colours: 0 }, ctxOf(img))).error!, /colours must be an integer 1..10/);
});

// --- grid -------------------------------------------------------------------------------------

test('grid: cell map (letter = column, number = row) and a label parser', () => {
  const cells = gridCells(3, 4);
  assert.deepEqual(Object.keys(cells), ['A1', 'B1', 'C1', 'D1', 'A2', 'B2', 'C2', 'D2', 'A3', 'B3', 'C3', 'D3']);
  assert.deepEqual(cells.B2, [0.25, 1 / 3, 0.5, 2 / 3]);
  assert.deepEqual(parseCell(' c3 ', 3, 4), [0.5, 2 / 3, 0.75, 1]);
  assert.equal(parseCell('E1', 3, 4), undefined);
  assert.equal(parseCell('A4', 3, 4), undefined);
});

test('grid: the overlaid PNG keeps the size, draws lines and labels, and leaves cell centres alone', async () => {
  const bytes = await fx.solidPng(400, 300, [40, 120, 200]);
  const r = await reg.runTool('grid', { rows: 3, cols: 4 }, ctxOf(await toolImage(bytes)));
  assert.equal(r.status, 'ok', r.error);
  const d = r.data as GridData;
  assert.deepEqual([d.rows, d.cols, d.width, d.height, Object.keys(d.cells).length], [3, 4, 400, 300, 12]);
  const art = r.artefacts!.find((a) => a.kind === 'image');
  assert.ok(art && art.kind === 'image' && art.mimeType === 'image/png');
  const png = Buffer.from(art.base64, 'base64');
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.width, meta.height], [400, 300]);
  assert.deepEqual(await pixel(png, 150, 170), [40, 120, 200], 'cell centre untouched');
  const line = await pixel(png, 100, 50); // on the first vertical line (x = 100)
  assert.ok(line[0] > 200 && line[1] > 200 && line[2] < 100, `grid line is yellow: ${line}`);
  const tag = await pixel(png, 104, 104); // inside B2's label tag (dark background)
  assert.ok(tag.every((v) => v < 120), `label tag is dark: ${tag}`);
  const s = JSON.parse(r.summary);
  assert.deepEqual(s.cells.B2, [0.25, 0.33, 0.5, 0.67]);
  const boxes = r.artefacts!.find((a) => a.kind === 'boxes');
  assert.ok(boxes && boxes.kind === 'boxes' && boxes.boxes.length === 12);
});

test('grid: inside the loop the overlay is handed over as a new image', async () => {
  const got: CropImage[] = [];
  const r = await reg.runTool('grid', {}, ctxOf(await toolImage(await fx.solidPng(64, 64, [0, 0, 0])), { encodeCrop: async (c) => (got.push(c), { imageNumber: 2 }) }));
  assert.equal(got.length, 1);
  assert.deepEqual(got[0].box, [0, 0, 1, 1]);
  assert.match(JSON.parse(r.summary).image, /image 2/);
});

// --- zoom -------------------------------------------------------------------------------------

test('zoom: crops the normalised box and upscales it to the encoder size', async () => {
  const img = await toolImage(await targetPng());
  const r = await reg.runTool('zoom', { box: [0.5, 0.5, 0.56, 0.56] }, ctxOf(img));
  assert.equal(r.status, 'ok', r.error);
  const d = r.data as ZoomData;
  assert.deepEqual(d.pixels, [400, 300, 448, 336]);
  assert.deepEqual([d.width, d.height], [336, 252]);
  assert.equal(d.scale, 7);
  const art = r.artefacts!.find((a) => a.kind === 'image');
  assert.ok(art && art.kind === 'image');
  const png = Buffer.from(art.base64, 'base64');
  const m = await sharp(png).metadata();
  assert.deepEqual([m.width, m.height], [336, 252]);
  assert.deepEqual(await pixel(png, 168, 126), [255, 0, 0]);
  assert.deepEqual(JSON.parse(r.summary), { box: [0.5, 0.5, 0.56, 0.56], crop_size: [336, 252], zoom: 7 });
});

test('zoom: tiny and edge boxes grow to the minimum size inside the image; encoderSize is honoured', async () => {
  const img = await toolImage(await targetPng());
  const tiny = (await reg.runTool('zoom', { box: [0.5, 0.5, 0.5001, 0.5001] }, ctxOf(img))).data as ZoomData;
  assert.equal(tiny.pixels[2] - tiny.pixels[0], 32);
  assert.equal(tiny.pixels[3] - tiny.pixels[1], 32);
  const corner = await reg.runTool('zoom', { box: [0.99, 0.99, 1, 1] }, ctxOf(img, { encoderSize: 384 }));
  const c = corner.data as ZoomData;
  assert.deepEqual(c.pixels, [768, 568, 800, 600]);
  assert.deepEqual([c.width, c.height], [384, 384]);
  const art = corner.artefacts!.find((a) => a.kind === 'image');
  assert.ok(art && art.kind === 'image');
  assert.deepEqual(await pixel(Buffer.from(art.base64, 'base64'), 300, 300), [0, 0, 255]);
});

test('zoom: grid cells, box aliases, argument errors', async () => {
  const img = await toolImage(await targetPng());
  const cell = (await reg.runTool('zoom', { cell: 'C3', rows: 4, cols: 4 }, ctxOf(img))).data as ZoomData;
  assert.deepEqual(cell.pixels, [400, 300, 600, 450]);
  const alias = (await reg.runTool('zoom', { bbox: [0, 0, 0.5, 0.5] }, ctxOf(img))).data as ZoomData;
  assert.deepEqual(alias.pixels, [0, 0, 400, 300]);
  assert.match((await reg.runTool('zoom', {}, ctxOf(img))).error!, /box is required/);
  assert.match((await reg.runTool('zoom', { box: [100, 100, 200, 200] }, ctxOf(img))).error!, /normalised to 0..1/);
  assert.match((await reg.runTool('zoom', { cell: 'Z9' }, ctxOf(img))).error!, /not a cell of a 4×4 grid/);
});

test('zoom: inside the loop the crop is handed over and the observation names its image number', async () => {
  const img = await toolImage(await targetPng());
  const got: CropImage[] = [];
  const r = await reg.runTool('zoom', { box: [0.5, 0.5, 0.56, 0.56] }, ctxOf(img, { encodeCrop: async (c) => (got.push(c), { imageNumber: 3 }) }));
  assert.equal(got.length, 1);
  assert.deepEqual([got[0].width, got[0].height], [336, 252]);
  assert.deepEqual((await sharp(got[0].png).metadata()).format, 'png');
  assert.equal((r.data as ZoomData).imageNumber, 3);
  assert.equal(JSON.parse(r.summary).image, 'the enlarged region is attached as image 3');
});

test('tools report an undecodable image as an error observation', async () => {
  const r = await reg.runTool('zoom', { box: [0, 0, 1, 1] }, ctxOf({ bytes: new Uint8Array([1, 2, 3]), width: 10, height: 10 }));
  assert.equal(r.status, 'error');
  assert.match(r.error!, /zoom failed: .*not in a recognised image format/);
});
