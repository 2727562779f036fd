/** ConversationStore limits: count, total KV bytes, KV bytes per owner (least recently used first). */
import assert from 'node:assert/strict';
import test from 'node:test';
import { ConversationStore, DEFAULT_LIMITS } from '../../server/src/runtime/conversations';
import type { KvCache } from '../../server/src/runtime/kvcache';

function fakeCache(bytes: number, disposed: string[], name: string): KvCache {
  return { bytes: () => bytes, dispose: () => disposed.push(name), length: 1 } as unknown as KvCache;
}

function setup(limits: Partial<typeof DEFAULT_LIMITS>) {
  const store = new ConversationStore({ ...DEFAULT_LIMITS, maxCachedKv: 100, ...limits });
  const disposed: string[] = [];
  let clock = 1000;
  const use = (id: string, bytes: number, owner?: string) => {
    const c = store.get(id) ?? store.create(id);
    c.cache = fakeCache(bytes, disposed, id);
    if (owner !== undefined) c.owner = owner;
    const now = Date.now;
    Date.now = () => clock++;
    try {
      store.touch(c);
    } finally {
      Date.now = now;
    }
  };
  return { store, disposed, use };
}

test('the total KV byte bound drops the least recently used caches, never the one in use', () => {
  const { store, disposed, use } = setup({ maxKvBytes: 250 });
  use('a', 100);
  use('b', 100);
  assert.deepEqual(disposed, []);
  use('c', 100); // 300 > 250: a (oldest) goes
  assert.deepEqual(disposed, ['a']);
  assert.equal(store.get('a')?.cache, undefined, 'history kept, cache dropped');
  assert.ok(store.get('a'), 'the conversation itself stays (recomputed when resumed)');
  use('d', 400); // d alone is over the bound: the others go, d keeps its cache
  assert.deepEqual(disposed, ['a', 'b', 'c']);
  assert.ok(store.get('d')?.cache);
  assert.equal(store.kvBytes(), 400);
});

test('the per-owner bound only drops that owner\'s caches', () => {
  const { store, disposed, use } = setup({ maxKvBytes: 0, maxKvBytesPerOwner: 150 });
  use('x1', 100, 'X');
  use('y1', 100, 'Y');
  use('y2', 100, 'Y'); // Y: 200 > 150 -> y1 goes; X untouched
  assert.deepEqual(disposed, ['y1']);
  use('x2', 100, 'X'); // X: 200 > 150 -> x1 goes
  assert.deepEqual(disposed, ['y1', 'x1']);
  assert.ok(store.get('y2')?.cache && store.get('x2')?.cache);
});
