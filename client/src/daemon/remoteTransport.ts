/**
 * The extension's transport to a shared daemon (`llavaLens.remote.url`): opens the WebSocket with
 * the token from SecretStorage (and `llavaLens.remote.tlsCa` for `wss://`), and hands
 * vscode-languageclient the JSON-RPC reader/writer over it. No 'vscode' import: the caller passes
 * the token getter, so this is testable without VS Code.
 *
 * Errors are `RemoteConnectError`s saying which case it is (no token, refused with an HTTP
 * status, unreachable, unreadable CA file), so the caller can offer the right fix.
 */
import { promises as fs } from 'node:fs';
import type WebSocket from 'ws';
import type { MessageTransports } from 'vscode-languageclient/node';
import { connectWebSocket, ConnectError, WebSocketMessageReader, WebSocketMessageWriter } from '../../../common/wsTransport';

/** Waits between reconnection attempts after a dropped connection; their count bounds the attempts. */
export const RECONNECT_DELAYS_MS: readonly number[] = [1000, 2000, 4000, 8000, 15000];

export class RemoteConnectError extends Error {
  constructor(
    message: string,
    /** HTTP status of the daemon's refusal (401 token, 403 origin/address, 503 full). */
    readonly status?: number,
    /** No token is stored. */
    readonly noToken = false,
  ) {
    super(message);
    this.name = 'RemoteConnectError';
  }

  /** Retrying the same way cannot help (the token or the daemon's policy must change first). */
  get refused(): boolean {
    return this.noToken || this.status === 401 || this.status === 403;
  }
}

export interface RemoteOptions {
  url: string;
  /** Reads the token (SecretStorage); undefined or '' when none is set. */
  token: () => Promise<string | undefined>;
  /** PEM file to trust for `wss://`; '' for the system's CAs. */
  tlsCa: string;
  timeoutMs?: number;
}

/** Opens a socket to the daemon; rejects with a `RemoteConnectError`. */
export async function openRemoteSocket(o: RemoteOptions): Promise<WebSocket> {
  const token = await o.token();
  if (!token) throw new RemoteConnectError(`no token is set for ${o.url}`, undefined, true);
  let ca: string | undefined;
  if (o.tlsCa) {
    try {
      ca = await fs.readFile(o.tlsCa, 'utf8');
    } catch (e) {
      throw new RemoteConnectError(`cannot read llavaLens.remote.tlsCa ${o.tlsCa}: ${(e as Error).message}`);
    }
  }
  try {
    return await connectWebSocket(o.url, { token, ...(ca !== undefined ? { ca } : {}), ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) });
  } catch (e) {
    if (e instanceof ConnectError) throw new RemoteConnectError(e.message, e.status);
    throw new RemoteConnectError(e instanceof Error ? e.message : String(e));
  }
}

/** The JSON-RPC reader/writer over an open socket, as vscode-languageclient takes them. */
export function transportsOver(socket: WebSocket): MessageTransports {
  socket.on('error', () => undefined); // the reader reports it; 'close' follows
  return { reader: new WebSocketMessageReader(socket), writer: new WebSocketMessageWriter(socket), detached: true };
}

/**
 * Closes a socket normally and resolves once it is closed; cuts it (terminate) when the daemon
 * does not answer the close handshake within `timeoutMs`.
 */
export function closeSocket(socket: WebSocket, timeoutMs = 2000): Promise<void> {
  if (socket.readyState === socket.CLOSED) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => socket.terminate(), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    if (socket.readyState !== socket.CLOSING) socket.close(1000, 'client done');
  });
}
