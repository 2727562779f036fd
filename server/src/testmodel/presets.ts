/**
 * Presets, `--config` overrides and their validation.
 *
 * A spec is plain data: which family (LLaVA-1.5 = CLIP + LLaMA, or OneVision = SigLIP + Qwen2),
 * the text and vision dimensions, the number of BPE merges, and the default decoder precision.
 */

export type PresetName = 'tiny-llava' | 'tiny-onevision' | 'bench';
export type Family = 'llava' | 'onevision';

export interface TextDims {
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  numLayers: number;
  intermediateSize: number;
  /** Embedding / LM-head rows; 0 = exactly the tokenizer's size. Must be >= the tokenizer's size. */
  vocabSize: number;
  ropeTheta: number;
  maxPositions: number;
  rmsNormEps: number;
}

export interface VisionDims {
  imageSize: number;
  patchSize: number;
  hiddenSize: number;
  numHeads: number;
  numLayers: number;
  intermediateSize: number;
  layerNormEps: number;
  /** Index into the encoder's hidden states (HF `vision_feature_layer`): -1 last layer, -2 second to last, 0 embeddings. */
  featureLayer: number;
  /** OneVision only: anyres grid pinpoints [height, width] in pixels, multiples of imageSize. */
  gridPinpoints: [number, number][];
}

export interface TokenizerDims {
  /** BPE merges learned from the built-in corpus. */
  numMerges: number;
}

export interface ModelSpec {
  preset: PresetName;
  family: Family;
  text: TextDims;
  vision: VisionDims;
  tokenizer: TokenizerDims;
  /** Precision of the default `decoder_model_merged.onnx` (bench ships a 4-bit decoder). */
  defaultDecoderPrecision: 'fp32' | 'q4';
}

/** Pinpoints for 1..maxTiles tiles per side, each `tile` pixels (height, width order). */
export function gridPinpoints(tile: number, maxTiles: number): [number, number][] {
  const out: [number, number][] = [];
  for (let h = 1; h <= maxTiles; h++) for (let w = 1; w <= maxTiles; w++) out.push([h * tile, w * tile]);
  return out;
}

const PRESETS: Record<PresetName, ModelSpec> = {
  'tiny-llava': {
    preset: 'tiny-llava',
    family: 'llava',
    text: {
      hiddenSize: 64,
      numHeads: 4,
      numKvHeads: 4,
      numLayers: 2,
      intermediateSize: 128,
      vocabSize: 0,
      ropeTheta: 10000,
      maxPositions: 1024,
      rmsNormEps: 1e-5,
    },
    vision: {
      imageSize: 56,
      patchSize: 14,
      hiddenSize: 32,
      numHeads: 2,
      numLayers: 3,
      intermediateSize: 128,
      layerNormEps: 1e-5,
      featureLayer: -2,
      gridPinpoints: [],
    },
    tokenizer: { numMerges: 350 },
    defaultDecoderPrecision: 'fp32',
  },
  'tiny-onevision': {
    preset: 'tiny-onevision',
    family: 'onevision',
    text: {
      hiddenSize: 64,
      numHeads: 4,
      numKvHeads: 2,
      numLayers: 2,
      intermediateSize: 128,
      vocabSize: 0,
      ropeTheta: 1000000,
      maxPositions: 2048,
      rmsNormEps: 1e-6,
    },
    vision: {
      imageSize: 42,
      patchSize: 14,
      hiddenSize: 32,
      numHeads: 2,
      numLayers: 2,
      intermediateSize: 128,
      layerNormEps: 1e-6,
      featureLayer: -1,
      gridPinpoints: gridPinpoints(42, 3),
    },
    tokenizer: { numMerges: 350 },
    defaultDecoderPrecision: 'fp32',
  },
  bench: {
    preset: 'bench',
    family: 'onevision',
    text: {
      hiddenSize: 896,
      numHeads: 14,
      numKvHeads: 2,
      numLayers: 24,
      intermediateSize: 4864,
      vocabSize: 151936,
      ropeTheta: 1000000,
      maxPositions: 32768,
      rmsNormEps: 1e-6,
    },
    vision: {
      imageSize: 384,
      patchSize: 14,
      hiddenSize: 1152,
      numHeads: 16,
      numLayers: 27,
      intermediateSize: 4304,
      layerNormEps: 1e-6,
      featureLayer: -1,
      gridPinpoints: gridPinpoints(384, 6),
    },
    tokenizer: { numMerges: 400 },
    defaultDecoderPrecision: 'q4',
  },
};

