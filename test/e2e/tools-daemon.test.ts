/**
 * The tool loop through the real daemon process over stdio: the model's replies are scripted
 * (LLAVA_LENS_TEST_MODEL_SCRIPT) so the model "chooses" tools deterministically; the tools (real
 * PaddleOCR, grid) run for real on the daemon's worker; the client receives every step in order.
 * Also `lens/listTools`, `lens/runTool`, and the loop on the real tiny model without a script.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { LensClient } from '../../client/src/daemonClient';
import { LensErrorCode } from '../../common/errors';
import { AgentStepNotification, type AgentStepParams, type AnswerDeltaParams } from '../../common/protocol';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng } from '../fixtures/images';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DAEMON = path.join(ROOT, 'out', 'server', 'src', 'daemon', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-tools-'));
const model = path.join(tmp, 'tiny-onevision');
const T = { timeout: 180_000 };

const SCRIPT = [
  'I need to read the labels first.\n<tool_call>{"name": "ocr", "arguments": {}}</tool_call>',
  '<tool_call>{"name": "grid", "arguments": {"rows": 2, "cols": 2}}</tool_call>\n<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>',
  'The diagram shows a request pipeline: Image, Encoder, Projector, LLM and Answer.',
];

async function start(env: NodeJS.ProcessEnv = {}): Promise<LensClient> {
  const client = LensClient.spawnStdio({ daemonPath: DAEMON, env: { ...process.env, ...env }, cwd: tmp });
  await client.initialize({ workspaceFolders: [{ uri: `file://${tmp}`, name: 'ws' }] });
  await client.loadModel({ path: model });
  return client;
}

before(async () => {
  await makeTestModel(model, { preset: 'tiny-onevision', seed: 2 });
  fs.writeFileSync(path.join(tmp, 'diagram.png'), await diagramPng());
  fs.writeFileSync(path.join(tmp, 'script.json'), JSON.stringify(SCRIPT));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('a scripted tool loop runs real tools in the daemon; every step reaches the client in order', T, async () => {
  const client = await start({ LLAVA_LENS_TEST_MODEL_SCRIPT: path.join(tmp, 'script.json') });
  try {
    const steps: AgentStepParams[] = [];
    const deltas: AnswerDeltaParams[] = [];
    const streamId = 'tools-1';
    const sub = client.connection.onNotification(AgentStepNotification, (s) => {
      steps.push(s);
    });
    const r = await client.ask({ images: [{ path: 'diagram.png' }], prompt: 'What does this diagram show?', tools: true, streamId }, (d) => deltas.push(d));
    sub.dispose();

    assert.equal(r.text, SCRIPT[2]);
    assert.deepEqual(steps.map((s) => s.index), [0, 1, 2, 3]);
    assert.ok(steps.every((s) => s.streamId === streamId));
    assert.deepEqual(steps.map((s) => s.tool ?? (s.final ? 'final' : '?')), ['ocr', 'grid', 'no_such_tool', 'final']);
    assert.deepEqual(r.steps?.map((s) => s.index), [0, 1, 2, 3], 'the result carries the steps too');

    // OCR read the labels (real PaddleOCR) and boxed them on the raw image.
    const ocr = steps[0];
    assert.equal(ocr.thought, 'I need to read the labels first.');
    for (const label of ['Request pipeline', 'Encoder', 'Projector', 'LLM', 'Answer']) assert.match(ocr.observation ?? '', new RegExp(label));
    const boxes = ocr.artefacts?.find((a) => a.kind === 'boxes');
    assert.ok(boxes && boxes.kind === 'boxes' && boxes.boxes.length >= 5);
    const encoder = boxes.boxes.find((b) => b.label === 'Encoder');
    assert.ok(encoder, 'a box labelled Encoder');
    const [x0, y0, x1, y1] = encoder.box; // the "Encoder" box is at x 240..400, y 90..160 of 640×400
    assert.ok(x0 > 0.3 && x1 < 0.66 && y0 > 0.2 && y1 < 0.42, `Encoder box ${encoder.box}`);

    // grid returned its overlay as an image; the unknown tool became an error observation.
    assert.ok(steps[1].artefacts?.some((a) => a.kind === 'image' && a.mimeType === 'image/png'));
    assert.match(steps[2].error ?? '', /unknown tool "no_such_tool"/);
    assert.ok(steps[3].final);

    // deltas streamed every model turn, tagged with its turn number
    assert.deepEqual([...new Set(deltas.map((d) => d.turn))], [0, 1, 2]);
    assert.equal(deltas.filter((d) => d.turn === 2).map((d) => d.text).join(''), SCRIPT[2]);
  } finally {
    await client.shutdown();
  }
});

test('lens/listTools and lens/runTool (ocr) answer without a model turn; bad tool calls are results', T, async () => {
  const client = await start();
  try {
    const { tools } = await client.connection.sendRequest('lens/listTools') as { tools: Array<{ name: string; schema: object }> };
    assert.deepEqual(tools.map((t) => t.name).sort(), ['grid', 'image_info', 'ocr', 'zoom']);
    const ocr = await client.connection.sendRequest('lens/runTool', { name: 'ocr', image: { path: 'diagram.png' } }) as { status: string; data: { lines: Array<{ text: string; box: number[] }> } };
    assert.equal(ocr.status, 'ok');
    assert.deepEqual(ocr.data.lines.map((l) => l.text), ['Request pipeline', 'Image', 'Encoder', 'Projector', 'LLM', 'Answer']);
    const bad = await client.connection.sendRequest('lens/runTool', { name: 'zoom', args: { box: 'left' }, image: { path: 'diagram.png' } }) as { status: string; error: string };
    assert.equal(bad.status, 'error');
    assert.match(bad.error, /invalid arguments for zoom/);
    await assert.rejects(client.connection.sendRequest('lens/runTool', { name: 'ocr' }), (e: { code: number }) => e.code === LensErrorCode.InvalidParams);
    // the real tiny model in the loop: it calls no tool, so its reply is the answer after one turn
    const r = await client.ask({ images: [{ path: 'diagram.png' }], prompt: 'What is it?', tools: true, maxTokens: 8, streamId: 's' });
    assert.ok(r.steps && r.steps.length >= 1 && r.steps[r.steps.length - 1].final);
    await assert.rejects(client.ask({ images: [], prompt: 'x', tools: true }), /exactly one image/);
  } finally {
    await client.shutdown();
  }
});

test('llava-lens ocr --json prints lines with boxes; ask --tools --json adds the steps', T, async () => {
  const { spawnSync } = await import('node:child_process');
  const bin = path.join(ROOT, 'bin', 'llava-lens.js');
  const ocr = spawnSync(process.execPath, [bin, 'ocr', path.join(tmp, 'diagram.png'), '--json'], { encoding: 'utf8' });
  assert.equal(ocr.status, 0, ocr.stderr);
  const d = JSON.parse(ocr.stdout) as { lines: Array<{ text: string; box: number[]; score: number }>; ms: number };
  assert.deepEqual(d.lines.map((l) => l.text), ['Request pipeline', 'Image', 'Encoder', 'Projector', 'LLM', 'Answer']);
  assert.ok(d.lines.every((l) => l.box.length === 4 && l.score > 0.5) && d.ms > 0);
  const ask = spawnSync(process.execPath, [bin, 'ask', path.join(tmp, 'diagram.png'), '-q', 'What is it?', '--model', model, '--tools', '--json'], {
    encoding: 'utf8',
    env: { ...process.env, LLAVA_LENS_TEST_MODEL_SCRIPT: path.join(tmp, 'script.json') },
  });
  assert.equal(ask.status, 0, ask.stderr);
  const r = JSON.parse(ask.stdout) as { text: string; steps: Array<{ tool?: string }> };
  assert.equal(r.text, SCRIPT[2]);
  assert.deepEqual(r.steps.map((s) => s.tool ?? 'final'), ['ocr', 'grid', 'no_such_tool', 'final']);
});
