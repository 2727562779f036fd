/**
 * JSON-RPC over WebSocket, for both sides: the daemon (`llava-lens serve --ws`) and its clients
 * (the CLI's `--connect`, the extension's `llavaLens.remote.url`).
 *
 * Framing: one JSON-RPC 2.0 message per WebSocket *text* frame; no `Content-Length` headers.
 * Authentication: the token travels in the HTTP upgrade request as `Authorization: Bearer <token>`
 * and nowhere else (a token in the URL ends up in logs and proxies; it is refused).
 *
 * The reader checks every frame before vscode-jsonrpc sees it, because vscode-jsonrpc assumes
 * well-formed input (it logs and drops a message that is neither request, response nor
 * notification, which would leave a client waiting forever):
 *   - a binary frame closes the connection (1003, "send text frames");
 *   - text that is not JSON is answered with ParseError (-32700, id null);
 *   - JSON nested deeper than `MAX_JSON_DEPTH`, a batch (array), or an object that is not a
 *     JSON-RPC 2.0 request, notification or response is answered with InvalidRequest (-32600),
 *     carrying the message's id when it has a usable one;
 *   - a `$/cancelRequest` without a usable `params.id` is dropped (vscode-jsonrpc would throw on it);
 *   - frames over the size limit and invalid UTF-8 are closed by `ws` itself (1009, 1007).
 * A notification that fails these checks is answered too (with id null): the peer learns why.
 * A response (`result`/`error`, no `method`) is never answered, even a malformed one: answering
 * it would start an endless exchange of errors between two peers that both check their input
 * this way; an error response with `id: null` (JSON-RPC's answer to an unparsable message) is
 * accepted and handed on.
 */
import type { ClientRequestArgs } from 'node:http';
// The /node entry also installs vscode-jsonrpc's Node runtime, which a process using only this
// module with vscode-languageserver's main entry would otherwise lack.
import { AbstractMessageReader, AbstractMessageWriter, Disposable, ErrorCodes } from 'vscode-jsonrpc/node';
import type { DataCallback, Message, MessageReader, MessageWriter } from 'vscode-jsonrpc/node';
import WebSocket from 'ws';

/** Deepest JSON nesting accepted in one message (LSP messages need well under 10). */
export const MAX_JSON_DEPTH = 64;
/** Default largest frame, in bytes (an image of 48 MiB sent base64 fits). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** A peer that lets this much output pile up unread is disconnected. */
const MAX_BUFFERED_BYTES = 256 * 1024 * 1024;

/** Close codes used by LLaVA Lens (4000-4999 are application codes). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  UnsupportedData: 1003,
  PolicyViolation: 1008,
  TooBig: 1009,
  /** The client sent requests faster than it reads answers. */
  TooSlow: 4008,
} as const;

/** The deepest nesting of arrays/objects in JSON text (strings skipped); stops early past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return max;
}

type Problem = {
  code: number;
  message: string;
  id: number | string | null;
  /** Dropped without an answer: the message is a response, and a response is never answered. */
  silent?: boolean;
};

/** Why `value` is not one JSON-RPC 2.0 message, or undefined when it is one. */
export function checkJsonRpcMessage(value: unknown): Problem | undefined {
  if (Array.isArray(value)) return { code: ErrorCodes.InvalidRequest, message: 'JSON-RPC batches are not supported: send one message per WebSocket frame.', id: null };
  if (typeof value !== 'object' || value === null) return { code: ErrorCodes.InvalidRequest, message: 'a JSON-RPC message must be a JSON object.', id: null };
  const m = value as Record<string, unknown>;
  const rawId = m.id;
  const idOk = rawId === undefined || typeof rawId === 'string' || (typeof rawId === 'number' && Number.isSafeInteger(rawId));
  const id = idOk && rawId !== undefined ? (rawId as number | string) : null;
  const bad = (message: string): Problem => ({ code: ErrorCodes.InvalidRequest, message, id });
  if (!('method' in m) && ('result' in m || 'error' in m)) {
    // A response (the daemon sends requests such as window/workDoneProgress/create). Never
    // answered: the peer would answer the answer. `id: null` is how JSON-RPC answers a message
    // whose id could not be read, so it is a valid id here.
    const silent = (message: string): Problem => ({ ...bad(message), silent: true });
    if (m.jsonrpc !== '2.0') return silent('"jsonrpc" must be "2.0".');
    if (rawId === undefined || (rawId !== null && !idOk)) return silent('a response needs "id": a string, an integer or null.');
    return undefined;
  }
  if (m.jsonrpc !== '2.0') return bad('"jsonrpc" must be "2.0".');
  if (!idOk) return bad('"id" must be a string or an integer.');
  if ('method' in m) {
    if (typeof m.method !== 'string' || m.method.length === 0 || m.method.length > 256) return bad('"method" must be a non-empty string (at most 256 characters).');
    if (m.params !== undefined && (typeof m.params !== 'object' || m.params === null)) return bad('"params", when present, must be an object or an array.');
    return undefined;
  }
  if (rawId === undefined) return bad('a message needs "method" (request or notification) or "id" with "result"/"error" (response).');
  return bad('a response needs "result" or "error".');
}

