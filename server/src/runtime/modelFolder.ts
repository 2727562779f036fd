/**
 * The model folder contract (Hugging Face ONNX layout, as onnx-community / Xenova exports use):
 *
 *   config.json generation_config.json preprocessor_config.json [processor_config.json]
 *   tokenizer.json tokenizer_config.json [chat_template.jinja | chat_template.json]
 *   onnx/vision_encoder{SUFFIX}.onnx  onnx/embed_tokens{SUFFIX}.onnx  onnx/decoder_model_merged{SUFFIX}.onnx
 *
 * This module only reads files and names; it never creates sessions. Everything that can be
 * wrong with a folder is reported as LensError(InvalidModelFolder) naming the file and the
 * likely cause.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { Dtype, DtypeSpec, ModelFileRole } from './types';

export const FILE_ROLES: readonly ModelFileRole[] = ['vision_encoder', 'embed_tokens', 'decoder_model_merged'];

/** Precision name -> file-name suffix. */
export const DTYPE_SUFFIX: Readonly<Record<string, string>> = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  quantized: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
};

/** Preference when the user names no precision: full precision first, then smaller files. */
const DEFAULT_PREFERENCE = ['fp32', 'fp16', 'q8', 'q4', 'q4f16', 'int8', 'uint8', 'bnb4'];

/** Precisions present for one role, by looking at `onnx/` file names. */
export function listVariants(dir: string): Record<ModelFileRole, Dtype[]> {
  const onnxDir = path.join(dir, 'onnx');
  let names: string[] = [];
  try {
    names = fs.readdirSync(onnxDir);
  } catch {
    names = [];
  }
  const out = {} as Record<ModelFileRole, Dtype[]>;
  for (const role of FILE_ROLES) {
    out[role] = [];
    for (const [dtype, suffix] of Object.entries(DTYPE_SUFFIX)) {
      if (dtype === 'q8') continue; // alias of 'quantized'
      if (names.includes(`${role}${suffix}.onnx`)) out[role].push(dtype);
    }
  }
  return out;
}

/** Resolves the user's precision choice to one existing file per role. */
export function resolveModelFiles(dir: string, spec: DtypeSpec | undefined): Record<ModelFileRole, { path: string; dtype: Dtype }> {
  const variants = listVariants(dir);
  const out = {} as Record<ModelFileRole, { path: string; dtype: Dtype }>;
  for (const role of FILE_ROLES) {
    const wanted = typeof spec === 'string' ? spec : spec?.[role];
    const have = variants[role];
    if (have.length === 0) {
      throw new LensError(
        LensErrorCode.InvalidModelFolder,
        `${path.join(dir, 'onnx', role + '.onnx')} not found (nor any precision variant of it): ` +
          `the folder is not a LLaVA-family ONNX export in the Hugging Face layout, or the download is incomplete.`,
      );
    }
    let dtype: Dtype;
    if (wanted !== undefined) {
      if (!(wanted in DTYPE_SUFFIX)) {
        throw new LensError(
          LensErrorCode.InvalidParams,
          `unknown precision '${wanted}' for ${role}: use one of ${Object.keys(DTYPE_SUFFIX).join(', ')}.`,
        );
      }
      const canonical = wanted === 'q8' ? 'quantized' : wanted;
      if (!have.includes(canonical)) {
        throw new LensError(
          LensErrorCode.InvalidModelFolder,
          `onnx/${role}${DTYPE_SUFFIX[wanted]}.onnx not found: this folder has ${role} in ${have.join(', ')}; pick one of those.`,
        );
      }
      dtype = canonical;
    } else {
      dtype = DEFAULT_PREFERENCE.map((d) => (d === 'q8' ? 'quantized' : d)).find((d) => have.includes(d)) ?? have[0];
    }
    out[role] = { path: path.join(dir, 'onnx', `${role}${DTYPE_SUFFIX[dtype]}.onnx`), dtype };
  }
  return out;
}

/** Reads and parses a JSON file of the folder; `required` ones throw a clear error when missing. */
export function readJson(dir: string, name: string, required: true): any;
export function readJson(dir: string, name: string, required: false): any | undefined;
export function readJson(dir: string, name: string, required: boolean): any | undefined {
  const file = path.join(dir, name);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (!required) return undefined;
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : `cannot be read (${(e as Error).message})`;
    throw new LensError(LensErrorCode.InvalidModelFolder, `${file} ${why}: a model folder needs ${name}; is this the model's top folder?`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LensError(LensErrorCode.InvalidModelFolder, `${file} is not valid JSON (${(e as Error).message}): the file is corrupt or truncated; download it again.`);
  }
}

/**
 * Finds the chat template, in the order the original processors look for it:
 * chat_template.jinja > chat_template.json > processor_config.json > tokenizer_config.json.
 */
export function findChatTemplate(dir: string, tokenizerConfig: any): { source: string; template: string } {
  const jinja = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(jinja)) return { source: 'chat_template.jinja', template: fs.readFileSync(jinja, 'utf8') };
  const ctJson = readJson(dir, 'chat_template.json', false);
  if (typeof ctJson?.chat_template === 'string') return { source: 'chat_template.json', template: ctJson.chat_template };
  const proc = readJson(dir, 'processor_config.json', false);
  if (typeof proc?.chat_template === 'string') return { source: 'processor_config.json', template: proc.chat_template };
  const tc = tokenizerConfig?.chat_template;
  if (typeof tc === 'string') return { source: 'tokenizer_config.json', template: tc };
  if (Array.isArray(tc)) {
    const def = tc.find((t: any) => t?.name === 'default') ?? tc[0];
    if (typeof def?.template === 'string') return { source: 'tokenizer_config.json', template: def.template };
  }
  throw new LensError(
    LensErrorCode.InvalidModelFolder,
    `no chat template in ${dir} (looked in chat_template.jinja, chat_template.json, processor_config.json, tokenizer_config.json): ` +
      `add the model's template as chat_template.jinja.`,
  );
}
