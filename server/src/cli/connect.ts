/**
 * The CLI's link to a daemon: a child it spawns (`serve --stdio`, the default) or a shared daemon
 * it connects to over WebSocket (`--connect ws://host:port`). Used by `ask` and `ocr`.
 *
 * Token sources for `--connect`, first found wins: `--token T`, `--token-file F` (first line),
 * `LLAVA_LENS_TOKEN`. `--tls-ca F` trusts a PEM certificate for `wss://` (a self-signed daemon).
 * Over WebSocket images always travel as bytes (a shared daemon refuses paths from remote
 * clients), and the CLI leaves by closing the socket: the shared daemon keeps running.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { LensClient } from '../../../client/src/daemonClient';
import { readImageParam } from '../../../client/src/imageParams';
import type { ImageParam } from '../../../common/protocol';
import { UsageError } from './args';

/** The `util.parseArgs` options of `--connect` and its companions. */
export const CONNECT_OPTIONS = {
  connect: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'tls-ca': { type: 'string' },
} as const;

export interface ConnectSettings {
  url: string;
  token: string;
  /** PEM text of the certificate(s) to trust. */
  ca?: string;
}

type ConnectValues = { connect?: string; token?: string; 'token-file'?: string; 'tls-ca'?: string };

/**
 * Reads `--connect`, the token and `--tls-ca` (files are read here, so a bad path is a usage
 * error before anything connects). Undefined when `--connect` is absent; its companions alone are
 * a usage error (never silently ignored).
 */
export function parseConnect(values: ConnectValues, env: NodeJS.ProcessEnv = process.env): ConnectSettings | undefined {
  const url = values.connect;
  if (url === undefined) {
    const stray = (['token', 'token-file', 'tls-ca'] as const).find((k) => values[k] !== undefined);
    if (stray) throw new UsageError(`--${stray} only applies with --connect ws://host:port.`);
    return undefined;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--connect: "${url}" is not a URL; use ws://host:port or wss://host:port.`);
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new UsageError(`--connect: "${url}" is not a WebSocket URL; use ws://host:port or wss://host:port.`);
  if (parsed.username || parsed.password || parsed.search) {
    throw new UsageError('--connect: put no credentials or query in the URL (they end up in logs); pass the token with --token-file F or LLAVA_LENS_TOKEN.');
  }
  if (values.token !== undefined && values['token-file'] !== undefined) throw new UsageError('pass the token once: --token or --token-file, not both.');
  let token = values.token;
  if (token === undefined && values['token-file'] !== undefined) {
    const file = path.resolve(values['token-file']);
    token = readText(file, '--token-file').split(/\r?\n/)[0].trim();
    if (!token) throw new UsageError(`--token-file: ${file} is empty; it should hold the daemon's token.`);
  }
  token ??= env.LLAVA_LENS_TOKEN?.trim() || undefined;
  if (!token) {
    throw new UsageError(
      `--connect ${url} needs the daemon's token: --token-file F, LLAVA_LENS_TOKEN, or --token T (the daemon says where it keeps its token when it starts).`,
    );
  }
  const settings: ConnectSettings = { url, token };
  if (values['tls-ca'] !== undefined) {
    if (parsed.protocol !== 'wss:') throw new UsageError('--tls-ca only applies to wss:// URLs.');
    settings.ca = readText(path.resolve(values['tls-ca']), '--tls-ca');
  }
  return settings;
}

function readText(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`${flag}: cannot read ${file} (${code === 'ENOENT' ? 'no such file' : (e as Error).message}).`);
  }
}

/** Path of the daemon entry in `out/` (beside this folder). */
export function daemonEntry(): string {
  return path.join(__dirname, '..', 'daemon', 'main.js');
}

/** An open client and how to leave it. */
export interface DaemonLink {
  client: LensClient;
  /** True over WebSocket: the daemon is shared, its model is the operator's, images go as bytes. */
  remote: boolean;
  /** The daemon, for messages: "the daemon" or "the daemon at ws://…". */
  where: string;
  /** Image params for the daemon: paths for a local child, file bytes over WebSocket. */
  images(paths: string[]): Promise<ImageParam[]>;
  /** Stops the spawned daemon (shutdown + exit), or closes the socket of a shared one. */
  close(): Promise<void>;
  /** For a second Ctrl-C: ends at once. */
  kill(): void;
}

/**
 * Spawns a daemon (`spawn.args`: more `serve --stdio` flags, e.g. a backend; `spawn.env`: its
 * environment), or connects to `connect.url`. Rejects (WebSocket) with the daemon's own reason
 * when it refuses the connection (wrong token, origin, address).
 */
export async function openDaemon(connect: ConnectSettings | undefined, spawn: { args?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<DaemonLink> {
  if (!connect) {
    const client = LensClient.spawnStdio({ daemonPath: daemonEntry(), ...(spawn.args ? { args: ['serve', '--stdio', ...spawn.args] } : {}), ...(spawn.env ? { env: spawn.env } : {}) });
    return {
      client,
      remote: false,
      where: 'the daemon',
      images: async (paths) => paths.map((p) => ({ path: p })),
      close: () => client.shutdown(),
      kill: () => client.child?.kill(),
    };
  }
  const client = await LensClient.connectWebSocket(connect.url, { token: connect.token, ...(connect.ca !== undefined ? { ca: connect.ca } : {}) });
  return {
    client,
    remote: true,
    where: `the daemon at ${connect.url}`,
    images: (paths) => Promise.all(paths.map(readImageParam)),
    close: async () => client.dispose(),
    kill: () => client.dispose(),
  };
}