/**
 * vscode-jsonrpc reads `$/cancelRequest`'s `params.id` as soon as the message arrives, before any
 * handler, and throws on a missing or null one (out of the socket's event handler: the
 * connection stops reading). Such a notification cancels nothing: it is dropped here.
 */
function checkCancelNotification(m: Record<string, unknown>): Problem | undefined {
  if (m.method !== '$/cancelRequest' || m.id !== undefined) return undefined;
  const p = m.params;
  const id = typeof p === 'object' && p !== null && !Array.isArray(p) ? (p as Record<string, unknown>).id : undefined;
  if (typeof id === 'string' || typeof id === 'number') return undefined;
  return { code: ErrorCodes.InvalidParams, message: '$/cancelRequest needs params {"id": <the id of the request to cancel>}.', id: null, silent: true };
}

export interface WebSocketReaderOptions {
  /** Largest nesting accepted; default `MAX_JSON_DEPTH`. */
  maxDepth?: number;
  /** Called for every refused frame (fuzz tests and the daemon's counters use it). */
  onRefused?: (problem: Problem | { code: 'binary' }) => void;
}

/** Reads JSON-RPC messages from a `ws` WebSocket; answers malformed frames itself (see header). */
export class WebSocketMessageReader extends AbstractMessageReader implements MessageReader {
  private callback: DataCallback | undefined;
  private readonly buffered: Message[] = [];

  constructor(
    private readonly socket: WebSocket,
    private readonly options: WebSocketReaderOptions = {},
  ) {
    super();
    socket.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    socket.on('close', () => this.fireClose());
    socket.on('error', (e) => this.fireError(e));
  }

  listen(callback: DataCallback): Disposable {
    this.callback = callback;
    for (const m of this.buffered.splice(0)) callback(m);
    return Disposable.create(() => (this.callback = undefined));
  }

  private onFrame(data: WebSocket.RawData, isBinary: boolean): void {
    if (isBinary) {
      this.options.onRefused?.({ code: 'binary' });
      this.socket.close(CloseCode.UnsupportedData, 'binary frames are not JSON-RPC: send each message as one text frame');
      return;
    }
    const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
    const maxDepth = this.options.maxDepth ?? MAX_JSON_DEPTH;
    let problem: Problem | undefined;
    let value: unknown;
    if (jsonDepth(text, maxDepth) > maxDepth) {
      problem = { code: ErrorCodes.InvalidRequest, message: `the message nests JSON deeper than ${maxDepth} levels.`, id: null };
    } else {
      try {
        value = JSON.parse(text);
      } catch (e) {
        problem = { code: ErrorCodes.ParseError, message: `the frame is not valid JSON (${(e as Error).message}).`, id: null };
      }
      problem ??= checkJsonRpcMessage(value) ?? checkCancelNotification(value as Record<string, unknown>);
    }
    if (problem) return this.refuse(problem);
    if (!this.callback) {
      this.buffered.push(value as Message);
      return;
    }
    try {
      this.callback(value as Message);
    } catch (e) {
      // Whatever the connection's own bookkeeping throws must not escape into the socket's event
      // handler (that stops the connection reading). A request still gets an answer.
      const m = value as { id?: unknown; method?: unknown };
      const isRequest = m.method !== undefined && (typeof m.id === 'string' || typeof m.id === 'number');
      this.refuse({
        code: ErrorCodes.InternalError,
        message: `the message could not be handled: ${e instanceof Error ? e.message : String(e)}`,
        id: isRequest ? (m.id as string | number) : null,
        silent: !isRequest,
      });
    }
  }

