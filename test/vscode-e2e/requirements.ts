/**
 * Where the VS Code end-to-end suite finds what `test/vscode-e2e/setup.sh` installs, and the check
 * that turns a missing piece into a failure that says how to fix it.
 *
 * Environment:
 * - `LLAVA_LENS_E2E_CACHE`: the cache folder setup.sh installs code-server into
 *   (default `~/.cache/llava-lens-e2e`).
 * - `LLAVA_LENS_CODE_SERVER`: a code-server executable to use instead.
 * - `LLAVA_LENS_CHROMIUM`: a Chromium executable to use instead of Debian's.
 * - `LLAVA_LENS_SKIP_VSCODE_E2E=1`: skip the suite (the only way to skip it).
 * - `LLAVA_LENS_E2E_EXTENSION`: install this extension folder instead of the repository (to check
 *   the harness itself against a stand-in).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The repository root (this file compiles to out/test/vscode-e2e/). It is the unpacked extension. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

/** The extension folder the suite installs. */
export const EXTENSION_DIR = process.env.LLAVA_LENS_E2E_EXTENSION || REPO_ROOT;

export const CACHE_DIR = process.env.LLAVA_LENS_E2E_CACHE || path.join(os.homedir(), '.cache', 'llava-lens-e2e');

export const CODE_SERVER_VERSION = '4.100.3';

export const codeServerBin = (): string =>
  process.env.LLAVA_LENS_CODE_SERVER || path.join(CACHE_DIR, 'code-server', 'node_modules', '.bin', 'code-server');

export function chromiumBin(): string {
  if (process.env.LLAVA_LENS_CHROMIUM) return process.env.LLAVA_LENS_CHROMIUM;
  const candidates = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  return candidates.find((c) => fs.existsSync(c)) ?? candidates[0];
}

/** True when the suite was switched off explicitly. */
export const skipRequested = (): boolean => process.env.LLAVA_LENS_SKIP_VSCODE_E2E === '1';

/** What is missing to run the suite, each with the fix; empty when everything is there. */
export function missingRequirements(): string[] {
  const missing: string[] = [];
  const setup = 'run `bash test/vscode-e2e/setup.sh` (or set LLAVA_LENS_SKIP_VSCODE_E2E=1 to skip this suite)';
  const cs = codeServerBin();
  if (!fs.existsSync(cs)) missing.push(`code-server is not installed at ${cs}: ${setup}`);
  const chromium = chromiumBin();
  if (!fs.existsSync(chromium)) missing.push(`Chromium is not installed at ${chromium}: ${setup}`);
  try {
    require.resolve('playwright-core', { paths: [REPO_ROOT] });
  } catch {
    missing.push('playwright-core is not installed: run `npm ci`');
  }
  const main = path.join(EXTENSION_DIR, readManifest().main ?? 'out/client/src/extension.js');
  if (!fs.existsSync(main)) missing.push(`the extension is not built (${main} is missing): run \`npm run build\``);
  return missing;
}

export interface Manifest {
  name: string;
  publisher: string;
  version: string;
  main?: string;
}

export const readManifest = (): Manifest => JSON.parse(fs.readFileSync(path.join(EXTENSION_DIR, 'package.json'), 'utf8')) as Manifest;

/** `publisher.name`, the id VS Code knows the extension by. */
export function extensionId(): string {
  const m = readManifest();
  return `${m.publisher}.${m.name}`;
}

/** A suite's first scenario: fails with what is missing, then empties `results` (git-ignored). */
export function beginSuite(results: string): void {
  const missing = missingRequirements();
  if (missing.length > 0) assert.fail(`the VS Code end-to-end suite cannot run:\n  ${missing.join('\n  ')}`);
  fs.rmSync(results, { recursive: true, force: true });
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(path.dirname(results), '.gitignore'), '*\n');
}

/** Closes a session's workbench, then stops its code-server. */
export async function closeSession(s: { wb: { close(): Promise<unknown> }; server: { stop(): Promise<unknown> } } | undefined): Promise<void> {
  if (!s) return;
  await s.wb.close().catch(() => undefined);
  await s.server.stop();
}

/** Removes a suite's temporary folder, or keeps it (and says where) with LLAVA_LENS_E2E_KEEP=1. */
export function removeTemp(dir: string | undefined, label: string): void {
  if (dir === undefined) return;
  if (process.env.LLAVA_LENS_E2E_KEEP === '1') console.log(`${label}: kept ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
