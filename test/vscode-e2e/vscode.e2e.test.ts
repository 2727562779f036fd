/**
 * LLaVA Lens inside a real VS Code: code-server with the repository installed as an unpacked
 * extension, driven by playwright-core in headless Chromium. Each scenario goes through the UI and
 * saves a screenshot under test-results/vscode-e2e/ (NN-name.png; NN-name-FAILED.png plus
 * NN-name-failure.log with code-server's log, the extension's output channels and the browser
 * console when it fails).
 *
 * Needs what `test/vscode-e2e/setup.sh` installs; without it the suite fails and says so, unless
 * LLAVA_LENS_SKIP_VSCODE_E2E=1. LLAVA_LENS_E2E_KEEP=1 keeps the run's temporary folder
 * (workspace, user data, logs) and prints where it is.
 *
 * The scenarios run in order and share one workbench; 03 (a follow-up) needs the conversation of
 * 02 and fails at once, saying so, when 02 did not get an answer.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { FrameLocator, Locator, Page } from 'playwright-core';
import { imageLoaded, isClosedDetails, stopWhenStreaming, watchLastAnswer } from './inPage';
import { extensionLogs, startCodeServer, tail, type CodeServer } from './codeServer';
import { EXTENSION_DIR, extensionId, REPO_ROOT, skipRequested, beginSuite, closeSession, removeTemp } from './requirements';
import {
  answerQuickInput,
  dismissPopups,
  escapeRe,
  explorerContextMenu,
  explorerItem,
  goToLine,
  openFile,
  openWorkbench,
  quickFix,
  runCommand,
  screenshot,
  statusItem,
  webview,
  type Workbench,
} from './workbench';
import {
  ALT_TEXT_RE,
  DIAGRAM,
  ENCODER_BOX,
  makeWorkspace,
  MARKDOWN,
  MARKDOWN_IMAGE_LINE,
  MARKDOWN_TEXT,
  SCREENSHOT,
} from './workspace';

const RESULTS = path.join(REPO_ROOT, 'test-results', 'vscode-e2e');
const EXT_ID = extensionId();
const STATUS_ITEM_ID = 'llavaLens.status';

/** Bounds on the waits (ms). The first answer includes starting the daemon and generating the default model. */
const FIRST_ANSWER_MS = 120_000;
const ANSWER_MS = 60_000;
const SCENARIO_MS = 180_000;

/**
 * The tool-card scenario: "Extract Text" from the explorer runs the daemon's real `ocr` tool
 * (PP-OCRv4) on the diagram; the panel shows its tool card, the text as the answer, and a
 * labelled box over each line. The "Encoder" label's box must lie inside the Encoder rectangle.
 */
const TOOL_SCENARIO = {
  image: DIAGRAM,
  menuItem: 'Extract Text',
  settings: {} as Record<string, unknown>,
  tool: 'ocr',
  label: 'Encoder',
  within: ENCODER_BOX,
};

/** Extension settings for the run: a long limit so that Stop has an answer to cancel. */
const EXTENSION_SETTINGS: Record<string, unknown> = {
  'llavaLens.maxNewTokens': 2000,
  'llavaLens.device': 'cpu',
  ...TOOL_SCENARIO.settings,
};

interface Run {
  workspace: string;
  server: CodeServer;
  wb: Workbench;
}

let run: Run | undefined;
/** This run's temporary folder (set before anything can fail, so that it is always removed). */
let tmpDir: string | undefined;
/** Set once scenario 02 opened the panel with an answer; scenario 03 continues that conversation. */
let panelOpen = false;

const suiteOptions = skipRequested() ? { skip: 'LLAVA_LENS_SKIP_VSCODE_E2E=1' } : {};

