/**
 * `llava-lens ask`: starts the daemon as a child over stdio (through `LensClient`), loads the
 * model (progress on stderr), asks, streams the answer to stdout, then prints timings on stderr.
 * Ctrl-C once cancels the ask (the partial answer is kept), twice quits.
 */
import * as path from 'node:path';
import { CancellationTokenSource } from 'vscode-jsonrpc';
import { randomUUID } from 'node:crypto';
import { LensClient } from '../../../client/src/daemonClient';
import { AgentStepNotification, type AgentStep, type AskParams, type AskResult, type Device, type DtypeSpec, type ModelInfo } from '../../../common/protocol';
import { UsageError, checkAskSettings, numberOption, parse, parseDevice, parseDtype } from './args';
import { TEST_MODEL_NOTICE, chooseModel } from './defaultModel';
import { Progress, formatTimings, formatTimingsTable } from './output';

export interface AskSettings {
  images: string[];
  question: string;
  model?: string;
  device?: Device;
  dtype?: DtypeSpec;
  json: boolean;
  params: Omit<AskParams, 'images' | 'prompt'>;
  /** `demo` prints a timings table instead of a line. */
  timingsTable?: boolean;
}

export function parseAskArgs(argv: string[]): AskSettings {
  const { values, positionals } = parse(
    argv,
    {
      question: { type: 'string', short: 'q' },
      model: { type: 'string' },
      device: { type: 'string' },
      dtype: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'repetition-penalty': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      tools: { type: 'boolean' },
      'max-steps': { type: 'string' },
      explain: { type: 'string' },
    },
  );
  if (positionals.length === 0) throw new UsageError('ask needs at least one image path.');
  if (values.question === undefined) throw new UsageError('ask needs a question: -q "<question>".');
  const params: AskSettings['params'] = {};
  const set = <K extends keyof AskSettings['params']>(k: K, v: AskSettings['params'][K] | undefined) => {
    if (v !== undefined) params[k] = v;
  };
  set('maxTokens', numberOption('max-tokens', values['max-tokens'], true));
  set('temperature', numberOption('temperature', values.temperature));
  set('topK', numberOption('top-k', values['top-k'], true));
  set('topP', numberOption('top-p', values['top-p']));
  set('repetitionPenalty', numberOption('repetition-penalty', values['repetition-penalty']));
  set('seed', numberOption('seed', values.seed, true));
  set('stop', values.stop);
  if (values.tools) params.tools = true;
  set('maxSteps', numberOption('max-steps', values['max-steps'], true));
  if (values.explain !== undefined) {
    if (values.explain !== 'screenshot' && values.explain !== 'diagram') throw new UsageError(`--explain takes "screenshot" or "diagram", not "${values.explain}".`);
    params.explain = values.explain;
  }
  const images = positionals.map((p) => path.resolve(p));
  checkAskSettings({ ...params, prompt: values.question, images: images.map((p) => ({ path: p })) });
  const settings: AskSettings = { images, question: values.question, json: values.json ?? false, params };
  if (values.model !== undefined) settings.model = values.model;
  const device = parseDevice(values.device);
  if (device !== undefined) settings.device = device;
  const dtype = parseDtype(values.dtype);
  if (dtype !== undefined) settings.dtype = dtype;
  return settings;
}

/** Path of the daemon entry next to this file in `out/`. */
export function daemonEntry(): string {
  return path.join(__dirname, '..', 'daemon', 'main.js');
}

function describeModel(m: ModelInfo): string {
  const dtypes = [...new Set(Object.values(m.dtype))].join('/');
  return `${m.name} (${m.modelType}, ${dtypes}) on ${m.device}`;
}

/** Runs one question end to end. Returns the process exit code. */
export async function runAsk(s: AskSettings): Promise<number> {
  const err = (line: string) => process.stderr.write(line + '\n');
  const model = await chooseModel(s.model, err);
  if (model.embedded) err(TEST_MODEL_NOTICE);

  const client = LensClient.spawnStdio({ daemonPath: daemonEntry() });
  const cancel = new CancellationTokenSource();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      err('\nCancelling… (press Ctrl-C again to quit)');
      cancel.cancel();
    } else {
      client.child?.kill();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);

  try {
    await client.initialize({ clientName: 'llava-lens-cli' });
    const progress = new Progress(process.stderr);
    const loadParams = { path: model.path, ...(s.device ? { device: s.device } : {}), ...(s.dtype !== undefined ? { dtype: s.dtype } : {}) };
    const info = await client.loadModel(loadParams, (p) => progress.update(p.percent, p.message), cancel.token).finally(() => progress.done());
    err(`Model: ${describeModel(info)}`);
    if (info.isTestModel && !model.embedded) err('Note: this is a test model with random weights; its answers carry no meaning.');

    let endsWithNewline = true;
    const agent = s.params.tools === true || s.params.explain !== undefined;
    const streamId = `cli-${randomUUID()}`;
    // With the tool loop, each step is traced on stderr as it happens and the final answer is
    // printed at the end (the streamed text of the loop's turns is the model's raw output).
    const steps = client.connection.onNotification(AgentStepNotification, (step) => {
      if (!s.json && step.streamId === streamId) err(formatStep(step));
    });
    const result: AskResult = await client.ask(
      { ...s.params, prompt: s.question, images: s.images.map((p) => ({ path: p })), streamId },
      s.json || agent
        ? () => undefined
        : (d) => {
            if (d.text === '') return;
            process.stdout.write(d.text);
            endsWithNewline = d.text.endsWith('\n');
          },
      cancel.token,
    ).finally(() => steps.dispose());
    if (s.json) {
      const { text, tokenIds, finishReason, timings, device, model: name } = result;
      const out = { text, tokenIds, finishReason, timings, device, model: name, ...(result.steps ? { steps: result.steps } : {}) };
      process.stdout.write(JSON.stringify(out) + '\n');
    } else {
      if (agent) {
        process.stdout.write(result.text);
        endsWithNewline = result.text.endsWith('\n');
      }
      if (!endsWithNewline) process.stdout.write('\n');
      err(s.timingsTable ? formatTimingsTable(result) : formatTimings(result));
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    await client.shutdown();
  }
}

/** One line per tool-loop step: "[step 1] ocr {} -> {...} (812 ms)". */
export function formatStep(step: AgentStep): string {
  const head = `[step ${step.index}]`;
  if (step.final) return `${head} answer${step.error ? ` (${step.error})` : ''} (${Math.round(step.ms)} ms)`;
  const thought = step.thought ? ` ${JSON.stringify(step.thought.length > 80 ? step.thought.slice(0, 79) + '…' : step.thought)}` : '';
  if (!step.tool) return `${head}${thought} ${step.error ?? ''}`.trimEnd();
  const obs = step.error ? `error: ${step.error}` : (step.observation ?? '');
  const short = obs.length > 160 ? obs.slice(0, 159) + '…' : obs;
  return `${head}${thought} ${step.tool} ${JSON.stringify(step.args ?? {})} -> ${short} (${Math.round(step.ms)} ms)`;
}
