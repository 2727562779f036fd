/**
 * Turns checked `lens/ask` params into the engine's `AskRequest`: resolves image paths, decodes
 * base64, applies defaults, and checks the limits that depend on the loaded model.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { LensError, LensErrorCode } from '../../../common/errors';
import { ASK_DEFAULTS, decodeBase64 } from '../../../common/protocol';
import type { AskParams, Timings } from '../../../common/protocol';
import type { AskRequest, GenerationOptions, ImageInput, ModelInfo } from '../runtime/types';
import { invalidParams } from './errors';

/** Resolves `p` against `baseDir` (the first workspace folder, else the daemon's cwd). */
export function resolveUserPath(p: string, baseDir: string | undefined): string {
  return path.isAbsolute(p) ? path.normalize(p) : path.resolve(baseDir ?? process.cwd(), p);
}

export async function resolveImage(img: AskParams['images'][number], i: number, baseDir: string | undefined): Promise<ImageInput> {
  if ('path' in img) {
    const abs = resolveUserPath(img.path, baseDir);
    const isFile = await fs.stat(abs).then((s) => s.isFile(), () => false);
    if (!isFile) {
      throw new LensError(
        LensErrorCode.ImageNotFound,
        `Image not found: ${abs} (images[${i}].path "${img.path}"). Send an absolute path, or one relative to ` +
          `${baseDir ? `the workspace folder ${baseDir}` : `the daemon's working folder ${process.cwd()}`}.`,
      );
    }
    return { path: abs };
  }
  const bytes = decodeBase64(img.bytes);
  if (!bytes) {
    throw invalidParams(`lens/ask: "images[${i}].bytes" is not valid base64; send the file's bytes base64-encoded (standard alphabet, no "data:" prefix).`);
  }
  if (bytes.length === 0) throw invalidParams(`lens/ask: "images[${i}].bytes" decodes to 0 bytes; send the image file's contents.`);
  return img.mimeType !== undefined ? { bytes, mimeType: img.mimeType } : { bytes };
}

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

/** Resolves images and applies defaults. Throws `LensError` (ImageNotFound, InvalidParams). */
export async function toAskRequest(p: AskParams, baseDir: string | undefined): Promise<AskRequest> {
  const images: ImageInput[] = [];
  for (let i = 0; i < p.images.length; i++) images.push(await resolveImage(p.images[i], i, baseDir));
  const req: AskRequest = { images, prompt: p.prompt, options: generationOptions(p) };
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
