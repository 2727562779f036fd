/**
 * Fuzzing the shared daemon's WebSocket front (issue 6 §6): one real `llava-lens serve --ws`
 * process with the tiny-llava model loaded gets about 11,000 generated hostile frames
 * (test/fixtures/fuzzFrames.ts, seeded) over a sequence of connections, one frame at a time:
 * random text and bytes, invalid and truncated JSON, wrong types for every field of every lens/*
 * method, missing fields, megabyte strings, 10^5-deep nesting, batches, unusable ids, unknown
 * methods, notifications with bad params, requests before `initialize`, `$/cancelRequest` for
 * unknown ids, responses nobody asked for, invalid UTF-8, binary frames, frames over
 * --max-message-bytes and raw WebSocket protocol violations.
 *
 * Each frame must get what fuzzFrames.ts says: an error with the right id and code, no answer
 * (notifications, checked with a probe request after it), or a close with the right code. At the
 * end the daemon still runs, answers the same ask with the same token ids as before, and never
 * logged an uncaught exception or unhandled rejection.
 *
 * Seed: LLAVA_LENS_FUZZ_SEED (default fixed); scale: LLAVA_LENS_FUZZ_SCALE (default 1).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import type { LensClient } from '../../client/src/daemonClient';
import { connectWebSocket, WebSocketMessageReader } from '../../common/wsTransport';
import { makeTestModel } from '../../server/src/testmodel';
import { Code, fuzzCases, type Expect, type FuzzCase, type Id } from '../fixtures/fuzzFrames';
import { quadrantsPng } from '../fixtures/images';
import { serveWs, type ServedDaemon } from './wsServe';

const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
const SEED = Number(process.env.LLAVA_LENS_FUZZ_SEED ?? 20240611);
const SCALE = Number(process.env.LLAVA_LENS_FUZZ_SCALE ?? 1);
/** Connections used side by side. */
const LANES = 4;
/** Longest wait for one frame's outcome. */
const FRAME_TIMEOUT_MS = 5_000;
/** The whole fuzz run must finish within this (it takes about 10 s on 2 busy cores). */
const RUN_BUDGET_MS = 50_000;
/** An error object longer than this echoes the input back (the fuzz sends megabytes). */
const MAX_ERROR_CHARS = 8 * 1024;
/** RSS growth accepted over the whole run (the daemon's RSS after the first ask is ~130 MB). */
const RSS_GROWTH_LIMIT = 300 * 1024 * 1024;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-ws-fuzz-'));
const modelDir = path.join(root, 'models', 'tiny-llava');
let daemon: ServedDaemon;
let image: Buffer;

before(async () => {
  await makeTestModel(modelDir, { preset: 'tiny-llava', seed: 1 });
  image = await quadrantsPng(64, 48);
  daemon = await serveWs({ model: modelDir, stateDir: path.join(root, 'state'), args: ['--max-message-bytes', String(MAX_MESSAGE_BYTES), '--requests-per-minute', '0', '--no-persist'] });
});
after(async () => {
  // A daemon that hangs would not handle SIGTERM: kill it after a while.
  if (daemon) await Promise.race([daemon.stop(), new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]).then(() => daemon.kill9());
  fs.rmSync(root, { recursive: true, force: true });
});

const ASK = { prompt: 'What is in this picture?', maxTokens: 8, temperature: 0 };

async function askOnce(): Promise<{ tokenIds: number[]; text: string }> {
  const client: LensClient = await daemon.connect();
  try {
    const r = await client.ask({ ...ASK, images: [{ bytes: image.toString('base64'), mimeType: 'image/png' }] });
    return { tokenIds: r.tokenIds, text: r.text };
  } finally {
    client.dispose();
  }
}

// --- A bare JSON-RPC-over-WebSocket peer that reports everything ----------------------------------

type Event = { type: 'response'; msg: Record<string, unknown>; raw: string } | { type: 'close'; code: number; reason: string } | { type: 'timeout' };

