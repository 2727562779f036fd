/**
 * The runtime end to end on generated tiny models: loading (and every way a folder can be
 * wrong), asking, streaming, stop strings, cancellation during generation and during the vision
 * encoder, multi-turn, bad images and prompts. Runs the real onnxruntime on the worker thread
 * the daemon uses.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LensErrorCode } from '../../common/errors';
import { OnnxEngine } from '../../server/src/runtime/engine';
import type { AskStage, GenerationOptions } from '../../server/src/runtime/types';
import { WorkerEngine } from '../../server/src/runtime/workerEngine';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng, patternJpeg, pngBomb, quadrantsPng } from '../fixtures/images';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-engine-'));
const llava = path.join(root, 'tiny-llava');
const ov = path.join(root, 'tiny-onevision');
const never = () => new AbortController().signal;
const opts = (o: Partial<GenerationOptions> = {}): GenerationOptions => ({ maxTokens: 12, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [], ...o });
const noProgress = () => undefined;

before(async () => {
  await makeTestModel(llava, { preset: 'tiny-llava', seed: 1 });
  await makeTestModel(ov, { preset: 'tiny-onevision', seed: 2, variants: ['fp16', 'q4'] });
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Copies a model folder so a test can break it. */
function copyModel(src: string, name: string): string {
  const dst = path.join(root, name);
  fs.cpSync(src, dst, { recursive: true });
  return dst;
}

async function loadError(dir: string, options = {}): Promise<{ code: number; message: string }> {
  const e = new OnnxEngine();
  try {
    await e.load(dir, options, noProgress, never());
  } catch (err) {
    return err as { code: number; message: string };
  }
  assert.fail(`loading ${dir} should fail`);
}

