/**
 * The Node flags and environment the daemon process runs with, and the relaunch that gives them to it.
 *
 * Whoever starts a daemon passes `DAEMON_NODE_FLAGS` before the script and adds `daemonEnv()` to
 * its environment: the extension (`execArgv` and `env` of its fork, client/src/settings.ts and
 * client/src/daemon/lensDaemon.ts), `LensClient.spawnStdio` (the CLI's `ask`, `ocr`, `demo`).
 * `llava-lens serve` started by hand (`node bin/llava-lens.js serve …`, `npx llava-lens serve …`)
 * lacks them, so the entry re-runs itself once with them (`relaunchWithDaemonFlags`): same node,
 * same script and arguments, stdio inherited (the stdio JSON-RPC stream passes through untouched),
 * signals forwarded, the child's exit code (or signal) passed on. The environment needs the
 * relaunch as much as the flags: glibc reads `GLIBC_TUNABLES` once, when the process starts.
 * `LLAVA_LENS_NODE_FLAGS=none` opts out of both: no flags, no environment, one process.
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

/** glibc's malloc tunables for the daemon (`DAEMON_ENV`): the values, in bytes. */
export const MALLOC_MMAP_THRESHOLD = 32 * 2 ** 20;
export const MALLOC_TRIM_THRESHOLD = 512 * 2 ** 20;

/**
 * Environment of the daemon process on Linux, added to whatever it inherits (`daemonEnv`).
 * Measured in docs/performance.md ("Node flags"): during decoding onnxruntime-node hands back every
 * `present.*` KV tensor as a fresh ArrayBuffer each token (~19 MB per token at a 774-token
 * context, ~400 kB each). glibc serves allocations that large with mmap, and its dynamic threshold
 * never catches up (each token's tensors are a position longer than the last one freed), so every
 * token mmaps, page-faults and munmaps them all again.
 *
 * - `glibc.malloc.mmap_threshold` = 32 MiB: tensors come from the heap and are reused. 32 MiB is
 *   the most older glibc accepts (HEAP_MAX_SIZE / 2 on 64-bit; 2.34 checks it for the tunable too,
 *   2.36 only in mallopt): a larger value is ignored there, and the trim setting alone then freezes
 *   the threshold at 128 kB, every tensor mmapped, worse than no tunables (a C check on 2.36 with
 *   only the trim tunable: 2400 of 2400 such allocations mmapped). Allocations over 32 MiB are
 *   mmapped as before.
 * - `glibc.malloc.trim_threshold` = 512 MiB: freed memory at the top of the heap stays mapped
 *   (the next token's tensors reuse it, no page faults) until more than this is free there. It has
 *   to exceed what one token frees, which grows with the context: 24.6 kB per position for the
 *   0.5B decoder (fp32 KV), ~19 MB at 774 tokens, ~117 MB at 4770 (one anyres image). At 4770
 *   tokens 128 MiB left 25% more page faults during decoding than 512 MiB (152k against 122k per
 *   63 tokens; none: 256k) and decoded slower (8.7 against 10.2 tokens/s median; none: 7.1).
 *
 * Cost: memory freed by the decoder stays in the process instead of going back to the system at
 * once: resident memory can stay up to 512 MiB higher after a long answer, plus heap
 * fragmentation from the 128 kB–32 MiB allocations that were mmapped before. Measured peak RSS
 * showed no difference beyond run-to-run noise (1.89–2.04 GB at 774 tokens, 5.7–6.0 GB at 4770,
 * with and without the tunables).
 * The user's own `GLIBC_TUNABLES` keys (or their `MALLOC_MMAP_THRESHOLD_`/`MALLOC_TRIM_THRESHOLD_`
 * aliases) win; ours are appended for the keys they did not set (`daemonEnv`). glibc reads the
 * variable only when a process starts; musl ignores it.
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = Object.freeze({
  GLIBC_TUNABLES: `glibc.malloc.mmap_threshold=${MALLOC_MMAP_THRESHOLD}:glibc.malloc.trim_threshold=${MALLOC_TRIM_THRESHOLD}`,
});

/** Tunables with an older environment variable of their own (glibc's `env_alias`): set, they count as the user's. */
const TUNABLE_ALIASES: Readonly<Record<string, string>> = {
  'glibc.malloc.mmap_threshold': 'MALLOC_MMAP_THRESHOLD_',
  'glibc.malloc.trim_threshold': 'MALLOC_TRIM_THRESHOLD_',
};

/** `LLAVA_LENS_NODE_FLAGS=none`: start the daemon without `DAEMON_NODE_FLAGS` and `DAEMON_ENV`, and never relaunch. */
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

/** "a=1:b=2" → [["a", "1"], ["b", "2"]] (GLIBC_TUNABLES: colon-separated key=value; empty entries dropped). */
function tunableEntries(value: string): Array<[string, string]> {
  return value
    .split(':')
    .filter((e) => e !== '')
    .map((e) => {
      const i = e.indexOf('=');
      return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
    });
}

/**
 * `user` (the GLIBC_TUNABLES a process would inherit) with the entries of `ours` appended whose
 * keys the user did not set, in `user` or through a key's own variable in `env`
 * (`MALLOC_TRIM_THRESHOLD_` …). The user's text is kept as written.
 */
