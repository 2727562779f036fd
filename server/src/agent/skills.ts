/**
 * Palette skills that do not wait for the model to choose a tool:
 *  - "Extract Text": `extractText` runs OCR directly (no model).
 *  - "Explain Screenshot" / "Explain Diagram": `explainWithOcr` runs OCR first, gives its lines to
 *    the model with the question as the first turn, then runs the normal loop (the model may
 *    still zoom or call other tools).
 */
import { linesToText, ocrImage, type OcrData } from '../tools/ocr';
import type { NormBox, ToolImage } from '../tools/types';
import { round2 } from '../tools/summary';
import { runAgent } from './loop';
import type { AgentRequest, AgentResult, AgentStep, ToolFormat } from './types';

export interface ExtractedText extends OcrData {
  /** The lines as plain text: one row a line, lines of the same row separated by a tab. */
  text: string;
}

/** OCR of the image (or a region), as lines and copyable text. Rejects on abort and model errors. */
export async function extractText(image: ToolImage, opts: { signal?: AbortSignal; region?: NormBox } = {}): Promise<ExtractedText> {
  const d = await ocrImage({ image, signal: opts.signal ?? new AbortController().signal }, opts.region);
  return { ...d, text: linesToText(d.lines) };
}


export type ExplainKind = 'screenshot' | 'diagram';

const DEFAULT_QUESTION: Record<ExplainKind, string> = {
  screenshot:
    'Explain this screenshot: which application or page it shows, its main areas and controls, and any state, messages or errors worth noticing.',
  diagram: 'Explain this diagram: its parts, how they are connected (follow the arrows and lines), and what the labels mean.',
};

const HINT: Record<ExplainKind, string> = {
  screenshot: 'The image is a screenshot of a user interface. The text on it, read by OCR, is below; quote labels and messages exactly as read.',
  diagram: 'The image is a diagram. The labels on it, read by OCR, are below with their positions; use the positions to tell what is connected to what, and quote labels exactly.',
};

/** OCR lines given to the model stop at about this many characters (a dense screenshot must not fill a 4k context). */
const MAX_CONTEXT_CHARS = 4000;

/** The OCR lines as the first turn's context, in the family's words. */
export function ocrContext(kind: ExplainKind, format: ToolFormat, d: OcrData | { error: string }): string {
  if ('error' in d) return `${HINT[kind].split('.')[0]}. (OCR failed: ${d.error})`;
  let n = 0;
  for (let used = 0; n < d.lines.length; n++) {
    used += JSON.stringify(d.lines[n].text).length + 28; // the text and its rounded box
    if (used > MAX_CONTEXT_CHARS) break;
  }
  const shown = d.lines.slice(0, n);
  const more = d.lines.length > shown.length ? `\n(${d.lines.length - shown.length} more lines not shown)` : '';
  if (format === 'llava-plus') {
    const json = JSON.stringify({ texts: shown.map((l) => l.text), boxes: shown.map((l) => l.box.map(round2)) });
    return `${HINT[kind]}\nocr model outputs: ${json}${more}`;
  }
  if (!shown.length) return `${HINT[kind]}\n(no text found)`;
  const list = shown.map((l) => `${JSON.stringify(l.text)} [${l.box.map((v) => round2(v)).join(', ')}]`).join('\n');
  return `${HINT[kind]}\nText [x0, y0, x1, y1] (normalised 0..1, reading order):\n${list}${more}`;
}

/**
 * "Explain Screenshot" / "Explain Diagram": OCR as step 0 (a tool step for `ocr`), then the loop
 * with the OCR lines in the first turn. `question` defaults to a prompt suited to the kind.
 * Same resolution and rejection rules as `runAgent`.
 */
export async function explainWithOcr(kind: ExplainKind, req: Omit<AgentRequest, 'question'> & { question?: string }): Promise<AgentResult> {
  const format = req.options?.format ?? 'llava-plus';
  const signal = req.signal ?? new AbortController().signal;
  const steps: AgentStep[] = [];
  const emit = (s: AgentStep) => {
    steps.push(s);
    try {
      req.onStep?.(s);
    } catch {
      // A failing listener must not break the skill.
    }
  };

  const run = await req.registry.runTool('ocr', {}, { image: req.image, signal }, req.options?.toolTimeoutMs);
  emit({ index: 0, turn: 0, tool: 'ocr', args: {}, observation: run.summary, ...(run.artefacts ? { artefacts: run.artefacts } : {}), ...(run.error ? { error: run.error } : {}), ms: run.ms, modelMs: 0, modelText: '' });
  if (signal.aborted) return { answer: '', steps, stoppedBy: 'cancelled', note: 'cancelled', finishReason: 'cancelled' };

  const d = run.error ? { error: run.error } : (run.data as OcrData);
  const question = req.question?.trim() || DEFAULT_QUESTION[kind];
  const result = await runAgent({
    ...req,
    question,
    options: { ...req.options, context: ocrContext(kind, format, d) },
    signal,
    onStep: (s) => emit({ ...s, index: s.index + 1 }),
  });
  return { ...result, steps };
}
