/**
 * Proxy settings from the environment, the way curl and most tools read them:
 * `HTTPS_PROXY` / `https_proxy` for https URLs, `HTTP_PROXY` / `http_proxy` for http URLs,
 * `ALL_PROXY` / `all_proxy` for both, and `NO_PROXY` / `no_proxy` for hosts to reach directly
 * (comma- or space-separated: `*`, `host`, `.domain` or `domain` (the domain and its
 * subdomains), `host:port`, IP addresses). Lower case wins over upper case, as in curl.
 *
 * Node 20's `fetch` honours none of these without a dependency (undici's `EnvHttpProxyAgent`
 * is bundled but not exposed), so the Hub client speaks HTTP through `node:http` itself and
 * tunnels https with CONNECT (see http.ts). Pure functions; no I/O.
 */

export interface ProxySettings {
  /** Proxy for http:// URLs (an http:// proxy URL, optionally with user:password). */
  http?: string;
  /** Proxy for https:// URLs. */
  https?: string;
  /** Raw NO_PROXY list. */
  noProxy?: string;
}

function pick(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name.toLowerCase()] ?? env[name.toUpperCase()];
  return v !== undefined && v.trim() !== '' ? v.trim() : undefined;
}

/** Reads the proxy variables; an empty object when none is set. */
export function proxyFromEnv(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const all = pick(env, 'all_proxy');
  const out: ProxySettings = {};
  const http = pick(env, 'http_proxy') ?? all;
  const https = pick(env, 'https_proxy') ?? all;
  const noProxy = pick(env, 'no_proxy');
  if (http) out.http = http;
  if (https) out.https = https;
  if (noProxy) out.noProxy = noProxy;
  return out;
}

function defaultPort(protocol: string): string {
  return protocol === 'https:' ? '443' : '80';
}

/** Whether `url` is exempt from proxying by a NO_PROXY list. */
export function bypassesProxy(url: URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = url.port || defaultPort(url.protocol);
  for (const raw of noProxy.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let entryPort: string | undefined;
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry);
    if (m) {
      entry = m[1];
      entryPort = m[2];
    }
    entry = entry.replace(/^\[|\]$/g, '').replace(/^\*?\./, '.');
    if (entryPort !== undefined && entryPort !== port) continue;
    if (entry.startsWith('.') ? host.endsWith(entry) || host === entry.slice(1) : host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/**
 * The proxy to use for `url`, or undefined for a direct connection. Throws a plain Error naming
 * the variable when the proxy URL is not an http:// URL (https:// proxies are not supported).
 */
export function proxyFor(url: URL, settings: ProxySettings | undefined): URL | undefined {
  if (!settings) return undefined;
  const raw = url.protocol === 'https:' ? settings.https : settings.http;
  if (!raw || bypassesProxy(url, settings.noProxy)) return undefined;
  let proxy: URL;
  try {
    proxy = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new Error(`the proxy setting "${raw}" is not a URL: use http://host:port (check HTTPS_PROXY / HTTP_PROXY).`);
  }
  if (proxy.protocol !== 'http:') {
    throw new Error(`the proxy ${proxy.origin} uses ${proxy.protocol}; only http:// proxies are supported (CONNECT is used for https).`);
  }
  return proxy;
}
