/** Command line of `npm run bench -- [options]`. */

export interface BenchArgs {
  /** Measured repetitions per scenario (after one warm-up). */
  reps: number;
  quick: boolean;
  json: boolean;
  /** Write bench/results/latest.{md,json}. */
  save: boolean;
  /** Also run ours once with anyres tiling on (the product default for OneVision; many more tokens). */
  anyres: boolean;
  /** Only the Node-flag study: decode tok/s of both sides with and without the candidate flags. */
  flags: boolean;
  /** Forced new tokens for the decode measurement. */
  tokens: number;
  /** Model folder; default $LLAVA_LENS_CACHE/bench-model or ~/.cache/llava-lens/bench-model. */
  model?: string;
  /** Skip the transformers.js side (ours only). */
  oursOnly: boolean;
  /** Only the graph-tuning check: greedy tokens over 256 tokens and logit error, tuned vs untuned. */
  divergence: boolean;
}

export const USAGE = `npm run bench -- [options]
  --reps N       measured repetitions after one warm-up (default 3; --quick: 1)
  --quick        one repetition, fewer preprocessing runs
  --json         print one JSON object instead of the Markdown table
  --tokens N     forced decode tokens (default 64)
  --model DIR    bench model folder (generated there when missing)
  --anyres       also time ours once with anyres tiling on (slow: ~5k prompt tokens)
  --flags        only the Node-flag study: both sides under each candidate flag set
  --divergence   only the graph-tuning check: greedy tokens over 256 tokens and logit error, tuned vs untuned
  --ours-only    skip transformers.js
  --no-save      do not write bench/results/latest.{md,json}
`;

export function parseArgs(argv: readonly string[]): BenchArgs {
  const a: BenchArgs = { reps: 3, quick: false, json: false, save: true, anyres: false, flags: false, tokens: 64, oursOnly: false, divergence: false };
  let repsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) throw new Error(`${k} needs a positive integer\n\n${USAGE}`);
      return v;
    };
    switch (k) {
      case '--reps': a.reps = num(); repsGiven = true; break;
      case '--tokens': a.tokens = num(); break;
      case '--quick': a.quick = true; break;
      case '--json': a.json = true; break;
      case '--anyres': a.anyres = true; break;
      case '--flags': a.flags = true; break;
      case '--ours-only': a.oursOnly = true; break;
      case '--divergence': a.divergence = true; break;
      case '--no-save': a.save = false; break;
      case '--model': a.model = argv[++i]; break;
      default: throw new Error(`unknown option ${k}\n\n${USAGE}`);
    }
  }
  if (a.quick && !repsGiven) a.reps = 1;
  return a;
}
