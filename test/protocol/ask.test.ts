import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { ResponseError } from 'vscode-jsonrpc';
import { LensErrorCode } from '../../common/errors';
import type { AnswerDeltaParams } from '../../common/protocol';
import type { AskRequest } from '../../server/src/runtime/types';
import { FakeEngine, TOKEN_BASE, FAKE_WORDS, fakeAnswerWords } from '../fakes/fakeEngine';
import { makeFixtures, startTyped, type TypedHarness } from './harness';

const T = { timeout: 10_000 };
const isCode = (code: number, re?: RegExp) => (e: ResponseError<unknown>) => e.code === code && (!re || re.test(e.message));

async function loaded(engine = new FakeEngine(), workspaceFolder?: string) {
  const fx = await makeFixtures();
  const h = await startTyped({ engine, ...(workspaceFolder === 'fixtures' ? { workspaceFolder: fx.root } : {}) });
  await h.client.loadModel({ path: fx.model });
  return { fx, h };
}

async function done(h: TypedHarness, fx: { cleanup(): Promise<void> }) {
  await h.close();
  await fx.cleanup();
}

test('streamed deltas arrive in order and concatenate to the final text', T, async () => {
  const { fx, h } = await loaded();
  const deltas: AnswerDeltaParams[] = [];
  const r = await h.client.ask({ prompt: 'describe it', images: [{ path: fx.image }] }, (d) => deltas.push(d));
  assert.equal(r.finishReason, 'eos');
  assert.ok(deltas.length >= 5);
  assert.equal(deltas.map((d) => d.text).join(''), r.text);
  assert.deepEqual(deltas.map((d) => d.index), deltas.map((_, i) => i));
  assert.deepEqual(deltas.map((d) => d.tokenId), r.tokenIds);
  assert.ok(new Set(deltas.map((d) => d.streamId)).size === 1);
  assert.equal(deltas[0].conversationId, undefined, 'a new conversation has no id until the result');
  assert.equal(r.text, fakeAnswerWords([], 'describe it').join(' '));
  assert.equal(r.device, 'cpu');
  assert.equal(r.model, 'tiny');
  assert.ok(r.conversationId.length > 0);
  await done(h, fx);
});

test('without onDelta no deltas are sent; defaults reach the engine', T, async () => {
  let seen: AskRequest | undefined;
  const engine = new FakeEngine({ hooks: { beforeAsk: (req) => void (seen = req) } });
  const { fx, h } = await loaded(engine);
  let notifications = 0;
  h.client.connection.onNotification('lens/answerDelta', () => void notifications++);
  const r = await h.client.ask({ prompt: 'hello', images: [] });
  assert.ok(r.text.length > 0);
  assert.equal(notifications, 0);
  assert.deepEqual(seen!.options, { maxTokens: 256, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [] });
  await h.client.ask({ prompt: 'hello', images: [], maxTokens: 3, temperature: 0.7, topK: 5, topP: 0.9, repetitionPenalty: 1.1, seed: 42, stop: ['x'] });
  assert.deepEqual(seen!.options, { maxTokens: 3, temperature: 0.7, topK: 5, topP: 0.9, repetitionPenalty: 1.1, seed: 42, stop: ['x'] });
  await done(h, fx);
});

test('maxTokens ends with finishReason length; a stop string ends with stop', T, async () => {
  const { fx, h } = await loaded();
  const short = await h.client.ask({ prompt: 'describe it', images: [], maxTokens: 2 });
  assert.equal(short.finishReason, 'length');
  assert.equal(short.tokenIds.length, 2);

  const words = fakeAnswerWords([], 'describe it');
  const stopWord = ` ${words[2]}`;
  const deltas: string[] = [];
  const stopped = await h.client.ask({ prompt: 'describe it', images: [], stop: [stopWord] }, (d) => deltas.push(d.text));
  assert.equal(stopped.finishReason, 'stop');
  assert.equal(stopped.text, words.slice(0, 2).join(' '));
  assert.equal(deltas.join(''), stopped.text);
  await done(h, fx);
});

test('multi-turn: the same conversationId continues the conversation; forget ends it', T, async () => {
  const engine = new FakeEngine();
  const { fx, h } = await loaded(engine);
  const first = await h.client.ask({ prompt: 'what is it', images: [{ path: fx.image }] });
  const deltas: AnswerDeltaParams[] = [];
  const second = await h.client.ask({ conversationId: first.conversationId, prompt: 'and the colour?', images: [] }, (d) => deltas.push(d));
  assert.equal(second.conversationId, first.conversationId);
  assert.ok(deltas.every((d) => d.conversationId === first.conversationId));
  assert.deepEqual(engine.history(first.conversationId), ['what is it', first.text, 'and the colour?', second.text]);
  assert.equal(second.text, fakeAnswerWords(['what is it', first.text], 'and the colour?').join(' '));

  const fresh = await h.client.ask({ prompt: 'and the colour?', images: [] });
  assert.notEqual(fresh.conversationId, first.conversationId);

  assert.equal(await h.client.forgetConversation(first.conversationId), null);
  assert.equal(await h.client.forgetConversation('never-existed'), null);
  await assert.rejects(
    h.client.ask({ conversationId: first.conversationId, prompt: 'more?', images: [] }),
    isCode(LensErrorCode.UnknownConversation, /leaving out conversationId/),
  );
  await done(h, fx);
});

