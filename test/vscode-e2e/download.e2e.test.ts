/**
 * "LLaVA Lens: Download Model…" inside a real VS Code (code-server + headless Chromium, as in
 * vscode.e2e.test.ts), against the loopback fake Hugging Face Hub (test/e2e/fakeHub.ts, LFS files
 * redirected to its CDN host) serving a generated tiny model. code-server gets `HF_ENDPOINT` (the
 * fake Hub), `LLAVA_LENS_MODELS_DIR` (a temporary folder), its own `HF_HOME` and no Hub token or
 * proxies; it hands its environment to the extension host, and that to the daemon it spawns.
 *
 * Scenarios, in order on one workbench:
 * - D1: the palette's "Download Model…" → "Other repository…" → the fake repository id (a
 *   repository outside the catalogue gets no precision pick: the daemon picks one) → the
 *   cancellable progress notification counts up to 100 % (the Hub is throttled so that it is
 *   seen) → the success message → "Load Now" → the status bar names the downloaded folder, and a
 *   question about the workspace's diagram is answered by that model.
 * - D2: a repository the Hub does not have → an error notification with the daemon's message
 *   (RepoNotFound, 1060) and its advice; no folder.
 * - D3: a download stalled mid-file by the Hub → the notification's Cancel → "was cancelled" with
 *   "Resume", no model folder; Resume continues the file with a Range request and completes.
 * Screenshots and failure logs go to test-results/vscode-e2e-download/.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Locator, Page } from 'playwright-core';
import { makeTestModel } from '../../server/src/testmodel';
import { startFakeHub, type FakeHub } from '../e2e/fakeHub';
import { recordedNotifications, recordNotifications, watchLastAnswer, type SeenNotification } from './inPage';
import { extensionLogs, startCodeServer, tail, type CodeServer } from './codeServer';
import { extensionId, REPO_ROOT, skipRequested, beginSuite, closeSession, removeTemp } from './requirements';
import { dismissPopups, escapeRe, explorerContextMenu, explorerItem, answerQuickInput, openWorkbench, runCommand, screenshot, statusItem, webview, type Workbench } from './workbench';
import { DIAGRAM, makeWorkspace } from './workspace';

const RESULTS = path.join(REPO_ROOT, 'test-results', 'vscode-e2e-download');
const EXT_ID = extensionId();
const SCENARIO_MS = 90_000;
const ANSWER_MS = 60_000;

const REPO = 'test-org/tiny-llava';
/** The same files under another name: the download D3 cancels and resumes. */
const REPO_CANCELLED = 'test-org/tiny-llava-cancelled';
const REPO_MISSING = 'test-org/no-such-model';
/** The file the Hub stalls in for D3 (an LFS file of the precision the daemon picks), and where. */
const STALL = { file: 'onnx/decoder_model_merged_fp16.onnx_data', bytes: 60_000 };
const DOWNLOAD_COMMAND = 'LLaVA Lens: Download Model…';

interface Run {
  workspace: string;
  models: string;
  server: CodeServer;
  wb: Workbench;
}

let run: Run | undefined;
let tmpDir: string | undefined;
let hub: FakeHub | undefined;

const suiteOptions = skipRequested() ? { skip: 'LLAVA_LENS_SKIP_VSCODE_E2E=1' } : {};

