/**
 * A small in-process stand-in for `llava-lens serve --ws`, for client tests (the CLI's `--connect`,
 * `LensClient.connectWebSocket`, the extension's `llavaLens.remote.url` in code-server): a `ws`
 * server on 127.0.0.1:<free port> that checks `Authorization: Bearer <TEST_TOKEN>` on the upgrade
 * (401 with a reason otherwise) and runs the real daemon handlers (`startDaemon` over
 * `WebSocketMessageReader`/`Writer`) for each connection, all on one engine — as a shared daemon
 * shares its model. It records every JSON-RPC message clients send.
 */
// The Node runtime of vscode-jsonrpc (its "RAL"): wsTransport.ts and vscode-languageserver's main
// entry import only the common API, and without this the first message throws "No runtime
// abstraction layer installed" inside the socket's message handler.
import 'vscode-jsonrpc/node';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { WebSocketMessageReader, WebSocketMessageWriter } from '../../common/wsTransport';
import { createDaemonConnection } from '../../server/src/daemon/connection';
import { startDaemon } from '../../server/src/daemon/server';
import { FakeEngine } from '../fakes/fakeEngine';

export const TEST_TOKEN = 'test-token-0123456789';

export interface Frame {
  method?: string;
  params?: Record<string, unknown>;
}

export interface TestDaemon {
  url: string;
  engine: FakeEngine;
  /** Every JSON-RPC message clients sent, in order. */
  frames: Frame[];
  /** Sockets of the open connections (server side). */
  sockets: Set<WebSocket>;
  /** Close codes of the connections that ended. */
  closeCodes: number[];
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/** The stand-in for `serve --ws` described in the header; `engine` is shared by every connection. */
export async function startTestDaemon(engine: FakeEngine): Promise<TestDaemon> {
  const frames: Frame[] = [];
  const sockets = new Set<WebSocket>();
  const closeCodes: number[] = [];
  let connections = 0;
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((_req, res) => res.writeHead(426).end('use a WebSocket'));
  server.on('upgrade', (req, socket, head) => {
    if (req.headers.authorization !== `Bearer ${TEST_TOKEN}`) {
      const body = 'wrong or missing token: send "Authorization: Bearer <token>" with the token from the daemon\'s state folder';
      socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      connections++;
      sockets.add(ws);
      ws.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
      const connection = createDaemonConnection(new WebSocketMessageReader(ws), new WebSocketMessageWriter(ws));
      const handle = startDaemon(connection, () => engine, { version: '9.9.9-test' });
      ws.on('close', (code) => {
        sockets.delete(ws);
        closeCodes.push(code);
        handle.disconnected(); // the client went away without `exit`: its work is cancelled
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    engine,
    frames,
    sockets,
    closeCodes,
    get connections() {
      return connections;
    },
    close: async () => {
      for (const s of sockets) s.terminate();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A fake engine with `model` already loaded, as a daemon whose operator chose the model. */
export async function loadedEngine(model: string): Promise<FakeEngine> {
  const engine = new FakeEngine();
  await engine.load(model, {}, () => undefined, new AbortController().signal);
  return engine;
}

/** Records whether each asked image came as bytes or as a path. */
export function recordImageKinds(engine: FakeEngine): string[] {
  const kinds: string[] = [];
  engine.hooks.beforeAsk = (req) => void kinds.push(...req.images.map((i) => ('bytes' in i ? 'bytes' : 'path')));
  return kinds;
}

