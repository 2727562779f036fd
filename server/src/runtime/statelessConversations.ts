/**
 * Stateless asks (`AskRequest.history`, sent by the OpenAI-compatible endpoint): every request
 * carries the whole conversation. The engine answers each in a conversation of its own, and this
 * index remembers, by a fingerprint of the messages (role, text, SHA-256 of each image's bytes),
 * the conversations such asks left behind. A request whose history is exactly an earlier
 * request's history plus the answer it got continues that conversation, KV cache included,
 * instead of prefilling everything again.
 *
 * Only the `max` most recent are kept: `put` hands back the ids that fell out, for the caller
 * to delete. Nothing here is persisted.
 */
import { createHash } from 'node:crypto';

/** A message as fingerprinted: images by the hex SHA-256 of their bytes. */
export interface PrintedMessage {
  role: string;
  text: string;
  images: string[];
}

export function imageKey(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function fingerprint(messages: readonly PrintedMessage[]): string {
  const h = createHash('sha256');
  for (const m of messages) h.update(JSON.stringify([m.role, m.text, m.images])).update('\n');
  return h.digest('hex');
}

export class StatelessIndex {
  /** fingerprint -> conversation id, oldest first. */
  private readonly byPrint = new Map<string, string>();

  constructor(private readonly max = 8) {}

  /** The conversation whose messages are `print`, removed from the index (it is about to move on). */
  take(print: string): string | undefined {
    const id = this.byPrint.get(print);
    this.byPrint.delete(print);
    return id;
  }

  /**
   * Records that conversation `id` holds the messages `print`. Returns the ids that no longer fit
   * (the oldest, or one that held the same messages: the same request sent twice).
   */
  put(print: string, id: string): string[] {
    const out: string[] = [];
    const same = this.byPrint.get(print);
    if (same !== undefined && same !== id) out.push(same);
    this.byPrint.delete(print);
    this.byPrint.set(print, id);
    for (const [p, old] of this.byPrint) {
      if (this.byPrint.size <= this.max) break;
      this.byPrint.delete(p);
      out.push(old);
    }
    return out;
  }

  /** Whether `id` is a stateless conversation this index holds. */
  has(id: string): boolean {
    for (const v of this.byPrint.values()) if (v === id) return true;
    return false;
  }

  remove(id: string): void {
    for (const [p, v] of this.byPrint) if (v === id) this.byPrint.delete(p);
  }

  clear(): void {
    this.byPrint.clear();
  }
}
