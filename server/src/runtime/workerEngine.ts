/**
 * WorkerEngine: runs an OnnxEngine on a worker thread and exposes it as an `Engine`.
 *
 * onnxruntime-node runs a session synchronously on the calling thread (its async `run` only
 * defers the call with setImmediate), so on the daemon's main thread a vision encoder pass or a
 * long prefill would stall JSON-RPC for seconds: no status, no queue answers, no cancel. On a
 * worker, the daemon stays responsive; a cancel is posted to the worker and takes effect at the
 * worker's next step boundary (between vision views, between decoding steps).
 *
 * Messages (main -> worker): load | ask | unload | forget | cancel. (worker -> main): progress |
 * delta | result | error | log. LensErrors cross as {code, message}. If the worker dies, every
 * pending call fails with a clear error, the model counts as unloaded, and the next call starts
 * a fresh worker.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { OnnxEngineOptions } from './engine';
import { defaultRegistry } from '../tools';
import type { AgentStepInfo, AnswerDelta, AskRequest, AskStage, ImageInput, ToolInfo, ToolRunResult, AskResult, Engine, LoadOptions, LoadProgress, ModelInfo } from './types';

export type ToWorker =
  | { type: 'load'; id: number; dir: string; options: LoadOptions }
  | { type: 'ask'; id: number; req: AskRequest }
  | { type: 'unload'; id: number }
  | { type: 'runTool'; id: number; name: string; args: unknown; image: ImageInput; timeoutMs?: number }
  | { type: 'forget'; id: number; conversationId: string; keepSaved?: boolean }
  | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'progress'; id: number; progress: LoadProgress }
  | { type: 'delta'; id: number; delta: AnswerDelta }
  | { type: 'stage'; id: number; stage: AskStage }
  | { type: 'step'; id: number; step: AgentStepInfo }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; code: number; message: string }
  | { type: 'log'; message: string };

/** A call to the worker before it is given an id. */
type WorkerCall = ToWorker extends infer M ? (M extends { id: number } ? Omit<M, 'id'> : never) : never;

interface Pending {
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  onProgress?: (p: LoadProgress) => void;
  onDelta?: (d: AnswerDelta) => void;
  onStage?: (s: AskStage) => void;
  onStep?: (s: AgentStepInfo) => void;
}

/** Serializable subset of OnnxEngineOptions (functions cannot cross threads). */
export type WorkerEngineOptions = Omit<OnnxEngineOptions, 'log'> & { log?: (msg: string) => void };

export class WorkerEngine implements Engine {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private loaded: ModelInfo | undefined;
  private toolList: ToolInfo[] | undefined;

  constructor(private readonly opts: WorkerEngineOptions = {}) {}

  info(): ModelInfo | undefined {
    return this.loaded;
  }

  load(dir: string, options: LoadOptions, onProgress: (p: LoadProgress) => void, signal: AbortSignal): Promise<ModelInfo> {
    this.loaded = undefined;
    return this.call<ModelInfo>({ type: 'load', dir, options }, signal, { onProgress }).then((info) => (this.loaded = info));
  }

  async unload(): Promise<void> {
    this.loaded = undefined;
    if (this.worker) await this.call({ type: 'unload' }, undefined, {});
  }

  /** Resolves once the worker dropped it (and deleted its file unless `keepSaved`). */
  async forget(conversationId: string, keepSaved?: boolean): Promise<void> {
    if (this.worker) await this.call({ type: 'forget', conversationId, ...(keepSaved ? { keepSaved } : {}) }, undefined, {});
  }

  ask(req: AskRequest, onDelta: (d: AnswerDelta) => void, signal: AbortSignal, onStage?: (s: AskStage) => void, onStep?: (s: AgentStepInfo) => void): Promise<AskResult> {
    if (!this.loaded) return Promise.reject(new LensError(LensErrorCode.ModelNotLoaded, 'no model is loaded: call lens/loadModel (or pass --model) first.'));
    return this.call<AskResult>({ type: 'ask', req }, signal, { onDelta, onStage, onStep });
  }

  /** The worker's tools (the same registry, described here without a round trip). */
  listTools(): ToolInfo[] {
    return (this.toolList ??= defaultRegistry().describe());
  }

  /** Runs a tool on the worker (OCR's onnxruntime work stays off the daemon's thread). Needs no model. */
  runTool(name: string, args: unknown, image: ImageInput, signal: AbortSignal, timeoutMs?: number): Promise<ToolRunResult> {
    return this.call<ToolRunResult>({ type: 'runTool', name, args, image, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }, signal, {});
  }

  /** Stops the worker thread (pending calls fail). */
  async dispose(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.loaded = undefined;
    if (w) await w.terminate();
  }

  private call<R>(msg: WorkerCall, signal: AbortSignal | undefined, hooks: Omit<Pending, 'resolve' | 'reject'>): Promise<R> {
    const w = this.ensureWorker();
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      const onAbort = () => w.postMessage({ type: 'cancel', id } satisfies ToWorker);
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        ...hooks,
        resolve: (v) => (done(), resolve(v)),
        reject: (e) => (done(), reject(e)),
      });
      w.postMessage({ ...msg, id } as ToWorker);
      if (signal?.aborted) onAbort();
    });
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const { log, ...data } = this.opts;
    const w = new Worker(path.join(__dirname, 'engineWorker.js'), { workerData: data });
    w.unref(); // an idle engine does not keep the process alive
    w.on('message', (m: FromWorker) => this.onMessage(m));
    const fail = (why: string) => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.loaded = undefined;
      const err = new LensError(LensErrorCode.Internal, `the model worker stopped (${why}); the model was unloaded: load it again.`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      log?.(`model worker stopped: ${why}`);
    };
    w.on('error', (e) => fail(e.message));
    w.on('exit', (code) => fail(`exit code ${code}`));
    this.worker = w;
    return w;
  }

  private onMessage(m: FromWorker): void {
    if (m.type === 'log') return this.opts.log?.(m.message);
    const p = this.pending.get(m.id);
    if (!p) return;
    switch (m.type) {
      case 'progress':
        p.onProgress?.(m.progress);
        break;
      case 'delta':
        p.onDelta?.(m.delta);
        break;
      case 'stage':
        p.onStage?.(m.stage);
        break;
      case 'step':
        p.onStep?.(m.step);
        break;
      case 'result':
        this.pending.delete(m.id);
        p.resolve(m.value);
        break;
      case 'error':
        this.pending.delete(m.id);
        p.reject(new LensError(m.code, m.message));
        break;
    }
  }
}
