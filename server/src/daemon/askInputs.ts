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
export async function toAskRequest(p: AskParams, ctx: AccessContext): Promise<AskRequest> {
  const { maxNewTokens, maxPromptTokens } = ctx.limits;
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
export function checkAgainstModel(req: AskRequest, model: ModelInfo, maxTokensSent: boolean): void {
  if (!maxTokensSent) req.options.maxTokens = Math.min(req.options.maxTokens, model.contextLength);
  if (req.images.length > model.imagesPerPrompt) {
    throw invalidParams(
      `lens/ask: ${req.images.length} images sent but ${model.name} accepts at most ${model.imagesPerPrompt} per prompt; ` +
        `send at most ${model.imagesPerPrompt} (ask about the rest in a follow-up turn).`,
    );
  }
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
