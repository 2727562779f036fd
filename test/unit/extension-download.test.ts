/**
 * The pure pieces of the extension's "Download Model…" (client/src/downloadChoices.ts and the
 * download advice of errorAdvice.ts): quick pick items from the catalogue, precision items,
 * repository id checks, the progress increments, model list merging, and the advice for
 * 1060–1063 (Set HF_TOKEN, Retry) and for a remote daemon.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import type { ModelEntry } from '../../common/protocol';
import {
  approxSize,
  asDownloadRequest,
  catalogueItems,
  downloadedMessage,
  downloadedRepos,
  FEW_MODELS,
  mergeModelLists,
  normaliseRepoInput,
  ProgressIncrements,
  repoIdProblem,
  variantItems,
} from '../../client/src/downloadChoices';
import { advice, adviceForDaemonError, fixLabel } from '../../client/src/errorAdvice';
import { CATALOGUE } from '../../server/src/hub/catalogue';

const model = (p: string): ModelEntry => ({
  path: p,
  name: p.split('/').pop()!,
  modelType: 'llava_onevision',
  variants: { vision_encoder: ['fp16'], embed_tokens: ['fp16'], decoder_model_merged: ['q4'] },
});

test('catalogue items: title, repository, default variant with sizes, precisions; then "Other repository…"', () => {
  const items = catalogueItems(CATALOGUE);
  assert.equal(items.length, CATALOGUE.length + 1);
  const ov = items[0];
  assert.equal(ov.label, `$(cloud-download) ${CATALOGUE[0].title}`);
  assert.equal(ov.description, CATALOGUE[0].repo);
  assert.ok(ov.detail?.startsWith(`${CATALOGUE[0].variants[0].label}: ~`), ov.detail);
  assert.match(ov.detail ?? '', /~\d(\.\d)? GB download · ~\d(\.\d)? GB memory/);
  assert.match(ov.detail ?? '', new RegExp(`· ${CATALOGUE[0].variants.length} precisions$`));
  assert.deepEqual(ov.value, { kind: 'catalogue', entry: CATALOGUE[0] });
  const other = items[items.length - 1];
  assert.match(other.label, /Other repository…$/);
  assert.deepEqual(other.value, { kind: 'other' });

  // Already downloaded: a check mark and "downloaded".
  const marked = catalogueItems(CATALOGUE, new Set([CATALOGUE[1].repo.toLowerCase()]));
  assert.ok(marked[1].label.startsWith('$(check) '));
  assert.match(marked[1].description ?? '', /downloaded$/);
  assert.ok(marked[0].label.startsWith('$(cloud-download) '));

  // An entry with one variant says nothing about precisions; one without variants is left out.
  const one = { ...CATALOGUE[0], variants: [CATALOGUE[0].variants[0]] };
  assert.doesNotMatch(catalogueItems([one])[0].detail ?? '', /precisions/);
  assert.equal(catalogueItems([{ ...CATALOGUE[0], variants: [] }]).length, 1);
});

test('precision items: one per variant, the first marked default, with the --dtype form and sizes', () => {
  const entry = CATALOGUE[0];
  const items = variantItems(entry);
  assert.equal(items.length, entry.variants.length);
  assert.equal(items[0].label, entry.variants[0].label);
  assert.equal(items[0].description, 'default · vision_encoder=fp16,embed_tokens=fp16,decoder_model_merged=q4');
  assert.deepEqual(items[0].value, entry.variants[0].dtype);
  assert.ok(items.slice(1).every((i) => !i.description?.startsWith('default')));
  const fp32 = items.find((i) => i.value === 'fp32');
  assert.ok(fp32);
  assert.match(fp32.detail ?? '', /download · .* memory \(vision encoder size estimated\)$/);
  assert.equal(approxSize(870), '870 MB');
  assert.equal(approxSize(1410), '1.4 GB');
  assert.equal(approxSize(4), '0 MB');
});

test('repository ids: owner/name or a Hub address; the Hub naming rules', () => {
  for (const ok of ['llava-hf/llava-onevision-qwen2-0.5b-ov-hf', 'a/b', 'Org_1/model.v2', '  onnx-community/x  ']) assert.equal(repoIdProblem(ok), undefined, ok);
  assert.equal(normaliseRepoInput(' https://huggingface.co/llava-hf/llava-interleave-qwen-0.5b-hf/tree/main '), 'llava-hf/llava-interleave-qwen-0.5b-hf');
  assert.equal(normaliseRepoInput('https://hf-mirror.com/owner/name?x=1'), 'owner/name');
  assert.equal(normaliseRepoInput('/owner/name/'), 'owner/name');
  assert.equal(repoIdProblem('https://huggingface.co/owner/name'), undefined);
  const bad: Array<[string, RegExp]> = [
    ['', /Type a repository id/],
    ['   ', /Type a repository id/],
    ['justaname', /not owner\/name/],
    ['a/b/c', /not owner\/name/],
    ['a//b', /not owner\/name/],
    ['owner/na me', /only have letters/],
    ['owner/name!', /only have letters/],
    ['owner/..', /start or end/],
    ['-owner/name', /start or end/],
    ['owner/name.', /start or end/],
    ['owner/a--b', /"--" or "\.\."/],
    ['owner/a..b', /"--" or "\.\."/],
    [`owner/${'x'.repeat(97)}`, /97 characters long/],
  ];
  for (const [text, re] of bad) assert.match(repoIdProblem(text) ?? '(accepted)', re, JSON.stringify(text));

  // A Retry / Resume argument: kept as a request (without a stale progress token), or refused.
  assert.deepEqual(asDownloadRequest({ repo: 'a/b', dtype: 'q4', workDoneToken: 'old' }), { repo: 'a/b', dtype: 'q4' });
  assert.deepEqual(asDownloadRequest({ repo: 'a/b', dtype: { decoder_model_merged: 'q4' }, revision: 'main' }), { repo: 'a/b', dtype: { decoder_model_merged: 'q4' }, revision: 'main' });
  for (const v of [undefined, null, 'a/b', {}, { repo: 'nope' }, { repo: 'a/b', dtype: 7 }, { repo: 'a/..' }]) assert.equal(asDownloadRequest(v), undefined, JSON.stringify(v));
});

test('downloaded repositories come from model folders ending in owner/name; lists merge without duplicates', () => {
  const models = [model('/home/u/.cache/llava-lens/models/llava-hf/llava-onevision-qwen2-0.5b-ov-hf'), model('C:\\models\\Other\\thing')];
  assert.deepEqual([...downloadedRepos(models, CATALOGUE)], ['llava-hf/llava-onevision-qwen2-0.5b-ov-hf']);
  assert.deepEqual([...downloadedRepos([], CATALOGUE)], []);

  const a = model('/m/a');
  const b = model('/m/b');
  const tiny = model('/cache/models/tiny-onevision');
  assert.deepEqual(mergeModelLists([[a, tiny], [b, a]], ['/cache/models/tiny-onevision']), [a, b]);
  assert.deepEqual(mergeModelLists([]), []);
  assert.ok(FEW_MODELS >= 1);
});

test('progress increments: never negative, at most 100 in total, nothing without a percentage', () => {
  const inc = new ProgressIncrements();
  assert.equal(inc.next(undefined), 0);
  assert.equal(inc.next(0), 0);
  assert.equal(inc.next(10), 10);
  assert.equal(inc.next(35), 25);
  assert.equal(inc.next(30), 0, 'a lower percentage (a restart of the count) adds nothing');
  assert.equal(inc.next(Number.NaN), 0);
  assert.equal(inc.next(150), 65);
  assert.equal(inc.next(100), 0);
});

test('the closing message names the folder, the size and what was fetched', () => {
  const r = { path: '/m/o/n', repo: 'o/n', revision: 'main', commit: 'abcdef1234567890', bytes: 1_410_000_000, downloadedBytes: 700_000_000 };
  assert.equal(downloadedMessage(r), 'LLaVA Lens: o/n (1.41 GB, commit abcdef1) is in /m/o/n; 700 MB fetched.');
  assert.match(downloadedMessage({ ...r, downloadedBytes: 0 }), /all files were already there and verified\.$/);
});

test('download failures: the daemon\'s message with Set HF_TOKEN, Retry, the model page', () => {
  const params = { repo: 'owner/gated', dtype: 'q4' as const };
  const ctx = { params, endpoint: 'https://hf-mirror.com/' };

  const denied = adviceForDaemonError(LensErrorCode.AccessDenied, 'lens/downloadModel: access to owner/gated was refused (401).', ctx);
  assert.equal(denied.severity, 'error');
  assert.match(denied.message, /^LLaVA Lens: lens\/downloadModel: access to owner\/gated was refused \(401\)\. Set HF_TOKEN/);
  assert.match(denied.message, /huggingface-cli login/);
  assert.deepEqual(denied.actions, [
    { kind: 'openUrl', url: 'https://hf-mirror.com/owner/gated', label: 'Open Model Page' },
    { kind: 'downloadModel', label: 'Retry', params },
    { kind: 'showLogs' },
  ]);
  assert.deepEqual(denied.actions.map(fixLabel), ['Open Model Page', 'Retry', 'Show Logs']);

  const failed = adviceForDaemonError(LensErrorCode.DownloadFailed, 'the connection dropped after 4 retries.', ctx);
  assert.deepEqual(failed.actions.map(fixLabel), ['Retry', 'Show Logs']);
  assert.match(failed.message, /Retry resumes\.$/);
  assert.deepEqual(adviceForDaemonError(LensErrorCode.DownloadCorrupt, 'sha256 mismatch', ctx).actions.map(fixLabel), ['Retry', 'Show Logs']);

  const missing = adviceForDaemonError(LensErrorCode.RepoNotFound, 'owner/typo was not found.', ctx);
  assert.match(missing.message, /Check the repository id/);
  assert.deepEqual(missing.actions, [{ kind: 'downloadModel', label: 'Download Model…' }, { kind: 'showLogs' }]);

  // Not a layout the runtime reads, or no file in that precision: choose again.
  for (const c of [LensErrorCode.InvalidModelFolder, LensErrorCode.InvalidParams]) {
    assert.deepEqual(adviceForDaemonError(c, 'x', ctx).actions.map(fixLabel), ['Download Model…', 'Show Logs']);
  }
  // Without a download context the codes still get advice (no Retry, no page).
  assert.deepEqual(adviceForDaemonError(LensErrorCode.DownloadFailed, 'x').actions.map(fixLabel), ['Show Logs']);
  assert.deepEqual(adviceForDaemonError(LensErrorCode.AccessDenied, 'x').actions.map(fixLabel), ['Show Logs']);
  assert.equal(adviceForDaemonError(LensErrorCode.InvalidModelFolder, 'x').actions[0].kind, 'selectModel', 'loads keep their advice');

  const cancelled = advice.downloadCancelled(params);
  assert.equal(cancelled.severity, 'info');
  assert.match(cancelled.message, /cancelled.*resumes/);
  assert.deepEqual(cancelled.actions, [{ kind: 'downloadModel', label: 'Resume', params }]);

  const remote = advice.downloadOnRemote('wss://gpu-box:7700');
  assert.match(remote.message, /shared daemon at wss:\/\/gpu-box:7700.*operator.*llava-lens pull/);
  assert.deepEqual(remote.actions.map(fixLabel), ['Select Model…']);
});
