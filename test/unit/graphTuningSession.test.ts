/**
 * Session options that go with graph tuning (server/src/runtime/backend.ts): the default intra-op
 * thread count read from the CPU topology.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultIntraOpThreads } from '../../server/src/runtime/backend';

function fakeSys(cpus: Array<[pkg: number, core: number] | null>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llava-lens-sys-'));
  cpus.forEach((c, i) => {
    const cpu = path.join(dir, `cpu${i}`);
    fs.mkdirSync(cpu);
    if (!c) return; // offline: no topology folder
    fs.mkdirSync(path.join(cpu, 'topology'));
    fs.writeFileSync(path.join(cpu, 'topology', 'physical_package_id'), `${c[0]}\n`);
    fs.writeFileSync(path.join(cpu, 'topology', 'core_id'), `${c[1]}\n`);
  });
  fs.mkdirSync(path.join(dir, 'cpufreq'));
  return dir;
}

test('one thread per physical core: SMT siblings and offline CPUs do not count', () => {
  const cap = os.availableParallelism();
  const smt = fakeSys([[0, 0], [0, 1], [0, 0], [0, 1]]);
  assert.equal(defaultIntraOpThreads('linux', smt), Math.min(2, cap));
  const twoSockets = fakeSys([[0, 0], [1, 0], null]);
  assert.equal(defaultIntraOpThreads('linux', twoSockets), Math.min(2, cap));
  for (const d of [smt, twoSockets]) fs.rmSync(d, { recursive: true, force: true });
});

test("elsewhere, or when the topology cannot be read, onnxruntime's default", () => {
  assert.equal(defaultIntraOpThreads('darwin'), undefined);
  assert.equal(defaultIntraOpThreads('win32'), undefined);
  assert.equal(defaultIntraOpThreads('linux', path.join(os.tmpdir(), 'no-such-sys-folder')), undefined);
});
