/**
 * The daemon's request queue: engine work runs one job at a time, scheduled fairly across
 * clients — a FIFO per client, served round robin (one job from each waiting client in turn).
 * With one client (stdio, node-ipc) it is plain arrival order.
 *
 * How: every job gets a round number when it is queued — one more than its client's previous
 * job, but never less than the round now running — and jobs run by (round, arrival). A client
 * with ten jobs queued thus gets one turn per round, and a client arriving later joins the
 * current round instead of waiting behind everyone's backlog. "Its client's previous job" is
 * its last one still waiting or running: jobs it cancelled do not push its next one back.
 *
 * Contract:
 * - `enqueue` never runs two jobs at once; each job gets its own `AbortSignal`.
 * - At most `limit` jobs wait behind the running one, over all clients; one more is refused with
 *   `LensError(Busy)` saying how many are ahead (unless the job says `bypassLimit`, used for cheap
 *   housekeeping such as unload/forget).
 * - `onPosition(ahead)` is called when a waiting job is queued and whenever the number of jobs
 *   that will run before it changes (the running one counts). It counts down as jobs start or
 *   are cancelled, and goes up by one when another client's job joins an earlier round (never
 *   because of the same client's later jobs).
 * - Cancelling a waiting job removes it and settles it with its `whenCancelledWhileQueued()`
 *   (which may throw); cancelling the running job aborts its signal and the job decides what to
 *   return. `cancelClient` does both for every job of one client (it disconnected).
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
  /** Which client the job belongs to (fair share and `cancelClient`); default `''`. */
  client?: string;
  /** Told how many jobs will run before this one, while it waits. */
  onPosition?(ahead: number): void;
}

/** Anything that can say "cancel" once: a vscode-jsonrpc `CancellationToken` fits. */
export interface CancelSource {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

interface Entry {
  label: string;
  client: string;
  round: number;
  seq: number;
  lastAhead: number;
  onPosition?(ahead: number): void;
  start(): void;
  cancel(): void;
}

export class RequestQueue {
  /** Waiting jobs, in the order they will run: by (round, seq). */
  private readonly waitingEntries: Entry[] = [];
  /** Round of the last job each client queued (dropped once it is in the past). */
  private readonly clientRound = new Map<string, number>();
  /** Round of the job that started last. */
  private round = 0;
  private seq = 0;
  private current: { label: string; client: string; round: number; controller: AbortController } | undefined;

  constructor(
    private limit: number,
    private readonly onChange: () => void = () => {},
  ) {}

  setLimit(limit: number): void {
    this.limit = limit;
  }

  /** Jobs waiting behind the running one. */
  get waitingCount(): number {
    return this.waitingEntries.length;
  }

  /** Jobs of `client` waiting. */
  waitingFor(client: string): number {
    return this.waitingEntries.filter((e) => e.client === client).length;
  }

  /** Label of the running job, or undefined when idle. */
  get runningLabel(): string | undefined {
    return this.current?.label;
  }

  /** Adds a job; resolves or rejects with the job's outcome. */
  enqueue<T>(job: Job<T>, cancel?: CancelSource): Promise<T> {
    if (!job.bypassLimit && this.waitingEntries.length >= this.limit) {
      const ahead = this.waitingEntries.length + (this.current ? 1 : 0);
      return Promise.reject(
        new LensError(
          LensErrorCode.Busy,
          `The daemon is busy: ${ahead} requests are ahead of this ${job.label} (queue limit ${this.limit}). ` +
            `Retry when lens/status reports 'ready', cancel a queued request, or raise the queue limit (initializationOptions.queueLimit, or serve --queue-limit).`,
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
      const client = job.client ?? '';
      const round = Math.max((this.clientRound.get(client) ?? -1) + 1, this.round);
      this.clientRound.set(client, round);
      const entry: Entry = {
        label: job.label,
        client,
        round,
        seq: this.seq++,
        lastAhead: -1,
        start: () => {
          started = true;
          this.current = { label: job.label, client: entry.client, round: entry.round, controller };
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
          if (!this.remove(entry)) return;
          this.recomputeRound(entry.client);
          subscription?.dispose();
          this.onChange();
          this.reportPositions();
          try {
            resolve(job.whenCancelledWhileQueued());
          } catch (e) {
            reject(e);
          }
        },
      };
      if (job.onPosition) entry.onPosition = (ahead) => job.onPosition!(ahead);
      // Insert in (round, seq) order; seq only grows, so after the last entry of a round <= ours.
      let at = this.waitingEntries.length;
      while (at > 0 && this.waitingEntries[at - 1].round > round) at--;
      this.waitingEntries.splice(at, 0, entry);
      if (this.current) {
        this.onChange();
        this.reportPositions();
      } else this.next();
    });
  }

  /**
   * Cancels every job of `client`: waiting ones are settled as cancelled, its running one
   * aborted. Returns how many were waiting and the label of the running one, if it was the client's.
   */
  cancelClient(client: string): { waiting: number; running?: string } {
    const waiting = this.waitingEntries.filter((e) => e.client === client);
    for (const entry of waiting) entry.cancel();
    if (this.current?.client !== client) return { waiting: waiting.length };
    this.current.controller.abort();
    return { waiting: waiting.length, running: this.current.label };
  }

  /** Aborts the running job and settles every waiting one as cancelled (used by `shutdown`). */
  cancelAll(): void {
    for (const entry of [...this.waitingEntries]) entry.cancel();
    this.current?.controller.abort();
  }

  /** Resolves when nothing is running or waiting. */
  idle(): Promise<void> {
    if (!this.current && this.waitingEntries.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private readonly idleWaiters: Array<() => void> = [];

  private remove(entry: Entry): boolean {
    const i = this.waitingEntries.indexOf(entry);
    if (i < 0) return false;
    this.waitingEntries.splice(i, 1);
    return true;
  }

  /**
   * After a job of `client` left the queue unstarted: its next job's round follows its last job
   * still waiting or running, so cancelled jobs do not push its later ones behind other
   * clients' backlogs.
   */
  private recomputeRound(client: string): void {
    let last = this.current?.client === client ? this.current.round : -1;
    for (const e of this.waitingEntries) if (e.client === client && e.round > last) last = e.round;
    if (last >= 0) this.clientRound.set(client, last);
    else this.clientRound.delete(client);
  }

  private reportPositions(): void {
    const base = this.current ? 1 : 0;
    this.waitingEntries.forEach((entry, i) => {
      if (entry.onPosition && entry.lastAhead !== base + i) {
        entry.lastAhead = base + i;
        entry.onPosition(base + i);
      }
    });
  }

  private next(): void {
    const entry = this.waitingEntries.shift();
    if (entry) {
      this.round = entry.round;
      for (const [client, r] of this.clientRound) if (r < this.round) this.clientRound.delete(client);
      entry.start();
      this.reportPositions();
      return;
    }
    this.onChange();
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