export function mergeTunables(user: string | undefined, ours: string, env: NodeJS.ProcessEnv = {}): string {
  const given = new Set(tunableEntries(user ?? '').map(([k]) => k));
  const added = tunableEntries(ours).filter(([k]) => !given.has(k) && !(TUNABLE_ALIASES[k] && env[TUNABLE_ALIASES[k]] !== undefined));
  if (added.length === 0) return user ?? '';
  const kept = (user ?? '').replace(/:+$/, '');
  return [kept, ...added.map(([k, v]) => `${k}=${v}`)].filter((e) => e !== '').join(':');
}

/**
 * The variables of `vars` merged into what `env` already holds: GLIBC_TUNABLES key by key (see
 * `mergeTunables`), any other variable only when unset. Only the variables that change.
 */
export function mergeEnv(env: NodeJS.ProcessEnv, vars: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(vars)) {
    const merged = name === 'GLIBC_TUNABLES' ? mergeTunables(env[name], value, env) : (env[name] ?? value);
    if (merged !== (env[name] ?? (name === 'GLIBC_TUNABLES' ? '' : undefined))) out[name] = merged;
  }
  return out;
}

/**
 * The variables to add to `env` for a daemon: `DAEMON_ENV` merged into it (`mergeEnv`: the user's
 * own tunables win). None when opted out (`LLAVA_LENS_NODE_FLAGS=none`) or off Linux.
 */
export function daemonEnv(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): Record<string, string> {
  return platform !== 'linux' || nodeFlagsOptedOut(env) ? {} : mergeEnv(env, DAEMON_ENV);
}

/** `env` with `daemonEnv(env)` added: the whole environment to start a daemon with. */
export function withDaemonEnv(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): NodeJS.ProcessEnv {
  return { ...env, ...daemonEnv(env, platform) };
}

/**
 * What `DAEMON_ENV` would add to `env` (not opted out, Linux), for a log line: the tunables as
 * "key=value", other variables as "NAME=value"; empty when the process has all of it.
 */
function missingDaemonEnv(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string[] {
  if (platform !== 'linux') return [];
  const plain = { ...env };
  delete plain[NODE_FLAGS_ENV]; // what it would lack without the opt-out
  const add = daemonEnv(plain, platform);
  return Object.entries(add).flatMap(([name, value]) => {
    if (name !== 'GLIBC_TUNABLES') return [`${name}=${value}`];
    const had = new Set(tunableEntries(env[name] ?? '').map(([k]) => k));
    return tunableEntries(value)
      .filter(([k]) => !had.has(k))
      .map(([k, v]) => `${k}=${v}`);
  });
}

/**
 * The daemon's start log line, e.g. "node flags: --single-threaded-gc; GLIBC_TUNABLES=glibc.malloc…
 * (pid 4242)" (GLIBC_TUNABLES as the process has it, on Linux), with a note when some of
 * `DAEMON_NODE_FLAGS` or `DAEMON_ENV` are missing (opted out, or started some other way).
 */
export function describeNodeFlags(
  execArgv: readonly string[] = process.execArgv,
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
  platform: NodeJS.Platform = process.platform,
): string {
  const missing = [...missingDaemonFlags(execArgv), ...missingDaemonEnv(env, platform)];
  const note =
    missing.length === 0 ? '' : nodeFlagsOptedOut(env) ? `; ${NODE_FLAGS_ENV}=none: without ${missing.join(' ')}` : `; without ${missing.join(' ')}: slower decoding (docs/performance.md)`;
  const tunables = platform === 'linux' && env.GLIBC_TUNABLES !== undefined ? `; GLIBC_TUNABLES=${env.GLIBC_TUNABLES}` : '';
  return `node flags: ${execArgv.length ? execArgv.join(' ') : '(none)'}${tunables} (pid ${pid})${note}`;
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
 * this process lacks some of `DAEMON_NODE_FLAGS` or of `DAEMON_ENV` (and the user did not opt out,
 * and it is not itself a relaunched child) it starts `process.execPath <missing flags> <execArgv>
 * <script> <args>` with `withDaemonEnv(process.env)` and returns a promise of the child's exit
 * code (when the child dies of a signal, the promise never settles: this process re-raises that
 * signal). A process started with the flags but without the environment is relaunched too: glibc
 * reads GLIBC_TUNABLES only at exec. Returns undefined when this process should run the
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
  const added = daemonEnv(env);
  if (missing.length === 0 && Object.keys(added).length === 0) return undefined;
  const script = process.argv[1];
  if (!script) return undefined;

  const child = spawn(process.execPath, [...missing, ...process.execArgv, script, ...args], {
    env: { ...env, ...added, [NODE_FLAGS_SET_ENV]: '1', [LAUNCHER_PID_ENV]: String(process.pid) },
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
      process.stderr.write(`llava-lens: could not restart with ${[...missing, ...Object.entries(added).map(([k, v]) => `${k}=${v}`)].join(' ')} (${err.message}); set ${NODE_FLAGS_ENV}=none to run without.\n`);
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
