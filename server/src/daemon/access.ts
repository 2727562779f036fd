/**
 * What one client may do: which paths it may read and how much it may ask for.
 *
 * Client kinds:
 * - `private`: the one client of a stdio / node-ipc daemon — its parent process, running as the
 *   same user. Paths are resolved against its first workspace folder (else the daemon's cwd) and
 *   must name regular files; no other restriction (the client could read them itself).
 * - `local`: a WebSocket client on a loopback address. Image paths must resolve — symlinks
 *   followed, `..` applied — inside a workspace folder it declared at `initialize`; model
 *   folders inside the daemon's model roots. Devices, FIFOs and sockets are refused.
 * - `remote`: a WebSocket client from another host. Images come as bytes, never paths; model
 *   folders as for `local`.
 *
 * For `local` clients the daemon reads the image itself (opened with O_NOFOLLOW after the check,
 * then fstat'ed) and hands the engine bytes, so a path swapped after the check reads nothing else.
 */
import { constants as fsc, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { LensError, LensErrorCode } from '../../../common/errors';
import { decodeBase64 } from '../../../common/protocol';
import type { ImageParam } from '../../../common/protocol';
import type { ImageInput } from '../runtime/types';
import { invalidParams } from './errors';

export type ClientKind = 'private' | 'local' | 'remote';

/** Limits a shared daemon applies per client (a private daemon uses the defaults too). */
export interface DaemonLimits {
  /** Requests allowed to wait behind the running one, over all clients. */
  queueLimit: number;
  /** Largest image file or decoded `bytes`, in bytes. */
  maxImageBytes: number;
  /** Largest decoded image, in pixels (checked from the header, before decoding). */
  maxImagePixels: number;
  /** Largest new prompt part of one turn, in tokens (image tokens included); 0 = the context length. */
  maxPromptTokens: number;
  /** Largest `maxTokens` one ask may request. */
  maxNewTokens: number;
  /** Conversations one client keeps in memory (older ones are reloaded from disk when used). */
  maxConversationsPerClient: number;
  /** Requests one client may send per minute; 0 = unlimited. */
  requestsPerMinute: number;
  /** How long a disconnected client's conversations are kept for it to reconnect, ms. */
  conversationKeepMs: number;
}

export const DEFAULT_LIMITS: DaemonLimits = {
  queueLimit: 16,
  maxImageBytes: 64 * 1024 * 1024,
  maxImagePixels: 50_000_000,
  maxPromptTokens: 0,
  maxNewTokens: 4096,
  maxConversationsPerClient: 64,
  requestsPerMinute: 0,
  conversationKeepMs: 30 * 60_000,
};

/**
 * A client-sent path as error messages show it: whole up to 240 characters, else its start and
 * end (a path of megabytes must not come back in every answer).
 */
export function shownPath(p: string): string {
  if (p.length <= 240) return p;
  return `${p.slice(0, 160)}…${p.slice(-60)} (${p.length} characters)`;
}

/** Is `child` (a real path) `root` or inside it (a real path)? */
function within(child: string, root: string): boolean {
  const rel = path.relative(root, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

async function realRoots(roots: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of roots) {
    try {
      out.push(await fs.realpath(r));
    } catch {
      // a root that does not exist holds nothing
    }
  }
  return out;
}

export interface AccessContext {
  kind: ClientKind;
  /** Workspace folders the client declared (absolute). */
  workspaceFolders: string[];
  /** The daemon operator's model roots (absolute). */
  modelRoots: string[];
  limits: DaemonLimits;
}

/** Resolves `p` the way this client's paths are read, or throws PathNotAllowed / ImageNotFound. */
export async function resolveClientPath(ctx: AccessContext, p: string, what: 'image' | 'model', field: string): Promise<string> {
  const base = ctx.workspaceFolders[0] ?? (ctx.kind === 'private' ? process.cwd() : undefined);
  if (ctx.kind === 'remote' && what === 'image') {
    throw new LensError(LensErrorCode.PathNotAllowed, `${field}: a remote client sends image bytes, not paths: send {"bytes": <base64>} instead of {"path": "${shownPath(p)}"}.`);
  }
  const abs = path.isAbsolute(p) ? path.normalize(p) : base ? path.resolve(base, p) : undefined;
  if (!abs) {
    throw new LensError(LensErrorCode.PathNotAllowed, `${field}: "${shownPath(p)}" is relative but no workspace folder was declared at initialize: send an absolute path inside a workspace folder, or the bytes.`);
  }
  if (ctx.kind === 'private') return abs;
  let real: string;
  try {
    real = await fs.realpath(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' || code === 'ENOTDIR' ? 'does not exist' : `cannot be resolved (${code ?? (e as Error).message})`;
    throw new LensError(what === 'image' ? LensErrorCode.ImageNotFound : LensErrorCode.InvalidModelFolder, `${field}: ${shownPath(abs)} ${why}: check the path.`);
  }
  const roots = what === 'image' ? ctx.workspaceFolders : ctx.modelRoots;
  const allowed = await realRoots(roots);
  if (!allowed.some((r) => within(real, r))) {
    const where = what === 'image' ? 'the workspace folders declared at initialize' : "the daemon's model roots (serve --model-root)";
    const list = roots.length ? ` (${roots.map(shownPath).join(', ')})` : ' (none declared)';
    throw new LensError(
      LensErrorCode.PathNotAllowed,
      `${field}: ${shownPath(abs)}${real !== abs ? ` (really ${shownPath(real)})` : ''} is outside ${where}${list}: ` +
        (what === 'image' ? 'send the image bytes instead, or open that folder as a workspace folder.' : 'pick a model from lens/listModels.'),
    );
  }
  return real;
}

/** Reads an image a local client named, refusing anything but a regular file within the size limit. */
async function readSandboxedImage(real: string, field: string, maxBytes: number): Promise<Uint8Array> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(real, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    throw new LensError(LensErrorCode.ImageNotFound, `${field}: ${shownPath(real)} cannot be opened (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): check the path and its permissions.`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new LensError(LensErrorCode.PathNotAllowed, `${field}: ${shownPath(real)} is not a regular file (a device, FIFO, socket or folder): send an image file.`);
    if (st.size > maxBytes) throw tooBig(field, st.size, maxBytes);
    const buf = await handle.readFile();
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } finally {
    await handle.close();
  }
}

function tooBig(field: string, size: number, max: number): LensError {
  const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return new LensError(LensErrorCode.ImageTooLarge, `${field}: the image is ${mib(size)}, over this daemon's limit of ${mib(max)}: send a smaller image (or raise --max-image-bytes).`);
}

/** Turns one image param into engine input under this client's rules. */
export async function resolveImageParam(ctx: AccessContext, img: ImageParam, field: string): Promise<ImageInput> {
  const max = ctx.limits.maxImageBytes;
  if ('path' in img) {
    const abs = await resolveClientPath(ctx, img.path, 'image', `${field}.path`);
    if (ctx.kind !== 'private') return { bytes: await readSandboxedImage(abs, field, max) };
    const st = await fs.stat(abs).catch(() => undefined);
    if (!st?.isFile()) {
      throw new LensError(
        LensErrorCode.ImageNotFound,
        `Image not found: ${shownPath(abs)} (${field}.path "${shownPath(img.path)}"). Send an absolute path, or one relative to ` +
          `${ctx.workspaceFolders[0] ? `the workspace folder ${ctx.workspaceFolders[0]}` : `the daemon's working folder ${process.cwd()}`}.`,
      );
    }
    if (st.size > max) throw tooBig(field, st.size, max);
    return { path: abs };
  }
  // base64 is 4 characters per 3 bytes: refuse an oversized one before decoding it
  if (Math.floor((img.bytes.length * 3) / 4) > max + 3) throw tooBig(field, Math.floor((img.bytes.length * 3) / 4), max);
  const bytes = decodeBase64(img.bytes);
  if (!bytes) throw invalidParams(`${field}.bytes is not valid base64; send the file's bytes base64-encoded (standard alphabet, no "data:" prefix).`);
  if (bytes.length === 0) throw invalidParams(`${field}.bytes decodes to 0 bytes; send the image file's contents.`);
  if (bytes.length > max) throw tooBig(field, bytes.length, max);
  return img.mimeType !== undefined ? { bytes, mimeType: img.mimeType } : { bytes };
}

/** A sliding one-minute window of request times for one client. */
export class RateLimiter {
  private readonly times: number[] = [];

  constructor(private readonly perMinute: number) {}

  /** Throws RateLimited when this request would exceed the limit. */
  check(method: string, now = Date.now()): void {
    if (this.perMinute <= 0) return;
    while (this.times.length && now - this.times[0] >= 60_000) this.times.shift();
    if (this.times.length >= this.perMinute) {
      const wait = Math.ceil((60_000 - (now - this.times[0])) / 1000);
      throw new LensError(LensErrorCode.RateLimited, `${method}: more than ${this.perMinute} requests in the last minute from this client; retry in ${wait} s (the operator sets --requests-per-minute).`);
    }
    this.times.push(now);
  }
}
