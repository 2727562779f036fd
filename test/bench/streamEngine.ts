/**
 * An engine that streams `maxTokens` one-word tokens as fast as the event loop allows (one macrotask
 * per token, as tokens arrive from the real engine's worker thread), for measuring the daemon's own
 * cost per streamed token and per request. Loaded by the daemon through its `LLAVA_LENS_ENGINE`
 * hook (`createEngine`).
 */
import type { AnswerDelta, AskRequest, AskResult, Engine, LoadOptions, LoadProgress, ModelInfo } from '../../server/src/runtime/types';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

export class StreamEngine implements Engine {
  private model: ModelInfo | undefined;
  private n = 0;

  async load(dir: string, _o: LoadOptions, onProgress: (p: LoadProgress) => void): Promise<ModelInfo> {
    onProgress({ percent: 100, message: 'ready' });
    this.model = {
      path: dir,
      name: 'stream-engine',
      modelType: 'llava',
      device: 'cpu',
      dtype: { vision_encoder: 'fp32', embed_tokens: 'fp32', decoder_model_merged: 'fp32' },
      contextLength: 1 << 20,
      imagesPerPrompt: 4,
      imageSize: 384,
      toolCallFormat: 'none',
      isTestModel: true,
    };
    return this.model;
  }

  async unload(): Promise<void> {
    this.model = undefined;
  }

  info(): ModelInfo | undefined {
    return this.model;
  }

  forget(): void {}

  async ask(req: AskRequest, onDelta: (d: AnswerDelta) => void, signal: AbortSignal): Promise<AskResult> {
    const t0 = performance.now();
    const ids: number[] = [];
    let text = '';
    for (let i = 0; i < req.options.maxTokens && !signal.aborted; i++) {
      await tick();
      const piece = i === 0 ? 'word' : ' word';
      text += piece;
      ids.push(1000 + (i % 7));
      onDelta({ text: piece, tokenId: ids[i] });
    }
    const totalMs = performance.now() - t0;
    return {
      text,
      tokenIds: ids,
      conversationId: `s-${++this.n}`,
      finishReason: signal.aborted ? 'cancelled' : 'length',
      timings: { decodeImageMs: 0, preprocessMs: 0, visionMs: 0, prefillMs: 0, firstTokenMs: 0, totalMs, promptTokens: 1, cachedTokens: 0, imageTokens: 0, newTokens: ids.length, decodeTokensPerSec: 0 },
      device: 'cpu',
      model: 'stream-engine',
    };
  }
}

export function createEngine(): Engine {
  return new StreamEngine();
}
