/**
 * Worker-thread entry hosting the engine (OnnxEngine wrapped by the tool loop's AgentEngine) for
 * WorkerEngine (see workerEngine.ts for why).
 * One call runs at a time (the daemon queues); cancels arrive between onnxruntime runs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LensError, LensErrorCode } from '../../../common/errors';
import { AgentEngine } from '../agent/agentEngine';
import { OnnxEngine } from './engine';
import type { FromWorker, ToWorker } from './workerEngine';

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);
const engine = new AgentEngine(new OnnxEngine({ ...(workerData ?? {}), log: (message) => post({ type: 'log', message }) }));
const controllers = new Map<number, AbortController>();

async function handle(m: ToWorker & { id: number }): Promise<unknown> {
  const ac = new AbortController();
  controllers.set(m.id, ac);
  try {
    switch (m.type) {
      case 'load':
        return await engine.load(m.dir, m.options, (progress) => post({ type: 'progress', id: m.id, progress }), ac.signal);
      case 'ask':
        return await engine.ask(
          m.req,
          (delta) => post({ type: 'delta', id: m.id, delta }),
          ac.signal,
          (stage) => post({ type: 'stage', id: m.id, stage }),
          (step) => post({ type: 'step', id: m.id, step }),
        );
      case 'runTool':
        return await engine.runTool(m.name, m.args, m.image, ac.signal, m.timeoutMs);
      case 'unload':
        return await engine.unload();
      case 'forget':
        return engine.forget(m.conversationId, m.keepSaved);
      default:
        throw new LensError(LensErrorCode.Internal, `unknown worker call ${(m as { type: string }).type}`);
    }
  } finally {
    controllers.delete(m.id);
  }
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'cancel') return controllers.get(m.id)?.abort();
  handle(m).then(
    (value) => post({ type: 'result', id: m.id, value }),
    (e: unknown) => {
      const code = e instanceof LensError ? e.code : LensErrorCode.Internal;
      const message = e instanceof Error ? e.message : String(e);
      if (!(e instanceof LensError)) post({ type: 'log', message: `internal error: ${(e as Error)?.stack ?? message}` });
      post({ type: 'error', id: m.id, code, message });
    },
  );
});
