/**
 * LLaVA Lens inside a real VS Code (code-server + headless Chromium, as in vscode.e2e.test.ts)
 * with `llavaLens.remote.url` pointing at the real shared daemon (`llava-lens serve --ws`, a child
 * process started by test/e2e/wsServe.ts) answering with the deterministic fake engine.
 *
 * The daemon listens on a non-loopback address of this machine when there is one, so the
 * extension is a `remote` client to it, as on another machine: the daemon refuses any image path
 * from it (PathNotAllowed), so an answer about an image proves the image went as bytes.
 *
 * Scenarios, in order on one workbench: no token -> error with "Set Token…"; a wrong token ->
 * refused, "Set Token…" again; the right token -> connected to a daemon with no model, and the
 * extension sent nothing that makes it load one (no model path, no other local paths); the
 * daemon's operator loads a model and the status bar follows; a question from the explorer is
 * answered; the status bar tooltip names the URL; the daemon crashes and restarts at the same
 * URL, the extension reconnects and the next question is answered.
 * Screenshots and failure logs go to test-results/vscode-e2e-remote/.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Locator, Page } from 'playwright-core';
import type { LensClient } from '../../client/src/daemonClient';
import { LensErrorCode } from '../../common/errors';
import { FAKE_ENGINE_MODULE, lanAddress, serveWs, WS_TEST_TOKEN, type ServedDaemon, type ServeOptions } from '../e2e/wsServe';
import { fakeAnswerWords } from '../fakes/fakeEngine';
import { watchLastAnswer } from './inPage';
import { extensionLogs, startCodeServer, tail, type CodeServer } from './codeServer';
import { extensionId, REPO_ROOT, skipRequested, beginSuite, closeSession, removeTemp } from './requirements';
import { answerQuickInput, dismissPopups, explorerContextMenu, explorerItem, openWorkbench, screenshot, statusItem, webview, type Workbench } from './workbench';
import { DIAGRAM, makeWorkspace } from './workspace';

const RESULTS = path.join(REPO_ROOT, 'test-results', 'vscode-e2e-remote');
const EXT_ID = extensionId();
const SCENARIO_MS = 120_000;
const ANSWER_MS = 60_000;

/** Where the daemon listens: a non-loopback address when this machine has one (the extension is then `remote` to it). */
const HOST = lanAddress();

interface Run {
  workspace: string;
  /** The model folder on the daemon's machine (inside its model root). */
  model: string;
  server: CodeServer;
  wb: Workbench;
  /** How the daemon was started (to restart it at the same URL). */
  serve: ServeOptions;
}

let run: Run | undefined;
let tmpDir: string | undefined;
/** The daemon now (replaced when R4 restarts it). */
let daemon: ServedDaemon | undefined;
/** The operator's own client of the daemon (loads the model, checks what the daemon refuses). */
let operator: LensClient | undefined;

const suiteOptions = skipRequested() ? { skip: 'LLAVA_LENS_SKIP_VSCODE_E2E=1' } : {};

