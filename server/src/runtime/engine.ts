/**
 * OnnxEngine: the `Engine` the daemon runs — a LLaVA-family model on onnxruntime-node.
 *
 * A request follows the data, one module per stage:
 *   image.ts (decode) -> preprocess.ts (pixel values) -> vision.ts (+ anyres.ts) (feature rows)
 *   -> prompt.ts (template, tokens) -> merge.ts (image slots) -> embed.ts + decoder.ts (prefill,
 *   KV cache in kvcache.ts) -> generate.ts (+ sampler.ts) -> answer.
 * Conversations (conversations.ts) keep ids, image features and a KV cache between turns, so a
 * follow-up only prefills its new tokens; a new conversation about an image seen recently
 * resumes from the KV of "system prompt + image" (prefixCache.ts) and prefills only its question.
 *
 * Persistence (`stateDir`): each completed turn is appended to the conversation's log
 * (conversationLog.ts) and synced before `ask` returns, so a crash loses at most the answer in
 * flight. An `ask` naming a conversation that is not in memory (after a restart, an unload, or an
 * LRU eviction) restores it from the log: messages, the exact context ids when the loaded model
 * wrote them (otherwise the prompt is re-rendered), and every history image's features (vision
 * cache, else the vision encoder on the stored bytes); no KV cache, so the next prefill covers
 * the whole context. A damaged log is reported and restored up to its last good turn, or, with a
 * corrupt header, moved aside and answered with UnknownConversation. `forget` deletes the file.
 *
 * Stateless asks (`AskRequest.history`, the OpenAI-compatible endpoint) get a fresh conversation
 * seeded with the given messages (their images through the vision cache/encoder, as a restore
 * does), never persisted; the conversation is kept in statelessConversations.ts's index, so a
 * next request whose history is this one's plus its answer continues it with its KV cache.
 *
 * `AskRequest.maxPromptTokens` refuses (PromptTooLong) a turn whose own message, its text
 * tokens plus its image tokens, is over the limit, before the vision encoder runs.
 *
 * Not re-entrant: the daemon runs one call at a time.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type * as ort from 'onnxruntime-node';
import { LensError, LensErrorCode } from '../../../common/errors';
import { autoProviderOrder, availableProviders, createSession } from './backend';
import { ConversationLog, idsDelta, type StoredImage } from './conversationLog';
import { ConversationStore, DEFAULT_LIMITS, type Conversation, type ConversationLimits } from './conversations';
import { DebugDump } from './debug';
import { Decoder } from './decoder';
import { Embedder } from './embed';
import { generate } from './generate';
import { decoderPasses, tuneGraph, visionPasses, type GraphTuningOptions, type TunedGraph } from './graphTuning';
import { decodeImage } from './image';
import { expandImageTokens, mergeImageFeatures, type ImageFeatures } from './merge';
import { readModelSpec, type ModelSpec } from './modelSpec';
import { fingerprint, imageKey, StatelessIndex, type PrintedMessage } from './statelessConversations';
import { PrefixCache } from './prefixCache';
import { decodeResize, preprocess, type PixelValues } from './preprocess';
import { PromptFormat, type ChatMessage } from './prompt';
import { makeRng, validateSamplerOptions } from './sampler';
import type { AnswerDelta, AskRequest, AskStage, AskResult, Engine, HistoryMessage, ImageInput, LoadOptions, LoadProgress, ModelInfo, Timings, TuningSummary } from './types';
import { VisionEncoder } from './vision';

/** Positions per prefill step (decoder.ts `prefill`: faster and far less memory for long prompts). */
export const DEFAULT_PREFILL_CHUNK = 1024;

export interface OnnxEngineOptions {
  log?: (msg: string) => void;
  /** Positions per prefill step; default `DEFAULT_PREFILL_CHUNK`. */
  prefillChunk?: number;
  limits?: Partial<ConversationLimits>;
  intraOpNumThreads?: number;
  /** Vision feature cache entries (by image bytes + preprocessing). */
  visionCacheSize?: number;
  /** Load-time decoder graph tuning (graphTuning.ts); `false` loads the files as they are. Default: all passes on. */
  graphTuning?: GraphTuningOptions | false;
  /**
   * A logits processor run in place before each sampled token (`step` 0 = the first). For
   * benchmarks and debugging, e.g. banning EOS to force a token count. In-process engines only
   * (a function cannot cross to a worker thread).
   */
  processLogits?: (logits: Float32Array, step: number) => void;
  /** The daemon's state folder: conversations persist in `<stateDir>/conversations/` (see the header). Absent: memory only. */
  stateDir?: string;
  /** With `stateDir`: conversation files unused for longer than this (ms) are removed when the engine is constructed. */
  conversationMaxAgeMs?: number;
}

