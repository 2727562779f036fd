/**
 * `pullModel` and `llava-lens pull` against a loopback fake Hub (fakeHub.ts) serving a generated
 * tiny model (fp32 + fp16 graphs with external data): the full download loads in the real
 * OnnxEngine and answers; resume after a dropped connection (in one pull and across pulls);
 * checksum mismatch; gated repository with and without a token; 404; the token never reaches
 * the CDN host a file redirects to; cancel mid-file; the tree-API fallback; proxies (plain and
 * CONNECT); the CLI process.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import { scanModelRoots } from '../../server/src/daemon/modelScan';
import { HubErrorCode, MANIFEST, pullModel, type PullOptions, type PullProgress } from '../../server/src/hub';
import { OnnxEngine } from '../../server/src/runtime/engine';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng } from '../fixtures/images';
import { startFakeHub, startFakeProxy, type FakeHub } from './fakeHub';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'llava-lens.js');
const REPO = 'test-org/tiny-llava';
const GATED = 'test-org/gated-llava';
const TOKEN = 'hf_test_token_123';
const FP16_FILES = [
  'onnx/vision_encoder_fp16.onnx',
  'onnx/vision_encoder_fp16.onnx_data',
  'onnx/embed_tokens_fp16.onnx',
  'onnx/embed_tokens_fp16.onnx_data',
  'onnx/decoder_model_merged_fp16.onnx',
  'onnx/decoder_model_merged_fp16.onnx_data',
];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-hub-'));
const source = path.join(tmp, 'source');
const noHome = path.join(tmp, 'hf-home'); // HF_HOME without a token file
let hub: FakeHub;
let runs = 0;

before(async () => {
  await makeTestModel(source, { preset: 'tiny-llava', seed: 1, variants: ['fp16'], externalData: true });
  fs.mkdirSync(noHome);
  hub = await startFakeHub({ repos: { [REPO]: { dir: source }, [GATED]: { dir: source, gated: true } }, token: TOKEN, cdn: true });
});
after(async () => {
  await hub?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh models folder. */
function modelsDir(): string {
  return fs.mkdtempSync(path.join(tmp, `models-${++runs}-`));
}

/** pullModel against the fake hub with an isolated environment (no token, no proxy). */
function pull(o: Partial<PullOptions> & { modelsDir: string }, on: FakeHub = hub): ReturnType<typeof pullModel> {
  return pullModel({ repo: REPO, dtype: 'fp16', endpoint: on.url, env: { HF_HOME: noHome }, retryDelayMs: 0, ...o });
}

const same = (a: string, b: string) => fs.readFileSync(a).equals(fs.readFileSync(b));
const code = (n: number) => (e: unknown) => (e as { code?: number }).code === n;
const requestsFor = (h: FakeHub, file: string) => h.requests.filter((r) => r.url.includes(`/resolve/`) && r.url.endsWith(file));

