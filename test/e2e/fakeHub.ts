/**
 * A loopback stand-in for the Hugging Face Hub, serving model folders from disk under the Hub's
 * URL and API shapes (what server/src/hub reads):
 *
 *   GET /api/models/{owner}/{name}/revision/{rev}?blobs=true  -> { id, sha, siblings: [{ rfilename, size, blobId, lfs? }] }
 *   GET /api/models/{owner}/{name}/tree/{rev}?recursive=true  -> [{ type, path, size, oid, lfs? }], 4 per page, Link rel="next"
 *   GET /{owner}/{name}/resolve/{rev}/{path}                  -> the bytes, honouring Range (206 / 416)
 *
 * `.onnx` and `.onnx_data` files are "LFS" files (`lfs.sha256`); the others are git files
 * (`blobId` = git blob SHA-1). Errors carry `X-Error-Code` like the Hub: unknown repository ->
 * 404 RepoNotFound, a gated repository's files without the right bearer token -> 401 GatedRepo
 * (its listing is public, as on the Hub). With `cdn`, LFS files answer 302 to a second server
 * (host name `localhost`, another port) that serves them by hash, like the Hub's CDN.
 *
 * `faults` break one file on purpose (drop the connection after N bytes, flip a byte, stall) or
 * slow the files down (throttle), and `requests` records every request each server saw, headers
 * included.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as path from 'node:path';

export interface FakeRepo {
  dir: string;
  /** Files need `Authorization: Bearer <FakeHubOptions.token>`. */
  gated?: boolean;
}

export interface FakeHubOptions {
  repos: Record<string, FakeRepo>;
  token?: string;
  cdn?: boolean;
  /** Leave sizes and hashes out of the revision listing (the client must use the tree API). */
  listingWithoutSizes?: boolean;
  /** Serve https with this key and certificate (PEM) instead of http. */
  tls?: { key: string; cert: string };
}

export interface Faults {
  /** Destroy the connection after `bytes` bytes of `file`'s body, for the next `times` requests of it. */
  dropAfter?: { file: string; bytes: number; times: number };
  /** Serve `file` with one byte changed (same size). */
  corrupt?: string;
  /** Send `bytes` bytes of `file`, then nothing until the client goes away; `onStall` is called then. */
  stallAfter?: { file: string; bytes: number; onStall: () => void };
  /** A slow network: every file body (or `file`'s only) goes in `chunkBytes` pieces, `delayMs` apart. */
  throttle?: { chunkBytes: number; delayMs: number; file?: string };
}

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface FileEntry {
  path: string;
  abs: string;
  size: number;
  lfs: boolean;
  sha256: string;
  blobId: string;
}

export interface FakeHub {
  /** e.g. http://127.0.0.1:41234 — the HF_ENDPOINT. */
  url: string;
  /** Every request, in order. */
  requests: RecordedRequest[];
  faults: Faults;
  /** The commit sha a repository's listing reports. */
  commitOf(repo: string): string;
  close(): Promise<void>;
}

const isLfs = (p: string) => /\.onnx(_data(_\d+)?)?$/.test(p);

async function walk(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

async function indexRepo(dir: string): Promise<FileEntry[]> {
  const files: FileEntry[] = [];
  for (const rel of await walk(dir)) {
    const abs = path.join(dir, ...rel.split('/'));
    const bytes = await fs.readFile(abs);
    const blob = createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
    files.push({ path: rel, abs, size: bytes.length, lfs: isLfs(rel), sha256: createHash('sha256').update(bytes).digest('hex'), blobId: blob });
  }
  return files;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: message }, { 'X-Error-Code': code, 'X-Error-Message': message });
}

