/**
 * Driving the VS Code workbench (as code-server serves it) with playwright-core: the command
 * palette, the explorer's context menu, quick inputs, the status bar, editors, and the extension's
 * webview panel. Every wait is on an element or a state, with a bound; nothing sleeps.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium, type Browser, type FrameLocator, type Locator, type Page } from 'playwright-core';
import { chromiumBin } from './requirements';

/** Chromium flags from the recipe: no sandbox (root), no GPU, nothing that calls out. */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--disable-crash-reporter',
];

export interface Workbench {
  browser: Browser;
  page: Page;
  /** Browser console errors and page errors, in order (for failure reports). */
  consoleLog: string[];
  close(): Promise<void>;
}

export async function openWorkbench(url: string, timeoutMs = 60_000): Promise<Workbench> {
  const browser = await chromium.launch({ executablePath: chromiumBin(), headless: true, args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const consoleLog: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') consoleLog.push(`[${m.type()}] ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleLog.push(`[pageerror] ${e.message}`));
    await page.goto(url, { timeout: timeoutMs });
    await page.locator('.monaco-workbench').waitFor({ timeout: timeoutMs });
    return { browser, page, consoleLog, close: () => browser.close() };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

/** Saves a full-page screenshot; never throws (a failing screenshot must not hide the real failure). */
export async function screenshot(page: Page, file: string): Promise<string | undefined> {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file, timeout: 10_000 });
    return file;
  } catch {
    return undefined;
  }
}

const quickInput = (page: Page): Locator => page.locator('.quick-input-widget');

/**
 * Runs a command from the palette by its title as the palette shows it ("LLaVA Lens: Stop"): the
 * exact row is picked, so that a missing command fails here rather than running a near match.
 */
export async function runCommand(page: Page, title: string, timeoutMs = 15_000): Promise<void> {
  await page.keyboard.press('F1');
  const input = quickInput(page).locator('input');
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  await input.fill(`>${title}`);
  const row = quickInput(page).locator('.monaco-list-row').filter({ has: page.locator('.label-name', { hasText: title }) });
  await row.first().waitFor({ state: 'visible', timeout: timeoutMs });
  await row.first().click();
}

/** The palette rows (command titles) that contain `text`, for checks like "every command is in the palette". */
export async function paletteTitles(page: Page, text: string, timeoutMs = 15_000): Promise<string[]> {
  await page.keyboard.press('F1');
  const input = quickInput(page).locator('input');
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  await input.fill(`>${text}`);
  await quickInput(page).locator('.monaco-list-row').first().waitFor({ state: 'visible', timeout: timeoutMs });
  const titles = await quickInput(page).locator('.monaco-list-row .label-name').allInnerTexts();
  await page.keyboard.press('Escape');
  return titles;
}

/** Types an answer into the open quick input (an input box or a quick pick) and accepts it. */
export async function answerQuickInput(page: Page, text: string, timeoutMs = 15_000): Promise<void> {
  const input = quickInput(page).locator('input');
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  await input.fill(text);
  await input.press('Enter');
  await quickInput(page).waitFor({ state: 'hidden', timeout: timeoutMs });
}

