/**
 * Byte-level BPE: the GPT-2 byte-to-unicode alphabet and a deterministic merge trainer.
 *
 * Training is the textbook algorithm: split the corpus with the pre-tokenizer regex, write each
 * piece as byte-alphabet characters, then repeatedly merge the most frequent adjacent pair
 * (counted over all pieces, weighted by piece frequency). Ties go to the pair that sorts first
 * (left symbol, then right symbol, by UTF-16 code units), so the result depends only on the
 * corpus and the merge count.
 */

/**
 * The pre-tokenizer pattern written into tokenizer.json (Qwen2 / GPT-4 style: case-insensitive
 * English contractions, letter runs with one optional leading non-letter, single digits,
 * punctuation runs, newlines, spaces).
 */
export const SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** The same pattern for JavaScript (no inline case-insensitive group in Node 20). */
const SPLIT_REGEX_JS =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** Byte value -> printable character (GPT-2 byte-level alphabet). */
export function byteToUnicode(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = printable(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return table;
}

/** Splits text into pre-tokens exactly as training sees them. */
export function preTokenize(text: string): string[] {
  return text.match(SPLIT_REGEX_JS) ?? [];
}

export interface BpeModel {
  /** Tokens in id order (relative to the first byte token): the 256 byte characters, then merge results. */
  tokens: string[];
  /** Merges in priority order. */
  merges: [string, string][];
}

const SEP = '\u0000'; // never part of a byte-level symbol

/** Learns up to `numMerges` merges from `text` (fewer if the corpus runs out of pairs). */
export function trainBpe(text: string, numMerges: number): BpeModel {
  const alphabet = byteToUnicode();
  const encoder = new TextEncoder();
  const counts = new Map<string, number>();
  for (const piece of preTokenize(text)) counts.set(piece, (counts.get(piece) ?? 0) + 1);

  // Unique pieces as symbol arrays, in a fixed (sorted) order.
  const words: { syms: string[]; n: number }[] = [...counts.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([piece, n]) => ({ syms: [...encoder.encode(piece)].map((b) => alphabet[b]), n }));

  const tokens = [...alphabet];
  const known = new Set(tokens);
  const merges: [string, string][] = [];

  for (let m = 0; m < numMerges; m++) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.syms.length; i++) {
        const key = w.syms[i] + SEP + w.syms[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + w.n);
      }
    }
    let best: string | null = null;
    let bestN = 0;
    for (const [key, n] of pairs) {
      if (n > bestN || (n === bestN && best !== null && comparePairs(key, best) < 0)) {
        best = key;
        bestN = n;
      }
    }
    if (best === null) break;
    const [a, b] = best.split(SEP) as [string, string];
    const joined = a + b;
    merges.push([a, b]);
    if (!known.has(joined)) {
      known.add(joined);
      tokens.push(joined);
    }
    for (const w of words) {
      const s = w.syms;
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] === a && s[i + 1] === b) s.splice(i, 2, joined);
      }
    }
  }
  return { tokens, merges };
}

function comparePairs(x: string, y: string): number {
  const [xa, xb] = x.split(SEP);
  const [ya, yb] = y.split(SEP);
  if (xa !== ya) return xa < ya ? -1 : 1;
  return xb < yb ? -1 : xb > yb ? 1 : 0;
}
