/**
 * The Hugging Face Hub's HTTP API, the part a download needs (the shapes `huggingface_hub` uses):
 *
 * - listing: `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` ->
 *   `{ sha, siblings: [{ rfilename, size, blobId, lfs?: { sha256, size } }] }`
 *   (`model_info(files_metadata=True)`); when a mirror leaves sizes out, the tree API
 *   `GET /api/models/{repo}/tree/{sha}?recursive=true` -> `[{ type, path, size, oid, lfs?: { oid } }]`
 *   (pages linked by `Link: <…>; rel="next"`) fills them in;
 * - a file: `GET {endpoint}/{repo}/resolve/{sha}/{path}` (files are fetched at the commit the
 *   listing named, so one pull never mixes two revisions);
 * - errors: the status plus `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `GatedRepo`,
 *   `EntryNotFound`) and `X-Error-Message`. The Hub answers 401 for a missing repository when no
 *   token is sent (it does not tell missing from private), so messages mention both.
 *
 * The token goes to the endpoint's origin only (http.ts). Every failure is a LensError (errors.ts).
 */
import { LensError, LensErrorCode } from '../../../common/errors';
import { HubErrorCode, hubError } from './errors';
import { httpGet, readText, type HttpResponse, type HttpSettings } from './http';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** Where and how to reach the Hub. */
export interface HubClient {
  /** e.g. https://huggingface.co or a mirror such as https://hf-mirror.com (no trailing slash needed). */
  endpoint: string;
  /** Sent as a bearer token to `endpoint`'s origin only. */
  token?: string;
  http?: HttpSettings;
  signal?: AbortSignal;
}

/** One file of a repository at a commit. */
export interface HubFile {
  /** Relative path with `/` separators, e.g. `onnx/decoder_model_merged_q4.onnx`. */
  path: string;
  /** Bytes. */
  size: number;
  /** SHA-256 (hex) of the content, for files stored with Git LFS / Xet. */
  sha256?: string;
  /** Git blob id (SHA-1 hex of `blob <size>\0<content>`), meaningful for files stored in Git itself. */
  blobId?: string;
}

export interface RepoListing {
  repo: string;
  /** What was asked for (branch, tag or commit). */
  revision: string;
  /** The commit it resolved to (the revision itself when the server does not say). */
  commit: string;
  files: HubFile[];
}

const REPO_ID = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;

/** Throws InvalidParams unless `repo` is a Hub model id (`owner/name` or a legacy `name`). */
export function checkRepoId(repo: string): void {
  if (!REPO_ID.test(repo) || repo.split('/').some((p) => p.includes('..') || p.endsWith('.git'))) {
    throw new LensError(
      LensErrorCode.InvalidParams,
      `"${repo}" is not a Hugging Face model id: use owner/name, e.g. llava-hf/llava-onevision-qwen2-0.5b-ov-hf (run "llava-lens pull --list" for known-good ones).`,
    );
  }
}

