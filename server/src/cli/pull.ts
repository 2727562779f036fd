/**
 * `llava-lens pull <repo> [--revision R] [--dtype P] [--models-dir D]` and `llava-lens pull --list`:
 * a thin front to server/src/hub. Progress goes to stderr (one rewritten line on a terminal,
 * else a line per file and per 10 %); the model folder's path is the only thing on stdout.
 * Ctrl-C cancels (partial downloads are kept for the next pull) and exits with 130.
 */
import * as path from 'node:path';
import { LensErrorCode, isLensError } from '../../../common/errors';
import type { DtypeSpec } from '../../../common/protocol';
import { formatCatalogue, formatProgressLine, pullModel, type PullProgress } from '../hub';
import { formatBytes, formatDuration } from '../hub/progress';
import { UsageError, parse, parseDtype } from './args';

export interface PullSettings {
  list: boolean;
  repo?: string;
  revision?: string;
  dtype?: DtypeSpec;
  modelsDir?: string;
}

export function parsePullArgs(argv: string[]): PullSettings {
  const { values, positionals } = parse(argv, {
    list: { type: 'boolean' },
    revision: { type: 'string' },
    dtype: { type: 'string' },
    'models-dir': { type: 'string' },
  });
  if (values.list) {
    if (positionals.length > 0) throw new UsageError('pull --list takes no repository.');
    return { list: true };
  }
  if (positionals.length !== 1) throw new UsageError('pull needs exactly one repository, e.g. pull llava-hf/llava-onevision-qwen2-0.5b-ov-hf (pull --list shows known-good ones).');
  const s: PullSettings = { list: false, repo: positionals[0] };
  if (values.revision !== undefined) s.revision = values.revision;
  const dtype = parseDtype(values.dtype);
  if (dtype !== undefined) s.dtype = dtype;
  if (values['models-dir'] !== undefined) s.modelsDir = path.resolve(values['models-dir']);
  return s;
}

/** Progress on stderr: a rewritten line on a terminal, else a line per file and per 10 %. */
class PullDisplay {
  private open = false;
  private lastKey = '';

  constructor(private readonly out: NodeJS.WriteStream) {}

  update(p: PullProgress): void {
    if (p.phase === 'done') return; // the summary line follows
    const line = formatProgressLine(p);
    if (this.out.isTTY) {
      const width = (this.out.columns ?? 80) - 1;
      this.out.write(`\r${line.slice(0, width).padEnd(width)}`);
      this.open = true;
      return;
    }
    const step = p.bytesTotal > 0 ? Math.floor((10 * p.bytesDone) / p.bytesTotal) : 0;
    const key = `${p.phase}|${p.file ?? ''}|${step}`;
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.out.write(line + '\n');
  }

  done(): void {
    if (this.open) this.out.write('\n');
    this.open = false;
  }
}

export async function runPull(s: PullSettings): Promise<number> {
  if (s.list) {
    process.stdout.write(formatCatalogue());
    return 0;
  }
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  const display = new PullDisplay(process.stderr);
  const started = Date.now();
  try {
    const r = await pullModel({
      repo: s.repo!,
      ...(s.revision !== undefined ? { revision: s.revision } : {}),
      ...(s.dtype !== undefined ? { dtype: s.dtype } : {}),
      ...(s.modelsDir !== undefined ? { modelsDir: s.modelsDir } : {}),
      signal: ac.signal,
      onProgress: (p) => display.update(p),
    });
    display.done();
    const dtype = Object.entries(r.dtype).map(([role, d]) => `${role}=${d}`).join(', ');
    const fetched = r.downloadedBytes > 0 ? `downloaded ${formatBytes(r.downloadedBytes)} in ${formatDuration((Date.now() - started) / 1000)}` : 'already complete, nothing downloaded';
    process.stderr.write(`${r.repo} @ ${r.commit.slice(0, 12)}: ${r.files.length} files, ${formatBytes(r.bytes)} (${dtype}); ${fetched}.\n`);
    process.stderr.write(`Ask it: llava-lens ask <image> -q "…" --model ${JSON.stringify(r.path)}\n`);
    process.stdout.write(`${r.path}\n`);
    return 0;
  } catch (e) {
    display.done();
    if (isLensError(e) && e.code === LensErrorCode.Cancelled) {
      process.stderr.write(`llava-lens pull: ${e.message}\n`);
      return 130;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
