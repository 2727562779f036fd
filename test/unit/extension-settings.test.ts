/**
 * Settings -> daemon options (client/src/settings.ts), status bar texts (statusText.ts), the
 * notification for each failure (errorAdvice.ts) and image sniffing (imageFile.ts).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import { checkInitializationOptions, type LensStatus, type ModelInfo } from '../../common/protocol';
import { advice, adviceForDaemonError, fixLabel } from '../../client/src/errorAdvice';
import { sniffImage } from '../../client/src/imageFile';
import { DEFAULT_SETTINGS, parseDtype, readSettings, settingsEffects, toAskOptions, toInitializationOptions } from '../../client/src/settings';
import { panelStatusLine, presentStatus } from '../../client/src/statusText';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

function getter(values: Record<string, unknown>) {
  return (key: string) => values[key];
}

test('package.json settings: every llavaLens.* key is read, with the same defaults', () => {
  const props: Record<string, { default: unknown }> = pkg.contributes.configuration.properties;
  const keys = Object.keys(props).map((k) => k.replace(/^llavaLens\./, ''));
  assert.deepEqual(keys.sort(), ['altTextDiagnostics.enabled', 'backend.baseUrl', 'backend.kind', 'backend.model', 'backend.tools', 'daemon.nodePath', 'device', 'dtype', 'graphTuning.enabled', 'graphTuning.groupedAttention', 'graphTuning.int8Activations', 'graphTuning.int8Vision', 'graphTuning.lastLogitsOnly', 'maxImageMegapixels', 'maxNewTokens', 'model', 'modelFolders', 'remote.tlsCa', 'remote.url', 'temperature', 'tools.enabled'].sort());
  const fromDefaults = readSettings((k) => props[`llavaLens.${k}`].default);
  assert.deepEqual(fromDefaults.problems, []);
  assert.deepEqual(fromDefaults.settings, DEFAULT_SETTINGS);
  assert.deepEqual((props['llavaLens.device'] as unknown as { enum: string[] }).enum, ['auto', 'cuda', 'webgpu', 'dml', 'coreml', 'cpu']);
});

test('settings map to initializationOptions the daemon accepts', () => {
  const { settings, problems } = readSettings(
    getter({
      modelFolders: ['~/models', ' ', '/opt/m'],
      model: ' /opt/m/llava ',
      dtype: { vision_encoder: 'fp16', decoder_model_merged: 'q4' },
      device: 'cpu',
      maxNewTokens: 64,
      temperature: 0.7,
      maxImageMegapixels: 12,
      'tools.enabled': false,
    }),
  );
  assert.deepEqual(problems, []);
  const init = toInitializationOptions(settings, settings.model);
  assert.deepEqual(init, {
    modelRoots: ['~/models', '/opt/m'],
    model: '/opt/m/llava',
    dtype: { vision_encoder: 'fp16', decoder_model_merged: 'q4' },
    device: 'cpu',
    maxImageMegapixels: 12,
  });
  assert.equal(checkInitializationOptions(init), undefined);
  assert.deepEqual(toAskOptions(settings, 1), { maxTokens: 64, temperature: 0.7 });
  // with tools on, a question about one image runs the tool loop; about several, it cannot
  assert.deepEqual(toAskOptions({ ...settings, toolsEnabled: true }, 1), { maxTokens: 64, temperature: 0.7, tools: true });
  assert.deepEqual(toAskOptions({ ...settings, toolsEnabled: true }, 2), { maxTokens: 64, temperature: 0.7 });
  // Embedded default: the folder the extension generated.
  const embedded = toInitializationOptions(DEFAULT_SETTINGS, '/cache/models/tiny-onevision');
  assert.equal(embedded.model, '/cache/models/tiny-onevision');
  assert.equal(embedded.dtype, undefined);
  assert.equal(checkInitializationOptions(embedded), undefined);
  // A remote daemon gets no local paths (model, folders) and no engine settings: its operator chose them.
  assert.deepEqual(toInitializationOptions({ ...settings, remoteUrl: 'ws://lens:7000' }, settings.model), {});
});

test('bad setting values fall back to defaults with a message naming the setting', () => {
  const { settings, problems } = readSettings(
    getter({ device: 'tpu', maxNewTokens: 0, temperature: -1, dtype: 'fp8', 'remote.url': 'http://x', modelFolders: 'oops', maxImageMegapixels: 0 }),
  );
  assert.equal(settings.device, 'auto');
  assert.equal(settings.maxNewTokens, 256);
  assert.equal(settings.temperature, 0);
  assert.equal(settings.dtype, undefined);
  assert.equal(settings.remoteUrl, '');
  assert.deepEqual(settings.modelFolders, []);
  assert.equal(settings.maxImageMegapixels, 50);
  assert.equal(problems.length, 7);
  for (const key of ['device', 'maxNewTokens', 'temperature', 'dtype', 'remote.url', 'modelFolders', 'maxImageMegapixels']) {
    assert.ok(problems.some((p) => p.includes(`llavaLens.${key} `)), key);
  }
  assert.equal(readSettings(getter({ 'remote.url': 'wss://lens.example:8443/x' })).settings.remoteUrl, 'wss://lens.example:8443/x');
});

test('dtype: a name or a per-file object', () => {
  assert.deepEqual(parseDtype('q4'), { ok: true, value: 'q4' });
  assert.deepEqual(parseDtype({ embed_tokens: 'fp32' }), { ok: true, value: { embed_tokens: 'fp32' } });
  assert.equal(parseDtype({ text_model: 'fp16' }).ok, false);
  assert.equal(parseDtype({}).ok, false);
  assert.equal(parseDtype(['q4']).ok, false);
});

test('settings changes: what each needs (no window reload)', () => {
  const base = DEFAULT_SETTINGS;
  assert.deepEqual(settingsEffects(base, { ...base, model: '/m' }), { restartDaemon: false, reloadModel: true, diagnostics: false, remote: false });
  assert.equal(settingsEffects(base, { ...base, dtype: 'q4' }).reloadModel, true);
  assert.equal(settingsEffects(base, { ...base, device: 'cpu' }).reloadModel, true);
  assert.equal(settingsEffects(base, { ...base, maxImageMegapixels: 10 }).restartDaemon, true);
  assert.equal(settingsEffects(base, { ...base, nodePath: '/usr/bin/node' }).restartDaemon, true);
  assert.deepEqual(settingsEffects(base, { ...base, toolsEnabled: true }), { restartDaemon: false, reloadModel: false, diagnostics: false, remote: false });
  assert.equal(settingsEffects(base, { ...base, altTextDiagnostics: false }).diagnostics, true);
  assert.equal(settingsEffects(base, { ...base, remoteUrl: 'ws://x' }).remote, true);
  const remote = { ...base, remoteUrl: 'wss://x' };
  assert.equal(settingsEffects(remote, { ...remote, remoteTlsCa: '/ca.pem' }).remote, true);
  assert.equal(settingsEffects(base, { ...base, remoteTlsCa: '/ca.pem' }).remote, false, 'the CA alone matters only with a URL');
  assert.deepEqual(settingsEffects(remote, { ...remote, model: '/m', device: 'cpu', maxImageMegapixels: 10 }), { restartDaemon: false, reloadModel: false, diagnostics: false, remote: false }, 'a remote daemon\'s model and limits are not ours');
  assert.equal(readSettings(getter({ 'remote.tlsCa': ' /etc/lens/ca.pem ' })).settings.remoteTlsCa, '/etc/lens/ca.pem');
  assert.equal(readSettings(getter({ 'remote.tlsCa': 7 })).problems.length, 1);
  assert.deepEqual(settingsEffects(base, { ...base, maxNewTokens: 9, temperature: 1, modelFolders: ['/x'] }), { restartDaemon: false, reloadModel: false, diagnostics: false, remote: false });
});

const MODEL: ModelInfo = {
  path: '/cache/models/tiny-onevision',
  name: 'tiny-onevision',
  modelType: 'llava_onevision',
  device: 'cpu',
  dtype: { vision_encoder: 'fp32', embed_tokens: 'fp32', decoder_model_merged: 'fp32' },
  contextLength: 2048,
  imagesPerPrompt: 4,
  imageSize: 384,
  toolCallFormat: 'none',
  isTestModel: true,
};

function running(s: Partial<LensStatus>): { phase: 'running'; status: LensStatus } {
  return { phase: 'running', status: { state: 'ready', rssBytes: 200 * 1024 * 1024, queueLength: 0, ...s } };
}

test('status bar texts and tooltips', () => {
  assert.equal(presentStatus({ phase: 'idle' }).text, '$(eye) LLaVA Lens');
  assert.equal(presentStatus({ phase: 'starting' }).text, '$(eye) LLaVA Lens: starting…');
  assert.equal(presentStatus({ phase: 'preparing', message: 'x' }).text, '$(eye) LLaVA Lens: starting…');
  assert.equal(presentStatus(running({ state: 'loading', percent: 45.4 })).text, '$(eye) LLaVA Lens: loading 45%');
  const ready = presentStatus(running({ state: 'ready', device: 'cpu', model: MODEL }));
  assert.equal(ready.text, '$(eye) LLaVA Lens: cpu · tiny-onevision');
  assert.match(ready.tooltip, /tiny test model/);
  assert.match(ready.tooltip, /Device: cpu/);
  assert.match(ready.tooltip, /200 MiB/);
  assert.equal(presentStatus(running({ state: 'busy', model: MODEL, queueLength: 2 })).text, '$(eye) LLaVA Lens: busy');
  assert.match(presentStatus(running({ state: 'busy', model: MODEL, queueLength: 2 })).tooltip, /Waiting requests: 2/);
  const err = presentStatus(running({ state: 'error', message: 'config.json missing' }));
  assert.equal(err.text, '$(eye) LLaVA Lens: error');
  assert.equal(err.error, true);
  assert.match(err.tooltip, /config.json missing/);
  assert.equal(presentStatus({ phase: 'failed', message: 'did not start' }).text, '$(eye) LLaVA Lens: error');
  assert.equal(presentStatus(running({ state: 'ready' })).text, '$(eye) LLaVA Lens: no model');
  assert.match(presentStatus(running({ state: 'ready', model: MODEL }), { remoteUrl: 'wss://lens:7000' }).tooltip, /Remote daemon: wss:\/\/lens:7000/);
  assert.match(presentStatus({ phase: 'starting' }, { remoteUrl: 'ws://lens:7000' }).tooltip, /Connecting to ws:\/\/lens:7000/);
  assert.doesNotMatch(presentStatus(running({ state: 'ready', model: MODEL })).tooltip, /Remote/);
});

test('panel status line while a question waits', () => {
  assert.equal(panelStatusLine(running({ state: 'loading', percent: 45 })), 'Loading the model 45%…');
  assert.equal(panelStatusLine({ phase: 'starting' }), 'Starting the LLaVA Lens daemon…');
  assert.equal(panelStatusLine(running({ state: 'busy', stage: { stage: 'vision', index: 2, total: 10 }, message: 'Encoding image (view 3/10)' })), 'Encoding image (view 3/10)');
  assert.equal(panelStatusLine(running({ state: 'busy', stage: { stage: 'generate' } })), '');
  assert.equal(panelStatusLine(running({ state: 'ready', model: MODEL })), '');
});

test('every failure becomes a notification with a button that fixes it', () => {
  const tooLarge = adviceForDaemonError(LensErrorCode.ImageTooLarge, 'Image is 80 MP; the limit is 50 MP.');
  assert.deepEqual(tooLarge.actions, [{ kind: 'openSetting', setting: 'llavaLens.maxImageMegapixels', label: 'Open Setting' }]);
  assert.match(tooLarge.message, /maxImageMegapixels/);
  for (const code of [LensErrorCode.ImageNotFound, LensErrorCode.ImageDecodeFailed, LensErrorCode.UnsupportedImage]) {
    assert.deepEqual(adviceForDaemonError(code, 'x').actions, [{ kind: 'chooseImage' }]);
  }
  for (const code of [LensErrorCode.ModelNotLoaded, LensErrorCode.InvalidModelFolder, LensErrorCode.ModelLoadFailed]) {
    assert.equal(adviceForDaemonError(code, 'x').actions[0].kind, 'selectModel');
  }
  assert.deepEqual(adviceForDaemonError(LensErrorCode.Internal, 'boom').actions.map((a) => a.kind), ['showLogs', 'restartDaemon']);
  assert.deepEqual(adviceForDaemonError(undefined, 'boom').actions.map((a) => a.kind), ['showLogs', 'restartDaemon']);
  assert.equal(adviceForDaemonError(LensErrorCode.DeviceUnavailable, 'x').actions[0].kind, 'openSetting');

  assert.deepEqual(advice.notAnImage('notes.txt').actions, [{ kind: 'chooseImage' }]);
  assert.deepEqual(advice.unreadable('a.png', 'EACCES').actions, [{ kind: 'chooseImage' }]);
  assert.deepEqual(advice.daemonDidNotStart('spawn ENOENT').actions.map((a) => a.kind), ['showLogs', 'restartDaemon', 'openSetting']);
  assert.match(advice.daemonRestarted(true).message, /answer in flight was lost/);
  assert.match(advice.daemonRestarted(false).message, /nothing was lost/);
  assert.deepEqual(advice.daemonGaveUp(true).actions.map((a) => a.kind), ['showLogs', 'restartDaemon']);
  // A remote daemon that refuses (no token, wrong token) offers Set Token… and Open Settings.
  for (const refused of [advice.remoteConnectFailed('ws://h:1', 'no token', { noToken: true }), advice.remoteConnectFailed('ws://h:1', 'wrong token', { status: 401 })]) {
    assert.deepEqual(refused.actions.map(fixLabel), ['Set Token…', 'Open Settings']);
    assert.match(refused.message, /ws:\/\/h:1/);
  }
  assert.match(advice.remoteConnectFailed('ws://h:1', 'wrong token', { status: 401 }).message, /refused the token \(wrong token\)/);
  assert.equal(advice.remoteConnectFailed('ws://h:1', 'nothing listens').actions[0].kind, 'restartDaemon');
  assert.equal(fixLabel(advice.remoteGaveUp('ws://h:1', 'ECONNREFUSED').actions[0]), 'Reconnect');
  assert.match(advice.remoteDropped('ws://h:1', true).message, /reconnecting.*answer in flight was lost/);
  assert.deepEqual(advice.testModelNotice().actions.map((a) => a.kind), ['selectModel', 'openSettings']);
  assert.equal(advice.defaultModelFailed('disk full').actions[0].kind, 'selectModel');
  for (const a of [advice.notAnImage('x'), tooLarge, advice.daemonGaveUp(false)]) for (const f of a.actions) assert.ok(fixLabel(f).length > 0);
});

test('images are recognised by their first bytes', () => {
  const b = (...xs: Array<number | string>) => Uint8Array.from(xs.flatMap((x) => (typeof x === 'string' ? [...Buffer.from(x)] : [x])));
  assert.equal(sniffImage(b(0x89, 'PNG', 0x0d, 0x0a, 0x1a, 0x0a)), 'png');
  assert.equal(sniffImage(b(0xff, 0xd8, 0xff, 0xe0)), 'jpeg');
  assert.equal(sniffImage(b('GIF89a')), 'gif');
  assert.equal(sniffImage(b('RIFF', 0, 0, 0, 0, 'WEBPVP8 ')), 'webp');
  assert.equal(sniffImage(b('BM', 0, 0)), 'bmp');
  assert.equal(sniffImage(b('II', 42, 0)), 'tiff');
  assert.equal(sniffImage(b('MM', 0, 42)), 'tiff');
  assert.equal(sniffImage(b(0, 0, 0, 0x1c, 'ftypavif')), 'avif');
  assert.equal(sniffImage(b('\uFEFF<?xml version="1.0"?>\n<!-- c -->\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg"/>')), 'svg');
  assert.equal(sniffImage(b('# Not an image\n')), undefined);
  assert.equal(sniffImage(b('<html><svg></svg></html>')), undefined);
  assert.equal(sniffImage(new Uint8Array()), undefined);
});