/** True for a safe relative file path from a listing (no `..`, no absolute or empty parts). */
export function isSafeRepoPath(p: string): boolean {
  if (p === '' || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false;
  return p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

function endpointUrl(client: HubClient): URL {
  try {
    const u = new URL(client.endpoint.replace(/\/+$/, '') + '/');
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    return u;
  } catch {
    throw new LensError(LensErrorCode.InvalidParams, `the Hub endpoint "${client.endpoint}" is not an http(s) URL; check HF_ENDPOINT (e.g. https://hf-mirror.com).`);
  }
}

const enc = (segments: string) => segments.split('/').map(encodeURIComponent).join('/');

/** `{endpoint}/{repo}/resolve/{revision}/{path}` */
export function resolveUrl(client: HubClient, repo: string, revision: string, file: string): URL {
  return new URL(`${enc(repo)}/resolve/${encodeURIComponent(revision)}/${enc(file)}`, endpointUrl(client));
}

/** GET with the token scoped to the endpoint and `Accept-Encoding: identity` (sizes are of raw bytes). */
export async function hubGet(client: HubClient, url: URL, headers: Record<string, string> = {}): Promise<HttpResponse> {
  const origin = endpointUrl(client).origin;
  return httpGet(url, {
    ...client.http,
    headers: { 'User-Agent': 'llava-lens', 'Accept-Encoding': 'identity', ...headers },
    auth: client.token ? { token: client.token, origin } : undefined,
    signal: client.signal,
  });
}

interface ErrorContext {
  repo: string;
  revision?: string;
  file?: string;
}

/**
 * Turns a non-2xx answer into a LensError that says what to do. Consumes the body. 5xx and 429
 * are marked `retryable`.
 */
export async function statusError(client: HubClient, res: HttpResponse, ctx: ErrorContext): Promise<LensError> {
  const code = String(res.headers['x-error-code'] ?? '');
  const serverMessage = String(res.headers['x-error-message'] ?? '');
  res.body.resume();
  const where = endpointUrl(client).origin;
  const page = `${where}/${ctx.repo}`;
  const tokenSent = client.token !== undefined && client.token !== '' && res.url.origin === where;
  const detail = `HTTP ${res.status}${code ? ` ${code}` : ''}${serverMessage ? `: ${serverMessage}` : ''}`;
  // The URL without its query: a CDN's signed URL carries credentials in it.
  const data = { status: res.status, errorCode: code || undefined, url: res.url.origin + res.url.pathname };
  if (code === 'GatedRepo') {
    return hubError(
      HubErrorCode.AccessDenied,
      `${ctx.repo} is gated (${detail}): sign in at ${page}, accept its conditions, then ` +
        (tokenSent ? 'make sure HF_TOKEN is a token of that account (the one sent has no access yet).' : 'set HF_TOKEN to an access token of that account.'),
      data,
    );
  }
  if (code === 'RevisionNotFound') {
    return hubError(HubErrorCode.RepoNotFound, `revision "${ctx.revision}" of ${ctx.repo} not found (${detail}): use a branch, tag or commit listed at ${page}/tree/main.`, data);
  }
  if (code === 'EntryNotFound' || (ctx.file !== undefined && res.status === 404 && code !== 'RepoNotFound')) {
    return hubError(HubErrorCode.DownloadFailed, `${ctx.file ?? 'a file'} is listed in ${ctx.repo} but the server does not have it (${detail}); try again later or another revision.`, data);
  }
  if (code === 'RepoNotFound' || res.status === 404) {
    return hubError(
      HubErrorCode.RepoNotFound,
      `${ctx.repo} not found on ${where} (${detail}): check the id` +
        (tokenSent ? ' and that your HF_TOKEN may read it.' : '; if it is private or gated, set HF_TOKEN.') +
        ' "llava-lens pull --list" shows known-good repositories.',
      data,
    );
  }
  if (res.status === 401 || res.status === 403) {
    return hubError(
      HubErrorCode.AccessDenied,
      `${where} refused access to ${ctx.file ? `${ctx.file} of ` : ''}${ctx.repo} (${detail}): ` +
        (tokenSent ? 'HF_TOKEN was sent; check it is valid and has read access (a fine-grained token needs this repository).' : 'it needs a token; set HF_TOKEN to an access token from ' + `${where}/settings/tokens.`),
      data,
    );
  }
  const retryable = res.status === 429 || res.status >= 500;
  return hubError(
    HubErrorCode.DownloadFailed,
    `${res.url.host} answered ${detail} for ${ctx.file ?? ctx.repo}` + (retryable ? '; the server is busy or failing, try again later.' : '.'),
    { ...data, retryable },
  );
}

async function getJson(client: HubClient, url: URL, ctx: ErrorContext): Promise<{ json: unknown; res: HttpResponse }> {
  let res: HttpResponse;
  try {
    res = await hubGet(client, url, { Accept: 'application/json' });
  } catch (e) {
    if (client.signal?.aborted) throw e;
    throw hubError(HubErrorCode.DownloadFailed, `cannot reach ${url.origin}: ${(e as Error).message}; check your network, HF_ENDPOINT and proxy settings (HTTPS_PROXY).`, { retryable: true });
  }
  if (res.status < 200 || res.status >= 300) throw await statusError(client, res, ctx);
  const text = await readText(res);
  try {
    return { json: JSON.parse(text), res };
  } catch {
    throw hubError(HubErrorCode.DownloadFailed, `${url.origin} did not answer ${url.pathname} with JSON: is HF_ENDPOINT a Hugging Face Hub or mirror?`);
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

/** Next page of the tree API from a `Link` header. */
function nextLink(res: HttpResponse): URL | undefined {
  const link = res.headers.link;
  const m = typeof link === 'string' ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : undefined;
  return m ? new URL(m[1], res.url) : undefined;
}

/** Sizes and hashes from the tree API, for servers whose listing leaves them out. */
async function listTree(client: HubClient, repo: string, commit: string): Promise<Map<string, Omit<HubFile, 'path'>>> {
  const out = new Map<string, Omit<HubFile, 'path'>>();
  let url: URL | undefined = new URL(`api/models/${enc(repo)}/tree/${encodeURIComponent(commit)}?recursive=true`, endpointUrl(client));
  for (let page = 0; url && page < 1000; page++) {
    const { json, res }: { json: unknown; res: HttpResponse } = await getJson(client, url, { repo, revision: commit });
    if (!Array.isArray(json)) throw hubError(HubErrorCode.DownloadFailed, `${url.origin}: the tree listing of ${repo} is not a list.`);
    for (const e of json as Array<Record<string, any>>) {
      const p = str(e?.path);
      const size = num(e?.size);
      if (e?.type !== 'file' || !p || size === undefined) continue;
      out.set(p, { size, sha256: str(e.lfs?.oid) ?? str(e.lfs?.sha256), blobId: str(e.oid) });
    }
    url = nextLink(res);
  }
  return out;
}

/**
 * Lists `repo` at `revision` with every file's size and hashes. Throws RepoNotFound,
 * AccessDenied, DownloadFailed (see statusError) or InvalidParams for a bad id.
 */
export async function listRepoFiles(client: HubClient, repo: string, revision = 'main'): Promise<RepoListing> {
  checkRepoId(repo);
  const url = new URL(`api/models/${enc(repo)}/revision/${encodeURIComponent(revision)}?blobs=true`, endpointUrl(client));
  const { json } = await getJson(client, url, { repo, revision });
  const info = json as { sha?: unknown; siblings?: unknown };
  if (!Array.isArray(info?.siblings)) {
    throw hubError(HubErrorCode.DownloadFailed, `${url.origin} answered without a file list for ${repo}: is HF_ENDPOINT a Hugging Face Hub or mirror?`);
  }
  const commit = str(info.sha) ?? revision;
  const files: HubFile[] = [];
  let incomplete = false;
  for (const s of info.siblings as Array<Record<string, any>>) {
    const p = str(s?.rfilename);
    if (!p) continue;
    const size = num(s.size) ?? num(s.lfs?.size);
    if (size === undefined) incomplete = true;
    files.push({ path: p, size: size ?? -1, sha256: str(s.lfs?.sha256) ?? str(s.lfs?.oid), blobId: str(s.blobId) });
  }
  if (incomplete) {
    const tree = await listTree(client, repo, commit);
    for (const f of files) {
      const t = tree.get(f.path);
      if (!t) continue;
      f.size = t.size;
      f.sha256 ??= t.sha256;
      f.blobId ??= t.blobId;
    }
  }
  return { repo, revision, commit, files };
}
