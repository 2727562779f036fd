/**
 * Node flags. `OURS_NODE_FLAGS` is what the daemon is started with (`DAEMON_NODE_FLAGS`,
 * server/src/daemon/nodeFlags.ts: the CLI and the extension use the same list; the bench runs ours
 * with them); chosen by `npm run bench -- --flags`, see docs/performance.md.
 *
 * `--single-threaded-gc`: V8's parallel/concurrent GC helper threads otherwise compete with
 * onnxruntime's intra-op threads for the same cores; the decode loop allocates a logits row per
 * token, so young-generation collections are frequent.
 */
import { DAEMON_NODE_FLAGS } from '../../server/src/daemon/nodeFlags';

export const OURS_NODE_FLAGS: readonly string[] = DAEMON_NODE_FLAGS;

/** Flag sets compared by `--flags`. */
export const FLAG_CANDIDATES: readonly (readonly string[])[] = [[], ['--single-threaded-gc'], ['--single-threaded-gc', '--max-semi-space-size=16']];
