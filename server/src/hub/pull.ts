/**
 * `pullModel`: one repository from the Hub into a model folder the runtime can load.
 *
 *   <models>/owner/name/                       the model folder; exists only complete and verified
 *   <models>/.partial/owner--name--<commit>/   where it is assembled (hidden: model scans skip it)
 *   <models>/.partial/owner--name.lock         one pull per repository at a time (holds the pid)
 *
 * Steps: list the repository at the revision (pinning its commit) -> choose the files the
 * precisions need (select.ts) -> reuse verified files already in the assembly folder or in an
 * existing model folder of that repository (hard links; copies where links fail) -> download the
 * rest (download.ts: resumable `.part` files, verified size and hash) -> carry over the other
 * files of the existing model folder (e.g. other precisions) -> write `.llava-lens-pull.json` ->
 * rename the assembly folder into place (an existing folder is moved aside first, then deleted).
 *
 * Cancel (`signal`) or a failure leaves the assembly folder and its `.part` files for the next
 * pull to resume, and never a model folder. Options left out come from `env` (settings.ts).
 * Concurrency: pulls of different repositories may run at once; a second pull of the same
 * repository fails with Busy while the first runs.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { Dtype, DtypeSpec, ModelFileRole } from '../runtime/types';
import { findCatalogueEntry } from './catalogue';
import { downloadFile, fileMatches, sleep } from './download';
import { HubErrorCode, cancelledError, hubError, isRetryable } from './errors';
import { listRepoFiles, type HubClient, type HubFile, type RepoListing } from './hubApi';
import { ProgressMeter, type PullProgress } from './progress';
import { proxyFromEnv, type ProxySettings } from './proxy';
import { selectFiles } from './select';
import { defaultModelsDir, hubEndpoint, hubToken, modelFolderFor } from './settings';

export interface PullOptions {
  /** `owner/name` on the Hub. */
  repo: string;
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  /** One precision for every file, or per file; default: the catalogue's first variant, else select.ts's preference. */
  dtype?: DtypeSpec;
  /** Default: `LLAVA_LENS_MODELS_DIR`, else `<cache>/models`. */
  modelsDir?: string;
  /** Default: `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Default: `HF_TOKEN`, else the huggingface-cli token file. `''` sends no token. */
  token?: string;
  /** Default: from `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`. */
  proxy?: ProxySettings;
  /** Extra PEM certificates to trust (e.g. a company proxy's); `NODE_EXTRA_CA_CERTS` also works. */
  ca?: string | Buffer;
  /** Where absent options come from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  onProgress?: (p: PullProgress) => void;
  /** Retries per file after network failures (default 4), first backoff (default 1000 ms, doubling). */
  retries?: number;
  retryDelayMs?: number;
  /** No bytes for this long counts as a failed attempt (default 60 s). */
  idleTimeoutMs?: number;
}

export interface PullResult {
  /** The model folder. */
  path: string;
  repo: string;
  revision: string;
  commit: string;
  dtype: Record<ModelFileRole, Dtype>;
  /** The files of this pull, relative to `path`. */
  files: Array<{ path: string; size: number }>;
  /** Their total size, bytes. */
  bytes: number;
  /** Bytes that came over the network this time (0 when everything was already there). */
  downloadedBytes: number;
}

export const MANIFEST = '.llava-lens-pull.json';

const exists = (p: string) => fs.stat(p).then(() => true, () => false);

/** Safe single path segment from a commit or revision. */
const segment = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the per-repository lock; returns its release. */
async function lock(file: string, repo: string): Promise<() => Promise<void>> {
  for (let i = 0; i < 2; i++) {
    try {
      const h = await fs.open(file, 'wx');
      await h.writeFile(String(process.pid));
      await h.close();
      return () => fs.rm(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new LensError(LensErrorCode.Busy, `${repo} is already being downloaded (process ${pid}); wait for it, or delete ${file} if that process is gone.`);
      }
      await fs.rm(file, { force: true }); // stale: its process is gone
    }
  }
  throw new LensError(LensErrorCode.Busy, `${repo} is already being downloaded; try again.`);
}

