/**
 * Module for the daemon's `LLAVA_LENS_ENGINE` test hook: `LLAVA_LENS_ENGINE=<this file's .js>`
 * makes `llava-lens` / the daemon answer with the deterministic fake engine.
 *
 * `LLAVA_LENS_FAKE_HOLD_AT=N` holds every ask before token N until it is cancelled, so a test can
 * send Ctrl-C at a known point (it waits for the streamed text, never for time).
 */
import type { Engine } from '../../server/src/runtime/types';
import { FakeEngine } from './fakeEngine';

export function createEngine(): Engine {
  const holdAt = process.env.LLAVA_LENS_FAKE_HOLD_AT;
  if (holdAt === undefined) return new FakeEngine();
  const n = Number(holdAt);
  return new FakeEngine({
    hooks: {
      beforeToken: (index, signal) =>
        index === n && !signal.aborted ? new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })) : undefined,
    },
  });
}
