import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runAgent } from '../../server/src/agent/loop';
import { toolSystemPrompt } from '../../server/src/agent/prompts';
import { explainWithOcr } from '../../server/src/agent/skills';
import { linesToText } from '../../server/src/tools/ocr';
import type { AgentImage, AgentStep, Model, ModelReply, ModelTurn } from '../../server/src/agent/types';
import { ToolRegistry } from '../../server/src/tools/registry';
import { defaultRegistry } from '../../server/src/tools';
import { parseWith } from '../../server/src/tools/args';
import type { Tool } from '../../server/src/tools/types';
import * as fx from '../fixtures/images';

/** A model whose replies are scripted; it records every turn it is asked. */
class ScriptedModel implements Model {
  readonly turns: ModelTurn[] = [];
  constructor(private readonly replies: Array<string | ((turn: ModelTurn, signal: AbortSignal) => Promise<ModelReply> | ModelReply)>) {}
  async ask(turn: ModelTurn, signal: AbortSignal): Promise<ModelReply> {
    this.turns.push(turn);
    const r = this.replies[this.turns.length - 1];
    if (r === undefined) throw new Error(`the script has no reply ${this.turns.length}`);
    return typeof r === 'string' ? { text: r, finishReason: 'eos' } : r(turn, signal);
  }
}

const plus = (thought: string, actions: unknown[], value: string) => `"thoughts🤔" ${thought}\n"actions🚀" ${JSON.stringify(actions)}\n"value👉" ${value}`;
const call = (name: string, params: object = {}) => ({ API_name: name, API_params: params });

const tool = (name: string, run: Tool<Record<string, unknown>>['run'], timeoutMs?: number): Tool<Record<string, unknown>> => ({
  name,
  description: `${name} tool`,
  schema: { type: 'object', properties: { q: { type: 'string' } }, additionalProperties: false },
  parseArgs: (raw) => parseWith(raw, ['q'], (o) => o),
  run,
  ...(timeoutMs ? { timeoutMs } : {}),
});

const lookup = tool('lookup', async (a) => ({ summary: JSON.stringify({ found: `${a.q ?? 'all'}`, score: 0.98765 }), data: { a }, artefacts: [{ kind: 'boxes', boxes: [{ box: [0, 0, 0.5, 0.5], label: 'x' }] }] }));
const boom = tool('boom', async () => {
  throw new Error('kaput');
});
const slow = tool('slow', () => new Promise((resolve) => setTimeout(() => resolve({ summary: '{}', data: {} }), 5000).unref()));

const image: AgentImage = { bytes: new Uint8Array([1, 2, 3]), width: 10, height: 10, mimeType: 'image/png' };

async function run(model: Model, opts: Parameters<typeof runAgent>[0]['options'] = {}, registry = new ToolRegistry([lookup, boom, slow]), signal?: AbortSignal) {
  const seen: AgentStep[] = [];
  const result = await runAgent({ model, registry, question: 'What does it say?', image, options: opts, onStep: (s) => seen.push(s), signal });
  return { result, seen };
}

test('llava-plus: tool, then the observation as a user turn with the same image, then the answer', async () => {
  const first = plus('I need to look it up.', [call('lookup', { q: 'sign' })], 'Looking.');
  const model = new ScriptedModel([first, plus('Got it.', [], 'It says STOP.')]);
  const { result, seen } = await run(model, { format: 'llava-plus' });
  assert.equal(result.answer, 'It says STOP.');
  assert.equal(result.stoppedBy, 'answer');
  assert.equal(result.finishReason, 'eos');

  assert.equal(model.turns.length, 2);
  assert.deepEqual(model.turns[0], { role: 'user', text: 'What does it say?', images: [{ bytes: image.bytes, mimeType: 'image/png', origin: 'original' }] });
  assert.equal(model.turns[1].role, 'user');
  assert.equal(
    model.turns[1].text,
    'lookup model outputs: {"found":"sign","score":0.98765}\n\nPlease summarize the model outputs and answer my first question: What does it say?',
  );
  assert.deepEqual(model.turns[1].images?.map((i) => i.origin), ['original']);

  assert.deepEqual(seen, result.steps);
  assert.deepEqual(seen.map((s) => [s.index, s.turn, s.tool, s.final]), [
    [0, 0, 'lookup', undefined],
    [1, 1, undefined, true],
  ]);
  assert.equal(seen[0].thought, 'I need to look it up.');
  assert.deepEqual(seen[0].args, { q: 'sign' });
  assert.equal(seen[0].observation, '{"found":"sign","score":0.98765}');
  assert.equal(seen[0].artefacts?.[0].kind, 'boxes');
  assert.equal(seen[0].modelText, first);
  assert.equal(seen[1].answer, 'It says STOP.');
});

