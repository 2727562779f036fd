/** Argument parsing helpers shared by the CLI commands. Usage problems throw `UsageError` (exit 2). */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEVICES, DTYPES, GRAPH_TUNING_PASSES, MODEL_FILE_ROLES, checkAskParams } from '../../../common/protocol';
import type { AskParams, Device, DtypeSpec, GraphTuningPasses, ModelFileRole } from '../../../common/protocol';

/** A command-line mistake: the CLI prints it with a pointer to the command's help and exits with 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** `util.parseArgs` in strict mode, with its errors turned into `UsageError`s. */
export function parse<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** A number option: integer when `integer`, else any finite number. Undefined when absent. */
export function numberOption(name: string, value: string | undefined, integer = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${name} expects ${integer ? 'an integer' : 'a number'}; got "${value}".`);
  }
  return n;
}

/**
 * `--dtype fp16` or `--dtype vision_encoder=fp16,decoder_model_merged=q4`.
 */
export function parseDtype(value: string | undefined): DtypeSpec | undefined {
  if (value === undefined) return undefined;
  if (!value.includes('=')) {
    if (!(DTYPES as readonly string[]).includes(value)) {
      throw new UsageError(`--dtype: unknown precision "${value}"; use one of ${DTYPES.join(', ')}.`);
    }
    return value;
  }
  const spec: Partial<Record<ModelFileRole, string>> = {};
  for (const part of value.split(',')) {
    const [role, dtype, extra] = part.split('=');
    if (extra !== undefined || !role || !dtype) {
      throw new UsageError(`--dtype: "${part}" is not FILE=PRECISION (e.g. vision_encoder=fp16).`);
    }
    if (!(MODEL_FILE_ROLES as readonly string[]).includes(role)) {
      throw new UsageError(`--dtype: "${role}" is not a model file; use ${MODEL_FILE_ROLES.join(', ')}.`);
    }
    if (!(DTYPES as readonly string[]).includes(dtype)) {
      throw new UsageError(`--dtype: unknown precision "${dtype}" for ${role}; use one of ${DTYPES.join(', ')}.`);
    }
    spec[role as ModelFileRole] = dtype;
  }
  return spec;
}

export function parseDevice(value: string | undefined): Device | undefined {
  if (value === undefined) return undefined;
  if (!(DEVICES as readonly string[]).includes(value)) {
    throw new UsageError(`--device: unknown device "${value}"; use one of ${DEVICES.join(', ')}.`);
  }
  return value as Device;
}

/** The `util.parseArgs` options of the load-time graph tuning switches (`ask`, `demo`, `serve`). */
export const GRAPH_TUNING_OPTIONS = {
  'no-graph-tuning': { type: 'boolean' },
  'tuning-off': { type: 'string', multiple: true },
} as const;

/**
 * `--no-graph-tuning` -> `false`; `--tuning-off int8Activations,int8Vision` (repeatable; names as
 * in `GRAPH_TUNING_PASSES`, case, `-` and `_` ignored) -> `{ int8Activations: false, int8Vision:
 * false }`; neither -> undefined (the default: every pass on).
 */
export function parseGraphTuningFlags(values: { 'no-graph-tuning'?: boolean; 'tuning-off'?: string[] }): GraphTuningPasses | false | undefined {
  const off = values['tuning-off'];
  const valid = `valid passes: ${GRAPH_TUNING_PASSES.join(', ')}`;
  if (values['no-graph-tuning']) {
    if (off !== undefined) throw new UsageError('--no-graph-tuning turns every pass off: leave out --tuning-off, or use --tuning-off alone to keep the other passes.');
    return false;
  }
  if (off === undefined) return undefined;
  const key = (n: string) => n.toLowerCase().replace(/[-_]/g, '');
  const passes: GraphTuningPasses = {};
  for (const name of off.flatMap((v) => v.split(',')).map((n) => n.trim())) {
    const pass = GRAPH_TUNING_PASSES.find((p) => key(p) === key(name));
    if (pass === undefined) throw new UsageError(`--tuning-off: ${name === '' ? 'an empty pass name' : `unknown pass "${name}"`}; ${valid}.`);
    passes[pass] = false;
  }
  return passes;
}

/** Checks ask params the way the daemon will, naming the CLI flag instead of the field. */
export function checkAskSettings(params: AskParams): void {
  const problem = checkAskParams(params);
  if (!problem) return;
  const flags: Record<string, string> = {
    maxTokens: '--max-tokens',
    temperature: '--temperature',
    topK: '--top-k',
    topP: '--top-p',
    repetitionPenalty: '--repetition-penalty',
    seed: '--seed',
    prompt: '-q/--question',
  };
  const m = /^lens\/ask: "(\w+)"(.*)$/.exec(problem);
  const flag = m ? flags[m[1]] : undefined;
  throw new UsageError(flag && m ? `${flag}${m[2]}` : problem);
}
