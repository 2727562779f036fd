/**
 * The Node flags the daemon process runs with, and the relaunch that puts them on its command line.
 *
 * Whoever starts a daemon passes `DAEMON_NODE_FLAGS` before the script: the extension (its
 * `execArgv`, client/src/settings.ts), `LensClient.spawnStdio` (the CLI's `ask`, `ocr`, `demo`).
 * `llava-lens serve` started by hand (`node bin/llava-lens.js serve …`, `npx llava-lens serve …`)
 * lacks them, so the entry re-runs itself once with them (`relaunchWithDaemonFlags`): same node,
 * same script and arguments, stdio inherited (the stdio JSON-RPC stream passes through untouched),
 * signals forwarded, the child's exit code (or signal) passed on. `LLAVA_LENS_NODE_FLAGS=none` opts
 * out: no flags, one process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';
import { isatty } from 'node:tty';

/**
 * Node flags of the daemon process. Measured in docs/performance.md ("Node flags"):
 * `--single-threaded-gc` keeps V8's parallel/concurrent GC helper threads off the cores
 * onnxruntime's intra-op threads compute on (the decode loop allocates a logits row per token, so
 * young-generation collections are frequent); it was never slower, and gained up to 18% decode.
 * V8 refuses it in `NODE_OPTIONS`, so it must be on the command line, before the script.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--single-threaded-gc'];

/** `LLAVA_LENS_NODE_FLAGS=none`: start the daemon without `DAEMON_NODE_FLAGS` and never relaunch. */
export const NODE_FLAGS_ENV = 'LLAVA_LENS_NODE_FLAGS';
/** Set (to "1") for the relaunched child: it never relaunches again, whatever its flags. */
export const NODE_FLAGS_SET_ENV = 'LLAVA_LENS_NODE_FLAGS_SET';
/** The launcher's pid, for the relaunched child: it exits when its launcher is gone (SIGKILL). */
export const LAUNCHER_PID_ENV = 'LLAVA_LENS_LAUNCHER_PID';

/** "--single_threaded_gc=1" → "single-threaded-gc" (V8 accepts `_` for `-`; the value is dropped). */
function flagName(arg: string): string | undefined {
  if (!arg.startsWith('--')) return undefined;
  return arg.slice(2).split('=')[0].replace(/_/g, '-');
}

/**
 * The flags of `DAEMON_NODE_FLAGS` that `execArgv` lacks (in their order). A flag counts as given
 * when written with `_` for `-` or with a value, and as decided when negated (`--no-…`): the
 * person who wrote that wants it off.
 */
export function missingDaemonFlags(execArgv: readonly string[] = process.execArgv, flags: readonly string[] = DAEMON_NODE_FLAGS): string[] {
  const given = new Set(execArgv.map(flagName).filter((n): n is string => n !== undefined).map((n) => n.replace(/^no-/, '')));
  return flags.filter((f) => !given.has(flagName(f)!.replace(/^no-/, '')));
}

/** True when `LLAVA_LENS_NODE_FLAGS` is "none" (case and spaces ignored). */
export function nodeFlagsOptedOut(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[NODE_FLAGS_ENV]?.trim().toLowerCase() === 'none';
}

/** The flags to start a daemon with under `env`: `DAEMON_NODE_FLAGS`, or none when opted out. */
export function daemonNodeFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  return nodeFlagsOptedOut(env) ? [] : [...DAEMON_NODE_FLAGS];
}

/**
 * The daemon's start log line, e.g. "node flags: --single-threaded-gc (pid 4242)", with a note
 * when some of `DAEMON_NODE_FLAGS` are missing (opted out, or started some other way).
 */
export function describeNodeFlags(execArgv: readonly string[] = process.execArgv, env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): string {
  const missing = missingDaemonFlags(execArgv);
  const note =
    missing.length === 0 ? '' : nodeFlagsOptedOut(env) ? `; ${NODE_FLAGS_ENV}=none: without ${missing.join(' ')}` : `; without ${missing.join(' ')}: slower decoding (docs/performance.md)`;
  return `node flags: ${execArgv.length ? execArgv.join(' ') : '(none)'} (pid ${pid})${note}`;
}

export interface RelaunchOptions {
  /** The process has a Node IPC channel to its client (`serve --node-ipc`): relay it to the child. */
  ipc?: boolean;
  /** The child reads a terminal on stdin (`serve --stdio` typed into): keep it in the foreground process group. */
  foreground?: boolean;
}

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Called first by a daemon entry with its own arguments (`args`, what follows the script). When
 * this process lacks some of `DAEMON_NODE_FLAGS` (and the user did not opt out, and it is not
 * itself a relaunched child) it starts `process.execPath <missing flags> <execArgv> <script> <args>`
 * and returns a promise of the child's exit code (when the child dies of a signal, the promise never
 * settles: this process re-raises that signal). Returns undefined when this process should run the
 * daemon itself; a relaunched child then also starts watching its launcher.
 */
