/**
 * One file from the Hub into a folder, resumable and verified:
 *
 *   <dest>.part   bytes received so far (kept across runs, cancels and failures)
 *   <dest>        appears only once the whole file has the listed size and hash (rename)
 *
 * A `.part` left by an earlier attempt is continued with `Range: bytes=<have>-` (206 appends; a
 * 200 means the server ignored the range, so it starts over). Network failures, 5xx and 429 are
 * retried up to `retries` times with exponential backoff, each retry resuming where the bytes on
 * disk end. Verification: the size always; SHA-256 for LFS files; the git blob id (SHA-1 of
 * `blob <size>\0<content>`) for files kept in git. A mismatch deletes the `.part` and throws
 * DownloadCorrupt (no retry: the same server would likely send the same bytes).
 *
 * Not safe to run twice at once on the same `dest` (pull.ts holds a lock per repository).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { LensError } from '../../../common/errors';
import { HubErrorCode, cancelledError, hubError, isRetryable } from './errors';
import { hubGet, resolveUrl, statusError, type HubClient, type HubFile } from './hubApi';

export interface FileDownload {
  client: HubClient;
  repo: string;
  /** Commit (or revision) the file is fetched at. */
  commit: string;
  file: HubFile;
  /** Final path of the verified file. */
  dest: string;
  /** Further attempts after a retryable failure (default 4). */
  retries?: number;
  /** First backoff; doubles per retry (default 1000 ms). */
  retryDelayMs?: number;
  /**
   * Progress: `present` = bytes of this file now on disk (may go down when a server ignores a
   * range and the file starts over), `received` = bytes that just came over the network.
   */
  onBytes?: (present: number, received: number) => void;
}

/** How a file is checked once complete. */
function newHasher(file: HubFile): { hash: Hash; expected: string; kind: string } | undefined {
  if (file.sha256) return { hash: createHash('sha256'), expected: file.sha256.toLowerCase(), kind: 'SHA-256' };
  if (file.blobId) {
    const hash = createHash('sha1');
    hash.update(`blob ${file.size}\0`);
    return { hash, expected: file.blobId.toLowerCase(), kind: 'git blob id' };
  }
  return undefined;
}

async function sizeOf(p: string): Promise<number | undefined> {
  return fs.stat(p).then((s) => (s.isFile() ? s.size : undefined), () => undefined);
}

/** Waits `ms`, or less when `signal` aborts (it never rejects). */
export const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Feeds the bytes already in `part` to the hasher (resume). */
async function hashExisting(part: string, hasher: Hash | undefined): Promise<void> {
  if (!hasher) return;
  for await (const chunk of createReadStream(part)) hasher.update(chunk as Buffer);
}

/** Parses `Content-Range: bytes <start>-<end>/<total>` -> start. */
function rangeStart(header: string | string[] | undefined): number | undefined {
  const m = typeof header === 'string' ? /^bytes\s+(\d+)-\d+\/(?:\d+|\*)$/.exec(header.trim()) : undefined;
  return m ? Number(m[1]) : undefined;
}

/** One attempt: continues `part` from what it holds. Resolves when the body has been written. */
async function attempt(d: FileDownload, part: string): Promise<void> {
  const { client, file } = d;
  let have = (await sizeOf(part)) ?? 0;
  if (have > file.size) {
    await fs.rm(part, { force: true });
    have = 0;
  }
  if (have === file.size && file.size > 0) return; // complete from an earlier run: verify below
  const url = resolveUrl(client, d.repo, d.commit, file.path);
  const res = await hubGet(client, url, have > 0 ? { Range: `bytes=${have}-` } : {});
  if (res.status === 416) {
    // The part does not fit the file the server has: start over on the next attempt.
    res.body.resume();
    await fs.rm(part, { force: true });
    throw hubError(HubErrorCode.DownloadFailed, `the server refused to resume ${file.path} (HTTP 416); starting it over.`, { retryable: true });
  }
  if (res.status !== 200 && res.status !== 206) throw await statusError(client, res, { repo: d.repo, revision: d.commit, file: file.path });
  if (res.status === 206 && rangeStart(res.headers['content-range']) !== have) {
    res.body.resume();
    await fs.rm(part, { force: true });
    throw hubError(HubErrorCode.DownloadFailed, `${res.url.host} answered a range of ${file.path} that does not start at byte ${have}; starting it over.`, { retryable: true });
  }
  if (res.status === 200) have = 0; // range ignored (or none asked): whole file from byte 0
  d.onBytes?.(have, 0);
  let present = have;
  // Not `pipeline`: on a dropped connection it would destroy the file stream and lose the bytes
  // still buffered; here the file is always ended (flushed), so the next attempt resumes after them.
  const out = createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
  let failure: unknown;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (present + chunk.length > file.size) {
        res.body.destroy();
        throw hubError(HubErrorCode.DownloadCorrupt, `${res.url.host} sent more than the ${file.size} bytes listed for ${file.path}; the server and its listing disagree.`);
      }
      present += chunk.length;
      if (!out.write(chunk)) await once(out, 'drain');
      d.onBytes?.(present, chunk.length);
    }
  } catch (e) {
    failure = e;
  }
  out.end();
  await finished(out).catch((e) => (failure ??= e));
  if (failure !== undefined) throw failure;
  if (present < file.size) {
    throw hubError(HubErrorCode.DownloadFailed, `the connection to ${res.url.host} closed after ${present} of ${file.size} bytes of ${file.path}.`, { retryable: true });
  }
}

