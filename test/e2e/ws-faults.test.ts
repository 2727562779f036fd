/**
 * Faults around the REAL shared daemon (`llava-lens serve --ws`, a child process) on a generated
 * tiny-llava model (issue 6 §6):
 *   (a) the daemon is SIGKILLed mid-answer: a new daemon on the same --state-dir continues the
 *       conversation with exactly the tokens of an uninterrupted run; a conversation file whose
 *       last line was cut in half is reported in the log and restored up to its last good turn;
 *   (b) a client PROCESS is SIGKILLed mid-stream: the daemon sees it go, cancels its ask at once
 *       (another client's queued ask starts within 2 s, not after the killed client's 900
 *       tokens), and the other client's answers are right;
 *   (c) reconnecting: a new connection continues a conversation by id within the keep time; with
 *       --keep-conversations-minutes 0 it is forgotten when its client leaves — also when the
 *       client leaves with an ask on it still queued (1031 UnknownConversation afterwards).
 * And, in process: a failed send to a client that went away is not logged back to that client
 * in an endless loop (which hung the whole daemon).
 */
// The Node runtime of vscode-jsonrpc (the in-process connection test below).
import 'vscode-jsonrpc/node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { AbstractMessageReader, AbstractMessageWriter, CancellationTokenSource, Disposable, ResponseError, type Message, type DataCallback } from 'vscode-jsonrpc';
import { ConnectionClosedError, type LensClient } from '../../client/src/daemonClient';
import { LensErrorCode } from '../../common/errors';
import { QueuePositionNotification, type AskParams, type AskResult } from '../../common/protocol';
import { createDaemonConnection } from '../../server/src/daemon/connection';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng, patternJpeg } from '../fixtures/images';
import { serveWs, WS_TEST_TOKEN, type ServedDaemon } from './wsServe';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-ws-faults-'));
const model = path.join(root, 'tiny-llava');
const stateDir = path.join(root, 'state');
const diagramFile = path.join(root, 'diagram.png');
const CHILD = path.join(__dirname, 'wsAskChild.js');
/** Greedy answers of turn 3 are long (the kill must land mid-answer). */
const TURN3_MAX_TOKENS = 300;
/** Prompt whose greedy answer on the diagram runs to the context length (about 900 tokens). */
const LONG_PROMPT = 'Name one shape.';

let diagram: string;
let pattern: string;
/** The conversation the restart test replays: an image, a second image, a text follow-up. */
let turns: AskParams[];
/** Turns 1..3 on an uninterrupted daemon. */
let reference: AskResult[];
/** The daemon of the current phase (tests run in order; each may replace it). */
let daemon: ServedDaemon;
const daemons: ServedDaemon[] = [];

async function start(args: string[] = []): Promise<ServedDaemon> {
  const d = await serveWs({ model, stateDir, args: ['--requests-per-minute', '0', ...args] });
  daemons.push(d);
  return d;
}

before(async () => {
  await makeTestModel(model, { preset: 'tiny-llava', seed: 1 });
  const png = await diagramPng();
  fs.writeFileSync(diagramFile, png);
  diagram = png.toString('base64');
  pattern = (await patternJpeg()).toString('base64');
  turns = [
    { prompt: 'What does this show?', images: [{ bytes: diagram, mimeType: 'image/png' }], maxTokens: 8, temperature: 0 },
    { prompt: 'And this one?', images: [{ bytes: pattern, mimeType: 'image/jpeg' }], maxTokens: 8, temperature: 0 },
    { prompt: 'Compare them.', images: [], maxTokens: TURN3_MAX_TOKENS, temperature: 0 },
  ];
  daemon = await start();
});