interface Loaded {
  spec: ModelSpec;
  format: PromptFormat;
  sessions: ort.InferenceSession[];
  vision: VisionEncoder;
  embedder: Embedder;
  decoder: Decoder;
  eosIds: Set<number>;
  info: ModelInfo;
  maxImagePixels: number;
  maxImageBytes: number | undefined;
}

const DEFAULT_MAX_PIXELS = 50e6;

export class OnnxEngine implements Engine {
  private model: Loaded | undefined;
  private tuned: TunedGraph | undefined;
  private tunedVision: TunedGraph | undefined;
  private readonly store: ConversationStore;
  private readonly visionCache = new Map<string, ImageFeatures>();
  private readonly prefixes = new PrefixCache();
  private readonly log: (msg: string) => void;
  private readonly convLog: ConversationLog | undefined;
  private readonly stateless = new StatelessIndex();

  constructor(private readonly opts: OnnxEngineOptions = {}) {
    this.log = opts.log ?? (() => undefined);
    this.store = new ConversationStore({ ...DEFAULT_LIMITS, ...opts.limits });
    this.convLog = opts.stateDir !== undefined ? new ConversationLog(opts.stateDir, this.log) : undefined;
    if (this.convLog && opts.conversationMaxAgeMs !== undefined) this.convLog.sweep(opts.conversationMaxAgeMs);
  }

  info(): ModelInfo | undefined {
    return this.model?.info;
  }

  /** What load-time graph tuning did to the loaded decoder (undefined before a load or when off). */
  graphTuning(): TunedGraph | undefined {
    return this.tuned;
  }

  /** What load-time graph tuning did to the loaded vision encoder (undefined before a load or when off). */
  visionTuning(): TunedGraph | undefined {
    return this.tunedVision;
  }

  /** Bytes held by kept KV caches. */
  kvBytes(): number {
    return this.store.kvBytes();
  }

