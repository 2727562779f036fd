/**
 * Who may use a shared daemon, and what a local client may read (issue 6 §6), against real
 * `llava-lens serve --ws` processes with the tiny-llava model:
 *   - admission on the upgrade request: no token, a wrong one, a Basic one, the token in the query
 *     string or in Sec-WebSocket-Protocol, a foreign or `null` Origin (and one allowed with
 *     --allow-origin) — each checked by HTTP status and the reason in the body;
 *   - a non-loopback bind without --allow-remote exits 2 with the reason;
 *   - a local client's image paths: outside its workspace folder, `..`, a symlink out, a FIFO,
 *     /dev/zero through a symlink and inside a declared /dev, a folder — refused with
 *     PathNotAllowed (1014) and a message that says why; a path inside works;
 *   - a remote client (through a non-loopback address of this machine, when it has one) may send
 *     bytes but no paths;
 *   - TLS with a self-signed certificate made by the openssl CLI: trusted through `ca` it works,
 *     without it the error says how to trust it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LensClient } from '../../client/src/daemonClient';
import { LensErrorCode } from '../../common/errors';
import { ConnectError } from '../../common/wsTransport';
import { makeTestModel } from '../../server/src/testmodel';
import { quadrantsPng } from '../fixtures/images';
import { BIN, serveWs, type ServedDaemon } from './wsServe';

const ALLOWED_ORIGIN = 'https://lens.example';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-ws-access-'));
const modelDir = path.join(root, 'models', 'tiny-llava');
const ws = path.join(root, 'workspace');
const outside = path.join(root, 'outside');
const daemons: ServedDaemon[] = [];
let daemon: ServedDaemon;
let png: Buffer;

/** Stops a daemon; one that does not react to SIGTERM within 5 s is killed. */
async function stop(d: ServedDaemon): Promise<void> {
  await Promise.race([d.stop(), new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]);
  await d.kill9();
}

before(async () => {
  await makeTestModel(modelDir, { preset: 'tiny-llava', seed: 1 });
  png = await quadrantsPng(64, 48);
  fs.mkdirSync(path.join(ws, 'sub'), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(ws, 'inside.png'), png);
  fs.writeFileSync(path.join(outside, 'secret.png'), png);
  fs.symlinkSync(path.join(outside, 'secret.png'), path.join(ws, 'link-out.png'));
  fs.symlinkSync('/dev/zero', path.join(ws, 'zero.png'));
  execFileSync('mkfifo', [path.join(ws, 'pipe.png')]);
  daemon = await serveWs({ model: modelDir, stateDir: path.join(root, 'state'), args: ['--allow-origin', ALLOWED_ORIGIN, '--no-persist'] });
  daemons.push(daemon);
});
after(async () => {
  for (const d of daemons) await stop(d);
  fs.rmSync(root, { recursive: true, force: true });
});

/** An upgrade request with these headers: the daemon's HTTP status and body. */
function upgrade(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url.replace(/^ws/, 'http'), {
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': Buffer.from('access-test-key!').toString('base64'), ...headers },
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve({ status: 101, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('no answer to the upgrade request')));
    req.end();
  });
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