/** The explorer row of a file at the workspace root. */
export function explorerItem(page: Page, name: string): Locator {
  return page.locator('.explorer-folders-view .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${escapeRe(name)}$`) }) });
}

/**
 * Right-clicks a file in the explorer and picks a context menu item by its label. The menu is
 * opened again while the item is missing (until the bound): right after start-up the workbench may
 * not have read the extension's menu contributions yet.
 */
export async function explorerContextMenu(page: Page, file: string, item: string, timeoutMs = 30_000): Promise<void> {
  const row = explorerItem(page, file);
  await row.waitFor({ state: 'visible', timeout: timeoutMs });
  // A right-click on a row outside the selection acts on that row alone (no left click first: it
  // would open the file in an editor and move the focus while the menu opens).
  const entry = contextMenu(page).getByRole('menuitem', { name: new RegExp(`^${escapeRe(item)}`) }).first();
  const anyEntry = contextMenu(page).getByRole('menuitem').first();
  const deadline = Date.now() + timeoutMs;
  let labels: string[] = [];
  for (;;) {
    await row.click({ button: 'right' });
    await anyEntry.waitFor({ state: 'visible', timeout: Math.max(1000, deadline - Date.now()) });
    if (await entry.isVisible()) break;
    labels = await menuLabels(page);
    await page.keyboard.press('Escape');
    await anyEntry.waitFor({ state: 'hidden', timeout: 5000 });
    if (Date.now() > deadline) throw new Error(`the explorer context menu of ${file} has no "${item}"; it has: ${labels.join(' | ')}`);
  }
  await entry.click();
  // Now and then the click lands while the menu is still settling and only highlights the item:
  // then Enter runs the highlighted item.
  const menu = contextMenu(page);
  try {
    await menu.waitFor({ state: 'hidden', timeout: 3000 });
  } catch {
    await entry.press('Enter');
    await menu.waitFor({ state: 'hidden', timeout: 5000 });
  }
}

/** The open context menu (it renders in a shadow root; CSS and role locators pierce it). */
const contextMenu = (page: Page): Locator => page.locator('.context-view .monaco-menu');

async function menuLabels(page: Page): Promise<string[]> {
  return (await contextMenu(page).getByRole('menuitem').allInnerTexts()).map((s) => s.split('\n')[0].trim()).filter((s) => s.length > 0);
}

/** The labels of the explorer context menu of a file (closes the menu again). */
export async function explorerContextMenuLabels(page: Page, file: string, timeoutMs = 15_000): Promise<string[]> {
  const row = explorerItem(page, file);
  await row.waitFor({ state: 'visible', timeout: timeoutMs });
  await row.click({ button: 'right' });
  await contextMenu(page).getByRole('menuitem').first().waitFor({ state: 'visible', timeout: timeoutMs });
  const labels = await menuLabels(page);
  await page.keyboard.press('Escape');
  return labels;
}

/** Opens a workspace file in an editor with Quick Open and waits for its tab to be active. */
export async function openFile(page: Page, name: string, timeoutMs = 15_000): Promise<void> {
  await page.keyboard.press('Control+P');
  const input = quickInput(page).locator('input');
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  await input.fill(name);
  const row = quickInput(page).locator('.monaco-list-row').filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${escapeRe(name)}$`) }) });
  await row.first().waitFor({ state: 'visible', timeout: timeoutMs });
  await row.first().click();
  await page.locator('.tab.active', { hasText: name }).waitFor({ state: 'visible', timeout: timeoutMs });
  await page.locator('.editor-instance .monaco-editor .view-lines').first().waitFor({ state: 'visible', timeout: timeoutMs });
}

/** Moves the cursor of the active text editor to a line (1-based) and column with "Go to Line". */
export async function goToLine(page: Page, line: number, column = 1, timeoutMs = 15_000): Promise<void> {
  await page.keyboard.press('Control+G');
  const input = quickInput(page).locator('input');
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  await input.fill(`:${line}:${column}`); // Go to Line's quick input prefix is ':'
  await input.press('Enter');
  await quickInput(page).waitFor({ state: 'hidden', timeout: timeoutMs });
}

/**
 * Opens the Quick Fix menu at the cursor and applies an action by its title. The menu is driven
 * with the keyboard: while it is open a pointer block covers the workbench. Returns how many times
 * the menu had to be asked for.
 */
export async function quickFix(page: Page, title: string, timeoutMs = 15_000): Promise<number> {
  const widget = page.locator('.action-widget');
  const none = page.locator('.monaco-editor-overlaymessage', { hasText: 'No code actions available' });
  const deadline = Date.now() + timeoutMs;
  // Right after the diagnostic appears the request can still come back empty ("No code actions
  // available"): ask again until the bound.
  let attempts = 0;
  for (;;) {
    attempts++;
    await page.locator('.editor-group-container.active .monaco-editor textarea').first().focus();
    await page.keyboard.press('Control+.');
    await widget.or(none).first().waitFor({ state: 'visible', timeout: Math.max(1000, deadline - Date.now()) });
    if (await widget.isVisible()) break;
    if (Date.now() > deadline) throw new Error(`Quick Fix says "No code actions available" (${attempts} attempts)`);
    await page.keyboard.press('Escape');
    await none.waitFor({ state: 'hidden', timeout: 5000 });
  }
  const rows = widget.locator('.monaco-list-row.action');
  await rows.first().waitFor({ state: 'visible', timeout: timeoutMs });
  const wanted = widget.locator('.monaco-list-row.action').filter({ hasText: title }).first();
  try {
    await wanted.waitFor({ state: 'visible', timeout: timeoutMs });
  } catch {
    const have = await rows.allInnerTexts();
    await page.keyboard.press('Escape');
    throw new Error(`the Quick Fix menu has no "${title}"; it has: ${have.map((s) => s.trim()).join(' | ')}`);
  }
  const n = await rows.count();
  for (let i = 0; i <= n; i++) {
    if (((await wanted.getAttribute('class')) ?? '').split(/\s+/).includes('focused')) {
      await page.keyboard.press('Enter');
      await widget.waitFor({ state: 'hidden', timeout: timeoutMs });
      return attempts;
    }
    await page.keyboard.press('ArrowDown');
  }
  throw new Error(`could not focus "${title}" in the Quick Fix menu`);
}

/** Closes whatever menu, quick input or widget a previous step left open. */
export async function dismissPopups(page: Page): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const open = page.locator('.context-view .monaco-menu, .quick-input-widget:visible, .action-widget, .context-view-pointerBlock');
    if ((await open.count()) === 0) return;
    await page.keyboard.press('Escape');
  }
}

/** The extension's status bar item (code-server gives it the id `<extension id>.<item id>`). */
export function statusItem(page: Page, extensionId: string, itemId: string): Locator {
  return page.locator(`.statusbar [id="${extensionId}.${itemId}"]`);
}

/**
 * The extension's webview panel content. The webview's outer iframe carries the extension's id in
 * its URL, and its content sits one frame further in (`#active-frame`).
 */
export function webview(page: Page, extensionId: string): FrameLocator {
  return page.frameLocator(`iframe.webview.ready[src*="extensionId=${extensionId}"]`).frameLocator('#active-frame');
}

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