  async load(dir: string, options: LoadOptions, onProgress: (p: LoadProgress) => void, signal: AbortSignal): Promise<ModelInfo> {
    await this.unload();
    const sessions: ort.InferenceSession[] = [];
    const cancelled = () => {
      if (signal.aborted) throw new LensError(LensErrorCode.Cancelled, `loading ${dir} was cancelled.`);
    };
    try {
      onProgress({ percent: 2, message: 'reading model folder' });
      const spec = readModelSpec(dir, options.dtype);
      const format = new PromptFormat(spec.chatTemplate.template, spec.tokenizerJson, spec.tokenizerConfig);
      if (format.tokenId(spec.imageToken) !== spec.imageTokenId) {
        throw new LensError(LensErrorCode.InvalidModelFolder, `tokenizer.json maps '${spec.imageToken}' to ${format.tokenId(spec.imageToken)}, config.json says image_token_index ${spec.imageTokenId}: tokenizer and config come from different models?`);
      }
      cancelled();
      const device = options.device ?? 'auto';
      const sessionOpts = { intraOpNumThreads: this.opts.intraOpNumThreads, log: this.log };
      const tuning = options.graphTuning !== undefined ? options.graphTuning : this.opts.graphTuning;
      const visionSrc = spec.files.vision_encoder.path;
      if (tuning !== false && tuning?.int8Vision !== false) {
        // DynamicQuantizeMatMul is a CPU kernel: on a GPU provider it would pull the encoder's
        // matrix products back to the CPU. Decided from the provider the load will try first.
        const first = device === 'auto' ? (autoProviderOrder().find((p) => availableProviders().includes(p)) ?? 'cpu') : device;
        if (first === 'cpu') {
          onProgress({ percent: 6, message: 'tuning vision encoder (int8 weights; first load of this file only)' });
          this.tunedVision = await tuneGraph(visionSrc, visionPasses(tuning), this.log);
          cancelled();
        } else {
          this.tunedVision = { path: visionSrc, applied: [], skipped: [`int8 weights: the vision encoder runs on ${first}, and the int8 kernels are CPU-only`], cacheHit: false, ms: 0 };
        }
      }
      onProgress({ percent: 10, message: `loading vision encoder (${spec.files.vision_encoder.dtype})` });
      const v = await createSession(this.tunedVision ?? visionSrc, device, sessionOpts);
      sessions.push(v.session);
      cancelled();
      onProgress({ percent: 45, message: `loading token embeddings (${spec.files.embed_tokens.dtype}) on ${v.provider}` });
      // One thread: the embedding is a Gather of a few rows, and an idle pool of its own would
      // spin on the cores the decoder computes on right after each token's lookup.
      const e = await createSession(spec.files.embed_tokens.path, v.provider, { ...sessionOpts, intraOpNumThreads: 1 });
      sessions.push(e.session);
      cancelled();
      onProgress({ percent: 55, message: `loading decoder (${spec.files.decoder_model_merged.dtype}) on ${v.provider}` });
      const src = spec.files.decoder_model_merged.path;
      this.tuned = tuning === false ? undefined : await tuneGraph(src, decoderPasses(tuning), this.log);
      const d = await createSession(this.tuned ?? src, v.provider, sessionOpts);
      sessions.push(d.session);
      cancelled();
      onProgress({ percent: 95, message: 'checking model' });

      const vision = new VisionEncoder(v.session, spec.preprocess, spec.vision.patchSize, this.log);
      const embedder = new Embedder(e.session);
      const decoder = new Decoder(d.session, spec.text.numKvHeads, spec.text.headDim);
      // Invariants where stages meet, with a hint (llama.cpp mtmd style).
      const H = spec.text.hiddenSize;
      if (vision.featureWidth !== undefined && vision.featureWidth !== H) {
        throw new LensError(LensErrorCode.InvalidModelFolder, `projector width ${vision.featureWidth} != LLM hidden ${H}: wrong vision encoder file for this decoder (${spec.files.vision_encoder.path})?`);
      }
      if (embedder.hiddenSize !== undefined && embedder.hiddenSize !== H) {
        throw new LensError(LensErrorCode.InvalidModelFolder, `embed_tokens width ${embedder.hiddenSize} != LLM hidden ${H} (config.json): wrong embed_tokens file?`);
      }
      if (decoder.hiddenSize !== undefined && decoder.hiddenSize !== H) {
        throw new LensError(LensErrorCode.InvalidModelFolder, `decoder inputs_embeds width ${decoder.hiddenSize} != hidden_size ${H} in config.json: config and decoder come from different models?`);
      }
      const eosIds = new Set([...spec.eosTokenIds, ...format.turnSeparatorIds()]);
      if (eosIds.size === 0) this.log('warning: no EOS token found in config.json or the chat template; answers end only at maxTokens or a stop string');
      const info: ModelInfo = {
        path: spec.dir,
        name: spec.name,
        modelType: spec.modelType,
        device: v.provider,
        dtype: {
          vision_encoder: spec.files.vision_encoder.dtype,
          embed_tokens: spec.files.embed_tokens.dtype,
          decoder_model_merged: spec.files.decoder_model_merged.dtype,
        },
        contextLength: spec.text.maxPositions,
        imagesPerPrompt: 4,
        imageSize: spec.preprocess.imageSize.height,
        toolCallFormat: spec.toolCallFormat,
        isTestModel: spec.isTestModel,
      };
      if (this.tuned || this.tunedVision) {
        const summary = (t: TunedGraph): TuningSummary => ({ applied: t.applied, skipped: t.skipped, cacheHit: t.cacheHit, ms: Math.round(t.ms) });
        info.tuning = {};
        if (this.tunedVision) info.tuning.vision_encoder = summary(this.tunedVision);
        if (this.tuned) info.tuning.decoder_model_merged = summary(this.tuned);
      }
      this.model = { spec, format, sessions, vision, embedder, decoder, eosIds, info, maxImagePixels: options.maxImagePixels ?? DEFAULT_MAX_PIXELS, maxImageBytes: options.maxImageBytes };
      this.log(`loaded ${spec.dir} on ${v.provider} (vision packing: ${vision.mode}; ${spec.text.numLayers} layers, context ${spec.text.maxPositions})`);
      onProgress({ percent: 100, message: 'ready' });
      return info;
    } catch (err) {
      this.tuned = undefined;
      this.tunedVision = undefined;
      await Promise.all(sessions.map((s) => s.release().catch(() => undefined)));
      throw err;
    }
  }

