import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CancellationTokenSource, ResponseError } from 'vscode-jsonrpc';
import { LensError, LensErrorCode } from '../../common/errors';
import { RequestQueue } from '../../server/src/daemon/queue';
import { FakeEngine } from '../fakes/fakeEngine';
import { gate, makeFixtures, startTyped, whenAborted } from './harness';

const T = { timeout: 10_000 };

/** A fake engine that holds every ask whose prompt is in `held` before its token `at`, until released or aborted. */
function holdingEngine(at = 2) {
  const gates = new Map<string, ReturnType<typeof gate>>();
  const reached = new Map<string, ReturnType<typeof gate>>();
  const key = (p: string) => {
    if (!gates.has(p)) gates.set(p, gate());
    if (!reached.has(p)) reached.set(p, gate());
    return p;
  };
  let current = '';
  const engine = new FakeEngine({
    hooks: {
      beforeAsk: (req) => void (current = req.prompt),
      beforeToken: async (index, signal) => {
        const p = current;
        if (index !== at || !p.startsWith('hold')) return;
        key(p);
        reached.get(p)!.open();
        await Promise.race([gates.get(p)!.promise, whenAborted(signal)]);
      },
    },
  });
  return {
    engine,
    /** Resolves when the ask with `prompt` is held. */
    reached: (prompt: string) => reached.get(key(prompt))!.promise,
    release: (prompt: string) => gates.get(key(prompt))!.open(),
  };
}

test('cancel during generation: finishReason cancelled with the partial text', T, async () => {
  const fx = await makeFixtures();
  const held = holdingEngine(2);
  const h = await startTyped({ engine: held.engine });
  await h.client.loadModel({ path: fx.model });
  const cts = new CancellationTokenSource();
  const deltas: string[] = [];
  const answer = h.client.ask({ prompt: 'hold me', images: [{ path: fx.image }] }, (d) => deltas.push(d.text), cts.token);
  await held.reached('hold me');
  cts.cancel();
  const r = await answer;
  assert.equal(r.finishReason, 'cancelled');
  assert.equal(r.tokenIds.length, 2);
  assert.equal(r.text, deltas.join(''));
  assert.ok(r.text.length > 0);
  // Still serving.
  assert.equal((await h.client.ask({ prompt: 'next', images: [] })).finishReason, 'eos');
  await h.close();
  await fx.cleanup();
});

test('cancel during the vision phase: cancelled with no text', T, async () => {
  const fx = await makeFixtures();
  const inAsk = gate();
  const engine = new FakeEngine({
    hooks: {
      beforeAsk: async (req, signal) => {
        if (req.prompt !== 'slow vision') return;
        inAsk.open();
        await whenAborted(signal);
      },
    },
  });
  const h = await startTyped({ engine });
  await h.client.loadModel({ path: fx.model });
  const cts = new CancellationTokenSource();
  const answer = h.client.ask({ prompt: 'slow vision', images: [{ path: fx.image }] }, () => undefined, cts.token);
  await inAsk.promise;
  cts.cancel();
  const r = await answer;
  assert.equal(r.finishReason, 'cancelled');
  assert.equal(r.text, '');
  await h.close();
  await fx.cleanup();
});

test('cancel while queued: removed from the queue and answered cancelled with empty text', T, async () => {
  const fx = await makeFixtures();
  const held = holdingEngine(1);
  const h = await startTyped({ engine: held.engine });
  await h.client.loadModel({ path: fx.model });
  const first = h.client.ask({ prompt: 'hold first', images: [] });
  await held.reached('hold first');
  const cts = new CancellationTokenSource();
  const second = h.client.ask({ prompt: 'queued', images: [] }, () => assert.fail('a cancelled queued ask streams nothing'), cts.token);
  await h.waitForStatus((s) => s.queueLength === 1);
  cts.cancel();
  const r2 = await second;
  assert.equal(r2.finishReason, 'cancelled');
  assert.equal(r2.text, '');
  assert.deepEqual(r2.tokenIds, []);
  await h.waitForStatus((s) => s.state === 'busy' && s.queueLength === 0);
  held.release('hold first');
  assert.equal((await first).finishReason, 'eos');
  assert.deepEqual(held.engine.calls, ['load', 'ask'], 'the cancelled ask never reached the engine');
  await h.close();
  await fx.cleanup();
});

test('concurrent asks are answered in arrival order; status is busy while running, ready after', T, async () => {
  const fx = await makeFixtures();
  const held = holdingEngine(0);
  const h = await startTyped({ engine: held.engine });
  await h.client.loadModel({ path: fx.model });
  const order: string[] = [];
  const prompts = ['hold a', 'b', 'c', 'd'];
  const all = prompts.map((p) => h.client.ask({ prompt: p, images: [] }).then((r) => (order.push(p), r)));
  await held.reached('hold a');
  const busy = await h.waitForStatus((s) => s.state === 'busy' && s.queueLength === 3);
  assert.equal(busy.model!.name, 'tiny');
  held.release('hold a');
  const results = await Promise.all(all);
  assert.deepEqual(order, prompts);
  assert.ok(results.every((r) => r.finishReason === 'eos'));
  const last = h.statuses.at(-1)!;
  assert.equal(last.state, 'ready');
  assert.equal(last.queueLength, 0);
  await h.close();
  await fx.cleanup();
});

