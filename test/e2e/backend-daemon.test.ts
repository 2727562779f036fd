/**
 * The VS Code extension's daemon on a serving engine (`llavaLens.backend.kind` "openai"), with
 * real processes over loopback: a shared daemon (`serve --ws` on a generated tiny model) is the
 * OpenAI-compatible server (its `/v1`), and a second daemon is spawned the way the extension
 * spawns its own — the `serve` flags and environment `toDaemonSpawn` makes from the settings
 * (the API key only in the environment), `initializationOptions` from `toInitializationOptions`
 * (no model folder), asks with image paths and `toAskOptions` — but over `--stdio` instead of
 * node IPC (the flags are the same; vscode-languageclient only adds `--node-ipc`).
 * Its greedy answers must be the same as asking the shared daemon directly.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { LensClient } from '../../client/src/daemonClient';
import { readSettings, toAskOptions, toDaemonSpawn, toInitializationOptions, type LensSettings } from '../../client/src/settings';
import { LensErrorCode } from '../../common/errors';
import type { AnswerDeltaParams, AskResult, LensStatus } from '../../common/protocol';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng } from '../fixtures/images';
import { serveWs, WS_TEST_TOKEN as TOKEN, type ServedDaemon } from './wsServe';

const ROOT = path.resolve(__dirname, '..', '..', '..');
/** What the extension runs in a checkout (`daemonModulePath`; `dist/daemon.js` in a VSIX). */
const DAEMON_MAIN = path.join(ROOT, 'out', 'server', 'src', 'daemon', 'main.js');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-backend-daemon-'));
const modelDir = path.join(root, 'tiny-onevision');
const imagePath = path.join(root, 'diagram.png');
const Q = 'What does this diagram show?';
const Q2 = 'And the colours?';
const MAX_TOKENS = 16;

let upstream: ServedDaemon;
let direct: LensClient;
let base: string;
let modelName: string;
/** The reference: the shared daemon asked directly (greedy, streamed). */
let first: AskResult;
let firstPieces: string[];
let followUp: AskResult;

/** The `llavaLens.*` settings of a user pointing the extension at `base`. */
function settingsFor(values: Record<string, unknown> = {}): LensSettings {
  const { settings, problems } = readSettings((k) =>
    ({ 'backend.kind': 'openai', 'backend.baseUrl': base, 'backend.model': modelName, maxNewTokens: MAX_TOKENS, temperature: 0, ...values })[k],
  );
  assert.deepEqual(problems, []);
  return settings;
}

/** Spawns and initializes a daemon as LensDaemon does, with `apiKey` as if stored in SecretStorage. */
async function extensionDaemon(s: LensSettings, apiKey: string | undefined): Promise<{ client: LensClient; args: string[] }> {
  const spawn = toDaemonSpawn(s, apiKey);
  assert.ok(spawn.ok, spawn.ok ? '' : spawn.message);
  const args = ['serve', '--stdio', ...spawn.args];
  const client = LensClient.spawnStdio({
    daemonPath: DAEMON_MAIN,
    args,
    // As the extension: its own environment plus the backend's (the key); state kept out of $HOME.
    env: { ...process.env, LLAVA_LENS_STATE_DIR: path.join(root, 'state'), LLAVA_LENS_CACHE: path.join(root, 'cache'), ...spawn.env },
  });
  await client.initialize({ clientName: 'llava-lens-vscode-test', initializationOptions: toInitializationOptions(s, undefined) });
  return { client, args };
}

/** The first `lens/status` that names a model (waits on the daemon's notifications). */
function statusWithModel(client: LensClient): Promise<LensStatus> {
  return new Promise((resolve) => {
    if (client.lastStatus?.model) return resolve(client.lastStatus);
    const sub = client.onStatus((st) => {
      if (!st.model) return;
      sub.dispose();
      resolve(st);
    });
  });
}

