import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { CancellationTokenSource, ResponseError } from 'vscode-jsonrpc';
import { LensErrorCode } from '../../common/errors';
import type { LoadProgressEvent } from '../../client/src/daemonClient';
import { FakeEngine } from '../fakes/fakeEngine';
import { gate, makeFixtures, startTyped, whenAborted } from './harness';

const T = { timeout: 10_000 };
const isCode = (code: number, re?: RegExp) => (e: ResponseError<unknown>) => e.code === code && (!re || re.test(e.message));

test('loadModel reports work-done progress and status notifications, then answers ModelInfo', T, async () => {
  const fx = await makeFixtures();
  const h = await startTyped();
  const progress: LoadProgressEvent[] = [];
  const info = await h.client.loadModel({ path: fx.model, dtype: { decoder_model_merged: 'q4' } }, (p) => progress.push(p));
  assert.equal(info.name, 'tiny');
  assert.equal(info.modelType, 'llava_onevision');
  assert.equal(info.dtype.decoder_model_merged, 'q4');

  assert.equal(progress[0].kind, 'begin');
  assert.equal(progress.at(-1)!.kind, 'end');
  const percents = progress.filter((p) => p.kind === 'report').map((p) => p.percent);
  assert.deepEqual(percents, [33, 67, 100]);

  const loading = h.statuses.filter((s) => s.state === 'loading').map((s) => s.percent!);
  assert.deepEqual([...new Set(loading)], [0, 33, 67, 100]);
  assert.ok(h.statuses.every((s) => s.state !== 'busy'), 'a load is reported as loading, never busy');
  const ready = await h.waitForStatus((s) => s.state === 'ready' && s.model !== undefined);
  assert.equal(ready.model!.path, fx.model);
  assert.equal(ready.device, 'cpu');
  await h.close();
  await fx.cleanup();
});

test('a missing model folder is InvalidModelFolder; status shows the error; an ask says why', T, async () => {
  const fx = await makeFixtures();
  const h = await startTyped();
  const missing = path.join(fx.root, 'nope');
  await assert.rejects(h.client.loadModel({ path: missing }), isCode(LensErrorCode.InvalidModelFolder, /nope/));
  const err = await h.waitForStatus((s) => s.state === 'error');
  assert.match(err.message!, /nope/);
  await assert.rejects(h.client.ask({ prompt: 'hi', images: [] }), isCode(LensErrorCode.ModelNotLoaded, /last load failed/));

  // A folder without config.json names the file.
  await assert.rejects(h.client.loadModel({ path: fx.root }), isCode(LensErrorCode.InvalidModelFolder, /config\.json/));

  // Still serving: a good load clears the error and a valid ask works.
  await h.client.loadModel({ path: fx.model });
  await h.waitForStatus((s) => s.state === 'ready' && s.model !== undefined);
  const r = await h.client.ask({ prompt: 'hi', images: [] });
  assert.equal(r.finishReason, 'eos');
  await h.close();
  await fx.cleanup();
});

test('ask before any load is ModelNotLoaded with what to do', T, async () => {
  const h = await startTyped();
  await assert.rejects(h.client.ask({ prompt: 'hi', images: [] }), isCode(LensErrorCode.ModelNotLoaded, /lens\/loadModel/));
  await h.close();
});

test('relative model paths resolve against the first workspace folder', T, async () => {
  const fx = await makeFixtures();
  const h = await startTyped({ workspaceFolder: fx.root });
  const info = await h.client.loadModel({ path: 'models/tiny' });
  assert.equal(info.path, fx.model);
  await h.close();
  await fx.cleanup();
});

test('initializationOptions.model loads in the background; an early ask waits for it', T, async () => {
  const fx = await makeFixtures();
  const h = await startTyped({ init: { model: fx.model } });
  const answer = await h.client.ask({ prompt: 'what is this', images: [{ path: fx.image }] });
  assert.equal(answer.model, 'tiny');
  assert.deepEqual(h.engine.calls, ['load', 'ask']);
  assert.ok(h.statuses.some((s) => s.state === 'loading'));
  await h.close();
  await fx.cleanup();
});

test('an unusable device is DeviceUnavailable', T, async () => {
  const fx = await makeFixtures();
  const h = await startTyped();
  await assert.rejects(h.client.loadModel({ path: fx.model, device: 'cuda' }), isCode(LensErrorCode.DeviceUnavailable));
  await h.close();
  await fx.cleanup();
});

test('cancelling a running load answers Cancelled and leaves no model', T, async () => {
  const fx = await makeFixtures();
  const hold = gate();
  const reached = gate();
  const engine = new FakeEngine({
    hooks: {
      beforeLoadStep: async (step, signal) => {
        if (step !== 1) return;
        reached.open();
        await whenAborted(signal);
        hold.open();
      },
    },
  });
  const h = await startTyped({ engine });
  const cts = new CancellationTokenSource();
  const load = h.client.loadModel({ path: fx.model }, undefined, cts.token);
  await reached.promise;
  cts.cancel();
  await assert.rejects(load, isCode(LensErrorCode.Cancelled, /cancelled/));
  await hold.promise;
  assert.equal(engine.info(), undefined);
  await h.waitForStatus((s) => s.state === 'ready' && s.model === undefined && s.queueLength === 0);
  await h.close();
  await fx.cleanup();
});

test('unloadModel drops the model; asks then fail with ModelNotLoaded', T, async () => {
  const fx = await makeFixtures();
  const h = await startTyped();
  await h.client.loadModel({ path: fx.model });
  assert.equal(await h.client.unloadModel(), null);
  assert.equal(h.engine.info(), undefined);
  await assert.rejects(h.client.ask({ prompt: 'hi', images: [] }), isCode(LensErrorCode.ModelNotLoaded));
  await h.close();
  await fx.cleanup();
});

test('listModels scans initializationOptions.modelRoots, or the roots given', T, async () => {
  const fx = await makeFixtures();
  const h = await startTyped({ init: { modelRoots: [fx.root, path.join(fx.root, 'missing')] } });
  const { models } = await h.client.listModels();
  assert.equal(models.length, 1);
  assert.equal(models[0].path, fx.model);
  assert.equal(models[0].modelType, 'llava_onevision');
  const none = await h.client.listModels({ roots: [path.join(fx.root, 'models', 'tiny', 'onnx')] });
  assert.deepEqual(none.models, []);
  await h.close();
  await fx.cleanup();
});