class Peer {
  readonly ws: WebSocket;
  private readonly events: Event[] = [];
  private waiter: ((e: Event) => void) | undefined;
  closed: { code: number; reason: string } | undefined;
  initialized = false;
  preInitUsed = false;
  /** A wait on this connection ended without an answer. */
  lastTimedOut = false;
  /** Daemon-to-client notifications seen (lens/status, window/logMessage). */
  notifications = 0;
  /** Frames from the daemon that were not JSON. */
  garbage: string[] = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary) => {
      const raw = data.toString('utf8');
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        this.garbage.push(raw.slice(0, 200));
        return;
      }
      if (isBinary) this.garbage.push(`binary: ${raw.slice(0, 200)}`);
      if ('method' in msg) {
        this.notifications++;
        return;
      }
      this.push({ type: 'response', msg, raw });
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString('utf8') };
      this.push({ type: 'close', ...this.closed });
    });
    ws.on('error', () => undefined); // 'close' follows
  }

  static async open(url: string, token: string): Promise<Peer> {
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Peer(ws);
  }

  private push(e: Event): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w(e);
    } else this.events.push(e);
  }

  /** The next response or the close, whichever comes first. */
  next(timeoutMs = FRAME_TIMEOUT_MS): Promise<Event> {
    const e = this.events.shift();
    if (e) return Promise.resolve(e);
    if (this.closed) return Promise.resolve({ type: 'close', ...this.closed });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.lastTimedOut = true;
        resolve({ type: 'timeout' });
      }, timeoutMs);
      this.waiter = (ev) => {
        clearTimeout(timer);
        resolve(ev);
      };
    });
  }

  send(data: string | Buffer, binary = false, fin = true): void {
    this.ws.send(data, { binary, fin });
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000, 'fuzz done');
    else if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate();
  }
}

