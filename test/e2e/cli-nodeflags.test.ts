/**
 * The daemon runs under its node flags (`DAEMON_NODE_FLAGS`, server/src/daemon/nodeFlags.ts) and
 * with its environment (`DAEMON_ENV`: GLIBC_TUNABLES, merged with the user's) however it is
 * started. Real processes, Linux /proc: `node bin/llava-lens.js serve …` typed without them
 * re-runs itself once with them (the answering process is that child; stdio JSON-RPC passes
 * through; signals and exit codes too; no orphan), also when only the environment is missing;
 * `LensClient.spawnStdio` and the extension's fork give them at the start (one process);
 * `LLAVA_LENS_NODE_FLAGS=none` opts out (one process, no flags, no tunables). The daemon names
 * its flags, tunables and pid in its first log line, which is how the tests find it.
 * Answers come from the fake engine (the daemon's `LLAVA_LENS_ENGINE` hook).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createMessageConnection, IPCMessageReader, IPCMessageWriter, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { LensClient } from '../../client/src/daemonClient';
import { DAEMON_NODE_ARGS, DAEMON_NODE_ENV } from '../../client/src/settings';
import { DAEMON_ENV, MALLOC_TRIM_THRESHOLD, nodeFlagsOptedOut } from '../../server/src/daemon/nodeFlags';
import { ExitNotification, ShutdownRequest } from '../../common/protocol';
import { fakeAnswerWords } from '../fakes/fakeEngine';
import { watchProcess, type WatchedProcess } from '../fixtures/watchProcess';
import { BIN, FAKE_ENGINE_MODULE, WS_TEST_TOKEN } from './wsServe';

const T = { timeout: 30_000, skip: process.platform !== 'linux' ? 'reads /proc (Linux)' : false };
const FLAG = '--single-threaded-gc';
const FLAGS_LINE = /\[info\] node flags: (.*?)(?:; GLIBC_TUNABLES=(\S*))? \(pid (\d+)\)(.*)/;
const TUNABLES = DAEMON_ENV.GLIBC_TUNABLES;

/** The environment of a user who typed the command: no opt-out, no relaunch marker. */
function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LLAVA_LENS_ENGINE: FAKE_ENGINE_MODULE, LLAVA_LENS_MODEL: '', LLAVA_LENS_TOKEN: WS_TEST_TOKEN };
  delete env.LLAVA_LENS_NODE_FLAGS;
  delete env.LLAVA_LENS_NODE_FLAGS_SET;
  delete env.LLAVA_LENS_LAUNCHER_PID;
  delete env.GLIBC_TUNABLES;
  delete env.MALLOC_MMAP_THRESHOLD_;
  delete env.MALLOC_TRIM_THRESHOLD_;
  return { ...env, ...extra };
}

/**
 * A process's environment as it started (what glibc read), from /proc. glibc (2.36 here) parses
 * GLIBC_TUNABLES in place and ends each tunable's value with a NUL in that original string (the
 * process itself gets a copy), so /proc shows it cut after its first value and the rest as
 * entries of their own ("glibc.…=…"): they are joined back.
 */
function environ(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  let last = '';
  for (const e of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    if (last === 'GLIBC_TUNABLES' && e.startsWith('glibc.')) {
      out[last] += `:${e}`;
      continue;
    }
    const i = e.indexOf('=');
    if (i > 0) out[(last = e.slice(0, i))] = e.slice(i + 1);
  }
  return out;
}

/** A process's command line (argv), from /proc. */
function cmdline(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
}

