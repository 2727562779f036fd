/**
 * Clients of a shared daemon over WebSocket: `llava-lens ask --connect` (the real CLI process) and
 * `LensClient.connectWebSocket`.
 *
 * The daemon side is the small in-process stand-in for `serve --ws` in wsTestDaemon.ts (the real
 * daemon handlers over the WebSocket transport, one shared fake engine); it records every frame
 * clients send, so the tests can check that images arrive as bytes and that the CLI never asks the
 * shared daemon to shut down.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { WebSocketServer } from 'ws';
import { ConnectionClosedError, LensClient } from '../../client/src/daemonClient';
import { readImageParam } from '../../client/src/imageParams';
import { ConnectError } from '../../common/wsTransport';
import { FakeEngine, fakeAnswerWords } from '../fakes/fakeEngine';
import { makeFixtures } from '../protocol/harness';
import { loadedEngine, recordImageKinds, startTestDaemon, TEST_TOKEN as TOKEN, type Frame } from './wsTestDaemon';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'llava-lens.js');
const T = { timeout: 20_000 };

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

test('ask --connect streams the shared daemon\'s answer; the image goes as bytes; the daemon keeps running', T, async () => {
  const fx = await makeFixtures();
  const daemon = await startTestDaemon(await loadedEngine(fx.model));
  const kinds = recordImageKinds(daemon.engine);
  const r = await run(['ask', '--connect', daemon.url, '--token', TOKEN, fx.image, '-q', 'what is it']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, fakeAnswerWords([], 'what is it').join(' ') + '\n');
  assert.match(r.stderr, new RegExp(`Model: tiny \\(llava_onevision, fp32\\) on cpu at ${daemon.url}`));
  assert.match(r.stderr, /eos · \d+ tokens/);
  assert.doesNotMatch(r.stderr, /Loading model/, 'the daemon\'s model is used, nothing is loaded');

  assert.deepEqual(kinds, ['bytes']);
  const ask = daemon.frames.find((f) => f.method === 'lens/ask');
  assert.deepEqual(ask?.params?.images, [{ bytes: fx.png.toString('base64'), mimeType: 'image/png' }]);
  const init = daemon.frames.find((f) => f.method === 'initialize');
  assert.equal(init?.params?.processId, null, 'a remote client sends no process id');
  const methods = daemon.frames.map((f) => f.method);
  assert.ok(!methods.includes('shutdown') && !methods.includes('exit'), `the CLI only disconnects: ${methods.join(', ')}`);
  assert.ok(!methods.includes('lens/loadModel'));
  assert.equal(daemon.engine.info()?.name, 'tiny', 'the shared model stays loaded');
  await daemon.close();
  await fx.cleanup();
});

test('ask --connect takes the token from --token-file or LLAVA_LENS_TOKEN; --model loads a folder on the daemon\'s machine', T, async () => {
  const fx = await makeFixtures();
  const daemon = await startTestDaemon(await loadedEngine(fx.model));
  const tokenFile = path.join(fx.root, 'token');
  await fs.writeFile(tokenFile, `${TOKEN}\n`);
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

  const loaded = await run(['ask', '--connect', daemon.url, '--token', TOKEN, '--model', other, fx.image, '-q', 'hi']);
  assert.equal(loaded.code, 0, loaded.stderr);
  assert.match(loaded.stderr, /Loading model 100%/);
  assert.match(loaded.stderr, /Model: other \(llava, fp32\) on cpu/);
  assert.deepEqual(daemon.frames.find((f) => f.method === 'lens/loadModel')?.params?.path, other);
  assert.equal(daemon.engine.info()?.name, 'other');
  await daemon.close();
  await fx.cleanup();
});

test('ask --connect refused: a wrong token exits 1 with the daemon\'s reason; usage mistakes exit 2', T, async () => {
  const fx = await makeFixtures();
  const daemon = await startTestDaemon(await loadedEngine(fx.model));
  const [wrong, none, nothingThere, stray, both] = await Promise.all([
    run(['ask', '--connect', daemon.url, '--token', 'nope', fx.image, '-q', 'x']),
    run(['ask', '--connect', daemon.url, fx.image, '-q', 'x']),
    run(['ask', '--connect', 'ws://127.0.0.1:1', '--token', TOKEN, fx.image, '-q', 'x']),
    run(['ask', '--token', TOKEN, fx.image, '-q', 'x']),
    run(['ask', '--connect', daemon.url, '--token', TOKEN, '--token-file', '/x', fx.image, '-q', 'x']),
  ]);
  assert.equal(wrong.code, 1, wrong.stderr);
  assert.match(wrong.stderr, /llava-lens ask: the daemon at ws:\/\/127\.0\.0\.1:\d+ refused the connection \(HTTP 401\): wrong or missing token/);
  assert.equal(wrong.stdout, '');
  assert.equal(none.code, 2);
  assert.match(none.stderr, /needs the daemon's token: --token-file F, LLAVA_LENS_TOKEN/);
  assert.equal(nothingThere.code, 1);
  assert.match(nothingThere.stderr, /nothing listens at ws:\/\/127\.0\.0\.1:1/);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /--token only applies with --connect/);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--token or --token-file, not both/);
  assert.deepEqual(daemon.engine.calls, ['load'], 'nothing was asked');
  await daemon.close();
  await fx.cleanup();
});

test('ask --connect to a daemon without a model says how to choose one', T, async () => {
  const fx = await makeFixtures();
  const daemon = await startTestDaemon(new FakeEngine());
  const r = await run(['ask', '--connect', daemon.url, '--token', TOKEN, fx.image, '-q', 'x']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /No model is loaded.*has no model loaded: pass --model <folder on the daemon's machine>/);
  await daemon.close();
  await fx.cleanup();
});

test('LensClient.connectWebSocket: initialize and a streamed ask with image bytes; a refused token is a ConnectError; dispose closes with 1000', T, async () => {
  const fx = await makeFixtures();
  const daemon = await startTestDaemon(await loadedEngine(fx.model));
  const kinds = recordImageKinds(daemon.engine);

  await assert.rejects(LensClient.connectWebSocket(daemon.url, { token: 'nope' }), (e: unknown) => {
    assert.ok(e instanceof ConnectError);
    assert.equal(e.status, 401);
    assert.match(e.message, /refused the connection \(HTTP 401\): wrong or missing token/);
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
  assert.deepEqual(kinds, ['bytes']);
  const closed = new Promise<number>((resolve) => [...daemon.sockets][0].once('close', resolve));
  client.dispose();
  assert.equal(await closed, 1000);
  await daemon.close();
  await fx.cleanup();
});

/**
 * A peer that accepts the connection, never answers, and ends it when the first `lens/ask`
 * arrives: with a close frame (`code`, `reason`) or, without `code`, by cutting the TCP connection.
 * (Only the client is under test here; how the daemon handles a client that goes away is the
 * daemon's own tests' business.)
 */
async function droppingPeer(code?: number, reason?: string): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  wss.on('connection', (ws) =>
    ws.on('message', (data) => {
      if ((JSON.parse(String(data)) as Frame).method !== 'lens/ask') return;
      if (code === undefined) ws.terminate();
      else ws.close(code, reason);
    }),
  );
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => wss.close(() => resolve())),
  };
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
