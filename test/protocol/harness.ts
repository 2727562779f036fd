/**
 * In-process daemon for protocol tests: the daemon and a client talk over two in-memory
 * `PassThrough` streams with LSP framing, exactly as over stdio.
 *
 * - `startTyped()` gives a `LensClient` (the real client library) on the other end.
 * - `startRaw()` gives a raw writer/reader so tests can send arbitrary bytes and see every reply.
 * Helpers wait on events, never on time.
 */
import { PassThrough } from 'node:stream';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import type { Message } from 'vscode-jsonrpc';
import { LensClient } from '../../client/src/daemonClient';
import type { LensInitializationOptions, LensStatus } from '../../common/protocol';
import { createDaemonConnection } from '../../server/src/daemon/connection';
import { startDaemon, type DaemonHandle } from '../../server/src/daemon/server';
import { FakeEngine } from '../fakes/fakeEngine';

export interface Harness {
  engine: FakeEngine;
  daemon: DaemonHandle;
  /** Exit codes the daemon reported (0 after shutdown+exit, 1 for exit alone). */
  exitCodes: number[];
  /** Client -> daemon byte stream. */
  toDaemon: PassThrough;
  /** Daemon -> client byte stream. */
  fromDaemon: PassThrough;
}

// A private daemon's lens/listModels also scans the models folder (downloads): keep this
// machine's folder out of these tests.
process.env.LLAVA_LENS_MODELS_DIR ??= path.join(os.tmpdir(), `lens-protocol-models-${process.pid}`);

function wire(engine: FakeEngine): Harness {
  const toDaemon = new PassThrough();
  const fromDaemon = new PassThrough();
  const exitCodes: number[] = [];
  const connection = createDaemonConnection(new StreamMessageReader(toDaemon), new StreamMessageWriter(fromDaemon), {
    onExit: (code) => exitCodes.push(code),
  });
  const daemon = startDaemon(connection, () => engine, { version: '9.9.9-test', executionProviders: () => ['cpu', 'webgpu'] });
  return { engine, daemon, exitCodes, toDaemon, fromDaemon };
}

export interface TypedHarness extends Harness {
  client: LensClient;
  statuses: LensStatus[];
  /** Resolves with the first status (already received or future) matching `pred`. */
  waitForStatus(pred: (s: LensStatus) => boolean): Promise<LensStatus>;
  /** shutdown + exit, then checks the daemon reported exit code 0. */
  close(): Promise<void>;
}

export async function startTyped(
  opts: { engine?: FakeEngine; init?: LensInitializationOptions; initialize?: boolean; workspaceFolder?: string } = {},
): Promise<TypedHarness> {
  const h = wire(opts.engine ?? new FakeEngine());
  const connection = createMessageConnection(new StreamMessageReader(h.fromDaemon), new StreamMessageWriter(h.toDaemon));
  const client = new LensClient(connection);
  const statuses: LensStatus[] = [];
  const waiters: Array<{ pred: (s: LensStatus) => boolean; resolve: (s: LensStatus) => void }> = [];
  client.onStatus((s) => {
    statuses.push(s);
    for (const w of [...waiters]) {
      if (w.pred(s)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(s);
      }
    }
  });
  const waitForStatus = (pred: (s: LensStatus) => boolean) =>
    new Promise<LensStatus>((resolve) => {
      const seen = statuses.find(pred);
      if (seen) resolve(seen);
      else waiters.push({ pred, resolve });
    });
  if (opts.initialize !== false) {
    await client.initialize({
      initializationOptions: opts.init ?? {},
      ...(opts.workspaceFolder ? { workspaceFolders: [{ uri: `file://${opts.workspaceFolder}`, name: 'ws' }] } : {}),
    });
  }
  return {
    ...h,
    client,
    statuses,
    waitForStatus,
    close: async () => {
      await client.shutdown();
      await h.daemon.exited;
      h.toDaemon.end();
      h.fromDaemon.end();
    },
  };
}

export interface RawHarness extends Harness {
  /** Every message the daemon sent, in order. */
  received: Message[];
  /** Writes a JSON-RPC message (object) or raw text with a correct Content-Length header. */
  send(message: object | string): void;
  /** Writes bytes as they are (for broken framing). */
  sendBytes(bytes: string): void;
  /** Resolves with the response to request `id`. */
  response(id: number | string): Promise<{ id: number | string; result?: unknown; error?: { code: number; message: string; data?: unknown } }>;
  close(): Promise<void>;
}

export function startRaw(engine = new FakeEngine()): RawHarness {
  const h = wire(engine);
  const received: Message[] = [];
  const waiters: Array<() => void> = [];
  const reader = new StreamMessageReader(h.fromDaemon);
  reader.listen((m) => {
    received.push(m);
    for (const w of waiters.splice(0)) w();
  });
  const sendBytes = (bytes: string) => void h.toDaemon.write(bytes);
  const send = (message: object | string) => {
    const body = typeof message === 'string' ? message : JSON.stringify(message);
    sendBytes(`Content-Length: ${Buffer.byteLength(body, 'utf8')}\r\n\r\n${body}`);
  };
  const response = (id: number | string) =>
    new Promise<{ id: number | string; result?: unknown; error?: { code: number; message: string; data?: unknown } }>((resolve) => {
      const check = () => {
        const m = received.find((x) => (x as { id?: unknown }).id === id && ('result' in x || 'error' in x));
        if (m) resolve(m as never);
        else waiters.push(check);
      };
      check();
    });
  return {
    ...h,
    received,
    send,
    sendBytes,
    response,
    close: async () => {
      send({ jsonrpc: '2.0', id: 'shutdown', method: 'shutdown' });
      await response('shutdown');
      send({ jsonrpc: '2.0', method: 'exit' });
      await h.daemon.exited;
      reader.dispose();
      h.toDaemon.end();
      h.fromDaemon.end();
    },
  };
}

/** A temporary folder holding a fake model (`config.json` + `onnx/`), and a PNG image. */
export async function makeFixtures(): Promise<{ root: string; model: string; image: string; png: Buffer; cleanup(): Promise<void> }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-proto-'));
  const model = path.join(root, 'models', 'tiny');
  await fs.mkdir(path.join(model, 'onnx'), { recursive: true });
  await fs.writeFile(path.join(model, 'config.json'), JSON.stringify({ model_type: 'llava_onevision' }));
  // A valid 1x1 PNG (the fake engine only sniffs the signature).
  const png = Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
    'base64',
  );
  const image = path.join(root, 'img.png');
  await fs.writeFile(image, png);
  return { root, model, image, png, cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

/** A promise plus its resolver, for holding the fake engine at a point until the test says go. */
export function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Resolves when `signal` aborts (at once if it already has). */
export function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