/** Parent pid and state of a process, from /proc/<pid>/stat; undefined when there is no such process. */
function stat(pid: number): { ppid: number; state: string } | undefined {
  let s: string;
  try {
    s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const fields = s.slice(s.lastIndexOf(')') + 2).split(' '); // the name may hold spaces and parentheses
  return { state: fields[0], ppid: Number(fields[1]) };
}

/** Live (not zombie) child processes of `pid`, from every /proc/<n>/stat. */
function childrenOf(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((n) => {
      const s = stat(n);
      return s !== undefined && s.ppid === pid && s.state !== 'Z';
    });
}

/** Waits until `pid` has exited (and was reaped, or is a zombie). */
async function gone(pid: number, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = stat(pid);
    if (s === undefined || s.state === 'Z') return;
    if (Date.now() > until) assert.fail(`process ${pid} (${cmdline(pid).join(' ')}) still runs ${timeoutMs} ms later: an orphan`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Started = WatchedProcess;
const watch = (child: ChildProcess): Started => watchProcess(child);

/** `node bin/llava-lens.js <args>` as a user types it: no node flags. */
function cli(args: string[], env: NodeJS.ProcessEnv, o: { detached?: boolean } = {}): Started {
  return watch(spawn(process.execPath, [BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: o.detached ?? false }));
}

/** A client on a started `serve --stdio`'s own stdin/stdout. */
function stdioClient(s: Started): LensClient {
  return new LensClient(createMessageConnection(new StreamMessageReader(s.child.stdout!), new StreamMessageWriter(s.child.stdin!)), s.child);
}

function modelFolder(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-nodeflags-'));
  fs.mkdirSync(path.join(root, 'onnx'));
  fs.writeFileSync(path.join(root, 'config.json'), '{"model_type":"llava"}');
  return root;
}

/** The daemon's start line: its flags, GLIBC_TUNABLES and pid; asserts it was logged once (the launcher logs nothing). */
async function daemonLine(s: Started): Promise<{ flags: string; tunables: string | undefined; pid: number; note: string }> {
  const m = await s.waitForLog(FLAGS_LINE);
  assert.equal(s.stderr().match(/node flags:/g)?.length, 1, `one start line:\n${s.stderr()}`);
  return { flags: m[1], tunables: m[2], pid: Number(m[3]), note: m[4] };
}

test('serve --stdio typed without flags: the daemon answering JSON-RPC is a child under --single-threaded-gc; SIGTERM to the launcher ends both', T, async () => {
  const model = modelFolder();
  const s = cli(['serve', '--stdio'], userEnv());
  const client = stdioClient(s);
  try {
    // JSON-RPC through the relaunch, in both directions, byte for byte (LSP framing would break otherwise).
    const init = await client.initialize({ clientName: 'nodeflags-test' });
    assert.equal(init.serverInfo.name, 'llava-lens');
    await client.loadModel({ path: model });
    const deltas: string[] = [];
    const r = await client.ask({ prompt: 'which flags?', images: [] }, (d) => deltas.push(d.text));
    assert.equal(r.text, fakeAnswerWords([], 'which flags?').join(' '));
    assert.equal(deltas.join(''), r.text);

    const line = await daemonLine(s);
    assert.equal(line.flags, FLAG, 'the log names the flags');
    assert.equal(line.tunables, TUNABLES, 'and the tunables');
    assert.equal(line.note, '', 'no "without" note');
    const launcher = s.child.pid!;
    assert.notEqual(line.pid, launcher, 'the daemon is not the process that was typed');
    assert.equal(stat(line.pid)?.ppid, launcher, 'the daemon is the launcher\'s child');
    assert.deepEqual(childrenOf(launcher), [line.pid], 'one child, no more');
    assert.deepEqual(childrenOf(line.pid), [], 'and it started no other');
    const daemonArgs = cmdline(line.pid);
    assert.equal(daemonArgs[1], FLAG, `the flag before the script: ${daemonArgs.join(' ')}`);
    assert.deepEqual(daemonArgs.slice(-3), [BIN, 'serve', '--stdio'], 'the same script and arguments');
    assert.ok(!cmdline(launcher).includes(FLAG), 'the launcher itself runs without it');
    assert.equal(environ(line.pid).GLIBC_TUNABLES, TUNABLES, 'the daemon started with the tunables (glibc reads them at exec)');
    assert.equal(environ(launcher).GLIBC_TUNABLES, undefined, 'the launcher without');
    assert.equal(environ(line.pid).LLAVA_LENS_NODE_FLAGS_SET, '1', 'the relaunch marker');

    s.child.kill('SIGTERM');
    const end = await s.exited;
    assert.equal(end.signal, 'SIGTERM', 'the launcher dies of the signal the daemon died of');
    await gone(line.pid);
  } finally {
    client.dispose();
    s.child.kill('SIGKILL');
    fs.rmSync(model, { recursive: true, force: true });
  }
});

test('the launcher killed with SIGKILL (nothing forwarded): the daemon notices and exits, no orphan', T, async () => {
  // serve --ws: nothing else (stdin, a client) would end it.
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-nodeflags-state-'));
  const s = cli(['serve', '--ws', '0', '--state-dir', stateDir], userEnv());
  try {
    await s.waitForLog(/daemon listening on ws:\/\//);
    const { pid } = await daemonLine(s);
    assert.equal(stat(pid)?.ppid, s.child.pid);
    s.child.kill('SIGKILL');
    await s.exited;
    await gone(pid, 5000);
    // Its last line comes through the stderr pipe it shared with the launcher, which is gone already.
    for (let i = 0; i < 40 && !/is gone; exiting/.test(s.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(s.stderr(), /process that started this daemon is gone; exiting/);
  } finally {
    s.child.kill('SIGKILL');
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test('through the relaunch, shutdown + exit ends the daemon and the launcher with its exit code 0; a usage error keeps its code 2', T, async () => {
  const s = cli(['serve', '--stdio'], userEnv());
  const client = stdioClient(s);
  try {
    await client.initialize({});
    const { pid } = await daemonLine(s);
    assert.notEqual(pid, s.child.pid);
    await client.connection.sendRequest(ShutdownRequest);
    await client.connection.sendNotification(ExitNotification);
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    await gone(pid);
  } finally {
    client.dispose();
    s.child.kill('SIGKILL');
  }
  const bad = cli(['serve', '--stdio', '--no-such-flag'], userEnv());
  bad.child.stdin!.end();
  assert.deepEqual(await bad.exited, { code: 2, signal: null });
  assert.match(bad.stderr(), /llava-lens serve: .*no-such-flag/);
});

test('LLAVA_LENS_NODE_FLAGS=none: one process, without the flag, and the log says so', T, async () => {
  const s = cli(['serve', '--stdio'], userEnv({ LLAVA_LENS_NODE_FLAGS: 'none' }));
  const client = stdioClient(s);
  try {
    const init = await client.initialize({});
    assert.equal(init.serverInfo.name, 'llava-lens');
    const line = await daemonLine(s);
    assert.equal(line.pid, s.child.pid, 'the process typed is the daemon');
    assert.equal(line.flags, '(none)');
    assert.equal(line.tunables, undefined);
    assert.equal(line.note, `; LLAVA_LENS_NODE_FLAGS=none: without --single-threaded-gc ${TUNABLES.split(':').join(' ')}`);
    assert.deepEqual(childrenOf(s.child.pid!), [], 'no child process');
    assert.ok(!cmdline(s.child.pid!).includes(FLAG));
    assert.equal(environ(s.child.pid!).GLIBC_TUNABLES, undefined, 'no tunables');
    await client.connection.sendRequest(ShutdownRequest);
    await client.connection.sendNotification(ExitNotification);
    assert.deepEqual(await s.exited, { code: 0, signal: null });
  } finally {
    client.dispose();
    s.child.kill('SIGKILL');
  }
});

test('serve --ws: a terminal\'s Ctrl-C (SIGINT to the launcher\'s process group) stops the daemon once, in order; exit code 0', T, async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-nodeflags-state-'));
  // Its own process group, as a shell's foreground job: the test signals the whole group.
  const s = cli(['serve', '--ws', '0', '--state-dir', stateDir], userEnv(), { detached: true });
  try {
    await s.waitForLog(/daemon listening on ws:\/\//);
    const line = await daemonLine(s);
    assert.equal(line.flags, FLAG);
    assert.equal(stat(line.pid)?.ppid, s.child.pid);
    process.kill(-s.child.pid!, 'SIGINT');
    assert.deepEqual(await s.exited, { code: 0, signal: null }, s.stderr());
    assert.equal(s.stderr().match(/SIGINT: stopping/g)?.length, 1, `one orderly stop, not cut short by a second SIGINT:\n${s.stderr()}`);
    await gone(line.pid);
  } finally {
    s.child.kill('SIGKILL');
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

test('LensClient.spawnStdio (ask, ocr, demo) puts the flag on the command line and the tunables in the environment: one process, no relaunch', T, async () => {
  let stderr = '';
  const client = LensClient.spawnStdio({ daemonPath: BIN, env: userEnv(), onStderr: (c) => (stderr += c) });
  try {
    await client.initialize({});
    const pid = client.child!.pid!;
    const daemonArgs = cmdline(pid);
    assert.deepEqual(daemonArgs.slice(1), [FLAG, BIN, 'serve', '--stdio']);
    assert.deepEqual(childrenOf(pid), [], 'no child process');
    assert.equal(environ(pid).GLIBC_TUNABLES, TUNABLES);
    assert.equal(environ(pid).LLAVA_LENS_NODE_FLAGS_SET, undefined, 'not a relaunched child');
    const m = FLAGS_LINE.exec(stderr);
    assert.ok(m, stderr);
    assert.equal(m[1], FLAG);
    assert.equal(m[2], TUNABLES);
    assert.equal(Number(m[3]), pid, 'the spawned process is the daemon');
    assert.equal(m[4], '');
  } finally {
    await client.shutdown();
  }
  // The user's own tunables: their keys win, ours are added for the others; still one process.
  stderr = '';
  const own = LensClient.spawnStdio({ daemonPath: BIN, env: userEnv({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072' }), onStderr: (c) => (stderr += c) });
  try {
    await own.initialize({});
    const pid = own.child!.pid!;
    const mine = `glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=${MALLOC_TRIM_THRESHOLD}`;
    assert.equal(environ(pid).GLIBC_TUNABLES, mine);
    assert.deepEqual(childrenOf(pid), [], 'no child process');
    const m = FLAGS_LINE.exec(stderr);
    assert.ok(m, stderr);
    assert.deepEqual([m[2], Number(m[3]), m[4]], [mine, pid, '']);
  } finally {
    await own.shutdown();
  }
  // The opt-out reaches it through its environment.
  stderr = '';
  const plain = LensClient.spawnStdio({ daemonPath: BIN, env: userEnv({ LLAVA_LENS_NODE_FLAGS: 'none' }), onStderr: (c) => (stderr += c) });
  try {
    await plain.initialize({});
    assert.deepEqual(cmdline(plain.child!.pid!).slice(1), [BIN, 'serve', '--stdio']);
    assert.equal(environ(plain.child!.pid!).GLIBC_TUNABLES, undefined);
    assert.match(stderr, /node flags: \(none\) \(pid/);
  } finally {
    await plain.shutdown();
  }
});

test('serve --node-ipc forked without flags: the child runs with them, the IPC channel is relayed, disconnecting ends both', T, async () => {
  const s = watch(fork(BIN, ['serve', '--node-ipc'], { env: userEnv(), execArgv: [], silent: true }));
  const client = new LensClient(createMessageConnection(new IPCMessageReader(s.child), new IPCMessageWriter(s.child)), s.child);
  try {
    const init = await client.initialize({});
    assert.equal(init.serverInfo.name, 'llava-lens');
    const line = await daemonLine(s);
    assert.equal(line.flags, FLAG);
    assert.equal(stat(line.pid)?.ppid, s.child.pid, 'answered by the launcher\'s child');
    assert.equal(environ(line.pid).GLIBC_TUNABLES, TUNABLES);
    s.child.disconnect();
    const end = await s.exited;
    assert.equal(end.signal, null);
    await gone(line.pid);
  } finally {
    client.dispose();
    s.child.kill('SIGKILL');
  }
});

test('serve --stdio typed with the flag but without the tunables: relaunched once for them (glibc reads them only at exec), the flag not doubled', T, async () => {
  const s = watch(spawn(process.execPath, [FLAG, BIN, 'serve', '--stdio'], { env: userEnv(), stdio: ['pipe', 'pipe', 'pipe'] }));
  const client = stdioClient(s);
  try {
    await client.initialize({});
    const line = await daemonLine(s);
    assert.notEqual(line.pid, s.child.pid, 'the daemon is a child');
    assert.equal(stat(line.pid)?.ppid, s.child.pid);
    assert.deepEqual([line.flags, line.tunables, line.note], [FLAG, TUNABLES, '']);
    assert.deepEqual(cmdline(line.pid).slice(1), [FLAG, BIN, 'serve', '--stdio']);
    assert.equal(environ(line.pid).GLIBC_TUNABLES, TUNABLES);
    await client.connection.sendRequest(ShutdownRequest);
    await client.connection.sendNotification(ExitNotification);
    assert.deepEqual(await s.exited, { code: 0, signal: null });
    await gone(line.pid);
  } finally {
    client.dispose();
    s.child.kill('SIGKILL');
  }
});

// DAEMON_NODE_ARGS and DAEMON_NODE_ENV come from this process's environment, as the extension's from the extension host's.
const plainHere = !nodeFlagsOptedOut(process.env) && ['GLIBC_TUNABLES', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_'].every((k) => process.env[k] === undefined);

test('serve --node-ipc forked as the extension forks it (execArgv DAEMON_NODE_ARGS, env with DAEMON_NODE_ENV): one process, flag and tunables', { ...T, skip: T.skip || (plainHere ? false : 'the test environment sets node flags or malloc tunables of its own') }, async () => {
  // client/src/daemon/lensDaemon.ts: env = { ...process.env, ...DAEMON_NODE_ENV, LLAVA_LENS_CACHE, ...backend }.
  const env = { ...userEnv(), ...DAEMON_NODE_ENV };
  const s = watch(fork(BIN, ['serve', '--node-ipc'], { env, execArgv: [...DAEMON_NODE_ARGS], silent: true }));
  const client = new LensClient(createMessageConnection(new IPCMessageReader(s.child), new IPCMessageWriter(s.child)), s.child);
  try {
    await client.initialize({});
    const line = await daemonLine(s);
    assert.equal(line.pid, s.child.pid, 'the forked process is the daemon');
    assert.deepEqual(childrenOf(s.child.pid!), [], 'no child process');
    assert.deepEqual([line.flags, line.note], [FLAG, '']);
    assert.equal(line.tunables, TUNABLES);
    assert.equal(environ(line.pid).GLIBC_TUNABLES, TUNABLES);
    s.child.disconnect();
    assert.equal((await s.exited).signal, null);
  } finally {
    client.dispose();
    s.child.kill('SIGKILL');
  }
});
