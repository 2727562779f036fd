import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ToolRegistry, errorResult } from '../../server/src/tools/registry';
import { defaultRegistry } from '../../server/src/tools';
import { parseWith, intArg, boxArg } from '../../server/src/tools/args';
import { compact, summarise } from '../../server/src/tools/summary';
import type { Tool, ToolContext } from '../../server/src/tools/types';

const image = { bytes: new Uint8Array(0), width: 4, height: 4 };
const ctx = (signal = new AbortController().signal): ToolContext => ({ image, signal });

const echo: Tool<{ n: number }> = {
  name: 'echo',
  description: 'echoes n',
  schema: { type: 'object', properties: { n: { type: 'integer' } } },
  parseArgs: (raw) => parseWith(raw, ['n'], (o) => ({ n: intArg(o, 'n', 0, 9, 1) })),
  run: async (a) => ({ summary: JSON.stringify({ n: a.n }), data: { n: a.n } }),
};
const boom: Tool<object> = {
  name: 'boom',
  description: 'throws',
  schema: { type: 'object' },
  parseArgs: () => ({ ok: true, args: {} }),
  run: async () => {
    throw new Error('kaput');
  },
};
/** Ignores its signal and would take 5 s: the registry must answer at the time limit anyway. */
const slow: Tool<object> = {
  name: 'slow',
  description: 'slow',
  schema: { type: 'object' },
  timeoutMs: 40,
  parseArgs: () => ({ ok: true, args: {} }),
  run: () => new Promise((resolve) => setTimeout(() => resolve({ summary: '{}', data: {} }), 5000).unref()),
};

test('registry: describe lists name, description and schema in order; names are checked', () => {
  const reg = new ToolRegistry([echo, boom]);
  assert.deepEqual(reg.describe().map((d) => d.name), ['echo', 'boom']);
  assert.deepEqual(reg.describe()[0], { name: 'echo', description: 'echoes n', schema: echo.schema });
  assert.throws(() => reg.register(echo), /registered twice/);
  assert.throws(() => reg.register({ ...echo, name: 'Bad Name' }), /snake_case/);
});

test('the default registry has ocr, zoom, image_info and grid, each with an object schema', () => {
  const d = defaultRegistry().describe();
  assert.deepEqual(d.map((t) => t.name), ['ocr', 'zoom', 'image_info', 'grid']);
  for (const t of d) {
    assert.equal(t.schema.type, 'object');
    assert.ok(t.description.length > 20);
  }
});

test('runTool: success carries the result, the time and status ok', async () => {
  const r = await new ToolRegistry([echo]).runTool('echo', { n: 3 }, ctx());
  assert.equal(r.status, 'ok');
  assert.equal(r.summary, '{"n":3}');
  assert.deepEqual(r.data, { n: 3 });
  assert.equal(r.error, undefined);
  assert.ok(r.ms >= 0);
});

test('runTool: unknown tool, bad arguments and a throwing tool become error results', async () => {
  const reg = new ToolRegistry([echo, boom]);
  const unknown = await reg.runTool('nope', {}, ctx());
  assert.equal(unknown.status, 'error');
  assert.match(unknown.error!, /unknown tool "nope"; available tools: echo, boom/);
  assert.deepEqual(JSON.parse(unknown.summary), { error: unknown.error });

  const bad = await reg.runTool('echo', { n: 42 }, ctx());
  assert.match(bad.error!, /invalid arguments for echo: n must be an integer 0..9, got 42/);
  const extra = await reg.runTool('echo', { m: 1 }, ctx());
  assert.match(extra.error!, /unknown argument "m"; expected n/);
  const notObject = await reg.runTool('echo', [1], ctx());
  assert.match(notObject.error!, /arguments must be a JSON object/);

  const thrown = await reg.runTool('boom', {}, ctx());
  assert.equal(thrown.status, 'error');
  assert.match(thrown.error!, /boom failed: kaput/);
  assert.deepEqual(thrown.data, { error: thrown.error });
});

test('runTool: a tool that overruns its time limit times out, even if it ignores its signal', async () => {
  const reg = new ToolRegistry([slow]);
  const r = await reg.runTool('slow', {}, ctx());
  assert.equal(r.status, 'timeout');
  assert.match(r.error!, /slow timed out after 40 ms/);
  assert.ok(r.ms < 2000, `answered after ${r.ms} ms`);
  const shorter = await reg.runTool('slow', {}, ctx(), 5);
  assert.match(shorter.error!, /after 5 ms/);
  assert.match((await reg.runTool('slow', {}, ctx(), 0)).error!, /time limit for slow must be a positive number/);
});

test('runTool: cancellation before and during a tool; the tool sees its signal abort', async () => {
  let toolSignal: AbortSignal | undefined;
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const waiter: Tool<object> = {
    name: 'waiter',
    description: 'waits for its signal',
    schema: { type: 'object' },
    parseArgs: () => ({ ok: true, args: {} }),
    run: (_a, c) =>
      new Promise((_resolve, reject) => {
        toolSignal = c.signal;
        c.signal.addEventListener('abort', () => reject(new Error('aborted')));
        started();
      }),
  };
  const reg = new ToolRegistry([waiter]);
  const before = new AbortController();
  before.abort();
  assert.equal((await reg.runTool('waiter', {}, ctx(before.signal))).status, 'cancelled');
  assert.equal(toolSignal, undefined, 'not started');

  const ac = new AbortController();
  const p = reg.runTool('waiter', {}, ctx(ac.signal));
  await running;
  ac.abort();
  const r = await p;
  assert.equal(r.status, 'cancelled');
  assert.match(r.error!, /waiter was cancelled/);
  assert.equal(toolSignal!.aborted, true);
});

test('argument guards: ints, boxes, JSON-string arguments', () => {
  assert.deepEqual(parseWith('{"n": "4"}', ['n'], (o) => intArg(o, 'n', 0, 9, 1)), { ok: true, args: 4 });
  assert.deepEqual(parseWith(null, ['n'], (o) => intArg(o, 'n', 0, 9, 1)), { ok: true, args: 1 });
  assert.deepEqual(boxArg([0.5, 0.6, 0.1, 0.2], 'box'), [0.1, 0.2, 0.5, 0.6]);
  assert.deepEqual(boxArg({ x0: 0, y0: 0, x1: 1, y1: 1 }, 'box'), [0, 0, 1, 1]);
  assert.throws(() => boxArg([10, 20, 300, 400], 'box'), /normalised to 0..1/);
  assert.throws(() => boxArg([0.1, 0.1, 0.1, 0.5], 'box'), /no area/);
  assert.throws(() => boxArg([0.1, 0.1], 'box'), /\[x0, y0, x1, y1\]/);
});

test('summaries: numbers to 2 decimals, bulky fields dropped, long arrays cut', () => {
  const v = compact({ a: 1.23456, box: [0.123, 0.456, 0.789, 0.1], base64: 'AAAA', mask: [1, 2], list: Array.from({ length: 6 }, (_, i) => i), t: new Uint8Array(3) }, { maxItems: 4 });
  assert.deepEqual(v, { a: 1.23, box: [0.12, 0.46, 0.79, 0.1], list: [0, 1, 2, 3, '… 2 more'] });
  assert.equal(summarise({ x: NaN }), '{"x":null}');
  assert.deepEqual(errorResult('bad'), { summary: '{"error":"bad"}', data: { error: 'bad' }, error: 'bad' });
});