after(async () => {
  for (const d of daemons) await d.kill9();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Asks `ts` in order on one conversation (`conversationId` to continue one). */
async function converse(c: LensClient, ts: AskParams[], conversationId?: string): Promise<AskResult[]> {
  const out: AskResult[] = [];
  for (const t of ts) {
    const r = await c.ask({ ...t, ...(conversationId !== undefined ? { conversationId } : {}) });
    conversationId = r.conversationId;
    out.push(r);
  }
  return out;
}

const convFile = (id: string) => path.join(stateDir, 'conversations', `${id}.jsonl`);
const lines = (file: string) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).length;

test('(a) kill -9 mid-answer: a new daemon on the same state folder continues with the uninterrupted tokens; a torn file is reported and skipped', { timeout: 60_000 }, async (t) => {
  const ref = await daemon.connect();
  reference = await converse(ref, turns);
  assert.ok(reference[2].tokenIds.length > 50, `turn 3 is long enough to be cut (${reference[2].tokenIds.length} tokens)`);
  ref.dispose();

  // Turns 1-2 complete, turn 3 is cut by SIGKILL after its first delta.
  const c = await daemon.connect();
  const [t1, t2] = await converse(c, turns.slice(0, 2));
  assert.deepEqual([t1.tokenIds, t2.tokenIds], [reference[0].tokenIds, reference[1].tokenIds]);
  let killed: Promise<void> | undefined;
  const cut = c.ask({ ...turns[2], conversationId: t1.conversationId }, () => (killed ??= daemon.kill9()));
  await assert.rejects(cut, (e: unknown) => e instanceof ConnectionClosedError);
  await killed;
  c.dispose();
  assert.equal(lines(convFile(t1.conversationId)), 3, 'header + two turns on disk: the cut answer was not saved');

  // The reference conversation's last line (turn 3) torn in half, as by a crash mid-write.
  const torn = convFile(reference[0].conversationId);
  const bytes = fs.readFileSync(torn);
  const lastStart = bytes.lastIndexOf(10, bytes.length - 2) + 1;
  fs.writeFileSync(torn, bytes.subarray(0, lastStart + Math.floor((bytes.length - lastStart) / 2)));

  daemon = await start();
  const again = await daemon.connect();
  const [t3] = await converse(again, turns.slice(2), t1.conversationId);
  assert.equal(t3.conversationId, t1.conversationId);
  assert.deepEqual(t3.tokenIds, reference[2].tokenIds, 'turn 3 after the crash = turn 3 of the uninterrupted run');
  assert.equal(t3.timings.cachedTokens, 0, 'restored from disk: no KV cache, the whole context is prefilled');
  assert.equal(t3.timings.promptTokens, reference[2].timings.promptTokens);
  await daemon.waitForLog(new RegExp(`conversation ${t1.conversationId}: restored 2 turn\\(s\\)`), 5000);

  // The torn conversation: reported, restored to its two good turns; turn 3 asked again matches.
  const [redo] = await converse(again, turns.slice(2), reference[0].conversationId);
  await daemon.waitForLog(new RegExp(`conversation ${reference[0].conversationId}: .* truncated last line .*restored 2 turn\\(s\\)`), 5000);
  assert.deepEqual(redo.tokenIds, reference[2].tokenIds);
  assert.ok(fs.existsSync(`${torn}.corrupt`), 'the torn tail is kept aside');
  assert.equal(daemon.child.exitCode, null, 'the daemon stays up');
  t.diagnostic(`turn 3: ${reference[2].tokenIds.length} tokens, ${reference[2].timings.promptTokens} context tokens; restored and re-asked after kill -9`);
  again.dispose();
});

test('(b) a client process killed mid-stream: its ask is cancelled at once, the other client is served', { timeout: 60_000 }, async (t) => {
  const other = await daemon.connect();
  const short: AskParams = { prompt: 'What is it?', images: [{ bytes: diagram }], maxTokens: 6, temperature: 0 };
  const expected = await other.ask(short);

  const child = spawn(process.execPath, [CHILD, daemon.url, diagramFile, '900', LONG_PROMPT], {
    env: { ...process.env, LLAVA_LENS_TOKEN: WS_TEST_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const childExited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let childErr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (childErr += s));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.includes('first-delta')) resolve();
        if (out.includes('done')) reject(new Error(`the child's ask ended before it was killed: ${out}`));
      });
      void childExited.then(() => reject(new Error(`the child exited early: ${childErr}`)));
    });

    // The other client queues an ask behind the child's long one, then the child is killed.
    const queued = new Promise<number>((resolve) => other.connection.onNotification(QueuePositionNotification, (p) => resolve(p.ahead)));
    let firstDeltaAt = 0;
    const answer = other.ask({ ...short, streamId: 'behind' }, () => (firstDeltaAt ||= performance.now()));
    assert.equal(await queued, 1, 'waiting behind the killed client\'s ask');
    const killedAt = performance.now();
    child.kill('SIGKILL');
    await childExited;
    const ended = await daemon.waitForLog(/lens\/ask of \S+, which left, ended: (\w+) after (\d+) token/, 10_000);
    const endedAt = performance.now();
    const r = await answer;

    const [, reason, tokens] = /ended: (\w+) after (\d+) token/.exec(ended)!;
    t.diagnostic(`after the kill: the daemon ended the ask in ${(endedAt - killedAt).toFixed(0)} ms (${reason} after ${tokens} tokens); the other client's ask started ${(firstDeltaAt - killedAt).toFixed(0)} ms after the kill`);
    assert.match(daemon.log(), /client disconnected/);
    assert.match(daemon.log(), /client \S+ left: cancelled its running lens\/ask and 0 waiting request\(s\)/);
    assert.equal(reason, 'cancelled');
    assert.ok(Number(tokens) < 900, 'cut short, not run to its end');
    assert.ok(firstDeltaAt - killedAt < 2000, `the next ask started ${(firstDeltaAt - killedAt).toFixed(0)} ms after the kill`);
    assert.deepEqual(r.tokenIds, expected.tokenIds, 'the other client\'s answer is right');
    assert.deepEqual((await other.ask(short)).tokenIds, expected.tokenIds);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    other.dispose();
  }
});

