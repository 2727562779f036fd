/** `llava-lens make-test-model <dir> --preset P ...`: a thin front to server/src/testmodel. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { UsageError, numberOption, parse } from './args';
import { makeTestModel, VARIANTS, type PresetName } from '../testmodel';
import { PRESETS } from './help';

export interface MakeTestModelSettings {
  dir: string;
  preset: string;
  config?: Record<string, unknown>;
  seed?: number;
  externalData: boolean;
  variants?: string[];
}

async function readConfig(value: string): Promise<Record<string, unknown>> {
  let text = value;
  if (value.startsWith('@')) {
    const file = path.resolve(value.slice(1));
    text = await fs.readFile(file, 'utf8').catch(() => {
      throw new UsageError(`--config: cannot read ${file}.`);
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--config is not valid JSON (${e instanceof Error ? e.message : String(e)}).`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError('--config must be a JSON object, e.g. {"text":{"layers":2}}.');
  }
  return parsed as Record<string, unknown>;
}

export async function parseMakeTestModelArgs(argv: string[]): Promise<MakeTestModelSettings> {
  const { values, positionals } = parse(
    argv,
    {
      preset: { type: 'string' },
      config: { type: 'string' },
      seed: { type: 'string' },
      'external-data': { type: 'boolean' },
      variants: { type: 'string' },
    },
  );
  if (positionals.length !== 1) throw new UsageError('make-test-model needs exactly one folder: make-test-model <dir> --preset P.');
  if (values.preset === undefined) throw new UsageError(`make-test-model needs --preset (${PRESETS.join(', ')}).`);
  if (!(PRESETS as readonly string[]).includes(values.preset)) {
    throw new UsageError(`unknown preset "${values.preset}"; use one of ${PRESETS.join(', ')}.`);
  }
  const settings: MakeTestModelSettings = { dir: path.resolve(positionals[0]), preset: values.preset, externalData: values['external-data'] ?? false };
  if (values.config !== undefined) settings.config = await readConfig(values.config);
  const seed = numberOption('seed', values.seed, true);
  if (seed !== undefined) settings.seed = seed;
  if (values.variants !== undefined) {
    const list = values.variants.split(',').map((v) => v.trim()).filter((v) => v !== '');
    const bad = list.find((v) => !(VARIANTS as readonly string[]).includes(v));
    if (bad !== undefined) throw new UsageError(`--variants: the generator writes ${VARIANTS.join(', ')} variants, not "${bad}".`);
    settings.variants = list;
  }
  return settings;
}

export async function runMakeTestModel(s: MakeTestModelSettings): Promise<number> {
  const { files } = await makeTestModel(s.dir, {
    preset: s.preset as PresetName,
    ...(s.config ? { config: s.config } : {}),
    ...(s.seed !== undefined ? { seed: s.seed } : {}),
    externalData: s.externalData,
    ...(s.variants ? { variants: s.variants } : {}),
    onProgress: (message) => process.stderr.write(`${message}\n`),
  });
  process.stderr.write(`Wrote the ${s.preset} test model (random weights; answers carry no meaning) to ${s.dir}:\n`);
  for (const f of files) process.stdout.write(`${f}\n`);
  return 0;
}
