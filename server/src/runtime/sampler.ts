/**
 * Sampling: a pure function of (logits, options, rng, previous tokens). Owns no state.
 *
 * Order of processors follows Hugging Face `generate`: repetition penalty -> temperature ->
 * top-k -> top-p -> draw. `temperature === 0` means greedy (argmax after the repetition
 * penalty); ties resolve to the lowest id, as `argmax` does in transformers.js and PyTorch.
 */

export interface SamplerOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /** Keep the smallest set whose probability mass reaches p; 1 = off. */
  topP: number;
  /** CTRL-style penalty on tokens already in the context; 1 = off. */
  repetitionPenalty: number;
}

/** A seedable RNG yielding floats in [0, 1). */
export type Rng = () => number;

/** mulberry32: small, fast, deterministic for a 32-bit seed. */
export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Checks options; returns an error message naming the field, or undefined. */
export function validateSamplerOptions(o: SamplerOptions): string | undefined {
  if (!Number.isFinite(o.temperature) || o.temperature < 0) return `temperature must be a number >= 0 (0 = greedy), got ${o.temperature}`;
  if (!Number.isInteger(o.topK) || o.topK < 0) return `topK must be an integer >= 0 (0 = off), got ${o.topK}`;
  if (!Number.isFinite(o.topP) || o.topP <= 0 || o.topP > 1) return `topP must be in (0, 1] (1 = off), got ${o.topP}`;
  if (!Number.isFinite(o.repetitionPenalty) || o.repetitionPenalty <= 0) return `repetitionPenalty must be > 0 (1 = off), got ${o.repetitionPenalty}`;
  return undefined;
}

/**
 * Applies the repetition penalty in place (HF semantics: a seen token's logit is divided by the
 * penalty when positive and multiplied when negative). Each distinct id is penalised once.
 */
export function applyRepetitionPenalty(logits: Float32Array, previous: readonly number[], penalty: number): void {
  if (penalty === 1) return;
  const seen = new Set<number>();
  for (const id of previous) {
    if (seen.has(id) || id < 0 || id >= logits.length) continue;
    seen.add(id);
    const v = logits[id];
    logits[id] = v > 0 ? v / penalty : v * penalty;
  }
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i] > bestV) {
      bestV = x[i];
      best = i;
    }
  }
  return best;
}

/**
 * Picks the next token id.
 * @param logits [V] f32 — not modified (a copy is penalised).
 * @param previous token ids already in the context (prompt + generated), for the repetition penalty.
 */
export function sample(logits: Float32Array, o: SamplerOptions, rng: Rng, previous: readonly number[] = []): number {
  const x = o.repetitionPenalty === 1 ? logits : Float32Array.from(logits);
  applyRepetitionPenalty(x, previous, o.repetitionPenalty);
  if (o.temperature === 0) return argmax(x);

  // Candidates sorted by logit, descending (stable on id for ties).
  let ids = Array.from(x.keys());
  ids.sort((a, b) => x[b] - x[a] || a - b);
  if (o.topK > 0 && o.topK < ids.length) ids = ids.slice(0, o.topK);

  // Softmax over the candidates at the given temperature.
  const maxL = x[ids[0]] / o.temperature;
  const probs = ids.map((id) => Math.exp(x[id] / o.temperature - maxL));
  let total = probs.reduce((s, p) => s + p, 0);

  if (o.topP < 1) {
    // Keep the smallest prefix whose mass reaches topP (always at least one token).
    let mass = 0;
    let keep = 0;
    while (keep < probs.length) {
      mass += probs[keep] / total;
      keep++;
      if (mass >= o.topP) break;
    }
    ids = ids.slice(0, keep);
    probs.length = keep;
    total = probs.reduce((s, p) => s + p, 0);
  }

  let r = rng() * total;
  for (let i = 0; i < ids.length; i++) {
    r -= probs[i];
    if (r < 0) return ids[i];
  }
  return ids[ids.length - 1];
}
