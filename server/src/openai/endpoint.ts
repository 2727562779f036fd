/**
 * The shared daemon's OpenAI-compatible endpoint, on the WebSocket listener's port
 * (`WsServeOptions.httpHandler`), so any OpenAI client can use the daemon's model:
 *
 *   GET  /v1/models             the loaded model (an empty list while none is)
 *   POST /v1/chat/completions   one answer, as JSON or streamed as server-sent events
 *
 * Admission is the WebSocket's (`admission`: Bearer token, no token in the URL, browser origins
 * refused unless allowed); each client address has the daemon's requests-per-minute limit. An
 * allowed origin (`--allow-origin`) also gets CORS headers and its preflight (OPTIONS) answered.
 * Requests are stateless: the whole conversation comes with each one (request.ts checks it,
 * turns.ts makes it the engine's `history` + turn). The answer runs through the daemon's fair
 * queue as client `http:<address>`, so HTTP and WebSocket clients take turns. A client that
 * closes the request cancels its answer (queued: dropped; running: aborted, logged).
 *
 * Streaming: a chunk with the role, one chunk per piece of text, a last chunk with the finish
 * reason, a usage chunk when `stream_options.include_usage`, then `data: [DONE]`. With `tools`,
 * the answer may be a tool call, which is known only at its end: then nothing streams until the
 * answer is complete. Failures before the stream starts are HTTP errors (`{error: {message,
 * type, code}}`, wire.ts maps the product codes); after, a `data: {"error": …}` event.
 */
import { randomUUID } from 'node:crypto';
import type * as http from 'node:http';
import { LensError, LensErrorCode } from '../../../common/errors';
import { toolFormatFor } from '../agent/agentEngine';
import { RateLimiter } from '../daemon/access';
import { checkAgainstModel } from '../daemon/askInputs';
import type { DaemonCore } from '../daemon/core';
import type { CancelSource } from '../daemon/queue';
import { admission } from '../daemon/wsServer';
import type { AskRequest, AskResult, ModelInfo } from '../runtime/types';
import { parseChatRequest, type ParsedChat } from './request';
import { SSE_DONE, sseData } from './sse';
import { extractToolCalls } from './toolText';
import { toEngineTurns } from './turns';
import { HttpError, toHttpError, wireFinishReason, type ChatChunk, type ChatCompletion, type Usage, type WireModelList, type WireToolCall } from './wire';

export interface OpenAiEndpointOptions {
  token: string;
  allowedOrigins?: string[];
  /** Largest request body, bytes (default 64 MiB). */
  maxBodyBytes?: number;
  log?: (line: string) => void;
}

/** A cancel that fires once, when the client closes its request. */
class CancelOnClose implements CancelSource {
  isCancellationRequested = false;
  private readonly listeners = new Set<() => void>();
  onCancellationRequested(listener: () => void) {
    this.listeners.add(listener);
    return { dispose: () => void this.listeners.delete(listener) };
  }
  cancel(): void {
    if (this.isCancellationRequested) return;
    this.isCancellationRequested = true;
    for (const l of [...this.listeners]) l();
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

function sendError(res: http.ServerResponse, e: HttpError): void {
  const headers: Record<string, string> = {};
  if (e.retryAfter !== undefined) headers['Retry-After'] = String(e.retryAfter);
  if (e.status === 413) headers.Connection = 'close';
  sendJson(res, e.status, e.body(), headers);
}

function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const tooBig = () => new HttpError(413, `the request body is over this daemon's limit of ${max} bytes: send fewer or smaller images (the operator sets --max-message-bytes).`, 'invalid_request_error', 'request_too_large');
  if (Number(req.headers['content-length'] ?? 0) > max) return Promise.reject(tooBig());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooBig());
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) reject(new HttpError(400, 'the client closed the request before sending all of its body.'));
    });
  });
}

function modelList(info: ModelInfo | undefined): WireModelList {
  return {
    object: 'list',
    data: info ? [{ id: info.name, object: 'model', created: 0, owned_by: 'llava-lens', max_model_len: info.contextLength }] : [],
  };
}

function usageOf(r: AskResult): Usage {
  return {
    prompt_tokens: r.timings.promptTokens,
    completion_tokens: r.timings.newTokens,
    total_tokens: r.timings.promptTokens + r.timings.newTokens,
    prompt_tokens_details: { cached_tokens: r.timings.cachedTokens },
  };
}

