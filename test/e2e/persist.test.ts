/**
 * Persisted conversations (issue 6 §5) on a generated tiny model: a conversation continues after
 * a restart (a new OnnxEngine on the same state folder) with exactly the tokens an uninterrupted
 * engine gives; an LRU-evicted conversation comes back from disk; forget deletes the file; a
 * truncated or corrupt file is reported and never fatal; the worker engine passes stateDir on;
 * maxPromptTokens refuses an oversized message.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import { OnnxEngine, type OnnxEngineOptions } from '../../server/src/runtime/engine';
import type { AskRequest, AskResult, GenerationOptions } from '../../server/src/runtime/types';
import { WorkerEngine } from '../../server/src/runtime/workerEngine';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng, patternJpeg } from '../fixtures/images';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-persist-'));
const model = path.join(root, 'tiny-onevision');
const never = () => new AbortController().signal;
const opts = (o: Partial<GenerationOptions> = {}): GenerationOptions => ({ maxTokens: 5, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [], ...o });

/** The conversation every test replays: an image, a follow-up with a second image, a text follow-up. */
let turns: Array<Omit<AskRequest, 'options' | 'conversationId'>>;
/** Reference answers: turns 1..3 in one engine without persistence. */
let reference: AskResult[];

before(async () => {
  await makeTestModel(model, { preset: 'tiny-onevision', seed: 2 });
  turns = [
    { system: 'You are terse.', images: [{ bytes: await diagramPng() }], prompt: 'What does this show?' },
    { images: [{ bytes: await patternJpeg(), mimeType: 'image/jpeg' }], prompt: 'And this one?' },
    { images: [], prompt: 'Compare them.' },
  ];
  const c = await engine();
  reference = await ask(c, turns);
  await c.unload();
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

async function engine(o: OnnxEngineOptions = {}): Promise<OnnxEngine> {
  const e = new OnnxEngine(o);
  await e.load(model, {}, () => undefined, never());
  return e;
}

/** Asks `ts` in order on one conversation (`conversationId` to continue one). */
async function ask(e: OnnxEngine, ts: typeof turns, conversationId?: string): Promise<AskResult[]> {
  const out: AskResult[] = [];
  for (const t of ts) {
    const r = await e.ask({ ...t, ...(conversationId !== undefined ? { conversationId } : {}), options: opts() }, () => undefined, never());
    conversationId = r.conversationId;
    out.push(r);
  }
  return out;
}

const stateDir = (name: string) => path.join(root, name);
const convFile = (dir: string, id: string) => path.join(dir, 'conversations', `${id}.jsonl`);

test('after a restart a conversation continues with exactly the tokens of an uninterrupted run', async () => {
  const dir = stateDir('restart');
  const a = await engine({ stateDir: dir });
  const [t1, t2] = await ask(a, turns.slice(0, 2));
  assert.deepEqual([t1.tokenIds, t2.tokenIds], [reference[0].tokenIds, reference[1].tokenIds]);
  assert.equal(fs.readFileSync(convFile(dir, t1.conversationId), 'utf8').trimEnd().split('\n').length, 3, 'header + two turns, on disk before ask returned');
  await a.unload();

  const logs: string[] = [];
  const b = await engine({ stateDir: dir, log: (m) => logs.push(m) });
  const [t3] = await ask(b, turns.slice(2), t1.conversationId);
  assert.ok(logs.some((m) => /restored 2 turn\(s\)/.test(m)), logs.join('\n'));
  assert.equal(t3.conversationId, t1.conversationId);
  assert.equal(t3.timings.cachedTokens, 0, 'no KV cache after a restart: the whole context is prefilled');
  assert.equal(t3.timings.promptTokens, reference[2].timings.promptTokens, 'the same context ids');
  assert.ok(t3.tokenIds.length > 0);
  assert.deepEqual(t3.tokenIds, reference[2].tokenIds);
  await b.unload();
});

test('history trimmed before a restart (oldest turn and its image dropped) is replayed as trimmed', async () => {
  const limits = { maxHistoryTurns: 2 };
  const four = [...turns, { images: [], prompt: 'Which is brighter?' }];
  const c = await engine({ limits });
  const ref = await ask(c, four);
  await c.unload();
  const dir = stateDir('trimmed');
  const a = await engine({ stateDir: dir, limits });
  const [t1] = await ask(a, four.slice(0, 3)); // turn 3 drops turn 1
  await a.unload();
  assert.match(fs.readFileSync(convFile(dir, t1.conversationId), 'utf8'), /"drop":\[\[1,2\]\]/);
  const b = await engine({ stateDir: dir, limits });
  const [t4] = await ask(b, four.slice(3), t1.conversationId);
  assert.equal(t4.timings.promptTokens, ref[3].timings.promptTokens);
  assert.deepEqual(t4.tokenIds, ref[3].tokenIds);
  await b.unload();
});

test('a conversation evicted from memory (LRU) is restored transparently', async () => {
  const e = await engine({ stateDir: stateDir('lru'), limits: { maxConversations: 1 } });
  const [t1] = await ask(e, turns.slice(0, 1));
  await ask(e, [{ images: [], prompt: 'Another conversation.' }]); // evicts the first
  const [t2, t3] = await ask(e, turns.slice(1), t1.conversationId);
  assert.deepEqual([t2.tokenIds, t3.tokenIds], [reference[1].tokenIds, reference[2].tokenIds]);
  await e.unload();
});

test('forget deletes the file; the conversation is then unknown', async () => {
  const dir = stateDir('forget');
  const e = await engine({ stateDir: dir });
  const [t1] = await ask(e, turns.slice(0, 1));
  assert.ok(fs.existsSync(convFile(dir, t1.conversationId)));
  e.forget(t1.conversationId);
  assert.equal(fs.existsSync(convFile(dir, t1.conversationId)), false);
  await assert.rejects(ask(e, turns.slice(1, 2), t1.conversationId), (err: { code: number }) => err.code === LensErrorCode.UnknownConversation);
  await e.unload();
});

test('a truncated last line (crash mid-write): reported, the conversation continues from the last good turn', async () => {
  const dir = stateDir('truncated');
  const a = await engine({ stateDir: dir });
  const [t1] = await ask(a, turns.slice(0, 2));
  await a.unload();
  const file = convFile(dir, t1.conversationId);
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100)); // turn 2 torn

  const logs: string[] = [];
  const b = await engine({ stateDir: dir, log: (m) => logs.push(m) });
  const [t2, t3] = await ask(b, turns.slice(1), t1.conversationId);
  assert.ok(logs.some((m) => /truncated last line.*restored 1 turn/.test(m)), logs.join('\n'));
  assert.deepEqual([t2.tokenIds, t3.tokenIds], [reference[1].tokenIds, reference[2].tokenIds]);
  await b.unload();
});

