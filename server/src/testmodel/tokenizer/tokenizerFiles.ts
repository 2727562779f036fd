/**
 * tokenizer.json, tokenizer_config.json and special_tokens_map.json for the test models.
 *
 * Id layout:
 *  - llava (LLaMA convention): `<unk>` 0, `<s>` 1, `</s>` 2, the 256 byte tokens, the merge
 *    results, then `<image>` and `<pad>` (LLaVA-HF appends those two after the base vocab).
 *  - onevision (Qwen2 convention): the byte tokens and merges from 0, then `<|endoftext|>`,
 *    `<|im_start|>`, `<|im_end|>` (eos), `<image>`.
 */
import type { Family } from '../presets';
import { SPLIT_PATTERN, trainBpe } from './bpe';
import { CHATML_TEMPLATE, VICUNA_TEMPLATE } from './chatTemplates';
import { CORPUS } from './corpus';

export interface SpecialIds {
  image: number;
  eos: number;
  /** `bos_token_id` for config.json: `<s>`, or `<|endoftext|>` as Qwen2 configs have it (the template adds no BOS there). */
  bos: number;
  pad: number;
  unk: number | null;
  /** All added (special) tokens: content -> id. */
  added: Record<string, number>;
}

export interface TokenizerBundle {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  specialTokensMap: Record<string, unknown>;
  /** Number of token ids (highest id + 1). */
  size: number;
  ids: SpecialIds;
  chatTemplate: string;
  numMerges: number;
}

const LLAVA_SPECIALS = { unk: '<unk>', bos: '<s>', eos: '</s>', image: '<image>', pad: '<pad>' };
const ONEVISION_SPECIALS = { endoftext: '<|endoftext|>', imStart: '<|im_start|>', imEnd: '<|im_end|>', image: '<image>' };

function addedToken(id: number, content: string) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

function tokenDict(content: string) {
  return { content, lstrip: false, normalized: false, rstrip: false, single_word: false };
}

const trained = new Map<number, ReturnType<typeof trainBpe>>();

/** Builds the tokenizer files for `family` (deterministic; training is cached per merge count). */
export function buildTokenizer(family: Family, numMerges: number, modelMaxLength: number): TokenizerBundle {
  let bpe = trained.get(numMerges);
  if (!bpe) {
    bpe = trainBpe(CORPUS, numMerges);
    trained.set(numMerges, bpe);
  }
  const vocab: Record<string, number> = {};
  const addedList: { id: number; content: string }[] = [];
  let next = 0;
  if (family === 'llava') {
    for (const s of [LLAVA_SPECIALS.unk, LLAVA_SPECIALS.bos, LLAVA_SPECIALS.eos]) {
      vocab[s] = next;
      addedList.push({ id: next++, content: s });
    }
  }
  for (const t of bpe.tokens) vocab[t] = next++;
  const tail = family === 'llava' ? [LLAVA_SPECIALS.image, LLAVA_SPECIALS.pad] : Object.values(ONEVISION_SPECIALS);
  for (const s of tail) addedList.push({ id: next++, content: s });
  const added = Object.fromEntries(addedList.map((a) => [a.content, a.id]));

  const ids: SpecialIds =
    family === 'llava'
      ? { image: added['<image>'], eos: added['</s>'], bos: added['<s>'], pad: added['<pad>'], unk: added['<unk>'], added }
      : { image: added['<image>'], eos: added['<|im_end|>'], bos: added['<|endoftext|>'], pad: added['<|endoftext|>'], unk: null, added };

  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedList.map((a) => addedToken(a.id, a.content)),
    normalizer: family === 'onevision' ? { type: 'NFC' } : null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: SPLIT_PATTERN }, behavior: 'Isolated', invert: false }, byteLevel],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: bpe.merges.map(([a, b]) => [a, b]),
    },
  };

  const chatTemplate = family === 'llava' ? VICUNA_TEMPLATE : CHATML_TEMPLATE;
  const addedTokensDecoder = Object.fromEntries(
    addedList.map((a) => [String(a.id), { ...tokenDict(a.content), special: true }]),
  );
  const common = {
    add_bos_token: false,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    chat_template: chatTemplate,
  };
  const tokenizerConfig =
    family === 'llava'
      ? {
          ...common,
          bos_token: LLAVA_SPECIALS.bos,
          eos_token: LLAVA_SPECIALS.eos,
          pad_token: LLAVA_SPECIALS.pad,
          unk_token: LLAVA_SPECIALS.unk,
          padding_side: 'left',
          tokenizer_class: 'PreTrainedTokenizerFast',
        }
      : {
          ...common,
          additional_special_tokens: [ONEVISION_SPECIALS.imStart, ONEVISION_SPECIALS.imEnd, ONEVISION_SPECIALS.image],
          bos_token: null,
          eos_token: ONEVISION_SPECIALS.imEnd,
          pad_token: ONEVISION_SPECIALS.endoftext,
          unk_token: null,
          errors: 'replace',
          split_special_tokens: false,
          padding_side: 'left',
          tokenizer_class: 'Qwen2Tokenizer',
        };
  const specialTokensMap =
    family === 'llava'
      ? {
          bos_token: tokenDict(LLAVA_SPECIALS.bos),
          eos_token: tokenDict(LLAVA_SPECIALS.eos),
          pad_token: tokenDict(LLAVA_SPECIALS.pad),
          unk_token: tokenDict(LLAVA_SPECIALS.unk),
          additional_special_tokens: [tokenDict(LLAVA_SPECIALS.image)],
        }
      : {
          additional_special_tokens: [ONEVISION_SPECIALS.imStart, ONEVISION_SPECIALS.imEnd, ONEVISION_SPECIALS.image].map(tokenDict),
          eos_token: tokenDict(ONEVISION_SPECIALS.imEnd),
          pad_token: tokenDict(ONEVISION_SPECIALS.endoftext),
        };

  return { tokenizerJson, tokenizerConfig, specialTokensMap, size: next, ids, chatTemplate, numMerges: bpe.merges.length };
}
