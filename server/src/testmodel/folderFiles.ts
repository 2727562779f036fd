/**
 * The JSON files and README of a generated model folder, mirroring the Hugging Face layout of
 * llava-hf / llava-onevision exports.
 */
import type { ModelSpec, PresetName } from './presets';
import { visionRows } from './presets';
import type { TokenizerBundle } from './tokenizer/tokenizerFiles';

const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

export interface FolderContext {
  spec: ModelSpec;
  tok: TokenizerBundle;
  vocabRows: number;
  /** ONNX files (names under onnx/) stored with external data. */
  externalFiles: string[];
}

export function configJson(c: FolderContext): Record<string, unknown> {
  const { spec, tok } = c;
  const t = spec.text;
  const v = spec.vision;
  const llava = spec.family === 'llava';
  const textConfig = {
    model_type: llava ? 'llama' : 'qwen2',
    hidden_size: t.hiddenSize,
    num_attention_heads: t.numHeads,
    num_key_value_heads: t.numKvHeads,
    head_dim: t.hiddenSize / t.numHeads,
    num_hidden_layers: t.numLayers,
    intermediate_size: t.intermediateSize,
    hidden_act: 'silu',
    vocab_size: c.vocabRows,
    max_position_embeddings: t.maxPositions,
    rms_norm_eps: t.rmsNormEps,
    rope_theta: t.ropeTheta,
    attention_bias: !llava,
    bos_token_id: tok.ids.bos,
    eos_token_id: tok.ids.eos,
    pad_token_id: tok.ids.pad,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
  };
  const visionConfig = {
    model_type: llava ? 'clip_vision_model' : 'siglip_vision_model',
    hidden_size: v.hiddenSize,
    image_size: v.imageSize,
    patch_size: v.patchSize,
    num_channels: 3,
    num_attention_heads: v.numHeads,
    num_hidden_layers: v.numLayers,
    intermediate_size: v.intermediateSize,
    hidden_act: llava ? 'quick_gelu' : 'gelu_pytorch_tanh',
    layer_norm_eps: v.layerNormEps,
  };
  const config: Record<string, unknown> = {
    architectures: [llava ? 'LlavaForConditionalGeneration' : 'LlavaOnevisionForConditionalGeneration'],
    model_type: llava ? 'llava' : 'llava_onevision',
    llava_lens_test_model: true,
    image_token_index: tok.ids.image,
    projector_hidden_act: 'gelu',
    vision_feature_layer: v.featureLayer,
    vision_feature_select_strategy: llava ? 'default' : 'full',
    image_seq_length: visionRows(spec),
  };
  if (!llava) {
    config.image_grid_pinpoints = v.gridPinpoints;
    config.vision_aspect_ratio = 'anyres_max_9';
    config.use_image_newline_parameter = true;
  }
  Object.assign(config, {
    bos_token_id: tok.ids.bos,
    eos_token_id: tok.ids.eos,
    pad_token_id: tok.ids.pad,
    tie_word_embeddings: false,
    text_config: textConfig,
    vision_config: visionConfig,
    torch_dtype: 'float32',
  });
  if (c.externalFiles.length > 0) {
    config['transformers.js_config'] = {
      use_external_data_format: Object.fromEntries(c.externalFiles.map((f) => [f, 1])),
    };
  }
  return config;
}

export function generationConfigJson(c: FolderContext): Record<string, unknown> {
  const ids = c.tok.ids;
  const eos = c.spec.family === 'llava' ? ids.eos : [ids.eos, ids.added['<|endoftext|>']];
  return { bos_token_id: ids.bos, eos_token_id: eos, pad_token_id: ids.pad };
}

export function preprocessorConfigJson(c: FolderContext): Record<string, unknown> {
  const v = c.spec.vision;
  const common = {
    do_resize: true,
    resample: 3,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    do_convert_rgb: true,
  };
  if (c.spec.family === 'llava') {
    return {
      image_processor_type: 'CLIPImageProcessor',
      processor_class: 'LlavaProcessor',
      ...common,
      size: { shortest_edge: v.imageSize },
      do_center_crop: true,
      crop_size: { height: v.imageSize, width: v.imageSize },
      image_mean: CLIP_MEAN,
      image_std: CLIP_STD,
      // Pad to a square with the mean colour before resizing (LLaVA-1.5 `image_aspect_ratio: pad`).
      do_pad: true,
    };
  }
  return {
    image_processor_type: 'LlavaOnevisionImageProcessor',
    processor_class: 'LlavaOnevisionProcessor',
    ...common,
    size: { height: v.imageSize, width: v.imageSize },
    do_center_crop: false,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
    image_grid_pinpoints: v.gridPinpoints,
    // anyres: pad each view to its pinpoint (centred, black).
    do_pad: true,
  };
}

export function processorConfigJson(c: FolderContext): Record<string, unknown> {
  if (c.spec.family === 'llava') {
    return {
      processor_class: 'LlavaProcessor',
      image_token: '<image>',
      patch_size: c.spec.vision.patchSize,
      num_additional_image_tokens: 0,
      vision_feature_select_strategy: 'default',
    };
  }
  return {
    processor_class: 'LlavaOnevisionProcessor',
    image_token: '<image>',
    num_image_tokens: visionRows(c.spec),
    patch_size: c.spec.vision.patchSize,
    num_additional_image_tokens: 0,
    vision_aspect_ratio: 'anyres_max_9',
    vision_feature_select_strategy: 'full',
  };
}

export function readme(c: FolderContext, preset: PresetName, seed: number, overrides: Record<string, unknown>, onnxFiles: string[]): string {
  const { spec, tok } = c;
  return [
    `# Generated LLaVA Lens test model (${preset})`,
    '',
    'This folder was generated by `llava-lens make-test-model`. Its weights are deterministic',
    'pseudo-random numbers: the model runs like a real one but **its answers carry no meaning**.',
    'Use it to test loading, preprocessing, prompting, the KV cache and generation, never for quality.',
    '',
    `- preset: \`${preset}\``,
    `- seed: ${seed}`,
    `- config overrides: \`${JSON.stringify(overrides)}\``,
    `- family: ${spec.family === 'llava' ? 'LLaVA-1.5 (CLIP + LLaMA)' : 'LLaVA-OneVision (SigLIP + Qwen2)'}`,
    `- text: hidden ${spec.text.hiddenSize}, heads ${spec.text.numHeads}/${spec.text.numKvHeads} KV, ` +
      `${spec.text.numLayers} layers, vocab ${c.vocabRows} (tokenizer ${tok.size}, ${tok.numMerges} BPE merges)`,
    `- vision: ${spec.vision.imageSize}px, patch ${spec.vision.patchSize}, hidden ${spec.vision.hiddenSize}, ` +
      `${spec.vision.numLayers} layers, ${visionRows(spec)} feature rows per ${spec.family === 'llava' ? 'image' : 'view'}`,
    `- image token: \`<image>\` = ${tok.ids.image}; eos = ${tok.ids.eos}`,
    '',
    'ONNX files:',
    ...onnxFiles.map((f) => `- \`${f}\``),
    '',
  ].join('\n');
}