export interface OpenAiEndpoint {
  /** The `httpHandler` for `serveWebSocket`: answers `/v1/…` requests, leaves the rest (returns false). */
  handle(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** Cancels the answers in flight and closes their connections (the daemon is stopping). */
  close(): void;
}

export function openAiEndpoint(core: DaemonCore, o: OpenAiEndpointOptions): OpenAiEndpoint {
  const log = o.log ?? (() => undefined);
  const rates = new Map<string, RateLimiter>();
  const maxBody = o.maxBodyBytes ?? 64 * 1024 * 1024;
  const inFlight = new Set<{ cancel: CancelOnClose; res: http.ServerResponse }>();

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://daemon').pathname;
    } catch {
      return false;
    }
    if (pathname !== '/v1' && !pathname.startsWith('/v1/')) return false;
    const address = req.socket.remoteAddress ?? 'unknown';
    const client = `http:${address}`;
    const origin = req.headers.origin;
    if (origin !== undefined && (o.allowedOrigins ?? []).includes(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Vary', 'Origin');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, POST, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '600' });
        res.end();
        return true;
      }
    }
    void (async () => {
      const refusal = admission(req, o);
      if (refusal) {
        const type = refusal.status === 401 ? 'authentication_error' : refusal.status === 403 ? 'permission_error' : 'invalid_request_error';
        log(`[warn] openai: refused ${req.method} ${pathname} from ${address}: ${refusal.status} ${refusal.reason}`);
        throw new HttpError(refusal.status, refusal.reason, type, refusal.status === 401 ? 'invalid_api_key' : null);
      }
      let rate = rates.get(address);
      if (!rate) {
        if (rates.size >= 4096) rates.clear(); // many addresses: forget the old windows rather than grow
        rates.set(address, (rate = new RateLimiter(core.limits.requestsPerMinute)));
      }
      rate.check(`${req.method} ${pathname}`);
      const route = `${req.method} ${pathname.replace(/\/+$/, '')}`;
      if (route === 'GET /v1/models') return sendJson(res, 200, modelList(core.info()));
      if (route === 'POST /v1/chat/completions') return await chat(req, res, client);
      if (pathname === '/v1/models' || pathname === '/v1/chat/completions') throw new HttpError(405, `${req.method} is not allowed on ${pathname}.`, 'invalid_request_error', 'method_not_allowed');
      throw new HttpError(404, `${pathname} is not served here; this daemon serves GET /v1/models and POST /v1/chat/completions.`, 'invalid_request_error', 'not_found');
    })().catch((e: unknown) => {
      const h = toHttpError(e);
      if (h.status >= 500 && !(e instanceof LensError)) log(`[error] openai: ${req.method} ${pathname} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      if (res.headersSent) {
        if (!res.writableEnded) res.end(sseData(h.body()) + SSE_DONE);
      } else sendError(res, h);
    });
    return true;
  };

  return {
    handle,
    close: () => {
      for (const f of inFlight) {
        f.cancel.cancel();
        f.res.destroy();
      }
      inFlight.clear();
    },
  };

  async function chat(req: http.IncomingMessage, res: http.ServerResponse, client: string): Promise<void> {
    const raw = await readBody(req, maxBody);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      throw new HttpError(400, `the body is not valid JSON (${(e as Error).message}).`, 'invalid_request_error', 'invalid_json');
    }
    const chat = parseChatRequest(body);
    if (chat.maxTokens !== undefined && chat.maxTokens > core.limits.maxNewTokens) {
      throw new LensError(LensErrorCode.LimitExceeded, `"max_tokens" ${chat.maxTokens} is over this daemon's limit of ${core.limits.maxNewTokens} new tokens per request: ask for fewer.`);
    }
    const cancel = new CancelOnClose();
    const flight = { cancel, res };
    inFlight.add(flight);
    res.on('close', () => {
      inFlight.delete(flight);
      if (!res.writableFinished) cancel.cancel();
    });
    const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
    const created = Math.floor(Date.now() / 1000);
    let model = chat.model ?? '';
    const chunk = (delta: ChatChunk['choices'][0]['delta'], finish: ChatChunk['choices'][0]['finish_reason'] = null): ChatChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    });
    let started = false;
    const startStream = () => {
      if (started || res.destroyed) return;
      started = true;
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
      res.write(sseData(chunk({ role: 'assistant', content: '' })));
    };
    const streamsText = chat.stream && chat.tools.length === 0;

