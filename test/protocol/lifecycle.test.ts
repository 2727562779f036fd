import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResponseError } from 'vscode-jsonrpc';
import { LensErrorCode } from '../../common/errors';
import { startRaw, startTyped, makeFixtures } from './harness';

const T = { timeout: 10_000 };

test('initialize answers serverInfo and lensCapabilities', T, async () => {
  const h = await startTyped({ initialize: false });
  const result = await h.client.initialize({ initializationOptions: { queueLimit: 3 } });
  assert.deepEqual(result.serverInfo, { name: 'llava-lens', version: '9.9.9-test' });
  assert.deepEqual(result.lensCapabilities, {
    modelLoaded: null,
    imagesPerPrompt: 4,
    toolCallFormat: 'none',
    executionProviders: ['cpu', 'webgpu'],
    device: null,
    version: '9.9.9-test',
    streaming: 'lens/answerDelta',
  });
  assert.equal(typeof result.capabilities, 'object');
  const ready = await h.waitForStatus((s) => s.state === 'ready');
  assert.equal(ready.queueLength, 0);
  assert.ok(ready.rssBytes > 0);
  assert.equal(ready.model, undefined);
  await h.close();
  assert.deepEqual(h.exitCodes, [0]);
});

test('initialize with a wrong initializationOptions field is refused with InvalidParams', T, async () => {
  const h = await startTyped({ initialize: false });
  await assert.rejects(
    h.client.initialize({ initializationOptions: { queueLimit: 'many' as unknown as number } }),
    (e: ResponseError<unknown>) => e.code === LensErrorCode.InvalidParams && /initializationOptions\.queueLimit/.test(e.message) && /integer/.test(e.message),
  );
  await assert.rejects(
    h.client.initialize({ initializationOptions: { device: 'tpu' as never } }),
    (e: ResponseError<unknown>) => e.code === LensErrorCode.InvalidParams && /device/.test(e.message) && /cuda/.test(e.message),
  );
  // A correct initialize still works afterwards.
  const ok = await h.client.initialize({});
  assert.equal(ok.serverInfo.name, 'llava-lens');
  await h.close();
});

test('exit without shutdown reports exit code 1 and resolves exited', T, async () => {
  const h = startRaw();
  h.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { processId: null, capabilities: {} } });
  await h.response(1);
  h.send({ jsonrpc: '2.0', method: 'exit' });
  await h.daemon.exited;
  assert.deepEqual(h.exitCodes, [1]);
  h.toDaemon.end();
  h.fromDaemon.end();
});

test('shutdown unloads the model; later requests are refused', T, async () => {
  const fx = await makeFixtures();
  const h = startRaw();
  h.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { processId: null, capabilities: {} } });
  await h.response(1);
  h.send({ jsonrpc: '2.0', method: 'initialized', params: {} });
  h.send({ jsonrpc: '2.0', id: 2, method: 'lens/loadModel', params: { path: fx.model } });
  assert.ok((await h.response(2)).result);
  h.send({ jsonrpc: '2.0', id: 3, method: 'shutdown' });
  assert.equal((await h.response(3)).result, null);
  assert.equal(h.engine.info(), undefined);
  assert.equal(h.engine.calls.at(-1), 'unload');
  h.send({ jsonrpc: '2.0', id: 4, method: 'lens/ask', params: { prompt: 'hi', images: [] } });
  const after = await h.response(4);
  assert.equal(after.error?.code, -32600);
  assert.match(after.error!.message, /shutting down/);
  h.send({ jsonrpc: '2.0', method: 'exit' });
  await h.daemon.exited;
  assert.deepEqual(h.exitCodes, [0]);
  h.toDaemon.end();
  h.fromDaemon.end();
  await fx.cleanup();
});