/** Hard link, or copy where the file system has none. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  await fs.mkdir(path.dirname(to), { recursive: true });
  await fs.rm(to, { force: true });
  await fs.link(from, to).catch(() => fs.copyFile(from, to));
}

/** Relative paths of every file under `dir`, `/`-separated. */
async function listTree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, prefix), { withFileTypes: true }).catch(() => [])) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listTree(dir, rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out;
}

/** Fails early when the disk cannot hold what is left to download. */
async function checkFreeSpace(dir: string, need: number): Promise<void> {
  const s = await fs.statfs(dir).catch(() => undefined);
  if (!s) return;
  const free = s.bavail * s.bsize;
  if (free < need) {
    throw hubError(HubErrorCode.DownloadFailed, `not enough disk space in ${dir}: ${Math.ceil(need / 1e6)} MB to download, ${Math.floor(free / 1e6)} MB free. Free some space or pass another models folder.`);
  }
}

/** Moves the assembled folder to `final`, replacing an existing one. */
async function moveIntoPlace(staging: string, final: string, aside: string): Promise<void> {
  await fs.mkdir(path.dirname(final), { recursive: true });
  const hadOld = await exists(final);
  if (hadOld) await fs.rename(final, aside);
  try {
    await fs.rename(staging, final);
  } catch (e) {
    if (hadOld) await fs.rename(aside, final).catch(() => undefined);
    throw hubError(HubErrorCode.DownloadFailed, `cannot move the downloaded model into ${final}: ${(e as Error).message}. If a program has the old model open (Windows), close it and pull again.`);
  }
  if (hadOld) await fs.rm(aside, { recursive: true, force: true });
}

/** The listing, retried like a file after network failures and 5xx. */
async function listWithRetries(client: HubClient, opts: PullOptions, revision: string): Promise<RepoListing> {
  for (let i = 0; ; i++) {
    try {
      return await listRepoFiles(client, opts.repo, revision);
    } catch (e) {
      if (opts.signal?.aborted) throw cancelledError(`downloading ${opts.repo}`);
      if (i >= (opts.retries ?? 4) || !(e instanceof LensError) || !isRetryable(e)) throw e;
      await sleep((opts.retryDelayMs ?? 1000) * 2 ** i, opts.signal);
    }
  }
}

/** Downloads `opts.repo` (see the header). No progress is reported after it settles. */
export async function pullModel(opts: PullOptions): Promise<PullResult> {
  const meter = new ProgressMeter(opts.onProgress ?? (() => undefined));
  try {
    return await pull(opts, meter);
  } finally {
    meter.close();
  }
}

