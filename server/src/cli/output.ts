/** How the CLI prints progress and timings (all on stderr; stdout carries only the answer). */
import type { AskResult } from '../../../common/protocol';

/** Load progress: one rewritten line on a terminal, else one line per 10 % step. */
export class Progress {
  private lastShown = -1;
  private open = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  update(percent: number | undefined, message: string | undefined): void {
    const pct = percent === undefined ? undefined : Math.max(0, Math.min(100, Math.round(percent)));
    const text = `Loading model${pct === undefined ? '' : ` ${String(pct).padStart(3)}%`}${message ? `  ${message}` : ''}`;
    if (this.out.isTTY) {
      const width = (this.out.columns ?? 80) - 1;
      this.out.write(`\r${text.slice(0, width).padEnd(width)}`);
      this.open = true;
      return;
    }
    const step = pct === undefined ? this.lastShown : Math.floor(pct / 10);
    if (step === this.lastShown && this.lastShown >= 0) return;
    this.lastShown = step;
    this.out.write(text + '\n');
  }

  done(): void {
    if (this.open) this.out.write('\n');
    this.open = false;
  }
}

const ms = (n: number) => `${Math.round(n)} ms`;

/** One line: `eos · 12 tokens · 25.1 tok/s · first token 210 ms · total 640 ms · cpu · model`. */
export function formatTimings(r: AskResult): string {
  const t = r.timings;
  return [
    r.finishReason,
    `${t.newTokens} tokens`,
    `${t.decodeTokensPerSec.toFixed(1)} tok/s`,
    `prompt ${t.promptTokens} tokens (${t.imageTokens} image)`,
    `vision ${ms(t.visionMs)}`,
    `first token ${ms(t.firstTokenMs)}`,
    `total ${ms(t.totalMs)}`,
    r.device,
    r.model,
  ].join(' · ');
}

/** A small table of every timing, for `demo`. */
export function formatTimingsTable(r: AskResult): string {
  const t = r.timings;
  const rows: Array<[string, string]> = [
    ['finish reason', r.finishReason],
    ['model', r.model],
    ['device', r.device],
    ['decode image', ms(t.decodeImageMs)],
    ['preprocess', ms(t.preprocessMs)],
    ['vision encoder', ms(t.visionMs)],
    ['prefill', ms(t.prefillMs)],
    ['first token', ms(t.firstTokenMs)],
    ['total', ms(t.totalMs)],
    ['prompt tokens', `${t.promptTokens} (${t.imageTokens} image)`],
    ['new tokens', String(t.newTokens)],
    ['decode speed', `${t.decodeTokensPerSec.toFixed(1)} tok/s`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return ['Timings:', ...rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`)].join('\n');
}
