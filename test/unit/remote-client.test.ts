/**
 * The client pieces for a shared daemon over WebSocket that need no VS Code: image files as
 * bytes params (client/src/imageParams.ts) and the extension's remote transport
 * (client/src/daemon/remoteTransport.ts) against a small `ws` server that checks the token.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { WebSocketServer } from 'ws';
import { closeSocket, openRemoteSocket, RemoteConnectError } from '../../client/src/daemon/remoteTransport';
import { imageBytesParam, imageMimeType, MAX_IMAGE_BYTES_OVER_WS, readImageParam } from '../../client/src/imageParams';

const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

test('image files become {bytes (base64), mimeType}; unknown bytes go without a type; too large or missing files are named', async () => {
  assert.deepEqual(imageBytesParam(PNG, 'a.png'), { bytes: PNG.toString('base64'), mimeType: 'image/png' });
  assert.equal(imageMimeType(Buffer.from([0xff, 0xd8, 0xff, 0xe0])), 'image/jpeg');
  assert.equal(imageMimeType(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), 'image/svg+xml');
  assert.deepEqual(imageBytesParam(Buffer.from('hello'), 'notes.txt'), { bytes: Buffer.from('hello').toString('base64') });
  // A view into a larger buffer encodes only its own bytes.
  const big = Buffer.concat([Buffer.from('xxxx'), PNG]);
  assert.equal(imageBytesParam(big.subarray(4), 'a.png').bytes, PNG.toString('base64'));
  assert.throws(() => imageBytesParam({ length: MAX_IMAGE_BYTES_OVER_WS + 1 } as Uint8Array, 'huge.png'), /huge\.png is .* MiB, more than the .* MiB an image sent to a daemon over WebSocket may have; shrink or crop it/);

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-imgparam-'));
  const file = path.join(dir, 'a.png');
  await fs.writeFile(file, PNG);
  assert.deepEqual(await readImageParam(file), { bytes: PNG.toString('base64'), mimeType: 'image/png' });
  await assert.rejects(readImageParam(path.join(dir, 'missing.png')), /Image not found: .*missing\.png/);
  await assert.rejects(readImageParam(dir), /is not a file/);
  await fs.rm(dir, { recursive: true, force: true });
});

test('remote transport: no token, a wrong token, nothing listening and an unreadable CA are told apart', async () => {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    verifyClient: (info, cb) => (info.req.headers.authorization === 'Bearer right' ? cb(true) : cb(false, 401, 'wrong token')),
  });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;

  await assert.rejects(openRemoteSocket({ url, tlsCa: '', token: async () => undefined }), (e: unknown) => e instanceof RemoteConnectError && e.noToken && e.refused);
  await assert.rejects(openRemoteSocket({ url, tlsCa: '', token: async () => 'wrong' }), (e: unknown) => {
    assert.ok(e instanceof RemoteConnectError);
    assert.equal(e.status, 401);
    assert.ok(e.refused);
    assert.match(e.message, /refused the connection \(HTTP 401\)/);
    return true;
  });
  await assert.rejects(openRemoteSocket({ url: 'ws://127.0.0.1:1', tlsCa: '', token: async () => 'right' }), (e: unknown) => e instanceof RemoteConnectError && !e.refused && /nothing listens/.test(e.message));
  await assert.rejects(openRemoteSocket({ url, tlsCa: '/nonexistent/ca.pem', token: async () => 'right' }), /cannot read llavaLens\.remote\.tlsCa \/nonexistent\/ca\.pem/);

  const serverClosed = new Promise<number>((resolve) => wss.once('connection', (ws) => ws.once('close', resolve)));
  const socket = await openRemoteSocket({ url, tlsCa: '', token: async () => 'right' });
  await closeSocket(socket);
  assert.equal(socket.readyState, socket.CLOSED);
  assert.equal(await serverClosed, 1000, 'the extension leaves with a normal close, no shutdown');
  await new Promise<void>((resolve) => wss.close(() => resolve()));
});
