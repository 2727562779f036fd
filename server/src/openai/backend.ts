/**
 * OpenAiEngine: the `Engine` that hands generation to an OpenAI-compatible server (vLLM,
 * SGLang, llama.cpp's server, Ollama, or another LLaVA Lens daemon's `/v1` endpoint) instead of
 * running a model here. `serve --backend openai` wraps it in the tool loop's AgentEngine, so the
 * daemon's clients (CLI, extension, tools) work as with the local engine.
 *
 *   ask   -> the conversation's messages (kept here by conversationId, so follow-ups work the
 *            same), images as `image_url` data URIs -> a streamed POST /chat/completions ->
 *            a delta per SSE chunk -> the answer, recorded in the conversation
 *   cancel (signal) -> the request is aborted (the connection closes; the server stops)
 *   load(name) -> GET /models: the server answers and serves `name`; the engine then asks it
 *
 * The model counts as loaded from construction (nothing is loaded here; `info()` reports the
 * remote model, device `remote`), so a daemon can answer before any `load`. Conversations are
 * kept in memory only (the least recently used dropped beyond `maxConversations`, the oldest
 * user turns beyond `maxHistoryTurns`), never persisted.
 *
 * Tools (`nativeToolCalls`): `AskRequest.tools` go out as OpenAI `tools`; `tool_calls` in the
 * answer are recorded as such and returned in the text as ChatML `<tool_call>` blocks (what the
 * tool loop parses); the next `tool` turn answers them as `tool` messages, one per call (a turn
 * with one JSON line per result, `{"name", "content"}`, is split in order; otherwise each call
 * gets the whole text). A `tool` turn without pending calls (the loop's text format) goes as a
 * user message. Images of a tool turn (a zoomed crop) follow in a user message, since OpenAI
 * tool messages carry text only.
 *
 * Errors: LensError(BackendFailed) from client.ts for anything the server or the connection does;
 * UnknownConversation, InvalidParams, ModelNotLoaded (after `unload`) as the local engine.
 * Not re-entrant: the daemon runs one call at a time.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { AnswerDelta, AskRequest, AskResult, Engine, FinishReason, ImageInput, LoadOptions, LoadProgress, ModelInfo, Timings } from '../runtime/types';
import { listModels, streamChat, type OpenAiServer } from './client';
import { toDataUri } from './dataUri';
import type { ChatRequest, ContentPart, Usage, WireMessage, WireToolCall } from './wire';

export interface OpenAiEngineOptions extends OpenAiServer {
  /** The model to ask (the server's id for it, e.g. `llava-hf/llava-onevision-qwen2-7b-ov-hf`). */
  model: string;
  log?: (msg: string) => void;
  /** Offer the tool loop's tools as OpenAI `tools` (default true); false: the loop describes them in a system prompt. */
  nativeTools?: boolean;
  /** Context length to report until `load` reads the server's (`max_model_len`); default 32768. */
  contextLength?: number;
  /** Images one prompt may carry (default 4). */
  imagesPerPrompt?: number;
  /** Conversations kept (least recently used dropped; default 64). */
  maxConversations?: number;
  /** User turns a conversation keeps (older ones dropped; default 16). */
  maxHistoryTurns?: number;
}

interface Conversation {
  messages: WireMessage[];
}

const TEXT_ONLY = 'remote';

export class OpenAiEngine implements Engine {
  readonly nativeToolCalls: boolean;
  private model: string;
  private contextLength: number;
  private loaded = true;
  private readonly conversations = new Map<string, Conversation>();
  private readonly log: (msg: string) => void;

  constructor(private readonly opts: OpenAiEngineOptions) {
    this.model = opts.model;
    this.contextLength = opts.contextLength ?? 32768;
    this.nativeToolCalls = opts.nativeTools ?? true;
    this.log = opts.log ?? (() => undefined);
  }

  info(): ModelInfo | undefined {
    if (!this.loaded) return undefined;
    return {
      path: this.opts.baseUrl,
      name: this.model,
      modelType: 'openai-compatible',
      device: 'remote',
      dtype: { vision_encoder: TEXT_ONLY, embed_tokens: TEXT_ONLY, decoder_model_merged: TEXT_ONLY },
      contextLength: this.contextLength,
      imagesPerPrompt: this.opts.imagesPerPrompt ?? 4,
      imageSize: 336,
      toolCallFormat: 'chatml',
      isTestModel: false,
    };
  }

