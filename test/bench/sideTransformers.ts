/**
 * transformers.js (@huggingface/transformers) run the way its documentation shows a chat with a
 * LLaVA model: AutoTokenizer + LlavaProcessor + the model class, `apply_chat_template`,
 * `processor(image, text)`, `model.generate({...inputs, max_new_tokens, do_sample: false})`.
 * Default options except the thread count, which is set to ours (`session_options.intraOpNumThreads`;
 * onnxruntime's own default ran one thread on the 2-core test VM), and `dtype: 'fp32'`, which
 * selects the same files ours loads (`*.onnx`, no suffix; the decoder in them is 4-bit).
 *
 * Follow-ups: as users run it, the whole conversation again (template, image, generate); and,
 * "by hand", the `past_key_values` of the previous generate passed back with the new ids.
 * Forced length: `min_new_tokens` (transformers.js bans its EOS ids below that count).
 */
import * as path from 'node:path';
import { memory, turnFrom, type LoadArgs, type PreprocessResult, type Side, type SideStats, type TurnResult } from './side';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const T = require('@huggingface/transformers');

type Msg = { role: string; content: Array<{ type: 'image' } | { type: 'text'; text: string }> };

export class TransformersSide implements Side {
  private model: any;
  private tokenizer: any;
  private processor: any;
  private loadMs = 0;
  private visionMs = 0;
  private last: { image: string; messages: Msg[]; answer: string; sequences: bigint[]; pkv: any } | undefined;
  private readonly notes: string[] = [];

  async load(a: LoadArgs): Promise<{ loadMs: number; notes: string[] }> {
    T.env.allowRemoteModels = false;
    T.env.localModelPath = path.dirname(a.dir) + path.sep;
    const id = path.basename(a.dir);
    const t = performance.now();
    this.tokenizer = await T.AutoTokenizer.from_pretrained(id);
    // AutoProcessor maps processor_class LlavaOnevisionProcessor to a bare image Processor that
    // leaves one <image> token (generate then fails: tokens != features); LlavaProcessor expands it.
    this.processor = await T.LlavaProcessor.from_pretrained(id);
    const session_options = a.threads !== undefined ? { intraOpNumThreads: a.threads } : undefined;
    this.model = await T.LlavaOnevisionForConditionalGeneration.from_pretrained(id, { dtype: 'fp32', ...(session_options ? { session_options } : {}) });
    this.loadMs = performance.now() - t;
    // Time the vision encoder inside generate without changing what it does.
    const encode = this.model.encode_image.bind(this.model);
    this.model.encode_image = async (x: unknown) => {
      const t0 = performance.now();
      const r = await encode(x);
      this.visionMs += performance.now() - t0;
      return r;
    };
    this.notes.push(`transformers.js ${T.env.version}, intraOpNumThreads ${a.threads ?? 'onnxruntime default'}`);
    return { loadMs: this.loadMs, notes: this.notes };
  }

  async preprocess(file: string): Promise<PreprocessResult> {
    const t0 = performance.now();
    const image = await T.RawImage.read(file);
    const t1 = performance.now();
    const out = await this.processor.image_processor(image);
    const t2 = performance.now();
    return { decodeMs: t1 - t0, preprocessMs: t2 - t1, totalMs: t2 - t0, views: out.pixel_values.dims[0] };
  }

  /** One generate call; `stamps` gets a time per generated token (the streamer's first put is the prompt). */
  private async generate(inputs: Record<string, unknown>, maxNew: number, minNew: number) {
    const stamps: number[] = [];
    const ids: number[] = [];
    let first = true;
    const streamer = {
      put: (v: bigint[][]) => {
        if (first) {
          first = false;
          return;
        }
        stamps.push(performance.now());
        ids.push(Number(v[0][0]));
      },
      end: () => undefined,
    };
    const out = await this.model.generate({ ...inputs, max_new_tokens: maxNew, min_new_tokens: minNew || null, do_sample: false, streamer, return_dict_in_generate: true });
    return { out, stamps, ids };
  }

  private async chat(image: string, messages: Msg[], maxNew: number, minNew: number) {
    const t0 = performance.now();
    this.visionMs = 0;
    const raw = await T.RawImage.read(image);
    const text = this.tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true });
    const inputs = await this.processor(raw, text);
    const g = await this.generate(inputs, maxNew, minNew);
    return { t0, g, promptTokens: inputs.input_ids.dims[1] as number };
  }

  async newImage(image: string, question: string, tokens: number): Promise<TurnResult> {
    await this.last?.pkv?.dispose?.();
    const messages: Msg[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] }];
    const { t0, g, promptTokens } = await this.chat(image, messages, tokens, tokens);
    const sequences: bigint[] = Array.from(g.out.sequences.data as BigInt64Array);
    const answer: string = this.tokenizer.decode(g.ids, { skip_special_tokens: true });
    this.last = { image, messages, answer, sequences, pkv: g.out.past_key_values };
    return turnFrom(t0, g.stamps, g.ids, this.visionMs, promptTokens);
  }

  async repeatImage(image: string, question: string): Promise<TurnResult> {
    const messages: Msg[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: question }] }];
    const { t0, g, promptTokens } = await this.chat(image, messages, 1, 0);
    await g.out.past_key_values?.dispose?.();
    return turnFrom(t0, g.stamps, g.ids, this.visionMs, promptTokens);
  }

  private followMessages(question: string): Msg[] {
    const l = this.last!;
    return [...l.messages, { role: 'assistant', content: [{ type: 'text', text: l.answer }] }, { role: 'user', content: [{ type: 'text', text: question }] }];
  }

  async followUp(question: string): Promise<TurnResult> {
    const { t0, g, promptTokens } = await this.chat(this.last!.image, this.followMessages(question), 1, 0);
    await g.out.past_key_values?.dispose?.();
    return turnFrom(t0, g.stamps, g.ids, this.visionMs, promptTokens);
  }

  /** The new ids are the previous sequence + the template's text after the answer, tokenized. */
  async followUpKv(question: string): Promise<TurnResult> {
    const l = this.last!;
    const t0 = performance.now();
    this.visionMs = 0;
    const MARK = '\u0000ANSWER\u0000';
    const withMark: string = this.tokenizer.apply_chat_template(
      [...l.messages, { role: 'assistant', content: [{ type: 'text', text: MARK }] }, { role: 'user', content: [{ type: 'text', text: question }] }],
      { tokenize: false, add_generation_prompt: true },
    );
    const tail = withMark.slice(withMark.indexOf(MARK) + MARK.length);
    const more: number[] = this.tokenizer.encode(tail, { add_special_tokens: false });
    const all = [...l.sequences, ...more.map(BigInt)];
    const input_ids = new T.Tensor('int64', BigInt64Array.from(all), [1, all.length]);
    const attention_mask = new T.Tensor('int64', new BigInt64Array(all.length).fill(1n), [1, all.length]);
    const g = await this.generate({ input_ids, attention_mask, past_key_values: l.pkv }, 1, 0);
    l.pkv = undefined; // the cache now belongs to generate's result
    await g.out.past_key_values?.dispose?.();
    return turnFrom(t0, g.stamps, g.ids, this.visionMs, all.length);
  }

  async stats(): Promise<SideStats> {
    return { ...memory(), loadMs: this.loadMs, notes: this.notes };
  }
}
