/**
 * The `ocr` tool: PaddleOCR PP-OCRv4 on the image (or a region of it). Lines come in reading
 * order with boxes normalised to the raw image.
 *
 * The model sees LLaVA-Plus' OCR shape, `{"texts": [...], "boxes": [...], "scores": [...]}`
 * (rounded; cut at `MAX_SUMMARY_CHARS`); the client gets every line.
 */
import { boxArg, parseWith } from '../args';
import { crop, normToPx, rgbOf } from '../pixels';
import { round2 } from '../summary';
import type { NormBox, Tool, ToolContext, ToolResult } from '../types';
import { runOcr, type OcrLine } from './ocr';

export { runOcr, DEFAULT_OCR, type OcrLine, type OcrOptions, type OcrResult } from './ocr';
export { loadOcrModels, disposeOcrModels } from './models';

export interface OcrArgs {
  /** Read only this part of the image (normalised box); boxes are still relative to the whole image. */
  region?: NormBox;
}

/** What `lens/runTool` returns for `ocr` (the `data` field), and `llava-lens ocr --json` prints. */
export interface OcrData {
  lines: OcrLine[];
  /** Wall time of detection + recognition, ms. */
  ms: number;
}

/**
 * The model sees lines until their JSON would pass this many characters (about 1,000–1,500
 * tokens): a dense screenshot must not fill a 4k context. The client always gets every line.
 */
const MAX_SUMMARY_CHARS = 4000;

export const ocrTool: Tool<OcrArgs> = {
  name: 'ocr',
  description:
    'Reads the text in the image (UI labels, code, tables, diagram labels) exactly. Returns the lines in reading order with boxes [x0, y0, x1, y1] normalised to 0..1 and confidences.',
  schema: {
    type: 'object',
    properties: {
      region: {
        type: 'array',
        items: { type: 'number', minimum: 0, maximum: 1 },
        minItems: 4,
        maxItems: 4,
        description: 'Optional: only read inside this box [x0, y0, x1, y1], normalised to 0..1. Omit to read the whole image.',
      },
    },
    additionalProperties: false,
  },
  timeoutMs: 60_000,
  parseArgs: (raw) => parseWith(raw, ['region'], (o) => (o.region === undefined || o.region === null ? {} : { region: boxArg(o.region, 'region') })),
  run: async (args, ctx) => ocrResult(await ocrImage(ctx, args.region)),
};

/** OCR of `ctx.image` (optionally one region), boxes normalised to the whole image. Rejects on abort and model errors. */
export async function ocrImage(ctx: Pick<ToolContext, 'image' | 'signal'>, region?: NormBox): Promise<OcrData> {
  const started = Date.now();
  const rgb = await rgbOf(ctx.image);
  ctx.signal.throwIfAborted();
  if (!region) {
    const r = await runOcr(rgb, {}, ctx.signal);
    return { lines: r.lines, ms: Date.now() - started };
  }
  const px = normToPx(region, rgb.width, rgb.height);
  const part = crop(rgb, px);
  const r = await runOcr(part, {}, ctx.signal);
  const lines = r.lines.map((l): OcrLine => ({
    ...l,
    box: [
      (px.x0 + l.box[0] * part.width) / rgb.width,
      (px.y0 + l.box[1] * part.height) / rgb.height,
      (px.x0 + l.box[2] * part.width) / rgb.width,
      (px.y0 + l.box[3] * part.height) / rgb.height,
    ],
  }));
  return { lines, ms: Date.now() - started };
}

/** The tool result for OCR output. */
/** Rows (lines overlapping vertically by half their height) on separate lines; cells of a row tab-separated. */
export function linesToText(lines: OcrLine[]): string {
  let out = '';
  lines.forEach((l, i) => {
    if (i > 0) {
      const p = lines[i - 1];
      const overlap = Math.min(p.box[3], l.box[3]) - Math.max(p.box[1], l.box[1]);
      const h = Math.min(p.box[3] - p.box[1], l.box[3] - l.box[1]);
      out += overlap >= 0.5 * h && l.box[0] >= p.box[2] ? '\t' : '\n';
    }
    out += l.text;
  });
  return out;
}

/** The tool's result: a compact summary for the model, every line plus the copyable `text` for the client, and the boxes to draw. */
export function ocrResult(d: OcrData): ToolResult {
  let n = 0;
  for (let used = 0; n < d.lines.length; n++) {
    used += JSON.stringify(d.lines[n].text).length + 32; // text, a rounded box and a score
    if (used > MAX_SUMMARY_CHARS) break;
  }
  const shown = d.lines.slice(0, n);
  const forModel: Record<string, unknown> = {
    texts: shown.map((l) => l.text),
    boxes: shown.map((l) => l.box.map(round2)),
    scores: shown.map((l) => round2(l.score)),
  };
  if (d.lines.length > shown.length) forModel.more = `${d.lines.length - shown.length} more lines not shown`;
  if (!d.lines.length) forModel.note = 'no text found';
  return {
    summary: JSON.stringify(forModel),
    data: { ...d, text: linesToText(d.lines) },
    artefacts: [{ kind: 'boxes', boxes: d.lines.map((l) => ({ box: l.box, label: l.text, score: l.score })) }],
  };
}