describe('loading', () => {
  test('a missing folder names config.json', async () => {
    const err = await loadError(path.join(root, 'nope'));
    assert.equal(err.code, LensErrorCode.InvalidModelFolder);
    assert.match(err.message, /config\.json is missing/);
  });

  test('a missing graph names the file', async () => {
    const dir = copyModel(llava, 'no-decoder');
    fs.rmSync(path.join(dir, 'onnx', 'decoder_model_merged.onnx'));
    const err = await loadError(dir);
    assert.equal(err.code, LensErrorCode.InvalidModelFolder);
    assert.match(err.message, /decoder_model_merged\.onnx not found/);
  });

  test('an unknown layout (no onnx/ folder) is explained', async () => {
    const dir = path.join(root, 'pytorch-layout');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(llava, 'config.json'), path.join(dir, 'config.json'));
    fs.copyFileSync(path.join(llava, 'preprocessor_config.json'), path.join(dir, 'preprocessor_config.json'));
    fs.copyFileSync(path.join(llava, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const err = await loadError(dir);
    assert.equal(err.code, LensErrorCode.InvalidModelFolder);
    assert.match(err.message, /vision_encoder\.onnx not found.*Hugging Face layout/);
  });

  test('projector width != LLM width is caught at load with a hint', async () => {
    const wide = path.join(root, 'wide');
    await makeTestModel(wide, { preset: 'tiny-llava', seed: 1, config: { text: { hiddenSize: 96, numHeads: 4, numKvHeads: 4 } } });
    const dir = copyModel(llava, 'mismatch');
    fs.copyFileSync(path.join(wide, 'onnx', 'vision_encoder.onnx'), path.join(dir, 'onnx', 'vision_encoder.onnx'));
    const err = await loadError(dir);
    assert.equal(err.code, LensErrorCode.InvalidModelFolder);
    assert.match(err.message, /projector width 96 != LLM hidden 64: wrong vision encoder file/);
  });

  test('an image token outside the vocabulary is named', async () => {
    const dir = copyModel(llava, 'bad-image-token');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.image_token_index = 5000;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    const err = await loadError(dir);
    assert.equal(err.code, LensErrorCode.InvalidModelFolder);
    assert.match(err.message, /image token id 5000 .* not in the vocabulary/);
  });

  test('corrupt JSON and corrupt graphs are reported with the file', async () => {
    const dir = copyModel(llava, 'corrupt');
    fs.writeFileSync(path.join(dir, 'generation_config.json'), '{"eos_token_id": ');
    let err = await loadError(dir);
    assert.match(err.message, /generation_config\.json is not valid JSON/);
    fs.copyFileSync(path.join(llava, 'generation_config.json'), path.join(dir, 'generation_config.json'));
    fs.writeFileSync(path.join(dir, 'onnx', 'embed_tokens.onnx'), Buffer.from('not a protobuf at all'));
    err = await loadError(dir, { device: 'cpu' });
    assert.equal(err.code, LensErrorCode.ModelLoadFailed);
    assert.match(err.message, /embed_tokens\.onnx/);
  });

  test('precision: a missing variant lists the available ones; per-file choice loads', async () => {
    const err = await loadError(llava, { dtype: 'fp16' });
    assert.match(err.message, /vision_encoder_fp16\.onnx not found: this folder has vision_encoder in fp32/);
    const e = new OnnxEngine();
    const info = await e.load(ov, { dtype: { vision_encoder: 'fp16', embed_tokens: 'fp16', decoder_model_merged: 'q4' } }, noProgress, never());
    assert.deepEqual(info.dtype, { vision_encoder: 'fp16', embed_tokens: 'fp16', decoder_model_merged: 'q4' });
    const r = await e.ask({ images: [{ bytes: await diagramPng() }], prompt: 'Describe.', options: opts({ maxTokens: 4 }) }, () => undefined, never());
    assert.equal(r.tokenIds.length, 4);
    await e.unload();
  });

  test('an unusable explicit device is a clear error, auto falls back to cpu', async () => {
    const err = await loadError(llava, { device: 'cuda' });
    assert.equal(err.code, LensErrorCode.DeviceUnavailable);
    assert.match(err.message, /cuda/);
    const e = new OnnxEngine();
    const info = await e.load(llava, { device: 'auto' }, noProgress, never());
    assert.equal(info.device, 'cpu');
    await e.unload();
  });

  test('load reports progress up to 100 and can be cancelled', async () => {
    const e = new OnnxEngine();
    const seen: number[] = [];
    await e.load(llava, {}, (p) => seen.push(p.percent), never());
    assert.equal(seen[seen.length - 1], 100);
    assert.deepEqual([...seen].sort((a, b) => a - b), seen);
    const ac = new AbortController();
    await assert.rejects(e.load(llava, {}, (p) => p.percent >= 10 && ac.abort(), ac.signal), (x: { code: number }) => x.code === LensErrorCode.Cancelled);
    assert.equal(e.info(), undefined);
  });
});

test('history is bounded: past maxHistoryTurns the oldest turn is dropped and the context rebuilt', async () => {
  const e = new OnnxEngine({ limits: { maxHistoryTurns: 2 } });
  await e.load(ov, {}, noProgress, never());
  const a = await e.ask({ images: [], prompt: 'one', options: opts({ maxTokens: 2 }) }, () => undefined, never());
  const b = await e.ask({ conversationId: a.conversationId, images: [], prompt: 'two', options: opts({ maxTokens: 2 }) }, () => undefined, never());
  assert.ok(b.timings.cachedTokens > 0);
  const c = await e.ask({ conversationId: a.conversationId, images: [], prompt: 'three', options: opts({ maxTokens: 2 }) }, () => undefined, never());
  assert.equal(c.timings.cachedTokens, 0, 'rebuilt after dropping turn one');
  assert.ok(c.timings.promptTokens < b.timings.promptTokens + b.tokenIds.length + 8, 'turn one is gone');
  await e.unload();
});

test('cancel during the vision encoder (in-thread): no view runs after the cancel', async () => {
  const e = new OnnxEngine();
  await e.load(ov, {}, noProgress, never());
  const ac = new AbortController();
  const stages: AskStage[] = [];
  const r = await e.ask({ images: [{ bytes: await diagramPng() }], prompt: 'Describe', options: opts() }, () => assert.fail('no token expected'), ac.signal, (s) => {
    stages.push(s);
    if (s.stage === 'vision' && s.index === 1) ac.abort();
  });
  assert.equal(r.finishReason, 'cancelled');
  assert.deepEqual(stages.filter((s) => s.stage === 'vision').map((s) => s.index), [0, 1]);
  assert.ok((stages.find((s) => s.stage === 'vision')?.total ?? 0) > 2);
  await e.unload();
});

describe('asking (worker thread)', () => {
  const engine = new WorkerEngine();
  before(async () => {
    await engine.load(ov, { maxImagePixels: 1e6 }, noProgress, never());
  });
  after(() => engine.dispose());

  test('streams deltas that add up to the answer; timings are filled', async () => {
    let streamed = '';
    const ids: number[] = [];
    const r = await engine.ask({ images: [{ bytes: await diagramPng() }], prompt: 'What does this diagram show?', options: opts() }, (d) => ((streamed += d.text), ids.push(d.tokenId)), never());
    assert.equal(streamed, r.text);
    assert.deepEqual([...new Set(ids)], r.tokenIds.filter((t) => ids.includes(t)).filter((t, i, a) => a.indexOf(t) === i));
    assert.ok(r.finishReason === 'length' ? r.tokenIds.length === 12 : r.finishReason === 'eos' && r.tokenIds.length > 1, `${r.finishReason} after ${r.tokenIds.length}`);
    const t = r.timings;
    assert.ok(t.imageTokens > 9 && t.promptTokens > t.imageTokens && t.newTokens === r.tokenIds.length);
    assert.ok(t.visionMs > 0 && t.prefillMs > 0 && t.firstTokenMs > 0 && t.totalMs >= t.firstTokenMs && t.decodeTokensPerSec > 0);
    assert.equal(r.device, 'cpu');
  });

  test('the same seed gives the same sampled answer; options change it', async () => {
    const img = [{ bytes: await patternJpeg() }];
    const sampled = opts({ temperature: 0.9, topK: 50, topP: 0.95, repetitionPenalty: 1.2, seed: 7 });
    const a = await engine.ask({ images: img, prompt: 'Hi', options: sampled }, () => undefined, never());
    const b = await engine.ask({ images: img, prompt: 'Hi', options: sampled }, () => undefined, never());
    const g = await engine.ask({ images: img, prompt: 'Hi', options: opts() }, () => undefined, never());
    assert.deepEqual(a.tokenIds, b.tokenIds);
    assert.notDeepEqual(a.tokenIds, g.tokenIds);
  });

  test('a stop string ends the answer before it', async () => {
    const g = await engine.ask({ images: [], prompt: 'Tell me', options: opts({ maxTokens: 12 }) }, () => undefined, never());
    const stop = g.text.slice(4, 7);
    assert.ok(stop.trim().length > 0, 'the greedy answer has text to stop on');
    let streamed = '';
    const s = await engine.ask({ images: [], prompt: 'Tell me', options: opts({ maxTokens: 12, stop: [stop] }) }, (d) => (streamed += d.text), never());
    assert.equal(s.finishReason, 'stop');
    assert.equal(s.text, g.text.slice(0, g.text.indexOf(stop)));
    assert.equal(streamed, s.text);
  });

  test('cancel during generation returns the answer so far', async () => {
    const ac = new AbortController();
    let streamed = '';
    let n = 0;
    const r = await engine.ask({ images: [], prompt: 'Go on', options: opts({ maxTokens: 200 }) }, (d) => {
      streamed += d.text;
      if (++n === 3) ac.abort();
    }, ac.signal);
    assert.equal(r.finishReason, 'cancelled');
    assert.ok(r.tokenIds.length >= 3 && r.tokenIds.length < 200, `stopped after ${r.tokenIds.length}`);
    assert.equal(r.text, streamed);
  });

  test('cancel during the vision encoder, across the worker thread, stops before the last view', async () => {
    // A heavier vision tower (224 px views, 3×3 grid + base = 10 views of ~tens of ms each), so
    // the cancel posted to the worker arrives while views are still being encoded.
    const heavy = path.join(root, 'heavy-vision');
    await makeTestModel(heavy, { preset: 'tiny-onevision', seed: 4, config: { vision: { imageSize: 224, hiddenSize: 128, numHeads: 4, numLayers: 4, intermediateSize: 256, gridPinpoints: [[224, 224], [448, 448], [672, 672]] } } });
    const w = new WorkerEngine();
    try {
      await w.load(heavy, {}, noProgress, never());
      const ac = new AbortController();
      const stages: AskStage[] = [];
      const r = await w.ask({ images: [{ bytes: await diagramPng() }], prompt: 'Describe', options: opts() }, () => undefined, ac.signal, (s) => {
        stages.push(s);
        if (s.stage === 'vision' && s.index === 0) ac.abort();
      });
      assert.equal(r.finishReason, 'cancelled');
      assert.deepEqual(r.tokenIds, []);
      const views = stages.filter((s) => s.stage === 'vision');
      assert.ok((views[0].total ?? 0) === 10, 'the image was tiled 3×3');
      assert.ok(views.length < 10, `stopped after ${views.length} of 10 views`);
      assert.ok(!stages.some((s) => s.stage === 'prefill'));
    } finally {
      await w.dispose();
    }
  });

  test('a follow-up continues the conversation; a new image is added to it', async () => {
    const first = await engine.ask({ images: [{ bytes: await diagramPng() }], prompt: 'What is this?', options: opts() }, () => undefined, never());
    const second = await engine.ask({ conversationId: first.conversationId, images: [], prompt: 'And the arrows?', options: opts() }, () => undefined, never());
    assert.equal(second.conversationId, first.conversationId);
    assert.ok(second.timings.promptTokens > first.timings.promptTokens + first.tokenIds.length);
    const third = await engine.ask({ conversationId: first.conversationId, images: [{ bytes: await patternJpeg() }], prompt: 'Compare with this one.', options: opts() }, () => undefined, never());
    assert.ok(third.timings.imageTokens > 0);
    assert.ok(third.timings.promptTokens > second.timings.promptTokens + third.timings.imageTokens);
    engine.forget(first.conversationId);
    await assert.rejects(engine.ask({ conversationId: first.conversationId, images: [], prompt: 'x', options: opts() }, () => undefined, never()), (e: { code: number }) => e.code === LensErrorCode.UnknownConversation);
  });

  test('a system prompt opens a conversation; a tool turn continues it (ChatML tool role)', async () => {
    const plain = await engine.ask({ images: [], prompt: 'Read the label.', options: opts({ maxTokens: 3 }) }, () => undefined, never());
    const sys = await engine.ask({ images: [], prompt: 'Read the label.', system: 'You can call tools.', options: opts({ maxTokens: 3 }) }, () => undefined, never());
    assert.ok(sys.timings.promptTokens !== plain.timings.promptTokens, 'the system prompt replaced the default one');
    const tool = await engine.ask({ conversationId: sys.conversationId, role: 'tool', images: [], prompt: '{"texts": ["OK"]}', options: opts({ maxTokens: 3 }) }, () => undefined, never());
    assert.ok(tool.timings.cachedTokens > 0, 'the tool turn extends the cached conversation');
  });

  test('bad images: each a clear error, then the engine still answers', async () => {
    const cases: Array<[Uint8Array | string, LensErrorCode, RegExp]> = [
      [new Uint8Array(0), LensErrorCode.ImageDecodeFailed, /empty/i],
      [(await patternJpeg()).subarray(0, 300), LensErrorCode.ImageDecodeFailed, /truncated|corrupt|decode/i],
      [Buffer.from('%PDF-1.4 not an image'), LensErrorCode.UnsupportedImage, /PNG|supported/],
      [pngBomb(3000, 3000), LensErrorCode.ImageTooLarge, /over the 1 MP limit/],
      [path.join(root, 'missing.png'), LensErrorCode.ImageNotFound, /does not exist/],
      [root, LensErrorCode.ImageNotFound, /not a regular file/],
    ];
    for (const [input, code, msg] of cases) {
      const images = [typeof input === 'string' ? { path: input } : { bytes: input }];
      await assert.rejects(engine.ask({ images, prompt: 'x', options: opts() }, () => undefined, never()), (e: { code: number; message: string }) => {
        assert.equal(e.code, code, e.message);
        assert.match(e.message, msg);
        return true;
      });
    }
    const ok = await engine.ask({ images: [{ bytes: await diagramPng() }], prompt: 'Still there?', options: opts({ maxTokens: 2 }) }, () => undefined, never());
    assert.equal(ok.tokenIds.length, 2);
  });

  test('a prompt longer than the context fails before any work', async () => {
    const stages: AskStage[] = [];
    await assert.rejects(
      engine.ask({ images: [], prompt: 'word '.repeat(3000), options: opts() }, () => undefined, never(), (s) => stages.push(s)),
      (e: { code: number; message: string }) => e.code === LensErrorCode.PromptTooLong && /context is 2048/.test(e.message),
    );
    assert.ok(!stages.some((s) => s.stage === 'vision' || s.stage === 'prefill'));
  });

  test('a literal <image> in the question is refused with advice', async () => {
    await assert.rejects(engine.ask({ images: [], prompt: 'look at <image> please', options: opts() }, () => undefined, never()), /remove '<image>'/);
  });

  test('bad generation options are named', async () => {
    await assert.rejects(engine.ask({ images: [], prompt: 'x', options: opts({ topP: 2 }) }, () => undefined, never()), /topP must be in/);
    await assert.rejects(engine.ask({ images: [], prompt: 'x', options: opts({ maxTokens: 0 }) }, () => undefined, never()), /maxTokens/);
  });
});

test('a new conversation about a recent image resumes from its "system + image" KV and answers as a fresh engine does', async () => {
  const img = await diagramPng();
  const ask = (e: OnnxEngine, prompt: string, system?: string) =>
    e.ask({ images: [{ bytes: img }], prompt, options: opts({ maxTokens: 8 }), ...(system ? { system } : {}) }, () => undefined, never());
  for (const dir of [llava, ov]) {
    const warm = new OnnxEngine();
    await warm.load(dir, {}, noProgress, never());
    const first = await ask(warm, 'What is shown?');
    assert.equal(first.timings.cachedTokens, 0, 'nothing to resume from yet');
    const second = await ask(warm, 'Which colours are used?'); // new conversation, same image
    assert.ok(second.timings.cachedTokens > second.timings.imageTokens, `${dir}: resumed after the image (${second.timings.cachedTokens} cached of ${second.timings.promptTokens})`);
    const other = await ask(warm, 'Which colours are used?', 'Answer briefly.'); // another system prompt: no match
    assert.equal(other.timings.cachedTokens, 0);

    const fresh = new OnnxEngine();
    await fresh.load(dir, {}, noProgress, never());
    const reference = await ask(fresh, 'Which colours are used?');
    assert.equal(reference.timings.cachedTokens, 0);
    assert.deepEqual(second.tokenIds, reference.tokenIds, `${dir}: the resumed prefill answers like a full one`);
    const otherRef = await ask(fresh, 'Which colours are used?', 'Answer briefly.');
    assert.deepEqual(other.tokenIds, otherRef.tokenIds);
    await warm.unload();
    await fresh.unload();
  }
});

test('the vision cache: a known image skips decode, preprocessing and the encoder; least recently used entries go first', async () => {
  const e = new OnnxEngine({ visionCacheSize: 2 });
  await e.load(ov, {}, noProgress, never());
  const [a, b, c] = [await diagramPng(), await patternJpeg(), await quadrantsPng(40, 30)];
  const ask = async (img: Uint8Array) => (await e.ask({ images: [{ bytes: img }], prompt: 'What is it?', options: opts({ maxTokens: 2 }) }, () => undefined, never())).timings;
  const cold = await ask(a);
  assert.ok(cold.decodeImageMs > 0 && cold.preprocessMs > 0 && cold.visionMs > 0);
  const hit = await ask(a);
  assert.equal(hit.decodeImageMs, 0, 'no decode for cached features');
  assert.equal(hit.preprocessMs, 0, 'no preprocessing for cached features');
  assert.equal(hit.imageTokens, cold.imageTokens);
  await ask(b); // cache: a, b
  await ask(a); // a used again: b is now the oldest
  await ask(c); // evicts b
  assert.equal((await ask(a)).decodeImageMs, 0, 'a stayed: it was used more recently than b');
  assert.ok((await ask(b)).decodeImageMs > 0, 'b was evicted');
  await e.unload();
});

test('a prefill in chunks answers exactly as one step (both layouts, first turn and follow-up)', async () => {
  const img = await diagramPng();
  for (const dir of [llava, ov]) {
    const answers: number[][][] = [];
    for (const prefillChunk of [100_000, 7]) {
      const e = new OnnxEngine({ prefillChunk });
      await e.load(dir, {}, noProgress, never());
      const first = await e.ask({ images: [{ bytes: img }], prompt: 'What is shown here, in detail?', options: opts({ maxTokens: 6 }) }, () => undefined, never());
      assert.ok(first.timings.promptTokens > 3 * 7, `${dir}: the prompt spans several chunks (${first.timings.promptTokens})`);
      const next = await e.ask({ conversationId: first.conversationId, images: [], prompt: 'And the colours? Say more than before.', options: opts({ maxTokens: 6 }) }, () => undefined, never());
      answers.push([first.tokenIds, next.tokenIds]);
      await e.unload();
    }
    assert.deepEqual(answers[1], answers[0], `${dir}: chunked prefill changes nothing`);
  }
});
