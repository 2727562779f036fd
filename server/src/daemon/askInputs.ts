/**
 * Turns checked `lens/ask` params into the engine's `AskRequest`: resolves images (access.ts),
 * applies defaults and the daemon's limits, and checks the limits that depend on the loaded model.
 */
import { LensError, LensErrorCode } from '../../../common/errors';
import { ASK_DEFAULTS } from '../../../common/protocol';
import type { AskParams, Timings } from '../../../common/protocol';
import type { AskRequest, GenerationOptions, ImageInput, ModelInfo } from '../runtime/types';
import { resolveImageParam, type AccessContext } from './access';
import { invalidParams } from './errors';

export function generationOptions(p: AskParams): GenerationOptions {
  const options: GenerationOptions = {
    maxTokens: p.maxTokens ?? ASK_DEFAULTS.maxTokens,
    temperature: p.temperature ?? ASK_DEFAULTS.temperature,
    topK: p.topK ?? ASK_DEFAULTS.topK,
    topP: p.topP ?? ASK_DEFAULTS.topP,
    repetitionPenalty: p.repetitionPenalty ?? ASK_DEFAULTS.repetitionPenalty,
    stop: p.stop ?? [...ASK_DEFAULTS.stop],
  };
  if (p.seed !== undefined) options.seed = p.seed;
  return options;
}

/**
 * Resolves images under the client's access rules and applies defaults and limits. Throws
 * `LensError` (ImageNotFound, PathNotAllowed, ImageTooLarge, InvalidParams, LimitExceeded).
 */
export async function toAskRequest(p: AskParams, ctx: AccessContext, model?: ModelInfo): Promise<AskRequest> {
  const { maxNewTokens, maxPromptTokens } = ctx.limits;
  // Cheap refusals first: no image is read and no text tokenized for an ask that cannot run.
  const maxImages = model?.imagesPerPrompt ?? MAX_IMAGES_BEFORE_LOAD;
  if (p.images.length > maxImages) throw tooManyImages(p.images.length, maxImages, model?.name ?? 'a model');
  if (model) checkPromptLength(p.prompt, model);
  if (p.maxTokens !== undefined && p.maxTokens > maxNewTokens) {
    throw new LensError(LensErrorCode.LimitExceeded, `lens/ask: "maxTokens" ${p.maxTokens} is over this daemon's limit of ${maxNewTokens} new tokens per ask: ask for fewer (continue in a follow-up turn).`);
  }
  const images: ImageInput[] = [];
  for (let i = 0; i < p.images.length; i++) images.push(await resolveImageParam(ctx, p.images[i], `images[${i}]`));
  const req: AskRequest = { images, prompt: p.prompt, options: generationOptions(p) };
  if (p.maxTokens === undefined) req.options.maxTokens = Math.min(req.options.maxTokens, maxNewTokens);
  if (maxPromptTokens > 0) req.maxPromptTokens = maxPromptTokens;
  if (p.conversationId !== undefined) req.conversationId = p.conversationId;
  if (p.tools || p.explain !== undefined) {
    req.agent = { tools: true, ...(p.maxSteps !== undefined ? { maxSteps: p.maxSteps } : {}), ...(p.explain !== undefined ? { explain: p.explain } : {}) };
  }
  return req;
}

/**
 * Checks what depends on the model that will answer; throws `LensError(InvalidParams)`. A
 * default `maxTokens` (not sent by the client) is lowered to the model's context length.
 */
/** Images an ask may carry while no model is loaded (the loaded model's own limit applies later). */
const MAX_IMAGES_BEFORE_LOAD = 16;
/**
 * Characters per context token above which a prompt cannot fit whatever the tokenizer does
 * (byte-level BPE tokens average 3-5 characters of text; 16 leaves room for long merges).
 * Checked before tokenizing, which for megabytes of text would hold the queue for seconds.
 */
const MAX_CHARS_PER_TOKEN = 16;

function tooManyImages(n: number, max: number, name: string) {
  return invalidParams(`lens/ask: ${n} images sent but ${name} accepts at most ${max} per prompt; send at most ${max} (ask about the rest in a follow-up turn).`);
}

function checkPromptLength(prompt: string, model: ModelInfo): void {
  const max = model.contextLength * MAX_CHARS_PER_TOKEN;
  if (prompt.length > max) {
    throw new LensError(
      LensErrorCode.PromptTooLong,
      `lens/ask: the prompt is ${prompt.length} characters, more than ${model.name}'s context of ${model.contextLength} tokens can hold (at most ${max} characters): shorten it.`,
    );
  }
}

export function checkAgainstModel(req: AskRequest, model: ModelInfo, maxTokensSent: boolean): void {
  if (!maxTokensSent) req.options.maxTokens = Math.min(req.options.maxTokens, model.contextLength);
  if (req.images.length > model.imagesPerPrompt) throw tooManyImages(req.images.length, model.imagesPerPrompt, model.name);
  checkPromptLength(req.prompt, model);
  if (req.options.maxTokens > model.contextLength) {
    throw invalidParams(
      `lens/ask: "maxTokens" must be at most ${model.name}'s context length ${model.contextLength}; got ${req.options.maxTokens}.`,
    );
  }
}

export const ZERO_TIMINGS: Timings = {
  decodeImageMs: 0,
  preprocessMs: 0,
  visionMs: 0,
  prefillMs: 0,
  firstTokenMs: 0,
  totalMs: 0,
  promptTokens: 0,
  imageTokens: 0,
  newTokens: 0,
  cachedTokens: 0,
  decodeTokensPerSec: 0,
};
