/**
 * The conversation log (server/src/runtime/conversationLog.ts) on its own: round trip with drops
 * and images, damage (truncated last line, corrupt line, corrupt header) reported and never
 * fatal, id validation, and the age sweep.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { LensError, LensErrorCode } from '../../common/errors';
import { ConversationLog, idsDelta, type TurnRecord } from '../../server/src/runtime/conversationLog';

let dir: string;
let reports: string[];
let log: ConversationLog;
const ID = 'c0ffee-42';

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-convlog-'));
  reports = [];
  log = new ConversationLog(dir, (m) => reports.push(m));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const b64 = (s: string) => Buffer.from(s).toString('base64');
const turn1: TurnRecord = {
  add: [
    { role: 'system', text: 'Be brief.', images: 0 },
    { role: 'user', text: 'What is this?', images: 2 },
    { role: 'assistant', text: 'A cat.', images: 0 },
  ],
  images: [{ base64: b64('img-a'), mimeType: 'image/png' }, { base64: b64('img-b') }],
  ids: { keep: 0, add: [1, 9, 9, 2, 9, 3, 4, 5] },
  lastAnswerIds: [4, 5],
};
const turn2: TurnRecord = {
  add: [
    { role: 'tool', text: '{"texts":[]}', images: 1 },
    { role: 'assistant', text: 'Still a cat.', images: 0 },
  ],
  images: [{ base64: b64('img-c') }],
  ids: { keep: 8, add: [6, 9, 7, 8] },
  lastAnswerIds: [7, 8],
};
/** Drops the first user turn (messages 1..2 and its two images); ids rebuilt. */
const turn3: TurnRecord = {
  drop: [[1, 2]],
  add: [
    { role: 'user', text: 'And now?', images: 0 },
    { role: 'assistant', text: 'Gone.', images: 0 },
  ],
  images: [],
  ids: { keep: 0, add: [1, 6, 9, 7, 8, 10, 11] },
  lastAnswerIds: [11],
};
const file = () => path.join(dir, 'conversations', `${ID}.jsonl`);

test('round trip: header, turns, drops and images replay exactly', async () => {
  assert.equal(await log.read(ID), undefined, 'no file yet');
  await log.append(ID, '/models/m', turn1);
  await log.append(ID, '/models/m', turn2);
  let c = await log.read(ID);
  assert.ok(c);
  assert.equal(c.model, '/models/m');
  assert.equal(c.turns, 2);
  assert.deepEqual(c.messages.map((m) => m.role), ['system', 'user', 'assistant', 'tool', 'assistant']);
  assert.deepEqual(c.ids, [1, 9, 9, 2, 9, 3, 4, 5, 6, 9, 7, 8]);
  assert.deepEqual(c.lastAnswerIds, [7, 8]);
  assert.deepEqual(c.images.map((i) => i.bytes.toString()), ['img-a', 'img-b', 'img-c']);
  assert.equal(c.images[0].mimeType, 'image/png');

  await log.append(ID, '/models/m', turn3);
  c = await log.read(ID);
  assert.ok(c);
  assert.deepEqual(c.messages.map((m) => m.text), ['Be brief.', '{"texts":[]}', 'Still a cat.', 'And now?', 'Gone.']);
  assert.deepEqual(c.images.map((i) => i.bytes.toString()), ['img-c']);
  assert.deepEqual(c.ids, [1, 6, 9, 7, 8, 10, 11]);
  const lines = fs.readFileSync(file(), 'utf8').split('\n');
  assert.equal(lines.length, 5, 'header + 3 turns + final newline');
  assert.deepEqual(Object.keys(JSON.parse(lines[0])).sort(), ['created', 'id', 'model', 'v']);
  assert.deepEqual(reports, []);
});

test('idsDelta: keep the common prefix, add the rest', () => {
  assert.deepEqual(idsDelta([1, 2, 3], [1, 2, 3, 4]), { keep: 3, add: [4] });
  assert.deepEqual(idsDelta([1, 2, 3], [1, 5]), { keep: 1, add: [5] });
  assert.deepEqual(idsDelta([], [7]), { keep: 0, add: [7] });
});