/** Checks a complete `.part` against the listing; renames it to `dest` or deletes it and throws. */
async function verifyAndPlace(d: FileDownload, part: string): Promise<void> {
  const { file } = d;
  const size = (await sizeOf(part)) ?? 0;
  const check = newHasher(file);
  if (size === file.size && check) await hashExisting(part, check.hash);
  const actual = check?.hash.digest('hex');
  if (size !== file.size || (check && actual !== check.expected)) {
    await fs.rm(part, { force: true });
    const what = size !== file.size ? `has ${size} bytes, the Hub lists ${file.size}` : `${check!.kind} ${actual} != ${check!.expected} listed by the Hub`;
    throw hubError(
      HubErrorCode.DownloadCorrupt,
      `${file.path} of ${d.repo} is corrupt (${what}); it was deleted. Run the pull again; if it happens again, the server (HF_ENDPOINT) serves different bytes than it lists.`,
      { file: file.path },
    );
  }
  await fs.rename(part, d.dest);
}

/**
 * Downloads `d.file` to `d.dest` unless `d.dest` already holds it (by size: files are only
 * renamed there after verification). Returns the bytes received over the network. Throws
 * Cancelled (the `.part` stays), DownloadCorrupt, DownloadFailed, AccessDenied, RepoNotFound.
 */
export async function downloadFile(d: FileDownload): Promise<number> {
  const { signal } = d.client;
  if ((await sizeOf(d.dest)) === d.file.size) return 0;
  await fs.mkdir(path.dirname(d.dest), { recursive: true });
  const part = `${d.dest}.part`;
  const retries = d.retries ?? 4;
  let received = 0;
  const onBytes = d.onBytes;
  const counted: FileDownload = { ...d, onBytes: (present, n) => ((received += n), onBytes?.(present, n)) };
  for (let i = 0; ; i++) {
    if (signal?.aborted) throw cancelledError(`downloading ${d.repo}`);
    try {
      await attempt(counted, part);
      break;
    } catch (e) {
      if (signal?.aborted) throw cancelledError(`downloading ${d.repo}`);
      if (e instanceof LensError && (e.code as number) === HubErrorCode.DownloadCorrupt) await fs.rm(part, { force: true });
      if (i >= retries || !isRetryable(e)) {
        if (e instanceof LensError) throw e;
        throw hubError(HubErrorCode.DownloadFailed, `downloading ${d.file.path} of ${d.repo} failed: ${(e as Error).message}. Run the pull again to resume.`, { file: d.file.path });
      }
      await sleep((d.retryDelayMs ?? 1000) * 2 ** i, signal);
    }
  }
  await verifyAndPlace(d, part);
  return received;
}

/** True when `p` holds exactly `file` (size, then hash when the listing has one). Reads the whole file. */
export async function fileMatches(p: string, file: HubFile): Promise<boolean> {
  if ((await sizeOf(p)) !== file.size) return false;
  const check = newHasher(file);
  if (!check) return true;
  await hashExisting(p, check.hash);
  return check.hash.digest('hex') === check.expected;
}
