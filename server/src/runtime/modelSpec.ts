/**
 * ModelSpec: everything per-model, read once at load from the folder's JSON files. Generic code
 * branches on these fields, never on model names.
 */
import * as path from 'node:path';
import { LensError, LensErrorCode } from '../../../common/errors';
import { findChatTemplate, readJson, resolveModelFiles } from './modelFolder';
import { parsePreprocessSpec, type PreprocessSpec } from './preprocess';
import type { Dtype, DtypeSpec, ModelFileRole } from './types';

export interface TextSpec {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Context length in tokens. */
  maxPositions: number;
}

export interface ModelSpec {
  dir: string;
  name: string;
  modelType: string;
  isTestModel: boolean;
  files: Record<ModelFileRole, { path: string; dtype: Dtype }>;
  imageToken: string;
  imageTokenId: number;
  /** From config.json / generation_config.json (the template's turn separator is added at load). */
  eosTokenIds: number[];
  text: TextSpec;
  vision: { imageSize: number; patchSize: number };
  preprocess: PreprocessSpec;
  chatTemplate: { source: string; template: string };
  tokenizerJson: object;
  tokenizerConfig: Record<string, unknown>;
  toolCallFormat: 'llava-plus' | 'chatml' | 'none';
}

function num(v: unknown, what: string, file: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new LensError(LensErrorCode.InvalidModelFolder, `${file} lacks a numeric ${what}: is this a LLaVA-family config?`);
  }
  return v;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

export function readModelSpec(dir: string, dtype?: DtypeSpec): ModelSpec {
  const abs = path.resolve(dir);
  const config = readJson(abs, 'config.json', true);
  const gen = readJson(abs, 'generation_config.json', false) ?? {};
  const pre = readJson(abs, 'preprocessor_config.json', true);
  const proc = readJson(abs, 'processor_config.json', false) ?? {};
  const tokenizerJson = readJson(abs, 'tokenizer.json', true);
  const tokenizerConfig = readJson(abs, 'tokenizer_config.json', false) ?? {};
  const files = resolveModelFiles(abs, dtype);

  const tc = config.text_config ?? config;
  const vc = config.vision_config ?? {};
  const hiddenSize = num(tc.hidden_size, 'text_config.hidden_size', 'config.json');
  const numHeads = num(tc.num_attention_heads, 'text_config.num_attention_heads', 'config.json');
  const text: TextSpec = {
    hiddenSize,
    numHeads,
    numLayers: num(tc.num_hidden_layers, 'text_config.num_hidden_layers', 'config.json'),
    numKvHeads: typeof tc.num_key_value_heads === 'number' ? tc.num_key_value_heads : numHeads,
    headDim: typeof tc.head_dim === 'number' ? tc.head_dim : hiddenSize / numHeads,
    vocabSize: num(tc.vocab_size ?? config.vocab_size, 'text_config.vocab_size', 'config.json'),
    maxPositions: tc.max_position_embeddings ?? config.max_position_embeddings ?? tokenizerConfig.model_max_length ?? 2048,
  };

  const imageTokenId = config.image_token_index ?? config.image_token_id;
  if (typeof imageTokenId !== 'number') {
    throw new LensError(LensErrorCode.InvalidModelFolder, `config.json has no image_token_index / image_token_id: not a LLaVA-family model config.`);
  }
  const vocab = (tokenizerJson as { model?: { vocab?: Record<string, number> }; added_tokens?: Array<{ id: number; content: string }> });
  const added = vocab.added_tokens ?? [];
  const tokenForId = added.find((t) => t.id === imageTokenId)?.content ?? Object.entries(vocab.model?.vocab ?? {}).find(([, id]) => id === imageTokenId)?.[0];
  const imageToken: string | undefined = typeof proc.image_token === 'string' ? proc.image_token : tokenForId;
  if (tokenForId === undefined || imageToken !== tokenForId) {
    throw new LensError(
      LensErrorCode.InvalidModelFolder,
      `image token id ${imageTokenId} (config.json image_token_index) is not in the vocabulary of tokenizer.json` +
        (imageToken && tokenForId !== imageToken ? ` as '${imageToken}'` : '') +
        `: tokenizer and config come from different models?`,
    );
  }
  if (imageTokenId >= text.vocabSize) {
    throw new LensError(LensErrorCode.InvalidModelFolder, `image token id ${imageTokenId} is outside the model's vocabulary (${text.vocabSize}): config.json is inconsistent.`);
  }

  const preprocess = parsePreprocessSpec(pre, config);
  const patchSize = num(vc.patch_size ?? proc.patch_size, 'vision_config.patch_size', 'config.json');
  const imageSize = vc.image_size ?? preprocess.imageSize.height;
  const chatTemplate = findChatTemplate(abs, tokenizerConfig);
  const t = chatTemplate.template;
  const toolCallFormat = /actions🚀/.test(t) ? 'llava-plus' : /<tool_call>|<\|im_start\|>/.test(t) ? 'chatml' : 'none';

  return {
    dir: abs,
    name: path.basename(abs),
    modelType: String(config.model_type ?? 'unknown'),
    isTestModel: config.llava_lens_test_model === true,
    files,
    imageToken,
    imageTokenId,
    eosTokenIds: [...new Set([...idList(gen.eos_token_id), ...idList(config.eos_token_id), ...idList(tc.eos_token_id)])],
    text,
    vision: { imageSize, patchSize },
    preprocess,
    chatTemplate,
    tokenizerJson,
    tokenizerConfig,
    toolCallFormat,
  };
}