describe('LLaVA Lens in a real VS Code: Download Model… from a loopback Hub', suiteOptions, () => {
  after(async () => {
    const r = run;
    run = undefined;
    await closeSession(r);
    await hub?.close().catch((e: unknown) => console.error(String(e)));
    removeTemp(tmpDir, 'vscode-e2e-download');
  });

  test('D1 Download Model… → Other repository… → progress to 100 % → Load Now → loaded and answering', { timeout: SCENARIO_MS * 2 }, async () => {
    beginSuite(RESULTS);
    const t0 = Date.now();
    const tmp = (tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llava-lens-e2e-download-')));
    const source = path.join(tmp, 'hub-source');
    await makeTestModel(source, { preset: 'tiny-llava', seed: 1, variants: ['fp16'], externalData: true });
    const h = (hub = await startFakeHub({ repos: { [REPO]: { dir: source }, [REPO_CANCELLED]: { dir: source } }, cdn: true }));
    const models = path.join(tmp, 'models');
    const workspace = path.join(tmp, 'workspace');
    await makeWorkspace(workspace);
    const noProxy = '127.0.0.1,localhost';
    const server = await startCodeServer({
      stateDir: path.join(tmp, 'state'),
      workspace,
      settings: { 'llavaLens.device': 'cpu', 'llavaLens.maxNewTokens': 24 },
      env: {
        LLAVA_LENS_CACHE: path.join(tmp, 'lens-cache'),
        LLAVA_LENS_MODELS_DIR: models,
        HF_ENDPOINT: h.url,
        // No token of the user's (an empty variable counts as unset), nor their token file or proxies.
        HF_HOME: path.join(tmp, 'hf-home'),
        HF_TOKEN: '',
        HUGGING_FACE_HUB_TOKEN: '',
        HF_TOKEN_PATH: '',
        HTTP_PROXY: '',
        HTTPS_PROXY: '',
        ALL_PROXY: '',
        http_proxy: '',
        https_proxy: '',
        all_proxy: '',
        NO_PROXY: noProxy,
        no_proxy: noProxy,
      },
    });
    let wb: Workbench;
    try {
      wb = await openWorkbench(server.url);
    } catch (err) {
      await server.stop();
      throw new Error(`the workbench did not open at ${server.url}: ${String(err)}\ncode-server log:\n${tail(server.logFile)}`);
    }
    run = { workspace, models, server, wb };
    note(`D1: the workbench was up ${Date.now() - t0} ms after the test started`);

    await scenario('D1-download-load-ask', async (page) => {
      await explorerItem(page, DIAGRAM).waitFor({ state: 'visible', timeout: 30_000 });
      // Slow enough that the progress notification shows several states (about 2 s in all).
      h.faults.throttle = { chunkBytes: 8 * 1024, delayMs: 25 };
      await page.evaluate(recordNotifications, `downloading ${REPO}`);
      const t1 = Date.now();
      await downloadOther(page, REPO);
      const done = await notification(page, new RegExp(`LLaVA Lens: ${escapeRe(REPO)} \\(.*, commit ${h.commitOf(REPO).slice(0, 7)}\\) is in ${escapeRe(path.join(models, ...REPO.split('/')))}; .* fetched\\.`), ANSWER_MS);
      note(`D1: downloaded ${Date.now() - t1} ms after the command (daemon start included)`);
      h.faults.throttle = undefined;

      // The progress notification: its title, the daemon's line of bytes, rising to 100 %.
      const seen = (await page.evaluate(recordedNotifications)) as SeenNotification[];
      note(`D1: progress states seen: ${seen.map((s) => `${percentOf(s) ?? '?'}%`).join(' ')}`);
      const progress = seen.filter((s) => /% .*B \/ .*B/.test(s.text));
      assert.ok(progress.length >= 2, `the progress notification was seen in ${progress.length} state(s) with a byte count:\n${fmtSeen(seen)}`);
      assert.ok(seen.some((s) => s.text.includes('Cancel')), `the progress notification had no Cancel button:\n${fmtSeen(seen)}`);
      const percents = seen.flatMap((s) => (percentOf(s) === undefined ? [] : [percentOf(s) as number]));
      assert.ok(percents.every((p, i) => i === 0 || p >= percents[i - 1]), `the progress went back: ${percents.join(', ')}`);
      assert.equal(Math.max(...percents), 100, `the progress notification never reached 100 %:\n${fmtSeen(seen)}`);
      await noToast(page, `downloading ${REPO}`, 'the progress notification stayed open after the download');

      const folder = path.join(models, ...REPO.split('/'));
      assert.ok(fs.existsSync(path.join(folder, STALL.file)), `the model folder ${folder} lacks ${STALL.file}`);
      await done.locator('.monaco-button', { hasText: 'Load Now' }).first().click();
      await expectText(statusItem(page, EXT_ID, 'llavaLens.status'), /\bcpu · tiny-llava\b/, 'the status bar item', ANSWER_MS);
      assert.equal(JSON.parse(fs.readFileSync(path.join(workspace, '.vscode', 'settings.json'), 'utf8'))['llavaLens.model'], folder, 'Load Now set llavaLens.model');

      const turn = await askFromExplorer(page, 'What does this diagram show?');
      const text = await waitForAnswer(turn);
      assert.ok(text.trim().length > 0, 'the answer of the downloaded model is empty');
      note(`D1: done ${Date.now() - t1} ms after the command`);
    });
  });

  test('D2 a repository the Hub does not have: the daemon\'s RepoNotFound message and its advice', { timeout: SCENARIO_MS }, async () => {
    await scenario('D2-repo-not-found', async (page) => {
      const h = needHub();
      await runCommand(page, 'Notifications: Clear All Notifications');
      await downloadOther(page, REPO_MISSING);
      // The daemon's message (hubApi.ts) and what errorAdvice.ts adds for RepoNotFound (1060) only.
      const toast = await notification(
        page,
        new RegExp(`LLaVA Lens: ${escapeRe(REPO_MISSING)} not found on ${escapeRe(h.url)} \\(HTTP 404 RepoNotFound: Repository not found\\): check the id.* Check the repository id \\(owner/name`),
        30_000,
      );
      assert.ok(await toast.locator('.codicon-error').count() > 0, 'the notification is not an error');
      for (const label of ['Download Model…', 'Show Logs']) assert.equal(await toast.locator('.monaco-button', { hasText: label }).count(), 1, `no "${label}" button`);
      assert.ok(h.requests.some((r) => r.url.startsWith(`/api/models/${REPO_MISSING}/`)), 'the daemon did not ask the loopback Hub');
      assert.equal(fs.existsSync(path.join(needRun().models, ...REPO_MISSING.split('/'))), false, 'a folder was made for the missing repository');
    });
  });

  test('D3 Cancel on the progress notification mid-file: "cancelled" with Resume, no folder; Resume completes it', { timeout: SCENARIO_MS }, async () => {
    await scenario('D3-cancel-resume', async (page) => {
      const h = needHub();
      const folder = path.join(needRun().models, ...REPO_CANCELLED.split('/'));
      await runCommand(page, 'Notifications: Clear All Notifications');
      let stalled!: () => void;
      const stall = new Promise<void>((resolve) => (stalled = resolve));
      h.faults.stallAfter = { ...STALL, onStall: () => stalled() };
      await downloadOther(page, REPO_CANCELLED);
      await bounded(stall, 30_000, `the Hub never served ${STALL.file} (the download did not get that far)`);
      const progress = await notification(page, `downloading ${REPO_CANCELLED}`, 15_000);
      await progress.locator('.monaco-button', { hasText: 'Cancel' }).first().click();
      const cancelled = await notification(page, `the download of ${REPO_CANCELLED} was cancelled`, 30_000);
      assert.equal(fs.existsSync(folder), false, `the cancelled download left ${folder}`);
      await noToast(page, `downloading ${REPO_CANCELLED}`, 'the progress notification stayed open after Cancel');

      const before = h.requests.length;
      await cancelled.locator('.monaco-button', { hasText: 'Resume' }).first().click();
      await notification(page, new RegExp(`LLaVA Lens: ${escapeRe(REPO_CANCELLED)} \\(.*\\) is in ${escapeRe(folder)}; .* fetched\\.`), 30_000);
      await noToast(page, `downloading ${REPO_CANCELLED}`, 'the progress notification stayed open after the resumed download');
      assert.ok(fs.existsSync(path.join(folder, STALL.file)), `the resumed download lacks ${STALL.file}`);
      const ranges = h.requests.slice(before).map((r) => String(r.headers.range ?? '')).filter((r) => /^bytes=[1-9]\d*-$/.test(r));
      assert.ok(ranges.length > 0, 'Resume asked for no file from where it stopped (no Range request)');
    });
  });
});

function needRun(): Run {
  if (!run) throw new Error('the workbench is not up (scenario D1 failed)');
  return run;
}

function needHub(): FakeHub {
  if (!hub) throw new Error('the fake Hub is not running (scenario D1 failed)');
  return hub;
}

/** Appends a line to the results' run.log (timings). */
function note(line: string): void {
  fs.appendFileSync(path.join(RESULTS, 'run.log'), `${new Date().toISOString()} ${line}\n`);
}

async function scenario(name: string, body: (page: Page) => Promise<void>): Promise<void> {
  const r = needRun();
  const t0 = Date.now();
  try {
    await dismissPopups(r.wb.page);
    await body(r.wb.page);
    await screenshot(r.wb.page, path.join(RESULTS, `${name}.png`));
    note(`${name}: passed in ${Date.now() - t0} ms`);
  } catch (err) {
    const shot = await screenshot(r.wb.page, path.join(RESULTS, `${name}-FAILED.png`));
    const parts = [`--- code-server log ---\n${tail(r.server.logFile, 4000)}`];
    for (const f of extensionLogs(r.server.userDataDir)) parts.push(`--- ${path.relative(r.server.userDataDir, f)} ---\n${tail(f, 4000)}`);
    parts.push(`--- browser console (errors, warnings) ---\n${r.wb.consoleLog.slice(-40).join('\n')}`);
    if (hub) parts.push(`--- the fake Hub's last requests ---\n${hub.requests.slice(-20).map((q) => `${q.server} ${q.method} ${q.url}${q.headers.range ? ` (${String(q.headers.range)})` : ''}`).join('\n')}`);
    const seen = (await r.wb.page.evaluate(recordedNotifications).catch(() => [])) as SeenNotification[];
    if (seen.length) parts.push(`--- notification states recorded ---\n${fmtSeen(seen)}`);
    const report = parts.join('\n\n');
    const logFile = path.join(RESULTS, `${name}-failure.log`);
    fs.writeFileSync(logFile, `${err instanceof Error ? err.stack : String(err)}\n\n${report}`);
    note(`${name}: FAILED after ${Date.now() - t0} ms`);
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}\n(screenshot: ${shot ?? 'none'}; logs: ${logFile})\n${report.slice(-6000)}`, { cause: err });
  }
}

const quickInput = (page: Page): Locator => page.locator('.quick-input-widget');

/**
 * "Download Model…" from the palette, "Other repository…" in its first pick, `repo` in the input
 * box. The first pick waits for the daemon (started on first use) to list its catalogue.
 */
async function downloadOther(page: Page, repo: string): Promise<void> {
  await runListedCommand(page, DOWNLOAD_COMMAND, 45_000);
  const other = quickInput(page).locator('.monaco-list-row').filter({ hasText: 'Other repository…' }).first();
  await other.waitFor({ state: 'visible', timeout: ANSWER_MS });
  assert.match(await quickInput(page).locator('.quick-input-title').innerText(), /download a model from the Hugging Face Hub/);
  await other.click();
  await quickInput(page).locator('.quick-input-title', { hasText: 'download from a Hugging Face repository' }).waitFor({ state: 'visible', timeout: 15_000 });
  await answerQuickInput(page, repo);
}

/**
 * `runCommand`, opening the palette again while the command is not listed yet: right after
 * start-up the workbench may not have read the extension's contributions (it activates on its
 * commands, not at start-up), and an open palette does not pick them up.
 */
async function runListedCommand(page: Page, title: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await runCommand(page, title, 5000);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await page.keyboard.press('Escape');
      await quickInput(page).waitFor({ state: 'hidden', timeout: 5000 });
    }
  }
}

/** The (newest) notification toast whose text matches `message`, once it is visible. */
async function notification(page: Page, message: string | RegExp, timeoutMs: number): Promise<Locator> {
  const toast = page.locator('.notifications-toasts .notification-list-item').filter({ hasText: message }).last();
  try {
    await toast.waitFor({ state: 'visible', timeout: timeoutMs });
  } catch {
    const shown = await page.locator('.notifications-toasts .notification-list-item').allInnerTexts().catch(() => []);
    throw new Error(`no notification ${String(message)} within ${timeoutMs} ms; the toasts read:\n${shown.map((s) => `  ${s.replace(/\s+/g, ' ')}`).join('\n') || '  (none)'}`);
  }
  return toast;
}

/**
 * Waits until no toast contains `text`: a progress notification stays up to 800 ms after its task
 * ended (VS Code shows progress at least that long).
 */
async function noToast(page: Page, text: string, message: string): Promise<void> {
  const toasts = page.locator('.notifications-toasts .notification-list-item').filter({ hasText: text });
  await waitUntil(async () => (await toasts.count()) === 0, 5000, message);
}

/** The percentage of a recorded progress state: its text's "NN%", else its bar's width. */
function percentOf(s: SeenNotification): number | undefined {
  const m = /(\d+)% /.exec(s.text);
  if (m) return Number(m[1]);
  return s.bar !== undefined ? Math.round(parseFloat(s.bar)) : undefined;
}

const fmtSeen = (seen: SeenNotification[]) => seen.map((s) => `  ${s.text.slice(0, 200)}${s.bar ? ` [bar ${s.bar}]` : ''}`).join('\n') || '  (nothing)';

/** "Ask About Image…" on the diagram from the explorer; returns the new turn in the panel. */
async function askFromExplorer(page: Page, question: string): Promise<Locator> {
  const turns = webview(page, EXT_ID).locator('#conversation > .turn');
  const before = await turns.count().catch(() => 0);
  await explorerContextMenu(page, DIAGRAM, 'Ask About Image…');
  await answerQuickInput(page, question);
  await waitUntil(async () => (await turns.count()) > before, 30_000, 'no new turn in the panel');
  return turns.last();
}

async function waitForAnswer(turn: Locator): Promise<string> {
  await turn.locator('.answer').waitFor({ state: 'attached', timeout: ANSWER_MS });
  const seen = await turn.evaluate(watchLastAnswer, ANSWER_MS);
  if (seen.timedOut) throw new Error(`the answer did not finish within ${ANSWER_MS} ms (data-state=${seen.state})`);
  if (seen.state !== 'done') throw new Error(`the answer ended with data-state=${seen.state}: ${seen.text.slice(0, 500)}`);
  return seen.text;
}

async function expectText(loc: Locator, want: string | RegExp, what: string, timeoutMs: number): Promise<void> {
  let last = '';
  await waitUntil(
    async () => {
      last = await loc.innerText({ timeout: timeoutMs }).catch(() => '');
      return typeof want === 'string' ? last.includes(want) : want.test(last);
    },
    timeoutMs,
    () => `${what} does not show ${String(want)}; it reads: ${JSON.stringify(last.slice(0, 300))}`,
  );
}

/** Re-checks a condition until it holds or the bound passes (short re-checks of UI state). */
async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number, message: string | (() => string)): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(typeof message === 'string' ? message : message());
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** `p`, or an error saying `message` after `ms`. */
async function bounded<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