test('(c) reconnecting: a new connection continues a conversation within the keep time', { timeout: 30_000 }, async () => {
  const first = await daemon.connect();
  const [t1] = await converse(first, turns.slice(0, 1));
  first.dispose();
  await daemon.waitForLog(new RegExp('left: .*its \\d+ conversation\\(s\\) are kept for 30 min'), 5000);
  const second = await daemon.connect();
  const [t2] = await converse(second, turns.slice(1, 2), t1.conversationId);
  assert.deepEqual(t2.tokenIds, reference[1].tokenIds);
  second.dispose();
});

test('(c) with --keep-conversations-minutes 0 a conversation is forgotten when its client leaves, also with an ask on it still queued', { timeout: 40_000 }, async () => {
  for (const d of daemons.splice(0)) await d.stop();
  daemon = await start(['--keep-conversations-minutes', '0']);
  const forgotten = (id: string) => daemon.waitForLog(new RegExp(`conversation ${id} forgotten`), 10_000);
  const unknown = (e: unknown) => e instanceof ResponseError && e.code === LensErrorCode.UnknownConversation;

  // Left idle.
  const a = await daemon.connect();
  const [idle] = await converse(a, turns.slice(0, 1));
  a.dispose();
  await forgotten(idle.conversationId);

  // Left with its next ask on the conversation waiting behind another client's long ask.
  const blocker = await daemon.connect();
  const b = await daemon.connect();
  const [busy] = await converse(b, turns.slice(0, 1));
  const blocking = new CancellationTokenSource();
  let blockerStarted!: () => void;
  const blocked = blocker.ask({ prompt: LONG_PROMPT, images: [{ bytes: diagram }], maxTokens: 900, temperature: 0 }, () => blockerStarted(), blocking.token);
  await new Promise<void>((resolve) => (blockerStarted = resolve));
  const waiting = new Promise<void>((resolve) => b.connection.onNotification(QueuePositionNotification, () => resolve()));
  const pending = b.ask({ ...turns[1], conversationId: busy.conversationId, streamId: 'queued' }, () => undefined);
  await waiting;
  b.dispose();
  await assert.rejects(pending, (e: unknown) => e instanceof Error);
  await daemon.waitForLog(/client \S+ left: cancelled 1 waiting request\(s\)/, 5000);
  blocking.cancel();
  assert.equal((await blocked).finishReason, 'cancelled');
  await forgotten(busy.conversationId);

  for (const id of [idle.conversationId, busy.conversationId]) {
    await assert.rejects(blocker.ask({ ...turns[1], conversationId: id }), unknown, `conversation ${id} is forgotten`);
    assert.equal(fs.existsSync(convFile(id)), false, 'its file is gone');
  }
  blocker.dispose();
});

test('a failed send to a client that went away is not logged back to that client in an endless loop', { timeout: 10_000 }, async () => {
  // A writer like the WebSocket one on a closing socket: every write fails (after 1000, it gives
  // up failing so that a regression ends instead of hanging the test).
  let writes = 0;
  class ClosedWriter extends AbstractMessageWriter {
    async write(msg: Message): Promise<void> {
      writes++;
      if (writes > 1000) return;
      const e = new Error('the WebSocket connection is closed');
      this.fireError(e, msg, writes);
      throw e;
    }
    end(): void {}
  }
  class SilentReader extends AbstractMessageReader {
    listen(_callback: DataCallback): Disposable {
      return Disposable.create(() => undefined);
    }
  }
  const connection = createDaemonConnection(new SilentReader(), new ClosedWriter());
  connection.listen();
  await connection.sendNotification('lens/status', { state: 'ready' }).catch(() => undefined);
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.ok(writes <= 2, `${writes} writes for one notification: the failure was sent to the client as a log message, which failed, and so on`);
  connection.dispose();
});
