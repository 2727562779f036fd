/**
 * A real shared daemon for tests: `node bin/llava-lens.js serve --ws 0` as a child process on
 * 127.0.0.1, with its own state folder and token, optionally loading a generated tiny model.
 * Waits on the daemon's own log lines (listening, loaded), never on time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LensClient } from '../../client/src/daemonClient';

const ROOT = path.resolve(__dirname, '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'llava-lens.js');
export const WS_TEST_TOKEN = 'ws-test-token-5f1c9a2b7e';

export interface ServeOptions {
  /** A model folder to load at start (`--model`). */
  model?: string;
  /** More `serve` flags. */
  args?: string[];
  /** Reuse a state folder (restart tests); default a fresh temp folder. */
  stateDir?: string;
  env?: NodeJS.ProcessEnv;
}

export interface ServedDaemon {
  url: string;
  port: number;
  token: string;
  stateDir: string;
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far. */
  log(): string;
  /** Resident set size of the daemon process now (Linux /proc), bytes. */
  rssBytes(): number;
  /** A client over WebSocket, initialized (workspace folders optional). */
  connect(o?: { workspaceFolders?: string[]; token?: string }): Promise<LensClient>;
  /** Waits until a stderr line matches. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGKILL (crash) and wait for the exit. */
  kill9(): Promise<void>;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
}

export async function serveWs(o: ServeOptions = {}): Promise<ServedDaemon> {
  const stateDir = o.stateDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'lens-state-')));
  const args = [BIN, 'serve', '--ws', '0', '--state-dir', stateDir, ...(o.model ? ['--model', o.model] : []), ...(o.args ?? [])];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, LLAVA_LENS_TOKEN: WS_TEST_TOKEN, ...o.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const watchers: Array<() => void> = [];
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    stderr += c;
    for (const w of [...watchers]) w();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitForLog = (re: RegExp, timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = re.exec(stderr);
        if (m) {
          watchers.splice(watchers.indexOf(check), 1);
          clearTimeout(timer);
          resolve(m[0]);
        }
      };
      const timer = setTimeout(() => {
        watchers.splice(watchers.indexOf(check), 1);
        reject(new Error(`daemon log never matched ${re} within ${timeoutMs} ms; log:\n${stderr}`));
      }, timeoutMs);
      watchers.push(check);
      void exited.then(() => {
        if (watchers.includes(check)) {
          watchers.splice(watchers.indexOf(check), 1);
          clearTimeout(timer);
          reject(new Error(`daemon exited (${child.exitCode ?? child.signalCode}) before its log matched ${re}; log:\n${stderr}`));
        }
      });
      check();
    });
  const listening = await waitForLog(/listening on (wss?:\/\/[^\s]+)/);
  const url = /listening on (wss?:\/\/[^\s]+)/.exec(listening)![1];
  if (o.model) await waitForLog(/\[info\] loaded .* on \w+|\[error\] could not load .*/);
  if (/\[error\] could not load/.test(stderr)) throw new Error(`the daemon could not load ${o.model}:\n${stderr}`);
  return {
    url,
    port: Number(new URL(url).port),
    token: WS_TEST_TOKEN,
    stateDir,
    child,
    log: () => stderr,
    rssBytes: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    connect: async (c = {}) => {
      const client = await LensClient.connectWebSocket(url, { token: c.token ?? WS_TEST_TOKEN });
      await client.initialize({ workspaceFolders: (c.workspaceFolders ?? []).map((f, i) => ({ uri: `file://${f}`, name: `ws${i}` })) });
      return client;
    },
    waitForLog,
    kill9: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
