/**
 * HTTP to an OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, Ollama, this daemon's
 * own endpoint) for `OpenAiEngine`, with Node's fetch: `GET {baseUrl}/models` and a streamed
 * `POST {baseUrl}/chat/completions`.
 *
 * Errors: every failure is a `LensError(BackendFailed)` whose message names the URL, the HTTP
 * status and an excerpt of what the server said, plus what to check; `data` is `{url, status?}`.
 * An abort (the caller's signal) is not turned into one: the abort error passes through, so the
 * caller can tell "cancelled" from "failed". The key goes only in `Authorization: Bearer`.
 */
import { LensError, LensErrorCode } from '../../../common/errors';
import { readSseData } from './sse';
import type { ChatChunk, ChatCompletion, ChatRequest, WireModelList } from './wire';

export interface OpenAiServer {
  /** e.g. `http://127.0.0.1:8000/v1` (with or without a trailing slash). */
  baseUrl: string;
  apiKey?: string;
}

export function endpointUrl(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/${path}`;
}

function headers(server: OpenAiServer, json: boolean): Record<string, string> {
  return {
    Accept: json ? 'application/json' : 'text/event-stream, application/json',
    ...(json ? {} : { 'Content-Type': 'application/json' }),
    ...(server.apiKey ? { Authorization: `Bearer ${server.apiKey}` } : {}),
  };
}

const excerpt = (s: string, n = 300) => {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n)}…` : t;
};

/** Why fetch failed, from its `cause` (ECONNREFUSED, ENOTFOUND, "other side closed", …). */
function reason(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
}

function failed(url: string, message: string, status?: number): LensError {
  return new LensError(LensErrorCode.BackendFailed, message, { url, ...(status !== undefined ? { status } : {}) });
}

function hintFor(status: number): string {
  if (status === 401 || status === 403) return 'check the API key (--api-key, --api-key-env)';
  if (status === 404) return 'check --base-url (it usually ends in /v1) and the model name (GET /models lists them)';
  if (status === 413) return 'send fewer or smaller images';
  if (status === 429) return 'the server is rate limiting or busy: retry later';
  if (status >= 500) return 'the server failed or is overloaded: retry, or see its log';
  return 'the server refused the request';
}

async function request(server: OpenAiServer, path: string, init: RequestInit, signal?: AbortSignal): Promise<Response> {
  const url = endpointUrl(server.baseUrl, path);
  let res: Response | undefined;
  for (let attempt = 0; !res; attempt++) {
    try {
      res = await fetch(url, { ...init, ...(signal ? { signal } : {}), redirect: 'error' });
    } catch (e) {
      if (signal?.aborted) throw e;
      // A kept-alive connection the server closed just as it was reused: nothing was sent or
      // answered, so one more try is safe.
      if (attempt === 0 && /ECONNRESET|UND_ERR_SOCKET|other side closed/i.test(reason(e))) continue;
      throw failed(url, `cannot reach the OpenAI-compatible server at ${url} (${reason(e)}): is it running, and is --base-url right?`);
    }
  }
  if (res.ok) return res;
  let body = '';
  try {
    body = await res.text();
  } catch {
    // the answer's body is lost; the status says enough
  }
  let said = excerpt(body);
  try {
    const j = JSON.parse(body) as { error?: { message?: unknown } | string; message?: unknown; detail?: unknown };
    const m = typeof j.error === 'string' ? j.error : (j.error?.message ?? j.message ?? j.detail);
    if (typeof m === 'string') said = excerpt(m);
  } catch {
    // not JSON: the excerpt of the text
  }
  throw failed(url, `${url} answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''}: ${hintFor(res.status)}.${said ? ` The server said: ${said}` : ''}`, res.status);
}

/** The models the server lists (`GET /models`). */
export async function listModels(server: OpenAiServer, signal?: AbortSignal): Promise<WireModelList['data']> {
  const res = await request(server, 'models', { method: 'GET', headers: headers(server, true) }, signal);
  const url = endpointUrl(server.baseUrl, 'models');
  let j: unknown;
  try {
    j = await res.json();
  } catch (e) {
    if (signal?.aborted) throw e;
    throw failed(url, `${url} did not answer with JSON (${reason(e)}): is --base-url an OpenAI-compatible API (usually ending in /v1)?`, res.status);
  }
  const data = (j as Partial<WireModelList>)?.data;
  if (!Array.isArray(data)) throw failed(url, `${url} answered without a "data" list of models: is --base-url an OpenAI-compatible API (usually ending in /v1)?`, res.status);
  return data.filter((m) => typeof m?.id === 'string');
}

/**
 * Posts a streaming chat completion and yields its chunks, in order. A server that ignores
 * `stream` and answers with one JSON completion is read as one chunk. Rejects with
 * BackendFailed for HTTP errors, an `error` event, a dropped connection, or a stream that ends
 * before the answer does; with the abort error when `signal` aborts.
 */
export async function* streamChat(server: OpenAiServer, body: ChatRequest, signal: AbortSignal): AsyncGenerator<ChatChunk> {
  const url = endpointUrl(server.baseUrl, 'chat/completions');
  const res = await request(server, 'chat/completions', { method: 'POST', headers: headers(server, false), body: JSON.stringify(body) }, signal);
  if (!/text\/event-stream/i.test(res.headers.get('content-type') ?? '')) {
    const whole = (await res.json().catch((e: unknown) => {
      if (signal.aborted) throw e;
      throw failed(url, `${url} answered neither a stream nor JSON (${reason(e)}).`, res.status);
    })) as ChatCompletion;
    const choice = whole.choices?.[0];
    yield {
      id: whole.id,
      object: 'chat.completion.chunk',
      created: whole.created,
      model: whole.model,
      choices: choice ? [{ index: 0, delta: { content: choice.message?.content ?? null, ...(choice.message?.tool_calls ? { tool_calls: choice.message.tool_calls.map((c, index) => ({ index, ...c })) } : {}) }, finish_reason: choice.finish_reason }] : [],
      usage: whole.usage ?? null,
    };
    return;
  }
  if (!res.body) throw failed(url, `${url} answered ${res.status} without a body.`, res.status);
  let done = false;
  let finished = false;
  let chunks = 0;
  try {
    for await (const data of readSseData(res.body as unknown as AsyncIterable<Uint8Array>)) {
      if (data.trim() === '[DONE]') {
        done = true;
        break;
      }
      let chunk: ChatChunk & { error?: { message?: string } | string };
      try {
        chunk = JSON.parse(data);
      } catch {
        throw failed(url, `${url} streamed an event that is not JSON: ${excerpt(data, 120)}`, res.status);
      }
      if (chunk.error !== undefined) {
        const m = typeof chunk.error === 'string' ? chunk.error : (chunk.error.message ?? JSON.stringify(chunk.error));
        throw failed(url, `${url} reported an error mid-answer: ${excerpt(m)}`, res.status);
      }
      chunks++;
      if (chunk.choices?.some((c) => c.finish_reason)) finished = true;
      yield chunk;
    }
  } catch (e) {
    if (e instanceof LensError || signal.aborted) throw e;
    throw failed(url, `the connection to ${url} dropped mid-answer after ${chunks} chunks (${reason(e)}); the answer is incomplete: retry, and check the server's log.`, res.status);
  }
  if (!done && !finished) {
    throw failed(url, `the stream from ${url} ended after ${chunks} chunks without finishing the answer (no finish_reason, no [DONE]): the connection dropped or the server stopped; retry.`, res.status);
  }
}
