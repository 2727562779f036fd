/**
 * The `ocr` tool: PaddleOCR PP-OCRv4 on the image (or a region of it). Lines come in reading
 * order with boxes normalised to the raw image.
 *
 * The model sees LLaVA-Plus' OCR shape, `{"texts": [...], "boxes": [...], "scores": [...]}`
 * (rounded; cut after `MAX_LINES_FOR_MODEL` lines); the client gets every line.
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

const MAX_LINES_FOR_MODEL = 150;

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
export function ocrResult(d: OcrData): ToolResult {
  const shown = d.lines.slice(0, MAX_LINES_FOR_MODEL);
  const forModel: Record<string, unknown> = {
    texts: shown.map((l) => l.text),
    boxes: shown.map((l) => l.box.map(round2)),
    scores: shown.map((l) => round2(l.score)),
  };
  if (d.lines.length > shown.length) forModel.more = `${d.lines.length - shown.length} more lines not shown`;
  if (!d.lines.length) forModel.note = 'no text found';
  return {
    summary: JSON.stringify(forModel),
    data: d,
    artefacts: [{ kind: 'boxes', boxes: d.lines.map((l) => ({ box: l.box, label: l.text, score: l.score })) }],
  };
}
