/**
 * LLaVA Lens inside a real VS Code (code-server + headless Chromium, as in vscode.e2e.test.ts)
 * with `llavaLens.remote.url` pointing at a shared daemon over WebSocket: the in-process stand-in
 * for `serve --ws` of test/e2e/wsTestDaemon.ts (real daemon handlers, fake engine with a model
 * already loaded), so the test sees every message the extension sends.
 *
 * Scenarios, in order on one workbench: no token -> error with "Set Token…"; a wrong token ->
 * refused, "Set Token…" again; the right token -> connected, no local daemon, no model path sent;
 * a question from the explorer is answered and its image arrived as bytes; the status bar tooltip
 * names the URL; a dropped connection is reconnected and the next question answered.
 * Screenshots and failure logs go to test-results/vscode-e2e-remote/.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Locator, Page } from 'playwright-core';
import { loadedEngine, startTestDaemon, TEST_TOKEN, type TestDaemon } from '../e2e/wsTestDaemon';
import { fakeAnswerWords } from '../fakes/fakeEngine';
import { watchLastAnswer } from './inPage';
import { extensionLogs, startCodeServer, tail, type CodeServer } from './codeServer';
import { extensionId, missingRequirements, REPO_ROOT, skipRequested } from './requirements';
import { answerQuickInput, dismissPopups, explorerContextMenu, explorerItem, openWorkbench, screenshot, statusItem, webview, type Workbench } from './workbench';
import { DIAGRAM, makeWorkspace } from './workspace';

const RESULTS = path.join(REPO_ROOT, 'test-results', 'vscode-e2e-remote');
const EXT_ID = extensionId();
const SCENARIO_MS = 120_000;
const ANSWER_MS = 60_000;

interface Run {
  workspace: string;
  server: CodeServer;
  wb: Workbench;
  daemon: TestDaemon;
}

let run: Run | undefined;
let tmpDir: string | undefined;
let daemon: TestDaemon | undefined;

const suiteOptions = skipRequested() ? { skip: 'LLAVA_LENS_SKIP_VSCODE_E2E=1' } : {};

describe('LLaVA Lens in a real VS Code with a remote daemon over WebSocket', suiteOptions, () => {
  after(async () => {
    const r = run;
    run = undefined;
    if (r) {
      await r.wb.close().catch(() => undefined);
      await r.server.stop();
    }
    await daemon?.close();
    if (tmpDir === undefined) return;
    if (process.env.LLAVA_LENS_E2E_KEEP === '1') console.log(`vscode-e2e-remote: kept ${tmpDir}`);
    else fs.rmSync(tmpDir, { recursive: true, force: true });
  });

  test('R1 without a token the question fails with "Set Token…"; a wrong token is refused; the right one connects', { timeout: SCENARIO_MS * 2 }, async () => {
    const missing = missingRequirements();
    if (missing.length > 0) assert.fail(`the VS Code end-to-end suite cannot run:\n  ${missing.join('\n  ')}`);
    fs.rmSync(RESULTS, { recursive: true, force: true });
    fs.mkdirSync(RESULTS, { recursive: true });
    const tmp = (tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llava-lens-e2e-remote-')));
    const model = path.join(tmp, 'models', 'shared-tiny');
    fs.mkdirSync(path.join(model, 'onnx'), { recursive: true });
    fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify({ model_type: 'llava_onevision' }));
    daemon = await startTestDaemon(await loadedEngine(model));
    const workspace = path.join(tmp, 'workspace');
    await makeWorkspace(workspace);
    const server = await startCodeServer({
      stateDir: path.join(tmp, 'state'),
      workspace,
      settings: { 'llavaLens.remote.url': daemon.url },
      // A local daemon would generate its model here; the test checks that nothing appears.
      env: { LLAVA_LENS_CACHE: path.join(tmp, 'lens-cache') },
    });
    let wb: Workbench;
    try {
      wb = await openWorkbench(server.url);
    } catch (err) {
      await server.stop();
      throw new Error(`the workbench did not open at ${server.url}: ${String(err)}\ncode-server log:\n${tail(server.logFile)}`);
    }
    run = { workspace, server, wb, daemon };

    await scenario('R1-token', async (page) => {
      await explorerItem(page, DIAGRAM).waitFor({ state: 'visible', timeout: 30_000 });
      const turn = await askFromExplorer(page, 'What does this diagram show?');
      await turn.locator('.answer[data-state=error]').waitFor({ state: 'attached', timeout: 30_000 });
      await clickNotificationButton(page, /no token is set for the remote daemon at ws:\/\/127\.0\.0\.1:\d+/, 'Set Token…');
      await answerQuickInput(page, 'not-the-token');
      await clickNotificationButton(page, /refused the token \(.*HTTP 401.*wrong or missing token/, 'Set Token…');
      await answerQuickInput(page, TEST_TOKEN);
      await expectText(statusItem(page, EXT_ID, 'llavaLens.status'), /cpu · shared-tiny/, 'the status bar item', 30_000);
      const init = needRun().daemon.frames.find((f) => f.method === 'initialize');
      assert.deepEqual(init?.params?.initializationOptions, {}, 'a remote daemon gets no model path or other local paths');
      assert.equal(fs.existsSync(path.join(tmp, 'lens-cache')), false, 'no local daemon prepared a model');
    });
  });

  test('R2 a question is answered by the remote daemon; the image arrives as bytes', { timeout: SCENARIO_MS }, async () => {
    await scenario('R2-ask', async (page) => {
      const question = 'Which block is the encoder?';
      const turn = await askFromExplorer(page, question);
      const text = await waitForAnswer(turn);
      assert.equal(text.trim(), fakeAnswerWords([], question).join(' '));
      const r = needRun();
      const ask = r.daemon.frames.filter((f) => f.method === 'lens/ask').at(-1);
      const png = fs.readFileSync(path.join(r.workspace, DIAGRAM));
      assert.deepEqual(ask?.params?.images, [{ bytes: png.toString('base64'), mimeType: 'image/png' }], 'the image went as bytes, not as a path');
    });
  });

  test('R3 the status bar tooltip names the remote daemon', { timeout: SCENARIO_MS }, async () => {
    await scenario('R3-tooltip', async (page) => {
      const item = statusItem(page, EXT_ID, 'llavaLens.status');
      await item.hover();
      const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Remote daemon' });
      await expectText(hover.first(), `Remote daemon: ${needRun().daemon.url}`, 'the status bar tooltip', 15_000);
      await page.mouse.move(10, 10);
    });
  });

  test('R4 a dropped connection is reconnected, and the next question answered', { timeout: SCENARIO_MS }, async () => {
    await scenario('R4-reconnect', async (page) => {
      const r = needRun();
      const before = r.daemon.connections;
      for (const s of r.daemon.sockets) s.terminate();
      await waitUntil(async () => r.daemon.connections > before, 30_000, 'the extension did not reconnect');
      await expectText(statusItem(page, EXT_ID, 'llavaLens.status'), /cpu · shared-tiny/, 'the status bar item', 30_000);
      const question = 'And after reconnecting?';
      const turn = await askFromExplorer(page, question);
      assert.equal((await waitForAnswer(turn)).trim(), fakeAnswerWords([], question).join(' '));
    });
  });
});

function needRun(): Run {
  if (!run) throw new Error('the workbench is not up (scenario R1 failed)');
  return run;
}

async function scenario(name: string, body: (page: Page) => Promise<void>): Promise<void> {
  const r = needRun();
  try {
    await dismissPopups(r.wb.page);
    await body(r.wb.page);
    await screenshot(r.wb.page, path.join(RESULTS, `${name}.png`));
  } catch (err) {
    const shot = await screenshot(r.wb.page, path.join(RESULTS, `${name}-FAILED.png`));
    const parts = [`--- code-server log ---\n${tail(r.server.logFile, 4000)}`];
    for (const f of extensionLogs(r.server.userDataDir)) parts.push(`--- ${path.relative(r.server.userDataDir, f)} ---\n${tail(f, 4000)}`);
    parts.push(`--- messages the daemon got (first 2000 characters of each) ---\n${r.daemon.frames.map((f) => JSON.stringify(f).slice(0, 2000)).join('\n')}`);
    const report = parts.join('\n\n');
    const logFile = path.join(RESULTS, `${name}-failure.log`);
    fs.writeFileSync(path.join(RESULTS, `${name}-frames.json`), JSON.stringify(r.daemon.frames, null, 1));
    fs.writeFileSync(logFile, `${err instanceof Error ? err.stack : String(err)}\n\n${report}`);
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}\n(screenshot: ${shot ?? 'none'}; logs: ${logFile})\n${report.slice(-6000)}`, { cause: err });
  }
}

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

/** Waits for a notification whose message matches `message` and clicks its button `label`. */
async function clickNotificationButton(page: Page, message: RegExp, label: string): Promise<void> {
  const toast = page.locator('.notifications-toasts .notification-list-item').filter({ hasText: message }).last();
  await toast.waitFor({ state: 'visible', timeout: 30_000 });
  await toast.locator('.monaco-button', { hasText: label }).first().click();
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