  /** Reports a refused message and answers it unless it is `silent`. */
  private refuse(problem: Problem): void {
    this.options.onRefused?.(problem);
    // Nothing to answer on a closing socket (frames that arrived after a close), and a failed
    // send must not become an unhandled rejection.
    if (!problem.silent && this.socket.readyState === WebSocket.OPEN) {
      sendFrame(this.socket, { jsonrpc: '2.0', id: problem.id, error: { code: problem.code, message: problem.message } }).catch(() => undefined);
    }
  }
}

function sendFrame(socket: WebSocket, value: unknown): Promise<void> {
  if (socket.readyState !== WebSocket.OPEN) return Promise.reject(new Error('the WebSocket connection is closed'));
  if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
    socket.close(CloseCode.TooSlow, 'the peer does not read its messages');
    return Promise.reject(new Error('the WebSocket peer does not read its messages'));
  }
  return new Promise((resolve, reject) => socket.send(JSON.stringify(value), (err) => (err ? reject(err) : resolve())));
}

/**
 * Writes JSON-RPC messages as text frames. A message written once the socket is closing or
 * closed is dropped without an error: vscode-jsonrpc logs a failed write as a `window/logMessage`
 * notification, whose write would fail again — an endless loop that starves the event loop (the
 * socket's 'close' event, which ends the session, would never come). Pending requests are
 * rejected when the connection is disposed on close.
 */
export class WebSocketMessageWriter extends AbstractMessageWriter implements MessageWriter {
  private errorCount = 0;

  constructor(private readonly socket: WebSocket) {
    super();
    socket.on('close', () => this.fireClose());
  }

  async write(msg: Message): Promise<void> {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    try {
      await sendFrame(this.socket, msg);
      this.errorCount = 0;
    } catch (e) {
      this.errorCount++;
      this.fireError(e as Error, msg, this.errorCount);
      throw e;
    }
  }

  end(): void {
    this.socket.close(CloseCode.Normal, 'done');
  }
}

export interface ConnectOptions {
  token: string;
  /** PEM certificate(s) to trust for `wss://` (a self-signed daemon certificate). */
  ca?: string | Buffer;
  /** Give up on the handshake after this long; default 10 s. */
  timeoutMs?: number;
  maxMessageBytes?: number;
}

/** Why a connection attempt failed, worded for the user. */
export class ConnectError extends Error {
  constructor(
    message: string,
    /** HTTP status when the daemon refused the upgrade (401 token, 403 origin/address). */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

/**
 * Opens a WebSocket to a daemon and resolves once it is open. Rejects with a `ConnectError`
 * whose message carries the daemon's own reason when it refused (wrong token, ...).
 */
export function connectWebSocket(url: string, o: ConnectOptions): Promise<WebSocket> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return Promise.reject(new ConnectError(`"${url}" is not a URL: use ws://host:port or wss://host:port.`));
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
    return Promise.reject(new ConnectError(`"${url}" is not a WebSocket URL: use ws://host:port or wss://host:port.`));
  }
  if (!o.token) return Promise.reject(new ConnectError(`no token for ${url}: pass the daemon's token (it prints where it keeps it when it starts).`));
  const options: WebSocket.ClientOptions & ClientRequestArgs = {
    headers: { Authorization: `Bearer ${o.token}` },
    handshakeTimeout: o.timeoutMs ?? 10_000,
    maxPayload: o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    perMessageDeflate: false,
  };
  if (o.ca !== undefined) options.ca = o.ca;
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(parsed, options);
    socket.once('open', () => resolve(socket));
    socket.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c.slice(0, 2000)));
      res.on('end', () => reject(new ConnectError(`the daemon at ${url} refused the connection (HTTP ${res.statusCode}): ${body.trim() || res.statusMessage}`, res.statusCode)));
      res.on('error', () => reject(new ConnectError(`the daemon at ${url} refused the connection (HTTP ${res.statusCode})`, res.statusCode)));
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'ECONNREFUSED'
          ? `nothing listens at ${url}: start the daemon there with "llava-lens serve --ws <port>"`
          : e.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || e.code === 'SELF_SIGNED_CERT_IN_CHAIN' || e.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'
            ? `the daemon's TLS certificate at ${url} is not trusted (${e.code}): pass its certificate as the CA (--tls-ca <file>)`
            : `could not connect to ${url}: ${e.message}`;
      reject(new ConnectError(why));
    });
  });
}