test('a full queue answers Busy saying how many requests are ahead', T, async () => {
  const fx = await makeFixtures();
  const held = holdingEngine(0);
  const h = await startTyped({ engine: held.engine, init: { queueLimit: 2 } });
  await h.client.loadModel({ path: fx.model });
  const running = h.client.ask({ prompt: 'hold x', images: [] });
  await held.reached('hold x');
  const waiting = [h.client.ask({ prompt: 'w1', images: [] }), h.client.ask({ prompt: 'w2', images: [] })];
  await assert.rejects(
    h.client.ask({ prompt: 'too many', images: [] }),
    (e: ResponseError<unknown>) => e.code === LensErrorCode.Busy && /3 requests are ahead/.test(e.message) && /queueLimit/.test(e.message),
  );
  held.release('hold x');
  await Promise.all([running, ...waiting]);
  assert.equal((await h.client.ask({ prompt: 'after', images: [] })).finishReason, 'eos');
  await h.close();
  await fx.cleanup();
});

test('RequestQueue unit: FIFO, limit, cancel queued, cancel running', T, async () => {
  let changes = 0;
  const q = new RequestQueue(1, () => changes++);
  const g = gate();
  const log: string[] = [];
  const job = (name: string, wait?: Promise<void>) => ({
    label: name,
    run: async (signal: AbortSignal) => {
      log.push(`start ${name}`);
      if (wait) await Promise.race([wait, whenAborted(signal)]);
      return signal.aborted ? `${name} aborted` : `${name} done`;
    },
    whenCancelledWhileQueued: () => `${name} cancelled`,
  });
  const first = q.enqueue(job('a', g.promise));
  const cts = new CancellationTokenSource();
  const second = q.enqueue(job('b'), cts.token);
  await assert.rejects(q.enqueue(job('c')), (e: LensError) => e.code === LensErrorCode.Busy);
  assert.equal(q.waitingCount, 1);
  cts.cancel();
  assert.equal(await second, 'b cancelled');
  const third = q.enqueue(job('d'));
  g.open();
  assert.equal(await first, 'a done');
  assert.equal(await third, 'd done');
  assert.deepEqual(log, ['start a', 'start d']);

  const cts2 = new CancellationTokenSource();
  const long = q.enqueue(job('e', new Promise(() => undefined)), cts2.token);
  await Promise.resolve();
  cts2.cancel();
  assert.equal(await long, 'e aborted');
  await q.idle();
  assert.equal(q.runningLabel, undefined);
  assert.ok(changes > 0);

  const pre = new CancellationTokenSource();
  pre.cancel();
  assert.equal(await q.enqueue(job('f'), pre.token), 'f cancelled');
});

// --- fairness across clients (shared daemon) ----------------------------------------------------

/** A queue whose jobs record their start order and finish when released. */
function recordingQueue(limit = 64) {
  const q = new RequestQueue(limit);
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  const add = (client: string, name: string, positions?: number[]) =>
    q.enqueue({
      label: name,
      client,
      run: () =>
        new Promise<string>((resolve) => {
          started.push(name);
          gates.set(name, () => resolve(name));
        }),
      whenCancelledWhileQueued: () => `${name} cancelled`,
      ...(positions ? { onPosition: (ahead: number) => void positions.push(ahead) } : {}),
    });
  /** Finishes the running job and waits until the next one started (if any). */
  const finish = async (name: string) => {
    gates.get(name)!();
    await new Promise((r) => setImmediate(r));
  };
  return { q, started, add, finish };
}

test('clients are served round robin; a late client joins the current round', T, async () => {
  const { started, add, finish } = recordingQueue();
  const all = ['a1', 'a2', 'a3', 'a4'].map((n) => add('A', n));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, ['a1']);
  all.push(add('B', 'b1'), add('B', 'b2'));
  await finish('a1');
  assert.deepEqual(started, ['a1', 'b1'], 'B gets the next turn although A queued first');
  all.push(add('C', 'c1'));
  await finish('b1');
  assert.deepEqual(started, ['a1', 'b1', 'c1'], 'C, not served yet, joins the round A and B were served in, before their second jobs');
  for (const n of ['c1', 'a2', 'b2', 'a3', 'a4']) await finish(n);
  assert.deepEqual(started, ['a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4']);
  assert.deepEqual(await Promise.all(all), ['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'c1']);
});

test('queue positions follow the schedule, and cancelClient settles exactly that client\'s jobs', T, async () => {
  const { q, started, add, finish } = recordingQueue();
  const posA2: number[] = [];
  const posB1: number[] = [];
  const a1 = add('A', 'a1');
  const a2 = add('A', 'a2', posA2);
  const a3 = add('A', 'a3');
  const b1 = add('B', 'b1', posB1);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(posB1, [1], 'b1 runs right after a1 (round robin)');
  assert.deepEqual(posA2, [1, 2], 'a2 moved back one place when b1 joined the round');
  q.cancelClient('A'); // a1 is running: its signal aborts; a2, a3 settle as cancelled
  assert.equal(await a2, 'a2 cancelled');
  assert.equal(await a3, 'a3 cancelled');
  assert.equal(q.waitingFor('A'), 0);
  assert.equal(q.waitingCount, 1);
  await finish('a1');
  assert.equal(await a1, 'a1');
  assert.deepEqual(started, ['a1', 'b1']);
  assert.deepEqual(posB1, [1], 'told once: it started when a1 finished');
  await finish('b1');
  assert.equal(await b1, 'b1');
});

test('a full queue refuses with Busy and says how many requests are ahead', T, async () => {
  const { add, finish } = recordingQueue(2);
  const jobs = [add('A', 'a1'), add('A', 'a2'), add('B', 'b1')];
  await assert.rejects(add('C', 'c1'), (e: unknown) => e instanceof LensError && e.code === LensErrorCode.Busy && /3 requests are ahead/.test(e.message));
  for (const n of ['a1', 'b1', 'a2']) await finish(n);
  await Promise.all(jobs);
});