test('chatml: the observation is a tool turn with the JSON result and no repeated image', async () => {
  const model = new ScriptedModel(['<tool_call>\n{"name": "lookup", "arguments": {"q": "a"}}\n</tool_call>', 'The answer is a.']);
  const { result } = await run(model, { format: 'chatml' });
  assert.equal(result.answer, 'The answer is a.');
  assert.deepEqual(model.turns[1], { role: 'tool', text: '{"found":"a","score":0.98765}', toolNames: ['lookup'] });
});

test('json: the observation is a user turn listing the results', async () => {
  const model = new ScriptedModel(['{"tool": "lookup", "args": {"q": "b"}}', 'b.']);
  await run(model, { format: 'json' });
  assert.deepEqual(model.turns[1], {
    role: 'user',
    text: 'Tool results:\nlookup result: {"found":"b","score":0.98765}\n\nCall another tool, or answer my first question: What does it say?',
  });
});

test('several actions in one turn run in order and come back in one observation', async () => {
  const model = new ScriptedModel([plus('both', [call('lookup', { q: '1' }), call('lookup', { q: '2' })], ''), plus('done', [], 'Two things.')]);
  const { seen } = await run(model);
  assert.deepEqual(seen.map((s) => [s.index, s.turn, (s.args as { q?: string } | undefined)?.q]), [
    [0, 0, '1'],
    [1, 0, '2'],
    [2, 1, undefined],
  ]);
  assert.match(model.turns[1].text, /^lookup model outputs: \{"found":"1".*\}\nlookup model outputs: \{"found":"2".*\}\n\nPlease summarize/);

  const chat = new ScriptedModel(['<tool_call>{"name": "lookup", "arguments": {"q": "1"}}</tool_call><tool_call>{"name": "lookup", "arguments": {"q": "2"}}</tool_call>', 'ok']);
  await run(chat, { format: 'chatml' });
  assert.deepEqual(chat.turns[1].text.split('\n').map((l) => JSON.parse(l)), [
    { name: 'lookup', content: { found: '1', score: 0.98765 } },
    { name: 'lookup', content: { found: '2', score: 0.98765 } },
  ]);
  assert.deepEqual(chat.turns[1].toolNames, ['lookup', 'lookup']);
});

test('step limit: stops with the last answer and a note, without running that turn\'s tools', async () => {
  const again = (n: number) => plus(`step ${n}`, [call('lookup', { q: String(n) })], `partial answer ${n}`);
  const model = new ScriptedModel([again(1), again(2), again(3), again(4)]);
  const { result, seen } = await run(model, { maxSteps: 2 });
  assert.equal(model.turns.length, 3);
  assert.equal(result.stoppedBy, 'step-limit');
  assert.equal(result.answer, 'partial answer 3');
  assert.match(result.note!, /stopped after 2 tool steps/);
  assert.deepEqual(seen.map((s) => [s.tool, s.final]), [
    ['lookup', undefined],
    ['lookup', undefined],
    [undefined, true],
  ]);
  assert.match(seen[2].error!, /stopped after 2/);
});

test('the default step limit is 4', async () => {
  const model = new ScriptedModel(Array.from({ length: 9 }, (_, n) => plus(`s${n}`, [call('lookup')], `v${n}`)));
  const { result } = await run(model);
  assert.equal(model.turns.length, 5);
  assert.equal(result.steps.filter((s) => s.tool).length, 4);
});

