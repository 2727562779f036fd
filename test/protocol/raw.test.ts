/**
 * Bad input on the wire: unknown methods, wrong param types (each field), broken framing and
 * JSON. After each, the daemon must still answer a valid ask.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LensErrorCode } from '../../common/errors';
import { makeFixtures, startRaw, type RawHarness } from './harness';

const T = { timeout: 15_000 };

let nextId = 1000;

async function request(h: RawHarness, method: string, params?: unknown) {
  const id = nextId++;
  h.send(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params });
  return h.response(id);
}

async function assertStillServing(h: RawHarness) {
  const r = await request(h, 'lens/ask', { prompt: 'are you there?', images: [] });
  assert.equal(r.error, undefined, `daemon stopped answering: ${JSON.stringify(r.error)}`);
  assert.equal((r.result as { finishReason: string }).finishReason, 'eos');
}

async function startLoaded() {
  const fx = await makeFixtures();
  const h = startRaw();
  await request(h, 'initialize', { processId: null, capabilities: {} });
  h.send({ jsonrpc: '2.0', method: 'initialized', params: {} });
  const loaded = await request(h, 'lens/loadModel', { path: fx.model });
  assert.equal(loaded.error, undefined);
  return { fx, h };
}

test('unknown method is MethodNotFound; unknown notifications are ignored', T, async () => {
  const { fx, h } = await startLoaded();
  const r = await request(h, 'lens/doesNotExist', {});
  assert.equal(r.error?.code, -32601);
  h.send({ jsonrpc: '2.0', method: 'lens/whatever', params: { x: 1 } });
  await assertStillServing(h);
  await h.close();
  await fx.cleanup();
});

const WRONG_PARAMS: Array<[string, string, unknown, RegExp]> = [
  ['lens/ask', 'no params', undefined, /params must be an object/],
  ['lens/ask', 'params not an object', 'hello', /params must be an object/],
  ['lens/ask', 'positional params', [{ prompt: 'a', images: [] }, 2], /one object/],
  ['lens/ask', 'prompt missing', { images: [] }, /"prompt" must be a non-empty string/],
  ['lens/ask', 'prompt empty', { prompt: '  ', images: [] }, /"prompt" must be a non-empty string/],
  ['lens/ask', 'prompt number', { prompt: 5, images: [] }, /"prompt" must be a non-empty string; got 5/],
  ['lens/ask', 'images missing', { prompt: 'q' }, /"images" must be an array/],
  ['lens/ask', 'images object', { prompt: 'q', images: {} }, /"images" must be an array/],
  ['lens/ask', 'image not object', { prompt: 'q', images: [3] }, /"images\[0\]" must be \{path: string\}/],
  ['lens/ask', 'image neither', { prompt: 'q', images: [{ url: 'x' }] }, /"images\[0\]".*neither "path" nor "bytes"/],
  ['lens/ask', 'image path number', { prompt: 'q', images: [{ path: 1 }] }, /"images\[0\]\.path" must be a non-empty string/],
  ['lens/ask', 'image bytes number', { prompt: 'q', images: [{ bytes: 1 }] }, /"images\[0\]\.bytes" must be a non-empty string/],
  ['lens/ask', 'mimeType number', { prompt: 'q', images: [{ bytes: 'AAAA', mimeType: 1 }] }, /"images\[0\]\.mimeType" must be a string/],
  ['lens/ask', 'conversationId number', { prompt: 'q', images: [], conversationId: 7 }, /"conversationId" must be a non-empty string/],
  ['lens/ask', 'maxTokens string', { prompt: 'q', images: [], maxTokens: '10' }, /"maxTokens" must be an integer >= 1/],
  ['lens/ask', 'maxTokens zero', { prompt: 'q', images: [], maxTokens: 0 }, /"maxTokens" must be an integer >= 1/],
  ['lens/ask', 'maxTokens fraction', { prompt: 'q', images: [], maxTokens: 1.5 }, /"maxTokens"/],
  ['lens/ask', 'temperature negative', { prompt: 'q', images: [], temperature: -0.1 }, /"temperature" must be a number >= 0 \(0 = greedy\)/],
  ['lens/ask', 'temperature string', { prompt: 'q', images: [], temperature: 'hot' }, /"temperature"/],
  ['lens/ask', 'topK negative', { prompt: 'q', images: [], topK: -1 }, /"topK" must be an integer >= 0/],
  ['lens/ask', 'topK fraction', { prompt: 'q', images: [], topK: 2.5 }, /"topK"/],
  ['lens/ask', 'topP zero', { prompt: 'q', images: [], topP: 0 }, /"topP" must be a number in \(0, 1\]/],
  ['lens/ask', 'topP above one', { prompt: 'q', images: [], topP: 1.5 }, /"topP"/],
  ['lens/ask', 'repetitionPenalty zero', { prompt: 'q', images: [], repetitionPenalty: 0 }, /"repetitionPenalty" must be a number > 0/],
  ['lens/ask', 'seed negative', { prompt: 'q', images: [], seed: -3 }, /"seed" must be an integer/],
  ['lens/ask', 'stop not array', { prompt: 'q', images: [], stop: 'x' }, /"stop" must be an array of strings/],
  ['lens/ask', 'stop item number', { prompt: 'q', images: [], stop: ['a', 2] }, /"stop\[1\]" must be a string/],
  ['lens/ask', 'streamId number', { prompt: 'q', images: [], streamId: 3 }, /"streamId" must be a non-empty string/],
  ['lens/loadModel', 'path missing', {}, /"path" must be a non-empty string/],
  ['lens/loadModel', 'path number', { path: 3 }, /"path"/],
  ['lens/loadModel', 'device unknown', { path: '/x', device: 'tpu' }, /"device" must be one of auto, cuda/],
  ['lens/loadModel', 'dtype unknown', { path: '/x', dtype: 'fp8' }, /"dtype" must be one of fp32, fp16/],
  ['lens/loadModel', 'dtype bad file', { path: '/x', dtype: { text_model: 'fp16' } }, /"dtype\.text_model" is not a model file/],
  ['lens/loadModel', 'dtype bad value', { path: '/x', dtype: { vision_encoder: 16 } }, /"dtype\.vision_encoder" must be one of/],
  ['lens/loadModel', 'workDoneToken object', { path: '/x', workDoneToken: {} }, /"workDoneToken" must be a string or an integer/],
  ['lens/listModels', 'roots string', { roots: '/x' }, /"roots" must be an array of strings/],
  ['lens/listModels', 'roots item', { roots: [1] }, /"roots\[0\]" must be a string/],
  ['lens/forgetConversation', 'id missing', {}, /"conversationId" must be a non-empty string/],
  ['lens/unloadModel', 'unexpected params', { now: true }, /takes no params/],
];

test('wrong param types: InvalidParams naming the field and the expected type; still serving after each', T, async () => {
  const { fx, h } = await startLoaded();
  for (const [method, what, params, message] of WRONG_PARAMS) {
    const r = await request(h, method, params);
    assert.equal(r.error?.code, LensErrorCode.InvalidParams, `${method} ${what}: ${JSON.stringify(r)}`);
    assert.match(r.error!.message, message, `${method} ${what}`);
    assert.ok(r.error!.message.startsWith(`${method}: `), `${method} ${what}: message names the method`);
    await assertStillServing(h);
  }
  await h.close();
  await fx.cleanup();
});

test('broken JSON and broken framing are skipped; the daemon keeps serving', T, async () => {
  const { fx, h } = await startLoaded();
  h.send('{"jsonrpc": "2.0", "id": 1, "method": "lens/ask", ');
  await assertStillServing(h);
  h.send('this is not json at all');
  await assertStillServing(h);
  h.send('[1, 2, 3]');
  await assertStillServing(h);
  h.send('{"jsonrpc":"2.0","result":1}');
  await assertStillServing(h);
  await h.close();
  await fx.cleanup();
});

test('a header without Content-Length is reported, and the next well-framed message is served', T, async () => {
  const { fx, h } = await startLoaded();
  // vscode-jsonrpc drops the buffered bytes of a header block without Content-Length.
  h.sendBytes('X-Nonsense: 1\r\n\r\n');
  await assertStillServing(h);
  await h.close();
  await fx.cleanup();
});

test('requests before initialize still get answers (the model is simply not loaded)', T, async () => {
  const h = startRaw();
  const r = await request(h, 'lens/ask', { prompt: 'q', images: [] });
  assert.equal(r.error?.code, LensErrorCode.ModelNotLoaded);
  const list = await request(h, 'lens/listModels');
  assert.deepEqual(list.result, { models: [] });
  await h.close();
});
