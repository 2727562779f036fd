/**
 * The real daemon process (`serve --stdio`, real engine on its worker thread, generated tiny
 * models) driven through the same client the CLI and the extension use: load with progress,
 * streamed asks, cancellation during generation and during the vision encoder, every bad input
 * the daemon must survive, concurrent asks, a multi-turn follow-up.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CancellationTokenSource } from 'vscode-jsonrpc';
import { LensClient, type LoadProgressEvent } from '../../client/src/daemonClient';
import { LensErrorCode } from '../../common/errors';
import type { AskParams, LensStatus } from '../../common/protocol';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng, patternJpeg, pngBomb } from '../fixtures/images';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DAEMON = path.join(ROOT, 'out', 'server', 'src', 'daemon', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-daemon-'));
const ov = path.join(tmp, 'tiny-onevision');
const heavy = path.join(tmp, 'heavy-vision');
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

let client: LensClient;
const statuses: LensStatus[] = [];

function code(e: unknown): number {
  return (e as { code: number }).code;
}

/** A valid ask answers after whatever came before: the daemon kept serving. */
async function stillServing(): Promise<void> {
  const r = await client.ask({ images: [], prompt: 'still there?', maxTokens: 2 });
  assert.ok(r.tokenIds.length >= 1);
}

before(async () => {
  await makeTestModel(ov, { preset: 'tiny-onevision', seed: 2 });
  await makeTestModel(heavy, { preset: 'tiny-onevision', seed: 4, config: { vision: { imageSize: 224, hiddenSize: 128, numHeads: 4, numLayers: 4, intermediateSize: 256, gridPinpoints: [[224, 224], [448, 448], [672, 672]] } } });
  fs.writeFileSync(path.join(tmp, 'diagram.png'), await diagramPng());
  fs.writeFileSync(path.join(tmp, 'empty.png'), '');
  client = LensClient.spawnStdio({ daemonPath: DAEMON });
  client.onStatus((s) => statuses.push(s));
  const init = await client.initialize({ workspaceFolders: [{ uri: `file://${tmp}`, name: 'ws' }], initializationOptions: { maxImageMegapixels: 1 } });
  assert.equal(init.serverInfo.name, 'llava-lens');
  assert.equal(init.lensCapabilities.modelLoaded, null);
  assert.ok(init.lensCapabilities.executionProviders.includes('cpu'));
});

