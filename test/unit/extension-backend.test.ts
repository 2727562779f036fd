/**
 * `llavaLens.backend.*` (client/src/settings.ts): the settings -> the spawned daemon's `serve`
 * flags, environment and `initializationOptions`; what a change needs; the status bar and advice
 * on a serving engine. The spawn is checked against the daemon's own flag parser (serveFlags.ts),
 * so what the extension spawns is what `serve` accepts.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import { checkInitializationOptions, type LensStatus, type ModelInfo } from '../../common/protocol';
import { advice, adviceForDaemonError, fixLabel } from '../../client/src/errorAdvice';
import { BACKEND_API_KEY_ENV, BACKEND_API_KEY_SECRET, DEFAULT_SETTINGS, readSettings, REMOTE_TOKEN_SECRET, settingsEffects, toDaemonSpawn, toInitializationOptions, type LensSettings } from '../../client/src/settings';
import { presentStatus } from '../../client/src/statusText';
import { parseServeFlags } from '../../server/src/daemon/serveFlags';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const KEY = 'sk-test-7f3a9c';

function read(values: Record<string, unknown>) {
  return readSettings((key) => values[key]);
}

const OPENAI: LensSettings = { ...DEFAULT_SETTINGS, backend: 'openai', backendBaseUrl: 'http://gpu-box:8000/v1', backendModel: 'llava-hf/llava-onevision-qwen2-7b-ov-hf' };

test('package.json: the backend settings and their choices', () => {
  const props = pkg.contributes.configuration.properties as Record<string, { default: unknown; enum?: string[] }>;
  assert.deepEqual(props['llavaLens.backend.kind'].enum, ['onnx', 'openai']);
  assert.equal(props['llavaLens.backend.kind'].default, 'onnx');
  assert.deepEqual(props['llavaLens.backend.tools'].enum, ['api', 'prompt']);
  assert.equal(props['llavaLens.backend.tools'].default, 'api');
  // VS Code keeps settings in one tree by their dotted names: a setting whose name is another's
  // prefix ("llavaLens.backend" beside "llavaLens.backend.baseUrl") would be dropped.
  const keys = Object.keys(props);
  for (const k of keys) assert.ok(!keys.some((other) => other.startsWith(`${k}.`)), `${k} is a prefix of another setting`);
  assert.notEqual(BACKEND_API_KEY_SECRET, REMOTE_TOKEN_SECRET);
});

test('the local model (default): plain `serve`, nothing added to the environment', () => {
  assert.deepEqual(toDaemonSpawn(DEFAULT_SETTINGS, KEY), { ok: true, args: [], env: {} }, 'a stored key is not handed to an ONNX daemon');
  const init = toInitializationOptions(DEFAULT_SETTINGS, '/cache/models/tiny-onevision');
  assert.equal(init.model, '/cache/models/tiny-onevision');
});

test('backend openai: flags for serve, the key only in the environment, no model folder sent', () => {
  const { settings, problems } = read({ 'backend.kind': 'openai', 'backend.baseUrl': ' http://gpu-box:8000/v1 ', 'backend.model': ' llava:7b ', 'backend.tools': 'prompt', model: '/opt/m/llava', device: 'cuda', dtype: 'q4', modelFolders: ['/opt/m'], maxImageMegapixels: 12 });
  assert.deepEqual(problems, []);
  assert.equal(settings.backendBaseUrl, 'http://gpu-box:8000/v1');
  assert.equal(settings.backendModel, 'llava:7b');
  const spawn = toDaemonSpawn(settings, ` ${KEY}\n`);
  assert.ok(spawn.ok);
  assert.deepEqual(spawn.args, ['--backend', 'openai', '--base-url', 'http://gpu-box:8000/v1', '--backend-model', 'llava:7b', '--backend-tools', 'prompt', '--api-key-env', BACKEND_API_KEY_ENV]);
  assert.deepEqual(spawn.env, { [BACKEND_API_KEY_ENV]: KEY });
  assert.ok(!spawn.args.some((a) => a.includes(KEY)), 'the key never goes on the command line');
  // What the extension spawns is what the daemon accepts (vscode-languageclient adds --node-ipc).
  const flags = parseServeFlags([...spawn.args, '--node-ipc', '--clientProcessId=42']);
  assert.equal(flags.mode, 'ipc');
  assert.deepEqual(flags.backend, { kind: 'openai', baseUrl: 'http://gpu-box:8000/v1', model: 'llava:7b', tools: 'prompt', apiKeyEnv: BACKEND_API_KEY_ENV });
  // No local model: no folder, folders, device or precision; the image limit still applies here.
  const init = toInitializationOptions(settings, undefined);
  assert.equal(checkInitializationOptions(init), undefined);
  assert.equal(init.model, undefined);
  assert.deepEqual(init, { maxImageMegapixels: 12 });
  assert.deepEqual(toInitializationOptions(settings, '/a/folder/anyway'), { maxImageMegapixels: 12 }, 'a folder given by mistake is not sent');
});

test('backend openai without a key: no --api-key-env, nothing in the environment', () => {
  for (const key of [undefined, '', '   ']) {
    const spawn = toDaemonSpawn(OPENAI, key);
    assert.ok(spawn.ok);
    assert.deepEqual(spawn.args, ['--backend', 'openai', '--base-url', OPENAI.backendBaseUrl, '--backend-model', OPENAI.backendModel, '--backend-tools', 'api']);
    assert.deepEqual(spawn.env, {});
    assert.equal(parseServeFlags([...spawn.args, '--node-ipc']).backend?.apiKeyEnv, undefined);
  }
});

test('a missing base URL or model: no spawn, a message naming the setting to fill in', () => {
  const noUrl = toDaemonSpawn({ ...OPENAI, backendBaseUrl: '' }, KEY);
  assert.ok(!noUrl.ok);
  assert.equal(noUrl.missing, 'backend.baseUrl');
  assert.match(noUrl.message, /llavaLens\.backend\.baseUrl is empty/);
  const noModel = toDaemonSpawn({ ...OPENAI, backendModel: '' }, KEY);
  assert.ok(!noModel.ok);
  assert.equal(noModel.missing, 'backend.model');
  assert.match(noModel.message, /llavaLens\.backend\.model is empty.*http:\/\/gpu-box:8000\/v1/);
  const a = advice.backendIncomplete(noUrl.message);
  assert.equal(a.severity, 'error');
  assert.deepEqual(a.actions.map(fixLabel), ['Open Settings']);
  assert.deepEqual(a.actions[0], { kind: 'openSetting', setting: 'llavaLens.backend', label: 'Open Settings' });
});

test('bad backend values fall back to their defaults with a message naming the setting', () => {
  const { settings, problems } = read({ 'backend.kind': 'vllm', 'backend.baseUrl': 'ftp://x/v1', 'backend.model': 7, 'backend.tools': 'json' });
  assert.equal(settings.backend, 'onnx');
  assert.equal(settings.backendBaseUrl, '');
  assert.equal(settings.backendModel, '');
  assert.equal(settings.backendTools, 'api');
  for (const key of ['backend.kind', 'backend.baseUrl', 'backend.model', 'backend.tools']) assert.ok(problems.some((p) => p.includes(`llavaLens.${key} `)), key);
  // A key or query in the URL would end up on the command line: refused (the key has its own command).
  for (const url of ['http://user:sk@gpu-box:8000/v1', 'http://gpu-box:8000/v1?key=sk', 'not a url']) {
    const r = read({ 'backend.baseUrl': url });
    assert.equal(r.settings.backendBaseUrl, '', url);
    assert.equal(r.problems.length, 1, url);
  }
  assert.equal(read({ 'backend.baseUrl': 'https://api.example.com/v1' }).settings.backendBaseUrl, 'https://api.example.com/v1');
});

test('settings changes: the backend restarts a local daemon (after the answer in flight); the model folder does nothing there', () => {
  const none = { restartDaemon: false, reloadModel: false, diagnostics: false, remote: false };
  assert.equal(settingsEffects(DEFAULT_SETTINGS, OPENAI).restartDaemon, true, 'onnx -> openai');
  assert.equal(settingsEffects(OPENAI, { ...OPENAI, backend: 'onnx' }).restartDaemon, true, 'openai -> onnx');
  assert.equal(settingsEffects(OPENAI, { ...OPENAI, backendBaseUrl: 'http://127.0.0.1:11434/v1' }).restartDaemon, true);
  assert.equal(settingsEffects(OPENAI, { ...OPENAI, backendModel: 'llava:7b' }).restartDaemon, true);
  assert.equal(settingsEffects(OPENAI, { ...OPENAI, backendTools: 'prompt' }).restartDaemon, true);
  assert.equal(settingsEffects(OPENAI, { ...OPENAI, maxImageMegapixels: 10 }).restartDaemon, true);
  assert.deepEqual(settingsEffects(OPENAI, { ...OPENAI, model: '/m', dtype: 'q4', device: 'cpu' }), none, 'no lens/loadModel on a serving engine');
  assert.deepEqual(settingsEffects(DEFAULT_SETTINGS, { ...DEFAULT_SETTINGS, backendBaseUrl: 'http://x/v1', backendModel: 'm', backendTools: 'prompt' }), none, 'the server settings matter only with kind openai');
  const remote = { ...OPENAI, remoteUrl: 'wss://lens:7000' };
  assert.deepEqual(settingsEffects(remote, { ...remote, backendModel: 'other' }), none, 'a remote daemon uses its operator\'s backend');
  assert.deepEqual(toInitializationOptions(remote, undefined), {}, 'remote.url wins over backend');
});

test('status bar on a serving engine: device remote and the server\'s model; advice for its failures', () => {
  const model: ModelInfo = {
    path: 'http://gpu-box:8000/v1',
    name: 'llava:7b',
    modelType: 'openai-compatible',
    device: 'remote',
    dtype: { vision_encoder: 'remote', embed_tokens: 'remote', decoder_model_merged: 'remote' },
    contextLength: 32768,
    imagesPerPrompt: 4,
    imageSize: 336,
    toolCallFormat: 'chatml',
    isTestModel: false,
  };
  const status: LensStatus = { state: 'ready', rssBytes: 80 * 1024 * 1024, queueLength: 0, device: 'remote', model };
  const ready = presentStatus({ phase: 'running', status });
  assert.equal(ready.text, '$(eye) LLaVA Lens: remote · llava:7b');
  assert.match(ready.tooltip, /Server: http:\/\/gpu-box:8000\/v1/);
  assert.doesNotMatch(ready.tooltip, /Folder:|Precision:/);
  const idle = presentStatus({ phase: 'idle' }, { backend: { baseUrl: 'http://gpu-box:8000/v1', model: 'llava:7b' } });
  assert.match(idle.tooltip, /Backend: llava:7b at http:\/\/gpu-box:8000\/v1/);
  assert.doesNotMatch(presentStatus({ phase: 'idle' }).tooltip, /Backend/);

  const failed = adviceForDaemonError(LensErrorCode.BackendFailed, 'http://gpu-box:8000/v1/chat/completions answered 401 Unauthorized: check the API key');
  assert.deepEqual(failed.actions.map((a) => a.kind), ['openSetting', 'setBackendApiKey', 'showLogs']);
  assert.deepEqual(failed.actions.map(fixLabel), ['Backend Settings', 'Set API Key…', 'Show Logs']);
  const pick = advice.modelFromBackend('http://gpu-box:8000/v1', 'llava:7b');
  assert.match(pick.message, /llavaLens\.backend\.model.*"llava:7b"/);
  assert.deepEqual(pick.actions, [{ kind: 'openSetting', setting: 'llavaLens.backend.model', label: 'Open Setting' }]);
});
