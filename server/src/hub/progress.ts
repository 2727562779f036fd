/**
 * Download progress: what a pull reports and the meter that computes rate and ETA.
 *
 * The rate is over the bytes transferred in the last `windowMs` (default 5 s), so a resumed
 * download does not count bytes it already had; ETA = remaining / rate. Reports are throttled to
 * one per `intervalMs` (default 200 ms) except those marked `force` (file boundaries, the end);
 * a throttled report is sent when the interval ends unless a newer one replaced it, so the last
 * state is always shown (also when the transfer stalls). `close()` drops a pending report.
 * One meter per pull.
 */

export type PullPhase = 'listing' | 'downloading' | 'finishing' | 'done';

export interface PullProgress {
  phase: PullPhase;
  repo: string;
  /** File being downloaded (relative path), while `phase` is 'downloading'. */
  file?: string;
  /** 1-based index of `file` among `fileCount` files. */
  fileIndex: number;
  fileCount: number;
  /** Bytes present of all files of the pull (including files and parts found from earlier runs). */
  bytesDone: number;
  /** Bytes of all files of the pull (0 while listing). */
  bytesTotal: number;
  /** Bytes per second over the last few seconds (0 before any transfer). */
  bytesPerSecond: number;
  /** Seconds left at the current rate; undefined when the rate is 0. */
  etaSeconds?: number;
}

export class ProgressMeter {
  private readonly samples: Array<{ t: number; bytes: number }> = [];
  private transferred = 0;
  private lastReport = -Infinity;
  private pending: { p: PullProgress; timer: NodeJS.Timeout } | undefined;

  constructor(
    private readonly report: (p: PullProgress) => void,
    private readonly now: () => number = () => Date.now(),
    private readonly windowMs = 5000,
    private readonly intervalMs = 200,
  ) {}

  /** Counts `n` bytes received over the network now. */
  transfer(n: number): void {
    this.transferred += n;
    const t = this.now();
    this.samples.push({ t, bytes: this.transferred });
    while (this.samples.length > 2 && this.samples[0].t < t - this.windowMs) this.samples.shift();
  }

  /** Bytes per second over the window. */
  rate(): number {
    if (this.samples.length < 2) return 0;
    const a = this.samples[0];
    const b = this.samples[this.samples.length - 1];
    const dt = (b.t - a.t) / 1000;
    return dt > 0 ? (b.bytes - a.bytes) / dt : 0;
  }

  /** Emits `p` with rate and ETA filled in, now or (throttled) when the interval ends. */
  emit(p: Omit<PullProgress, 'bytesPerSecond' | 'etaSeconds'>, force = false): void {
    const t = this.now();
    const bytesPerSecond = Math.round(this.rate());
    const left = Math.max(0, p.bytesTotal - p.bytesDone);
    const etaSeconds = bytesPerSecond > 0 ? Math.ceil(left / bytesPerSecond) : undefined;
    const full: PullProgress = { ...p, bytesPerSecond, ...(etaSeconds !== undefined ? { etaSeconds } : {}) };
    const wait = this.intervalMs - (t - this.lastReport);
    if (!force && wait > 0) {
      if (this.pending) this.pending.p = full;
      else this.pending = { p: full, timer: setTimeout(() => this.flush(), wait) };
      return;
    }
    this.close();
    this.lastReport = t;
    this.report(full);
  }

  private flush(): void {
    const p = this.pending?.p;
    this.pending = undefined;
    if (!p) return;
    this.lastReport = this.now();
    this.report(p);
  }

  /** Drops a throttled report that has not been sent yet. */
  close(): void {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
  }
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** 1234567 -> "1.2 MB" (decimal units, as the Hub shows sizes). */
export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[i]}`;
}

/** 3725 -> "1h02m", 125 -> "2m05s", 7 -> "7s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** One line for a terminal: `  42% 1.2 GB / 2.9 GB · 11.3 MB/s · ETA 2m31s · onnx/decoder_model_merged_q4.onnx (3/9)` */
export function formatProgressLine(p: PullProgress): string {
  if (p.phase === 'listing') return `listing ${p.repo}…`;
  const pct = p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 100;
  const parts = [`${String(pct).padStart(3)}% ${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}`];
  if (p.bytesPerSecond > 0) parts.push(`${formatBytes(p.bytesPerSecond)}/s`);
  if (p.etaSeconds !== undefined && p.phase === 'downloading') parts.push(`ETA ${formatDuration(p.etaSeconds)}`);
  if (p.phase === 'finishing') parts.push('finishing');
  else if (p.file) parts.push(`${p.file} (${p.fileIndex}/${p.fileCount})`);
  return parts.join(' · ');
}