export function relaunchWithDaemonFlags(args: readonly string[], opts: RelaunchOptions = {}): Promise<number> | undefined {
  const env = process.env;
  if (env[NODE_FLAGS_SET_ENV] === '1') {
    const launcher = Number(env[LAUNCHER_PID_ENV]);
    // Not inherited further (a daemon's own children start afresh).
    delete env[NODE_FLAGS_SET_ENV];
    delete env[LAUNCHER_PID_ENV];
    if (Number.isInteger(launcher) && launcher > 0) watchLauncher(launcher);
    return undefined;
  }
  if (nodeFlagsOptedOut(env)) return undefined;
  const missing = missingDaemonFlags(process.execArgv);
  if (missing.length === 0) return undefined;
  const script = process.argv[1];
  if (!script) return undefined;

  const child = spawn(process.execPath, [...missing, ...process.execArgv, script, ...args], {
    env: { ...env, [NODE_FLAGS_SET_ENV]: '1', [LAUNCHER_PID_ENV]: String(process.pid) },
    stdio: opts.ipc ? ['inherit', 'inherit', 'inherit', 'ipc'] : 'inherit',
    // Own process group on POSIX, so a terminal's Ctrl-C reaches the child once (forwarded by this
    // process), not twice (a second SIGINT would cut short the daemon's orderly stop).
    detached: process.platform !== 'win32' && !opts.foreground,
  });
  const forwards = FORWARDED_SIGNALS.map((signal) => {
    const forward = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    process.on(signal, forward);
    return { signal, forward };
  });
  if (opts.ipc) relayIpc(child);
  return new Promise<number>((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`llava-lens: could not restart with ${missing.join(' ')} (${err.message}); set ${NODE_FLAGS_ENV}=none to run without.\n`);
      for (const f of forwards) process.off(f.signal, f.forward);
      resolve(1);
    });
    // 'close', not 'exit': over IPC the child's last messages are relayed first.
    child.once('close', (code, signal) => {
      for (const f of forwards) process.off(f.signal, f.forward);
      if (process.connected) process.disconnect?.();
      if (signal) {
        // Die the same way, so whoever started this process sees the signal; the exit code a shell
        // would show if the signal's default action does not end the process.
        process.kill(process.pid, signal);
        setTimeout(() => process.exit(128 + (os.constants.signals[signal] ?? 1)), 1000).unref();
        return;
      }
      resolve(code ?? 1);
    });
  });
}

/** Relays Node IPC messages between this process's client and the child (`serve --node-ipc`). */
function relayIpc(child: ChildProcess): void {
  process.on('message', (m) => {
    if (child.connected) child.send(m as object);
  });
  child.on('message', (m) => {
    if (process.connected) process.send!(m);
  });
  process.on('disconnect', () => {
    if (child.connected) child.disconnect(); // the daemon sees its client gone and exits
  });
  child.on('disconnect', () => {
    if (process.connected) process.disconnect();
  });
}

/** In a relaunched child: exit when the launcher is gone (killed with SIGKILL: nothing was forwarded). */
function watchLauncher(launcher: number): void {
  if (process.ppid !== launcher) return; // started some other way; nothing to watch
  setInterval(() => {
    if (process.ppid !== launcher) {
      process.stderr.write('[info] the llava-lens process that started this daemon is gone; exiting\n');
      process.exit(1);
    }
  }, 1000).unref();
}

/**
 * `relaunchWithDaemonFlags` for `serve <serveArgs>`, from an entry whose own command line is
 * `<script> <scriptArgs>` (bin/llava-lens.js and the CLI: `serve …`; daemon/main.js: the same).
 * Nothing happens for `--help`, or when `scriptArgs` is not this process's command line (the
 * entry's function called by other code in process: there is no script to re-run).
 */
export function relaunchServe(serveArgs: readonly string[], scriptArgs: readonly string[] = ['serve', ...serveArgs]): Promise<number> | undefined {
  if (serveArgs.includes('--help') || serveArgs.includes('-h')) return undefined;
  const own = process.argv.slice(2);
  if (own.length !== scriptArgs.length || own.some((a, i) => a !== scriptArgs[i])) return undefined;
  return relaunchWithDaemonFlags(scriptArgs, {
    ipc: serveArgs.includes('--node-ipc') && typeof process.send === 'function',
    // isatty, not process.stdin: the launcher must not open (and set non-blocking) the child's stdin.
    foreground: serveArgs.includes('--stdio') && isatty(0),
  });
}
