/**
 * Runs the real `bin/llava-lens.js` as a child process. Answers come from the deterministic fake
 * engine through the daemon's `LLAVA_LENS_ENGINE` test hook (the real-model e2e lives elsewhere).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fakeAnswerWords } from '../fakes/fakeEngine';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'llava-lens.js');
const FAKE_ENGINE = path.join(ROOT, 'out', 'test', 'fakes', 'fakeEngineModule.js');
const T = { timeout: 20_000 };

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI; `onStdout` sees stdout as it grows (to act at a point, e.g. send Ctrl-C). */
function run(args: string[], env: NodeJS.ProcessEnv = {}, onStdout?: (sofar: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, LLAVA_LENS_ENGINE: FAKE_ENGINE, LLAVA_LENS_MODEL: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
      onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

async function fixtures() {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-cli-'));
  const model = path.join(root, 'model');
  await fs.mkdir(path.join(model, 'onnx'), { recursive: true });
  await fs.writeFile(path.join(model, 'config.json'), JSON.stringify({ model_type: 'llava' }));
  const image = path.join(root, 'img.png');
  await fs.writeFile(image, Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64'));
  return { root, model, image, cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

test('--help for the CLI and each command', T, async () => {
  const [top, askHelp, demoHelp, mtmHelp, serveHelp, bare] = await Promise.all([
    run(['--help']),
    run(['ask', '--help']),
    run(['demo', '-h']),
    run(['make-test-model', '--help']),
    run(['serve', '--help']),
    run([]),
  ]);
  assert.equal(top.code, 0);
  for (const c of ['ask', 'demo', 'make-test-model', 'serve']) assert.match(top.stdout, new RegExp(`\\b${c}\\b`));
  assert.equal(askHelp.code, 0);
  for (const flag of ['--model', '--device', '--dtype', '--max-tokens', '--temperature', '--top-k', '--top-p', '--repetition-penalty', '--seed', '--stop', '--json']) {
    assert.ok(askHelp.stdout.includes(flag), `ask --help mentions ${flag}`);
  }
  assert.equal(demoHelp.code, 0);
  assert.match(mtmHelp.stdout, /--preset/);
  assert.match(serveHelp.stdout, /--stdio/);
  assert.equal(bare.code, 2);
  assert.match(bare.stdout, /Usage: llava-lens/);
});

test('usage errors exit with 2 and say what is wrong', T, async () => {
  const cases: Array<[string[], RegExp]> = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['ask', 'a.png'], /needs a question/],
    [['ask', '-q', 'what?'], /at least one image/],
    [['ask', 'a.png', '-q', 'x', '--max-tokens', 'ten'], /--max-tokens expects an integer; got "ten"/],
    [['ask', 'a.png', '-q', 'x', '--max-tokens', '0'], /--max-tokens must be an integer >= 1/],
    [['ask', 'a.png', '-q', 'x', '--temperature=-1'], /--temperature must be a number >= 0/],
    [['ask', 'a.png', '-q', 'x', '--top-p', '2'], /--top-p must be a number in \(0, 1\]/],
    [['ask', 'a.png', '-q', 'x', '--dtype', 'fp8'], /unknown precision "fp8"/],
    [['ask', 'a.png', '-q', 'x', '--dtype', 'text=fp16'], /"text" is not a model file/],
    [['ask', 'a.png', '-q', 'x', '--device', 'tpu'], /unknown device "tpu"/],
    [['ask', 'a.png', '-q', 'x', '--bogus'], /Unknown option '--bogus'/],
    [['serve'], /exactly one of --stdio, --node-ipc or --ws <port>/],
    [['serve', '--ws', '8080', '--host', '0.0.0.0'], /refusing to listen on 0\.0\.0\.0.*--allow-remote/],
    [['serve', '--stdio', '--model', 'm'], /--model only apply to --ws/],
    [['serve', '--ws', 'http'], /--ws expects an integer >= 0; got "http"/],
  ];
  const runs = await Promise.all(cases.map(([args]) => run(args)));
  for (const [i, [args, message]] of cases.entries()) {
    const r = runs[i];
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stdout, '', `${args.join(' ')} prints nothing on stdout`);
  }
});

test('make-test-model with a bad preset, variant or config is a clear usage error', T, async () => {
  const [bad, noPreset, variant, config] = await Promise.all([
    run(['make-test-model', path.join(os.tmpdir(), 'never-written'), '--preset', 'huge']),
    run(['make-test-model', '/tmp/x']),
    run(['make-test-model', '/tmp/x', '--preset', 'bench', '--variants', 'fp16,fp8']),
    run(['make-test-model', '/tmp/x', '--preset', 'bench', '--config', '{nope']),
  ]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown preset "huge"; use one of tiny-llava, tiny-onevision, bench/);
  assert.equal(noPreset.code, 2);
  assert.match(noPreset.stderr, /needs --preset/);
  assert.equal(variant.code, 2);
  assert.match(variant.stderr, /writes fp16, q4 variants, not "fp8"/);
  assert.equal(config.code, 2);
  assert.match(config.stderr, /--config is not valid JSON/);
  await assert.rejects(fs.stat(path.join(os.tmpdir(), 'never-written')));
});

test('ask streams the answer to stdout and timings to stderr', T, async () => {
  const fx = await fixtures();
  const r = await run(['ask', fx.image, '-q', 'what is it', '--model', fx.model]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, fakeAnswerWords([], 'what is it').join(' ') + '\n');
  assert.match(r.stderr, /Model: model \(llava, fp32\) on cpu/);
  assert.match(r.stderr, /eos · \d+ tokens/);
  assert.match(r.stderr, /Loading model 100%/);
  await fx.cleanup();
});

test('ask --json prints one JSON object; LLAVA_LENS_MODEL picks the model', T, async () => {
  const fx = await fixtures();
  const r = await run(['ask', fx.image, '-q', 'what is it', '--json', '--max-tokens', '2', '--stop', 'zzz'], { LLAVA_LENS_MODEL: fx.model });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(out).sort(), ['device', 'finishReason', 'model', 'text', 'timings', 'tokenIds']);
  assert.equal(out.finishReason, 'length');
  assert.equal(out.text, fakeAnswerWords([], 'what is it').slice(0, 2).join(' '));
  assert.equal((out.tokenIds as number[]).length, 2);
  assert.equal(out.model, 'model');
  await fx.cleanup();
});

test('ask errors: a missing model folder or image exits 1 with the reason', T, async () => {
  const fx = await fixtures();
  const [noModel, noImage] = await Promise.all([
    run(['ask', fx.image, '-q', 'x', '--model', path.join(fx.root, 'nope')]),
    run(['ask', path.join(fx.root, 'missing.png'), '-q', 'x', '--model', fx.model]),
  ]);
  assert.equal(noModel.code, 1);
  assert.match(noModel.stderr, /llava-lens ask: Model folder not found: .*nope/);
  assert.equal(noImage.code, 1);
  assert.match(noImage.stderr, /Image not found: .*missing\.png/);
  await fx.cleanup();
});

test('without --model the embedded default from the cache folder is used, with a plain notice', T, async () => {
  const fx = await fixtures();
  const cached = path.join(fx.root, 'cache', 'models', 'tiny-onevision');
  await fs.mkdir(path.join(cached, 'onnx'), { recursive: true });
  await fs.writeFile(path.join(cached, 'config.json'), JSON.stringify({ model_type: 'llava_onevision' }));
  const r = await run(['ask', fx.image, '-q', 'hi'], { LLAVA_LENS_CACHE: path.join(fx.root, 'cache') });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /tiny test model.*random weights/s);
  assert.match(r.stderr, /--model DIR or set LLAVA_LENS_MODEL/);
  assert.match(r.stderr, /Model: tiny-onevision/);
  await fx.cleanup();
});

test('Ctrl-C once cancels the answer and keeps what was generated', T, async () => {
  const fx = await fixtures();
  let sent = false;
  const r = await run(['ask', fx.image, '-q', 'what is it', '--model', fx.model], { LLAVA_LENS_FAKE_HOLD_AT: '2' }, (sofar, child) => {
    if (!sent && sofar.split(' ').length >= 2) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, fakeAnswerWords([], 'what is it').slice(0, 2).join(' ') + '\n');
  assert.match(r.stderr, /Cancelling/);
  assert.match(r.stderr, /cancelled · 2 tokens/);
  await fx.cleanup();
});

test('demo draws the sample diagram and prints a timings table', T, async () => {
  const fx = await fixtures();
  const out = path.join(fx.root, 'diagram.png');
  const r = await run(['demo', '--model', fx.model, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, fakeAnswerWords([], 'What does this diagram show?').join(' ') + '\n');
  assert.match(r.stderr, /Timings:\n\s+finish reason\s+eos/);
  const png = await fs.readFile(out);
  assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  await fx.cleanup();
});
