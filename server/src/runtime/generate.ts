/**
 * The generation loop, a small state machine (after llama2.c `generate`):
 *
 *   logits -> sample -> stop checks (EOS, cancellation) -> emit -> stop checks (stop string,
 *   length, context) -> embed the token -> decoder step -> logits ...
 *
 * The loop forwards every emitted token except the last one sampled, so on return
 * `cache.length === contextIds.length - 1` unless the loop ended before sampling (cancelled).
 *
 * Streaming contract: `onToken` is called exactly once per id in `tokenIds` (the EOS id too,
 * with empty text), in order, and the texts it is given concatenate to `text`. Text that may
 * still change (an incomplete UTF-8 sequence, a possible stop-string prefix) is held back until
 * the next token; the last token's call carries whatever is left.
 */
import type { Decoder } from './decoder';
import type { Embedder } from './embed';
import type { KvCache } from './kvcache';
import type { PromptFormat } from './prompt';
import { sample, type Rng, type SamplerOptions } from './sampler';
import type { FinishReason } from './types';

export interface GenerateArgs {
  decoder: Decoder;
  embedder: Embedder;
  format: PromptFormat;
  /** Cache after the prompt prefill. Ownership passes to the loop; the returned cache is the live one. */
  cache: KvCache;
  /** Logits of the last prompt position [V] f32. */
  logits: Float32Array;
  /** All ids in the context so far (prompt); the loop appends what it samples. */
  contextIds: number[];
  sampler: SamplerOptions;
  rng: Rng;
  maxTokens: number;
  /** Context length of the model: generation stops before exceeding it. */
  maxContext: number;
  eosIds: ReadonlySet<number>;
  stop: readonly string[];
  signal: AbortSignal;
  onToken: (text: string, tokenId: number) => void;
  /** Optional logits processor, run in place before each sample; `step` = index of the token being sampled. */
  processLogits?: (logits: Float32Array, step: number) => void;
}

export interface GenerateResult {
  tokenIds: number[];
  text: string;
  finishReason: FinishReason;
  cache: KvCache;
  /** performance.now() when the first token was sampled, if any */
  firstTokenAt?: number;
}

/** Longest suffix of `text` that is a proper prefix of some stop string (held back while streaming). */
function pendingStopPrefix(text: string, stop: readonly string[]): number {
  let hold = 0;
  for (const s of stop) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

export async function generate(a: GenerateArgs): Promise<GenerateResult> {
  const ids: number[] = [];
  let cache = a.cache;
  let logits = a.logits;
  let emitted = 0; // characters of `text` already sent
  let text = '';
  let finishReason: FinishReason | undefined;
  let firstTokenAt: number | undefined;
  const stops = a.stop.filter((s) => s.length > 0);

  const flush = (final: boolean, tokenId: number) => {
    let upto = text.length;
    if (!final) {
      if (text.endsWith('\uFFFD')) upto = text.lastIndexOf('\uFFFD'); // incomplete UTF-8 sequence
      upto = Math.min(upto, text.length - pendingStopPrefix(text, stops));
    }
    if (upto > emitted || final) {
      a.onToken(text.slice(emitted, Math.max(upto, emitted)), tokenId);
      emitted = Math.max(upto, emitted);
    } else {
      a.onToken('', tokenId);
    }
  };

  for (;;) {
    if (a.signal.aborted) {
      finishReason = 'cancelled';
      text = text.slice(0, emitted); // held-back text never went out: the answer is what was streamed
      break;
    }
    // 1. (processors, then) sample
    a.processLogits?.(logits, ids.length);
    const id = sample(logits, a.sampler, a.rng, a.contextIds);
    firstTokenAt ??= performance.now();
    ids.push(id);
    a.contextIds.push(id);
    // 2. EOS / turn separator ends the answer; its text is not part of it
    if (a.eosIds.has(id)) {
      finishReason = 'eos';
      flush(true, id);
      break;
    }
    // 3. emit new text, then stop strings
    text = a.format.decode(ids.filter((t) => !a.eosIds.has(t)));
    const hit = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
    if (hit.length) {
      text = text.slice(0, Math.min(...hit));
      finishReason = 'stop';
      flush(true, id);
      break;
    }
    // 4. limits
    if (ids.length >= a.maxTokens || a.contextIds.length >= a.maxContext) finishReason = 'length';
    else if (a.signal.aborted) finishReason = 'cancelled';
    flush(finishReason !== undefined, id);
    if (finishReason) break;
    // 5. forward the token
    const embeds = await a.embedder.embed([id]);
    const next = await a.decoder.step(embeds, 1, cache);
    cache.dispose();
    cache = next.cache;
    logits = next.logits;
  }
  return { tokenIds: ids, text, finishReason, cache, firstTokenAt };
}
