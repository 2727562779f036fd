/**
 * Node flags and environment. `OURS_NODE_FLAGS` and `OURS_NODE_ENV` are what the daemon is
 * started with (`DAEMON_NODE_FLAGS` and `DAEMON_ENV`, server/src/daemon/nodeFlags.ts: the CLI and
 * the extension use the same; the bench runs ours with them, `ChildSide.start`); chosen by
 * `npm run bench -- --flags`, see docs/performance.md.
 *
 * `--single-threaded-gc`: V8's parallel/concurrent GC helper threads otherwise compete with
 * onnxruntime's intra-op threads for the same cores; the decode loop allocates a logits row per
 * token, so young-generation collections are frequent.
 *
 * `GLIBC_TUNABLES` (Linux): onnxruntime-node returns every KV tensor as a fresh ~400 kB buffer
 * each token; glibc's default mmap threshold has it mmap, page-fault and munmap them every token.
 */
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../server/src/daemon/nodeFlags';

export const OURS_NODE_FLAGS: readonly string[] = DAEMON_NODE_FLAGS;

/** Variables added to the environment of ours (merged as the daemon merges them: the user's tunables win); none off Linux. */
export const OURS_NODE_ENV: Readonly<Record<string, string>> = process.platform === 'linux' ? DAEMON_ENV : {};

/** One way to start a side's process: Node flags, and variables added to its environment. */
export interface NodeCandidate {
  readonly flags: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/** "--single-threaded-gc; GLIBC_TUNABLES=…", "(none)": a candidate in a table or log line. */
export function candidateLabel(c: NodeCandidate): string {
  const parts = [c.flags.join(' '), ...Object.entries(c.env).map(([k, v]) => `${k}=${v}`)].filter((p) => p !== '');
  return parts.length ? parts.join('; ') : '(none)';
}

/**
 * Flag sets and environments compared by `--flags` (the environments on Linux only). The chosen
 * ones (`OURS_NODE_FLAGS` with `OURS_NODE_ENV`) are among them. Each candidate is one loaded
 * child per side at once: transformers.js children peak at ~4 GB each.
 */
export const NODE_CANDIDATES: readonly NodeCandidate[] = [
  { flags: [], env: {} },
  { flags: ['--single-threaded-gc'], env: {} },
  { flags: ['--single-threaded-gc', '--max-semi-space-size=16'], env: {} },
  ...(process.platform === 'linux' ? [{ flags: DAEMON_NODE_FLAGS, env: DAEMON_ENV }] : []),
];