describe('LLaVA Lens in a real VS Code (code-server + headless Chromium)', suiteOptions, () => {
  after(async () => {
    const r = run;
    run = undefined;
    await closeSession(r);
    removeTemp(tmpDir, 'vscode-e2e');
  });

  test('01 workbench opens a workspace with images and Markdown', { timeout: SCENARIO_MS }, async () => {
    beginSuite(RESULTS);

    const tmp = (tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llava-lens-e2e-')));
    const workspace = path.join(tmp, 'workspace');
    await makeWorkspace(workspace);
    const t0 = Date.now();
    const server = await startCodeServer({
      stateDir: path.join(tmp, 'state'),
      workspace,
      settings: EXTENSION_SETTINGS,
      env: {
        // The embedded default model is generated into this run's own cache, not the user's.
        LLAVA_LENS_CACHE: path.join(tmp, 'lens-cache'),
      },
    });
    const t1 = Date.now();
    let wb: Workbench;
    try {
      wb = await openWorkbench(server.url);
    } catch (err) {
      await server.stop();
      throw new Error(`the workbench did not open at ${server.url}: ${String(err)}\ncode-server log:\n${tail(server.logFile)}`);
    }
    run = { workspace, server, wb };
    note(`01: code-server answered in ${t1 - t0} ms; the workbench was up ${Date.now() - t1} ms later`);
    await scenario('01-workbench', async (page) => {
      for (const f of [DIAGRAM, SCREENSHOT, MARKDOWN]) await explorerItem(page, f).waitFor({ state: 'visible', timeout: 30_000 });
      // Info and warning toasts (e.g. "using the embedded test model") sit over the panel's buttons
      // in the bottom right; Do Not Disturb keeps them in the notification centre (errors still show).
      await runCommand(page, 'Notifications: Toggle Do Not Disturb Mode');
      note(`01: explorer ready ${Date.now() - t1} ms after code-server answered`);
    });
  });

  test('02 explorer "Ask About Image…" on the diagram streams an answer into the panel', { timeout: SCENARIO_MS }, async () => {
    await scenario('02-ask-about-image', async (page) => {
      const question = 'What does this diagram show?';
      const turn = await askFromExplorer(page, DIAGRAM, 'Ask About Image…', question);
      // Watch the answer from the moment the turn exists, so that its streaming is seen.
      const answer = waitForAnswer(turn, FIRST_ANSWER_MS);
      answer.catch(() => undefined); // awaited below; other checks may fail first
      await expectText(turn.locator('.question'), question);
      const { streamed, text } = await answer;
      panelOpen = true; // the conversation exists: scenario 03 can go on even if a check below fails
      assert.ok(streamed, 'the answer was never seen streaming (data-state=streaming with text growing over at least two updates) before it was done');
      assert.ok(text.trim().length > 0, 'the finished answer is empty');
      await turn.locator('.timings').waitFor({ state: 'visible', timeout: 10_000 });
      const thumb = turn.locator('.thumbs img.thumb').first();
      await thumb.waitFor({ state: 'visible', timeout: 10_000 });
      await waitForImageLoaded(thumb, 10_000);
      await thumb.scrollIntoViewIfNeeded(); // the screenshot shows the image, the question and the answer's start
    });
  });

  test('03 a follow-up question is answered in the same conversation', { timeout: SCENARIO_MS }, async () => {
    await scenario('03-follow-up', async (page) => {
      const view = needPanel(page);
      const turns = view.locator('#conversation > .turn');
      const before = await turns.count();
      const firstQuestion = await turns.first().locator('.question').innerText();
      const question = 'Which block comes after the encoder?';
      await ask(view, question);
      await waitForCount(turns, before + 1, 30_000);
      const turn = turns.last();
      await expectText(turn.locator('.question'), question);
      const { text } = await waitForAnswer(turn, ANSWER_MS);
      assert.ok(text.trim().length > 0, 'the follow-up answer is empty');
      assert.equal(await turns.first().locator('.question').innerText(), firstQuestion, 'the first turn is no longer in the conversation');
      await turn.locator('.question').scrollIntoViewIfNeeded(); // for the screenshot
    });
  });

  test('04 Stop cancels a long answer', { timeout: SCENARIO_MS }, async () => {
    await scenario('04-stop', async (page) => {
      // A new conversation (explorer entry points start one), so that the whole context is free
      // for a long answer: the tiny model is fast, and a long answer is a few seconds at most.
      // The same image as before: a new image changes the webview's resource roots, which reloads
      // it, and an answer shorter than the reload would not be seen streaming.
      const turn = await askFromExplorer(page, DIAGRAM, 'Ask About Image…', 'Describe every part of this diagram in as much detail as you can.');
      const view = panel(page);
      const answer = turn.locator('.answer');
      const t0 = Date.now();
      const seen = await turn.evaluate(stopWhenStreaming, { minChars: 2, graceMs: 300, ms: FIRST_ANSWER_MS });
      assert.ok(seen.clicked, `the answer was never seen streaming with enabled Stop (data-state=${seen.state}, ${seen.chars} characters)`);
      const t1 = Date.now();
      await answer.and(view.locator('[data-state=cancelled], [data-state=done], [data-state=error]')).waitFor({ timeout: 30_000 });
      const state = await answer.getAttribute('data-state');
      note(`04: Stop clicked ${t1 - t0} ms after the turn appeared, at ${seen.chars} chars; ended ${state} after ${Date.now() - t1} ms more with ${(await answer.innerText()).trim().length} chars; ${await turn.locator('.timings').innerText().catch(() => '')}`);
      assert.equal(state, 'cancelled', `after Stop the answer's data-state is ${state}, expected cancelled (maxNewTokens is ${EXTENSION_SETTINGS['llavaLens.maxNewTokens']}; did the answer end before the click?)`);
      if (seen.chars > 1) assert.ok((await answer.innerText()).trim().length > 0, 'the text streamed before Stop was not kept');
    });
  });

  test('05 a tool call shows a tool card and draws its box over the image', { timeout: SCENARIO_MS }, async () => {
    await scenario('05-tool-card', async (page) => {
      const turn = await askFromExplorer(page, TOOL_SCENARIO.image, TOOL_SCENARIO.menuItem);
      const view = panel(page);
      const answer = await waitForAnswer(turn, ANSWER_MS);
      assert.match(answer.text, /Request pipeline[\s\S]*Encoder[\s\S]*Projector/, 'the extracted text, in reading order');
      const card = turn.locator('.tool-card').first();
      assert.ok((await turn.locator('.tool-card').count()) > 0, 'the answer finished without a tool card');
      await expectText(card, TOOL_SCENARIO.tool);
      // Collapsible: open it if it is closed, and the arguments / result show.
      if (await card.evaluate(isClosedDetails)) await card.locator('summary').first().click();
      await expectText(card, TOOL_SCENARIO.label);

      // The box: on the image of this turn if the turn has a stage, else on the panel's stage.
      const stage = (await turn.locator('.image-stage').count()) > 0 ? turn.locator('.image-stage').first() : view.locator('.image-stage').last();
      const box = stage.locator('.overlay-box').filter({ hasText: TOOL_SCENARIO.label }).first();
      await box.waitFor({ state: 'visible', timeout: 10_000 });
      const img = stage.locator('img').first();
      await stage.scrollIntoViewIfNeeded(); // for the screenshot
      await waitForImageLoaded(img, 10_000);
      const [b, i] = [await box.boundingBox(), await img.boundingBox()];
      assert.ok(b && i && i.width > 0 && i.height > 0, 'the box or the image has no layout box');
      const rel = [(b.x - i.x) / i.width, (b.y - i.y) / i.height, (b.x + b.width - i.x) / i.width, (b.y + b.height - i.y) / i.height];
      const tol = 0.02;
      const [w0, w1, w2, w3] = TOOL_SCENARIO.within;
      assert.ok(
        rel[0] >= w0 - tol && rel[1] >= w1 - tol && rel[2] <= w2 + tol && rel[3] <= w3 + tol && rel[2] > rel[0] && rel[3] > rel[1],
        `the label's box is drawn at ${fmt(rel)} of the image, expected inside the Encoder rectangle ${fmt(TOOL_SCENARIO.within)} (±${tol})`,
      );
    });
  });

  test('06 "Generate Alt Text" on a Markdown image reference writes alt text', { timeout: SCENARIO_MS }, async () => {
    await scenario('06-alt-text', async (page) => {
      const file = path.join(needRun().workspace, MARKDOWN);
      await openFile(page, MARKDOWN);
      // The extension marks an image without alt text with a Hint diagnostic (three dots); its
      // quick fix is "Generate Alt Text". Wait for the hint, then ask for quick fixes there.
      await page.locator('.editor-instance .monaco-editor .squiggly-hint').first().waitFor({ state: 'attached', timeout: 30_000 });
      await goToLine(page, MARKDOWN_IMAGE_LINE + 1, 4);
      const attempts = await quickFix(page, 'Generate Alt Text');
      note(`06: the Quick Fix menu opened on attempt ${attempts}`);
      // The edit lands in the editor (dirty) or, if the extension saves, on disk.
      const dirty = page.locator('.tab.active.dirty');
      await waitUntil(async () => (await dirty.count()) > 0 || ALT_TEXT_RE.test(fs.readFileSync(file, 'utf8')), ANSWER_MS, 'the Markdown file was not edited');
      if ((await dirty.count()) > 0) {
        await page.keyboard.press('Control+S');
        await dirty.waitFor({ state: 'hidden', timeout: 15_000 });
      }
      const text = fs.readFileSync(file, 'utf8');
      const m = ALT_TEXT_RE.exec(text);
      assert.ok(m, `no alt text on the image reference; the file reads:\n${text}`);
      assert.doesNotMatch(m[1], /[\u0000-\u001f\u007f\ufffd]/, `the alt text holds control characters or U+FFFD: ${JSON.stringify(m[1])}`);
      const expected = MARKDOWN_TEXT.replace(`![](${DIAGRAM})`, m[0]);
      assert.equal(text, expected, 'the edit changed more than the alt text');
    });
  });

  test('06b the alt text is one undoable edit', { timeout: SCENARIO_MS }, async () => {
    await scenario('06b-alt-text-undo', async (page) => {
      const file = path.join(needRun().workspace, MARKDOWN);
      assert.ok(ALT_TEXT_RE.test(fs.readFileSync(file, 'utf8')), 'needs the alt text of scenario 06');
      await page.locator('.editor-group-container.active .monaco-editor textarea').first().focus();
      await page.keyboard.press('Control+Z');
      await page.keyboard.press('Control+S');
      await waitUntil(async () => fs.readFileSync(file, 'utf8') === MARKDOWN_TEXT, 15_000, 'one Undo did not restore the original Markdown');
    });
  });

  test('07 the status bar shows the device', { timeout: SCENARIO_MS }, async () => {
    await scenario('07-status-bar', async (page) => {
      const item = statusItem(page, EXT_ID, STATUS_ITEM_ID);
      await item.waitFor({ state: 'visible', timeout: 30_000 });
      await expectText(item, /\bcpu\b/, 'the status bar item', ANSWER_MS);
    });
  });

  test('08 the status bar item opens the LLaVA Lens menu', { timeout: SCENARIO_MS }, async () => {
    await scenario('08-status-menu', async (page) => {
      await statusItem(page, EXT_ID, STATUS_ITEM_ID).click();
      const rows = page.locator('.quick-input-widget .monaco-list-row');
      await rows.first().waitFor({ state: 'visible', timeout: 15_000 });
      const labels = (await rows.allInnerTexts()).join('\n');
      for (const want of [/select model/i, /restart/i, /logs/i, /settings/i]) assert.match(labels, want, `the status menu lacks ${want}: ${labels}`);
      await page.keyboard.press('Escape');
    });
  });

  test('09 every command of the contract is in the palette under "LLaVA Lens"', { timeout: SCENARIO_MS }, async () => {
    await scenario('09-palette', async (page) => {
      const manifest = readManifestCommands();
      const declared = new Set(manifest.commands.map((c) => c.command));
      const undeclared = CONTRACT_COMMANDS.filter((id) => !declared.has(id));
      assert.deepEqual(undeclared, [], `package.json does not declare ${undeclared.join(', ')}`);
      const missing: string[] = [];
      for (const c of manifest.commands) {
        if (c.enablement || manifest.hiddenFromPalette.has(c.command)) continue; // shown only in some contexts
        const title = `${c.category ? `${c.category}: ` : ''}${c.title}`;
        if (!(await paletteHas(page, title))) missing.push(`${title} (${c.command})`);
      }
      await page.keyboard.press('Escape');
      assert.deepEqual(missing, [], `not in the Command Palette: ${missing.join('; ')}`);
      const uncategorised = manifest.commands.filter((c) => c.category !== 'LLaVA Lens').map((c) => c.command);
      assert.deepEqual(uncategorised, [], 'commands without the category "LLaVA Lens"');
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** The command ids the suite's brief names (the extension's contract). */
const CONTRACT_COMMANDS = [
  'llavaLens.askAboutImage',
  'llavaLens.explainDiagram',
  'llavaLens.explainScreenshot',
  'llavaLens.extractText',
  'llavaLens.generateAltText',
  'llavaLens.describeImage',
  'llavaLens.stop',
  'llavaLens.statusMenu',
  'llavaLens.selectModel',
  'llavaLens.restartDaemon',
  'llavaLens.showLogs',
  'llavaLens.openSettings',
];

interface ManifestCommand {
  command: string;
  title: string;
  category?: string;
  enablement?: string;
}

function readManifestCommands(): { commands: ManifestCommand[]; hiddenFromPalette: Set<string> } {
  const pkg = JSON.parse(fs.readFileSync(path.join(EXTENSION_DIR, 'package.json'), 'utf8')) as {
    contributes?: { commands?: ManifestCommand[]; menus?: { commandPalette?: Array<{ command: string; when?: string }> } };
  };
  const hidden = new Set((pkg.contributes?.menus?.commandPalette ?? []).filter((m) => m.when !== undefined).map((m) => m.command));
  return { commands: pkg.contributes?.commands ?? [], hiddenFromPalette: hidden };
}

/** Whether the palette, filtered by `title`, has a row labelled exactly `title`. */
async function paletteHas(page: Page, title: string): Promise<boolean> {
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input');
  if (!(await input.isVisible())) {
    await page.keyboard.press('F1');
    await input.waitFor({ state: 'visible', timeout: 15_000 });
  }
  await input.fill(`>${title}`);
  const exact = widget.locator('.monaco-list-row .label-name').filter({ hasText: new RegExp(`^${escapeRe(title)}$`) });
  try {
    await exact.first().waitFor({ state: 'visible', timeout: 3000 });
    return true;
  } catch {
    return false;
  }
}

/** Appends a line to test-results/vscode-e2e/run.log (timings and facts worth keeping from a run). */
function note(line: string): void {
  fs.appendFileSync(path.join(RESULTS, 'run.log'), `${new Date().toISOString()} ${line}\n`);
}

function needRun(): Run {
  if (!run) throw new Error('the workbench is not up (scenario 01 failed)');
  return run;
}

function panel(page: Page): FrameLocator {
  return webview(page, EXT_ID);
}

function needPanel(page: Page): FrameLocator {
  if (!panelOpen) throw new Error('needs the panel with an answer from scenario 02, which failed');
  return panel(page);
}

/**
 * Runs one scenario on the shared page: a screenshot after it (NN-name.png), or on failure a
 * screenshot (NN-name-FAILED.png) and a log (NN-name-failure.log) whose tail is added to the error.
 */
async function scenario(name: string, body: (page: Page) => Promise<void>): Promise<void> {
  const r = needRun();
  try {
    await dismissPopups(r.wb.page);
    await body(r.wb.page);
    await screenshot(r.wb.page, path.join(RESULTS, `${name}.png`));
  } catch (err) {
    const shot = await screenshot(r.wb.page, path.join(RESULTS, `${name}-FAILED.png`));
    const report = diagnostics(r);
    const logFile = path.join(RESULTS, `${name}-failure.log`);
    fs.writeFileSync(logFile, `${err instanceof Error ? err.stack : String(err)}\n\n${report}`);
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`${name}: ${msg}\n(screenshot: ${shot ?? 'none'}; logs: ${logFile})\n${report.slice(-6000)}`, { cause: err });
  }
}

function diagnostics(r: Run): string {
  const parts = [`--- code-server log (${r.server.logFile}) ---\n${tail(r.server.logFile, 4000)}`];
  for (const f of extensionLogs(r.server.userDataDir)) parts.push(`--- ${path.relative(r.server.userDataDir, f)} ---\n${tail(f, 4000)}`);
  parts.push(`--- browser console (errors, warnings) ---\n${r.wb.consoleLog.slice(-40).join('\n')}`);
  return parts.join('\n\n');
}

/**
 * Asks about a file from the explorer's context menu (which starts a new conversation), answers
 * the input box when `question` is given, and returns the new turn in the panel.
 */
async function askFromExplorer(page: Page, file: string, item: string, question?: string): Promise<Locator> {
  const turns = panel(page).locator('#conversation > .turn');
  const before = await turns.count();
  await explorerContextMenu(page, file, item);
  if (question !== undefined) await answerQuickInput(page, question);
  await waitForCount(turns, before + 1, 30_000);
  return turns.last();
}

/** Types a follow-up question into the panel and sends it. */
async function ask(view: FrameLocator, question: string): Promise<void> {
  const input = view.locator('#followup');
  await input.waitFor({ state: 'visible', timeout: 15_000 });
  await view.locator('#send').and(view.locator(':enabled')).waitFor({ timeout: ANSWER_MS });
  await input.fill(question);
  await view.locator('#send').click();
}

/**
 * Waits for the (last) turn's answer to finish. Returns whether it was seen streaming
 * (data-state=streaming with some text) on the way, and its final text. Fails on error/cancelled.
 */
async function waitForAnswer(turn: Locator, timeoutMs: number): Promise<{ streamed: boolean; text: string }> {
  await turn.locator('.answer').waitFor({ state: 'attached', timeout: timeoutMs });
  const seen = await turn.evaluate(watchLastAnswer, timeoutMs);
  if (seen.timedOut) throw new Error(`the answer did not finish within ${timeoutMs} ms (data-state=${seen.state}, ${seen.text.length} characters so far)`);
  if (seen.state !== 'done') throw new Error(`the answer ended with data-state=${seen.state}: ${seen.text.slice(0, 500)}`);
  return { streamed: seen.streamed, text: seen.text };
}

async function waitForImageLoaded(img: Locator, timeoutMs: number): Promise<void> {
  await img.evaluate(imageLoaded, timeoutMs);
}

/** Waits until an element's text contains `want` (string or pattern), with a bound. */
async function expectText(loc: Locator, want: string | RegExp, what = 'the element', timeoutMs = 15_000): Promise<void> {
  const test = (s: string) => (typeof want === 'string' ? s.includes(want) : want.test(s));
  let last = '';
  await waitUntil(
    async () => {
      last = await loc.innerText({ timeout: timeoutMs }).catch(() => '');
      return test(last);
    },
    timeoutMs,
    () => `${what} does not show ${String(want)}; it reads: ${JSON.stringify(last.slice(0, 300))}`,
  );
}

async function waitForCount(loc: Locator, n: number, timeoutMs: number): Promise<void> {
  await waitUntil(async () => (await loc.count()) >= n, timeoutMs, () => `expected at least ${n} turns in the conversation`);
}

/** Re-checks a condition until it holds or the bound passes (short re-checks of UI state; not a sleep that stands in for an event). */
async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number, message: string | (() => string | Promise<string>)): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(typeof message === 'string' ? message : await message());
    await new Promise((r) => setTimeout(r, 150));
  }
}

const fmt = (v: readonly number[]) => `[${v.map((x) => x.toFixed(2)).join(', ')}]`;
