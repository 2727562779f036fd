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

/** Right-clicks a file in the explorer and picks a context menu item by its label. */
export async function explorerContextMenu(page: Page, file: string, item: string, timeoutMs = 15_000): Promise<void> {
  const row = explorerItem(page, file);
  await row.waitFor({ state: 'visible', timeout: timeoutMs });
  await row.click(); // select it alone first, so that the command gets just this file
  await row.click({ button: 'right' });
  // Menus render in a shadow root in the web workbench; role locators pierce it.
  const entry = page.getByRole('menuitem', { name: new RegExp(`^${escapeRe(item)}`) });
  await entry.first().waitFor({ state: 'visible', timeout: timeoutMs });
  await entry.first().click();
}

/** The labels of the explorer context menu of a file (closes the menu again). */
export async function explorerContextMenuLabels(page: Page, file: string, timeoutMs = 15_000): Promise<string[]> {
  const row = explorerItem(page, file);
  await row.waitFor({ state: 'visible', timeout: timeoutMs });
  await row.click({ button: 'right' });
  const items = page.getByRole('menuitem');
  await items.first().waitFor({ state: 'visible', timeout: timeoutMs });
  const labels = (await items.allInnerTexts()).map((s) => s.split('\n')[0].trim());
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
  await input.fill(`${line}:${column}`);
  await input.press('Enter');
  await quickInput(page).waitFor({ state: 'hidden', timeout: timeoutMs });
}

/** Opens the Quick Fix menu at the cursor and picks an action by its title. */
export async function quickFix(page: Page, title: string, timeoutMs = 15_000): Promise<void> {
  await page.locator('.editor-instance .monaco-editor textarea').first().focus();
  await page.keyboard.press('Control+.');
  const widget = page.locator('.action-widget');
  await widget.waitFor({ state: 'visible', timeout: timeoutMs });
  const row = widget.locator('.monaco-list-row').filter({ hasText: title });
  await row.first().waitFor({ state: 'visible', timeout: timeoutMs });
  await row.first().click();
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
