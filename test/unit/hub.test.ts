/**
 * The Hub module's pure parts: NO_PROXY matching and proxy variables, repository ids, which files
 * a precision choice selects, the progress meter (rate, ETA, throttling) and its one-line display.
 * The network parts are tested against a loopback fake Hub in test/e2e/hub-pull.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import { CATALOGUE, dtypeFlag, formatCatalogue } from '../../server/src/hub/catalogue';
import { checkRepoId, isSafeRepoPath, type HubFile, type RepoListing } from '../../server/src/hub/hubApi';
import { ProgressMeter, formatBytes, formatDuration, formatProgressLine, type PullProgress } from '../../server/src/hub/progress';
import { bypassesProxy, proxyFor, proxyFromEnv } from '../../server/src/hub/proxy';
import { availableDtypes, selectFiles } from '../../server/src/hub/select';

test('NO_PROXY: *, domains with and without a dot, host:port, IPv6', () => {
  const u = (s: string) => new URL(s);
  assert.equal(bypassesProxy(u('https://huggingface.co/x'), '*'), true);
  assert.equal(bypassesProxy(u('https://cdn-lfs.hf.co/x'), '.hf.co'), true);
  assert.equal(bypassesProxy(u('https://hf.co/x'), '.hf.co'), true);
  assert.equal(bypassesProxy(u('https://cdn-lfs.hf.co/x'), 'hf.co'), true);
  assert.equal(bypassesProxy(u('https://nothf.co/x'), 'hf.co'), false);
  assert.equal(bypassesProxy(u('http://mirror:8080/x'), 'mirror:8080'), true);
  assert.equal(bypassesProxy(u('http://mirror:9090/x'), 'mirror:8080'), false);
  assert.equal(bypassesProxy(u('https://mirror/x'), 'mirror:443'), true);
  assert.equal(bypassesProxy(u('http://[::1]:3000/x'), 'localhost, [::1]'), true);
  assert.equal(bypassesProxy(u('https://huggingface.co/x'), undefined), false);
});

test('proxy variables: lower case wins, ALL_PROXY fills in, https:// proxies are refused', () => {
  assert.deepEqual(proxyFromEnv({ HTTPS_PROXY: 'http://a:1', https_proxy: 'http://b:2', NO_PROXY: 'x' }), { https: 'http://b:2', noProxy: 'x' });
  assert.deepEqual(proxyFromEnv({ ALL_PROXY: 'http://c:3' }), { http: 'http://c:3', https: 'http://c:3' });
  assert.deepEqual(proxyFromEnv({}), {});
  assert.equal(proxyFor(new URL('https://huggingface.co/'), { https: 'proxy:3128' })?.href, 'http://proxy:3128/');
  assert.equal(proxyFor(new URL('https://huggingface.co/'), { https: 'http://p:1', noProxy: 'huggingface.co' }), undefined);
  assert.throws(() => proxyFor(new URL('https://huggingface.co/'), { https: 'https://p:1' }), /only http:\/\/ proxies/);
});

test('repository ids and listed paths', () => {
  for (const ok of ['llava-hf/llava-onevision-qwen2-0.5b-ov-hf', 'gpt2', 'a/b.c_d-e']) assert.doesNotThrow(() => checkRepoId(ok), ok);
  for (const bad of ['', '../x', 'a/../b', 'a/b/c', '/a', 'a/', 'a b/c', 'a/b.git']) {
    assert.throws(() => checkRepoId(bad), (e: { code: number }) => e.code === LensErrorCode.InvalidParams, bad);
  }
  assert.equal(isSafeRepoPath('onnx/a.onnx'), true);
  for (const bad of ['../a', 'onnx/../../a', '/etc/passwd', 'a//b', 'a\\b', '']) assert.equal(isSafeRepoPath(bad), false, bad);
});

function listing(paths: string[]): RepoListing {
  const files: HubFile[] = paths.map((p, i) => ({ path: p, size: 100 + i, ...(p.includes('.onnx') ? { sha256: 'a'.repeat(64) } : { blobId: 'b'.repeat(40) }) }));
  return { repo: 'o/r', revision: 'main', commit: 'c'.repeat(40), files };
}

const FULL = listing([
  'README.md', 'config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.json',
  'model.safetensors', 'merges.txt', 'video_processor/preprocessor_config.json', '../evil.json',
  'onnx/vision_encoder.onnx', 'onnx/vision_encoder_fp16.onnx', 'onnx/vision_encoder_quantized.onnx',
  'onnx/embed_tokens.onnx', 'onnx/embed_tokens_fp16.onnx',
  'onnx/decoder_model_merged.onnx', 'onnx/decoder_model_merged.onnx_data', 'onnx/decoder_model_merged.onnx_data_1',
  'onnx/decoder_model_merged.onnx_data_10', 'onnx/decoder_model_merged.onnx_data_2',
  'onnx/decoder_model_merged_fp16.onnx', 'onnx/decoder_model_merged_fp16.onnx_data', 'onnx/decoder_model_merged_q4.onnx',
]);

test('selection: metadata plus one graph per file with exactly its external data', () => {
  assert.deepEqual(availableDtypes(FULL.files).vision_encoder, ['fp32', 'fp16', 'quantized']);
  const fp32 = selectFiles(FULL, 'fp32');
  assert.deepEqual(fp32.files.map((f) => f.path), [
    'config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.json', 'README.md',
    'onnx/vision_encoder.onnx', 'onnx/embed_tokens.onnx',
    'onnx/decoder_model_merged.onnx', 'onnx/decoder_model_merged.onnx_data', 'onnx/decoder_model_merged.onnx_data_1',
    'onnx/decoder_model_merged.onnx_data_2', 'onnx/decoder_model_merged.onnx_data_10',
  ]);
  assert.equal(fp32.bytes, fp32.files.reduce((n, f) => n + f.size, 0));
  const mixed = selectFiles(FULL, { vision_encoder: 'q8' as never, decoder_model_merged: 'fp16' });
  assert.deepEqual(mixed.dtype, { vision_encoder: 'quantized', embed_tokens: 'fp16', decoder_model_merged: 'fp16' });
  assert.ok(mixed.files.some((f) => f.path === 'onnx/decoder_model_merged_fp16.onnx_data'));
  assert.ok(!mixed.files.some((f) => f.path === 'onnx/decoder_model_merged.onnx_data'));
  // No choice: the fallback (the catalogue's), then fp16 vision/embeddings and a q4 decoder.
  assert.deepEqual(selectFiles(FULL, undefined).dtype, { vision_encoder: 'fp16', embed_tokens: 'fp16', decoder_model_merged: 'q4' });
  assert.deepEqual(selectFiles(FULL, undefined, 'fp32').dtype, { vision_encoder: 'fp32', embed_tokens: 'fp32', decoder_model_merged: 'fp32' });
});

test('selection errors: a missing precision lists the present ones; a repository in another layout is named', () => {
  assert.throws(() => selectFiles(FULL, { embed_tokens: 'q4' }), (e: { code: number; message: string }) =>
    e.code === LensErrorCode.InvalidParams && /no embed_tokens in q4: it has fp32, fp16/.test(e.message));
  const pytorch = listing(['config.json', 'preprocessor_config.json', 'tokenizer.json', 'model.safetensors']);
  assert.throws(() => selectFiles(pytorch, undefined), (e: { code: number; message: string }) =>
    e.code === LensErrorCode.InvalidModelFolder && /has no onnx\/vision_encoder\*\.onnx, onnx\/embed_tokens\*\.onnx, onnx\/decoder_model_merged\*\.onnx/.test(e.message));
  const noTokenizer = listing(['config.json', 'preprocessor_config.json', 'onnx/vision_encoder.onnx', 'onnx/embed_tokens.onnx', 'onnx/decoder_model_merged.onnx']);
  assert.throws(() => selectFiles(noTokenizer, undefined), /has no tokenizer\.json/);
});

test('progress meter: rate over the window, ETA, throttled reports keep the latest', async () => {
  let now = 0;
  const seen: PullProgress[] = [];
  let lastArrived!: () => void;
  const arrived = new Promise<void>((resolve) => (lastArrived = resolve));
  const meter = new ProgressMeter((p) => (seen.push(p), p.bytesDone === 5000 && lastArrived()), () => now, 5000, 200);
  const base = { phase: 'downloading' as const, repo: 'o/r', file: 'f', fileIndex: 1, fileCount: 1, bytesTotal: 10_000 };
  meter.emit({ ...base, bytesDone: 0 }, true);
  for (let i = 1; i <= 10; i++) {
    now = i * 100;
    meter.transfer(500);
    meter.emit({ ...base, bytesDone: i * 500 });
  }
  // 5000 bytes between t=100 and t=1000 -> 4500 B over 0.9 s = 5000 B/s
  assert.equal(Math.round(meter.rate()), 5000);
  assert.ok(seen.length <= 7, `throttled: ${seen.length} reports`);
  const last = seen[seen.length - 1];
  assert.ok(last.etaSeconds !== undefined && last.etaSeconds >= 1 && last.etaSeconds <= 2, JSON.stringify(last));
  // The throttled last report arrives when the interval ends.
  await arrived;
  assert.equal(seen[seen.length - 1].bytesDone, 5000);
  meter.close();
});

test('progress line and units', () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1_234_567), '1.23 MB');
  assert.equal(formatBytes(327_000_000), '327 MB');
  assert.equal(formatDuration(7), '7s');
  assert.equal(formatDuration(125), '2m05s');
  assert.equal(formatDuration(3725), '1h02m');
  const line = formatProgressLine({ phase: 'downloading', repo: 'o/r', file: 'onnx/a.onnx', fileIndex: 2, fileCount: 5, bytesDone: 420e6, bytesTotal: 1e9, bytesPerSecond: 11.3e6, etaSeconds: 52 });
  assert.equal(line, ' 42% 420 MB / 1.00 GB · 11.3 MB/s · ETA 52s · onnx/a.onnx (2/5)');
});

test('catalogue: known repositories with a default precision and approximate sizes', () => {
  assert.ok(CATALOGUE.length >= 2);
  for (const e of CATALOGUE) {
    assert.match(e.repo, /^[\w.-]+\/[\w.-]+$/);
    assert.ok(e.variants.length > 0 && e.variants.every((v) => v.approxDownloadMB > 0 && v.approxMemoryMB > v.approxDownloadMB));
  }
  assert.equal(dtypeFlag({ vision_encoder: 'fp16', decoder_model_merged: 'q4' }), 'vision_encoder=fp16,decoder_model_merged=q4');
  assert.match(formatCatalogue(), /approximate/);
});
