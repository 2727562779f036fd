import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkAskParams,
  checkForgetConversationParams,
  checkInitializationOptions,
  checkListModelsParams,
  checkLoadModelParams,
  checkNoParams,
  decodeBase64,
  isAskParams,
  isLoadModelParams,
} from '../../common/protocol';

test('checkAskParams accepts a minimal and a full ask', () => {
  assert.equal(checkAskParams({ prompt: 'q', images: [] }), undefined);
  const full = {
    conversationId: 'c1',
    images: [{ path: '/a.png' }, { bytes: 'AAAA', mimeType: 'image/png' }],
    prompt: 'q',
    maxTokens: 10,
    temperature: 0.5,
    topK: 40,
    topP: 0.95,
    repetitionPenalty: 1.1,
    seed: 0,
    stop: ['\n'],
    streamId: 's',
    futureField: 'ignored',
  };
  assert.equal(checkAskParams(full), undefined);
  assert.equal(isAskParams(full), true);
  assert.equal(checkAskParams({ prompt: 'q', images: [], topP: 1, temperature: 0, topK: 0, seed: 4294967295 }), undefined);
});

test('checkAskParams names the field, the expected type and what was sent', () => {
  assert.equal(checkAskParams({ prompt: 'q', images: [], temperature: -1 }), 'lens/ask: "temperature" must be a number >= 0 (0 = greedy); got -1.');
  assert.equal(checkAskParams({ prompt: 'q', images: [], topP: NaN }), 'lens/ask: "topP" must be a number in (0, 1] (1 = off); got NaN.');
  assert.equal(checkAskParams({ prompt: 'q', images: [], seed: 2 ** 32 }), 'lens/ask: "seed" must be an integer in 0..4294967295; got 4294967296.');
  assert.equal(checkAskParams(null), 'lens/ask: params must be an object; got null.');
  assert.match(checkAskParams({ prompt: 'q', images: [null] })!, /"images\[0\]" must be .* got null/);
  assert.equal(isAskParams({ prompt: '', images: [] }), false);
});

test('checkLoadModelParams', () => {
  assert.equal(checkLoadModelParams({ path: '/m' }), undefined);
  assert.equal(checkLoadModelParams({ path: '/m', dtype: 'q4f16', device: 'cpu', workDoneToken: 3 }), undefined);
  assert.equal(checkLoadModelParams({ path: '/m', dtype: { vision_encoder: 'fp16', decoder_model_merged: 'q4' } }), undefined);
  assert.match(checkLoadModelParams({ path: '/m', dtype: ['fp16'] })!, /"dtype" must be a precision name or an object/);
  assert.equal(isLoadModelParams({ path: '' }), false);
});

test('checkInitializationOptions', () => {
  assert.equal(checkInitializationOptions(undefined), undefined);
  assert.equal(checkInitializationOptions(null), undefined);
  assert.equal(
    checkInitializationOptions({ modelRoots: ['/a'], model: '/m', dtype: 'fp16', device: 'auto', maxImageMegapixels: 12.5, maxHistoryTurns: 0, queueLimit: 1 }),
    undefined,
  );
  assert.match(checkInitializationOptions({ maxImageMegapixels: 0 })!, /maxImageMegapixels" must be a number > 0/);
  assert.match(checkInitializationOptions({ queueLimit: 0 })!, /queueLimit" must be an integer >= 1/);
  assert.match(checkInitializationOptions({ modelRoots: 'x' })!, /modelRoots" must be an array of strings/);
  assert.match(checkInitializationOptions([])!, /initializationOptions" must be an object/);
});

test('the other checks', () => {
  assert.equal(checkListModelsParams(undefined), undefined);
  assert.equal(checkListModelsParams({}), undefined);
  assert.equal(checkListModelsParams({ roots: ['/a'] }), undefined);
  assert.equal(checkForgetConversationParams({ conversationId: 'x' }), undefined);
  assert.match(checkForgetConversationParams({ conversationId: '' })!, /non-empty string/);
  const none = checkNoParams('lens/unloadModel');
  assert.equal(none(undefined), undefined);
  assert.equal(none(null), undefined);
  assert.equal(none({}), undefined);
  assert.match(none({ a: 1 })!, /takes no params/);
});

test('decodeBase64', () => {
  assert.deepEqual(decodeBase64('aGVsbG8='), new Uint8Array(Buffer.from('hello')));
  assert.deepEqual(decodeBase64('aGVs\nbG8='), new Uint8Array(Buffer.from('hello')));
  assert.deepEqual(decodeBase64(''), new Uint8Array(0));
  assert.equal(decodeBase64('aGVsbG8'), undefined, 'wrong length');
  assert.equal(decodeBase64('aGV$bG8='), undefined, 'bad character');
  assert.equal(decodeBase64('data:image/png;base64,AAAA'), undefined, 'data: URLs are refused');
  assert.equal(decodeBase64('aGVsbG8_'), undefined, 'url-safe alphabet is refused');
});