  async unload(): Promise<void> {
    const m = this.model;
    this.model = undefined;
    this.tuned = undefined;
    this.tunedVision = undefined;
    this.store.clear();
    this.stateless.clear();
    this.visionCache.clear();
    this.prefixes.clear();
    if (m) await Promise.all(m.sessions.map((s) => s.release().catch(() => undefined)));
  }

  forget(conversationId: string, keepSaved = false): void {
    this.store.delete(conversationId);
    this.stateless.remove(conversationId);
    if (!keepSaved) this.forgetFile(conversationId);
  }

  private forgetFile(conversationId: string): void {
    try {
      this.convLog?.delete(conversationId);
    } catch (e) {
      this.log(`conversation ${conversationId}: could not delete its file (${(e as Error).message})`);
    }
  }

  async ask(req: AskRequest, onDelta: (d: AnswerDelta) => void, signal: AbortSignal, onStage: (s: AskStage) => void = () => undefined): Promise<AskResult> {
    const m = this.model;
    if (!m) throw new LensError(LensErrorCode.ModelNotLoaded, 'no model is loaded: call lens/loadModel (or pass --model) first.');
    const t0 = performance.now();
    const o = req.options;
    const bad = validateSamplerOptions(o);
    if (bad) throw new LensError(LensErrorCode.InvalidParams, bad);
    if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) throw new LensError(LensErrorCode.InvalidParams, `maxTokens must be a positive integer, got ${o.maxTokens}`);
    const maxPrompt = req.maxPromptTokens;
    if (maxPrompt !== undefined && (!Number.isInteger(maxPrompt) || maxPrompt < 1)) throw new LensError(LensErrorCode.InvalidParams, `maxPromptTokens must be a positive integer, got ${maxPrompt}`);
    if (req.tools !== undefined) throw new LensError(LensErrorCode.InvalidParams, 'this engine has no native tool calls: describe the tools in the prompt (the tool loop does) instead of sending "tools".');
    if (req.history !== undefined && req.conversationId !== undefined) throw new LensError(LensErrorCode.InvalidParams, 'an ask carries either "history" (stateless) or a conversationId, not both.');
    const debug = new DebugDump();
    const timings: Timings = { decodeImageMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, firstTokenMs: 0, totalMs: 0, promptTokens: 0, cachedTokens: 0, imageTokens: 0, newTokens: 0, decodeTokensPerSec: 0 };
    const cancelledResult = (conversationId: string): AskResult => {
      timings.totalMs = performance.now() - t0;
      return { text: '', tokenIds: [], conversationId, finishReason: 'cancelled', timings, device: m.info.device, model: m.info.name };
    };
    let conv: Conversation;
    let printed: PrintedMessage[] | undefined; // stateless asks: the conversation so far, fingerprinted
    if (req.history !== undefined) {
      const seeded = await this.seed(m, req.history, signal, timings);
      if (seeded === 'cancelled') return cancelledResult('');
      ({ conv, printed } = seeded);
    } else if (req.conversationId !== undefined) {
      const c = this.store.get(req.conversationId) ?? (await this.restore(m, req.conversationId, signal, timings));
      if (c === 'cancelled') return cancelledResult(req.conversationId);
      if (!c) throw new LensError(LensErrorCode.UnknownConversation, `unknown conversation '${req.conversationId}' (it may have expired or been forgotten${this.convLog ? '' : ', or the daemon restarted'}): start a new one by leaving out conversationId.`);
      conv = c;
    } else {
      conv = this.store.create();
      if (this.convLog) conv.persisted = { ids: [], messages: 0, drops: [] };
    }