test('a truncated last line: earlier turns restored, reported, the tail cut so appends continue cleanly', async () => {
  await log.append(ID, '/m', turn1);
  await log.append(ID, '/m', turn2);
  const whole = fs.readFileSync(file());
  fs.writeFileSync(file(), whole.subarray(0, whole.length - 20)); // crash in the middle of turn 2
  const c = await log.read(ID);
  assert.ok(c);
  assert.equal(c.turns, 1);
  assert.deepEqual(c.ids, turn1.ids.add);
  assert.equal(reports.length, 1);
  assert.match(reports[0], /truncated last line.*restored 1 turn/);
  assert.ok(fs.existsSync(`${file()}.corrupt`), 'the bad tail is kept aside');

  await log.append(ID, '/m', turn2);
  const again = await log.read(ID);
  assert.equal(again?.turns, 2);
  assert.equal(reports.length, 1, 'no new damage');
});

test('a corrupt middle line ends the replay there (later turns depend on it)', async () => {
  await log.append(ID, '/m', turn1);
  await log.append(ID, '/m', turn2);
  await log.append(ID, '/m', turn3);
  const lines = fs.readFileSync(file(), 'utf8').split('\n');
  lines[2] = lines[2].replace('"keep":8', '"keep":99'); // keeps more ids than there are
  fs.writeFileSync(file(), lines.join('\n'));
  const c = await log.read(ID);
  assert.equal(c?.turns, 1);
  assert.match(reports[0], /line 3 is corrupt \(bad ids\)/);
});

test('a corrupt header: moved aside, reported, UnknownConversation (not a crash)', async () => {
  await log.append(ID, '/m', turn1);
  const lines = fs.readFileSync(file(), 'utf8').split('\n');
  lines[0] = lines[0].slice(0, 20); // a torn header, the turns intact
  fs.writeFileSync(file(), lines.join('\n'));
  await assert.rejects(log.read(ID), (e: unknown) => e instanceof LensError && e.code === LensErrorCode.UnknownConversation && /corrupt.*moved to/.test(e.message));
  assert.equal(fs.existsSync(file()), false);
  assert.ok(fs.existsSync(`${file()}.corrupt`), 'never deleted');
  assert.match(reports[0], /no readable header/);
  assert.equal(await log.read(ID), undefined, 'afterwards the conversation is simply unknown');

  fs.writeFileSync(file(), ''); // crash right after creating the file
  await assert.rejects(log.read(ID), (e: unknown) => e instanceof LensError && e.code === LensErrorCode.UnknownConversation);
});

test('ids that could escape the folder are refused; delete ignores them', async () => {
  for (const bad of ['../x', 'a/b', '', '.', 'a.b', 'x'.repeat(129), 'é']) {
    await assert.rejects(log.read(bad), (e: unknown) => e instanceof LensError && e.code === LensErrorCode.InvalidParams, bad);
    await assert.rejects(log.append(bad, '/m', turn1), LensError);
    assert.doesNotThrow(() => log.delete(bad));
  }
  assert.equal(fs.existsSync(path.join(dir, 'x.jsonl')), false);
});

test('delete removes the file', async () => {
  await log.append(ID, '/m', turn1);
  log.delete(ID);
  assert.equal(fs.existsSync(file()), false);
  assert.equal(await log.read(ID), undefined);
});

test('sweep removes files unused for longer than maxAge, keeps the rest', async () => {
  assert.equal(log.sweep(1000), 0, 'no folder yet');
  await log.append('old', '/m', turn1);
  await log.append('new', '/m', turn1);
  fs.writeFileSync(path.join(log.dir, 'old2.jsonl.corrupt'), 'x');
  fs.writeFileSync(path.join(log.dir, 'notes.txt'), 'not ours');
  const past = new Date(Date.now() - 3 * 86400e3);
  fs.utimesSync(path.join(log.dir, 'old.jsonl'), past, past);
  fs.utimesSync(path.join(log.dir, 'old2.jsonl.corrupt'), past, past);
  fs.utimesSync(path.join(log.dir, 'notes.txt'), past, past);
  assert.equal(log.sweep(86400e3), 2);
  assert.deepEqual(fs.readdirSync(log.dir).sort(), ['new.jsonl', 'notes.txt']);
  assert.match(reports.at(-1)!, /removed 2 conversation file/);
});
