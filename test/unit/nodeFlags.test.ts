/** The daemon's node flags and environment (server/src/daemon/nodeFlags.ts): the lists, the checks, the merge, the opt-out, the log line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DAEMON_NODE_ARGS, DAEMON_NODE_ENV } from '../../client/src/settings';
import {
  DAEMON_ENV,
  DAEMON_NODE_FLAGS,
  MALLOC_MMAP_THRESHOLD,
  MALLOC_TRIM_THRESHOLD,
  daemonEnv,
  daemonNodeFlags,
  describeNodeFlags,
  mergeEnv,
  mergeTunables,
  missingDaemonFlags,
  nodeFlagsOptedOut,
  withDaemonEnv,
} from '../../server/src/daemon/nodeFlags';
import { NODE_CANDIDATES, OURS_NODE_ENV, OURS_NODE_FLAGS, candidateLabel } from '../bench/flags';

const OURS = DAEMON_ENV.GLIBC_TUNABLES;
const MMAP = `glibc.malloc.mmap_threshold=${MALLOC_MMAP_THRESHOLD}`;
const TRIM = `glibc.malloc.trim_threshold=${MALLOC_TRIM_THRESHOLD}`;

test('one list: the daemon, the extension and the bench use --single-threaded-gc and the same environment', () => {
  assert.deepEqual(DAEMON_NODE_FLAGS, ['--single-threaded-gc']);
  assert.deepEqual(OURS_NODE_FLAGS, DAEMON_NODE_FLAGS, 'the bench measures what the daemon runs with');
  assert.deepEqual(OURS_NODE_ENV, process.platform === 'linux' ? DAEMON_ENV : {}, 'and with its environment');
  const chosen = NODE_CANDIDATES.filter((c) => c.flags.join(' ') === DAEMON_NODE_FLAGS.join(' ') && JSON.stringify(c.env) === JSON.stringify(OURS_NODE_ENV));
  assert.equal(chosen.length, 1, 'the bench compares the chosen set');
  // The test runner's environment may opt out; the extension's execArgv and env follow it.
  assert.deepEqual(DAEMON_NODE_ARGS, nodeFlagsOptedOut(process.env) ? [] : DAEMON_NODE_FLAGS);
  assert.deepEqual(DAEMON_NODE_ENV, daemonEnv(process.env));
});

test('DAEMON_ENV: glibc malloc tunables, a threshold old glibc accepts', () => {
  assert.deepEqual(Object.keys(DAEMON_ENV), ['GLIBC_TUNABLES']);
  assert.equal(OURS, `${MMAP}:${TRIM}`);
  // glibc < 2.35 ignores an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit); the trim
  // setting would then freeze the threshold at 128 kB.
  assert.ok(MALLOC_MMAP_THRESHOLD <= 32 * 2 ** 20);
  assert.ok(MALLOC_MMAP_THRESHOLD > 4 * 2 ** 20, 'above a KV tensor of a long context');
  assert.ok(Object.isFrozen(DAEMON_ENV));
  assert.equal(candidateLabel({ flags: ['--a'], env: DAEMON_ENV }), `--a; GLIBC_TUNABLES=${OURS}`);
  assert.equal(candidateLabel({ flags: [], env: {} }), '(none)');
});

test('mergeTunables: the user\'s keys win; ours are appended for the others', () => {
  assert.equal(mergeTunables(undefined, OURS), OURS);
  assert.equal(mergeTunables('', OURS), OURS);
  assert.equal(mergeTunables('glibc.malloc.arena_max=2', OURS), `glibc.malloc.arena_max=2:${OURS}`, 'other keys kept, first');
  assert.equal(mergeTunables('glibc.malloc.mmap_threshold=131072', OURS), `glibc.malloc.mmap_threshold=131072:${TRIM}`);
  assert.equal(mergeTunables(`glibc.malloc.trim_threshold=0:glibc.malloc.tcache_count=0`, OURS), `glibc.malloc.trim_threshold=0:glibc.malloc.tcache_count=0:${MMAP}`);
  assert.equal(mergeTunables('glibc.malloc.trim_threshold=1:glibc.malloc.mmap_threshold=2', OURS), 'glibc.malloc.trim_threshold=1:glibc.malloc.mmap_threshold=2', 'both set: unchanged');
  assert.equal(mergeTunables('glibc.malloc.arena_max=2:', OURS), `glibc.malloc.arena_max=2:${OURS}`, 'a trailing colon: no empty entry');
  assert.equal(mergeTunables('glibc.malloc.trim_threshold=1:glibc.malloc.mmap_threshold=2:', OURS), 'glibc.malloc.trim_threshold=1:glibc.malloc.mmap_threshold=2:', 'nothing added: as written');
  assert.equal(mergeTunables('glibc.malloc.mmap_threshold', OURS), `glibc.malloc.mmap_threshold:${TRIM}`, 'a key without a value counts as set');
  assert.equal(mergeTunables('glibc.malloc.mmap_threshold_x=1', OURS), `glibc.malloc.mmap_threshold_x=1:${OURS}`, 'a longer name is another key');
  // The older variables of the same tunables are the user's setting too.
  assert.equal(mergeTunables(undefined, OURS, { MALLOC_TRIM_THRESHOLD_: '0' }), MMAP);
  assert.equal(mergeTunables(undefined, OURS, { MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '0' }), '');
});

test('daemonEnv: what a daemon\'s environment gets; Linux only; LLAVA_LENS_NODE_FLAGS=none drops it', () => {
  assert.deepEqual(daemonEnv({}, 'linux'), { GLIBC_TUNABLES: OURS });
  assert.deepEqual(daemonEnv({ PATH: '/bin' }, 'linux'), { GLIBC_TUNABLES: OURS }, 'only what changes');
  assert.deepEqual(daemonEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, 'linux'), { GLIBC_TUNABLES: `glibc.malloc.arena_max=2:${OURS}` });
  assert.deepEqual(daemonEnv({ GLIBC_TUNABLES: OURS }, 'linux'), {}, 'already there (a relaunched child): nothing');
  assert.deepEqual(daemonEnv({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=1:glibc.malloc.trim_threshold=2' }, 'linux'), {});
  assert.deepEqual(daemonEnv({ MALLOC_MMAP_THRESHOLD_: '1', MALLOC_TRIM_THRESHOLD_: '2' }, 'linux'), {}, 'no empty GLIBC_TUNABLES');
  assert.deepEqual(daemonEnv({ MALLOC_TRIM_THRESHOLD_: '2' }, 'linux'), { GLIBC_TUNABLES: MMAP });
  for (const platform of ['darwin', 'win32', 'freebsd'] as const) assert.deepEqual(daemonEnv({}, platform), {}, platform);
  for (const v of ['none', 'NONE', ' none ']) assert.deepEqual(daemonEnv({ LLAVA_LENS_NODE_FLAGS: v }, 'linux'), {}, v);
  assert.deepEqual(daemonEnv({ LLAVA_LENS_NODE_FLAGS: 'off' }, 'linux'), { GLIBC_TUNABLES: OURS }, 'only "none" opts out');

  const user = { PATH: '/bin', GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' };
  const env = withDaemonEnv(user, 'linux');
  assert.deepEqual(env, { PATH: '/bin', GLIBC_TUNABLES: `glibc.malloc.arena_max=2:${OURS}` });
  assert.deepEqual(user, { PATH: '/bin', GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, 'the given environment is not changed');
  assert.deepEqual(withDaemonEnv(user, 'darwin'), user);

  // Other variables (none today) only when unset.
  assert.deepEqual(mergeEnv({ A: '1' }, { A: '2', B: '3' }), { B: '3' });
});

test('missingDaemonFlags: what a command line lacks', () => {
  assert.deepEqual(missingDaemonFlags([]), ['--single-threaded-gc']);
  assert.deepEqual(missingDaemonFlags(['--inspect', '--max-old-space-size=4096']), ['--single-threaded-gc']);
  assert.deepEqual(missingDaemonFlags(['--single-threaded-gc']), []);
  assert.deepEqual(missingDaemonFlags(['--inspect', '--single-threaded-gc']), []);
  assert.deepEqual(missingDaemonFlags(['--single_threaded_gc']), [], 'V8 spelling with underscores');
  assert.deepEqual(missingDaemonFlags(['--no-single-threaded-gc']), [], 'turned off on purpose: not added back');
  assert.deepEqual(missingDaemonFlags(['--single-threaded-gc-x']), ['--single-threaded-gc'], 'a longer name is another flag');
  assert.deepEqual(missingDaemonFlags(['-e', 'single-threaded-gc']), ['--single-threaded-gc'], 'not a flag');
  assert.deepEqual(missingDaemonFlags(['--a'], ['--a', '--b=1', '--c']), ['--b=1', '--c'], 'in the list\'s order, values kept');
  assert.deepEqual(missingDaemonFlags(['--b=2'], ['--b=1']), [], 'any value counts as given');
});

test('LLAVA_LENS_NODE_FLAGS=none opts out; nothing else does', () => {
  for (const v of ['none', 'NONE', ' none ']) {
    assert.equal(nodeFlagsOptedOut({ LLAVA_LENS_NODE_FLAGS: v }), true, v);
    assert.deepEqual(daemonNodeFlags({ LLAVA_LENS_NODE_FLAGS: v }), []);
  }
  for (const v of [undefined, '', '0', 'off', 'nonsense']) {
    assert.equal(nodeFlagsOptedOut({ LLAVA_LENS_NODE_FLAGS: v }), false, String(v));
    assert.deepEqual(daemonNodeFlags({ LLAVA_LENS_NODE_FLAGS: v }), ['--single-threaded-gc']);
  }
  const flags = daemonNodeFlags({});
  flags.push('--mutated');
  assert.deepEqual(DAEMON_NODE_FLAGS, ['--single-threaded-gc'], 'callers get a copy');
});

test('describeNodeFlags: the daemon\'s start log line', () => {
  const ours = { GLIBC_TUNABLES: OURS };
  assert.equal(describeNodeFlags(['--single-threaded-gc'], ours, 42, 'linux'), `node flags: --single-threaded-gc; GLIBC_TUNABLES=${OURS} (pid 42)`);
  assert.equal(describeNodeFlags(['--single-threaded-gc', '--inspect'], ours, 42, 'linux'), `node flags: --single-threaded-gc --inspect; GLIBC_TUNABLES=${OURS} (pid 42)`);
  const theirs = { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=0:glibc.malloc.mmap_threshold=65536' };
  assert.equal(describeNodeFlags(['--single-threaded-gc'], theirs, 42, 'linux'), `node flags: --single-threaded-gc; GLIBC_TUNABLES=${theirs.GLIBC_TUNABLES} (pid 42)`, 'the user\'s own values: nothing missing');
  assert.equal(describeNodeFlags([], { LLAVA_LENS_NODE_FLAGS: 'none' }, 7, 'linux'), `node flags: (none) (pid 7); LLAVA_LENS_NODE_FLAGS=none: without --single-threaded-gc ${MMAP} ${TRIM}`);
  assert.equal(
    describeNodeFlags([], { LLAVA_LENS_NODE_FLAGS: 'none', GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, 7, 'linux'),
    `node flags: (none); GLIBC_TUNABLES=glibc.malloc.arena_max=2 (pid 7); LLAVA_LENS_NODE_FLAGS=none: without --single-threaded-gc ${MMAP} ${TRIM}`,
  );
  assert.match(describeNodeFlags([], {}, 7, 'linux'), new RegExp(`^node flags: \\(none\\) \\(pid 7\\); without --single-threaded-gc ${MMAP} ${TRIM}: slower decoding`));
  assert.equal(describeNodeFlags(['--single-threaded-gc'], { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=1' }, 7, 'linux'), `node flags: --single-threaded-gc; GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1 (pid 7); without ${TRIM}: slower decoding (docs/performance.md)`);
  // Off Linux: no tunables, shown or missing.
  assert.equal(describeNodeFlags(['--single-threaded-gc'], {}, 42, 'darwin'), 'node flags: --single-threaded-gc (pid 42)');
  assert.equal(describeNodeFlags(['--single-threaded-gc'], theirs, 42, 'win32'), 'node flags: --single-threaded-gc (pid 42)');
  assert.equal(describeNodeFlags([], { LLAVA_LENS_NODE_FLAGS: 'none' }, 7, 'darwin'), 'node flags: (none) (pid 7); LLAVA_LENS_NODE_FLAGS=none: without --single-threaded-gc');
});