test('a corrupt header: reported, moved aside, UnknownConversation; the engine keeps answering', async () => {
  const dir = stateDir('corrupt');
  const a = await engine({ stateDir: dir });
  const [t1] = await ask(a, turns.slice(0, 1));
  await a.unload();
  const file = convFile(dir, t1.conversationId);
  fs.writeFileSync(file, 'garbage\n' + fs.readFileSync(file, 'utf8').split('\n').slice(1).join('\n'));

  const logs: string[] = [];
  const b = await engine({ stateDir: dir, log: (m) => logs.push(m) });
  await assert.rejects(ask(b, turns.slice(1, 2), t1.conversationId), (err: { code: number; message: string }) => err.code === LensErrorCode.UnknownConversation && /saved state was corrupt/.test(err.message));
  assert.ok(fs.existsSync(`${file}.corrupt`));
  assert.ok(logs.some((m) => /no readable header/.test(m)));
  const [fresh] = await ask(b, turns.slice(0, 1));
  assert.deepEqual(fresh.tokenIds, reference[0].tokenIds);
  await b.unload();
});

test('a log written with another model folder is continued with a re-rendered prompt', async () => {
  const dir = stateDir('other-model');
  const a = await engine({ stateDir: dir });
  const [t1] = await ask(a, turns.slice(0, 1));
  await a.unload();
  const copy = path.join(root, 'copy-of-model');
  fs.cpSync(model, copy, { recursive: true });
  const logs: string[] = [];
  const b = new OnnxEngine({ stateDir: dir, log: (m) => logs.push(m) });
  await b.load(copy, {}, () => undefined, never());
  const [t2] = await ask(b, turns.slice(1, 2), t1.conversationId);
  assert.ok(t2.tokenIds.length > 0);
  assert.ok(logs.some((m) => /the prompt is re-rendered/.test(m)), logs.join('\n'));
  await b.unload();
});

test('the worker engine passes stateDir and conversationMaxAgeMs to the engine', async () => {
  const dir = stateDir('worker');
  const old = path.join(dir, 'conversations', 'old.jsonl');
  fs.mkdirSync(path.dirname(old), { recursive: true });
  fs.writeFileSync(old, '');
  fs.utimesSync(old, new Date(Date.now() - 3600e3), new Date(Date.now() - 3600e3));
  const w = new WorkerEngine({ stateDir: dir, conversationMaxAgeMs: 60e3 });
  try {
    await w.load(model, {}, () => undefined, never());
    const r = await w.ask({ ...turns[2], options: opts({ maxTokens: 2 }) }, () => undefined, never());
    assert.ok(fs.existsSync(convFile(dir, r.conversationId)));
    assert.equal(fs.existsSync(old), false, 'swept at construction');
  } finally {
    await w.dispose();
  }
});

test('maxPromptTokens refuses an oversized message before the vision encoder, and allows one that fits', async () => {
  const e = await engine();
  const stages: string[] = [];
  await assert.rejects(
    e.ask({ ...turns[0], maxPromptTokens: 20, options: opts() }, () => undefined, never(), (s) => stages.push(s.stage)),
    (err: { code: number; message: string }) => err.code === LensErrorCode.PromptTooLong && /over the limit of 20 \(maxPromptTokens\)/.test(err.message),
  );
  assert.equal(stages.includes('vision'), false);
  await assert.rejects(e.ask({ ...turns[2], maxPromptTokens: 0, options: opts() }, () => undefined, never()), (err: { code: number }) => err.code === LensErrorCode.InvalidParams);
  const ok = await e.ask({ ...turns[0], maxPromptTokens: 100_000, options: opts() }, () => undefined, never());
  assert.deepEqual(ok.tokenIds, reference[0].tokenIds);
  await e.unload();
});
