/**
 * `lens/downloadModel` and `lens/listCatalogue` through `LensClient` (what the extension's
 * "Download Model…" calls) against the real daemon process (`serve --stdio`), with
 * `HF_ENDPOINT` at the loopback fake Hub (fakeHub.ts, LFS files redirected to its CDN host) and
 * `LLAVA_LENS_MODELS_DIR` at a temporary folder: work-done progress begin / reports with
 * percentages / end, the folder in `lens/listModels`, loaded by `lens/loadModel` in the real
 * engine and answering `lens/ask`; a cancel mid-file gives 1041 and no model folder.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CancellationTokenSource } from 'vscode-jsonrpc';
import { LensErrorCode } from '../../common/errors';
import { LensClient, type DownloadProgressEvent } from '../../client/src/daemonClient';
import { CATALOGUE } from '../../server/src/hub/catalogue';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng } from '../fixtures/images';
import { startFakeHub, type FakeHub } from './fakeHub';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DAEMON = path.join(ROOT, 'out', 'server', 'src', 'daemon', 'main.js');
const REPO = 'test-org/tiny-llava';
/** The same files under another name: its download is the one cancelled. */
const REPO_CANCELLED = 'test-org/tiny-llava-cancelled';
const T = { timeout: 120_000 };

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-download-'));
const source = path.join(tmp, 'source');
const modelsDir = path.join(tmp, 'models');
let hub: FakeHub;
let client: LensClient;
let stderr = '';

/** The test's environment, without the user's Hub token, token file or proxies. */
function daemonEnv(endpoint: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy']) delete env[k];
  return {
    ...env,
    HF_ENDPOINT: endpoint,
    HF_HOME: path.join(tmp, 'hf-home'),
    LLAVA_LENS_MODELS_DIR: modelsDir,
    LLAVA_LENS_CACHE: path.join(tmp, 'cache'),
    NO_PROXY: '127.0.0.1,localhost',
  };
}

const code = (n: number) => (e: unknown) => (e as { code?: number }).code === n;

before(async () => {
  await makeTestModel(source, { preset: 'tiny-llava', seed: 1, variants: ['fp16'], externalData: true });
  hub = await startFakeHub({ repos: { [REPO]: { dir: source }, [REPO_CANCELLED]: { dir: source } }, cdn: true });
  client = LensClient.spawnStdio({ daemonPath: DAEMON, env: daemonEnv(hub.url), onStderr: (c) => (stderr += c) });
  await client.initialize({});
});

after(async () => {
  await client?.shutdown();
  await hub?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('lens/downloadModel and lens/listCatalogue (real daemon, loopback Hub)', () => {
  test('lens/listCatalogue returns the built-in catalogue', T, async () => {
    const { models } = await client.listCatalogue();
    assert.deepEqual(models, JSON.parse(JSON.stringify(CATALOGUE)));
    assert.ok(models.length >= 1);
    for (const e of models) {
      assert.match(e.repo, /^[\w.-]+\/[\w.-]+$/);
      assert.ok(e.variants.length >= 1 && e.variants.every((v) => v.approxDownloadMB > 0 && v.approxMemoryMB > v.approxDownloadMB), e.repo);
    }
  });

  test('a download reports begin / percentages / end, lands in the models folder, lists, loads and answers', T, async () => {
    const events: DownloadProgressEvent[] = [];
    const r = await client.downloadModel({ repo: REPO, dtype: 'fp16' }, { onProgress: (p) => events.push(p) });
    assert.equal(r.path, path.join(modelsDir, 'test-org', 'tiny-llava'));
    assert.equal(r.repo, REPO);
    assert.equal(r.revision, 'main');
    assert.equal(r.commit, hub.commitOf(REPO));
    assert.ok(r.bytes > 100_000 && r.downloadedBytes === r.bytes, `${r.downloadedBytes} of ${r.bytes} bytes`);
    assert.ok(fs.existsSync(path.join(r.path, 'onnx', 'decoder_model_merged_fp16.onnx_data')));
    assert.ok(!fs.existsSync(path.join(r.path, 'onnx', 'decoder_model_merged.onnx')), 'only the fp16 graphs');

    // Progress: begin first, end last (after every report), percentages that never go back and reach 100.
    assert.equal(events[0].kind, 'begin');
    assert.equal(events[events.length - 1].kind, 'end');
    assert.match(events[events.length - 1].message ?? '', /Downloaded test-org\/tiny-llava/);
    const reports = events.filter((e) => e.kind === 'report');
    assert.ok(reports.length >= 2, `${reports.length} reports`);
    const percents = reports.flatMap((e) => (e.percent === undefined ? [] : [e.percent]));
    assert.ok(percents.every((p, i) => p >= 0 && p <= 100 && (i === 0 || p >= percents[i - 1])), percents.join(','));
    assert.equal(percents[percents.length - 1], 100);
    assert.ok(reports.some((e) => /\d+% .*B \/ .*B/.test(e.message ?? '')), 'a report names the bytes');

    // lens/listModels of a private daemon scans the models folder.
    const listed = (await client.listModels()).models.find((m) => m.path === r.path);
    assert.ok(listed, 'the download is listed');
    assert.equal(listed.modelType, 'llava');
    assert.deepEqual(listed.variants.decoder_model_merged, ['fp16']);

    const info = await client.loadModel({ path: r.path });
    assert.equal(info.path, r.path);
    assert.equal(info.dtype.decoder_model_merged, 'fp16');
    const answer = await client.ask({ images: [{ bytes: (await diagramPng()).toString('base64') }], prompt: 'What does this show?', maxTokens: 4, temperature: 0 });
    assert.equal(answer.tokenIds.length, 4);
    assert.ok(['length', 'eos'].includes(answer.finishReason));

    // Again: everything is there and verified; nothing comes over the network.
    const again = await client.downloadModel({ repo: REPO, dtype: 'fp16' });
    assert.equal(again.downloadedBytes, 0);
    assert.equal(again.path, r.path);
  });

  test('cancel mid-file: 1041, progress ends, no model folder, the daemon keeps serving', T, async () => {
    const cts = new CancellationTokenSource();
    const file = 'onnx/decoder_model_merged_fp16.onnx_data';
    hub.faults.stallAfter = { file, bytes: 60_000, onStall: () => cts.cancel() };
    const events: DownloadProgressEvent[] = [];
    await assert.rejects(client.downloadModel({ repo: REPO_CANCELLED }, { onProgress: (p) => events.push(p), token: cts.token }), (e: Error & { code?: number }) => {
      assert.equal(e.code, LensErrorCode.Cancelled, `${e.message}\n${stderr.slice(-2000)}`);
      return true;
    });
    assert.ok(cts.token.isCancellationRequested, 'the server stalled in that file');
    assert.equal(events[0]?.kind, 'begin');
    assert.equal(events[events.length - 1]?.kind, 'end');
    assert.equal(fs.existsSync(path.join(modelsDir, 'test-org', 'tiny-llava-cancelled')), false);
    const paths = (await client.listModels()).models.map((m) => m.path);
    assert.ok(!paths.some((p) => p.includes('tiny-llava-cancelled')), paths.join(', '));
    await assert.doesNotReject(client.listCatalogue());
  });

  test('a repository the Hub does not have: 1060 with the daemon\'s message', T, async () => {
    await assert.rejects(client.downloadModel({ repo: 'test-org/no-such-model' }), code(LensErrorCode.RepoNotFound));
  });
});
