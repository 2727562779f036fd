/**
 * Clients of a shared daemon over WebSocket: `llava-lens ask --connect` (the real CLI process) and
 * `LensClient.connectWebSocket`, against the real daemon process (`llava-lens serve --ws`, via
 * wsServe.ts) answering with the deterministic fake engine.
 *
 * The daemon listens on a non-loopback address of this machine when there is one, so these
 * clients are `remote` to it: it refuses any image path from them (PathNotAllowed, 1014), and an
 * answer about an image proves the image went as bytes. (Without such an address the clients are
 * `local` but declare no workspace folder, so a path is refused just the same.) That the CLI only
 * disconnects is checked where it matters: another client's conversation goes on afterwards.
 * What only the client can show (no process id at initialize, close code 1000, a connection that
 * drops under a call) is checked against small scripted peers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { ConnectionClosedError, LensClient } from '../../client/src/daemonClient';
import { readImageParam } from '../../client/src/imageParams';
import { LensErrorCode } from '../../common/errors';
import type { ModelInfo } from '../../common/protocol';
import { ConnectError } from '../../common/wsTransport';
import { fakeAnswerWords } from '../fakes/fakeEngine';
import { makeFixtures } from '../protocol/harness';
import { FAKE_ENGINE_MODULE, lanAddress, serveWs, WS_TEST_TOKEN as TOKEN, type ServedDaemon } from './wsServe';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'llava-lens.js');
const T = { timeout: 30_000 };
const HOST = lanAddress();

interface Frame {
  id?: number | string;
  method?: string;
  params?: Record<string, unknown>;
}

type Fixtures = Awaited<ReturnType<typeof makeFixtures>>;

/** The real shared daemon with the fake engine, its state inside the fixtures' folder; `model` loads at start. */
function serve(fx: Fixtures, model?: string): Promise<ServedDaemon> {
  return serveWs({
    stateDir: path.join(fx.root, 'state'),
    env: { LLAVA_LENS_ENGINE: FAKE_ENGINE_MODULE },
    ...(HOST ? { host: HOST } : {}),
    ...(model ? { model } : {}),
  });
}

/** The model the daemon has loaded now, as a newly connecting client is told. */
async function loadedModel(daemon: ServedDaemon): Promise<ModelInfo | null> {
  const client = await LensClient.connectWebSocket(daemon.url, { token: TOKEN });
  // The daemon sends `lens/status` right after `initialized`; leave once it came, not while it is on its way.
  const statusSent = new Promise<void>((resolve) => client.onStatus(() => resolve()));
  try {
    const init = await client.initialize();
    await statusSent;
    return init.lensCapabilities.modelLoaded;
  } finally {
    client.dispose();
  }
}

