/**
 * Load and fair scheduling on the REAL shared daemon (`llava-lens serve --ws`, a child process)
 * with a generated tiny-llava model (issue 6 §6).
 *
 * - 8 WebSocket clients × 25 asks (image bytes, greedy, small maxTokens), 5 in flight per client,
 *   with seeded random cancellations while queued (on the ask's first lens/queuePosition) and
 *   mid-stream (on its first delta). Every frame the clients receive is recorded, so the test
 *   checks the wire, not only the client's view: one response per request, deltas contiguous and
 *   all before their result, queue positions only while waiting; answers equal a single client's
 *   (greedy determinism; a cancelled answer is a prefix of it); after the run (conversations
 *   forgotten, clients gone) the daemon's RSS, garbage collected, is within 10% of the RSS after
 *   a warm-up batch of the same size, and no conversation file is left.
 * - Fairness: client A has 9 asks waiting, then B asks once: B goes next (round robin), not
 *   after A's backlog; queue positions count down (A's rise once, by one, when B overtakes).
 *   A client that cancels waiting asks keeps its turn in later rounds.
 * - Busy: with --queue-limit 2, a fourth ask is refused with 1040 saying how many are ahead.
 *
 * Figures (requests, completed, cancelled, latency, RSS) go to t.diagnostic.
 */
// The Node runtime of vscode-jsonrpc (for the WebSocket reader/writer used directly below).
import 'vscode-jsonrpc/node';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { CancellationTokenSource, ResponseError } from 'vscode-jsonrpc';
import { createMessageConnection } from 'vscode-jsonrpc/node';
import WebSocket from 'ws';
import { LensClient } from '../../client/src/daemonClient';
import { LensErrorCode } from '../../common/errors';
import { QueuePositionNotification, type AskParams, type AskResult, type QueuePositionParams } from '../../common/protocol';
import { connectWebSocket, WebSocketMessageReader, WebSocketMessageWriter } from '../../common/wsTransport';
import { makeRng } from '../../server/src/runtime/sampler';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng, patternJpeg, quadrantsPng } from '../fixtures/images';
import { serveWs, type ServedDaemon } from './wsServe';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-ws-load-'));
const model = path.join(root, 'tiny-llava');
const CLIENTS = 8;
const ASKS_PER_CLIENT = 25;
const IN_FLIGHT_PER_CLIENT = 5;
const SHORT = 6;
/** maxTokens of asks cancelled mid-stream: long enough that the cancel lands before the end. */
const LONG = 64;
/** The input whose greedy answer runs to the context length (about 900 tokens): a blocker for scheduling tests. */
const BLOCKER = 2;
const PROMPTS = ['What is it?', 'Describe the colours.', 'Name one shape.', 'Is there text?'];

let daemon: ServedDaemon;
let images: string[] = [];

interface Input {
  image: number;
  prompt: number;
}
const inputs: Input[] = [];
/** Single-client answers per input index and maxTokens. */
const reference = new Map<string, AskResult>();
const refKey = (input: number, maxTokens: number) => `${input}/${maxTokens}`;

const askParams = (input: Input, maxTokens: number): AskParams => ({
  prompt: PROMPTS[input.prompt],
  images: [{ bytes: images[input.image], mimeType: input.image === 1 ? 'image/jpeg' : 'image/png' }],
  maxTokens,
  temperature: 0,
});

