/**
 * The `zoom` tool: crops a region of the raw image and resizes it so its longer side equals the
 * vision encoder's input size (`ctx.encoderSize`), so the model sees the detail at full encoder
 * resolution instead of the whole image squeezed into it.
 *
 * Inside the agent loop the crop goes to `ctx.encodeCrop`, which attaches it to the next model
 * turn as an extra image; the observation says which image number it is. The crop is also
 * returned as an image artefact for display.
 */
import sharp from 'sharp';
import { ArgError, boxArg, intArg, parseWith } from './args';
import { parseCell } from './grid';
import { crop, normToPx, pxToNorm, rgbOf, toBase64, type PxRect } from './pixels';
import { round2 } from './summary';
import type { NormBox, Tool } from './types';

export interface ZoomArgs {
  box: NormBox;
}

export interface ZoomData {
  /** The region actually cropped (after clamping and the minimum size), normalised. */
  box: NormBox;
  /** The same region in raw image pixels [x0, y0, x1, y1], x1/y1 exclusive. */
  pixels: [number, number, number, number];
  /** Size of the returned crop, pixels. */
  width: number;
  height: number;
  /** Resize factor applied to the crop (> 1 = upscaled). */
  scale: number;
  /** Image number of the crop in the conversation when the agent loop attached it. */
  imageNumber?: number;
}

export const DEFAULT_ENCODER_SIZE = 336;
/** Smallest crop side, raw pixels (a smaller region is grown around its centre). */
export const MIN_CROP_PX = 32;

export const zoomTool: Tool<ZoomArgs> = {
  name: 'zoom',
  description:
    'Looks closer at a region: crops the box [x0, y0, x1, y1] (normalised to 0..1) from the full-resolution image and shows it to you enlarged as a new image. ' +
    'A grid cell label such as "B2" (with the grid\'s rows and cols) works too.',
  schema: {
    type: 'object',
    properties: {
      box: { type: 'array', items: { type: 'number', minimum: 0, maximum: 1 }, minItems: 4, maxItems: 4, description: 'Region [x0, y0, x1, y1], normalised to 0..1.' },
      cell: { type: 'string', description: 'Instead of box: a cell of the grid tool, e.g. "B2".' },
      rows: { type: 'integer', minimum: 1, maximum: 10, default: 4, description: 'With cell: the grid\'s rows.' },
      cols: { type: 'integer', minimum: 1, maximum: 10, default: 4, description: 'With cell: the grid\'s columns.' },
    },
    additionalProperties: false,
  },
  timeoutMs: 10_000,
  parseArgs: (raw) =>
    parseWith(raw, ['box', 'bbox', 'region', 'cell', 'rows', 'cols'], (o) => {
      if (typeof o.cell === 'string') {
        const rows = intArg(o, 'rows', 1, 10, 4);
        const cols = intArg(o, 'cols', 1, 10, 4);
        const box = parseCell(o.cell, rows, cols);
        if (!box) throw new ArgError(`cell ${JSON.stringify(o.cell)} is not a cell of a ${cols}×${rows} grid (A1..${String.fromCharCode(64 + cols)}${rows})`);
        return { box };
      }
      const key = ['box', 'bbox', 'region'].find((k) => o[k] !== undefined);
      if (!key) throw new ArgError('box is required: [x0, y0, x1, y1] normalised to 0..1');
      return { box: boxArg(o[key], key) };
    }),
  run: async (args, ctx) => {
    const rgb = await rgbOf(ctx.image);
    ctx.signal.throwIfAborted();
    const r = growToMinimum(normToPx(args.box, rgb.width, rgb.height), rgb.width, rgb.height);
    const part = crop(rgb, r);
    const target = ctx.encoderSize ?? DEFAULT_ENCODER_SIZE;
    const scale = target / Math.max(part.width, part.height);
    const width = Math.max(1, Math.round(part.width * scale));
    const height = Math.max(1, Math.round(part.height * scale));
    const png = await sharp(Buffer.from(part.data.buffer, part.data.byteOffset, part.data.byteLength), { raw: { width: part.width, height: part.height, channels: 3 } })
      .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
      .png()
      .toBuffer();
    ctx.signal.throwIfAborted();
    const box = pxToNorm(r, rgb.width, rgb.height);
    const data: ZoomData = { box, pixels: [r.x0, r.y0, r.x1, r.y1], width, height, scale };
    if (ctx.encodeCrop) data.imageNumber = (await ctx.encodeCrop({ png: new Uint8Array(png), width, height, box })).imageNumber;
    const forModel: Record<string, unknown> = { box: box.map(round2), crop_size: [width, height], zoom: round2(scale) };
    if (data.imageNumber !== undefined) forModel.image = `the enlarged region is attached as image ${data.imageNumber}`;
    return {
      summary: JSON.stringify(forModel),
      data,
      artefacts: [
        { kind: 'image', mimeType: 'image/png', base64: toBase64(png), caption: `zoom on [${box.map((v) => v.toFixed(2)).join(', ')}] ×${scale.toFixed(1)}` },
        { kind: 'boxes', boxes: [{ box, label: 'zoom' }] },
      ],
    };
  },
};

/** Grows `r` around its centre to at least `MIN_CROP_PX` per side (or the whole image side), staying inside the image. */
export function growToMinimum(r: PxRect, width: number, height: number): PxRect {
  const grow = (a: number, b: number, max: number): [number, number] => {
    const min = Math.min(MIN_CROP_PX, max);
    if (b - a >= min) return [a, b];
    let lo = Math.floor((a + b) / 2 - min / 2);
    lo = Math.min(Math.max(lo, 0), max - min);
    return [lo, lo + min];
  };
  const [x0, x1] = grow(r.x0, r.x1, width);
  const [y0, y1] = grow(r.y0, r.y1, height);
  return { x0, y0, x1, y1 };
}
