/** The daemon's node flags (server/src/daemon/nodeFlags.ts): the list, the check, the opt-out, the log line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DAEMON_NODE_ARGS } from '../../client/src/settings';
import {
  DAEMON_NODE_FLAGS,
  daemonNodeFlags,
  describeNodeFlags,
  missingDaemonFlags,
  nodeFlagsOptedOut,
} from '../../server/src/daemon/nodeFlags';
import { FLAG_CANDIDATES, OURS_NODE_FLAGS } from '../bench/flags';

test('one list: the daemon, the extension and the bench use --single-threaded-gc', () => {
  assert.deepEqual(DAEMON_NODE_FLAGS, ['--single-threaded-gc']);
  assert.deepEqual(OURS_NODE_FLAGS, DAEMON_NODE_FLAGS, 'the bench measures what the daemon runs with');
  assert.ok(FLAG_CANDIDATES.some((c) => c.join(' ') === DAEMON_NODE_FLAGS.join(' ')), 'the bench compares the chosen set');
  // The test runner's environment may opt out; the extension's execArgv follows it.
  assert.deepEqual(DAEMON_NODE_ARGS, nodeFlagsOptedOut(process.env) ? [] : DAEMON_NODE_FLAGS);
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
  assert.equal(describeNodeFlags(['--single-threaded-gc'], {}, 42), 'node flags: --single-threaded-gc (pid 42)');
  assert.equal(describeNodeFlags(['--single-threaded-gc', '--inspect'], {}, 42), 'node flags: --single-threaded-gc --inspect (pid 42)');
  assert.equal(describeNodeFlags([], { LLAVA_LENS_NODE_FLAGS: 'none' }, 7), 'node flags: (none) (pid 7); LLAVA_LENS_NODE_FLAGS=none: without --single-threaded-gc');
  assert.match(describeNodeFlags([], {}, 7), /^node flags: \(none\) \(pid 7\); without --single-threaded-gc: slower decoding/);
});
