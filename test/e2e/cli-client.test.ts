/**
 * `LensClient.spawnStdio` against the real daemon process (`serve --stdio`), answering with the
 * fake engine through the `LLAVA_LENS_ENGINE` hook.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DaemonExitedError, LensClient } from '../../client/src/daemonClient';
import { fakeAnswerWords } from '../fakes/fakeEngine';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DAEMON = path.join(ROOT, 'out', 'server', 'src', 'daemon', 'main.js');
const FAKE_ENGINE = path.join(ROOT, 'out', 'test', 'fakes', 'fakeEngineModule.js');
const T = { timeout: 20_000 };

async function modelFolder() {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-client-'));
  await fs.mkdir(path.join(root, 'onnx'));
  await fs.writeFile(path.join(root, 'config.json'), '{"model_type":"llava"}');
  return root;
}

test('spawnStdio: initialize, load, streamed ask, shutdown; the daemon exits with 0', T, async () => {
  const model = await modelFolder();
  const client = LensClient.spawnStdio({ daemonPath: DAEMON, env: { ...process.env, LLAVA_LENS_ENGINE: FAKE_ENGINE } });
  const init = await client.initialize({ initializationOptions: { model } });
  assert.equal(init.serverInfo.name, 'llava-lens');
  const deltas: string[] = [];
  const r = await client.ask({ prompt: 'hello there', images: [] }, (d) => deltas.push(d.text));
  assert.equal(r.text, fakeAnswerWords([], 'hello there').join(' '));
  assert.equal(deltas.join(''), r.text);
  assert.equal(client.lastStatus?.state, 'ready');
  const exited = new Promise<number | null>((resolve) => client.child!.once('exit', (code) => resolve(code)));
  await client.shutdown();
  assert.equal(await exited, 0);
  await fs.rm(model, { recursive: true, force: true });
});

test('a daemon that dies mid-request is reported as DaemonExitedError, with its last output', T, async () => {
  const model = await modelFolder();
  const client = LensClient.spawnStdio({
    daemonPath: DAEMON,
    env: { ...process.env, LLAVA_LENS_ENGINE: FAKE_ENGINE, LLAVA_LENS_FAKE_HOLD_AT: '0' },
  });
  await client.initialize({});
  await client.loadModel({ path: model });
  const busy = new Promise<void>((resolve) => client.onStatus((s) => s.state === 'busy' && resolve()));
  const ask = client.ask({ prompt: 'held forever', images: [] });
  await busy;
  client.child!.kill('SIGKILL');
  await assert.rejects(ask, (e: unknown) => e instanceof DaemonExitedError && e.signal === 'SIGKILL');
  await assert.rejects(client.listModels(), DaemonExitedError);
  await client.shutdown();
  await fs.rm(model, { recursive: true, force: true });
});