/** Opens a raw TCP connection, upgrades it, writes `data`, and returns the code of the daemon's close frame (1006: none). */
function rawSession(port: number, token: string, data: Buffer): Promise<{ code: number; answers: number }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    let answers = 0;
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ code, answers });
    };
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`raw session: no close within ${FRAME_TIMEOUT_MS} ms`));
    }, FRAME_TIMEOUT_MS);
    socket.on('connect', () => {
      socket.write(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${Buffer.from('fuzz-the-daemon!').toString('base64')}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`,
      );
    });
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        if (!head.startsWith('HTTP/1.1 101')) {
          done = true;
          clearTimeout(timer);
          socket.destroy();
          reject(new Error(`raw session: upgrade refused: ${head.split('\r\n')[0]}`));
          return;
        }
        upgraded = true;
        buf = buf.subarray(end + 4);
        socket.write(data);
      }
      // Server frames are unmasked: [FIN|opcode] [len] [ext len] payload.
      while (buf.length >= 2) {
        const opcode = buf[0] & 0x0f;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (opcode === 8) return finish(payload.length >= 2 ? payload.readUInt16BE(0) : 1005);
        if (opcode === 1) answers++;
      }
    });
    socket.on('error', () => finish(1006));
    socket.on('close', () => finish(1006));
  });
}

// --- The run --------------------------------------------------------------------------------------

interface Stats {
  frames: number;
  /** Frames that got the wrong treatment (`failures` keeps the first 30). */
  failed: number;
  probes: number;
  connections: number;
  rawConnections: number;
  errorsByCode: Map<number, number>;
  closesByCode: Map<number, number>;
  silent: number;
  answersWithResult: number;
  byCategory: Map<string, { n: number; failed: number; ms: number }>;
  failures: string[];
}

const bump = <K>(m: Map<K, number>, k: K) => m.set(k, (m.get(k) ?? 0) + 1);
const preview = (c: FuzzCase): string => {
  const f = c.frame;
  const s = f.type === 'text' ? (typeof f.data === 'string' ? f.data : `<built: ${f.data.toString().slice(0, 60)}>`) : f.type === 'burst' ? `<burst of ${f.frames.length}>` : `<${f.type} ${f.data.subarray(0, 40).toString('hex')}>`;
  return JSON.stringify(s.length > 160 ? s.slice(0, 160) + '…' : s);
};
const sameId = (a: unknown, b: Id | null) => a === b;

/**
 * Runs the cases over `lanes` sequences of connections side by side (the round trips, not the
 * daemon, bound the speed). A run of pre-init cases stays in one lane; everything else is dealt
 * round robin. Within a lane each frame's outcome is awaited before the next frame is sent.
 */
async function runFuzz(cases: FuzzCase[], deadline: number, lanes: number): Promise<Stats> {
  const stats: Stats = { frames: 0, failed: 0, probes: 0, connections: 0, rawConnections: 0, errorsByCode: new Map(), closesByCode: new Map(), silent: 0, answersWithResult: 0, byCategory: new Map(), failures: [] };
  const split: FuzzCase[][] = Array.from({ length: lanes }, () => []);
  let lane = 0;
  for (let i = 0; i < cases.length; i++) {
    if (!(cases[i].preInit && i > 0 && cases[i - 1].preInit)) lane = (lane + 1) % lanes;
    split[lane].push(cases[i]);
  }
  await Promise.all(split.map((laneCases) => runLane(laneCases, deadline, stats)));
  return stats;
}

async function runLane(cases: FuzzCase[], deadline: number, stats: Stats): Promise<void> {
  let peer: Peer | undefined;
  let probeN = 0;
  let initN = 0;
  let failedHere = false;
  const fail = (c: FuzzCase, why: string) => {
    if (stats.failures.length < 30) stats.failures.push(`[${c.category}] ${preview(c)}: ${why}`);
    stats.byCategory.get(c.category)!.failed++;
    stats.failed++;
    failedHere = true;
  };
  const fresh = async (initialize: boolean): Promise<Peer> => {
    peer?.close();
    const p = await Peer.open(daemon.url, daemon.token);
    stats.connections++;
    if (initialize) {
      const id = `init-${++initN}`;
      p.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'initialize', params: { processId: null, capabilities: {}, rootUri: null, workspaceFolders: null, initializationOptions: {} } }));
      const e = await p.next();
      assert.ok(e.type === 'response' && e.msg.id === id && 'result' in e.msg, `initialize failed: ${JSON.stringify(e).slice(0, 300)}`);
      p.send(JSON.stringify({ jsonrpc: '2.0', method: 'initialized', params: {} }));
      p.initialized = true;
    }
    return p;
  };
  /** Error answers must be small, well-formed and carry the expected code. */
  const checkError = (c: FuzzCase, e: Event, id: Id | null, codes: readonly number[]): boolean => {
    if (e.type !== 'response') {
      fail(c, `expected an error for id ${JSON.stringify(id)}, got ${e.type === 'close' ? `close ${e.code} ${e.reason}` : 'no answer (timeout)'}`);
      return false;
    }
    const err = e.msg.error as { code?: unknown; message?: unknown } | undefined;
    if (!sameId(e.msg.id, id)) {
      fail(c, `answered id ${JSON.stringify(e.msg.id)?.slice(0, 80)}, expected ${JSON.stringify(id)?.slice(0, 80)}: ${e.raw.slice(0, 200)}`);
      return false;
    }
    if (!err || typeof err.code !== 'number' || typeof err.message !== 'string' || err.message.length === 0) {
      fail(c, `expected an error, got ${e.raw.slice(0, 200)}`);
      return false;
    }
    bump(stats.errorsByCode, err.code);
    if (e.msg.jsonrpc !== '2.0' || 'result' in e.msg) fail(c, `malformed error response: ${e.raw.slice(0, 200)}`);
    else if (codes.length && !codes.includes(err.code)) fail(c, `error code ${err.code}, expected ${codes.join('/')}: ${err.message.slice(0, 200)}`);
    else if (JSON.stringify(err).length > MAX_ERROR_CHARS) fail(c, `the error echoes the input (${JSON.stringify(err).length} characters): ${err.message.slice(0, 120)}…`);
    else return true;
    return false;
  };

  for (const c of cases) {
    if (Date.now() > deadline) {
      stats.failures.push(`run budget of ${RUN_BUDGET_MS} ms exhausted after ${stats.frames} frames`);
      break;
    }
    const cat = stats.byCategory.get(c.category) ?? { n: 0, failed: 0, ms: 0 };
    stats.byCategory.set(c.category, cat);
    cat.n++;
    failedHere = false;
    const t0 = performance.now();
    stats.frames++;
    const f = c.frame;
    if (f.type === 'raw') {
      stats.rawConnections++;
      try {
        const r = await rawSession(daemon.port, daemon.token, f.data);
        bump(stats.closesByCode, r.code);
        if (c.expect.kind !== 'close' || !c.expect.codes.includes(r.code)) fail(c, `raw session closed with ${r.code}`);
        if (r.answers) fail(c, `${r.answers} text frame(s) answered on a connection that broke the protocol`);
      } catch (e) {
        fail(c, (e as Error).message);
      }
      cat.ms += performance.now() - t0;
      continue;
    }
    // The connection this case needs: a fresh uninitialized one for a pre-init group, else an initialized one.
    if (c.preInit) {
      if (!peer || peer.closed || peer.initialized) peer = await fresh(false);
      peer.preInitUsed = true;
    } else if (!peer || peer.closed || !peer.initialized || peer.preInitUsed) {
      peer = await fresh(true);
    }
    const p = peer;
    if (f.type === 'text') p.send(typeof f.data === 'string' ? f.data : f.data());
    else if (f.type === 'bytes') p.send(f.data, false);
    else if (f.type === 'binary') p.send(f.data, true);
    else for (const part of f.frames) p.send(part.data, part.binary, part.fin ?? true);

    const x: Expect = c.expect;
    if (x.kind === 'error') {
      checkError(c, await p.next(), x.id, x.codes);
    } else if (x.kind === 'answer') {
      const e = await p.next();
      if (e.type !== 'response' || !sameId(e.msg.id, x.id)) fail(c, `expected an answer to ${JSON.stringify(x.id)}, got ${e.type === 'response' ? e.raw.slice(0, 200) : e.type}`);
      else if ('result' in e.msg) stats.answersWithResult++;
      else checkError(c, e, x.id, []);
      // An initialize that succeeded leaves this connection initialized by the fuzz: start over after it.
      p.initialized = true;
    } else if (x.kind === 'silent') {
      const id = `probe-${++probeN}`;
      stats.probes++;
      p.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'lens/fuzzProbe' }));
      const e = await p.next();
      if (e.type === 'response' && e.msg.id === id) {
        const code = (e.msg.error as { code?: number } | undefined)?.code;
        if (code === Code.MethodNotFound) stats.silent++;
        else fail(c, `the probe after it got ${e.raw.slice(0, 200)}`);
      } else fail(c, `a notification or response was answered (or the connection broke): ${e.type === 'response' ? e.raw.slice(0, 200) : e.type === 'close' ? `close ${e.code} ${e.reason}` : 'timeout'}`);
    } else {
      const e = await p.next();
      if (e.type === 'close') {
        bump(stats.closesByCode, e.code);
        if (!x.codes.includes(e.code)) fail(c, `closed with ${e.code} (${e.reason}), expected ${x.codes.join('/')}`);
      } else {
        fail(c, `expected a close ${x.codes.join('/')}, got ${e.type === 'response' ? e.raw.slice(0, 200) : 'timeout'}`);
        p.close();
      }
    }
    if (p.lastTimedOut || failedHere) {
      // After a hang or a wrong answer the connection is abandoned: one fault costs one timeout,
      // and later frames are not judged against answers that belong to earlier ones.
      p.close();
      peer = undefined;
    }
    if (p.garbage.length) {
      fail(c, `the daemon sent frames that are not JSON text: ${p.garbage.join(' | ').slice(0, 200)}`);
      p.garbage.length = 0;
    }
    cat.ms += performance.now() - t0;
  }
  peer?.close();
}

const fmt = (m: Map<number, number>) => [...m].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}: ${v}`).join(', ');
const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;

test('ws fuzz: ~11,000 hostile frames against one real daemon; every one refused or closed as specified; the daemon survives and answers the same', { timeout: 180_000 }, async (t) => {
  const started = Date.now();
  const baseline = await askOnce();
  assert.ok(baseline.tokenIds.length > 0, 'the baseline ask produced tokens');
  const rssBefore = daemon.rssBytes();
  const cases = fuzzCases(SEED, { maxMessageBytes: MAX_MESSAGE_BYTES, contextLength: 1024, scale: SCALE });
  assert.ok(SCALE < 1 || cases.length >= 10_000, `${cases.length} cases generated`);

  const stats = await runFuzz(cases, started + RUN_BUDGET_MS, LANES);
  const rssAfterFuzz = daemon.rssBytes();

  const after = await askOnce();
  const rssAfter = daemon.rssBytes();
  const log = daemon.log();
  const crashes = (log.match(/uncaught exception|unhandled rejection/gi) ?? []).length;
  const internal = (log.match(/failed unexpectedly/g) ?? []).length;

  t.diagnostic(`seed ${SEED}, scale ${SCALE}: ${stats.frames} frames sent (+${stats.probes} probes) over ${stats.connections} WebSocket connections (${LANES} at a time) and ${stats.rawConnections} raw TCP ones in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.diagnostic(`errors by code: ${fmt(stats.errorsByCode)}`);
  t.diagnostic(`closes by code: ${fmt(stats.closesByCode)}`);
  t.diagnostic(`not answered (notifications, client responses; connection still usable): ${stats.silent}; initialize with odd LSP fields answered with a result: ${stats.answersWithResult}`);
  t.diagnostic(`crashes: ${daemon.child.exitCode === null && daemon.child.signalCode === null ? 0 : 1}; uncaught/unhandled in the log: ${crashes}; "failed unexpectedly" (Internal) in the log: ${internal}`);
  t.diagnostic(`RSS: ${mb(rssBefore)} before, ${mb(rssAfterFuzz)} after the fuzz, ${mb(rssAfter)} after the final ask`);
  for (const [cat, s] of [...stats.byCategory].sort()) t.diagnostic(`  ${cat}: ${s.n} frames, ${s.failed} failed, ${(s.ms / s.n).toFixed(2)} ms each`);
  for (const f of stats.failures) t.diagnostic(`FAIL ${f}`);
  if (stats.failures.length || crashes || internal) t.diagnostic(`daemon log (end):\n${log.slice(-4000)}`);

  assert.deepEqual(stats.failures, [], `${stats.failed} frame(s) got the wrong treatment (the first ones above)`);
  assert.equal(stats.frames, cases.length);
  assert.equal(daemon.child.exitCode, null, 'the daemon is still running');
  assert.equal(daemon.child.signalCode, null, 'the daemon is still running');
  assert.equal(crashes, 0, 'no uncaught exception or unhandled rejection was logged');
  assert.equal(internal, 0, 'no handler failed unexpectedly');
  assert.deepEqual(after.tokenIds, baseline.tokenIds, 'the same greedy ask gives the same tokens after the fuzz');
  assert.ok(rssAfter - rssBefore < RSS_GROWTH_LIMIT, `RSS grew by ${mb(rssAfter - rssBefore)} (limit ${mb(RSS_GROWTH_LIMIT)})`);
});

test('a peer that checks its input like the daemon does not answer the daemon\'s error answers (no error ping-pong)', { timeout: 20_000 }, async () => {
  const socket = await connectWebSocket(daemon.url, { token: daemon.token });
  let idNullErrors = 0;
  const answered = new Map<string, () => void>();
  socket.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString('utf8')) as { id?: unknown; error?: unknown };
    if (m.id === null && m.error) idNullErrors++;
    if (typeof m.id === 'string') answered.get(m.id)?.();
  });
  // This reader answers malformed frames itself, as the daemon's does.
  const reader = new WebSocketMessageReader(socket);
  reader.listen(() => undefined);
  const probe = (id: string) =>
    new Promise<void>((resolve) => {
      answered.set(id, resolve);
      socket.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'lens/fuzzProbe' }));
    });
  socket.send('this is not JSON');
  // Each probe's answer comes after everything the daemon sent before it; an echo would have made
  // the daemon send another id-null error by the third probe.
  for (let i = 0; i < 3; i++) await probe(`p${i}`);
  socket.close();
  assert.equal(idNullErrors, 1, 'exactly one ParseError answer: the client\'s reader did not answer it back');
});

test('an error does not echo a megabyte object key back', async () => {
  const peer = await Peer.open(daemon.url, daemon.token);
  try {
    peer.send(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { processId: null, capabilities: {} } }));
    assert.equal((await peer.next()).type, 'response');
    const key = 'k'.repeat(1 << 20);
    peer.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'lens/loadModel', params: { path: '/nonexistent', dtype: { [key]: 'fp16' } } }));
    const e = await peer.next();
    assert.ok(e.type === 'response' && e.msg.error, JSON.stringify(e).slice(0, 200));
    assert.equal((e.msg.error as { code: number }).code, Code.InvalidParams);
    assert.ok(e.raw.length < MAX_ERROR_CHARS, `the answer is ${e.raw.length} characters`);
  } finally {
    peer.close();
  }
});

test('a prompt of megabytes is refused before it is tokenized', async () => {
  const client = await daemon.connect();
  try {
    const t0 = performance.now();
    const e = await client.ask({ prompt: 'word '.repeat((3 << 20) / 5), images: [], maxTokens: 2 }).then(
      () => assert.fail('a 3 MB prompt was answered'),
      (err: { code: number; message: string }) => err,
    );
    const ms = performance.now() - t0;
    assert.equal(e.code, 1020, e.message);
    assert.ok(ms < 1000, `refused after ${ms.toFixed(0)} ms`);
  } finally {
    client.dispose();
  }
});

test('requests before initialize and a second initialize are refused (LSP: -32002 / InvalidRequest)', async () => {
  const peer = await Peer.open(daemon.url, daemon.token);
  try {
    peer.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'lens/listTools' }));
    const before = await peer.next();
    assert.ok(before.type === 'response');
    assert.equal((before.msg.error as { code?: number } | undefined)?.code, -32002, `lens/listTools before initialize: ${before.raw.slice(0, 200)}`);
    peer.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'initialize', params: { processId: null, capabilities: {} } }));
    assert.ok('result' in ((await peer.next()) as { msg: object }).msg);
    peer.send(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'initialize', params: { processId: null, capabilities: {}, workspaceFolders: [{ uri: 'file:///', name: 'root' }] } }));
    const again = await peer.next();
    assert.ok(again.type === 'response');
    assert.equal((again.msg.error as { code?: number } | undefined)?.code, -32600, `a second initialize: ${again.raw.slice(0, 200)}`);
  } finally {
    peer.close();
  }
});
