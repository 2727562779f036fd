/**
 * Starts code-server (the real VS Code workbench served over HTTP, with a Node extension host) on
 * loopback with throwaway state and the repository installed as an unpacked extension, and stops
 * it with everything it started (its process group: the server, the extension host, the daemon).
 *
 * Recipe: ../shared/design/vscode-e2e.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { codeServerBin, EXTENSION_DIR, extensionId, readManifest } from './requirements';

export interface CodeServerOptions {
  /** Folder for user data, extensions and logs of this run (created; left for the caller to delete). */
  stateDir: string;
  /** The folder the workbench opens. */
  workspace: string;
  /** User settings (merged over the recipe's). */
  settings: Record<string, unknown>;
  /** Extra environment for code-server, which hands it to the extension host and so to the daemon. */
  env: Record<string, string>;
  /** Bound on the wait for the server to answer. */
  startTimeoutMs?: number;
}

export interface CodeServer {
  port: number;
  /** The workbench URL with the workspace open. */
  url: string;
  userDataDir: string;
  extensionsDir: string;
  /** code-server's own stdout + stderr. */
  logFile: string;
  /** Stops the whole process group; safe to call more than once. */
  stop(): Promise<void>;
}

/** Settings that keep dialogs, tours and network calls out of the way (recipe step 4). */
const BASE_SETTINGS: Record<string, unknown> = {
  'security.workspace.trust.enabled': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'extensions.ignoreRecommendations': true,
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'files.autoSave': 'off',
  'git.enabled': false,
  'editor.minimap.enabled': false,
};

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Installs the repository as an unpacked extension: a symlink
 * `<extensionsDir>/<publisher>.<name>-<version>` -> the repository root (EXTENSION_DIR) (VS Code scans the
 * extensions folder when it has no extensions.json).
 */
function linkExtension(extensionsDir: string): string {
  const m = readManifest();
  const target = path.join(extensionsDir, `${extensionId()}-${m.version}`);
  fs.mkdirSync(extensionsDir, { recursive: true });
  fs.symlinkSync(EXTENSION_DIR, target, 'dir');
  return target;
}

function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.setTimeout(2000, () => req.destroy());
  });
}

/** The last `maxBytes` of a file, or a note that it is absent. */
export function tail(file: string, maxBytes = 8000): string {
  try {
    const buf = fs.readFileSync(file);
    return buf.subarray(Math.max(0, buf.length - maxBytes)).toString('utf8');
  } catch {
    return `(no ${file})`;
  }
}

export async function startCodeServer(opts: CodeServerOptions): Promise<CodeServer> {
  const userDataDir = path.join(opts.stateDir, 'user-data');
  const extensionsDir = path.join(opts.stateDir, 'extensions');
  const logFile = path.join(opts.stateDir, 'code-server.log');
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userDataDir, 'User', 'settings.json'),
    JSON.stringify({ ...BASE_SETTINGS, ...opts.settings }, null, 2),
  );
  linkExtension(extensionsDir);

  const port = await freePort();
  // Its own config file and data folder, so that nothing is read from or written to ~/.config or ~/.local.
  const configFile = path.join(opts.stateDir, 'config.yaml');
  fs.writeFileSync(configFile, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  const log = fs.openSync(logFile, 'a');
  const child: ChildProcess = spawn(
    codeServerBin(),
    [
      '--config', configFile,
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--user-data-dir', userDataDir,
      '--extensions-dir', extensionsDir,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      opts.workspace,
    ],
    {
      // Its own process group, so that stop() reaches the extension host and the daemon too.
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, XDG_DATA_HOME: path.join(opts.stateDir, 'xdg-data'), ...opts.env },
    },
  );
  fs.closeSync(log);
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `code ${code} signal ${signal}`;
      resolve();
    });
    child.once('error', (err) => {
      exited = String(err);
      resolve();
    });
  });
  // The whole group, even after the leader exited: the extension host and the daemon may outlive it.
  const killGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      /* already gone */
    }
  };
  // If the test process ends without calling stop() (a crash, Ctrl-C, the runner's SIGTERM), do not
  // leave a server, an extension host or a daemon behind.
  const onExit = () => killGroup('SIGKILL');
  const onSignal = (signal: NodeJS.Signals) => {
    killGroup('SIGKILL');
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  };
  process.once('exit', onExit);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    killGroup('SIGTERM');
    // Give it up to 5 s to shut down its children, then make sure of all of them.
    await Promise.race([exit, new Promise<void>((r) => setTimeout(r, 5000).unref())]);
    killGroup('SIGKILL');
  };

  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (exited !== undefined) {
      await stop();
      throw new Error(`code-server exited before it answered (${exited}); its log:\n${tail(logFile)}`);
    }
    if ((await get(`${base}/healthz`)) === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer on ${base} within ${opts.startTimeoutMs ?? 60_000} ms; its log:\n${tail(logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    port,
    url: `${base}/?folder=${encodeURIComponent(opts.workspace)}`,
    userDataDir,
    extensionsDir,
    logFile,
    stop,
  };
}

/** Log files the workbench wrote for this extension (its output channels) and the extension host. */
export function extensionLogs(userDataDir: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/llava|exthost\.log|remoteexthost\.log/i.test(p)) out.push(p);
    }
  };
  walk(path.join(userDataDir, 'logs'));
  return out;
}
