/**
 * A real shared daemon for tests: `node <DAEMON_NODE_FLAGS> bin/llava-lens.js serve --ws 0` as a
 * child process on 127.0.0.1 (or `host`), with its own state folder and token, optionally loading
 * a model folder. Waits on the daemon's own log lines (listening, loaded), never on time.
 *
 * With `env: { LLAVA_LENS_ENGINE: FAKE_ENGINE_MODULE }` the daemon answers with the deterministic
 * fake engine (test/fakes/fakeEngine.ts), so any folder holding a `config.json` is a "model".
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LensClient } from '../../client/src/daemonClient';
import { DAEMON_NODE_FLAGS, withDaemonEnv } from '../../server/src/daemon/nodeFlags';
import { watchProcess } from '../fixtures/watchProcess';

const ROOT = path.resolve(__dirname, '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'llava-lens.js');
export const WS_TEST_TOKEN = 'ws-test-token-5f1c9a2b7e';
/** How long `stop` waits for the daemon to exit after SIGTERM. */
export const STOP_TIMEOUT_MS = 20_000;
/** The daemon's `LLAVA_LENS_ENGINE` module that makes it answer with the fake engine. */
export const FAKE_ENGINE_MODULE = path.join(ROOT, 'out', 'test', 'fakes', 'fakeEngineModule.js');

/**
 * An IPv4 address of this machine that is not loopback, if it has one. A daemon listening there
 * (`host`) sees clients that connect to it as `remote`: they may send image bytes only, never
 * paths (a path is refused with PathNotAllowed), so an answer proves the image went as bytes.
 */
export function lanAddress(): string | undefined {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

export interface ServeOptions {
  /** A model folder to load at start (`--model`); its parent folder becomes a model root. */
  model?: string;
  /** Port to listen on (default 0, any free one): to restart a daemon at the same URL. */
  port?: number;
  /** Address to listen on (default 127.0.0.1); a non-loopback one adds `--allow-remote`. */
  host?: string;
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
  /** SIGTERM and wait for the exit; after `STOP_TIMEOUT_MS` without one, SIGKILL and throw (the daemon hung). */
  stop(): Promise<void>;
}

export async function serveWs(o: ServeOptions = {}): Promise<ServedDaemon> {
  const stateDir = o.stateDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'lens-state-')));
  const loopback = o.host === undefined || o.host === 'localhost' || o.host === '::1' || /^127\./.test(o.host);
  const host = o.host !== undefined ? ['--host', o.host, ...(loopback ? [] : ['--allow-remote'])] : [];
  const args = [BIN, 'serve', '--ws', String(o.port ?? 0), ...host, '--state-dir', stateDir, ...(o.model ? ['--model', o.model] : []), ...(o.args ?? [])];
  // With the daemon's node flags and environment, as the extension starts it: one process (no
  // relaunch), so `child` is the daemon itself (its pid, RSS, signals).
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...args], {
    env: withDaemonEnv({ ...process.env, LLAVA_LENS_TOKEN: WS_TEST_TOKEN, ...o.env }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const watched = watchProcess(child, 'daemon');
  const exited = watched.exited;
  const waitForLog = async (re: RegExp, timeoutMs = 60_000) => (await watched.waitForLog(re, timeoutMs))[0];
  let url: string;
  try {
    const listening = await waitForLog(/daemon listening on (wss?:\/\/[^\s]+)/);
    url = /daemon listening on (wss?:\/\/[^\s]+)/.exec(listening)![1];
    if (o.model) await waitForLog(/\[info\] loaded .* on \w+|\[error\] could not load .*/);
    if (/\[error\] could not load/.test(watched.stderr())) throw new Error(`the daemon could not load ${o.model}:\n${watched.stderr()}`);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    url,
    port: Number(new URL(url).port),
    token: WS_TEST_TOKEN,
    stateDir,
    child,
    log: watched.stderr,
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
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      // A daemon whose event loop is stuck never runs its SIGTERM handler: kill it and say so.
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS)));
      const timedOut = await Promise.race([exited.then(() => false), stuck]);
      clearTimeout(timer);
      if (!timedOut) return;
      child.kill('SIGKILL');
      await exited;
      throw new Error(`the daemon did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM (killed); the end of its log:\n${watched.stderr().slice(-2000)}`);
    },
  };
}