before(async () => {
  await makeTestModel(model, { preset: 'tiny-llava', seed: 1 });
  images = [(await diagramPng()).toString('base64'), (await patternJpeg()).toString('base64'), (await quadrantsPng(48, 40)).toString('base64')];
  for (let image = 0; image < images.length; image++) for (let prompt = 0; prompt < PROMPTS.length; prompt++) inputs.push({ image, prompt });
  // SIGUSR1 opens the daemon's inspector on a random loopback port: the test collects the
  // daemon's garbage through it before reading its RSS (settledMemory).
  daemon = await serveWs({ model, args: ['--queue-limit', '256', '--requests-per-minute', '0'], env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect-port=127.0.0.1:0` } });
});

after(async () => {
  await daemon?.stop();
  fs.rmSync(root, { recursive: true, force: true });
  if (daemon) fs.rmSync(daemon.stateDir, { recursive: true, force: true });
});

interface Frame {
  seq: number;
  msg: { id?: number | string; method?: string; params?: Record<string, unknown>; result?: unknown; error?: { code: number; message: string } };
}

/** A LensClient whose socket frames are recorded: every frame received, and the streamId of each `lens/ask` sent (by request id). */
interface Tapped {
  client: LensClient;
  frames: Frame[];
  /** Request id -> method (and streamId), for every request sent. */
  sent: Map<number | string, { method: string; streamId?: string }>;
  /** Calls `fn` for this client's lens/queuePosition notifications. */
  onPosition(fn: (p: QueuePositionParams) => void): void;
  close(): Promise<void>;
}

let seqCounter = 0;

async function tappedClient(d: ServedDaemon): Promise<Tapped> {
  const socket: WebSocket = await connectWebSocket(d.url, { token: d.token });
  const frames: Frame[] = [];
  const sent = new Map<number | string, { method: string; streamId?: string }>();
  socket.on('message', (data) => frames.push({ seq: seqCounter++, msg: JSON.parse(String(data)) as Frame['msg'] }));
  const send = socket.send.bind(socket) as (data: string, cb?: (err?: Error) => void) => void;
  (socket as unknown as { send: typeof send }).send = (data, cb) => {
    const m = JSON.parse(data) as Frame['msg'];
    if (m.id !== undefined && m.method) sent.set(m.id, { method: m.method, ...(typeof m.params?.streamId === 'string' ? { streamId: m.params.streamId } : {}) });
    send(data, cb);
  };
  const client = new LensClient(createMessageConnection(new WebSocketMessageReader(socket), new WebSocketMessageWriter(socket)));
  const positionListeners: Array<(p: QueuePositionParams) => void> = [];
  client.connection.onNotification(QueuePositionNotification, (p) => positionListeners.forEach((l) => l(p)));
  await client.initialize({ processId: null });
  return {
    client,
    frames,
    sent,
    onPosition: (fn) => void positionListeners.push(fn),
    close: async () => {
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      client.dispose();
      socket.close(1000, 'done');
      await closed;
    },
  };
}

/** What the wire says about one streaming ask: its response(s), deltas and queue positions, in arrival order. */
interface StreamWire {
  responses: Frame[];
  deltas: Array<{ seq: number; index: number; tokenId: number; text: string }>;
  positions: Array<{ seq: number; ahead: number }>;
}

function wireByStream(t: Tapped): { streams: Map<string, StreamWire>; unknownResponses: Frame[]; responsesById: Map<number | string, number> } {
  const streams = new Map<string, StreamWire>();
  const get = (id: string) => {
    let s = streams.get(id);
    if (!s) streams.set(id, (s = { responses: [], deltas: [], positions: [] }));
    return s;
  };
  const unknownResponses: Frame[] = [];
  const responsesById = new Map<number | string, number>();
  for (const f of t.frames) {
    const m = f.msg;
    if (m.method === 'lens/answerDelta') {
      const p = m.params as { streamId: string; index: number; tokenId: number; text: string };
      get(p.streamId).deltas.push({ seq: f.seq, index: p.index, tokenId: p.tokenId, text: p.text });
    } else if (m.method === 'lens/queuePosition') {
      const p = m.params as unknown as QueuePositionParams;
      get(p.streamId).positions.push({ seq: f.seq, ahead: p.ahead });
    } else if (m.method === undefined && m.id !== undefined) {
      const req = t.sent.get(m.id);
      if (!req) unknownResponses.push(f);
      responsesById.set(m.id, (responsesById.get(m.id) ?? 0) + 1);
      if (req?.streamId) get(req.streamId).responses.push(f);
    }
  }
  return { streams, unknownResponses, responsesById };
}

/**
 * The daemon's memory once its garbage is collected: a full GC of the main isolate through the
 * inspector (HeapProfiler.collectGarbage), then the RSS. Without it the figure mostly says how
 * much garbage V8 happens to hold (tens of MiB either way on this daemon).
 */
async function settledMemory(d: ServedDaemon): Promise<{ rss: number; heapUsed: number }> {
  if (!/Debugger listening on/.test(d.log())) d.child.kill('SIGUSR1');
  const url = /ws:\/\/\S+/.exec(await d.waitForLog(/Debugger listening on ws:\/\/\S+/, 10_000))![0];
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));
  let id = 0;
  const call = (method: string, params: object = {}) =>
    new Promise<{ result?: { value?: unknown } }>((resolve) => {
      const mine = ++id;
      const onMessage = (data: WebSocket.RawData) => {
        const m = JSON.parse(String(data)) as { id?: number; result: { result?: { value?: unknown } } };
        if (m.id !== mine) return;
        ws.off('message', onMessage);
        resolve(m.result);
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ id: mine, method, params }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    const heap = await call('Runtime.evaluate', { expression: 'process.memoryUsage().heapUsed' });
    return { rss: d.rssBytes(), heapUsed: Number(heap.result?.value) };
  } finally {
    ws.close();
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** Waits until the daemon has logged `n` disconnects in all (a regex that runs in linear time when it does not match yet). */
const disconnects = (n: number) => daemon.waitForLog(new RegExp(`^(?:(?:(?!client disconnected)[\\s\\S])*client disconnected){${n}}`), 20_000);
let disconnected = 0;
/** Asks of the load run whose deltas' token ids differ from the result's. */
const tokenDeltaMismatches: string[] = [];

test('8 clients × 25 asks with random cancellations: every request settles once, answers are deterministic, memory returns', { timeout: 80_000 }, async (t) => {
  // Single-client answers for every input, short and long.
  const refClient = await tappedClient(daemon);
  for (const [i, input] of inputs.entries()) {
    for (const maxTokens of [SHORT, LONG]) reference.set(refKey(i, maxTokens), await refClient.client.ask(askParams(input, maxTokens)));
  }
  assert.ok([...reference.values()].every((r) => r.finishReason === 'eos' || r.finishReason === 'length'));
  for (const r of reference.values()) await refClient.client.forgetConversation(r.conversationId);
  await refClient.close();
  await disconnects(++disconnected);

  type Plan = 'none' | 'queued' | 'stream';
  interface Rec {
    client: number;
    input: number;
    maxTokens: number;
    plan: Plan;
    streamId: string;
    cancelSent?: 'queued' | 'stream';
    sentAt: number;
    settledAt?: number;
    settles: number;
    result?: AskResult;
    error?: unknown;
  }

  /** `count` asks per client on `n` clients, `IN_FLIGHT_PER_CLIENT` at a time per client; inputs and cancellations from `seed`. */
  async function batch(n: number, count: number, seed: number, tag: string): Promise<{ recs: Rec[]; taps: Tapped[] }> {
    const random = makeRng(seed);
    const taps = await Promise.all(Array.from({ length: n }, () => tappedClient(daemon)));
    const recs: Rec[] = [];
    const perClient: Rec[][] = taps.map((_, c) =>
      Array.from({ length: count }, (_, i) => {
        const r = random();
        const plan: Plan = r < 0.15 ? 'queued' : r < 0.3 ? 'stream' : 'none';
        const rec: Rec = { client: c, input: Math.floor(random() * inputs.length), maxTokens: plan === 'stream' ? LONG : SHORT, plan, streamId: `${tag}-c${c}-a${i}`, sentAt: 0, settles: 0 };
        recs.push(rec);
        return rec;
      }),
    );
    await Promise.all(
      taps.map(async (tap, c) => {
        const cancels = new Map<string, () => void>();
        tap.onPosition((p) => cancels.get(p.streamId)?.());
        const todo = [...perClient[c]];
        const worker = async () => {
          for (let rec = todo.shift(); rec; rec = todo.shift()) {
            const cts = new CancellationTokenSource();
            const r = rec;
            if (r.plan === 'queued') {
              cancels.set(r.streamId, () => {
                cancels.delete(r.streamId);
                r.cancelSent = 'queued';
                cts.cancel();
              });
            }
            let first = true;
            r.sentAt = performance.now();
            await tap.client
              .ask(
                { ...askParams(inputs[r.input], r.maxTokens), streamId: r.streamId },
                () => {
                  if (first && r.plan === 'stream') {
                    r.cancelSent = 'stream';
                    cts.cancel();
                  }
                  first = false;
                },
                cts.token,
              )
              .then(
                (res) => {
                  r.settles++;
                  r.result = res;
                },
                (e: unknown) => {
                  r.settles++;
                  r.error = e;
                },
              );
            r.settledAt = performance.now();
            cancels.delete(r.streamId);
            cts.dispose();
          }
        };
        await Promise.all(Array.from({ length: IN_FLIGHT_PER_CLIENT }, worker));
      }),
    );
    return { recs, taps };
  }

  /** Forgets every conversation the batch made, closes its clients, waits for the daemon to see them go. */
  async function retire(b: { recs: Rec[]; taps: Tapped[] }): Promise<void> {
    await Promise.all(
      b.taps.map(async (tap, c) => {
        for (const r of b.recs) if (r.client === c && r.result?.conversationId) await tap.client.forgetConversation(r.result.conversationId);
        await tap.close();
      }),
    );
    disconnected += b.taps.length;
    await disconnects(disconnected);
  }

  // Warm-up: a batch like the measured one (clients, inputs, long and short answers,
  // cancellations; another seed), so that the RSS after it — the baseline — includes the
  // allocators' high-water marks; what the run adds beyond that is kept memory.
  const warm = await batch(CLIENTS, ASKS_PER_CLIENT, 7, 'warm');
  assert.ok(warm.recs.every((r) => r.result));
  await retire(warm);
  const before = await settledMemory(daemon);

  const t0 = performance.now();
  const run = await batch(CLIENTS, ASKS_PER_CLIENT, 42, 'load');
  const wallMs = performance.now() - t0;
  const { recs } = run;

  // Every request settled exactly once, with a result (no errors, nothing lost).
  assert.equal(recs.length, CLIENTS * ASKS_PER_CLIENT);
  for (const r of recs) {
    assert.equal(r.settles, 1, `${r.streamId} settled ${r.settles} times`);
    assert.equal(r.error, undefined, `${r.streamId} failed: ${String(r.error)}`);
    assert.ok(['eos', 'length', 'cancelled'].includes(r.result!.finishReason), `${r.streamId}: ${r.result!.finishReason}`);
  }

  // The wire: one response per request; deltas contiguous, matching the result, all before it;
  // queue positions only before the ask started.
  for (const [c, tap] of run.taps.entries()) {
    const wire = wireByStream(tap);
    assert.deepEqual(wire.unknownResponses.map((f) => f.msg.id), [], `client ${c}: responses to requests never sent`);
    for (const [id, req] of tap.sent) assert.equal(wire.responsesById.get(id), 1, `client ${c}: ${req.method} id ${id} got ${wire.responsesById.get(id) ?? 0} responses`);
    for (const r of recs.filter((x) => x.client === c)) {
      const w = wire.streams.get(r.streamId);
      assert.ok(w, `${r.streamId}: nothing on the wire`);
      assert.equal(w.responses.length, 1, `${r.streamId}: ${w.responses.length} responses`);
      const resultSeq = w.responses[0].seq;
      assert.deepEqual(w.deltas.map((d) => d.index), w.deltas.map((_, i) => i), `${r.streamId}: delta indices`);
      assert.ok(w.deltas.every((d) => d.seq < resultSeq), `${r.streamId}: a delta arrived after the result`);
      assert.equal(w.deltas.map((d) => d.text).join(''), r.result!.text, `${r.streamId}: the deltas' text is not the result's`);
      const streamed = w.deltas.map((d) => d.tokenId).join(',');
      if (streamed !== r.result!.tokenIds.join(',')) {
        tokenDeltaMismatches.push(`${r.streamId} (${r.result!.finishReason}): deltas carry [${streamed}], the result [${r.result!.tokenIds.join(',')}]`);
      }
      const firstOutput = w.deltas[0]?.seq ?? resultSeq;
      assert.ok(w.positions.every((p) => p.seq < firstOutput && p.ahead >= 1), `${r.streamId}: queue position after the ask started, or < 1: ${JSON.stringify(w.positions)}`);
    }
  }

  // Greedy determinism: answers equal the single client's; a cancelled one is a prefix of it.
  let cancelledQueued = 0;
  let cancelledStream = 0;
  for (const r of recs) {
    const res = r.result!;
    const ref = reference.get(refKey(r.input, r.maxTokens))!;
    if (res.finishReason === 'cancelled') {
      assert.ok(r.cancelSent, `${r.streamId} was cancelled but no cancel was sent`);
      assert.deepEqual(res.tokenIds, ref.tokenIds.slice(0, res.tokenIds.length), `${r.streamId}: a cancelled answer is not a prefix of the reference`);
      if (res.tokenIds.length === 0) cancelledQueued++;
      else cancelledStream++;
    } else {
      assert.deepEqual(res.tokenIds, ref.tokenIds, `${r.streamId}: answer differs from the single-client answer`);
      assert.equal(res.text, ref.text);
      assert.equal(res.finishReason, ref.finishReason);
    }
  }
  const completed = recs.filter((r) => r.result!.finishReason !== 'cancelled');
  const cancelled = recs.length - completed.length;
  // The seeded plan sends both kinds of cancel; most must take effect (some asks start or finish first).
  const sentQueued = recs.filter((r) => r.cancelSent === 'queued').length;
  const sentStream = recs.filter((r) => r.cancelSent === 'stream').length;
  assert.ok(sentQueued >= 10 && sentStream >= 10, `cancels sent: ${sentQueued} while queued, ${sentStream} mid-stream`);
  assert.ok(cancelledQueued >= sentQueued / 2, `only ${cancelledQueued} of ${sentQueued} queued cancels took effect before the ask started`);
  assert.ok(cancelledStream >= sentStream / 2, `only ${cancelledStream} of ${sentStream} mid-stream cancels cut an answer`);

  await retire(run);
  const after = await settledMemory(daemon);

  const latencies = completed.map((r) => r.settledAt! - r.sentAt).sort((a, b) => a - b);
  t.diagnostic(`requests ${recs.length} (${CLIENTS} clients × ${ASKS_PER_CLIENT}, ${IN_FLIGHT_PER_CLIENT} in flight each) in ${(wallMs / 1000).toFixed(1)} s`);
  t.diagnostic(`completed ${completed.length}, cancelled ${cancelled} (${cancelledQueued} before start of ${sentQueued} sent while queued, ${cancelledStream} mid-stream of ${sentStream} sent after the first delta)`);
  t.diagnostic(`latency of completed asks (send to result): p50 ${percentile(latencies, 50).toFixed(0)} ms, p95 ${percentile(latencies, 95).toFixed(0)} ms`);
  const pct = (a: number, b: number) => `${(((b - a) / a) * 100).toFixed(1)}%`;
  t.diagnostic(`daemon RSS after GC: ${mib(before.rss)} after warm-up, ${mib(after.rss)} after the run (${pct(before.rss, after.rss)}); JS heap used ${mib(before.heapUsed)} -> ${mib(after.heapUsed)} (${pct(before.heapUsed, after.heapUsed)})`);
  assert.ok(Math.abs(after.rss - before.rss) <= 0.1 * before.rss, `daemon RSS ${mib(before.rss)} -> ${mib(after.rss)}: more than 10% apart`);

  // lens/forgetConversation deleted every file the run wrote (cancelled answers included). A
  // forget reaches the model worker as a message after its answer; a tool call is a round trip
  // through the same worker, so the forgets before it have been carried out.
  const barrier = await tappedClient(daemon);
  await barrier.client.runTool({ name: 'image_info', image: { bytes: images[0] } });
  await barrier.close();
  await disconnects(++disconnected);
  assert.deepEqual(fs.readdirSync(path.join(daemon.stateDir, 'conversations')).filter((f) => f.endsWith('.jsonl')), [], 'files of forgotten conversations');
});

test('each streamed token has exactly one delta, carrying its id', () => {
  assert.deepEqual(tokenDeltaMismatches.slice(0, 5), [], `${tokenDeltaMismatches.length} asks`);
});

/**
 * Two clients for the scheduling tests: `ask` streams and records start order (first delta),
 * completion order and every queue position; `blocker` starts an ask that keeps the engine busy
 * (about 900 tokens) until its token is cancelled, so the queue can be arranged behind it.
 */
async function schedulingClients() {
  const a = await tappedClient(daemon);
  const b = await tappedClient(daemon);
  const positions = new Map<string, number[]>();
  const queued = new Map<string, () => void>();
  const onPos = (p: QueuePositionParams) => {
    positions.set(p.streamId, [...(positions.get(p.streamId) ?? []), p.ahead]);
    queued.get(p.streamId)?.();
  };
  a.onPosition(onPos);
  b.onPosition(onPos);
  const started: string[] = [];
  const done: string[] = [];
  const ask = (tap: Tapped, id: string, token?: CancellationTokenSource) =>
    tap.client
      .ask({ ...askParams(inputs[0], SHORT), streamId: id }, (d) => void (d.index === 0 && started.push(id)), token?.token)
      .then((r) => (done.push(id), r));
  /** Resolves when the daemon has reported `id` waiting. */
  const isQueued = (id: string) => new Promise<void>((resolve) => (positions.has(id) ? resolve() : queued.set(id, resolve)));
  const blocking = new CancellationTokenSource();
  const blockerStarted = new Promise<void>((resolve) => {
    const first = (d: { index: number }) => {
      if (d.index > 0) return;
      started.push('blocker');
      resolve();
    };
    void a.client.ask({ ...askParams(inputs[BLOCKER], 900), streamId: 'blocker' }, first, blocking.token).then((r) => (done.push('blocker'), results.push(r)));
  });
  const results: AskResult[] = [];
  await blockerStarted;
  return {
    a,
    b,
    positions,
    started,
    done,
    /** Asks on `tap` as `id`; resolves once the daemon reports it waiting, with the answer to come. */
    queue: async (tap: Tapped, id: string, token?: CancellationTokenSource): Promise<{ answer: Promise<AskResult> }> => {
      const answer = ask(tap, id, token).then((r) => (results.push(r), r));
      await isQueued(id);
      return { answer };
    },
    unblock: () => blocking.cancel(),
    close: async () => {
      for (const r of results) if (r.conversationId) await a.client.forgetConversation(r.conversationId);
      await a.close();
      await b.close();
      disconnected += 2;
      await disconnects(disconnected);
    },
  };
}

test('fairness: a client with one ask goes before another client\'s backlog; queue positions', { timeout: 30_000 }, async (t) => {
  const s = await schedulingClients();
  // A: the running ask (blocker) and 9 waiting; then B asks once.
  const aIds = Array.from({ length: 9 }, (_, i) => `a${i + 1}`);
  const aAnswers: Array<Promise<AskResult>> = [];
  for (const id of aIds) aAnswers.push((await s.queue(s.a, id)).answer);
  const bAnswer = (await s.queue(s.b, 'b0')).answer;
  s.unblock();
  const answers = await Promise.all([...aAnswers, bAnswer]);
  assert.ok(answers.every((r) => r.finishReason !== 'cancelled'));
  t.diagnostic(`start order: ${s.started.join(' ')}; positions of B: ${s.positions.get('b0')!.join(',')}`);

  // Round robin: B joins the current round, so only the running ask is ahead of it.
  assert.deepEqual(s.positions.get('b0'), [1], 'B is queued right behind the running ask, and waits for it only');
  assert.deepEqual(s.started, ['blocker', 'b0', ...aIds], 'B runs next; A\'s asks in their order after it');
  assert.deepEqual(s.done, s.started, 'answers complete in the order they started');
  // A's asks were queued behind each other (1..9 ahead) and counted down to 1, going up once: by
  // one, when B overtook them. (Round robin makes a position rise when another client joins an
  // earlier round; it never rises because of the client's own later asks.)
  for (const [i, id] of aIds.entries()) {
    const seq = s.positions.get(id)!;
    assert.equal(seq[0], i + 1, `${id} was queued with ${seq[0]} ahead`);
    const steps = seq.slice(1).map((v, k) => v - seq[k]);
    assert.deepEqual(steps.filter((d) => d > 0), [1], `${id}: positions ${seq.join(',')}`);
    assert.ok(steps.every((d) => d === 1 || d === -1), `${id}: positions ${seq.join(',')} move one at a time`);
    assert.equal(seq.at(-1), 1, `${id}: positions ${seq.join(',')} end at 1`);
  }
  await s.close();
});

test('fairness: a client that cancels its waiting asks keeps its turn in later rounds', { timeout: 30_000 }, async (t) => {
  const s = await schedulingClients();
  // A: running (blocker), a1..a9 waiting (rounds +1..+9); it cancels a5..a9.
  const cancels = new Map<string, CancellationTokenSource>();
  const aAnswers = new Map<string, Promise<AskResult>>();
  for (let i = 1; i <= 9; i++) {
    const cts = new CancellationTokenSource();
    cancels.set(`a${i}`, cts);
    aAnswers.set(`a${i}`, (await s.queue(s.a, `a${i}`, cts)).answer);
  }
  for (let i = 5; i <= 9; i++) cancels.get(`a${i}`)!.cancel();
  for (let i = 5; i <= 9; i++) assert.equal((await aAnswers.get(`a${i}`)!).finishReason, 'cancelled');
  // B queues 8 (rounds +0..+7), then A one more: it belongs in the round after its last waiting
  // ask (a4), not after the five it cancelled.
  const bAnswers: Array<Promise<AskResult>> = [];
  for (let i = 0; i < 8; i++) bAnswers.push((await s.queue(s.b, `b${i}`)).answer);
  const a10 = (await s.queue(s.a, 'a10')).answer;
  const ahead = s.positions.get('a10')![0];
  s.unblock();
  await Promise.all([...bAnswers, a10, ...[1, 2, 3, 4].map((i) => aAnswers.get(`a${i}`)!)]);
  t.diagnostic(`start order: ${s.started.join(' ')}; a10 was queued with ${ahead} ahead`);
  assert.deepEqual(s.started, ['blocker', 'b0', 'a1', 'b1', 'a2', 'b2', 'a3', 'b3', 'a4', 'b4', 'b5', 'a10', 'b6', 'b7']);
  assert.equal(ahead, 11, 'a10 waits for the running ask and 10 others, not for all of B\'s');
  await s.close();
});

test('busy: with --queue-limit 2 a fourth ask is refused with 1040 saying how many are ahead', { timeout: 30_000 }, async () => {
  const small = await serveWs({ model, args: ['--queue-limit', '2', '--requests-per-minute', '0'] });
  try {
    const c = await small.connect();
    const waitingIds = new Set<string>();
    let bothWaiting!: () => void;
    const queued = new Promise<void>((resolve) => (bothWaiting = resolve));
    c.connection.onNotification(QueuePositionNotification, (p) => {
      if (waitingIds.add(p.streamId).size === 2) bothWaiting();
    });
    const blocking = new CancellationTokenSource();
    let started!: () => void;
    const running = c.ask(askParams(inputs[BLOCKER], 900), () => started(), blocking.token);
    await new Promise<void>((resolve) => (started = resolve));
    const waiting = [1, 3].map((i) => c.ask({ ...askParams(inputs[i], SHORT), streamId: `w${i}` }, () => undefined));
    await queued;
    await assert.rejects(
      c.ask(askParams(inputs[4], SHORT)),
      (e: ResponseError<unknown>) => e.code === LensErrorCode.Busy && /3 requests are ahead/.test(e.message) && /queue limit 2/.test(e.message),
    );
    blocking.cancel();
    assert.equal((await running).finishReason, 'cancelled');
    const answers = await Promise.all(waiting);
    assert.deepEqual(answers.map((r) => r.tokenIds), [1, 3].map((i) => reference.get(refKey(i, SHORT))?.tokenIds));
    // Once the queue drains, asks are taken again.
    assert.deepEqual((await c.ask(askParams(inputs[4], SHORT))).tokenIds, reference.get(refKey(4, SHORT))?.tokenIds);
    c.dispose();
  } finally {
    await small.stop();
    fs.rmSync(small.stateDir, { recursive: true, force: true });
  }
});