test('a tool that throws becomes an error observation and the loop goes on', async () => {
  const model = new ScriptedModel([plus('try', [call('boom')], ''), plus('oh well', [], 'Could not tell.')]);
  const { result, seen } = await run(model);
  assert.equal(result.answer, 'Could not tell.');
  assert.equal(seen[0].error, 'boom failed: kaput');
  assert.equal(seen[0].observation, '{"error":"boom failed: kaput"}');
  assert.match(model.turns[1].text, /^boom model outputs: \{"error":"boom failed: kaput"\}\n\n/);
});

test('a tool that times out becomes an error observation', async () => {
  const model = new ScriptedModel([plus('wait', [call('slow')], ''), plus('fine', [], 'Gave up on it.')]);
  const { result, seen } = await run(model, { toolTimeoutMs: 30 });
  assert.equal(result.answer, 'Gave up on it.');
  assert.equal(seen[0].error, 'slow timed out after 30 ms');
  assert.match(model.turns[1].text, /slow model outputs: \{"error":"slow timed out after 30 ms"\}/);
});

test('unknown tools and bad arguments are observations too', async () => {
  const model = new ScriptedModel([plus('x', [call('grounding_dino', { caption: 'cat' }), call('lookup', { q: 1, z: 2 })], ''), plus('y', [], 'done')]);
  const { seen } = await run(model);
  assert.match(seen[0].error!, /unknown tool "grounding_dino"; available tools: lookup, boom, slow/);
  assert.match(seen[1].error!, /invalid arguments for lookup: unknown argument "z"/);
});

