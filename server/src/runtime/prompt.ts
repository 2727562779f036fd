/**
 * Prompt: the model's own chat template (rendered with @huggingface/jinja) and tokenizer
 * (@huggingface/tokenizers). Text is tokenized with special tokens off: the template already
 * writes BOS and turn markers.
 *
 * Multi-turn prompts are built incrementally so a conversation's token ids (and KV cache) can
 * be extended rather than re-encoded: the new ids for a follow-up are the tokens of the text the
 * template renders after the tokens the model already produced.
 */
import type * as JinjaNs from '@huggingface/jinja' with { 'resolution-mode': 'import' };
import type * as TokenizersNs from '@huggingface/tokenizers' with { 'resolution-mode': 'import' };
// Both packages ship CommonJS builds but ESM-only type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Template } = require('@huggingface/jinja') as typeof JinjaNs;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Tokenizer } = require('@huggingface/tokenizers') as typeof TokenizersNs;
type Template = JinjaNs.Template;
type Tokenizer = TokenizersNs.Tokenizer;
import { LensError, LensErrorCode } from '../../../common/errors';

export type Role = 'system' | 'user' | 'assistant' | 'tool';

/** One turn of a conversation as the template sees it. Images come before the text. */
export interface ChatMessage {
  role: Role;
  text: string;
  images: number;
}

export class PromptFormat {
  private readonly template: Template;
  private readonly specials: Record<string, string>;
  readonly tokenizer: Tokenizer;

  constructor(
    templateSource: string,
    tokenizerJson: object,
    tokenizerConfig: Record<string, unknown>,
  ) {
    try {
      this.template = new Template(templateSource);
    } catch (e) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `the chat template does not parse (${(e as Error).message}): fix or replace chat_template.jinja.`);
    }
    try {
      this.tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `tokenizer.json could not be loaded (${(e as Error).message}): the file is corrupt or of an unsupported kind.`);
    }
    this.specials = {};
    for (const k of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      const v = tokenizerConfig[k];
      const s = typeof v === 'string' ? v : typeof (v as { content?: unknown })?.content === 'string' ? (v as { content: string }).content : undefined;
      if (s !== undefined) this.specials[k] = s;
    }
  }

  /** Renders messages with the template. Content is a list of parts: images first, then text. */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    const msgs = messages.map((m) => ({
      role: m.role,
      content: [...Array.from({ length: m.images }, () => ({ type: 'image' })), { type: 'text', text: m.text }],
    }));
    try {
      return this.template.render({ messages: msgs, add_generation_prompt: addGenerationPrompt, ...this.specials });
    } catch (e) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `the chat template failed to render (${(e as Error).message}): the template may expect a different message format.`);
    }
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** Answer text for the user (special tokens skipped). */
  decode(ids: readonly number[]): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode(ids as number[], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  /** Exact text of the ids, special tokens included (for aligning with the template). */
  decodeVerbatim(ids: readonly number[]): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode(ids as number[], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /**
   * The special tokens the template writes right after an assistant answer (the turn
   * separator, e.g. `<|im_end|>` or `</s>`), found by rendering a probe conversation. These
   * stop generation in addition to the configured EOS ids.
   */
  turnSeparatorIds(): number[] {
    const probe = 'lens-probe-answer';
    const withAnswer = this.render([{ role: 'user', text: 'q', images: 0 }, { role: 'assistant', text: probe, images: 0 }], false);
    const at = withAnswer.lastIndexOf(probe);
    if (at < 0) return [];
    const after = withAnswer.slice(at + probe.length);
    const first = this.encode(after).find((id) => this.isSpecial(id));
    return first === undefined ? [] : [first];
  }

  isSpecial(id: number): boolean {
    return this.tokenizer.get_added_tokens_decoder().get(id)?.special === true;
  }

  /**
   * Token ids to append for the next user turn.
   *
   * @param history  messages already in the context, ending with the last assistant answer
   * @param answerIds the ids the model generated for that answer (as they sit in the KV cache)
   * @returns the ids to append, or `undefined` when the template does not render the answer
   *   as the model produced it (then the caller re-encodes the whole conversation).
   */
  continuationIds(history: readonly ChatMessage[], answerIds: readonly number[], next: ChatMessage): number[] | undefined {
    const beforeAnswer = this.render(history.slice(0, -1), true);
    const withAnswer = this.render(history, false);
    const full = this.render([...history, next], true);
    if (!withAnswer.startsWith(beforeAnswer) || !full.startsWith(withAnswer)) return undefined;
    const answerPart = withAnswer.slice(beforeAnswer.length);
    const produced = this.decodeVerbatim(answerIds);
    if (!answerPart.startsWith(produced)) return undefined;
    return this.encode(answerPart.slice(produced.length) + full.slice(withAnswer.length));
  }
}
