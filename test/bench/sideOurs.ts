/** Ours: the OnnxEngine in process (the daemon runs the same engine on a worker thread). */
import * as fs from 'node:fs';
import { decodeImage } from '../../server/src/runtime/image';
import { readModelSpec } from '../../server/src/runtime/modelSpec';
import { OnnxEngine } from '../../server/src/runtime/engine';
import { decodeResize, preprocess, type PreprocessSpec } from '../../server/src/runtime/preprocess';
import type { GenerationOptions } from '../../server/src/runtime/types';
import { memory, turnFrom, type LoadArgs, type PreprocessResult, type Side, type SideStats, type TurnResult } from './side';

const greedy = (maxTokens: number): GenerationOptions => ({ maxTokens, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [] });
const never = new AbortController().signal;

export class OursSide implements Side {
  private engine!: OnnxEngine;
  private dir = '';
  private anyresSpec: PreprocessSpec | undefined;
  private singleSpec!: PreprocessSpec;
  private conversation: string | undefined;
  private loadMs = 0;
  private readonly notes: string[] = [];

  async load(a: LoadArgs): Promise<{ loadMs: number; notes: string[] }> {
    this.dir = a.dir;
    const ban = a.banIds;
    this.engine = new OnnxEngine({
      graphTuning: a.tuning === false ? false : a.tuning === true || a.tuning === undefined ? {} : a.tuning,
      // Forced length: EOS and the turn separator can never be sampled (the bench's answers are not read).
      processLogits: (logits) => {
        for (const id of ban) logits[id] = -Infinity;
      },
      log: (m) => this.notes.push(m),
    });
    const t = performance.now();
    await this.engine.load(a.dir, { device: 'cpu' }, () => undefined, never);
    this.loadMs = performance.now() - t;
    for (const [file, tuned] of [['decoder', this.engine.graphTuning()], ['vision encoder', this.engine.visionTuning()]] as const) {
      this.notes.push(tuned ? `${file} graph tuning: ${tuned.applied.join('; ') || 'none'}${tuned.skipped.length ? ` (skipped: ${tuned.skipped.join('; ')})` : ''}; ${tuned.cacheHit ? 'cached' : 'tuned now'} in ${tuned.ms.toFixed(0)} ms` : `${file} graph tuning off`);
    }
    this.singleSpec = readModelSpec(a.dir).preprocess;
    return { loadMs: this.loadMs, notes: this.notes };
  }

  /** The anyres spec comes from the original folder (the twin's sibling without the suffix). */
  private anyres(): PreprocessSpec {
    this.anyresSpec ??= readModelSpec(this.dir.replace(/-single-view$/, '')).preprocess;
    return this.anyresSpec;
  }

  async preprocess(file: string, anyres: boolean): Promise<PreprocessResult> {
    const t0 = performance.now();
    const bytes = await fs.promises.readFile(file);
    const spec = anyres ? this.anyres() : this.singleSpec;
    const resize = decodeResize(spec); // as the engine decodes (engine.ts prepareImage)
    const img = await decodeImage({ bytes }, { maxPixels: 50e6, ...(resize ? { resize } : {}) });
    const t1 = performance.now();
    const pv = await preprocess(img, spec);
    const t2 = performance.now();
    return { decodeMs: t1 - t0, preprocessMs: t2 - t1, totalMs: t2 - t0, views: pv.dims[0] };
  }

  private async turn(image: string | undefined, question: string, maxTokens: number, conversationId?: string): Promise<TurnResult & { conversationId: string }> {
    const stamps: number[] = [];
    const ids: number[] = [];
    const t0 = performance.now();
    const r = await this.engine.ask(
      { conversationId, images: image ? [{ path: image }] : [], prompt: question, options: greedy(maxTokens) },
      (d) => {
        stamps.push(performance.now());
        ids.push(d.tokenId);
      },
      never,
    );
    return { ...turnFrom(t0, stamps, ids, r.timings.visionMs, r.timings.promptTokens), conversationId: r.conversationId };
  }

  async newImage(image: string, question: string, tokens: number): Promise<TurnResult> {
    if (this.conversation) this.engine.forget(this.conversation);
    const r = await this.turn(image, question, tokens);
    this.conversation = r.conversationId;
    return r;
  }

  async repeatImage(image: string, question: string): Promise<TurnResult> {
    const r = await this.turn(image, question, 1);
    this.engine.forget(r.conversationId);
    return r;
  }

  async followUp(question: string): Promise<TurnResult> {
    return this.turn(undefined, question, 1, this.conversation);
  }

  async stats(): Promise<SideStats> {
    return { ...memory(), loadMs: this.loadMs, notes: this.notes };
  }
}
