/**
 * Load-time graph tuning switched per load on the real daemon (real engine on its worker thread,
 * a generated tiny model): over stdio (`serve --stdio`, as the CLI and the extension run it) and
 * on a shared daemon (`serve --ws` with the operator's `--tuning-off`). `graphTuning: false` loads
 * the files as they are (no `tuning` in the result or the status); the default and `{}` report
 * what each file got; a bad value is 1030 and the daemon keeps serving.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LensClient } from '../../client/src/daemonClient';
import { LensErrorCode } from '../../common/errors';
import type { LensStatus, ModelInfo, TuningSummary } from '../../common/protocol';
import { makeTestModel } from '../../server/src/testmodel';
import { BIN, serveWs, type ServedDaemon } from './wsServe';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DAEMON = path.join(ROOT, 'out', 'server', 'src', 'daemon', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-tuning-'));
const model = path.join(tmp, 'tiny-llava');

function code(e: unknown): number {
  return (e as { code: number }).code;
}

function assertSummary(t: TuningSummary | undefined, what: string): void {
  assert.ok(t, `${what}: no summary`);
  assert.ok(Array.isArray(t.applied) && t.applied.every((a) => typeof a === 'string'), `${what}: applied`);
  assert.ok(Array.isArray(t.skipped) && t.skipped.every((a) => typeof a === 'string'), `${what}: skipped`);
  assert.equal(typeof t.cacheHit, 'boolean');
  assert.ok(Number.isInteger(t.ms) && t.ms >= 0);
}

/** The status after the latest load: ready, with this model. */
async function readyStatus(client: LensClient, statuses: LensStatus[], from: number): Promise<LensStatus> {
  for (let i = 0; i < 200; i++) {
    const s = statuses.slice(from).reverse().find((x) => x.state === 'ready' && x.model);
    if (s) return s;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no ready status after the load; last: ${JSON.stringify(client.lastStatus)}`);
}

before(async () => {
  await makeTestModel(model, { preset: 'tiny-llava', seed: 3 });
});

after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('graph tuning over stdio', { timeout: 120_000 }, () => {
  let client: LensClient;
  const statuses: LensStatus[] = [];
  const logs: string[] = [];

  before(async () => {
    client = LensClient.spawnStdio({ daemonPath: DAEMON });
    client.onStatus((s) => statuses.push(s));
    client.onLog((m) => logs.push(m.message));
    await client.initialize({ workspaceFolders: [{ uri: `file://${tmp}`, name: 'ws' }] });
  });
  after(async () => {
    await client?.shutdown();
  });

  test('graphTuning: false -> no tuning in the result or the status', async () => {
    const from = statuses.length;
    const info = await client.loadModel({ path: model, graphTuning: false });
    assert.equal(info.tuning, undefined);
    assert.ok(!('tuning' in info));
    const s = await readyStatus(client, statuses, from);
    assert.equal(s.model!.tuning, undefined);
    const r = await client.ask({ images: [], prompt: 'hi', maxTokens: 2 });
    assert.ok(r.tokenIds.length >= 1);
    assert.ok(logs.some((l) => /tiny-llava: graph tuning off/.test(l)), logs.join('\n'));
  });

  test('default and {} -> tuning.decoder_model_merged with applied/skipped, also in lens/status', async () => {
    for (const params of [{ path: model }, { path: model, graphTuning: {} }]) {
      const from = statuses.length;
      const info: ModelInfo = await client.loadModel(params);
      assertSummary(info.tuning?.decoder_model_merged, JSON.stringify(params));
      const s = await readyStatus(client, statuses, from);
      assert.deepEqual(s.model!.tuning, info.tuning, 'lens/status carries the same summary');
    }
    assert.ok(logs.some((l) => /tiny-llava: graph tuning decoder — /.test(l)), logs.join('\n'));
    const r = await client.ask({ images: [], prompt: 'hi', maxTokens: 2 });
    assert.ok(r.tokenIds.length >= 1);
  });

  test('every pass off by name -> the decoder loads as it is', async () => {
    const info = await client.loadModel({ path: model, graphTuning: { int8Activations: false, lastLogitsOnly: false, groupedAttention: false, int8Vision: false } });
    assert.deepEqual(info.tuning?.decoder_model_merged?.applied ?? [], []);
    assert.equal(info.tuning?.vision_encoder, undefined, 'int8Vision off: the vision encoder is not tuned');
  });

  test('an invalid graphTuning is 1030 naming the key; the daemon keeps serving', async () => {
    await assert.rejects(
      client.loadModel({ path: model, graphTuning: { int8Vision: false, speed: true } as never }),
      (e) => code(e) === LensErrorCode.InvalidParams && /"graphTuning\.speed" is not a graph tuning pass; use int8Activations, lastLogitsOnly, groupedAttention, int8Vision/.test(String(e)),
    );
    await assert.rejects(client.loadModel({ path: model, graphTuning: 'off' as never }), (e) => code(e) === LensErrorCode.InvalidParams);
    const r = await client.ask({ images: [], prompt: 'still there?', maxTokens: 2 });
    assert.ok(r.tokenIds.length >= 1);
    assert.equal(client.lastStatus?.state, 'ready');
  });
});

describe('graph tuning on a shared daemon (serve --ws)', { timeout: 120_000 }, () => {
  let daemon: ServedDaemon;

  before(async () => {
    daemon = await serveWs({ model, args: ['--tuning-off', 'int8Vision'] });
  });
  after(async () => {
    await daemon?.stop();
  });

  test("the operator's load reports and logs its tuning; a client's graphTuning wins for its load", async () => {
    assert.match(daemon.log(), /\[info\] loaded tiny-llava on cpu; graph tuning (decoder — |off)/);
    const client = await LensClient.connectWebSocket(daemon.url, { token: daemon.token });
    const statuses: LensStatus[] = [];
    client.onStatus((s) => statuses.push(s));
    try {
      const init = await client.initialize({ workspaceFolders: [{ uri: `file://${tmp}`, name: 'ws' }] });
      const loaded = init.lensCapabilities.modelLoaded;
      assertSummary(loaded?.tuning?.decoder_model_merged, 'operator load');
      assert.equal(loaded?.tuning?.vision_encoder, undefined, '--tuning-off int8Vision');
      const status = await readyStatus(client, statuses, 0);
      assert.deepEqual(status.model?.tuning, loaded?.tuning, 'lens/status on the shared daemon carries it too');
      const off = await client.loadModel({ path: model, graphTuning: false });
      assert.equal(off.tuning, undefined);
      const on = await client.loadModel({ path: model });
      assertSummary(on.tuning?.decoder_model_merged, 'client load without graphTuning');
      assert.equal(on.tuning?.vision_encoder, undefined, "the operator's --tuning-off is the default");
      await assert.rejects(client.loadModel({ path: model, graphTuning: null as never }), (e) => code(e) === LensErrorCode.InvalidParams);
      const r = await client.ask({ images: [], prompt: 'hi', maxTokens: 2 });
      assert.ok(r.tokenIds.length >= 1);
    } finally {
      await client.shutdown().catch(() => undefined);
    }
  });
});

describe('CLI flags', { timeout: 60_000 }, () => {
  test('an unknown pass is a usage error (exit 2) listing the valid ones', () => {
    for (const args of [['ask', 'x.png', '-q', 'hi', '--tuning-off', 'turbo'], ['serve', '--stdio', '--tuning-off', 'turbo']]) {
      const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /--tuning-off: unknown pass "turbo"; valid passes: int8Activations, lastLogitsOnly, groupedAttention, int8Vision\./);
    }
  });
});
