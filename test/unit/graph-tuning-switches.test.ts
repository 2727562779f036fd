/**
 * Load-time graph tuning switches, everywhere they enter: the protocol check of `graphTuning`
 * (lens/loadModel, initializationOptions), the CLI and serve flags, the extension settings, the
 * operator's default in the daemon core, and the one-line summary the status and logs show.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import { GRAPH_TUNING_PASSES, checkInitializationOptions, checkLoadModelParams, type LensStatus, type ModelInfo } from '../../common/protocol';
import { describeTuning, tuningApplied } from '../../common/tuning';
import { DEFAULT_SETTINGS, readSettings, settingsEffects, toGraphTuning, toInitializationOptions, toLoadModelParams, type LensSettings } from '../../client/src/settings';
import { presentStatus } from '../../client/src/statusText';
import { UsageError, parseGraphTuningFlags } from '../../server/src/cli/args';
import { parseAskArgs } from '../../server/src/cli/ask';
import { ASK_USAGE, DEMO_USAGE, SERVE_USAGE } from '../../server/src/cli/help';
import { DaemonCore } from '../../server/src/daemon/core';
import { parseServeFlags } from '../../server/src/daemon/serveFlags';
import type { Engine, LoadOptions } from '../../server/src/runtime/types';

const PASSES = 'int8Activations, lastLogitsOnly, groupedAttention, int8Vision';

test('the pass list is the runtime contract', () => {
  assert.deepEqual([...GRAPH_TUNING_PASSES], ['int8Activations', 'lastLogitsOnly', 'groupedAttention', 'int8Vision']);
});

test('protocol: graphTuning is false or an object of known passes with booleans', () => {
  const load = (graphTuning: unknown) => checkLoadModelParams({ path: '/m', graphTuning });
  const init = (graphTuning: unknown) => checkInitializationOptions({ graphTuning });
  for (const ok of [false, {}, { int8Vision: false }, { int8Activations: true, lastLogitsOnly: false, groupedAttention: true, int8Vision: false }, undefined]) {
    assert.equal(load(ok), undefined, JSON.stringify(ok));
    assert.equal(init(ok), undefined, JSON.stringify(ok));
  }
  // An unknown key: named, with the valid ones listed.
  assert.equal(load({ int8Vision: false, fastMath: false }), `lens/loadModel: "graphTuning.fastMath" is not a graph tuning pass; use ${PASSES}.`);
  assert.equal(init({ int8activations: false }), `initialize: "initializationOptions.graphTuning.int8activations" is not a graph tuning pass; use ${PASSES}.`);
  // A non-boolean value: the key is named.
  assert.equal(load({ lastLogitsOnly: 'no' }), 'lens/loadModel: "graphTuning.lastLogitsOnly" must be true or false; got "no".');
  assert.match(init({ int8Activations: 0 })!, /"initializationOptions\.graphTuning\.int8Activations" must be true or false; got 0/);
  // Anything but false or an object.
  for (const bad of [true, null, 'off', 0, ['int8Vision']]) {
    assert.match(load(bad)!, /"graphTuning" must be false \(no tuning\) or an object of passes \{int8Activations\?, lastLogitsOnly\?, groupedAttention\?, int8Vision\?\}/, JSON.stringify(bad));
    assert.match(init(bad)!, /"initializationOptions\.graphTuning" must be false/, JSON.stringify(bad));
  }
  assert.equal(LensErrorCode.InvalidParams, 1030);
});

test('CLI: --no-graph-tuning and --tuning-off', () => {
  assert.equal(parseGraphTuningFlags({}), undefined);
  assert.equal(parseGraphTuningFlags({ 'no-graph-tuning': true }), false);
  assert.deepEqual(parseGraphTuningFlags({ 'tuning-off': ['int8Activations,int8-vision', 'LAST_LOGITS_ONLY'] }), { int8Activations: false, int8Vision: false, lastLogitsOnly: false });
  assert.throws(() => parseGraphTuningFlags({ 'tuning-off': ['int8Vision,fastMath'] }), (e) => e instanceof UsageError && e.message === `--tuning-off: unknown pass "fastMath"; valid passes: ${PASSES}.`);
  assert.throws(() => parseGraphTuningFlags({ 'tuning-off': ['int8Vision,'] }), /--tuning-off: an empty pass name; valid passes: int8Activations/);
  assert.throws(() => parseGraphTuningFlags({ 'no-graph-tuning': true, 'tuning-off': ['int8Vision'] }), /--no-graph-tuning turns every pass off/);

  const args = ['a.png', '-q', 'what?'];
  assert.equal(parseAskArgs(args).graphTuning, undefined);
  assert.equal(parseAskArgs([...args, '--no-graph-tuning']).graphTuning, false);
  assert.deepEqual(parseAskArgs([...args, '--tuning-off', 'groupedAttention']).graphTuning, { groupedAttention: false });
  assert.throws(() => parseAskArgs([...args, '--tuning-off', 'bogus']), (e) => e instanceof UsageError && /unknown pass "bogus"; valid passes: int8Activations, lastLogitsOnly, groupedAttention, int8Vision/.test(e.message));
  assert.throws(() => parseAskArgs([...args, '--no-graph-tuning', '--backend', 'openai', '--base-url', 'http://127.0.0.1:1/v1']), /apply to the local engine, not to --backend openai/);
  assert.throws(() => parseAskArgs([...args, '--no-graph-tuning', '--connect', 'ws://127.0.0.1:1', '--token', 't']), /with --connect, --no-graph-tuning and --tuning-off apply to a model load: add --model/);
  assert.equal(parseAskArgs([...args, '--no-graph-tuning', '--connect', 'ws://127.0.0.1:1', '--token', 't', '--model', '/m']).graphTuning, false);

  for (const usage of [ASK_USAGE, DEMO_USAGE, SERVE_USAGE]) {
    assert.match(usage, /--no-graph-tuning/);
    assert.match(usage, /--tuning-off P\[,P\.\.\.\]/);
  }
  assert.match(ASK_USAGE, /int8Activations \| lastLogitsOnly \| groupedAttention \| int8Vision/);
  assert.match(SERVE_USAGE, /int8Activations, lastLogitsOnly, groupedAttention, int8Vision/);
});

test('serve: the tuning flags in every mode, validated, not with --backend openai', () => {
  assert.equal(parseServeFlags(['--stdio']).graphTuning, undefined);
  assert.equal(parseServeFlags(['--node-ipc', '--no-graph-tuning']).graphTuning, false);
  assert.deepEqual(parseServeFlags(['--ws', '0', '--tuning-off', 'int8Activations,int8Vision']).graphTuning, { int8Activations: false, int8Vision: false });
  assert.throws(() => parseServeFlags(['--stdio', '--tuning-off', 'nope']), new RegExp(`--tuning-off: unknown pass "nope"; valid passes: ${PASSES}\\.`));
  assert.throws(() => parseServeFlags(['--stdio', '--no-graph-tuning', '--backend', 'openai', '--base-url', 'http://127.0.0.1:1/v1', '--backend-model', 'm']), /--no-graph-tuning applies to the local ONNX engine/);
});

function recordingEngine(seen: LoadOptions[]): Engine {
  const info: ModelInfo = { ...MODEL };
  return {
    load: async (_dir, options) => {
      seen.push(options);
      return info;
    },
    unload: async () => {},
    info: () => info,
    ask: async () => {
      throw new Error('not used');
    },
    forget: () => {},
  };
}

test("daemon core: the operator's tuning applies to loads that name none", async () => {
  const seen: LoadOptions[] = [];
  const core = new DaemonCore(() => recordingEngine(seen), { graphTuning: { int8Vision: false } });
  await core.loadModel('/m', {}, 'c', () => undefined);
  await core.loadModel('/m', { graphTuning: false }, 'c', () => undefined);
  await core.loadModel('/m', { graphTuning: {} }, 'c', () => undefined);
  assert.deepEqual(seen.map((o) => o.graphTuning), [{ int8Vision: false }, false, {}]);
  const plain: LoadOptions[] = [];
  await new DaemonCore(() => recordingEngine(plain)).loadModel('/m', { device: 'cpu' }, 'c', () => undefined);
  assert.deepEqual(plain, [{ device: 'cpu' }]);
  core.dispose();
});

const MODEL: ModelInfo = {
  path: '/m/tiny',
  name: 'tiny',
  modelType: 'llava_onevision',
  device: 'cpu',
  dtype: { vision_encoder: 'fp32', embed_tokens: 'fp32', decoder_model_merged: 'q4' },
  contextLength: 2048,
  imagesPerPrompt: 4,
  imageSize: 384,
  toolCallFormat: 'none',
  isTestModel: false,
};

const TUNED: ModelInfo['tuning'] = {
  vision_encoder: { applied: ['int8 weights'], skipped: [], cacheHit: true, ms: 4 },
  decoder_model_merged: { applied: ['accuracy_level=4 on 169 of 169 4-bit MatMulNBits'], skipped: ['last-position logits: the decoder has num_logits_to_keep'], cacheHit: false, ms: 5900 },
};

test('the tuning summary line', () => {
  assert.equal(describeTuning(undefined), 'off');
  assert.equal(describeTuning({}), 'off');
  assert.equal(describeTuning(TUNED), 'decoder — accuracy_level=4 on 169 of 169 4-bit MatMulNBits; vision encoder — int8 weights (cached)');
  assert.equal(describeTuning({ decoder_model_merged: { applied: [], skipped: ['no 4-bit MatMulNBits'], cacheHit: true, ms: 1 } }), 'decoder — unchanged');
  assert.equal(tuningApplied(TUNED), true);
  assert.equal(tuningApplied({ decoder_model_merged: { applied: [], skipped: ['x'], cacheHit: false, ms: 1 } }), false);
  assert.equal(tuningApplied(undefined), false);
});

test('extension settings: llavaLens.graphTuning.* -> graphTuning in initializationOptions and lens/loadModel', () => {
  const read = (values: Record<string, unknown>) => readSettings((k) => values[k]);
  // Defaults: every pass on; nothing extra at initialize (the daemon's default is the same), {} on a reload.
  assert.deepEqual(toGraphTuning(DEFAULT_SETTINGS), {});
  assert.equal(toInitializationOptions(DEFAULT_SETTINGS, '/m').graphTuning, undefined);
  assert.deepEqual(toLoadModelParams(DEFAULT_SETTINGS, '/m'), { path: '/m', device: 'auto', graphTuning: {} });

  const some = read({ 'graphTuning.int8Activations': false, 'graphTuning.int8Vision': false, 'graphTuning.lastLogitsOnly': true, dtype: 'q4' });
  assert.deepEqual(some.problems, []);
  assert.deepEqual(toGraphTuning(some.settings), { int8Activations: false, int8Vision: false });
  const init = toInitializationOptions(some.settings, '/m');
  assert.deepEqual(init.graphTuning, { int8Activations: false, int8Vision: false });
  assert.equal(checkInitializationOptions(init), undefined);
  const load = toLoadModelParams(some.settings, '/m');
  assert.deepEqual(load, { path: '/m', device: 'auto', dtype: 'q4', graphTuning: { int8Activations: false, int8Vision: false } });
  assert.equal(checkLoadModelParams(load), undefined);

  // The master switch wins over the passes.
  const off = read({ 'graphTuning.enabled': false, 'graphTuning.int8Vision': true });
  assert.equal(toGraphTuning(off.settings), false);
  assert.equal(toInitializationOptions(off.settings, '/m').graphTuning, false);
  assert.equal(toLoadModelParams(off.settings, '/m').graphTuning, false);
  // A remote daemon or a serving engine gets none.
  assert.deepEqual(toInitializationOptions({ ...off.settings, remoteUrl: 'ws://x:1' }, '/m'), {});
  assert.equal(toInitializationOptions({ ...off.settings, backend: 'openai' }, '/m').graphTuning, undefined);

  // A wrong value: reported, default kept.
  const bad = read({ 'graphTuning.int8Vision': 'no', 'graphTuning.enabled': 1 });
  assert.equal(bad.problems.length, 2);
  assert.ok(bad.problems.some((p) => p.includes('llavaLens.graphTuning.int8Vision must be true or false')));
  assert.ok(bad.problems.some((p) => p.includes('llavaLens.graphTuning.enabled must be true or false')));
  assert.deepEqual(bad.settings.graphTuning, DEFAULT_SETTINGS.graphTuning);
  assert.equal(DEFAULT_SETTINGS.graphTuning.int8Vision, true, 'reading settings does not change the defaults');
});

test('extension settings: a tuning change reloads the local model', () => {
  const base = DEFAULT_SETTINGS;
  const withTuning = (g: Partial<LensSettings['graphTuning']>): LensSettings => ({ ...base, graphTuning: { ...base.graphTuning, ...g } });
  assert.deepEqual(settingsEffects(base, withTuning({ int8Activations: false })), { restartDaemon: false, reloadModel: true, diagnostics: false, remote: false });
  assert.equal(settingsEffects(base, withTuning({ enabled: false })).reloadModel, true);
  // With tuning off, a pass changes nothing that loads.
  const off = withTuning({ enabled: false });
  assert.equal(settingsEffects(off, { ...off, graphTuning: { ...off.graphTuning, int8Vision: false } }).reloadModel, false);
  // Not for a remote daemon's or a serving engine's model.
  const remote = { ...base, remoteUrl: 'ws://x:1' };
  assert.equal(settingsEffects(remote, { ...remote, graphTuning: { ...remote.graphTuning, enabled: false } }).reloadModel, false);
  const openai = { ...base, backend: 'openai' as const };
  assert.equal(settingsEffects(openai, { ...openai, graphTuning: { ...openai.graphTuning, enabled: false } }).reloadModel, false);
});

test('status tooltip: what tuning each file got, or off', () => {
  const ready = (model: ModelInfo) => presentStatus({ phase: 'running', status: { state: 'ready', rssBytes: 1 << 20, queueLength: 0, device: 'cpu', model } as LensStatus });
  assert.match(ready({ ...MODEL, tuning: TUNED }).tooltip, /\nGraph tuning: decoder — accuracy_level=4 on 169 of 169 4-bit MatMulNBits; vision encoder — int8 weights \(cached\)\n/);
  assert.match(ready(MODEL).tooltip, /\nGraph tuning: off\n/);
  // A serving engine's model has no tuning line.
  assert.doesNotMatch(ready({ ...MODEL, device: 'remote', path: 'http://gpu:8000/v1' }).tooltip, /Graph tuning/);
});
