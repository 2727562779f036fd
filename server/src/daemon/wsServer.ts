/**
 * The shared daemon's front door: an HTTP(S) server that upgrades authorised requests to
 * WebSocket and runs one protocol session per connection over a single `DaemonCore`.
 *
 * Admission, checked on the upgrade request before any WebSocket exists (refusals are plain
 * HTTP answers whose body is the reason; the client shows it):
 *   - a token in the URL query (`?token=`, `?access_token=`, any key naming a token, key or
 *     secret) → 400: it would end up in logs;
 *   - a `Sec-WebSocket-Protocol` header → 400: the daemon speaks no subprotocol, and that header
 *     is where browser apps smuggle tokens;
 *   - an `Origin` header (browsers always send one) not in `allowedOrigins` → 403: a web page
 *     must not drive a local daemon;
 *   - no `Authorization: Bearer <token>` → 401; a wrong token → 401 (compared in constant time);
 *   - more than `maxConnections` open → 503.
 * Plain HTTP requests get 426 (Upgrade Required). Binding a non-loopback address needs
 * `allowRemote` (the CLI prints a warning); clients from non-loopback addresses are `remote`
 * (bytes only), loopback ones `local` (paths inside their workspace folders).
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, DEFAULT_MAX_MESSAGE_BYTES, WebSocketMessageReader, WebSocketMessageWriter } from '../../../common/wsTransport';
import { createDaemonConnection } from './connection';
import type { DaemonCore } from './core';
import { attachSession, type DaemonHandle, type DaemonOptions } from './server';

export interface WsServeOptions extends DaemonOptions {
  port: number;
  host: string;
  token: string;
  /** Needed to bind anything but a loopback address. */
  allowRemote?: boolean;
  /** PEM certificate and key: serve wss:// instead of ws://. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** `Origin` values accepted (exact match); requests without `Origin` (non-browser clients) are accepted. */
  allowedOrigins?: string[];
  maxMessageBytes?: number;
  maxConnections?: number;
  /**
   * Plain HTTP requests (not upgrades) go here first; it returns true when it answered (the
   * OpenAI-compatible endpoint). It must check the token itself (`checkBearer`).
   */
  httpHandler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
}

export interface WsServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  readonly url: string;
  /** Sessions open now. */
  readonly sessions: number;
  /** Closes every connection and the listener. */
  close(): Promise<void>;
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || a === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(a);
}

function sameToken(given: string, expected: string): boolean {
  // Hash both so lengths match and timing says nothing about the expected token.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Why this upgrade request may not connect, or undefined when it may. */
export function admission(req: http.IncomingMessage, o: Pick<WsServeOptions, 'token' | 'allowedOrigins'>): { status: number; reason: string } | undefined {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://daemon');
  } catch {
    return { status: 400, reason: 'the request URL is malformed: connect to ws://host:port/.' };
  }
  for (const k of url.searchParams.keys()) {
    if (/token|auth|bearer|key|secret|password/i.test(k)) {
      return { status: 400, reason: `the token must not be in the URL ("?${k.slice(0, 40)}="): send it in the Authorization header as "Bearer <token>".` };
    }
  }
  if (req.headers['sec-websocket-protocol'] !== undefined) {
    // Browsers can set no headers on a WebSocket, so web apps smuggle tokens in the subprotocol
    // list; this daemon speaks no subprotocol and takes the token from Authorization only.
    return { status: 400, reason: 'this daemon speaks no WebSocket subprotocol (Sec-WebSocket-Protocol): send no subprotocol, and the token in the Authorization header as "Bearer <token>".' };
  }
  const origin = req.headers.origin;
  if (origin !== undefined && !(o.allowedOrigins ?? []).includes(origin)) {
    return { status: 403, reason: `requests from web pages (Origin ${origin}) are refused; a daemon operator can allow one with --allow-origin.` };
  }
  const auth = req.headers.authorization;
  if (!auth) return { status: 401, reason: 'no token: send "Authorization: Bearer <token>" (the token is in the daemon\'s state folder, or LLAVA_LENS_TOKEN).' };
  const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
  if (!m) return { status: 401, reason: 'the Authorization header must be "Bearer <token>".' };
  if (!sameToken(m[1], o.token)) return { status: 401, reason: 'wrong token: use the token of this daemon (its state folder\'s token file, or LLAVA_LENS_TOKEN where it runs).' };
  return undefined;
}

function refuse(socket: Socket, status: number, reason: string): void {
  const body = `${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Refused'}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Starts listening; resolves once bound. Throws for a non-loopback host without `allowRemote`. */
export async function serveWebSocket(core: DaemonCore, o: WsServeOptions): Promise<WsServer> {
  if (!isLoopback(o.host) && !o.allowRemote) {
    throw new Error(`refusing to listen on ${o.host}: that is reachable from other machines. Pass --allow-remote to mean it (and use --tls-cert/--tls-key), or bind 127.0.0.1.`);
  }
  const maxConnections = o.maxConnections ?? 64;
  const onRequest: http.RequestListener = (req, res) => {
    if (o.httpHandler?.(req, res)) return;
    res.writeHead(426, { 'Content-Type': 'text/plain; charset=utf-8', Upgrade: 'websocket' });
    res.end('This is a LLaVA Lens daemon: connect with a WebSocket client (llava-lens ask --connect, or the VS Code extension).\n');
  };
  const server = o.tls ? https.createServer({ cert: o.tls.cert, key: o.tls.key }, onRequest) : http.createServer(onRequest);
  const wss = new WebSocketServer({ noServer: true, maxPayload: o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, perMessageDeflate: false });
  const open = new Map<WebSocket, DaemonHandle>();
  const log = (line: string) => o.log?.(line);

  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => undefined);
    const refusal = admission(req, o) ?? (open.size >= maxConnections ? { status: 503, reason: `the daemon already serves ${maxConnections} connections; retry later.` } : undefined);
    if (refusal) {
      log(`[warn] refused a connection from ${req.socket.remoteAddress}: ${refusal.status} ${refusal.reason}`);
      refuse(socket, refusal.status, refusal.reason);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const remoteAddress = req.socket.remoteAddress;
      const kind = isLoopback(remoteAddress) ? 'local' : 'remote';
      const client = `${kind}:${remoteAddress}:${randomUUID()}`;
      const connection = createDaemonConnection(new WebSocketMessageReader(ws), new WebSocketMessageWriter(ws));
      const handle = attachSession(core, connection, { ...o, client, kind });
      open.set(ws, handle);
      log(`[info] client connected (${kind}, ${remoteAddress}); ${open.size} open`);
      const gone = () => {
        if (!open.delete(ws)) return;
        handle.disconnected();
        log(`[info] client disconnected (${remoteAddress}); ${open.size} open`);
      };
      ws.on('close', gone);
      ws.on('error', gone);
      void handle.exited.then(() => {
        if (ws.readyState === ws.OPEN) ws.close(CloseCode.Normal, 'exit');
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => log(`[error] listener: ${e.message}`));
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    port,
    url: `${o.tls ? 'wss' : 'ws'}://${hostForUrl}:${port}`,
    get sessions() {
      return open.size;
    },
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const ws of open.keys()) ws.close(CloseCode.GoingAway, 'the daemon is stopping');
      // A peer that does not answer the close handshake is cut off.
      const cut = setTimeout(() => [...open.keys()].forEach((ws) => ws.terminate()), 500);
      await closed;
      clearTimeout(cut);
      core.dispose();
    },
  };
}