function isPathNotAllowed(e: unknown): boolean {
  assert.equal((e as { code?: number }).code, LensErrorCode.PathNotAllowed, String(e));
  return true;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LLAVA_LENS_TOKEN: '', LLAVA_LENS_MODEL: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('ask --connect streams the shared daemon\'s answer; the image goes as bytes; the daemon keeps serving its other clients', T, async () => {
  const fx = await makeFixtures();
  const daemon = await serve(fx, fx.model);
  try {
    // Another client of the shared daemon, in the middle of a conversation while the CLI comes and goes.
    const other = await daemon.connect();
    await assert.rejects(other.ask({ prompt: 'by path', images: [{ path: fx.image }] }), isPathNotAllowed, 'this daemon reads no image paths from these clients');
    const first = await other.ask({ prompt: 'first', images: [await readImageParam(fx.image)] });

    const r = await run(['ask', '--connect', daemon.url, '--token', TOKEN, fx.image, '-q', 'what is it']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, fakeAnswerWords([], 'what is it').join(' ') + '\n', 'answered, so the image went as bytes');
    assert.match(r.stderr, new RegExp(`Model: tiny \\(llava_onevision, fp32\\) on cpu at ${daemon.url}`));
    assert.match(r.stderr, /eos · \d+ tokens/);
    assert.doesNotMatch(r.stderr, /Loading model/, 'the daemon\'s model is used, nothing is loaded');
    await daemon.waitForLog(/client disconnected[^\n]*; 1 open/);

    // The CLI only disconnected: the shared model is still loaded and the other conversation goes on.
    const next = await other.ask({ prompt: 'second', conversationId: first.conversationId, images: [] });
    assert.equal(next.text, fakeAnswerWords(['first', first.text], 'second').join(' '));
    assert.equal(next.model, 'tiny');
    other.dispose();
  } finally {
    await daemon.stop();
    await fx.cleanup();
  }
});

test('ask --connect takes the token from --token-file or LLAVA_LENS_TOKEN; --model loads a folder on the daemon\'s machine', T, async () => {
  const fx = await makeFixtures();
  const daemon = await serve(fx, fx.model);
  try {
    const tokenFile = path.join(fx.root, 'token');
    await fs.writeFile(tokenFile, `${TOKEN}\n`);
    // Beside the daemon's model: inside its model roots (`--model`'s parent folder).
    const other = path.join(fx.root, 'models', 'other');
    await fs.mkdir(path.join(other, 'onnx'), { recursive: true });
    await fs.writeFile(path.join(other, 'config.json'), JSON.stringify({ model_type: 'llava' }));

    const [fromFile, fromEnv] = await Promise.all([
      run(['ask', '--connect', daemon.url, '--token-file', tokenFile, fx.image, '-q', 'from a file', '--json']),
      run(['ask', '--connect', daemon.url, fx.image, '-q', 'from the env', '--json'], { LLAVA_LENS_TOKEN: TOKEN }),
    ]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal((JSON.parse(fromFile.stdout) as { text: string }).text, fakeAnswerWords([], 'from a file').join(' '));
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.equal((JSON.parse(fromEnv.stdout) as { text: string }).text, fakeAnswerWords([], 'from the env').join(' '));
    assert.equal((await loadedModel(daemon))?.name, 'tiny', 'asking loads nothing');

    const loaded = await run(['ask', '--connect', daemon.url, '--token', TOKEN, '--model', other, fx.image, '-q', 'hi']);
    assert.equal(loaded.code, 0, loaded.stderr);
    assert.match(loaded.stderr, /Loading model 100%/);
    assert.match(loaded.stderr, /Model: other \(llava, fp32\) on cpu/);
    assert.equal(loaded.stdout, fakeAnswerWords([], 'hi').join(' ') + '\n');
    const now = await loadedModel(daemon);
    assert.equal(now?.name, 'other', 'the daemon loaded it for every client');
    assert.equal(now?.path, await fs.realpath(other));
  } finally {
    await daemon.stop();
    await fx.cleanup();
  }
});

test('ask --connect refused: a wrong token exits 1 with the daemon\'s reason; usage mistakes exit 2', T, async () => {
  const fx = await makeFixtures();
  const daemon = await serve(fx, fx.model);
  try {
    const [wrong, none, nothingThere, stray, both] = await Promise.all([
      run(['ask', '--connect', daemon.url, '--token', 'nope', fx.image, '-q', 'x']),
      run(['ask', '--connect', daemon.url, fx.image, '-q', 'x']),
      run(['ask', '--connect', 'ws://127.0.0.1:1', '--token', TOKEN, fx.image, '-q', 'x']),
      run(['ask', '--token', TOKEN, fx.image, '-q', 'x']),
      run(['ask', '--connect', daemon.url, '--token', TOKEN, '--token-file', '/x', fx.image, '-q', 'x']),
    ]);
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, /llava-lens ask: the daemon at wss?:\/\/[^\s]+:\d+ refused the connection \(HTTP 401\): wrong token: use the token of this daemon/);
    assert.equal(wrong.stdout, '');
    assert.equal(none.code, 2);
    assert.match(none.stderr, /needs the daemon's token: --token-file F, LLAVA_LENS_TOKEN/);
    assert.equal(nothingThere.code, 1);
    assert.match(nothingThere.stderr, /nothing listens at ws:\/\/127\.0\.0\.1:1/);
    assert.equal(stray.code, 2);
    assert.match(stray.stderr, /--token only applies with --connect/);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--token or --token-file, not both/);
    assert.match(daemon.log(), /refused a connection from [^\n]*: 401 wrong token/);
    assert.doesNotMatch(daemon.log(), /client connected/, 'nobody got in, so nothing was asked');
  } finally {
    await daemon.stop();
    await fx.cleanup();
  }
});

test('ask --connect to a daemon without a model says how to choose one', T, async () => {
  const fx = await makeFixtures();
  const daemon = await serve(fx);
  try {
    const r = await run(['ask', '--connect', daemon.url, '--token', TOKEN, fx.image, '-q', 'x']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /No model is loaded.*has no model loaded: pass --model <folder on the daemon's machine>/);
  } finally {
    await daemon.stop();
    await fx.cleanup();
  }
});

test('LensClient.connectWebSocket: initialize and a streamed ask with image bytes (a path is refused); a refused token is a ConnectError', T, async () => {
  const fx = await makeFixtures();
  const daemon = await serve(fx, fx.model);
  try {
    await assert.rejects(LensClient.connectWebSocket(daemon.url, { token: 'nope' }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 401);
      assert.match(e.message, /refused the connection \(HTTP 401\): wrong token/);
      return true;
    });

    const client = await LensClient.connectWebSocket(daemon.url, { token: TOKEN });
    assert.equal(client.url, daemon.url);
    const init = await client.initialize();
    assert.equal(init.lensCapabilities.modelLoaded?.name, 'tiny');
    const deltas: string[] = [];
    const r = await client.ask({ prompt: 'over ws', images: [await readImageParam(fx.image)] }, (d) => deltas.push(d.text));
    assert.equal(r.text, fakeAnswerWords([], 'over ws').join(' '));
    assert.equal(deltas.join(''), r.text);
    await assert.rejects(client.ask({ prompt: 'over ws', images: [{ path: fx.image }] }), isPathNotAllowed);
    client.dispose();
    await daemon.waitForLog(/client disconnected[^\n]*; 0 open/);
  } finally {
    await daemon.stop();
    await fx.cleanup();
  }
});

/**
 * A WebSocket peer on 127.0.0.1 that records every JSON-RPC message and runs `onFrame` on it;
 * `closed` resolves with the close code of the first connection that ends. Only the client is
 * under test with it (how the daemon handles a client that goes away is the daemon's tests' business).
 */
async function scriptedPeer(onFrame: (frame: Frame, ws: WebSocket) => void): Promise<{ url: string; frames: Frame[]; closed: Promise<number>; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const frames: Frame[] = [];
  let markClosed!: (code: number) => void;
  const closed = new Promise<number>((resolve) => (markClosed = resolve));
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      frames.push(frame);
      onFrame(frame, ws);
    });
    ws.on('close', (code) => markClosed(code));
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    frames,
    closed,
    close: () => new Promise<void>((resolve) => wss.close(() => resolve())),
  };
}