describe('LLaVA Lens in a real VS Code with a remote daemon over WebSocket', suiteOptions, () => {
  after(async () => {
    const r = run;
    run = undefined;
    await closeSession(r);
    operator?.dispose();
    await daemon?.stop().catch((e: unknown) => console.error(String(e)));
    removeTemp(tmpDir, 'vscode-e2e-remote');
  });

  test('R1 without a token the question fails with "Set Token…"; a wrong token is refused; the right one connects', { timeout: SCENARIO_MS * 2 }, async () => {
    beginSuite(RESULTS);
    const tmp = (tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llava-lens-e2e-remote-')));
    const models = path.join(tmp, 'models');
    const model = path.join(models, 'shared-tiny');
    fs.mkdirSync(path.join(model, 'onnx'), { recursive: true });
    fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify({ model_type: 'llava_onevision' }));
    // No model at start: had the extension sent a model path, the daemon would load it (and say so in its log).
    const serve: ServeOptions = {
      stateDir: path.join(tmp, 'daemon-state'),
      env: { LLAVA_LENS_ENGINE: FAKE_ENGINE_MODULE },
      args: ['--model-root', models],
      ...(HOST ? { host: HOST } : {}),
    };
    daemon = await serveWs(serve);
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
    run = { workspace, model, server, wb, serve };

    await scenario('R1-token', async (page) => {
      await explorerItem(page, DIAGRAM).waitFor({ state: 'visible', timeout: 30_000 });
      const turn = await askFromExplorer(page, 'What does this diagram show?');
      await turn.locator('.answer[data-state=error]').waitFor({ state: 'attached', timeout: 30_000 });
      await clickNotificationButton(page, /no token is set for the remote daemon at wss?:\/\/[^\s]+:\d+/, 'Set Token…');
      await answerQuickInput(page, 'not-the-token');
      await clickNotificationButton(page, /refused the token \(.*HTTP 401.*wrong token/, 'Set Token…');
      await answerQuickInput(page, WS_TEST_TOKEN);
      const d = needDaemon();
      await d.waitForLog(/client connected \((local|remote), /, 30_000);
      await expectText(statusItem(page, EXT_ID, 'llavaLens.status'), /no model/, 'the status bar item', 30_000);
      assert.doesNotMatch(d.log(), /initializationOptions|Loading /, 'a remote daemon gets no model path or other local settings from the extension');
      assert.equal(fs.existsSync(path.join(tmp, 'lens-cache')), false, 'no local daemon prepared a model');

      // The daemon's operator loads a model: every client's status follows.
      operator = await d.connect({ workspaceFolders: [workspace] });
      await operator.loadModel({ path: model });
      await expectText(statusItem(page, EXT_ID, 'llavaLens.status'), /cpu · shared-tiny/, 'the status bar item', 30_000);
    });
  });

  test('R2 a question is answered by the remote daemon; the image went as bytes', { timeout: SCENARIO_MS }, async () => {
    await scenario('R2-ask', async (page) => {
      const question = 'Which block is the encoder?';
      const turn = await askFromExplorer(page, question);
      const text = await waitForAnswer(turn);
      assert.equal(text.trim(), fakeAnswerWords([], question).join(' '));
      if (!HOST) {
        // A loopback client may send paths inside its workspace folders: the answer alone proves nothing about bytes.
        console.log('vscode-e2e-remote: R2: this machine has no non-loopback address, so the daemon treats the extension as local; not checking that the image went as bytes.');
        return;
      }
      // This daemon refuses image paths from a client connected like the extension (remote, with
      // the same workspace folder), so the answer above came from the image's bytes.
      const image = path.join(needRun().workspace, DIAGRAM);
      await assert.rejects(needOperator().ask({ prompt: question, images: [{ path: image }] }), (e: unknown) => (e as { code?: number }).code === LensErrorCode.PathNotAllowed);
      assert.match(needDaemon().log(), /client connected \(remote, /);
    });
  });

  test('R3 the status bar tooltip names the remote daemon', { timeout: SCENARIO_MS }, async () => {
    await scenario('R3-tooltip', async (page) => {
      const item = statusItem(page, EXT_ID, 'llavaLens.status');
      await item.hover();
      const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Remote daemon' });
      await expectText(hover.first(), `Remote daemon: ${needDaemon().url}`, 'the status bar tooltip', 15_000);
      await page.mouse.move(10, 10);
    });
  });

  test('R4 the daemon crashes and restarts at the same URL: the extension reconnects, and the next question is answered', { timeout: SCENARIO_MS }, async () => {
    await scenario('R4-reconnect', async (page) => {
      const r = needRun();
      const old = needDaemon();
      await old.kill9();
      operator?.dispose();
      operator = undefined;
      daemon = await serveWs({ ...r.serve, port: old.port, model: r.model });
      await daemon.waitForLog(/client connected \((local|remote), /, 45_000);
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

function needDaemon(): ServedDaemon {
  if (!daemon) throw new Error('the daemon is not running (scenario R1 failed)');
  return daemon;
}

function needOperator(): LensClient {
  if (!operator) throw new Error('the operator\'s client is not connected (scenario R1 failed)');
  return operator;
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
    if (daemon) parts.push(`--- the daemon's log ---\n${daemon.log().slice(-4000)}`);
    const report = parts.join('\n\n');
    const logFile = path.join(RESULTS, `${name}-failure.log`);
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
