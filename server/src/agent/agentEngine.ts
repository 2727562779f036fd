/**
 * AgentEngine: an `Engine` that adds the tool loop and direct tool runs to a model engine.
 *
 *   ask without `agent`  -> the model engine, unchanged
 *   ask with `agent`     -> runAgent / explainWithOcr, each model turn an ask on one conversation
 *   runTool / listTools  -> the tool registry
 *
 * It lives where the model engine lives (the daemon's worker thread), so OCR's onnxruntime work
 * does not stall the daemon either.
 *
 * With an engine that has `nativeToolCalls` (an OpenAI-compatible server), the tools go to the
 * model as API tools instead of a system prompt; the engine writes the calls it gets back as
 * ChatML `<tool_call>` blocks, which the loop parses like any model's, in the ChatML format.
 *
 * Test hook: `LLAVA_LENS_TEST_MODEL_SCRIPT=<json file with an array of strings>` replaces the
 * model's output in tool-loop turns by those strings, in order (the tools still run for real),
 * so tests can make a model "choose" tools deterministically.
 */
import * as fs from 'node:fs';
import { LensError, LensErrorCode } from '../../../common/errors';
import { decodeImage, DEFAULT_MAX_PIXELS } from '../runtime/image';
import type { AgentStepInfo, AnswerDelta, AskRequest, AskResult, AskStage, Engine, ImageInput, LoadOptions, LoadProgress, ModelInfo, Timings, ToolInfo, ToolRunResult } from '../runtime/types';
import { defaultRegistry, type ToolRegistry } from '../tools';
import type { ToolImage } from '../tools/types';
import { explainWithOcr } from './skills';
import { runAgent } from './loop';
import { toolSystemPrompt } from './prompts';
import type { AgentImage, AgentResult, AgentStep, Model, ToolFormat } from './types';

export interface AgentEngineOptions {
  registry?: ToolRegistry;
  /** Scripted model replies for tool-loop turns (tests); default: from LLAVA_LENS_TEST_MODEL_SCRIPT. */
  script?: string[];
}

function readScript(): string[] | undefined {
  const file = process.env.LLAVA_LENS_TEST_MODEL_SCRIPT;
  if (!file) return undefined;
  const v = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`${file}: LLAVA_LENS_TEST_MODEL_SCRIPT must hold a JSON array of strings`);
  return v;
}

/** The tool format a model family was trained on, from the model's chat template. */
export function toolFormatFor(info: ModelInfo): ToolFormat {
  return info.toolCallFormat === 'none' ? 'json' : info.toolCallFormat;
}

export class AgentEngine implements Engine {
  private readonly registry: ToolRegistry;
  private readonly script: string[] | undefined;
  private maxPixels = DEFAULT_MAX_PIXELS;

  constructor(
    private readonly inner: Engine,
    opts: AgentEngineOptions = {},
  ) {
    this.registry = opts.registry ?? defaultRegistry();
    this.script = opts.script ?? readScript();
  }

  info(): ModelInfo | undefined {
    return this.inner.info();
  }

  load(path: string, options: LoadOptions, onProgress: (p: LoadProgress) => void, signal: AbortSignal): Promise<ModelInfo> {
    this.maxPixels = options.maxImagePixels ?? DEFAULT_MAX_PIXELS;
    return this.inner.load(path, options, onProgress, signal);
  }

  unload(): Promise<void> {
    return this.inner.unload();
  }

  forget(conversationId: string, keepSaved?: boolean): void | Promise<void> {
    return this.inner.forget(conversationId, keepSaved);
  }

  listTools(): ToolInfo[] {
    return this.registry.describe();
  }

  async runTool(name: string, args: unknown, input: ImageInput, signal: AbortSignal, timeoutMs?: number): Promise<ToolRunResult> {
    const image = await this.toolImage(input);
    const r = await this.registry.runTool(name, args ?? {}, { image, signal }, timeoutMs);
    return { summary: r.summary, data: r.data, ...(r.artefacts ? { artefacts: r.artefacts } : {}), ...(r.error ? { error: r.error } : {}), status: r.status, ms: r.ms };
  }

