/**
 * The multi-step tool loop (LLaVA-Plus, but looping and local):
 *
 *   ask (question + image) -> parse actions -> none: final answer
 *                                           -> run each tool -> observation turn -> ask again …
 *
 * until the model answers without actions, `maxSteps` turns have all called tools, or the signal
 * aborts. Every step is handed to `onStep` as it happens. Cancellation is checked before each
 * model turn and each tool, and a cancel during a tool aborts that tool's signal.
 */
import { LensError, LensErrorCode } from '../../../common/errors';
import type { ToolContext, CropImage, CropHandle } from '../tools/types';
import { parseActions, type ParsedReply } from './actions';
import { observationTurn, type Observation } from './prompts';
import type { AgentRequest, AgentResult, AgentStep, ModelReply, ModelTurn, TurnImage } from './types';

export const DEFAULT_MAX_STEPS = 4;

/**
 * Runs the loop. Resolves with the answer and every step; a cancellation resolves with
 * `stoppedBy: 'cancelled'` and the steps so far. Rejects when `model.ask` rejects (other than by
 * the abort) and, before anything runs, with `LensError(InvalidParams)` on bad options; tools
 * never make it reject.
 */
export async function runAgent(req: AgentRequest): Promise<AgentResult> {
  const { model, registry, question, image } = req;
  const o = { ...req.options, format: req.options?.format ?? 'llava-plus' };
  const maxSteps = o.maxSteps ?? DEFAULT_MAX_STEPS;
  if (!Number.isInteger(maxSteps) || maxSteps < 1) throw new LensError(LensErrorCode.InvalidParams, `maxSteps must be an integer of at least 1, got ${maxSteps}`);
  if (o.toolTimeoutMs !== undefined && !(o.toolTimeoutMs > 0)) throw new LensError(LensErrorCode.InvalidParams, `toolTimeoutMs must be a positive number of milliseconds, got ${o.toolTimeoutMs}`);
  if (!['llava-plus', 'chatml', 'json'].includes(o.format)) throw new LensError(LensErrorCode.InvalidParams, `format must be llava-plus, chatml or json, got ${String(o.format)}`);
  const repeatImage = o.repeatImage ?? o.format === 'llava-plus';
  const signal = req.signal ?? new AbortController().signal;
  const original: TurnImage = { bytes: image.bytes, mimeType: image.mimeType, origin: 'original' };

  const steps: AgentStep[] = [];
  const emit = (s: Omit<AgentStep, 'index'>): void => {
    const step: AgentStep = { index: steps.length, ...s };
    steps.push(step);
    try {
      req.onStep?.(step);
    } catch {
      // A failing listener must not break the loop.
    }
  };
  let imagesSent = 0;
  let lastText: string | undefined;
  const cancelled = (): AgentResult => ({
    answer: lastText === undefined ? '' : finalText(parseActions(lastText), lastText),
    steps,
    stoppedBy: 'cancelled',
    note: 'cancelled',
    finishReason: 'cancelled',
  });

  let turn: ModelTurn = {
    role: 'user',
    text: o.context ? `${question}\n\n${o.context}` : question,
    images: [original],
    ...(o.systemPrompt ? { system: o.systemPrompt } : {}),
  };

  for (let t = 0; ; t++) {
    // 1. Ask.
    if (signal.aborted) return cancelled();
    const started = Date.now();
    let reply: ModelReply;
    try {
      reply = await model.ask(turn, signal);
    } catch (e) {
      if (signal.aborted) return cancelled();
      throw e;
    }
    imagesSent += turn.images?.length ?? 0;
    const modelMs = Date.now() - started;
    if (signal.aborted || reply.finishReason === 'cancelled') return cancelled();
    lastText = reply.text;

    // 2. Parse. No actions and nothing to complain about: that is the answer.
    const parsed = parseActions(reply.text);
    const base = { turn: t, modelMs, modelText: reply.text, ...(parsed.thought ? { thought: parsed.thought } : {}) };
    if (!parsed.actions.length && !parsed.errors.length) {
      const answer = finalText(parsed, reply.text);
      emit({ ...base, ms: modelMs, answer, final: true });
      return { answer, steps, stoppedBy: 'answer', finishReason: reply.finishReason };
    }
    if (t + 1 > maxSteps) {
      // Out of steps: the tools of this turn are not run.
      const answer = finalText(parsed, reply.text);
      const note = `stopped after ${maxSteps} tool step${maxSteps > 1 ? 's' : ''} (the limit); the answer may be incomplete`;
      emit({ ...base, ms: modelMs, answer, final: true, error: note });
      return { answer, steps, stoppedBy: 'step-limit', note, finishReason: reply.finishReason };
    }
    if (parsed.errors.length) {
      emit({ ...base, ms: modelMs, error: `could not parse the answer: ${parsed.errors.join('; ')}` });
    }

    // 3. Run the tools, one after the other.
    const observations: Observation[] = [];
    const derived: TurnImage[] = [];
    for (const action of parsed.actions) {
      if (signal.aborted) return cancelled();
      const encodeCrop = async (crop: CropImage): Promise<CropHandle> => {
        derived.push({ bytes: crop.png, mimeType: 'image/png', origin: 'derived', box: crop.box });
        return { imageNumber: imagesSent + (repeatImage ? 1 : 0) + derived.length };
      };
      const ctx: ToolContext = { image, signal, encodeCrop, ...(o.encoderSize ? { encoderSize: o.encoderSize } : {}) };
      const run = await registry.runTool(action.tool, action.args, ctx, o.toolTimeoutMs);
      observations.push({ tool: action.tool, summary: run.summary });
      emit({
        ...base,
        tool: action.tool,
        args: action.args,
        observation: run.summary,
        ...(run.artefacts?.length ? { artefacts: run.artefacts } : {}),
        ...(run.error ? { error: run.error } : {}),
        ms: run.ms,
      });
      if (signal.aborted) return cancelled();
    }

    // 4. The observation turn.
    const obs = observationTurn(o.format, question, observations, parsed.errors);
    const images = [...(repeatImage ? [original] : []), ...derived];
    turn = { role: obs.role, text: obs.text, ...(images.length ? { images } : {}), ...(obs.role === 'tool' ? { toolNames: observations.map((x) => x.tool) } : {}) };
  }
}

/** The user-facing text of a reply: LLaVA-Plus "value", else the plain text, else the thought. */
function finalText(p: ParsedReply, raw: string): string {
  if (p.value) return p.value;
  if (p.form === 'text') return raw.trim();
  return p.thought ?? raw.trim();
}
