/**
 * The daemon's request queue: engine work runs one job at a time, in arrival order (FIFO).
 *
 * Contract:
 * - `enqueue` never runs two jobs at once; each job gets its own `AbortSignal`.
 * - At most `limit` jobs wait behind the running one; one more is refused with `LensError(Busy)`
 *   (unless the job says `bypassLimit`, used for cheap housekeeping such as unload/forget).
 * - Cancelling a waiting job removes it and settles it with its `whenCancelledWhileQueued()`
 *   (which may throw); cancelling the running job aborts its signal and the job decides what to
 *   return.
 * - `onChange` is called whenever the running job or the number of waiting jobs changes.
 */
import { LensError, LensErrorCode } from '../../../common/errors';

export interface Job<T> {
  /** Short name for messages, e.g. `lens/ask`. */
  label: string;
  run(signal: AbortSignal): Promise<T>;
  /** The answer for a job cancelled before it started. */
  whenCancelledWhileQueued(): T;
  bypassLimit?: boolean;
}

/** Anything that can say "cancel" once: a vscode-jsonrpc `CancellationToken` fits. */
export interface CancelSource {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

interface Entry {
  label: string;
  start(): void;
  cancel(): void;
}

export class RequestQueue {
  private readonly waiting: Entry[] = [];
  private current: { label: string; controller: AbortController } | undefined;

  constructor(
    private limit: number,
    private readonly onChange: () => void = () => {},
  ) {}

  setLimit(limit: number): void {
    this.limit = limit;
  }

  /** Jobs waiting behind the running one. */
  get waitingCount(): number {
    return this.waiting.length;
  }

  /** Label of the running job, or undefined when idle. */
  get runningLabel(): string | undefined {
    return this.current?.label;
  }

  /** Adds a job; resolves or rejects with the job's outcome. */
  enqueue<T>(job: Job<T>, cancel?: CancelSource): Promise<T> {
    if (!job.bypassLimit && this.waiting.length >= this.limit) {
      const ahead = this.waiting.length + (this.current ? 1 : 0);
      return Promise.reject(
        new LensError(
          LensErrorCode.Busy,
          `The daemon is busy: ${ahead} requests are ahead of this ${job.label} (queue limit ${this.limit}). ` +
            `Retry when lens/status reports 'ready', cancel a queued request, or raise initializationOptions.queueLimit.`,
        ),
      );
    }
    if (cancel?.isCancellationRequested) {
      return new Promise<T>((resolve) => resolve(job.whenCancelledWhileQueued()));
    }
    return new Promise<T>((resolve, reject) => {
      const controller = new AbortController();
      let started = false;
      const subscription = cancel?.onCancellationRequested(() => entry.cancel());
      const entry: Entry = {
        label: job.label,
        start: () => {
          started = true;
          this.current = { label: job.label, controller };
          this.onChange();
          Promise.resolve()
            .then(() => job.run(controller.signal))
            .then(resolve, reject)
            .finally(() => {
              subscription?.dispose();
              this.current = undefined;
              this.next();
            });
        },
        cancel: () => {
          if (started) {
            controller.abort();
            return;
          }
          const i = this.waiting.indexOf(entry);
          if (i < 0) return;
          this.waiting.splice(i, 1);
          subscription?.dispose();
          this.onChange();
          try {
            resolve(job.whenCancelledWhileQueued());
          } catch (e) {
            reject(e);
          }
        },
      };
      this.waiting.push(entry);
      if (this.current) this.onChange();
      else this.next();
    });
  }

  /** Aborts the running job and settles every waiting one as cancelled (used by `shutdown`). */
  cancelAll(): void {
    for (const entry of [...this.waiting]) entry.cancel();
    this.current?.controller.abort();
  }

  /** Resolves when nothing is running or waiting. */
  idle(): Promise<void> {
    if (!this.current && this.waiting.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private readonly idleWaiters: Array<() => void> = [];

  private next(): void {
    const entry = this.waiting.shift();
    if (entry) {
      entry.start();
      return;
    }
    this.onChange();
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