describe('admission (HTTP status and reason on the upgrade request)', () => {
  test('the right token gets in', async () => {
    assert.deepEqual(await upgrade(daemon.url, bearer(daemon.token)), { status: 101, body: '' });
  });

  test('no token, a wrong token, a Basic header: 401 with the reason', async () => {
    const none = await upgrade(daemon.url, {});
    assert.equal(none.status, 401);
    assert.match(none.body, /^no token: send "Authorization: Bearer <token>"/);
    const wrong = await upgrade(daemon.url, bearer('not-the-token'));
    assert.equal(wrong.status, 401);
    assert.match(wrong.body, /^wrong token: use the token of this daemon/);
    const basic = await upgrade(daemon.url, { Authorization: `Basic ${Buffer.from(`lens:${daemon.token}`).toString('base64')}` });
    assert.equal(basic.status, 401);
    assert.match(basic.body, /the Authorization header must be "Bearer <token>"/);
    // The client library reports the same status and reason.
    await assert.rejects(LensClient.connectWebSocket(daemon.url, { token: 'not-the-token' }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.status, 401);
      assert.match(e.message, /refused the connection \(HTTP 401\): wrong token/);
      return true;
    });
  });

  test('the token in the query string is refused (400) even with the right header', async () => {
    for (const query of [`?token=${daemon.token}`, `?access_token=${daemon.token}`, `?Token=${daemon.token}`, `?apiKey=${daemon.token}`]) {
      for (const headers of [{}, bearer(daemon.token)]) {
        const r = await upgrade(`${daemon.url}/${query}`, headers);
        assert.equal(r.status, 400, `${query} ${JSON.stringify(headers)}`);
        assert.match(r.body, /^the token must not be in the URL \("\?\w+="\): send it in the Authorization header/);
        assert.ok(!r.body.includes(daemon.token), 'the reason does not repeat the token');
      }
    }
  });

  test('the token in Sec-WebSocket-Protocol instead of Authorization is refused (400)', async () => {
    for (const headers of [{ 'Sec-WebSocket-Protocol': daemon.token }, { 'Sec-WebSocket-Protocol': `bearer, ${daemon.token}` }, { 'Sec-WebSocket-Protocol': daemon.token, ...bearer(daemon.token) }]) {
      const r = await upgrade(daemon.url, headers);
      assert.equal(r.status, 400, JSON.stringify(headers));
      assert.match(r.body, /speaks no WebSocket subprotocol \(Sec-WebSocket-Protocol\).*Authorization header as "Bearer <token>"/);
    }
  });

  test('a foreign Origin (or "null") is refused (403) even with the right token; the one allowed with --allow-origin gets in', async () => {
    for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1', `${ALLOWED_ORIGIN}.evil.example`]) {
      const r = await upgrade(daemon.url, { Origin: origin, ...bearer(daemon.token) });
      assert.equal(r.status, 403, origin);
      assert.match(r.body, new RegExp(`^requests from web pages \\(Origin ${origin.replace(/[.]/g, '\\.')}\\) are refused; a daemon operator can allow one with --allow-origin`));
    }
    assert.equal((await upgrade(daemon.url, { Origin: ALLOWED_ORIGIN, ...bearer(daemon.token) })).status, 101);
    // An allowed origin still needs the token.
    assert.equal((await upgrade(daemon.url, { Origin: ALLOWED_ORIGIN })).status, 401);
  });

  test('every refusal is logged by the daemon with its status', () => {
    assert.match(daemon.log(), /\[warn\] refused a connection from 127\.0\.0\.1: 401 wrong token/);
    assert.match(daemon.log(), /\[warn\] refused a connection from 127\.0\.0\.1: 403 requests from web pages/);
  });
});

