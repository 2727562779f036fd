/**
 * Prefix cache: the KV of "system prompt + image(s)" from earlier prefills, so a new
 * conversation about an image already seen skips re-reading the image tokens (hundreds to
 * thousands of positions) and prefills only its question.
 *
 * Keyed by the exact context ids up to and including the last image token and the content keys
 * of those images (the ids alone cannot tell two images apart: their slots hold the same
 * placeholder id). Entries are `KvCache.prefix` copies of a full prefill, so the first ask is
 * computed exactly as without this cache; a hit continues from the stored positions like a
 * follow-up turn does. Least recently used entries go first (`maxEntries`).
 */
import { createHash } from 'node:crypto';
import type { KvCache } from './kvcache';

export class PrefixCache {
  private readonly entries = new Map<string, KvCache>();

  constructor(private readonly maxEntries = 4) {}

  static key(ids: readonly number[], imageKeys: readonly string[]): string {
    return createHash('sha256').update(Int32Array.from(ids)).update(imageKeys.join('\n')).digest('hex');
  }

  get(key: string): KvCache | undefined {
    const c = this.entries.get(key);
    if (c) {
      this.entries.delete(key); // most recently used last
      this.entries.set(key, c);
    }
    return c;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  set(key: string, cache: KvCache): void {
    this.entries.get(key)?.dispose();
    this.entries.delete(key);
    this.entries.set(key, cache);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value!;
      this.entries.get(oldest)?.dispose();
      this.entries.delete(oldest);
    }
  }

  bytes(): number {
    let n = 0;
    for (const c of this.entries.values()) n += c.bytes();
    return n;
  }

  clear(): void {
    for (const c of this.entries.values()) c.dispose();
    this.entries.clear();
  }
}