/** A streamed ask; resolves with the result and the text pieces in order. */
async function askStreamed(client: LensClient, params: Parameters<LensClient['ask']>[0]): Promise<{ result: AskResult; pieces: string[] }> {
  const deltas: AnswerDeltaParams[] = [];
  const result = await client.ask({ ...params, streamId: `s-${Math.random().toString(36).slice(2)}` }, (d) => deltas.push(d));
  return { result, pieces: deltas.sort((a, b) => a.index - b.index).map((d) => d.text).filter((t) => t !== '') };
}

before(async () => {
  await makeTestModel(modelDir, { preset: 'tiny-onevision', seed: 1 });
  const png = await diagramPng();
  fs.writeFileSync(imagePath, png);
  upstream = await serveWs({ model: modelDir });
  base = `http://127.0.0.1:${upstream.port}/v1`;
  direct = await upstream.connect();
  const r = await askStreamed(direct, { prompt: Q, images: [{ bytes: png.toString('base64') }], temperature: 0, maxTokens: MAX_TOKENS });
  first = r.result;
  firstPieces = r.pieces;
  followUp = await direct.ask({ prompt: Q2, images: [], temperature: 0, maxTokens: MAX_TOKENS, conversationId: first.conversationId });
  modelName = first.model;
  assert.equal(first.tokenIds.length, MAX_TOKENS, 'the reference answer should run to its token limit');
});

after(async () => {
  direct?.dispose();
  await upstream?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

test('the extension\'s daemon on the backend answers with the same tokens as the server asked directly', async () => {
  const s = settingsFor();
  const { client, args } = await extensionDaemon(s, TOKEN);
  try {
    assert.ok(!args.includes(TOKEN), 'the API key is not on the command line');
    // The model is the server's from the start: device `remote`, its name, no folder sent.
    const status = await statusWithModel(client);
    assert.equal(status.model?.name, modelName);
    assert.equal(status.model?.device, 'remote');
    assert.equal(status.model?.path, base);

    // As the asker: a local daemon gets the image's path, and the settings' generation options.
    const { result, pieces } = await askStreamed(client, { prompt: Q, images: [{ path: imagePath }], ...toAskOptions(s, 1) });
    assert.equal(result.text, first.text);
    assert.deepEqual(pieces, firstPieces, 'streamed piece by piece as the server generated them');
    assert.equal(result.device, 'remote');
    assert.equal(result.model, modelName);
    assert.equal(result.finishReason, first.finishReason);
    // A follow-up in the panel continues the conversation the same way.
    const next = await client.ask({ prompt: Q2, images: [], conversationId: result.conversationId, ...toAskOptions(s, 0) });
    assert.equal(next.text, followUp.text);
  } finally {
    await client.shutdown();
  }
});

test('the key reaches the daemon only through its environment: a wrong or missing key is the server\'s 401', async () => {
  for (const key of ['not-the-token', undefined]) {
    const { client } = await extensionDaemon(settingsFor(), key);
    try {
      await assert.rejects(
        client.ask({ prompt: Q, images: [{ path: imagePath }], ...toAskOptions(settingsFor(), 1) }),
        (e: { code?: number; message: string }) => {
          assert.equal(e.code, LensErrorCode.BackendFailed, e.message);
          assert.match(e.message, /401/);
          return true;
        },
      );
    } finally {
      await client.shutdown();
    }
  }
});

test('backend.tools "prompt" spawns a daemon whose tool loop runs on the server', async () => {
  const s = settingsFor({ 'backend.tools': 'prompt', 'tools.enabled': true });
  const { client, args } = await extensionDaemon(s, TOKEN);
  try {
    assert.deepEqual(args.slice(args.indexOf('--backend-tools'), args.indexOf('--backend-tools') + 2), ['--backend-tools', 'prompt']);
    const options = toAskOptions(s, 1);
    assert.equal(options.tools, true);
    // The tiny model follows no tool format: the loop ends with its first answer, from the server.
    const r = await client.ask({ prompt: Q, images: [{ path: imagePath }], ...options });
    assert.equal(r.device, 'remote');
    assert.ok(Array.isArray(r.steps), 'the answer comes from the tool loop');
  } finally {
    await client.shutdown();
  }
});
