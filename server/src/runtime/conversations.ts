/**
 * Conversation history kept by the engine between turns.
 *
 * A conversation keeps what the template needs to re-render it (messages), the ids that are in
 * the model's context (image tokens expanded) with the features of every image, and the KV cache
 * covering a prefix of those ids. Only the most recently used conversations keep a KV cache
 * (`maxCachedKv`); the others are re-prefilled from their ids and features when resumed.
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
}

export const DEFAULT_LIMITS: ConversationLimits = { maxConversations: 64, maxCachedKv: 4, maxHistoryTurns: 16 };

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

  /** Marks `c` used now and enforces the limits on the others. */
  touch(c: Conversation): void {
    c.lastUsed = Date.now();
    const byAge = [...this.map.values()].sort((a, b) => b.lastUsed - a.lastUsed);
    byAge.slice(this.limits.maxCachedKv).forEach((x) => {
      if (x !== c) {
        x.cache?.dispose();
        x.cache = undefined;
      }
    });
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