  async ask(req: AskRequest, onDelta: (d: AnswerDelta) => void, signal: AbortSignal, onStage?: (s: AskStage) => void, onStep?: (s: AgentStepInfo) => void): Promise<AskResult> {
    const agent = req.agent;
    if (!agent) return this.inner.ask(req, onDelta, signal, onStage);
    const info = this.inner.info();
    if (!info) throw new LensError(LensErrorCode.ModelNotLoaded, 'no model is loaded: call lens/loadModel (or pass --model) first.');
    if (req.images.length !== 1) {
      throw new LensError(LensErrorCode.InvalidParams, `the tool loop works on exactly one image (got ${req.images.length}): send one image, or ask without tools.`);
    }
    const started = performance.now();
    const input = req.images[0];
    const image: AgentImage = { ...(await this.toolImage(input)), mimeType: 'mimeType' in input && input.mimeType ? input.mimeType : 'image/png' };
    if (req.history !== undefined) throw new LensError(LensErrorCode.InvalidParams, 'the tool loop keeps its own conversation: continue with a conversationId instead of sending "history".');
    const native = this.inner.nativeToolCalls === true;
    const format = native ? 'chatml' : toolFormatFor(info);

    // Each loop turn is one ask on one conversation (history and KV cache kept by the engine).
    let conversationId = req.conversationId;
    const turns: AskResult[] = [];
    let script = this.script ? [...this.script] : undefined;
    const model: Model = {
      ask: async (turn, s) => {
        const n = turns.length;
        const r = script
          ? await this.scripted(script, n, onDelta)
          : await this.inner.ask(
              {
                ...(conversationId !== undefined ? { conversationId } : {}),
                images: (turn.images ?? []).map((i) => ({ bytes: i.bytes, mimeType: i.mimeType })),
                prompt: turn.text,
                role: turn.role,
                ...(turn.system !== undefined ? { system: turn.system } : {}),
                // the user's own turn is held to the prompt limit; tool observations are the daemon's
                ...(n === 0 && req.maxPromptTokens !== undefined ? { maxPromptTokens: req.maxPromptTokens } : {}),
                ...(req.owner !== undefined ? { owner: req.owner } : {}),
                ...(native ? { tools: this.registry.describe() } : {}),
                options: req.options,
              },
              (d) => onDelta({ ...d, turn: n }),
              s,
              onStage,
            );
        if (!script) conversationId = r.conversationId;
        turns.push(r);
        return { text: r.text, finishReason: r.finishReason };
      },
    };
    const options = {
      format,
      ...(agent.maxSteps !== undefined ? { maxSteps: agent.maxSteps } : {}),
      ...(agent.toolTimeoutMs !== undefined ? { toolTimeoutMs: agent.toolTimeoutMs } : {}),
      // Models trained on LLaVA-Plus know their tools; others get them listed in a system prompt.
      ...(format !== 'llava-plus' && !native ? { systemPrompt: toolSystemPrompt(this.registry, format) } : {}),
      encoderSize: info.imageSize,
    };
    const steps: AgentStepInfo[] = [];
    const onAgentStep = (s: AgentStep) => {
      const step = toStepInfo(s);
      steps.push(step);
      onStep?.(step);
    };
    const res: AgentResult = agent.explain
      ? await explainWithOcr(agent.explain, { model, registry: this.registry, image, question: req.prompt, options, onStep: onAgentStep, signal })
      : await runAgent({ model, registry: this.registry, question: req.prompt, image, options, onStep: onAgentStep, signal });
    script = undefined;
    const last = turns[turns.length - 1];
    return {
      text: res.answer,
      tokenIds: last?.tokenIds ?? [],
      conversationId: conversationId ?? last?.conversationId ?? '',
      finishReason: res.stoppedBy === 'cancelled' ? 'cancelled' : ((last?.finishReason ?? 'eos') as AskResult['finishReason']),
      timings: sumTimings(turns, performance.now() - started),
      device: info.device,
      model: info.name,
      steps,
    };
  }

  /** The test hook's reply for turn `n`, streamed word by word. */
  private async scripted(script: string[], n: number, onDelta: (d: AnswerDelta) => void): Promise<AskResult> {
    const text = script[n];
    if (text === undefined) throw new LensError(LensErrorCode.Internal, `LLAVA_LENS_TEST_MODEL_SCRIPT has ${script.length} replies; turn ${n + 1} needs another.`);
    for (const piece of text.match(/\S+\s*|\s+/g) ?? []) onDelta({ text: piece, tokenId: -1, turn: n });
    const info = this.inner.info()!;
    return { text, tokenIds: [], conversationId: '', finishReason: 'eos', timings: sumTimings([], 0), device: info.device, model: info.name };
  }

  /** Decodes an image once for the tools (size, pixels) with the same limits as the model. */
  private async toolImage(input: ImageInput): Promise<ToolImage> {
    const bytes = 'bytes' in input ? input.bytes : await fs.promises.readFile(input.path).catch((e: NodeJS.ErrnoException) => {
      throw new LensError(LensErrorCode.ImageNotFound, `image ${input.path} cannot be read (${e.code ?? e.message}): check the path.`);
    });
    const d = await decodeImage({ bytes }, { maxPixels: this.maxPixels });
    return { bytes, width: d.width, height: d.height, pixels: d.data };
  }
}

function toStepInfo(s: AgentStep): AgentStepInfo {
  const step: AgentStepInfo = { index: s.index, ms: s.ms };
  if (s.thought !== undefined) step.thought = s.thought;
  if (s.tool !== undefined) step.tool = s.tool;
  if (s.args !== undefined) step.args = s.args;
  if (s.observation !== undefined) step.observation = s.observation;
  if (s.artefacts?.length) step.artefacts = s.artefacts;
  if (s.error !== undefined) step.error = s.error;
  if (s.final) step.final = true;
  return step;
}

/** Timings of a tool-loop ask: stage times and tokens added up over its model turns. */
function sumTimings(turns: AskResult[], totalMs: number): Timings {
  const t: Timings = { decodeImageMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, firstTokenMs: 0, totalMs, promptTokens: 0, cachedTokens: 0, imageTokens: 0, newTokens: 0, decodeTokensPerSec: 0 };
  for (const r of turns) {
    t.decodeImageMs += r.timings.decodeImageMs;
    t.preprocessMs += r.timings.preprocessMs;
    t.visionMs += r.timings.visionMs;
    t.prefillMs += r.timings.prefillMs;
    t.imageTokens += r.timings.imageTokens;
    t.newTokens += r.timings.newTokens;
  }
  const last = turns[turns.length - 1];
  if (turns.length) {
    t.firstTokenMs = turns[0].timings.firstTokenMs;
    t.promptTokens = last.timings.promptTokens;
    t.cachedTokens = last.timings.cachedTokens;
    t.decodeTokensPerSec = last.timings.decodeTokensPerSec;
  }
  return t;
}
