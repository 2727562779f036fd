/**
 * A deterministic `Engine` for protocol and CLI tests: no onnxruntime, no real model.
 *
 * - `load` checks that the folder exists and has `config.json` (else `InvalidModelFolder` naming
 *   the file), reports progress over a few ticks, and honours its signal between them.
 * - `ask` answers with words from a fixed list chosen by a hash of the conversation so far
 *   (history + prompt), one token per `setImmediate` tick. It honours `maxTokens`, stop strings
 *   (never streaming text past a stop), and its signal (also during a simulated vision phase).
 *   Deltas concatenate to exactly the result's `text`.
 * - Hooks let a test hold the engine at a given point, waiting on an event instead of a sleep.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { LensError, LensErrorCode } from '../../common/errors';
import type { AnswerDelta, AskRequest, AskResult, Engine, LoadOptions, LoadProgress, ModelInfo, Timings } from '../../server/src/runtime/types';

export const FAKE_WORDS = [
  'a', 'diagram', 'shows', 'three', 'boxes', 'connected', 'by', 'arrows', 'with', 'labels',
  'the', 'image', 'contains', 'red', 'blue', 'green', 'shapes', 'on', 'white', 'background',
  'text', 'reads', 'hello', 'world', 'chart', 'bars', 'rising', 'left', 'to', 'right', 'cat', 'dog',
];
/** Token id of `FAKE_WORDS[i]` is `TOKEN_BASE + i`. */
export const TOKEN_BASE = 100;

export interface FakeEngineHooks {
  /** Awaited before token `index` (0-based) of every ask is produced. */
  beforeToken?: (index: number, signal: AbortSignal) => Promise<void> | void;
  /** Awaited at the start of every ask (before the vision phase). */
  beforeAsk?: (req: AskRequest, signal: AbortSignal) => Promise<void> | void;
  /** Awaited before each load progress step (0, 1, 2). */
  beforeLoadStep?: (step: number, signal: AbortSignal) => Promise<void> | void;
}

export interface FakeEngineOptions {
  imagesPerPrompt?: number;
  contextLength?: number;
  hooks?: FakeEngineHooks;
}

