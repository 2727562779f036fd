/**
 * The daemon's shared state: one engine, one fair queue, the load/ask status, and which client
 * holds which conversation. A private daemon (stdio, node-ipc) has one core and one session; a
 * shared daemon (`serve --ws`) has one core and a session per connection (session.ts).
 *
 * Conversations: the client whose ask created or last continued a conversation holds it. A
 * client holds at most `limits.maxConversationsPerClient` in memory: past that, its least
 * recently used one is dropped from memory only (a persisted conversation comes back from its
 * file when used again). When a client disconnects, its running and queued work is cancelled
 * and its conversations are kept for `limits.conversationKeepMs` — a reconnecting client
 * continues them by id — then forgotten.
 */
import { LensError, LensErrorCode } from '../../../common/errors';
import type { GraphTuningPasses, LensInitializationOptions, LensStatus, ModelInfo } from '../../../common/protocol';
import type { AskStage, Engine, LoadOptions, LoadProgress } from '../runtime/types';
import { DEFAULT_LIMITS, type DaemonLimits } from './access';
import { RequestQueue, type CancelSource } from './queue';
import { computeStatus } from './status';

/** Makes the engine, once, with the options of the first client (private) or the operator (shared). */
export type EngineFactory = (init: LensInitializationOptions) => Engine;

export interface CoreOptions {
  /** Shared daemon (`serve --ws`): engine-wide settings come from the operator, not from clients. */
  shared?: boolean;
  limits?: Partial<DaemonLimits>;
  /** The operator's model roots (shared daemon: the only folders models load from). */
  modelRoots?: string[];
  /** The operator's load-time graph tuning (`serve --no-graph-tuning` / `--tuning-off`), for loads whose options name none. */
  graphTuning?: GraphTuningPasses | false;
  log?: (level: 'error' | 'warn' | 'info', line: string) => void;
}

interface Held {
  owner: string;
  lastUsed: number;
  /** Set while the owner is disconnected. */
  expiry?: NodeJS.Timeout;
}

export class DaemonCore {
  readonly shared: boolean;
  readonly limits: DaemonLimits;
  readonly modelRoots: string[];
  readonly graphTuning: GraphTuningPasses | false | undefined;
  readonly queue: RequestQueue;
  private engineInstance: Engine | undefined;
  private engineInit: LensInitializationOptions = {};
  loading: { percent: number; message: string } | undefined;
  askStage: AskStage | undefined;
  lastLoadError: string | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly held = new Map<string, Held>();
  private readonly connected = new Set<string>();

  constructor(
    private readonly engineFactory: EngineFactory,
    o: CoreOptions = {},
  ) {
    this.shared = o.shared ?? false;
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.modelRoots = o.modelRoots ?? [];
    this.graphTuning = o.graphTuning;
    this.log = o.log ?? (() => undefined);
    this.queue = new RequestQueue(this.limits.queueLimit, () => this.changed());
  }

  readonly log: (level: 'error' | 'warn' | 'info', line: string) => void;

  /** Private daemon: the engine is made with the client's initialization options. */
  configure(init: LensInitializationOptions): void {
    if (!this.engineInstance) this.engineInit = init;
  }

  engine(): Engine {
    return (this.engineInstance ??= this.engineFactory(this.engineInit));
  }

  get engineCreated(): Engine | undefined {
    return this.engineInstance;
  }

  info(): ModelInfo | undefined {
    return this.engineInstance?.info();
  }

  /** Subscribes to "something in the status may have changed". */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed(): void {
    for (const l of this.listeners) l();
  }

  status(initialized: boolean): LensStatus {
    return computeStatus(
      {
        initialized,
        running: this.queue.runningLabel,
        stage: this.askStage,
        queueLength: this.queue.waitingCount,
        loading: this.loading,
        lastLoadError: this.lastLoadError,
        model: this.info(),
      },
      process.memoryUsage().rss,
    );
  }