test('unparseable actions: an error step, then "could not parse …" shown to the model', async () => {
  const model = new ScriptedModel(['"thoughts🤔" hm\n"actions🚀" [{"API_name": "lookup", "API_params": {"q": }]\n"value👉" ', plus('fixed', [], 'Answer.')]);
  const { result, seen } = await run(model);
  assert.equal(result.answer, 'Answer.');
  assert.match(seen[0].error!, /^could not parse the answer: the actions .* are not valid JSON/);
  assert.equal(seen[0].tool, undefined);
  assert.match(model.turns[1].text, /^could not parse your answer: the actions .* are not valid JSON: .*\. Write the actions as "actions🚀" \[/);
  assert.match(model.turns[1].text, /answer my first question: What does it say\?$/);

  const chat = new ScriptedModel(['<tool_call>{"name": </tool_call>', 'ok']);
  await run(chat, { format: 'chatml' });
  assert.equal(chat.turns[1].role, 'tool');
  assert.match(JSON.parse(chat.turns[1].text).error, /^could not parse your answer: tool call 1 .* is not valid JSON/);
});

test('an answer cut off inside the actions (token limit) is reported, not run', async () => {
  const model = new ScriptedModel([
    async () => ({ text: '"thoughts🤔" zoom\n"actions🚀" [{"API_name": "lookup", "API_par', finishReason: 'length' }),
    plus('ok', [], 'Short answer.'),
  ]);
  const { result, seen } = await run(model);
  assert.match(seen[0].error!, /cut off/);
  assert.equal(result.answer, 'Short answer.');
});

test('cancellation mid-tool aborts the tool\'s signal and ends the loop', async () => {
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  let toolSignal: AbortSignal | undefined;
  const waiter = tool('waiter', (_a, ctx) => {
    toolSignal = ctx.signal;
    started();
    return new Promise((_res, rej) => ctx.signal.addEventListener('abort', () => rej(new Error('stopped'))));
  });
  const ac = new AbortController();
  const model = new ScriptedModel([plus('wait', [call('waiter'), call('lookup')], 'first value'), plus('never', [], 'never')]);
  const p = run(model, {}, new ToolRegistry([waiter, lookup]), ac.signal);
  await running;
  ac.abort();
  const { result, seen } = await p;
  assert.equal(result.stoppedBy, 'cancelled');
  assert.equal(result.finishReason, 'cancelled');
  assert.equal(result.answer, 'first value');
  assert.equal(toolSignal!.aborted, true);
  assert.equal(model.turns.length, 1, 'no further model turn');
  assert.deepEqual(seen.map((s) => [s.tool, s.error]), [['waiter', 'waiter was cancelled']]);
});

test('cancellation before the first step and during a model turn', async () => {
  const ac = new AbortController();
  ac.abort();
  const idle = new ScriptedModel([]);
  const r1 = await run(idle, {}, undefined, ac.signal);
  assert.deepEqual([r1.result.stoppedBy, idle.turns.length, r1.seen.length], ['cancelled', 0, 0]);

  const ac2 = new AbortController();
  const model = new ScriptedModel([
    (_t, signal) => {
      ac2.abort();
      assert.equal(signal.aborted, true);
      return { text: '', finishReason: 'cancelled' };
    },
  ]);
  const r2 = await run(model, {}, undefined, ac2.signal);
  assert.equal(r2.result.stoppedBy, 'cancelled');
  const rejecting = new ScriptedModel([
    () => {
      ac3.abort();
      throw new Error('aborted');
    },
  ]);
  const ac3 = new AbortController();
  assert.equal((await run(rejecting, {}, undefined, ac3.signal)).result.stoppedBy, 'cancelled');
});

test('a model failure rejects; a throwing onStep listener does not matter', async () => {
  const failing = new ScriptedModel([
    () => {
      throw new Error('engine down');
    },
  ]);
  await assert.rejects(run(failing), /engine down/);
  const model = new ScriptedModel([plus('x', [call('lookup')], ''), 'done']);
  const r = await runAgent({ model, registry: new ToolRegistry([lookup]), question: 'q', image, onStep: () => { throw new Error('listener'); } });
  assert.equal(r.answer, 'done');
  assert.equal(r.steps.length, 2);
});

test('bad options are rejected before the model is asked', async () => {
  const model = new ScriptedModel([]);
  await assert.rejects(run(model, { maxSteps: 0 }), /maxSteps must be an integer of at least 1, got 0/);
  await assert.rejects(run(model, { maxSteps: NaN }), /maxSteps/);
  await assert.rejects(run(model, { toolTimeoutMs: -1 }), /toolTimeoutMs must be a positive number/);
  await assert.rejects(run(model, { format: 'xml' as never }), /format must be llava-plus, chatml or json/);
  assert.equal(model.turns.length, 0);
});

test('the system prompt goes with the first turn only', async () => {
  const model = new ScriptedModel([plus('x', [call('lookup')], ''), plus('y', [], 'z')]);
  await run(model, { systemPrompt: 'SYSTEM' });
  assert.equal(model.turns[0].system, 'SYSTEM');
  assert.equal(model.turns[1].system, undefined);
});

test('zoom in the loop: the crop rides on the next turn and the model is told its image number', async () => {
  const png = await fx.quadrantsPng(64, 48);
  const img: AgentImage = { bytes: new Uint8Array(png), width: 64, height: 48, mimeType: 'image/png' };
  for (const [format, text, expectNumber, expectOrigins] of [
    ['llava-plus', plus('closer', [call('zoom', { box: [0, 0, 0.5, 0.75] })], ''), 3, ['original', 'derived']],
    ['chatml', '<tool_call>{"name": "zoom", "arguments": {"box": [0, 0, 0.5, 0.75]}}</tool_call>', 2, ['derived']],
  ] as const) {
    const model = new ScriptedModel([text, 'Red.']);
    const r = await runAgent({ model, registry: defaultRegistry(), question: 'Colour?', image: img, options: { format, encoderSize: 224 } });
    assert.equal(r.answer, 'Red.');
    const images = model.turns[1].images!;
    assert.deepEqual(images.map((i) => i.origin), expectOrigins);
    const crop = images[images.length - 1];
    assert.deepEqual([crop.mimeType, crop.box], ['image/png', [0, 0, 0.5, 0.75]]);
    assert.match(r.steps[0].observation!, new RegExp(`attached as image ${expectNumber}`));
    assert.ok(r.steps[0].artefacts?.some((a) => a.kind === 'image'));
  }
});

test('toolSystemPrompt lists every tool with its schema, in each family\'s format', () => {
  const reg = defaultRegistry();
  const p = toolSystemPrompt(reg, 'llava-plus');
  for (const t of reg.describe()) assert.ok(p.includes(`- ${t.name}: ${t.description}`) && p.includes(JSON.stringify(t.schema)), t.name);
  assert.match(p, /"actions🚀" \[\{"API_name"/);
  const c = toolSystemPrompt(reg, 'chatml');
  const sigs = /<tools>\n([\s\S]*)\n<\/tools>/.exec(c)![1].split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(sigs.map((s) => s.function.name), ['ocr', 'zoom', 'image_info', 'grid']);
  assert.deepEqual(sigs[1].function.parameters, reg.get('zoom')!.schema);
  assert.match(c, /<tool_call>\n\{"name": <function-name>, "arguments": <args-json-object>\}\n<\/tool_call>/);
  assert.match(toolSystemPrompt(reg, 'json'), /reply with only a JSON object: \{"tool": "<name>", "args"/);
});

test('explainWithOcr: OCR is step 0, its lines go into the first turn, then the loop runs', async () => {
  const fakeOcr: Tool<object> = {
    name: 'ocr',
    description: 'fake ocr',
    schema: { type: 'object' },
    parseArgs: () => ({ ok: true, args: {} }),
    run: async () => ({
      summary: '{"texts":["File","Edit"]}',
      data: { lines: [{ text: 'File', box: [0.01, 0.01, 0.05, 0.03], score: 0.99 }, { text: 'Edit', box: [0.06, 0.01, 0.1, 0.03], score: 0.98 }], ms: 5 },
    }),
  };
  for (const format of ['llava-plus', 'chatml'] as const) {
    const model = new ScriptedModel([format === 'chatml' ? '<tool_call>{"name": "lookup", "arguments": {}}</tool_call>' : plus('x', [call('lookup')], ''), 'A menu bar.']);
    const seen: AgentStep[] = [];
    const r = await explainWithOcr('screenshot', { model, registry: new ToolRegistry([fakeOcr, lookup]), image, options: { format }, onStep: (s) => seen.push(s) });
    assert.equal(r.answer, 'A menu bar.');
    assert.deepEqual(seen.map((s) => [s.index, s.tool ?? 'answer']), [
      [0, 'ocr'],
      [1, 'lookup'],
      [2, 'answer'],
    ]);
    assert.deepEqual(r.steps, seen);
    const first = model.turns[0].text;
    assert.match(first, /^Explain this screenshot/);
    assert.match(first, /screenshot of a user interface/);
    if (format === 'llava-plus') assert.match(first, /ocr model outputs: \{"texts":\["File","Edit"\],"boxes":\[\[0\.01,0\.01,0\.05,0\.03\]/);
    else assert.match(first, /"File" \[0\.01, 0\.01, 0\.05, 0\.03\]\n"Edit" \[0\.06/);
    assert.doesNotMatch(model.turns[1].text, /File/, 'the OCR context is not repeated in observations');
  }
  const diagram = new ScriptedModel(['Boxes.']);
  await explainWithOcr('diagram', { model: diagram, registry: new ToolRegistry([fakeOcr]), image, question: 'What feeds the projector?' });
  assert.match(diagram.turns[0].text, /^What feeds the projector\?\n\nThe image is a diagram/);
});

test('linesToText: rows on lines, cells of a row tab-separated', () => {
  const l = (text: string, x0: number, y0: number, x1: number, y1: number) => ({ text, box: [x0, y0, x1, y1] as [number, number, number, number], score: 1 });
  assert.equal(linesToText([l('Name', 0.1, 0.1, 0.2, 0.12), l('Size', 0.4, 0.1, 0.45, 0.12), l('a.txt', 0.1, 0.2, 0.2, 0.22)]), 'Name\tSize\na.txt');
});
