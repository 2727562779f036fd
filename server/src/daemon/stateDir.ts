/**
 * The daemon's state folder and its access token.
 *
 * Folder: `--state-dir`, else `LLAVA_LENS_STATE_DIR`, else the platform's per-user state place
 * (`$XDG_STATE_HOME/llava-lens` or `~/.local/state/llava-lens` on Linux,
 * `~/Library/Application Support/llava-lens` on macOS, `%LOCALAPPDATA%\llava-lens` on Windows).
 * Created owner-only (0700). Holds `token` and `conversations/` (runtime/conversationLog.ts).
 *
 * Token: `LLAVA_LENS_TOKEN` when set (at least 16 characters), else the `token` file, created at
 * first start with 32 random bytes (base64url) and mode 0600. A token file that others can read
 * is refused (like ssh does with keys) — fix its mode and restart.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LLAVA_LENS_STATE_DIR) return path.resolve(env.LLAVA_LENS_STATE_DIR);
  const home = os.homedir();
  if (process.platform === 'win32') return path.join(env.LOCALAPPDATA ?? path.join(home, 'AppData', 'Local'), 'llava-lens');
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'llava-lens');
  return path.join(env.XDG_STATE_HOME ?? path.join(home, '.local', 'state'), 'llava-lens');
}

export function ensureStateDir(dir: string): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export interface TokenSource {
  token: string;
  /** Where it came from, for the start-up message (never the token itself). */
  from: string;
}

/** The daemon's token (see header). Throws with what to do when the token file is unsafe. */
export function loadOrCreateToken(stateDir: string, env: NodeJS.ProcessEnv = process.env): TokenSource {
  const fromEnv = env.LLAVA_LENS_TOKEN;
  if (fromEnv !== undefined) {
    if (fromEnv.length < 16) throw new Error('LLAVA_LENS_TOKEN is shorter than 16 characters: use a long random token (e.g. `openssl rand -base64 32`).');
    return { token: fromEnv, from: 'LLAVA_LENS_TOKEN' };
  }
  const file = path.join(ensureStateDir(stateDir), 'token');
  try {
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    fs.writeSync(fd, randomBytes(32).toString('base64url') + '\n');
    fs.closeSync(fd);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = fs.statSync(file);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new Error(`the token file ${file} can be read by other users (mode ${(st.mode & 0o777).toString(8)}): run "chmod 600 ${file}" and start again.`);
  }
  const token = fs.readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new Error(`the token file ${file} holds no usable token: delete it and start again (a new one is made).`);
  return { token, from: file };
}