async function pull(opts: PullOptions, meter: ProgressMeter): Promise<PullResult> {
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? 'main';
  const token = opts.token ?? hubToken(env);
  const client: HubClient = {
    endpoint: opts.endpoint ?? hubEndpoint(env),
    ...(token ? { token } : {}),
    http: { proxy: opts.proxy ?? proxyFromEnv(env), ca: opts.ca, idleTimeoutMs: opts.idleTimeoutMs },
    signal: opts.signal,
  };
  const base = { repo: opts.repo, fileIndex: 0, fileCount: 0, bytesDone: 0, bytesTotal: 0 };
  const cancelled = () => {
    if (opts.signal?.aborted) throw cancelledError(`downloading ${opts.repo}`);
  };

  meter.emit({ ...base, phase: 'listing' }, true);
  const listing = await listWithRetries(client, opts, revision);
  const selection = selectFiles(listing, opts.dtype, findCatalogueEntry(opts.repo)?.variants[0]?.dtype);
  const unknown = selection.files.find((f) => f.size < 0);
  if (unknown) throw hubError(HubErrorCode.DownloadFailed, `${client.endpoint} lists ${unknown.path} without a size; cannot verify a download from it (is HF_ENDPOINT a full Hub mirror?).`);

  const modelsDir = path.resolve(opts.modelsDir ?? defaultModelsDir(env));
  const final = modelFolderFor(modelsDir, opts.repo);
  const partialRoot = path.join(modelsDir, '.partial');
  const key = opts.repo.replace('/', '--');
  const staging = path.join(partialRoot, `${key}--${segment(listing.commit)}`);
  await fs.mkdir(staging, { recursive: true });
  const release = await lock(path.join(partialRoot, `${key}.lock`), opts.repo);
  try {
    // Reuse what is there: complete files in the assembly folder (verified before they were
    // renamed there), else matching files of an existing model folder (verified now).
    const todo: HubFile[] = [];
    for (const f of selection.files) {
      cancelled();
      const dest = path.join(staging, ...f.path.split('/'));
      if ((await fs.stat(dest).then((s) => s.size, () => -1)) === f.size) continue;
      const old = path.join(final, ...f.path.split('/'));
      if (await fileMatches(old, f)) await linkOrCopy(old, dest);
      else todo.push(f);
    }
    const present = selection.bytes - todo.reduce((n, f) => n + f.size, 0);
    const partBytes = await Promise.all(todo.map((f) => fs.stat(path.join(staging, ...f.path.split('/')) + '.part').then((s) => Math.min(s.size, f.size), () => 0)));
    await checkFreeSpace(partialRoot, todo.reduce((n, f, i) => n + f.size - partBytes[i], 0));

    let done = present;
    let downloadedBytes = 0;
    for (const [i, f] of todo.entries()) {
      const progress = { ...base, phase: 'downloading' as const, file: f.path, fileIndex: i + 1, fileCount: todo.length, bytesTotal: selection.bytes };
      meter.emit({ ...progress, bytesDone: done + partBytes[i] }, true);
      downloadedBytes += await downloadFile({
        client,
        repo: opts.repo,
        commit: listing.commit,
        file: f,
        dest: path.join(staging, ...f.path.split('/')),
        retries: opts.retries,
        retryDelayMs: opts.retryDelayMs,
        onBytes: (onDisk, received) => {
          meter.transfer(received);
          meter.emit({ ...progress, bytesDone: done + onDisk });
        },
      });
      done += f.size;
    }
    cancelled();
    meter.emit({ ...base, phase: 'finishing', fileIndex: todo.length, fileCount: todo.length, bytesDone: done, bytesTotal: selection.bytes }, true);

    // Keep the rest of an existing model folder (other precisions, files the user added), and
    // what its manifest said about them.
    const pulled = new Set(selection.files.map((f) => f.path));
    const carried = new Set<string>();
    for (const rel of await listTree(final)) {
      if (pulled.has(rel) || rel === MANIFEST) continue;
      await linkOrCopy(path.join(final, ...rel.split('/')), path.join(staging, ...rel.split('/')));
      carried.add(rel);
    }
    const oldManifest = await fs.readFile(path.join(final, MANIFEST), 'utf8').then((t) => JSON.parse(t) as { commit?: string; files?: unknown }, () => undefined);
    const kept = (Array.isArray(oldManifest?.files) ? (oldManifest.files as Array<{ path?: unknown }>) : [])
      .filter((f) => typeof f?.path === 'string' && carried.has(f.path))
      .map((f) => ({ ...f, commit: (f as { commit?: string }).commit ?? oldManifest?.commit }));
    const manifest = {
      repo: opts.repo,
      revision,
      commit: listing.commit,
      endpoint: client.endpoint,
      dtype: selection.dtype,
      pulledAt: new Date().toISOString(),
      files: [
        ...selection.files.map((f) => ({ path: f.path, size: f.size, ...(f.sha256 ? { sha256: f.sha256 } : {}), ...(f.blobId && !f.sha256 ? { blobId: f.blobId } : {}) })),
        ...kept, // from earlier pulls, each with the commit it came from
      ],
    };
    await fs.writeFile(path.join(staging, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
    cancelled();
    await moveIntoPlace(staging, final, path.join(partialRoot, `${key}.old-${process.pid}-${Date.now()}`));

    // Assembly folders of other commits of this repository are stale now.
    for (const name of await fs.readdir(partialRoot).catch(() => [] as string[])) {
      if (name.startsWith(`${key}--`)) await fs.rm(path.join(partialRoot, name), { recursive: true, force: true });
    }
    meter.emit({ ...base, phase: 'done', fileIndex: todo.length, fileCount: todo.length, bytesDone: selection.bytes, bytesTotal: selection.bytes }, true);
    return {
      path: final,
      repo: opts.repo,
      revision,
      commit: listing.commit,
      dtype: selection.dtype,
      files: selection.files.map((f) => ({ path: f.path, size: f.size })),
      bytes: selection.bytes,
      downloadedBytes,
    };
  } finally {
    await release();
  }
}
