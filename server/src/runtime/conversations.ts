/**
 * Conversation history kept by the engine between turns.
 *
 * A conversation keeps what the template needs to re-render it (messages), the ids that are in
 * the model's context (image tokens expanded) with the features of every image, and the KV cache
 * covering a prefix of those ids. Only the most recently used conversations keep a KV cache
 * (`maxCachedKv`, and at most `maxKvBytes` in all and `maxKvBytesPerOwner` per client of a
 * shared daemon); the others are re-prefilled from their ids and features when resumed.
 * With a state folder, the engine also writes each completed turn to the conversation log
 * (conversationLog.ts) and restores conversations this store no longer holds from it.
 */
import { randomUUID } from 'node:crypto';
import type { KvCache } from './kvcache';
import type { ImageFeatures } from './merge';
import type { ChatMessage } from './prompt';

export interface Conversation {
  id: string;
  messages: ChatMessage[];
  /** Ids in the context, including the last sampled token (which the cache may not cover yet). */
  ids: number[];
  /** Features of every image in `messages`, in order. */
  images: ImageFeatures[];
  /** Generated ids of the last answer, as produced. */
  lastAnswerIds: number[];
  cache?: KvCache;
  lastUsed: number;
  /** The client that used it last (shared daemon), for the per-client KV bound. */
  owner?: string;
  /**
   * What the conversation log already holds (undefined when not persisted): the context ids it
   * replays to, how many of `messages` it has, and the history ranges dropped since (`[start,
   * count]`, recorded with the next turn).
   */
  persisted?: { ids: number[]; messages: number; drops: Array<[number, number]> };
}

export interface ConversationLimits {
  /** Conversations kept at all (least recently used dropped). */
  maxConversations: number;
  /** Conversations whose KV cache is kept. */
  maxCachedKv: number;
  /** User turns kept per conversation (older turns dropped). */
  maxHistoryTurns: number;
  /** Bytes of KV cache kept over all conversations; 0 = no byte bound. */
  maxKvBytes: number;
  /** Bytes of KV cache kept per owner (client); 0 = no bound. */
  maxKvBytesPerOwner: number;
}

export const DEFAULT_LIMITS: ConversationLimits = { maxConversations: 64, maxCachedKv: 4, maxHistoryTurns: 16, maxKvBytes: 2 * 1024 ** 3, maxKvBytesPerOwner: 0 };

export class ConversationStore {
  private readonly map = new Map<string, Conversation>();

  constructor(readonly limits: ConversationLimits = DEFAULT_LIMITS) {}

  get(id: string): Conversation | undefined {
    return this.map.get(id);
  }

  /** A new, empty conversation; `id` (default a random UUID) must not be in the store. */
  create(id: string = randomUUID()): Conversation {
    const c: Conversation = { id, messages: [], ids: [], images: [], lastAnswerIds: [], lastUsed: Date.now() };
    this.map.set(c.id, c);
    return c;
  }

  /**
   * Marks `c` used now and enforces the limits on the others: least recently used caches go
   * first. `c` keeps its cache even when it alone is over a byte bound (it is the one in use).
   */
  touch(c: Conversation): void {
    c.lastUsed = Date.now();
    const byAge = [...this.map.values()].sort((a, b) => b.lastUsed - a.lastUsed);
    const drop = (x: Conversation) => {
      x.cache?.dispose();
      x.cache = undefined;
    };
    byAge.slice(this.limits.maxCachedKv).forEach((x) => x !== c && drop(x));
    const trim = (group: Conversation[], max: number) => {
      if (max <= 0) return;
      let total = group.reduce((n, x) => n + (x.cache?.bytes() ?? 0), 0);
      for (const x of [...group].reverse()) {
        if (total <= max) break;
        if (x === c || !x.cache) continue;
        total -= x.cache.bytes();
        drop(x);
      }
    };
    if (c.owner !== undefined) trim(byAge.filter((x) => x.owner === c.owner), this.limits.maxKvBytesPerOwner);
    trim(byAge, this.limits.maxKvBytes);
    byAge.slice(this.limits.maxConversations).forEach((x) => {
      if (x !== c) this.delete(x.id);
    });
  }

  delete(id: string): void {
    this.map.get(id)?.cache?.dispose();
    this.map.delete(id);
  }

  clear(): void {
    for (const id of [...this.map.keys()]) this.delete(id);
  }

  kvBytes(): number {
    let n = 0;
    for (const c of this.map.values()) n += c.cache?.bytes() ?? 0;
    return n;
  }
}
