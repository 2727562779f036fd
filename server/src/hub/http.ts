/**
 * GET over `node:http`/`node:https` with the three things the Hub client needs and Node 20's
 * `fetch` cannot give without a dependency:
 *
 * - Redirects are followed here, hop by hop (at most `maxRedirects`), so the bearer token is
 *   attached **only** to URLs of `auth.origin` (scheme + host + port). A redirect to any other
 *   origin (the Hub's CDN, an S3 bucket, a mirror's storage) gets no `Authorization` header.
 * - Proxies from the environment (proxy.ts): http:// targets go to the proxy in absolute form,
 *   https:// targets through a CONNECT tunnel with TLS end to end (the proxy sees only the host).
 * - An idle timeout: no bytes for `idleTimeoutMs` destroys the request (the caller may retry).
 *
 * `httpGet` resolves with the final response of any status (the caller reads `status`), and
 * rejects only for network failures, aborts (`AbortError` from `signal`) and too many
 * redirects. The caller owns `body` and must consume or destroy it.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { proxyFor, type ProxySettings } from './proxy';

export interface HttpSettings {
  /** Proxies (default: none; the callers fill it from the environment). */
  proxy?: ProxySettings;
  /** Extra PEM certificate(s) to trust for https (Node also reads `NODE_EXTRA_CA_CERTS` at start). */
  ca?: string | Buffer;
  /** No bytes for this long aborts the request. Default 60 s. */
  idleTimeoutMs?: number;
}

export interface GetOptions extends HttpSettings {
  headers?: Record<string, string>;
  /** `Authorization: Bearer <token>` is sent to URLs of this origin only. */
  auth?: { token: string; origin: string };
  signal?: AbortSignal;
  /** Default 10. */
  maxRedirects?: number;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The URL that answered (after redirects). */
  url: URL;
  body: http.IncomingMessage;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const DEFAULT_IDLE_MS = 60_000;

/** `[::1]` -> `::1`: `URL.hostname` keeps IPv6 brackets, sockets want them off. */
function bareHost(u: URL): string {
  return u.hostname.replace(/^\[|\]$/g, '');
}

function port(u: URL): number {
  return u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
}

function proxyAuthHeader(proxy: URL): Record<string, string> {
  if (!proxy.username) return {};
  const creds = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'Proxy-Authorization': `Basic ${Buffer.from(creds).toString('base64')}` };
}

/** Opens a CONNECT tunnel through `proxy` to `target`'s host and port. */
function connectTunnel(proxy: URL, target: URL, signal: AbortSignal | undefined, idleMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const authority = `${target.hostname}:${port(target)}`;
    const req = http.request({
      host: bareHost(proxy),
      port: port(proxy),
      method: 'CONNECT',
      path: authority,
      headers: { Host: authority, ...proxyAuthHeader(proxy) },
      signal,
    });
    req.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new Error(`the proxy ${proxy.host} refused to connect to ${authority} (HTTP ${res.statusCode}); check HTTPS_PROXY and NO_PROXY.`));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('error', (e) => reject(signal?.aborted ? e : new Error(`cannot reach the proxy ${proxy.host}: ${e.message}; check HTTPS_PROXY.`)));
    req.setTimeout(idleMs, () => req.destroy(new Error(`the proxy ${proxy.host} did not answer CONNECT in ${Math.round(idleMs / 1000)} s`)));
    req.end();
  });
}

/** One request, no redirects. */
function requestOnce(url: URL, headers: Record<string, string>, opts: GetOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    let proxy: URL | undefined;
    try {
      proxy = proxyFor(url, opts.proxy);
    } catch (e) {
      reject(e);
      return;
    }
    const isHttps = url.protocol === 'https:';
    const all = { ...headers, Host: url.host };
    let req: http.ClientRequest;
    if (proxy && !isHttps) {
      // Plain http through the proxy: absolute-form request line.
      req = http.request({ host: bareHost(proxy), port: port(proxy), method: 'GET', path: url.href, headers: { ...all, ...proxyAuthHeader(proxy) }, signal: opts.signal });
    } else if (proxy) {
      const servername = net.isIP(bareHost(url)) ? undefined : bareHost(url);
      const viaProxy = proxy;
      req = https.request({
        host: bareHost(url),
        port: port(url),
        path: url.pathname + url.search,
        method: 'GET',
        headers: all,
        signal: opts.signal,
        // No agent: this callback makes the connection (async), a fresh tunnel per request.
        createConnection: ((_o: unknown, done: (err: Error | null, s?: net.Socket) => void) => {
          connectTunnel(viaProxy, url, opts.signal, opts.idleTimeoutMs ?? DEFAULT_IDLE_MS).then(
            (socket) => done(null, tls.connect({ socket, host: bareHost(url), servername, ca: opts.ca, ALPNProtocols: ['http/1.1'] })),
            (e: Error) => done(e),
          );
          return undefined;
        }) as unknown as https.RequestOptions['createConnection'],
      });
    } else {
      const lib = isHttps ? https : http;
      req = lib.request(url, { method: 'GET', headers: all, signal: opts.signal, ...(isHttps && opts.ca ? { ca: opts.ca } : {}) });
    }
    const idle = opts.idleTimeoutMs ?? DEFAULT_IDLE_MS;
    req.setTimeout(idle, () => req.destroy(new Error(`no data from ${url.host} for ${Math.round(idle / 1000)} s`)));
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
}

/** GET `url`, following redirects; see the header for the token and proxy rules. */
export async function httpGet(url: URL, opts: GetOptions = {}): Promise<HttpResponse> {
  const max = opts.maxRedirects ?? 10;
  let current = url;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.auth && current.origin === opts.auth.origin) headers.Authorization = `Bearer ${opts.auth.token}`;
    const res = await requestOnce(current, headers, opts);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (!REDIRECTS.has(status) || location === undefined) return { status, headers: res.headers, url: current, body: res };
    res.resume(); // drain the redirect's body so the socket can be reused
    if (hop >= max) throw new Error(`too many redirects (over ${max}) starting at ${url.href}`);
    current = new URL(location, current);
    if (current.protocol !== 'http:' && current.protocol !== 'https:') throw new Error(`redirected to an unsupported URL ${current.href}`);
  }
}

/** Reads a whole (small) body as text; rejects past `limit` bytes. */
export async function readText(res: HttpResponse, limit = 64 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body) {
    n += (chunk as Buffer).length;
    if (n > limit) {
      res.body.destroy();
      throw new Error(`the answer from ${res.url.host} is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