test('images as base64 bytes are decoded; invalid base64 is InvalidParams', T, async () => {
  let seen: AskRequest | undefined;
  const engine = new FakeEngine({ hooks: { beforeAsk: (req) => void (seen = req) } });
  const { fx, h } = await loaded(engine);
  const r = await h.client.ask({ prompt: 'what', images: [{ bytes: fx.png.toString('base64'), mimeType: 'image/png' }] });
  assert.equal(r.finishReason, 'eos');
  const img = seen!.images[0];
  assert.ok('bytes' in img && img.bytes instanceof Uint8Array);
  assert.deepEqual(Buffer.from(img.bytes), fx.png);

  await assert.rejects(
    h.client.ask({ prompt: 'what', images: [{ bytes: 'not base64!!' }] }),
    isCode(LensErrorCode.InvalidParams, /images\[0\]\.bytes.*base64/),
  );
  await assert.rejects(h.client.ask({ prompt: 'what', images: [{ bytes: 'abc' }] }), isCode(LensErrorCode.InvalidParams, /base64/));
  // Bytes that are not an image: the engine's error comes through with its code.
  await assert.rejects(
    h.client.ask({ prompt: 'what', images: [{ bytes: Buffer.from('hello world').toString('base64') }] }),
    isCode(LensErrorCode.ImageDecodeFailed),
  );
  assert.equal((await h.client.ask({ prompt: 'still there?', images: [] })).finishReason, 'eos');
  await done(h, fx);
});

test('image paths: missing file is ImageNotFound; relative paths use the workspace folder', T, async () => {
  const { fx, h } = await loaded(new FakeEngine(), 'fixtures');
  await assert.rejects(
    h.client.ask({ prompt: 'what', images: [{ path: path.join(fx.root, 'missing.png') }] }),
    isCode(LensErrorCode.ImageNotFound, /missing\.png/),
  );
  const r = await h.client.ask({ prompt: 'what', images: [{ path: 'img.png' }] });
  assert.equal(r.finishReason, 'eos');
  await done(h, fx);
});

test('more images than the model accepts, or maxTokens over the context, is InvalidParams', T, async () => {
  let seen: AskRequest | undefined;
  const { fx, h } = await loaded(new FakeEngine({ imagesPerPrompt: 2, contextLength: 64, hooks: { beforeAsk: (req) => void (seen = req) } }));
  const three = [{ path: fx.image }, { path: fx.image }, { path: fx.image }];
  await assert.rejects(h.client.ask({ prompt: 'what', images: three }), isCode(LensErrorCode.InvalidParams, /3 images.*at most 2/));
  await assert.rejects(h.client.ask({ prompt: 'what', images: [], maxTokens: 65 }), isCode(LensErrorCode.InvalidParams, /context length 64/));
  assert.equal((await h.client.ask({ prompt: 'what', images: three.slice(0, 2) })).finishReason, 'eos');
  assert.equal(seen!.options.maxTokens, 64, 'the default maxTokens is lowered to the context length');
  assert.equal((await h.client.ask({ prompt: 'what', images: [], maxTokens: 64 })).finishReason, 'eos');
  await done(h, fx);
});

test('an unexpected engine failure is Internal, logged, and the daemon keeps serving', T, async () => {
  let fail = true;
  const engine = new FakeEngine({
    hooks: {
      beforeAsk: () => {
        if (fail) throw new TypeError('boom inside the engine');
      },
    },
  });
  const { fx, h } = await loaded(engine);
  const logs: string[] = [];
  h.client.onLog((m) => logs.push(m.message));
  await assert.rejects(h.client.ask({ prompt: 'x', images: [] }), isCode(LensErrorCode.Internal, /boom inside the engine.*still running/));
  fail = false;
  assert.equal((await h.client.ask({ prompt: 'x', images: [] })).finishReason, 'eos');
  assert.ok(logs.some((l) => /boom inside the engine/.test(l)));
  await done(h, fx);
});

test('fake engine token ids map to its word list', () => {
  const words = fakeAnswerWords([], 'q');
  assert.ok(words.every((w) => FAKE_WORDS.includes(w)));
  assert.equal(TOKEN_BASE + FAKE_WORDS.indexOf(words[0]) >= TOKEN_BASE, true);
});