    // 1-2. decode and preprocess the images
    const pixels: PreparedImage[] = [];
    const stored: StoredImage[] = []; // for the conversation log
    const turnKeys: string[] = []; // stateless asks: this turn's image fingerprints
    for (const [index, input] of req.images.entries()) {
      onStage({ stage: 'image', index, total: req.images.length });
      const bytes = await readImageBytes(input);
      turnKeys.push(printed ? imageKey(bytes) : '');
      const mimeType = 'mimeType' in input ? input.mimeType : undefined;
      const prepared = await this.prepareImage(m, bytes, mimeType, timings);
      if (prepared.pv) debug.tensor('pixel_values', prepared.pv.data, prepared.pv.dims);
      pixels.push(prepared);
      if (conv.persisted) stored.push({ base64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'), ...(mimeType !== undefined ? { mimeType } : {}) });
    }

    // 3. prompt ids, with image slots sized by the rows each image will take
    const userMsg: ChatMessage = { role: req.role ?? 'user', text: req.prompt, images: req.images.length };
    const textTokens = maxPrompt !== undefined ? m.format.encode(req.prompt).length : 0;
    const checkPromptLimit = (rows: number[]) => {
      const imageTokens = rows.reduce((a, b) => a + b, 0);
      if (maxPrompt !== undefined && textTokens + imageTokens > maxPrompt) {
        throw new LensError(LensErrorCode.PromptTooLong, `this message needs ${textTokens + imageTokens} tokens (${imageTokens} for images), over the limit of ${maxPrompt} (maxPromptTokens): shorten the question, send fewer or smaller images, or raise the limit.`);
      }
    };
    const rowsOf = (p: PreparedImage) => p.features?.rows ?? m.vision.expectedRows(p.pv!);
    checkPromptLimit(pixels.map(rowsOf));
    if (req.system !== undefined && conv.messages.length === 0) {
      conv.messages.push({ role: 'system', text: req.system, images: 0 });
      printed?.push({ role: 'system', text: req.system, images: [] });
    }
    const messagesBefore = conv.messages.length;
    this.trimHistory(conv);
    let plan = this.planPrompt(m, conv, userMsg, pixels.map(rowsOf));

    // 4. vision encoder (cached by image bytes + preprocessing)
    const t4 = performance.now();
    const feats: ImageFeatures[] = [];
    for (let i = 0; i < pixels.length; i++) {
      const f = await this.encodeImage(m, pixels[i], signal, (index, total) => onStage({ stage: 'vision', index, total }));
      if (!f) return cancelledResult(conv.id);
      debug.tensor('image_features', f.data, [f.rows, f.data.length / f.rows]);
      feats.push(f);
    }
    timings.visionMs += performance.now() - t4;
    if (feats.some((f, i) => f.rows !== plan.newRows[i])) {
      checkPromptLimit(feats.map((f) => f.rows));
      plan = this.planPrompt(m, conv, userMsg, feats.map((f) => f.rows));
    }
    if (signal.aborted) return cancelledResult(conv.id);

    // 5. prefill the new part of the context
    onStage({ stage: 'prefill' });
    const t5 = performance.now();
    const contextIds = [...plan.baseIds, ...plan.newIds];
    let start = plan.reuse && conv.cache ? conv.cache.length : 0;
    const images = start === 0 ? [...(plan.reuse ? conv.images : plan.historyImages), ...feats] : feats;
    // A context whose images are all this turn's may begin like an earlier one (same system
    // prompt, same images): resume from that prefill's KV after the last image token.
    const imageEnd = contextIds.lastIndexOf(m.spec.imageTokenId) + 1;
    const prefixKey = start === 0 && feats.length > 0 && images.length === feats.length && imageEnd < contextIds.length ? PrefixCache.key(contextIds.slice(0, imageEnd), pixels.map((p) => p.key)) : undefined;
    const prefixHit = prefixKey !== undefined ? this.prefixes.get(prefixKey) : undefined;
    if (prefixHit) start = prefixHit.length;
    const forwardIds = contextIds.slice(start);
    const embeds = await m.embedder.embed(forwardIds);
    if (!prefixHit) {
      const skip = start === 0 ? 0 : plan.baseIds.length - start; // generated ids before the new prompt
      mergeImageFeatures(embeds.subarray(skip * m.spec.text.hiddenSize), forwardIds.slice(skip), m.spec.imageTokenId, m.spec.text.hiddenSize, images);
    }
    debug.tensor('inputs_embeds', embeds, [forwardIds.length, m.spec.text.hiddenSize]);
    const startCache = prefixHit ?? (start === 0 ? m.decoder.emptyCache() : conv.cache!);
    const pre = await m.decoder.prefill(embeds, forwardIds.length, startCache, this.opts.prefillChunk ?? DEFAULT_PREFILL_CHUNK, signal);
    if (prefixKey !== undefined && !prefixHit && !signal.aborted) this.prefixes.set(prefixKey, pre.cache.prefix(imageEnd));
    timings.prefillMs = performance.now() - t5;
    timings.promptTokens = contextIds.length;
    timings.cachedTokens = start;
    timings.imageTokens = feats.reduce((n, f) => n + f.rows, 0);
    debug.tensor('logits_first', pre.logits, [pre.logits.length]);
    if (signal.aborted) {
      pre.cache.dispose();
      return cancelledResult(conv.id);
    }
    if (startCache !== conv.cache) conv.cache?.dispose();
    conv.cache = undefined;

    // 6. generate
    onStage({ stage: 'generate' });
    const gen = await generate({
      decoder: m.decoder,
      embedder: m.embedder,
      format: m.format,
      cache: pre.cache,
      logits: pre.logits,
      contextIds,
      sampler: o,
      rng: makeRng(o.seed ?? (Math.random() * 2 ** 32) >>> 0),
      maxTokens: o.maxTokens,
      maxContext: m.spec.text.maxPositions,
      eosIds: m.eosIds,
      stop: o.stop,
      signal,
      onToken: (text, tokenId) => onDelta({ text, tokenId }),
      processLogits: this.opts.processLogits,
    });
    const tEnd = performance.now();

    // 7. record the turn, in memory and (synced) in the conversation log
    conv.messages.push(userMsg, { role: 'assistant', text: gen.text, images: 0 });
    conv.ids = contextIds;
    conv.images = [...(plan.reuse ? conv.images : plan.historyImages), ...feats];
    conv.lastAnswerIds = gen.tokenIds;
    conv.cache = gen.cache;
    if (req.owner !== undefined) conv.owner = req.owner;
    this.store.touch(conv);
    await this.persist(m, conv, stored);
    if (printed && conv.messages.length === messagesBefore + 2) {
      // nothing was dropped for room: a request that sends this conversation back continues it
      printed.push({ role: userMsg.role, text: userMsg.text, images: turnKeys }, { role: 'assistant', text: gen.text, images: [] });
      for (const old of this.stateless.put(fingerprint(printed), conv.id)) if (old !== conv.id) this.store.delete(old);
    } else if (printed) this.store.delete(conv.id); // no request can name it again

    timings.firstTokenMs = gen.firstTokenAt !== undefined ? gen.firstTokenAt - t0 : 0;
    timings.totalMs = tEnd - t0;
    timings.newTokens = gen.tokenIds.length;
    const decodeMs = gen.firstTokenAt !== undefined ? tEnd - gen.firstTokenAt : 0;
    timings.decodeTokensPerSec = gen.tokenIds.length > 1 && decodeMs > 0 ? ((gen.tokenIds.length - 1) * 1000) / decodeMs : 0;
    debug.json('timings', timings);
    return { text: gen.text, tokenIds: gen.tokenIds, conversationId: conv.id, finishReason: gen.finishReason, timings, device: m.info.device, model: m.info.name };
  }

  /**
   * A stateless ask's conversation (see the header): the one an earlier request left with exactly
   * these messages, else a new one (not persisted) seeded with them and their images' features.
   * 'cancelled' when `signal` aborted the vision encoder.
   */
  private async seed(m: Loaded, history: HistoryMessage[], signal: AbortSignal, timings: Timings): Promise<{ conv: Conversation; printed: PrintedMessage[] } | 'cancelled'> {
    const printed: PrintedMessage[] = [];
    const bytes: Array<{ bytes: Uint8Array; mimeType: string | undefined }> = [];
    for (const h of history) {
      const keys: string[] = [];
      for (const input of h.images) {
        const b = await readImageBytes(input);
        keys.push(imageKey(b));
        bytes.push({ bytes: b, mimeType: 'mimeType' in input ? input.mimeType : undefined });
      }
      printed.push({ role: h.role, text: h.text, images: keys });
    }
    const known = this.stateless.take(fingerprint(printed));
    const found = known !== undefined ? this.store.get(known) : undefined;
    if (found) return { conv: found, printed };
    const t = performance.now();
    const images: ImageFeatures[] = [];
    for (const img of bytes) {
      const f = await this.encodeImage(m, await this.prepareImage(m, img.bytes, img.mimeType, timings), signal);
      if (!f) return 'cancelled';
      images.push(f);
    }
    timings.visionMs += performance.now() - t;
    const conv = this.store.create();
    conv.messages = history.map((h) => ({ role: h.role, text: h.text, images: h.images.length }));
    conv.images = images;
    return { conv, printed };
  }

  /**
   * Rebuilds conversation `id` from the conversation log into the store (see the header):
   * undefined when there is no log or no file, 'cancelled' when `signal` aborted the vision
   * encoder. Throws UnknownConversation for a file with a corrupt header (moved aside).
   */
  private async restore(m: Loaded, id: string, signal: AbortSignal, timings: Timings): Promise<Conversation | 'cancelled' | undefined> {
    const saved = await this.convLog?.read(id);
    if (!saved) return undefined;
    const t = performance.now();
    const images: ImageFeatures[] = [];
    for (const img of saved.images) {
      const f = await this.encodeImage(m, await this.prepareImage(m, img.bytes, img.mimeType, timings), signal);
      if (!f) return 'cancelled';
      images.push(f);
    }
    timings.visionMs += performance.now() - t;
    const sameModel = saved.model === m.info.path;
    const conv = this.store.create(id);
    conv.messages = saved.messages;
    conv.images = images;
    conv.ids = sameModel ? saved.ids : [];
    conv.lastAnswerIds = sameModel ? saved.lastAnswerIds : [];
    conv.persisted = { ids: saved.ids, messages: saved.messages.length, drops: [] };
    this.log(`conversation ${id}: restored ${saved.turns} turn(s) from ${this.convLog!.dir}${sameModel ? '' : ` (written by ${saved.model}: the prompt is re-rendered)`}`);
    return conv;
  }

  /**
   * Appends the turn just recorded to the conversation log (a no-op when not persisted). A write
   * that fails is reported, the file removed (it could not replay to this state) and the
   * conversation kept in memory only; the answer is not lost.
   */
  private async persist(m: Loaded, conv: Conversation, images: StoredImage[]): Promise<void> {
    const p = conv.persisted;
    if (!this.convLog || !p) return;
    try {
      await this.convLog.append(conv.id, m.info.path, {
        ...(p.drops.length > 0 ? { drop: p.drops } : {}),
        add: conv.messages.slice(p.messages),
        images,
        ids: idsDelta(p.ids, conv.ids),
        lastAnswerIds: conv.lastAnswerIds,
      });
      conv.persisted = { ids: conv.ids, messages: conv.messages.length, drops: [] };
    } catch (e) {
      conv.persisted = undefined;
      this.forgetFile(conv.id);
      this.log(`conversation ${conv.id}: saving the turn failed (${(e as Error).message}); from now on it is kept in memory only`);
    }
  }

  /**
   * Steps 1-2 for one image: its vision-cache key (bytes + preprocessing), then the cached
   * features when the cache has them (no decode, no preprocessing: the same bytes decoded before),
   * else decode and preprocess.
   */
  private async prepareImage(m: Loaded, bytes: Uint8Array, mimeType: string | undefined, timings: Timings): Promise<PreparedImage> {
    const spec = m.vision.wantsTiles ? m.spec.preprocess : { ...m.spec.preprocess, anyres: undefined };
    const key = createHash('sha256').update(bytes).update(JSON.stringify(spec)).update(m.info.path).update(m.vision.mode).digest('hex');
    const features = this.visionCache.get(key);
    if (features) {
      this.rememberFeatures(key, features); // most recently used
      return { key, features };
    }
    let t = performance.now();
    const resize = decodeResize(spec); // one libvips pipeline for decode + first resize where that is exact
    const img = await decodeImage({ bytes, mimeType }, { maxPixels: m.maxImagePixels, ...(m.maxImageBytes !== undefined ? { maxBytes: m.maxImageBytes } : {}), ...(resize ? { resize } : {}) });
    timings.decodeImageMs += performance.now() - t;
    t = performance.now();
    const pv = await preprocess(img, spec);
    timings.preprocessMs += performance.now() - t;
    return { key, pv };
  }

  /** Step 4 for one image: the features `prepareImage` found cached, else the encoder (then cached); undefined when cancelled. */
  private async encodeImage(m: Loaded, p: PreparedImage, signal: AbortSignal, onView?: (index: number, total: number) => void): Promise<ImageFeatures | undefined> {
    if (p.features) return p.features;
    const f = await m.vision.encode(p.pv!, signal, onView);
    if (!f) return undefined;
    this.rememberFeatures(p.key, f);
    return f;
  }

  /**
   * Ids for the next turn. Reuses the conversation's ids when the template renders the last
   * answer as it was produced; otherwise re-encodes the whole conversation.
   */
  private planPrompt(m: Loaded, conv: Conversation, user: ChatMessage, newRows: number[]) {
    const fits = (n: number) => n < m.spec.text.maxPositions;
    for (;;) {
      if (conv.ids.length > 0 && conv.messages[conv.messages.length - 1]?.role === 'assistant') {
        const cont = m.format.continuationIds(conv.messages, conv.lastAnswerIds, user);
        if (cont) {
          const newIds = expandImageTokens(cont, m.spec.imageTokenId, newRows);
          if (fits(conv.ids.length + newIds.length)) return { reuse: true, baseIds: conv.ids, newIds, newRows, historyImages: conv.images };
        }
      }
      const all = m.format.encode(m.format.render([...conv.messages, user], true));
      const rows = [...conv.images.map((f) => f.rows), ...newRows];
      const newIds = expandImageTokens(all, m.spec.imageTokenId, rows);
      if (fits(newIds.length)) return { reuse: false, baseIds: [] as number[], newIds, newRows, historyImages: conv.images };
      if (!conv.messages.some((x) => x.role === 'user' || x.role === 'tool')) {
        const imageTokens = newRows.reduce((a, b) => a + b, 0);
        throw new LensError(LensErrorCode.PromptTooLong, `the prompt needs ${newIds.length} tokens (${imageTokens} for images) but the model's context is ${m.spec.text.maxPositions}: shorten the question or send fewer or smaller images.`);
      }
      this.dropOldestTurn(conv); // make room and try again
    }
  }

  private trimHistory(conv: Conversation): void {
    while (conv.messages.filter((x) => x.role === 'user').length >= this.store.limits.maxHistoryTurns) this.dropOldestTurn(conv);
  }

  /** Drops the first user turn (with its answer, tool turns and images; a system prompt stays); the cache no longer matches. */
  private dropOldestTurn(conv: Conversation): void {
    let firstUser = conv.messages.findIndex((x) => x.role === 'user');
    let end = firstUser + 1;
    if (firstUser < 0) {
      firstUser = conv.messages.findIndex((x) => x.role !== 'system'); // no user turn left: drop the rest
      end = conv.messages.length;
    } else while (end < conv.messages.length && conv.messages[end].role !== 'user') end++;
    const dropped = firstUser < 0 ? [] : conv.messages.splice(firstUser, end - firstUser);
    if (conv.persisted && dropped.length > 0) {
      conv.persisted.drops.push([firstUser, dropped.length]);
      conv.persisted.messages -= dropped.length;
    }
    conv.images.splice(0, dropped.reduce((n, x) => n + x.images, 0));
    conv.cache?.dispose();
    conv.cache = undefined;
    conv.ids = [];
    conv.lastAnswerIds = [];
  }

  /** Caches `f` as the most recently used entry (a Map keeps insertion order: delete, then set). */
  private rememberFeatures(key: string, f: ImageFeatures): void {
    this.visionCache.delete(key);
    this.visionCache.set(key, f);
    const max = this.opts.visionCacheSize ?? 16;
    while (this.visionCache.size > max) this.visionCache.delete(this.visionCache.keys().next().value!);
  }
}

/** One image after steps 1-2: pixel values to encode, or the features the vision cache already had. */
interface PreparedImage {
  key: string;
  pv?: PixelValues;
  features?: ImageFeatures;
}

async function readImageBytes(input: ImageInput): Promise<Uint8Array> {
  if ('bytes' in input) return input.bytes;
  try {
    const st = await fs.promises.stat(input.path);
    if (!st.isFile()) throw new LensError(LensErrorCode.ImageNotFound, `${input.path} is not a regular file: pass an image file.`);
    return await fs.promises.readFile(input.path);
  } catch (e) {
    if (e instanceof LensError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : `cannot be read (${(e as Error).message})`;
    throw new LensError(LensErrorCode.ImageNotFound, `image ${input.path} ${why}: check the path.`);
  }
}
