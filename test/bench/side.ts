/**
 * What each measured side (ours, transformers.js) implements, and the messages between the
 * bench and its child processes. Every side runs in its own child process so its peak resident
 * memory is its own.
 */
import type { GraphTuningPasses } from '../../server/src/runtime/types';

export interface LoadArgs {
  /** Model folder both sides load (the single-view twin). */
  dir: string;
  /** Token ids that must not end a forced-length answer (EOS, turn separator). */
  banIds: number[];
  /** Ours only: load-time graph tuning: every pass (default, `true`), off (`false`), or the passes given. */
  tuning?: boolean | GraphTuningPasses;
  /**
   * transformers.js only: intra-op threads, set to what ours uses (`defaultIntraOpThreads()`), so
   * both sides run the same thread count; undefined leaves onnxruntime's default on both sides.
   */
  threads?: number;
}

export interface TurnResult {
  /** From the call (image file path in hand) to the first generated token, ms. */
  ttftMs: number;
  /** Vision encoder time inside the call, ms (0 when cached / not run). */
  visionMs: number;
  /** Tokens in the context when the first token was sampled. */
  promptTokens: number;
  /** Tokens generated. */
  tokens: number;
  /** (tokens - 1) / time from the first to the last token; 0 for 1-token turns. */
  decodeTps: number;
  /** Generated ids (for the same-tokens check). */
  ids: number[];
}

export interface PreprocessResult {
  decodeMs: number;
  preprocessMs: number;
  totalMs: number;
  views: number;
}

export interface SideStats {
  peakRssMB: number;
  rssMB: number;
  loadMs: number;
  notes: string[];
}

export interface Side {
  load(a: LoadArgs): Promise<{ loadMs: number; notes: string[] }>;
  /** Decode + preprocess one image file (as the side does for a request). `anyres` (ours only): the tiling path. */
  preprocess(file: string, anyres: boolean): Promise<PreprocessResult>;
  /** A new conversation about a new image; `tokens` forced new tokens. Keeps the conversation for `followUp`. */
  newImage(image: string, question: string, tokens: number): Promise<TurnResult>;
  /** A new conversation about an image seen before; one token. */
  repeatImage(image: string, question: string): Promise<TurnResult>;
  /** A follow-up question in the conversation of the last `newImage`; one token. As users run it. */
  followUp(question: string): Promise<TurnResult>;
  /** transformers.js only: the follow-up with the KV cache of `newImage` passed back by hand. */
  followUpKv?(question: string): Promise<TurnResult>;
  stats(): Promise<SideStats>;
}

export type Command = { [K in keyof Side]-?: { id: number; cmd: K; args: Parameters<Exclude<Side[K], undefined>> } }[keyof Side];
export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/** Peak and current resident memory of this process, MB. */
export function memory(): { peakRssMB: number; rssMB: number } {
  return { peakRssMB: process.resourceUsage().maxRSS / 1024, rssMB: process.memoryUsage().rss / 1e6 };
}

/** Timestamps of streamed tokens -> TurnResult fields. */
export function turnFrom(t0: number, stamps: number[], ids: number[], visionMs: number, promptTokens: number): TurnResult {
  const n = stamps.length;
  const decodeTps = n > 1 ? ((n - 1) * 1000) / (stamps[n - 1] - stamps[0]) : 0;
  return { ttftMs: n ? stamps[0] - t0 : NaN, visionMs, promptTokens, tokens: n, decodeTps, ids };
}