after(async () => {
  await client?.shutdown();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('daemon process', { timeout: 120_000 }, () => {
  test('ask before any model: a clear error', async () => {
    await assert.rejects(client.ask({ images: [], prompt: 'hi' }), (e) => code(e) === LensErrorCode.ModelNotLoaded && /lens\/loadModel/.test(String(e)));
  });

  test('bad model folders are load errors naming the file; the daemon keeps serving', async () => {
    await assert.rejects(client.loadModel({ path: path.join(tmp, 'nowhere') }), (e) => code(e) === LensErrorCode.InvalidModelFolder && /config\.json is missing/.test(String(e)));
    const broken = path.join(tmp, 'broken');
    fs.cpSync(ov, broken, { recursive: true });
    fs.rmSync(path.join(broken, 'onnx', 'embed_tokens.onnx'));
    await assert.rejects(client.loadModel({ path: broken }), (e) => code(e) === LensErrorCode.InvalidModelFolder && /embed_tokens\.onnx not found/.test(String(e)));
    assert.equal(client.lastStatus?.state, 'error');
  });

  test('load with work-done progress; status goes loading -> ready with the device', async () => {
    const events: LoadProgressEvent[] = [];
    const info = await client.loadModel({ path: ov, device: 'auto' }, (p) => events.push(p));
    assert.equal(info.device, 'cpu');
    assert.equal(info.isTestModel, true);
    assert.equal(events[0].kind, 'begin');
    assert.equal(events[events.length - 1].kind, 'end');
    assert.ok(events.some((e) => e.kind === 'report' && (e.percent ?? 0) > 0));
    assert.ok(statuses.some((s) => s.state === 'loading'));
    assert.equal(client.lastStatus?.state, 'ready');
    assert.equal(client.lastStatus?.device, 'cpu');
  });

  test('a streamed ask by path; deltas add up to the text; stages are reported', async () => {
    statuses.length = 0;
    let streamed = '';
    const r = await client.ask({ images: [{ path: 'diagram.png' }], prompt: 'What does this diagram show?', maxTokens: 10 }, (d) => (streamed += d.text));
    assert.equal(streamed, r.text);
    assert.ok(r.tokenIds.length >= 1 && r.tokenIds.length <= 10);
    assert.ok(['eos', 'length'].includes(r.finishReason));
    assert.ok(r.timings.visionMs > 0 && r.timings.imageTokens > 0);
    const stages = statuses.filter((s) => s.state === 'busy' && s.stage).map((s) => s.stage!.stage);
    assert.ok(stages.includes('vision') && stages.includes('generate'), stages.join(','));
  });

  test('cancel during generation: the answer so far comes back', async () => {
    const cts = new CancellationTokenSource();
    let n = 0;
    let streamed = '';
    const r = await client.ask({ images: [], prompt: 'Keep going', maxTokens: 400 }, (d) => {
      streamed += d.text;
      if (++n === 3) cts.cancel();
    }, cts.token);
    assert.equal(r.finishReason, 'cancelled');
    assert.ok(r.tokenIds.length >= 3 && r.tokenIds.length < 400);
    assert.equal(r.text, streamed);
  });

  test('bad inputs: each a clear error, and the daemon keeps serving', async () => {
    const bad: Array<[AskParams, LensErrorCode | number, RegExp]> = [
      [{ images: [{ bytes: '' }], prompt: 'x' }, LensErrorCode.InvalidParams, /must be a non-empty string/],
      [{ images: [{ path: 'empty.png' }], prompt: 'x' }, LensErrorCode.ImageDecodeFailed, /empty/i],
      [{ images: [{ bytes: b64((await patternJpeg()).subarray(0, 200)) }], prompt: 'x' }, LensErrorCode.ImageDecodeFailed, /./],
      [{ images: [{ bytes: b64(Buffer.from('GIF89a-garbage-garbage')) }], prompt: 'x' }, LensErrorCode.ImageDecodeFailed, /./],
      [{ images: [{ bytes: b64(Buffer.from('plain text, not an image')) }], prompt: 'x' }, LensErrorCode.UnsupportedImage, /supported/i],
      [{ images: [{ bytes: b64(pngBomb(2000, 2000)) }], prompt: 'x' }, LensErrorCode.ImageTooLarge, /4\.0 MP\), over the 1 MP limit/],
      [{ images: [{ path: 'missing.png' }], prompt: 'x' }, LensErrorCode.ImageNotFound, /missing\.png/],
      [{ images: [], prompt: 'many words '.repeat(2000) }, LensErrorCode.PromptTooLong, /context is 2048/],
      [{ images: [], prompt: 42 as unknown as string }, LensErrorCode.InvalidParams, /prompt/],
      [{ images: 'no' as unknown as [], prompt: 'x' }, LensErrorCode.InvalidParams, /images/],
      [{ images: [], prompt: 'x', temperature: -1 }, LensErrorCode.InvalidParams, /temperature/],
      [{ images: [{ bytes: '***not base64***' }], prompt: 'x' }, LensErrorCode.InvalidParams, /base64/],
    ];
    for (const [params, want, msg] of bad) {
      await assert.rejects(client.ask(params), (e) => {
        assert.equal(code(e), want, String(e));
        assert.match(String((e as Error).message), msg);
        return true;
      });
    }
    await assert.rejects(client.connection.sendRequest('lens/noSuchMethod', {}), (e) => code(e) === -32601);
    // malformed frames straight onto the daemon's stdin
    const stdin = client.child!.stdin!;
    stdin.write('Content-Length: 12\r\n\r\n{not json!!}');
    stdin.write('Content-Length: 27\r\n\r\n{"jsonrpc":"2.0","id":true}');
    await stillServing();
  });

  test('concurrent asks are all answered, in arrival order', async () => {
    const done: number[] = [];
    const asks = [0, 1, 2, 3].map((i) => client.ask({ images: [], prompt: `question ${i}`, maxTokens: 3 }).then((r) => (done.push(i), r)));
    const results = await Promise.all(asks);
    assert.deepEqual(done, [0, 1, 2, 3]);
    for (const r of results) assert.ok(r.tokenIds.length >= 1);
  });

  test('a multi-turn follow-up continues the conversation', async () => {
    const first = await client.ask({ images: [{ bytes: b64(await diagramPng()) }], prompt: 'What is this?', maxTokens: 6 });
    const second = await client.ask({ conversationId: first.conversationId, images: [], prompt: 'Say more.', maxTokens: 6 });
    assert.equal(second.conversationId, first.conversationId);
    assert.ok(second.timings.promptTokens > first.timings.promptTokens);
    // An earlier test asked about the same image: the first turn may resume from that prefill's
    // "image" prefix (prefix cache), never from more than it.
    assert.ok(first.timings.cachedTokens < first.timings.promptTokens, `turn 1 cached ${first.timings.cachedTokens} of ${first.timings.promptTokens}`);
    assert.equal(second.timings.cachedTokens, first.timings.promptTokens + first.tokenIds.length - 1, 'the follow-up reuses the KV cache of turn 1');
    await client.forgetConversation(first.conversationId);
    await assert.rejects(client.ask({ conversationId: first.conversationId, images: [], prompt: 'x' }), (e) => code(e) === LensErrorCode.UnknownConversation);
  });

  test('cancel during the vision encoder: the daemon answers cancelled before the last view', async () => {
    await client.loadModel({ path: heavy });
    const cts = new CancellationTokenSource();
    const views: number[] = [];
    const sub = client.onStatus((s) => {
      if (s.stage?.stage !== 'vision') return;
      views.push(s.stage.index!);
      cts.cancel();
    });
    try {
      const r = await client.ask({ images: [{ path: 'diagram.png' }], prompt: 'Describe', maxTokens: 5 }, () => assert.fail('no tokens after a cancel in vision'), cts.token);
      assert.equal(r.finishReason, 'cancelled');
      assert.deepEqual(r.tokenIds, []);
      assert.ok(views.length >= 1 && Math.max(...views) < 9, `views encoded: ${views.join(',')}`);
    } finally {
      sub.dispose();
    }
    await stillServing();
  });
});