test('LensClient.connectWebSocket: initialize sends no process id (the daemon may run elsewhere); dispose closes with 1000', T, async () => {
  const peer = await scriptedPeer((f, ws) => {
    if (f.method === 'initialize') ws.send(JSON.stringify({ jsonrpc: '2.0', id: f.id, result: { capabilities: {} } }));
  });
  const client = await LensClient.connectWebSocket(peer.url, { token: TOKEN });
  await client.initialize();
  const init = peer.frames.find((f) => f.method === 'initialize');
  assert.equal(init?.params?.processId, null);
  client.dispose();
  assert.equal(await peer.closed, 1000);
  assert.deepEqual(peer.frames.map((f) => f.method), ['initialize', 'initialized'], 'dispose only closes: no shutdown, no exit');
  await peer.close();
});

/**
 * A peer that never answers and ends the connection when the first `lens/ask` arrives: with a
 * close frame (`code`, `reason`) or, without `code`, by cutting the TCP connection.
 */
function droppingPeer(code?: number, reason?: string) {
  return scriptedPeer((f, ws) => {
    if (f.method !== 'lens/ask') return;
    if (code === undefined) ws.terminate();
    else ws.close(code, reason);
  });
}

test('LensClient.connectWebSocket: a connection closed under a pending call rejects it (and later calls) naming the URL, code and reason', T, async () => {
  const peer = await droppingPeer(4008, 'the peer does not read its messages');
  const client = await LensClient.connectWebSocket(peer.url, { token: TOKEN });
  await assert.rejects(client.ask({ prompt: 'dropped', images: [] }, () => undefined), (e: unknown) => {
    assert.ok(e instanceof ConnectionClosedError, String(e));
    assert.equal(e.closeCode, 4008);
    assert.match(e.message, new RegExp(`daemon at ${peer.url} closed unexpectedly \\(code 4008: the peer does not read its messages\\)`));
    return true;
  });
  await assert.rejects(client.listModels(), ConnectionClosedError, 'later calls say the same');
  client.dispose();
  await peer.close();

  const cut = await droppingPeer();
  const second = await LensClient.connectWebSocket(cut.url, { token: TOKEN });
  await assert.rejects(second.ask({ prompt: 'cut', images: [] }), (e: unknown) => e instanceof ConnectionClosedError && e.closeCode === 1006 && /the connection dropped/.test(e.message));
  second.dispose();
  await cut.close();
});