  /**
   * Loads a model through the queue; `client` is who asked (fair share, cancel on disconnect).
   * Options without `graphTuning` get the operator's (`CoreOptions.graphTuning`), if any.
   */
  loadModel(path: string, options: LoadOptions, client: string, progress: (p: LoadProgress | { done: string }) => void, token?: CancelSource): Promise<ModelInfo> {
    if (options.graphTuning === undefined && this.graphTuning !== undefined) options = { ...options, graphTuning: this.graphTuning };
    return this.queue.enqueue(
      {
        label: 'lens/loadModel',
        client,
        run: async (signal) => {
          this.loading = { percent: 0, message: `Loading ${path}` };
          this.changed();
          try {
            const info = await this.engine().load(
              path,
              options,
              (p) => {
                this.loading = { percent: p.percent, message: p.message };
                progress(p);
                this.changed();
              },
              signal,
            );
            this.lastLoadError = undefined;
            progress({ done: `Loaded ${info.name} on ${info.device}` });
            return info;
          } catch (e) {
            if (signal.aborted) {
              progress({ done: 'Cancelled' });
              throw new LensError(LensErrorCode.Cancelled, `lens/loadModel ${path} was cancelled; send lens/loadModel again to load a model.`);
            }
            this.lastLoadError = e instanceof Error ? e.message : String(e);
            progress({ done: `Failed: ${this.lastLoadError}` });
            throw e;
          } finally {
            this.loading = undefined;
          }
        },
        whenCancelledWhileQueued: () => {
          throw new LensError(LensErrorCode.Cancelled, `lens/loadModel ${path} was cancelled before it started; the loaded model (if any) is unchanged.`);
        },
      },
      token,
    );
  }

  // --- conversations held by clients ----------------------------------------------------------

  clientConnected(client: string): void {
    this.connected.add(client);
  }

  /**
   * Records that `client` used `conversationId` (it now holds it); past the per-client limit, its
   * least recently used conversation leaves memory (kept on disk when persisted).
   */
  hold(conversationId: string, client: string): void {
    if (!conversationId) return;
    const h = this.held.get(conversationId);
    if (h?.expiry) clearTimeout(h.expiry);
    const mineNow: Held = { owner: client, lastUsed: ++this.useClock };
    this.held.set(conversationId, mineNow);
    // An ask that ends after its client left (cancelled by clientGone, or finished meanwhile):
    // the conversation is kept for the keep time like the client's others, not forever.
    if (!this.connected.has(client)) this.expireLater(conversationId, mineNow);
    const mine = [...this.held].filter(([, x]) => x.owner === client).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [id] of mine.slice(0, Math.max(0, mine.length - this.limits.maxConversationsPerClient))) {
      this.held.delete(id);
      void Promise.resolve(this.engineInstance?.forget(id, true)).catch(() => undefined);
      this.log('info', `conversation ${id} left memory (client over ${this.limits.maxConversationsPerClient} conversations); it is restored from disk if used again`);
    }
  }

  private useClock = 0;

  released(conversationId: string): void {
    const h = this.held.get(conversationId);
    if (h?.expiry) clearTimeout(h.expiry);
    this.held.delete(conversationId);
  }

  /**
   * The client went away: cancel its work, keep its conversations for a while. Its asks still
   * in flight end as cancelled; the conversations they name are kept the same way (`hold`).
   */
  clientGone(client: string): void {
    this.connected.delete(client);
    const { waiting, running } = this.queue.cancelClient(client);
    let kept = 0;
    for (const [id, h] of this.held) {
      if (h.owner !== client || h.expiry) continue;
      this.expireLater(id, h);
      kept++;
    }
    this.log(
      'info',
      `client ${client} left: cancelled ${running ? `its running ${running} and ` : ''}${waiting} waiting request(s); ` +
        `its ${kept} conversation(s) are kept for ${formatKeep(this.limits.conversationKeepMs)}`,
    );
  }

  /** Forgets held conversation `id` after the keep time unless its holder `h` changes meanwhile. */
  private expireLater(id: string, h: Held): void {
    h.expiry = setTimeout(() => {
      if (this.held.get(id) !== h) return;
      this.held.delete(id);
      this.forget(id, '').then(
        () => this.log('info', `conversation ${id} forgotten: its client left ${formatKeep(this.limits.conversationKeepMs)} ago`),
        (e: unknown) => this.log('warn', `forgetting conversation ${id} failed: ${String(e)}`),
      );
    }, this.limits.conversationKeepMs);
    h.expiry.unref();
  }

  /** Forgets a conversation through the queue (it may be in use by the running ask). */
  forget(conversationId: string, client: string, token?: CancelSource): Promise<null> {
    return this.queue.enqueue(
      {
        label: 'lens/forgetConversation',
        client,
        bypassLimit: true,
        run: async () => {
          await this.engineInstance?.forget(conversationId);
          this.released(conversationId);
          return null;
        },
        whenCancelledWhileQueued: () => {
          throw new LensError(LensErrorCode.Cancelled, 'lens/forgetConversation was cancelled before it ran; the conversation is kept.');
        },
      },
      token,
    );
  }

  /** Stops timers (tests, shutdown). */
  dispose(): void {
    for (const h of this.held.values()) if (h.expiry) clearTimeout(h.expiry);
  }
}

function formatKeep(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${(ms / 1000).toFixed(1)} s`;
}
