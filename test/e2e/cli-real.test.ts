/**
 * `llava-lens ask` end to end with the real runtime: no --model, so the embedded default
 * (tiny-onevision) is generated on first use into the cache folder; the answer streams to stdout
 * through the daemon process; `--json` prints the result with timings.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { diagramPng } from '../fixtures/images';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'llava-lens.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-cli-real-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; chunks: number }> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, LLAVA_LENS_CACHE: path.join(tmp, 'cache') };
    delete env.LLAVA_LENS_MODEL;
    delete env.LLAVA_LENS_ENGINE;
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '', chunks = 0;
    child.stdout.setEncoding('utf8').on('data', (c: string) => ((stdout += c), chunks++));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, chunks }));
  });
}

test('ask streams from the embedded default (generated on first use); --json prints timings', { timeout: 120_000 }, async () => {
  const image = path.join(tmp, 'diagram.png');
  fs.writeFileSync(image, await diagramPng());

  const first = await run(['ask', image, '-q', 'What does this diagram show?', '--max-tokens', '24']);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /Generating the embedded test model/);
  assert.match(first.stderr, /random weights/);
  assert.ok(first.stdout.trim().length > 0, 'an answer on stdout');
  assert.ok(first.chunks > 1, `streamed in ${first.chunks} chunk(s)`);
  assert.ok(fs.existsSync(path.join(tmp, 'cache', 'models', 'tiny-onevision', 'onnx', 'decoder_model_merged.onnx')));

  const json = await run(['ask', image, '-q', 'What does this diagram show?', '--max-tokens', '24', '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.doesNotMatch(json.stderr, /Generating the embedded test model/, 'the cached model is reused');
  const r = JSON.parse(json.stdout);
  assert.deepEqual(Object.keys(r).sort(), ['device', 'finishReason', 'model', 'text', 'timings', 'tokenIds'].sort());
  assert.equal(r.device, 'cpu');
  assert.equal(r.model, 'tiny-onevision');
  assert.equal(r.text, first.stdout.replace(/\n$/, ''), 'greedy: the same answer both times');
  for (const k of ['decodeImageMs', 'preprocessMs', 'visionMs', 'prefillMs', 'firstTokenMs', 'totalMs', 'promptTokens', 'imageTokens', 'newTokens', 'decodeTokensPerSec']) {
    assert.equal(typeof r.timings[k], 'number', k);
  }
  assert.ok(r.timings.imageTokens > 0 && r.timings.newTokens === r.tokenIds.length);
});