test('a non-loopback bind without --allow-remote exits 2 with the reason', async () => {
  for (const host of ['0.0.0.0', '::', '192.0.2.2']) {
    const r = spawnSync(process.execPath, [BIN, 'serve', '--ws', '0', '--host', host, '--state-dir', path.join(root, 'state-bind')], {
      env: { ...process.env, LLAVA_LENS_TOKEN: 'access-test-token-0123456789' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 2, `${host}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`refusing to listen on ${host.replace(/[.]/g, '\\.')}: that is reachable from other machines\\. Pass --allow-remote to mean it`));
  }
});

test('serve flags that would weaken or break the listener exit 2 with the reason', () => {
  const serve = (...args: string[]) =>
    spawnSync(process.execPath, [BIN, 'serve', ...args, '--state-dir', path.join(root, 'state-flags')], { env: { ...process.env, LLAVA_LENS_TOKEN: 'access-test-token-0123456789' }, encoding: 'utf8', timeout: 30_000 });
  const cases: Array<[string[], RegExp]> = [
    [['--ws', '70000'], /--ws expects a TCP port 0\.\.65535/],
    [['--ws', '0', '--tls-cert', path.join(root, 'cert.pem')], /--tls-cert and --tls-key go together/],
    [['--ws', '0', '--tls-cert', path.join(root, 'missing.pem'), '--tls-key', path.join(root, 'missing.pem')], /cannot read the TLS certificate or key \(ENOENT/],
  ];
  for (const [args, reason] of cases) {
    const r = serve(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, reason, args.join(' '));
  }
});

// --- What a local client may read ---------------------------------------------------------------

async function askError(client: LensClient, image: { path: string } | { bytes: string }, ms = 5000): Promise<{ code: number; message: string; ms: number }> {
  const t0 = performance.now();
  const outcome = await Promise.race([
    client.ask({ prompt: 'what is it', images: [image], maxTokens: 4, temperature: 0 }).then(
      (r) => ({ ok: r }),
      (e: { code: number; message: string }) => ({ err: e }),
    ),
    new Promise<{ timeout: true }>((resolve) => setTimeout(() => resolve({ timeout: true }), ms).unref()),
  ]);
  if ('timeout' in outcome) assert.fail(`${JSON.stringify(image)}: no answer within ${ms} ms`);
  if ('ok' in outcome) assert.fail(`${JSON.stringify(image)} was answered: ${outcome.ok.text}`);
  return { code: outcome.err.code, message: outcome.err.message, ms: performance.now() - t0 };
}

/** The daemon's peak RSS so far (/proc VmHWM), bytes. */
function vmHWM(d: ServedDaemon): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${d.child.pid}/status`, 'utf8'))![1]) * 1024;
}

async function askErrorMany(client: LensClient, images: Array<{ path: string }>): Promise<{ code: number; message: string }> {
  return client.ask({ prompt: 'what is it', images, maxTokens: 4, temperature: 0 }).then(
    (r) => assert.fail(`answered: ${r.text}`),
    (e: { code: number; message: string }) => e,
  );
}

describe('a local client reads only inside its workspace folders', () => {
  let client: LensClient;
  before(async () => {
    client = await daemon.connect({ workspaceFolders: [ws] });
  });
  after(() => client.dispose());

  test('a path inside the workspace (absolute or relative) works', async () => {
    const abs = await client.ask({ prompt: 'what is it', images: [{ path: path.join(ws, 'inside.png') }], maxTokens: 4, temperature: 0 });
    assert.equal(abs.tokenIds.length, 4);
    const rel = await client.ask({ prompt: 'what is it', images: [{ path: 'inside.png' }], maxTokens: 4, temperature: 0 });
    assert.deepEqual(rel.tokenIds, abs.tokenIds);
  });

  const refusals: Array<[string, () => string, RegExp]> = [
    ['a file outside the workspace', () => path.join(outside, 'secret.png'), /is outside the workspace folders declared at initialize \(.*workspace\): send the image bytes instead/],
    ['a ".." path out of it', () => path.join(ws, '..', 'outside', 'secret.png'), /outside[/]secret\.png is outside the workspace folders/],
    ['a relative ".." path', () => '../outside/secret.png', /outside[/]secret\.png is outside the workspace folders/],
    ['a symlink inside pointing outside', () => path.join(ws, 'link-out.png'), /link-out\.png \(really .*outside[/]secret\.png\) is outside the workspace folders/],
    ['a symlink inside to /dev/zero', () => path.join(ws, 'zero.png'), /zero\.png \(really \/dev\/zero\) is outside the workspace folders/],
    ['a FIFO inside (must not block)', () => path.join(ws, 'pipe.png'), /pipe\.png is not a regular file \(a device, FIFO, socket or folder\): send an image file/],
    ['a folder inside', () => path.join(ws, 'sub'), /sub is not a regular file/],
    ['/etc/passwd', () => '/etc/passwd', /\/etc\/passwd is outside the workspace folders/],
  ];
  for (const [name, p, message] of refusals) {
    test(`${name}: PathNotAllowed (1014) with the reason`, async () => {
      const e = await askError(client, { path: p() });
      assert.equal(e.code, LensErrorCode.PathNotAllowed, e.message);
      assert.match(e.message, /^images\[0\]/);
      assert.match(e.message, message);
      assert.ok(e.ms < 2000, `answered in ${e.ms.toFixed(0)} ms`);
    });
  }

  test('a missing file is ImageNotFound (1013), not a hang', async () => {
    const e = await askError(client, { path: path.join(ws, 'nope.png') });
    assert.equal(e.code, LensErrorCode.ImageNotFound);
    assert.match(e.message, /nope\.png does not exist: check the path/);
  });

  test('/dev/zero inside a declared /dev workspace: not a regular file (1014)', async () => {
    const devClient = await daemon.connect({ workspaceFolders: ['/dev'] });
    try {
      const e = await askError(devClient, { path: '/dev/zero' });
      assert.equal(e.code, LensErrorCode.PathNotAllowed);
      assert.match(e.message, /\/dev\/zero is not a regular file \(a device, FIFO, socket or folder\)/);
      assert.ok(e.ms < 2000, `answered in ${e.ms.toFixed(0)} ms`);
    } finally {
      devClient.dispose();
    }
  });

  test('an ask naming more images than the model takes is refused before any is read', async () => {
    fs.writeFileSync(path.join(ws, 'big.png'), Buffer.alloc(8 << 20, 7));
    const peakBefore = vmHWM(daemon);
    const e = await askErrorMany(client, Array.from({ length: 40 }, () => ({ path: 'big.png' })));
    assert.equal(e.code, LensErrorCode.InvalidParams);
    assert.match(e.message, /40 images sent but tiny-llava accepts at most \d+ per prompt/);
    const grew = vmHWM(daemon) - peakBefore;
    assert.ok(grew < 64 << 20, `the daemon's peak RSS grew by ${(grew / 2 ** 20).toFixed(0)} MB reading 40 × 8 MB it then refused`);
  });

  test('model folders and roots outside the daemon\'s model roots are refused (1014)', async () => {
    await assert.rejects(client.listModels({ roots: ['/etc'] }), (e: { code: number; message: string }) => {
      assert.equal(e.code, LensErrorCode.PathNotAllowed);
      assert.match(e.message, /\/etc is outside the daemon's model roots \(serve --model-root\)/);
      return true;
    });
    await assert.rejects(client.loadModel({ path: ws }), (e: { code: number; message: string }) => {
      assert.equal(e.code, LensErrorCode.PathNotAllowed);
      assert.match(e.message, /workspace is outside the daemon's model roots.*pick a model from lens\/listModels/);
      return true;
    });
    const r = await client.ask({ prompt: 'what is it', images: [{ path: 'inside.png' }], maxTokens: 4, temperature: 0 });
    assert.equal(r.model, 'tiny-llava', 'the loaded model is unchanged');
  });
});

/** This machine's first non-internal IPv4 address, if any. */
function externalIPv4(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

test('a remote client (through a non-loopback address) sends bytes, never paths', async (t) => {
  const ip = externalIPv4();
  if (!ip) {
    t.skip('this machine has no non-loopback IPv4 address to connect through');
    return;
  }
  const d = await serveWs({ model: modelDir, stateDir: path.join(root, 'state-remote'), args: ['--host', '0.0.0.0', '--allow-remote', '--no-persist'] });
  daemons.push(d);
  assert.match(d.log(), /\[warn\] listening on 0\.0\.0\.0: reachable from other machines WITHOUT TLS/);
  const client = await LensClient.connectWebSocket(`ws://${ip}:${d.port}`, { token: d.token });
  try {
    await client.initialize({ workspaceFolders: [{ uri: `file://${ws}`, name: 'ws' }] });
    assert.match(d.log(), new RegExp(`client connected \\(remote, (::ffff:)?${ip.replace(/[.]/g, '\\.')}\\)`));
    const e = await askError(client, { path: path.join(ws, 'inside.png') });
    assert.equal(e.code, LensErrorCode.PathNotAllowed);
    assert.match(e.message, /a remote client sends image bytes, not paths: send \{"bytes": <base64>\} instead/);
    const r = await client.ask({ prompt: 'what is it', images: [{ bytes: png.toString('base64'), mimeType: 'image/png' }], maxTokens: 4, temperature: 0 });
    assert.equal(r.tokenIds.length, 4);
  } finally {
    client.dispose();
    await stop(d);
  }
});

// --- TLS -------------------------------------------------------------------------------------------

test('TLS: a self-signed certificate trusted through `ca` works; without it the error says how to trust it', async (t) => {
  if (spawnSync('openssl', ['version']).status !== 0) {
    t.skip('the openssl CLI is not installed: cannot make a self-signed certificate');
    return;
  }
  const dir = path.join(root, 'tls');
  fs.mkdirSync(dir);
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const d = await serveWs({ model: modelDir, stateDir: path.join(root, 'state-tls'), args: ['--tls-cert', cert, '--tls-key', key, '--no-persist'] });
  daemons.push(d);
  try {
    assert.match(d.url, /^wss:\/\/127\.0\.0\.1:\d+$/);
    const client = await LensClient.connectWebSocket(d.url, { token: d.token, ca: fs.readFileSync(cert) });
    try {
      await client.initialize();
      const r = await client.ask({ prompt: 'what is it', images: [{ bytes: png.toString('base64') }], maxTokens: 4, temperature: 0 });
      assert.equal(r.tokenIds.length, 4);
    } finally {
      client.dispose();
    }
    await assert.rejects(LensClient.connectWebSocket(d.url, { token: d.token }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.match(e.message, /the daemon's TLS certificate at wss:\/\/127\.0\.0\.1:\d+ is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): pass its certificate as the CA \(--tls-ca <file>\)/);
      return true;
    });
    // The token is still checked over TLS.
    await assert.rejects(LensClient.connectWebSocket(d.url, { token: 'wrong', ca: fs.readFileSync(cert) }), /HTTP 401\): wrong token/);
  } finally {
    await stop(d);
  }
});