  /** Checks the server (GET /models) and asks `name` from now on ('' = the configured model). */
  async load(name: string, _options: LoadOptions, onProgress: (p: LoadProgress) => void, signal: AbortSignal): Promise<ModelInfo> {
    const wanted = name || this.opts.model;
    onProgress({ percent: 0, message: `asking ${this.opts.baseUrl} for its models` });
    let models;
    try {
      models = await listModels(this.opts, signal);
    } catch (e) {
      if (signal.aborted) throw new LensError(LensErrorCode.Cancelled, `checking ${this.opts.baseUrl} was cancelled.`);
      throw e;
    }
    const found = models.find((m) => m.id === wanted);
    if (models.length > 0 && !found) {
      const ids = models.map((m) => m.id);
      throw new LensError(LensErrorCode.ModelLoadFailed, `${this.opts.baseUrl} does not serve "${wanted}"; it serves ${ids.slice(0, 8).map((i) => JSON.stringify(i)).join(', ')}${ids.length > 8 ? ', …' : ''}: pass one of those (--backend-model).`);
    }
    const maxLen = (found as { max_model_len?: unknown } | undefined)?.max_model_len;
    if (typeof maxLen === 'number' && maxLen > 0) this.contextLength = maxLen;
    if (wanted !== this.model) this.conversations.clear();
    this.model = wanted;
    this.loaded = true;
    this.log(`backend: ${this.opts.baseUrl} serves ${wanted}${models.length === 0 ? ' (it lists no models; asking anyway)' : ''}`);
    onProgress({ percent: 100, message: 'ready' });
    return this.info()!;
  }

  async unload(): Promise<void> {
    this.loaded = false;
    this.conversations.clear();
  }

  forget(conversationId: string): void {
    this.conversations.delete(conversationId);
  }