export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

type Section = 'text' | 'vision' | 'tokenizer';
const SECTIONS: Section[] = ['text', 'vision', 'tokenizer'];

function validKeys(): string[] {
  const base = PRESETS['tiny-llava'];
  return SECTIONS.flatMap((s) => Object.keys(base[s]).map((k) => `${s}.${k}`));
}

function fail(key: string, msg: string): never {
  throw new Error(`testmodel config: ${key}: ${msg}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkPinpoints(key: string, v: unknown, imageSize: number): [number, number][] {
  if (!Array.isArray(v) || v.length === 0) fail(key, 'expected a non-empty array of [height, width] pairs');
  return v.map((p, i) => {
    if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => Number.isInteger(x) && x > 0)) {
      fail(`${key}[${i}]`, 'expected [height, width] positive integers');
    }
    const [h, w] = p as [number, number];
    if (h % imageSize !== 0 || w % imageSize !== 0) fail(`${key}[${i}]`, `[${h}, ${w}] is not a multiple of vision.imageSize ${imageSize}`);
    return [h, w];
  });
}

/**
 * The spec for `preset` with `overrides` deep-merged in and validated. Unknown keys and
 * inconsistent dimensions throw an Error naming the key (and, for unknown keys, the valid ones).
 */
export function resolveSpec(preset: PresetName, overrides: Record<string, unknown> = {}): ModelSpec {
  const base = PRESETS[preset];
  if (!base) throw new Error(`testmodel: unknown preset "${preset}"; valid presets: ${PRESET_NAMES.join(', ')}`);
  const spec: ModelSpec = structuredClone(base);
  if (!isRecord(overrides)) throw new Error('testmodel config: expected a JSON object');

  for (const [section, value] of Object.entries(overrides)) {
    if (!(SECTIONS as string[]).includes(section)) {
      throw new Error(`testmodel config: unknown key "${section}"; valid keys: ${validKeys().join(', ')}`);
    }
    if (!isRecord(value)) fail(section, 'expected an object');
    const target = spec[section as Section] as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(value)) {
      const key = `${section}.${k}`;
      if (!(k in target)) throw new Error(`testmodel config: unknown key "${key}"; valid keys: ${validKeys().join(', ')}`);
      if (key === 'vision.gridPinpoints') {
        if (spec.family !== 'onevision') fail(key, 'only applies to OneVision presets (anyres)');
        target[k] = v; // checked below, once imageSize is final
        continue;
      }
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(key, `expected a number, got ${JSON.stringify(v)}`);
      target[k] = v;
    }
  }
  validate(spec, flatten(overrides));
  return spec;
}

function flatten(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [s, v] of Object.entries(o)) if (isRecord(v)) for (const [k, x] of Object.entries(v)) out[`${s}.${k}`] = x;
  return out;
}

function validate(spec: ModelSpec, given: Record<string, unknown>): void {
  const pinpointsGiven = 'vision.gridPinpoints' in given;
  const sizeOverridden = 'vision.imageSize' in given || 'vision.patchSize' in given;
  const { text: t, vision: v } = spec;
  const posInt = (key: string, x: number) => {
    if (!Number.isInteger(x) || x <= 0) fail(key, `expected a positive integer, got ${x}`);
  };
  for (const k of ['hiddenSize', 'numHeads', 'numKvHeads', 'numLayers', 'intermediateSize', 'maxPositions'] as const) posInt(`text.${k}`, t[k]);
  for (const k of ['imageSize', 'patchSize', 'hiddenSize', 'numHeads', 'numLayers', 'intermediateSize'] as const) posInt(`vision.${k}`, v[k]);
  const m = spec.tokenizer.numMerges;
  if (!Number.isInteger(m) || m < 0 || m > 5000) fail('tokenizer.numMerges', `expected an integer in [0, 5000], got ${m}`);
  if (!Number.isInteger(t.vocabSize) || t.vocabSize < 0) fail('text.vocabSize', 'expected a non-negative integer (0 = tokenizer size)');
  for (const [key, x] of [['text.ropeTheta', t.ropeTheta], ['text.rmsNormEps', t.rmsNormEps], ['vision.layerNormEps', v.layerNormEps]] as const) {
    if (!(x > 0)) fail(key, `expected a positive number, got ${x}`);
  }
  if (t.hiddenSize % t.numHeads !== 0) fail('text.hiddenSize', `${t.hiddenSize} is not divisible by text.numHeads ${t.numHeads}`);
  if (((t.hiddenSize / t.numHeads) & 1) !== 0) fail('text.hiddenSize', `head dim ${t.hiddenSize / t.numHeads} must be even (rotary embeddings)`);
  if (t.numHeads % t.numKvHeads !== 0) fail('text.numKvHeads', `text.numHeads ${t.numHeads} is not divisible by ${t.numKvHeads}`);
  if (v.hiddenSize % v.numHeads !== 0) fail('vision.hiddenSize', `${v.hiddenSize} is not divisible by vision.numHeads ${v.numHeads}`);
  // The patch Conv floors (SigLIP-so400m: 384 px / 14 = 27 patches per side, as in the bench preset);
  // overridden sizes must divide exactly.
  if (v.imageSize < v.patchSize || (sizeOverridden && v.imageSize % v.patchSize !== 0)) {
    fail('vision.imageSize', `${v.imageSize} is not a multiple of vision.patchSize ${v.patchSize}`);
  }
  if (!Number.isInteger(v.featureLayer) || v.featureLayer < -(v.numLayers + 1) || v.featureLayer > v.numLayers) {
    fail('vision.featureLayer', `expected an integer in [${-(v.numLayers + 1)}, ${v.numLayers}]`);
  }
  if (spec.family === 'onevision') {
    if (!pinpointsGiven && v.imageSize !== PRESETS[spec.preset].vision.imageSize) {
      v.gridPinpoints = gridPinpoints(v.imageSize, 3);
    }
    v.gridPinpoints = checkPinpoints('vision.gridPinpoints', v.gridPinpoints, v.imageSize);
  }
}

/** Number of encoder layers actually computed for `featureLayer` (hidden_states has numLayers + 1 entries). */
export function computedVisionLayers(v: VisionDims): number {
  return v.featureLayer < 0 ? v.numLayers + 1 + v.featureLayer : v.featureLayer;
}

/** Feature rows per image (per view for OneVision). */
export function visionRows(spec: ModelSpec): number {
  const g = Math.floor(spec.vision.imageSize / spec.vision.patchSize);
  return g * g;
}

/** Help text for `make-test-model --help`. */
export function describePresets(): string {
  const lines: string[] = ['Presets:'];
  const about: Record<PresetName, string> = {
    'tiny-llava': 'LLaVA-1.5 layout (CLIP vision tower, LLaMA decoder with use_cache_branch), a few MB',
    'tiny-onevision': 'LLaVA-OneVision layout (SigLIP, Qwen2 with GQA and num_logits_to_keep, anyres image_newline), a few MB',
    bench: 'llava-onevision-qwen2-0.5b dimensions, 4-bit decoder, ~2.5 GB; for benchmarks only',
  };
  for (const name of PRESET_NAMES) {
    const s = PRESETS[name];
    lines.push(
      `  ${name.padEnd(15)} ${about[name]}`,
      `  ${''.padEnd(15)} text H${s.text.hiddenSize} heads ${s.text.numHeads}/${s.text.numKvHeads} layers ${s.text.numLayers}; ` +
        `vision ${s.vision.imageSize}px/${s.vision.patchSize} H${s.vision.hiddenSize} layers ${s.vision.numLayers}`,
    );
  }
  lines.push('', 'Override keys for --config (JSON, e.g. {"text": {"hiddenSize": 96, "numLayers": 3}}):');
  for (const s of SECTIONS) lines.push(`  ${s}: ${Object.keys(PRESETS['tiny-llava'][s]).join(', ')}`);
  lines.push('  (text.vocabSize 0 = tokenizer size; vision.gridPinpoints: OneVision only, [[h, w], ...] multiples of imageSize)');
  return lines.join('\n');
}
