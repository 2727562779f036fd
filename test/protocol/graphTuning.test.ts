/**
 * `graphTuning` through the daemon (in process, fake engine that records its load options and
 * reports a tuning summary): the initialize option is the default of every load, lens/loadModel's
 * own value wins, a bad value is 1030 naming the key and the daemon keeps serving, and the
 * summary reaches the loadModel result and lens/status as the engine made it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ResponseError } from 'vscode-jsonrpc';
import { LensErrorCode } from '../../common/errors';
import type { LoadOptions, LoadProgress, ModelInfo } from '../../server/src/runtime/types';
import { FakeEngine } from '../fakes/fakeEngine';
import { makeFixtures, startTyped } from './harness';

const T = { timeout: 10_000 };

/** Records each load's options; reports `tuning` unless tuning was off. */
class RecordingEngine extends FakeEngine {
  readonly loads: LoadOptions[] = [];
  override async load(dir: string, options: LoadOptions, onProgress: (p: LoadProgress) => void, signal: AbortSignal): Promise<ModelInfo> {
    this.loads.push(options);
    const info = await super.load(dir, options, onProgress, signal);
    if (options.graphTuning !== false) info.tuning = { decoder_model_merged: { applied: ['last-position Slice before the LM head'], skipped: [], cacheHit: false, ms: 3 } };
    return info;
  }
}

test('initializationOptions.graphTuning is the default; lens/loadModel graphTuning wins', T, async () => {
  const fx = await makeFixtures();
  const engine = new RecordingEngine();
  const h = await startTyped({ engine, init: { model: fx.model, graphTuning: { int8Vision: false } } });
  await h.waitForStatus((s) => s.state === 'ready' && s.model !== undefined);
  assert.deepEqual(engine.loads[0].graphTuning, { int8Vision: false }, 'initializationOptions.model loads with the initialize option');

  await h.client.loadModel({ path: fx.model });
  assert.deepEqual(engine.loads[1].graphTuning, { int8Vision: false });

  const off = await h.client.loadModel({ path: fx.model, graphTuning: false });
  assert.equal(engine.loads[2].graphTuning, false);
  assert.equal(off.tuning, undefined);
  const offStatus = await h.waitForStatus((s) => s.state === 'ready' && s.model !== undefined && s.model.tuning === undefined);
  assert.equal(offStatus.model!.name, 'tiny');

  const on = await h.client.loadModel({ path: fx.model, graphTuning: {} });
  assert.deepEqual(engine.loads[3].graphTuning, {});
  assert.deepEqual(on.tuning?.decoder_model_merged?.applied, ['last-position Slice before the LM head']);
  // lens/status carries the summary as the engine made it (nothing strips fields it does not know).
  const ready = await h.waitForStatus((s) => s.state === 'ready' && s.model?.tuning !== undefined && h.statuses.indexOf(s) > h.statuses.indexOf(offStatus));
  assert.deepEqual(ready.model!.tuning, on.tuning);
  await h.close();
  await fx.cleanup();
});

test('a bad graphTuning is InvalidParams naming the key; the daemon keeps serving', T, async () => {
  const fx = await makeFixtures();
  const engine = new RecordingEngine();
  const h = await startTyped({ engine });
  const bad = (graphTuning: unknown) => h.client.loadModel({ path: fx.model, graphTuning: graphTuning as false });
  await assert.rejects(bad({ fastMath: false }), (e: ResponseError<unknown>) => e.code === LensErrorCode.InvalidParams && /"graphTuning\.fastMath" is not a graph tuning pass; use int8Activations, lastLogitsOnly, groupedAttention, int8Vision/.test(e.message));
  await assert.rejects(bad({ int8Vision: 'off' }), (e: ResponseError<unknown>) => e.code === LensErrorCode.InvalidParams && /"graphTuning\.int8Vision" must be true or false/.test(e.message));
  await assert.rejects(bad(true), (e: ResponseError<unknown>) => e.code === LensErrorCode.InvalidParams && /"graphTuning" must be false/.test(e.message));
  assert.equal(engine.loads.length, 0, 'nothing reached the engine');
  const info = await h.client.loadModel({ path: fx.model });
  assert.equal(engine.loads[0].graphTuning, undefined, 'no default anywhere: the engine decides (every pass on)');
  assert.ok(info.tuning);
  await h.close();
  await fx.cleanup();
});

test('a bad initializationOptions.graphTuning is refused at initialize', T, async () => {
  const h = await startTyped({ initialize: false });
  await assert.rejects(
    h.client.initialize({ initializationOptions: { graphTuning: { int8Vision: false, turbo: true } as never } }),
    (e: ResponseError<unknown>) => e.code === LensErrorCode.InvalidParams && /initializationOptions\.graphTuning\.turbo" is not a graph tuning pass; use int8Activations/.test(e.message),
  );
  h.toDaemon.end();
  h.fromDaemon.end();
});