  async ask(req: AskRequest, onDelta: (d: AnswerDelta) => void, signal: AbortSignal): Promise<AskResult> {
    if (!this.loaded) throw new LensError(LensErrorCode.ModelNotLoaded, 'no model is loaded: call lens/loadModel with the backend model name first.');
    if (req.history !== undefined && req.conversationId !== undefined) throw new LensError(LensErrorCode.InvalidParams, 'an ask carries either "history" (stateless) or a conversationId, not both.');
    if (req.tools && !this.nativeToolCalls) throw new LensError(LensErrorCode.InvalidParams, 'this backend was started without native tools: the tool loop describes them in its prompt instead.');
    const t0 = performance.now();
    let id = req.conversationId;
    let conv: Conversation;
    if (id !== undefined) {
      const c = this.conversations.get(id);
      if (!c) throw new LensError(LensErrorCode.UnknownConversation, `unknown conversation '${id}' (it may have been forgotten, or the daemon restarted: the backend keeps conversations in memory only): start a new one by leaving out conversationId.`);
      conv = c;
    } else {
      id = randomUUID();
      conv = { messages: [] };
      if (req.system !== undefined) conv.messages.push({ role: 'system', content: req.system });
      for (const h of req.history ?? []) conv.messages.push(h.role === 'assistant' ? { role: 'assistant', content: h.text } : { role: h.role, content: await content(h.text, h.images) });
    }
    const turn = await this.turnMessages(conv, req);
    const o = req.options;
    const body: ChatRequest = {
      model: this.model,
      messages: [...conv.messages, ...turn],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: o.maxTokens,
      temperature: o.temperature,
      ...(o.topP !== 1 ? { top_p: o.topP } : {}),
      ...(o.topK > 0 ? { top_k: o.topK } : {}),
      ...(o.repetitionPenalty !== 1 ? { repetition_penalty: o.repetitionPenalty } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.stop.length ? { stop: o.stop } : {}),
      ...(req.tools?.length ? { tools: req.tools.map((t) => ({ type: 'function' as const, function: { name: t.name, description: t.description, parameters: t.schema } })) } : {}),
    };

    // Stream; the abort closes the request.
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) controller.abort();
    let text = '';
    let pieces = 0;
    let firstAt: number | undefined;
    let finish: string | null = null;
    let usage: Usage | null | undefined;
    const calls: WireToolCall[] = [];
    let cancelled = false;
    try {
      for await (const chunk of streamChat(this.opts, body, controller.signal)) {
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const piece = choice.delta?.content;
        if (typeof piece === 'string' && piece !== '') {
          firstAt ??= performance.now();
          text += piece;
          pieces++;
          onDelta({ text: piece, tokenId: -1 });
        }
        for (const d of choice.delta?.tool_calls ?? []) {
          const c = (calls[d.index ?? calls.length] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
          if (d.id) c.id = d.id;
          if (d.function?.name) c.function.name += d.function.name;
          if (d.function?.arguments) c.function.arguments += d.function.arguments;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    } catch (e) {
      if (!signal.aborted) throw e;
      cancelled = true;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    const tEnd = performance.now();

    // Record the turn; the calls go back to the tool loop as ChatML blocks.
    const toolCalls = calls.filter((c) => c && c.function.name).map((c, i) => ({ ...c, id: c.id || `call_${i}` }));
    conv.messages.push(...turn, { role: 'assistant', content: text || (toolCalls.length ? null : ''), ...(toolCalls.length ? { tool_calls: toolCalls } : {}) });
    this.trim(conv);
    this.conversations.delete(id);
    this.conversations.set(id, conv);
    while (this.conversations.size > (this.opts.maxConversations ?? 64)) this.conversations.delete(this.conversations.keys().next().value!);
    if (toolCalls.length) {
      const blocks = toolCalls.map((c) => `<tool_call>\n${JSON.stringify({ name: c.function.name, arguments: safeJson(c.function.arguments) })}\n</tool_call>`).join('\n');
      const joined = text ? `\n${blocks}` : blocks;
      onDelta({ text: joined, tokenId: -1 });
      text += joined;
    }

    const newTokens = usage?.completion_tokens ?? pieces;
    const timings: Timings = {
      decodeImageMs: 0,
      preprocessMs: 0,
      visionMs: 0,
      prefillMs: firstAt !== undefined ? firstAt - t0 : 0,
      firstTokenMs: firstAt !== undefined ? firstAt - t0 : 0,
      totalMs: tEnd - t0,
      promptTokens: usage?.prompt_tokens ?? 0,
      cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
      imageTokens: 0,
      newTokens,
      decodeTokensPerSec: firstAt !== undefined && newTokens > 1 && tEnd > firstAt ? ((newTokens - 1) * 1000) / (tEnd - firstAt) : 0,
    };
    const finishReason: FinishReason = cancelled ? 'cancelled' : finish === 'length' ? 'length' : 'eos';
    return { text, tokenIds: [], conversationId: id, finishReason, timings, device: 'remote', model: this.model };
  }

  /** This turn as OpenAI messages (see the header for tool turns). */
  private async turnMessages(conv: Conversation, req: AskRequest): Promise<WireMessage[]> {
    if (req.role !== 'tool') return [{ role: 'user', content: await content(req.prompt, req.images) }];
    const last = conv.messages[conv.messages.length - 1];
    const pending = last?.role === 'assistant' ? (last.tool_calls ?? []) : [];
    if (pending.length === 0) return [{ role: 'user', content: await content(req.prompt, req.images) }];
    const lines = req.prompt.split('\n').filter((l) => l.trim() !== '');
    const perCall = pending.length > 1 && lines.length === pending.length ? lines.map(resultContent) : undefined;
    const out: WireMessage[] = pending.map((c, i) => ({ role: 'tool', tool_call_id: c.id, content: perCall?.[i] ?? req.prompt }));
    if (req.images.length) out.push({ role: 'user', content: await content('The images the tools produced, in order.', req.images) });
    return out;
  }

  /** Drops the oldest user turns (and what followed each) beyond `maxHistoryTurns`; a system message stays. */
  private trim(conv: Conversation): void {
    const max = Math.max(1, this.opts.maxHistoryTurns ?? 16);
    for (;;) {
      const users = conv.messages.flatMap((m, i) => (m.role === 'user' ? [i] : []));
      if (users.length <= max) return;
      conv.messages.splice(users[0], users[1] - users[0]);
    }
  }
}

/** A user message's content: the images as data URIs, then the text (a plain string without images). */
async function content(text: string, images: ImageInput[]): Promise<string | ContentPart[]> {
  if (images.length === 0) return text;
  const parts: ContentPart[] = [];
  for (const img of images) {
    const bytes = 'bytes' in img ? img.bytes : await readImage(img.path);
    parts.push({ type: 'image_url', image_url: { url: toDataUri(bytes, 'mimeType' in img ? img.mimeType : undefined) } });
  }
  parts.push({ type: 'text', text });
  return parts;
}

async function readImage(path: string): Promise<Uint8Array> {
  try {
    return await fs.readFile(path);
  } catch (e) {
    throw new LensError(LensErrorCode.ImageNotFound, `image ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check the path.`);
  }
}

/** One line of a multi-result tool turn (`{"name", "content"}`) as a tool message's content. */
function resultContent(line: string): string {
  try {
    const v = JSON.parse(line) as { content?: unknown };
    if (v && typeof v === 'object' && 'content' in v) return typeof v.content === 'string' ? v.content : JSON.stringify(v.content);
  } catch {
    // not JSON: the line itself
  }
  return line;
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s || '{}');
  } catch {
    return s;
  }
}