/** Serves `f` honouring Range and the faults. */
async function serveFile(req: http.IncomingMessage, res: http.ServerResponse, f: FileEntry, faults: Faults): Promise<void> {
  let bytes = await fs.readFile(f.abs);
  if (faults.corrupt === f.path) {
    bytes = Buffer.from(bytes);
    bytes[bytes.length >> 1] ^= 0xff;
  }
  let start = 0;
  let end = bytes.length - 1;
  let status = 200;
  const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
  if (range) {
    start = Number(range[1]);
    if (range[2]) end = Math.min(end, Number(range[2]));
    if (start >= bytes.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` });
      res.end();
      return;
    }
    status = 206;
  }
  const body = bytes.subarray(start, end + 1);
  res.writeHead(status, {
    'Content-Length': body.length,
    'Accept-Ranges': 'bytes',
    ETag: `"${f.lfs ? f.sha256 : f.blobId}"`,
    ...(status === 206 ? { 'Content-Range': `bytes ${start}-${end}/${bytes.length}` } : {}),
  });
  const drop = faults.dropAfter;
  if (drop && drop.file === f.path && drop.times > 0) {
    drop.times--;
    res.write(body.subarray(0, drop.bytes), () => res.socket?.destroy());
    return;
  }
  const stall = faults.stallAfter;
  if (stall && stall.file === f.path) {
    faults.stallAfter = undefined;
    res.write(body.subarray(0, stall.bytes), () => stall.onStall());
    return;
  }
  const throttle = faults.throttle;
  if (throttle && (throttle.file === undefined || throttle.file === f.path)) {
    let at = 0;
    const next = () => {
      if (res.destroyed || res.writableEnded) return;
      const piece = body.subarray(at, at + throttle.chunkBytes);
      at += piece.length;
      if (at >= body.length) res.end(piece);
      else res.write(piece, () => setTimeout(next, throttle.delayMs));
    };
    next();
    return;
  }
  res.end(body);
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub> {
  const repos = new Map<string, { repo: FakeRepo; files: FileEntry[]; sha: string }>();
  for (const [id, repo] of Object.entries(opts.repos)) {
    repos.set(id, { repo, files: await indexRepo(repo.dir), sha: createHash('sha1').update(`commit of ${id}`).digest('hex') });
  }
  const requests: RecordedRequest[] = [];
  const faults: Faults = {};
  const scheme = opts.tls ? 'https' : 'http';
  let cdnPort = 0;

  const authorised = (req: http.IncomingMessage) => opts.token !== undefined && req.headers.authorization === `Bearer ${opts.token}`;

  const hubHandler = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    requests.push({ server: 'hub', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://hub');
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const entry = repos.get(decodeURIComponent(m[1]));
      if (!entry) return sendError(res, 404, 'RepoNotFound', 'Repository not found');
      const rev = decodeURIComponent(m[3]);
      if (rev !== 'main' && rev !== entry.sha) return sendError(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      if (m[2] === 'revision') {
        const siblings = entry.files.map((f) =>
          opts.listingWithoutSizes
            ? { rfilename: f.path }
            : { rfilename: f.path, size: f.size, blobId: f.lfs ? createHash('sha1').update(`pointer ${f.sha256}`).digest('hex') : f.blobId, ...(f.lfs ? { lfs: { sha256: f.sha256, size: f.size, pointerSize: 134 } } : {}) },
        );
        return sendJson(res, 200, { id: m[1], sha: entry.sha, private: false, gated: entry.repo.gated ? 'manual' : false, siblings });
      }
      const cursor = Number(url.searchParams.get('cursor') ?? '0');
      const page = entry.files.slice(cursor, cursor + 4).map((f) => ({ type: 'file', path: f.path, size: f.size, oid: f.blobId, ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: 134 } } : {}) }));
      const next: Record<string, string> = cursor + 4 < entry.files.length ? { Link: `<${url.pathname}?recursive=true&cursor=${cursor + 4}>; rel="next"` } : {};
      return sendJson(res, 200, page, next);
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m) {
      const entry = repos.get(decodeURIComponent(m[1]));
      if (!entry) return sendError(res, 404, 'RepoNotFound', 'Repository not found');
      const rev = decodeURIComponent(m[2]);
      if (rev !== 'main' && rev !== entry.sha) return sendError(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      if (entry.repo.gated && !authorised(req)) {
        return sendError(res, 401, 'GatedRepo', `Access to model ${m[1]} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      }
      const file = m[3].split('/').map(decodeURIComponent).join('/');
      const f = entry.files.find((x) => x.path === file);
      if (!f) return sendError(res, 404, 'EntryNotFound', `${file} does not exist on "${rev}"`);
      if (opts.cdn && f.lfs) {
        res.writeHead(302, { Location: `${scheme}://localhost:${cdnPort}/lfs/${f.sha256}?X-Amz-Signature=fake`, 'X-Linked-Size': String(f.size), 'X-Linked-Etag': `"${f.sha256}"` });
        res.end();
        return;
      }
      return serveFile(req, res, f, faults);
    }
    sendError(res, 404, 'NotFound', `no route for ${url.pathname}`);
  };

  const cdnHandler = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    requests.push({ server: 'cdn', method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const m = /^\/lfs\/([0-9a-f]{64})$/.exec(new URL(req.url ?? '/', 'http://cdn').pathname);
    const f = m ? [...repos.values()].flatMap((r) => r.files).find((x) => x.sha256 === m[1]) : undefined;
    if (!f) return sendError(res, 404, 'NotFound', 'no such object');
    return serveFile(req, res, f, faults);
  };

  const wrap = (h: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    h(req, res).catch((e) => {
      if (!res.headersSent) sendError(res, 500, 'Internal', String(e));
      else res.destroy();
    });
  };
  const make = (h: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) =>
    opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, wrap(h)) : http.createServer(wrap(h));
  const hub = make(hubHandler);
  const port = await listen(hub);
  const cdn = opts.cdn ? make(cdnHandler) : undefined;
  if (cdn) cdnPort = await listen(cdn);

  return {
    url: `${scheme}://${opts.tls ? 'localhost' : '127.0.0.1'}:${port}`,
    requests,
    faults,
    commitOf: (repo) => repos.get(repo)!.sha,
    close: async () => {
      for (const s of [hub, cdn]) {
        if (!s) continue;
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}

export interface FakeProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Request lines the proxy saw: `GET http://…` (forwarded) or `CONNECT host:port` (tunnelled). */
  seen: string[];
  close(): Promise<void>;
}

/** A minimal forward proxy: absolute-form GETs are forwarded, CONNECT is tunnelled. */
export async function startFakeProxy(): Promise<FakeProxy> {
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const target = new URL(req.url ?? '');
    const up = http.request({ host: target.hostname, port: target.port, path: target.pathname + target.search, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url}`);
    const [host, portText] = (req.url ?? '').split(':');
    const upstream = net.connect(Number(portText), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [upstream, client]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => (s === upstream ? client : upstream).destroy());
    }
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