/** FNV-1a, 32 bit. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The full answer the fake gives to `prompt` after `history` (before limits and stops). */
export function fakeAnswerWords(history: string[], prompt: string): string[] {
  const seed = hash32([...history, prompt].join('\u0000'));
  const length = 5 + (seed % 8);
  const words: string[] = [];
  for (let i = 0; i < length; i++) words.push(FAKE_WORDS[hash32(`${seed}:${i}`) % FAKE_WORDS.length]);
  return words;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

const IMAGE_MAGIC: Array<[string, number[]]> = [
  ['png', [0x89, 0x50, 0x4e, 0x47]],
  ['jpeg', [0xff, 0xd8, 0xff]],
  ['gif', [0x47, 0x49, 0x46]],
  ['webp', [0x52, 0x49, 0x46, 0x46]],
];

function sniff(bytes: Uint8Array): string | undefined {
  return IMAGE_MAGIC.find(([, magic]) => magic.every((b, i) => bytes[i] === b))?.[0];
}

interface Conversation {
  /** Prompts and answers so far, alternating. */
  turns: string[];
}

export class FakeEngine implements Engine {
  private model: ModelInfo | undefined;
  private readonly conversations = new Map<string, Conversation>();
  private nextConversation = 1;
  /** Every call, in order: `load`, `unload`, `ask`, `forget` (for tests). */
  readonly calls: string[] = [];
  hooks: FakeEngineHooks;

  constructor(private readonly opts: FakeEngineOptions = {}) {
    this.hooks = opts.hooks ?? {};
  }

  async load(dir: string, options: LoadOptions, onProgress: (p: LoadProgress) => void, signal: AbortSignal): Promise<ModelInfo> {
    this.calls.push('load');
    this.model = undefined;
    const dirOk = await fs.stat(dir).then((s) => s.isDirectory(), () => false);
    if (!dirOk) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `Model folder not found: ${dir}. Pass a folder that holds config.json and onnx/.`);
    }
    const configPath = path.join(dir, 'config.json');
    let config: Record<string, unknown>;
    try {
      config = JSON.parse(await fs.readFile(configPath, 'utf8')) as Record<string, unknown>;
    } catch {
      throw new LensError(LensErrorCode.InvalidModelFolder, `${configPath} is missing or not JSON. Is ${dir} a model folder?`);
    }
    if (options.device !== undefined && options.device !== 'auto' && options.device !== 'cpu') {
      throw new LensError(LensErrorCode.DeviceUnavailable, `The fake engine has no ${options.device}; use cpu or auto.`);
    }
    const steps = ['vision_encoder', 'embed_tokens', 'decoder_model_merged'];
    for (let i = 0; i < steps.length; i++) {
      await this.hooks.beforeLoadStep?.(i, signal);
      await tick();
      if (signal.aborted) throw new LensError(LensErrorCode.Cancelled, `loading ${dir} was cancelled.`);
      onProgress({ percent: Math.round((100 * (i + 1)) / steps.length), message: `Loaded ${steps[i]}` });
    }
    const dtype = typeof options.dtype === 'string' ? options.dtype : 'fp32';
    const perFile = typeof options.dtype === 'object' ? options.dtype : {};
    this.model = {
      path: dir,
      name: path.basename(dir),
      modelType: typeof config.model_type === 'string' ? config.model_type : 'llava',
      device: 'cpu',
      dtype: {
        vision_encoder: perFile.vision_encoder ?? dtype,
        embed_tokens: perFile.embed_tokens ?? dtype,
        decoder_model_merged: perFile.decoder_model_merged ?? dtype,
      },
      contextLength: this.opts.contextLength ?? 2048,
      imagesPerPrompt: this.opts.imagesPerPrompt ?? 4,
      imageSize: 384,
      toolCallFormat: 'none',
      isTestModel: true,
    };
    return this.model;
  }

  async unload(): Promise<void> {
    this.calls.push('unload');
    this.model = undefined;
    this.conversations.clear();
  }

  info(): ModelInfo | undefined {
    return this.model;
  }

  forget(conversationId: string): void {
    this.calls.push('forget');
    this.conversations.delete(conversationId);
  }

  /** The turns of a conversation (prompts and answers alternating), for tests. */
  history(conversationId: string): string[] | undefined {
    return this.conversations.get(conversationId)?.turns.slice();
  }

  async ask(req: AskRequest, onDelta: (d: AnswerDelta) => void, signal: AbortSignal): Promise<AskResult> {
    this.calls.push('ask');
    const model = this.model;
    if (!model) throw new LensError(LensErrorCode.ModelNotLoaded, 'No model is loaded.');
    let conversationId = req.conversationId;
    let conv: Conversation | undefined;
    if (conversationId !== undefined) {
      conv = this.conversations.get(conversationId);
      if (!conv) {
        throw new LensError(LensErrorCode.UnknownConversation, `unknown conversation '${conversationId}': start a new one by leaving out conversationId.`);
      }
    }
    const started = Date.now();
    const text: string[] = [];
    const tokenIds: number[] = [];
    const result = (finishReason: AskResult['finishReason'], visionMs = 0): AskResult => {
      const totalMs = Date.now() - started;
      const timings: Timings = {
        decodeImageMs: 0,
        preprocessMs: 0,
        visionMs,
        prefillMs: 0,
        firstTokenMs: 0,
        totalMs,
        promptTokens: req.prompt.split(/\s+/).length + 4 * req.images.length,
        cachedTokens: 0,
        imageTokens: 4 * req.images.length,
        newTokens: tokenIds.length,
        decodeTokensPerSec: totalMs > 0 ? (1000 * tokenIds.length) / totalMs : 0,
      };
      return { text: text.join(''), tokenIds, conversationId: conversationId ?? '', finishReason, timings, device: model.device, model: model.name };
    };

    await this.hooks.beforeAsk?.(req, signal);
    // Simulated vision phase: one tick per image, checking the signal.
    for (const img of req.images) {
      if ('bytes' in img) {
        if (!sniff(img.bytes)) throw new LensError(LensErrorCode.ImageDecodeFailed, 'The image bytes are not PNG, JPEG, GIF or WebP; send an image file.');
      } else if (!(await fs.stat(img.path).then((s) => s.isFile(), () => false))) {
        throw new LensError(LensErrorCode.ImageNotFound, `Image not found: ${img.path}.`);
      }
      await tick();
      if (signal.aborted) return result('cancelled');
    }

    if (!conv) {
      conversationId = `fake-${this.nextConversation++}`;
      conv = { turns: [] };
      this.conversations.set(conversationId, conv);
    }
    const words = fakeAnswerWords(conv.turns, req.prompt);
    let finishReason: AskResult['finishReason'] = 'eos';
    for (let i = 0; ; i++) {
      if (i >= words.length) break;
      if (i >= req.options.maxTokens) {
        finishReason = 'length';
        break;
      }
      await this.hooks.beforeToken?.(i, signal);
      await tick();
      if (signal.aborted) {
        finishReason = 'cancelled';
        break;
      }
      let piece = (i === 0 ? '' : ' ') + words[i];
      const sofar = text.join('');
      const stopAt = firstStop(sofar + piece, req.options.stop);
      if (stopAt !== undefined) {
        piece = (sofar + piece).slice(sofar.length, Math.max(sofar.length, stopAt));
        if (piece !== '') {
          text.push(piece);
          tokenIds.push(TOKEN_BASE + FAKE_WORDS.indexOf(words[i]));
          onDelta({ text: piece, tokenId: TOKEN_BASE + FAKE_WORDS.indexOf(words[i]) });
        }
        finishReason = 'stop';
        break;
      }
      text.push(piece);
      tokenIds.push(TOKEN_BASE + FAKE_WORDS.indexOf(words[i]));
      onDelta({ text: piece, tokenId: TOKEN_BASE + FAKE_WORDS.indexOf(words[i]) });
    }
    const answer = result(finishReason);
    conv.turns.push(req.prompt, answer.text);
    return answer;
  }
}

/** Index where the earliest stop string begins in `text`, if any. */
function firstStop(text: string, stops: string[]): number | undefined {
  let best: number | undefined;
  for (const s of stops) {
    if (s === '') continue;
    const i = text.indexOf(s);
    if (i >= 0 && (best === undefined || i < best)) best = i;
  }
  return best;
}
