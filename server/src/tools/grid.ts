/**
 * The `grid` tool: overlays a labelled grid on the image (set-of-marks prompting) so the model
 * can name regions ("the button in C2") and pass them to `zoom`.
 *
 * Labels follow spreadsheets: the letter is the column (A = leftmost), the number the row
 * (1 = top). Cells split the image evenly; the last row/column absorbs the rounding.
 */
import sharp from 'sharp';
import { intArg, parseWith } from './args';
import { rgbOf, toBase64 } from './pixels';
import type { NormBox, Tool } from './types';

export interface GridArgs {
  rows: number;
  cols: number;
}

export interface GridData {
  rows: number;
  cols: number;
  /** Cell label -> normalised box, row-major (A1, B1, …, A2, …). */
  cells: Record<string, NormBox>;
  /** Size of the overlaid PNG, pixels. */
  width: number;
  height: number;
}

/** Longest side of the overlaid PNG; larger images are downscaled first. */
const MAX_OVERLAY_SIDE = 2048;

export const cellLabel = (row: number, col: number): string => `${String.fromCharCode(65 + col)}${row + 1}`;

/** The normalised boxes of a rows×cols grid, labelled A1.. (letter = column, number = row). */
export function gridCells(rows: number, cols: number): Record<string, NormBox> {
  const cells: Record<string, NormBox> = {};
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) cells[cellLabel(r, c)] = [c / cols, r / rows, (c + 1) / cols, (r + 1) / rows];
  }
  return cells;
}

/** Parses a cell label such as "B3" against a rows×cols grid; undefined when it is not one of its cells. */
export function parseCell(label: string, rows: number, cols: number): NormBox | undefined {
  const m = /^\s*([A-Za-z])\s*(\d{1,2})\s*$/.exec(label);
  if (!m) return undefined;
  const c = m[1].toUpperCase().charCodeAt(0) - 65;
  const r = Number(m[2]) - 1;
  if (c < 0 || c >= cols || r < 0 || r >= rows) return undefined;
  return [c / cols, r / rows, (c + 1) / cols, (r + 1) / rows];
}

export const gridTool: Tool<GridArgs> = {
  name: 'grid',
  description:
    'Overlays a labelled grid on the image so regions can be named: columns are letters from the left (A, B, …), rows numbers from the top (1, 2, …), e.g. B2. Returns each cell\'s box [x0, y0, x1, y1] normalised to 0..1.',
  schema: {
    type: 'object',
    properties: {
      rows: { type: 'integer', minimum: 1, maximum: 10, default: 4 },
      cols: { type: 'integer', minimum: 1, maximum: 10, default: 4 },
    },
    additionalProperties: false,
  },
  timeoutMs: 10_000,
  parseArgs: (raw) => parseWith(raw, ['rows', 'cols'], (o) => ({ rows: intArg(o, 'rows', 1, 10, 4), cols: intArg(o, 'cols', 1, 10, 4) })),
  run: async (args, ctx) => {
    const rgb = await rgbOf(ctx.image);
    ctx.signal.throwIfAborted();
    const s = Math.min(1, MAX_OVERLAY_SIDE / Math.max(rgb.width, rgb.height));
    const width = Math.max(1, Math.round(rgb.width * s));
    const height = Math.max(1, Math.round(rgb.height * s));
    let base = sharp(Buffer.from(rgb.data.buffer, rgb.data.byteOffset, rgb.data.byteLength), { raw: { width: rgb.width, height: rgb.height, channels: 3 } });
    if (s < 1) base = sharp(await base.resize(width, height, { fit: 'fill' }).png().toBuffer());
    const png = await base.composite([{ input: Buffer.from(overlaySvg(width, height, args.rows, args.cols)), top: 0, left: 0 }]).png().toBuffer();
    ctx.signal.throwIfAborted();
    const cells = gridCells(args.rows, args.cols);
    let attached: number | undefined;
    if (ctx.encodeCrop) {
      attached = (await ctx.encodeCrop({ png: new Uint8Array(png), width, height, box: [0, 0, 1, 1] })).imageNumber;
    }
    const data: GridData = { rows: args.rows, cols: args.cols, cells, width, height };
    const forModel: Record<string, unknown> = {
      grid: `${args.cols} columns A-${cellLabel(0, args.cols - 1)[0]} left to right, ${args.rows} rows 1-${args.rows} top to bottom`,
      cells: Object.fromEntries(Object.entries(cells).map(([k, b]) => [k, b.map((v) => Math.round(v * 100) / 100)])),
    };
    if (attached !== undefined) forModel.image = `the image with the grid is attached as image ${attached}`;
    return {
      summary: JSON.stringify(forModel),
      data,
      artefacts: [
        { kind: 'image', mimeType: 'image/png', base64: toBase64(png), caption: `${args.cols}×${args.rows} grid` },
        { kind: 'boxes', boxes: Object.entries(cells).map(([label, box]) => ({ box, label })) },
      ],
    };
  },
};

/** The grid as SVG: dark-outlined light lines (visible on light and dark images) and a label tag per cell. */
function overlaySvg(width: number, height: number, rows: number, cols: number): string {
  const font = Math.max(10, Math.min(32, Math.round(Math.min(width / cols, height / rows) / 6)));
  const parts: string[] = [];
  const line = (x1: number, y1: number, x2: number, y2: number) =>
    `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="#000" stroke-opacity="0.6" stroke-width="4"/>` +
    `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="#ffeb3b" stroke-width="2"/>`;
  for (let c = 1; c < cols; c++) {
    const x = Math.round((c * width) / cols);
    parts.push(line(x, 0, x, height));
  }
  for (let r = 1; r < rows; r++) {
    const y = Math.round((r * height) / rows);
    parts.push(line(0, y, width, y));
  }
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const x = Math.round((c * width) / cols) + 3;
      const y = Math.round((r * height) / rows) + 3;
      const label = cellLabel(r, c);
      const w = Math.round(font * 0.65 * label.length + font * 0.5);
      parts.push(
        `<rect x="${x}" y="${y}" width="${w}" height="${Math.round(font * 1.3)}" rx="3" fill="#000" fill-opacity="0.75"/>` +
          `<text x="${x + w / 2}" y="${y + font}" font-family="DejaVu Sans, sans-serif" font-weight="bold" font-size="${font}" text-anchor="middle" fill="#ffeb3b">${label}</text>`,
      );
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
}