    const result = await core.queue.enqueue<AskResult | undefined>(
      {
        label: 'POST /v1/chat/completions',
        client,
        run: async (signal) => {
          if (signal.aborted) return undefined;
          const engine = core.engine();
          const info = engine.info();
          if (!info) {
            throw new LensError(LensErrorCode.ModelNotLoaded, core.lastLoadError ? `no model is loaded: the last load failed (${core.lastLoadError}).` : 'no model is loaded yet: retry when GET /v1/models lists one.');
          }
          if (chat.model !== undefined && chat.model !== info.name && chat.model !== info.path) {
            throw new HttpError(404, `this daemon serves the model "${info.name}", not "${chat.model}" (GET /v1/models lists it).`, 'invalid_request_error', 'model_not_found');
          }
          model = info.name;
          const askReq = toAskRequest(chat, info, client);
          return engine.ask(
            askReq,
            (d) => {
              if (!streamsText || d.text === '' || res.destroyed) return;
              startStream();
              res.write(sseData(chunk({ content: d.text })));
            },
            signal,
          );
        },
        whenCancelledWhileQueued: () => undefined,
      },
      cancel,
    );
    if (!result || result.finishReason === 'cancelled' || cancel.isCancellationRequested) {
      log(`[info] openai: ${client} closed its chat completion request; the answer was cancelled${result ? ` after ${result.timings.newTokens} tokens` : ' before it started'}`);
      if (!res.writableEnded) res.end();
      return;
    }
    const { content, calls } = chat.tools.length ? extractToolCalls(result.text, chat.tools, chat.parallelToolCalls) : { content: result.text, calls: [] as WireToolCall[] };
    const finish = calls.length ? 'tool_calls' : wireFinishReason(result.finishReason);
    const usage = usageOf(result);
    if (!chat.stream) {
      const answer: ChatCompletion = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content, ...(calls.length ? { tool_calls: calls } : {}) }, finish_reason: finish, logprobs: null }],
        usage,
      };
      sendJson(res, 200, answer);
      return;
    }
    startStream();
    if (!streamsText && content) res.write(sseData(chunk({ content })));
    if (calls.length) {
      res.write(sseData(chunk({ tool_calls: calls.map((c, index) => ({ index, id: c.id, type: 'function' as const, function: { name: c.function.name, arguments: c.function.arguments } })) })));
    }
    res.write(sseData(chunk({}, finish)));
    if (chat.includeUsage) res.write(sseData({ id, object: 'chat.completion.chunk', created, model, choices: [], usage }));
    res.end(SSE_DONE);
  }

  /** The engine's stateless ask for a checked request, with the daemon's limits applied. */
  function toAskRequest(chat: ParsedChat, info: ModelInfo, client: string): AskRequest {
    const { history, turn } = toEngineTurns(chat.messages, chat.tools, toolFormatFor(info));
    for (const img of [...history.flatMap((h) => h.images), ...turn.images]) {
      const size = 'bytes' in img ? img.bytes.length : 0;
      if (size > core.limits.maxImageBytes) {
        throw new LensError(LensErrorCode.ImageTooLarge, `an image of ${size} bytes is over this daemon's limit of ${core.limits.maxImageBytes} bytes: send a smaller image.`);
      }
    }
    const req: AskRequest = {
      history,
      images: turn.images,
      prompt: turn.text,
      role: turn.role,
      owner: client,
      options: {
        maxTokens: chat.maxTokens ?? core.limits.maxNewTokens,
        temperature: chat.temperature ?? 1,
        topK: chat.topK ?? 0,
        topP: chat.topP ?? 1,
        repetitionPenalty: chat.repetitionPenalty ?? 1,
        stop: chat.stop,
        ...(chat.seed !== undefined ? { seed: chat.seed } : {}),
      },
    };
    if (core.limits.maxPromptTokens > 0) req.maxPromptTokens = core.limits.maxPromptTokens;
    checkAgainstModel(req, info, chat.maxTokens !== undefined);
    return req;
  }
}