describe('pullModel', () => {
  test('full download: only the fp16 files, verified, and the folder loads and answers in the real engine', async () => {
    const dir = modelsDir();
    const seen: PullProgress[] = [];
    const r = await pull({ modelsDir: dir, onProgress: (p) => seen.push(p) });
    assert.equal(r.path, path.join(dir, 'test-org', 'tiny-llava'));
    assert.equal(r.commit, hub.commitOf(REPO));
    assert.deepEqual(r.dtype, { vision_encoder: 'fp16', embed_tokens: 'fp16', decoder_model_merged: 'fp16' });
    const onnx = fs.readdirSync(path.join(r.path, 'onnx')).map((f) => `onnx/${f}`).sort();
    assert.deepEqual(onnx, [...FP16_FILES].sort(), 'no fp32 graph, no .part left');
    for (const f of [...FP16_FILES, 'config.json', 'tokenizer.json', 'preprocessor_config.json']) assert.ok(same(path.join(source, f), path.join(r.path, f)), f);
    assert.equal(r.bytes, r.downloadedBytes);
    assert.equal(JSON.parse(fs.readFileSync(path.join(r.path, MANIFEST), 'utf8')).commit, r.commit);
    assert.deepEqual(fs.readdirSync(path.join(dir, '.partial')), [], 'assembly folder and lock are gone');

    // progress: listing, per-file, bytes up to the total, done
    assert.equal(seen[0].phase, 'listing');
    const last = seen[seen.length - 1];
    assert.equal(last.phase, 'done');
    assert.equal(last.bytesDone, r.bytes);
    assert.equal(last.bytesTotal, r.bytes);
    const downloading = seen.filter((p) => p.phase === 'downloading');
    assert.ok(downloading.some((p) => p.file === 'onnx/decoder_model_merged_fp16.onnx_data'));
    assert.ok(downloading.every((p, i) => i === 0 || p.bytesDone >= downloading[i - 1].bytesDone), 'bytes never go back');

    const engine = new OnnxEngine();
    const info = await engine.load(r.path, {}, () => undefined, new AbortController().signal);
    assert.equal(info.dtype.decoder_model_merged, 'fp16');
    const answer = await engine.ask(
      { images: [{ bytes: await diagramPng() }], prompt: 'Describe.', options: { maxTokens: 4, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [] } },
      () => undefined,
      new AbortController().signal,
    );
    assert.equal(answer.tokenIds.length, 4);
    await engine.unload();

    // Pulling again downloads nothing; pulling fp32 keeps the fp16 files beside it.
    const again = await pull({ modelsDir: dir });
    assert.equal(again.downloadedBytes, 0);
    const fp32 = await pull({ modelsDir: dir, dtype: 'fp32' });
    assert.ok(fp32.downloadedBytes > 0);
    for (const f of [...FP16_FILES, 'onnx/decoder_model_merged.onnx', 'onnx/decoder_model_merged.onnx_data']) assert.ok(fs.existsSync(path.join(r.path, f)), f);
    const manifest = JSON.parse(fs.readFileSync(path.join(r.path, MANIFEST), 'utf8'));
    assert.ok(manifest.files.some((f: { path: string; commit?: string }) => f.path === FP16_FILES[0] && f.commit === r.commit), 'carried files keep their manifest entries');
  });

  test('the connection drops mid-file: the retry sends Range and the file is byte-identical', async () => {
    const file = 'onnx/decoder_model_merged_fp16.onnx_data';
    hub.faults.dropAfter = { file, bytes: 100_000, times: 1 };
    const before = hub.requests.length;
    const r = await pull({ modelsDir: modelsDir() });
    const hubGets = requestsFor(hub, file).filter((q) => hub.requests.indexOf(q) >= before);
    assert.equal(hubGets.length, 2, 'two attempts');
    assert.equal(hubGets[0].headers.range, undefined);
    const resumed = Number(/^bytes=(\d+)-$/.exec(String(hubGets[1].headers.range))?.[1]);
    assert.ok(resumed > 0 && resumed <= 100_000, `resumed at ${hubGets[1].headers.range}`);
    assert.ok(same(path.join(source, file), path.join(r.path, file)));
    assert.ok(r.downloadedBytes < r.bytes + 100_000);
  });

  test('a failed pull keeps the .part, and the next pull resumes it', async () => {
    const dir = modelsDir();
    const file = 'onnx/vision_encoder_fp16.onnx_data';
    hub.faults.dropAfter = { file, bytes: 50_000, times: 1 };
    await assert.rejects(pull({ modelsDir: dir, retries: 0 }), code(HubErrorCode.DownloadFailed));
    assert.equal(fs.existsSync(path.join(dir, 'test-org', 'tiny-llava')), false, 'no model folder');
    const [staging] = fs.readdirSync(path.join(dir, '.partial'));
    const part = path.join(dir, '.partial', staging, 'onnx', 'vision_encoder_fp16.onnx_data.part');
    assert.ok(fs.statSync(part).size > 0);
    const before = hub.requests.length;
    const r = await pull({ modelsDir: dir });
    const gets = requestsFor(hub, file).filter((q) => hub.requests.indexOf(q) >= before);
    assert.match(String(gets[0].headers.range), /^bytes=[1-9]\d*-$/);
    assert.ok(same(path.join(source, file), path.join(r.path, file)));
    assert.ok(r.downloadedBytes < r.bytes, 'the part was not fetched again');
  });

  test('checksum mismatch: an error naming the file, and no usable folder', async () => {
    const dir = modelsDir();
    hub.faults.corrupt = 'onnx/embed_tokens_fp16.onnx_data';
    try {
      await assert.rejects(pull({ modelsDir: dir }), (e: Error & { code: number }) => {
        assert.equal(e.code, HubErrorCode.DownloadCorrupt);
        assert.match(e.message, /embed_tokens_fp16\.onnx_data .*corrupt .*SHA-256/);
        return true;
      });
    } finally {
      hub.faults.corrupt = undefined;
    }
    assert.equal(fs.existsSync(path.join(dir, 'test-org', 'tiny-llava')), false);
    assert.deepEqual((await scanModelRoots([dir])).models, [], 'a model scan finds nothing');
    const [staging] = fs.readdirSync(path.join(dir, '.partial')).filter((n) => !n.endsWith('.lock'));
    assert.equal(fs.existsSync(path.join(dir, '.partial', staging, 'onnx', 'embed_tokens_fp16.onnx_data.part')), false, 'the corrupt part is deleted');

    // A file kept in git (not LFS) is checked by its git blob id.
    const dir2 = modelsDir();
    hub.faults.corrupt = 'tokenizer.json';
    try {
      await assert.rejects(pull({ modelsDir: dir2 }), /tokenizer\.json of test-org\/tiny-llava is corrupt \(git blob id/);
    } finally {
      hub.faults.corrupt = undefined;
    }
    assert.equal(fs.existsSync(path.join(dir2, 'test-org', 'tiny-llava')), false);
  });

  test('gated repository: 401 without a token, the file comes with HF_TOKEN, and the CDN never sees the token', async () => {
    await assert.rejects(pull({ repo: GATED, modelsDir: modelsDir() }), (e: Error & { code: number }) => {
      assert.equal(e.code, HubErrorCode.AccessDenied);
      assert.match(e.message, /gated.*HF_TOKEN/);
      return true;
    });
    const before = hub.requests.length;
    const r = await pull({ repo: GATED, modelsDir: modelsDir(), env: { HF_HOME: noHome, HF_TOKEN: TOKEN } });
    assert.ok(fs.existsSync(path.join(r.path, 'onnx', 'decoder_model_merged_fp16.onnx')));
    const mine = hub.requests.slice(before);
    const toHub = mine.filter((q) => q.server === 'hub');
    const toCdn = mine.filter((q) => q.server === 'cdn');
    assert.ok(toCdn.length >= FP16_FILES.length, 'the graphs came from the CDN host');
    assert.ok(toHub.every((q) => q.headers.authorization === `Bearer ${TOKEN}`), 'the Hub gets the token');
    assert.ok(toCdn.every((q) => q.headers.authorization === undefined), 'the CDN does not');
  });

  test('unknown repository: 404 with a clear message; a bad id is refused before any request', async () => {
    await assert.rejects(pull({ repo: 'test-org/nope', modelsDir: modelsDir() }), (e: Error & { code: number }) => {
      assert.equal(e.code, HubErrorCode.RepoNotFound);
      assert.match(e.message, /test-org\/nope not found on http:\/\/127\.0\.0\.1:\d+ .*check the id.*HF_TOKEN/);
      return true;
    });
    await assert.rejects(pull({ repo: '../etc', modelsDir: modelsDir() }), code(LensErrorCode.InvalidParams));
    await assert.rejects(pull({ revision: 'v9', modelsDir: modelsDir() }), /revision "v9" of test-org\/tiny-llava not found/);
  });

  test('a precision the repository lacks names the ones it has', async () => {
    await assert.rejects(pull({ dtype: { decoder_model_merged: 'q4' }, modelsDir: modelsDir() }), (e: Error & { code: number }) => {
      assert.equal(e.code, LensErrorCode.InvalidParams);
      assert.match(e.message, /no decoder_model_merged in q4: it has fp32, fp16/);
      return true;
    });
  });

  test('cancel mid-file: rejected as cancelled, no folder, the .part stays for the next pull', async () => {
    const dir = modelsDir();
    const ac = new AbortController();
    const file = 'onnx/decoder_model_merged_fp16.onnx_data';
    let stalled = false;
    let fileStart: number | undefined;
    hub.faults.stallAfter = { file, bytes: 60_000, onStall: () => (stalled = true) };
    // Cancel once the server has stalled and the client reports the 60 000 bytes it received.
    const onProgress = (p: PullProgress) => {
      if (p.file !== file) return;
      fileStart ??= p.bytesDone;
      if (stalled && p.bytesDone - fileStart >= 60_000) ac.abort();
    };
    await assert.rejects(pull({ modelsDir: dir, signal: ac.signal, onProgress }), (e: Error & { code: number }) => {
      assert.equal(e.code, LensErrorCode.Cancelled);
      assert.match(e.message, /cancelled; run it again to resume/);
      return true;
    });
    assert.equal(fs.existsSync(path.join(dir, 'test-org', 'tiny-llava')), false);
    assert.deepEqual((await scanModelRoots([dir])).models, []);
    const [staging] = fs.readdirSync(path.join(dir, '.partial'));
    assert.equal(fs.statSync(path.join(dir, '.partial', staging, `${file}.part`)).size, 60_000);
    const before = hub.requests.length;
    const r = await pull({ modelsDir: dir });
    assert.equal(requestsFor(hub, file).filter((q) => hub.requests.indexOf(q) >= before)[0].headers.range, 'bytes=60000-');
    assert.ok(same(path.join(source, file), path.join(r.path, file)));
  });

  test('a mirror whose listing has no sizes: the tree API (paged) fills them in', async () => {
    const mirror = await startFakeHub({ repos: { [REPO]: { dir: source } }, listingWithoutSizes: true });
    try {
      const r = await pull({ modelsDir: modelsDir() }, mirror);
      assert.ok(same(path.join(source, 'onnx/embed_tokens_fp16.onnx_data'), path.join(r.path, 'onnx/embed_tokens_fp16.onnx_data')));
      assert.ok(mirror.requests.filter((q) => q.url.includes('/tree/')).length > 1, 'several tree pages');
    } finally {
      await mirror.close();
    }
  });

  test('HTTP_PROXY: requests go through the proxy unless NO_PROXY names the host', async () => {
    const proxy = await startFakeProxy();
    try {
      await pull({ modelsDir: modelsDir(), env: { HF_HOME: noHome, HTTP_PROXY: proxy.url } });
      assert.ok(proxy.seen.some((l) => l.startsWith(`GET ${hub.url}/api/models/${REPO}/revision/main`)));
      assert.ok(proxy.seen.some((l) => l.startsWith('GET http://localhost:')), 'the CDN hop too');
      const n = proxy.seen.length;
      await pull({ modelsDir: modelsDir(), env: { HF_HOME: noHome, HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1,localhost' } });
      assert.equal(proxy.seen.length, n);
    } finally {
      await proxy.close();
    }
  });

  test('HTTPS_PROXY: an https Hub is reached through a CONNECT tunnel', async (t) => {
    let key: string;
    let cert: string;
    try {
      const kf = path.join(tmp, 'key.pem');
      const cf = path.join(tmp, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', kf, '-out', cf, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
      key = fs.readFileSync(kf, 'utf8');
      cert = fs.readFileSync(cf, 'utf8');
    } catch {
      t.skip('openssl is not available to make a test certificate');
      return;
    }
    const secure = await startFakeHub({ repos: { [REPO]: { dir: source } }, tls: { key, cert } });
    const proxy = await startFakeProxy();
    try {
      const r = await pull({ modelsDir: modelsDir(), env: { HF_HOME: noHome, HTTPS_PROXY: proxy.url }, ca: cert }, secure);
      assert.ok(fs.existsSync(path.join(r.path, 'onnx', 'embed_tokens_fp16.onnx')));
      assert.ok(proxy.seen.length > 0 && proxy.seen.every((l) => /^CONNECT localhost:\d+$/.test(l)), proxy.seen.join('\n'));
    } finally {
      await proxy.close();
      await secure.close();
    }
  });
});

describe('llava-lens pull (CLI process)', () => {
  function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(https?_proxy|all_proxy|no_proxy|hf_.*|llava_lens_.*)$/i.test(k)));
      const child = spawn(process.execPath, [BIN, ...args], { env: { ...clean, HF_HOME: noHome, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c, stdout, stderr }));
    });
  }

  test('pull prints progress on stderr and the folder on stdout', { timeout: 60_000 }, async () => {
    const dir = modelsDir();
    const r = await run(['pull', REPO, '--dtype', 'vision_encoder=fp16,embed_tokens=fp16,decoder_model_merged=fp32', '--models-dir', dir], { HF_ENDPOINT: hub.url });
    assert.equal(r.code, 0, r.stderr);
    const folder = path.join(dir, 'test-org', 'tiny-llava');
    assert.equal(r.stdout, `${folder}\n`);
    assert.match(r.stderr, /listing test-org\/tiny-llava/);
    assert.match(r.stderr, /\d+% [\d.]+ kB \/ [\d.]+ (kB|MB) .*onnx\/decoder_model_merged\.onnx_data \(\d+\/\d+\)/);
    assert.match(r.stderr, /decoder_model_merged=fp32.*downloaded/);
    assert.ok(fs.existsSync(path.join(folder, 'onnx', 'decoder_model_merged.onnx_data')));
    assert.ok(!fs.existsSync(path.join(folder, 'onnx', 'decoder_model_merged_fp16.onnx')));
  });

  test('pull --list prints the catalogue; errors and usage mistakes exit 1 and 2', { timeout: 60_000 }, async () => {
    const list = await run(['pull', '--list'], {});
    assert.equal(list.code, 0);
    assert.match(list.stdout, /llava-hf\/llava-onevision-qwen2-0\.5b-ov-hf/);
    assert.match(list.stdout, /approximate/);
    const missing = await run(['pull', 'test-org/nope', '--models-dir', modelsDir()], { HF_ENDPOINT: hub.url });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^llava-lens pull: test-org\/nope not found/m);
    const usage = await run(['pull', REPO, '--dtype', 'fp7'], {});
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /unknown precision "fp7"/);
  });
});
