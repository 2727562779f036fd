/**
 * `llava-lens ask`: starts the daemon as a child over stdio (through `LensClient`), loads the
 * model (progress on stderr), asks, streams the answer to stdout, then prints timings on stderr.
 * Ctrl-C once cancels the ask (the partial answer is kept), twice quits.
 *
 * With `--connect ws://host:port` it asks a shared daemon instead (connect.ts): images go as
 * bytes, the daemon's loaded model answers unless `--model` names a folder on the daemon's
 * machine to load, and the CLI leaves by closing its connection.
 *
 * With `--backend openai --base-url URL` the spawned daemon asks an OpenAI-compatible server
 * (backend.ts); `--model` then names the server's model.
 */
import * as path from 'node:path';
import { CancellationTokenSource, ResponseError } from 'vscode-jsonrpc';
import { randomUUID } from 'node:crypto';
import { LensErrorCode } from '../../../common/errors';
import { AgentStepNotification, type AgentStep, type AskParams, type AskResult, type Device, type DtypeSpec, type GraphTuningPasses, type ModelInfo } from '../../../common/protocol';
import { describeTuning, tuningApplied } from '../../../common/tuning';
import { GRAPH_TUNING_OPTIONS, UsageError, checkAskSettings, numberOption, parse, parseDevice, parseDtype, parseGraphTuningFlags } from './args';
import { BACKEND_OPTIONS, backendDaemon, parseBackendArgs, type BackendSettings } from './backend';
import { CONNECT_OPTIONS, openDaemon, parseConnect, type ConnectSettings } from './connect';
import { TEST_MODEL_NOTICE, chooseModel } from './defaultModel';
import { Progress, formatTimings, formatTimingsTable } from './output';

export interface AskSettings {
  images: string[];
  question: string;
  model?: string;
  device?: Device;
  dtype?: DtypeSpec;
  /** `--no-graph-tuning` (false) / `--tuning-off P,…`; undefined: every pass on. */
  graphTuning?: GraphTuningPasses | false;
  json: boolean;
  params: Omit<AskParams, 'images' | 'prompt'>;
  /** `demo` prints a timings table instead of a line. */
  timingsTable?: boolean;
  /** Ask a shared daemon over WebSocket instead of spawning one. */
  connect?: ConnectSettings;
  /** Spawn a daemon whose generation runs on an OpenAI-compatible server (`model` = its model id). */
  backend?: BackendSettings;
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
      ...GRAPH_TUNING_OPTIONS,
      ...CONNECT_OPTIONS,
      ...BACKEND_OPTIONS,
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
  const graphTuning = parseGraphTuningFlags(values);
  if (graphTuning !== undefined) settings.graphTuning = graphTuning;
  const connect = parseConnect(values);
  const backend = parseBackendArgs(values);
  if (backend) {
    if (connect) throw new UsageError('--backend and --connect exclude each other: a shared daemon uses its operator\'s backend.');
    if (device !== undefined || dtype !== undefined) throw new UsageError('--device and --dtype apply to the local engine, not to --backend openai.');
    if (graphTuning !== undefined) throw new UsageError('--no-graph-tuning and --tuning-off apply to the local engine, not to --backend openai.');
    settings.backend = backend;
  }
  if (connect) {
    settings.connect = connect;
    if (settings.model === undefined && (device !== undefined || dtype !== undefined)) {
      throw new UsageError('with --connect, --device and --dtype apply to a model load: add --model <folder on the daemon\'s machine>, or leave them out to use the daemon\'s model.');
    }
    if (settings.model === undefined && graphTuning !== undefined) {
      throw new UsageError('with --connect, --no-graph-tuning and --tuning-off apply to a model load: add --model <folder on the daemon\'s machine>, or leave them out to use the daemon\'s model.');
    }
  }
  return settings;
}

export { daemonEntry } from './connect';

function describeModel(m: ModelInfo): string {
  const dtypes = [...new Set(Object.values(m.dtype))].join('/');
  return `${m.name} (${m.modelType}, ${dtypes}) on ${m.device}`;
}

/** Runs one question end to end. Returns the process exit code. */
export async function runAsk(s: AskSettings): Promise<number> {
  const err = (line: string) => process.stderr.write(line + '\n');
  // A shared daemon answers with its own model unless --model names one on its machine.
  const remoteBackend = s.backend ? await backendDaemon(s.backend, s.model) : undefined;
  const model = s.connect || remoteBackend ? (s.connect && s.model !== undefined ? { path: s.model, embedded: false } : undefined) : await chooseModel(s.model, err);
  if (model?.embedded) err(TEST_MODEL_NOTICE);

  const link = await openDaemon(s.connect, remoteBackend ?? {});
  const client = link.client;
  const cancel = new CancellationTokenSource();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      err('\nCancelling… (press Ctrl-C again to quit)');
      cancel.cancel();
    } else {
      link.kill();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);

  try {
    const init = await client.initialize({ clientName: 'llava-lens-cli' });
    let info: ModelInfo | undefined | null;
    if (model) {
      const progress = new Progress(process.stderr);
      const loadParams = { path: model.path, ...(s.device ? { device: s.device } : {}), ...(s.dtype !== undefined ? { dtype: s.dtype } : {}), ...(s.graphTuning !== undefined ? { graphTuning: s.graphTuning } : {}) };
      info = await client.loadModel(loadParams, (p) => progress.update(p.percent, p.message), cancel.token).finally(() => progress.done());
    } else {
      info = init.lensCapabilities.modelLoaded; // null while the daemon still loads: the ask waits for it
    }
    if (info) {
      err(`Model: ${describeModel(info)}${link.remote ? ` at ${s.connect!.url}` : s.backend ? ` at ${s.backend.baseUrl}` : ''}`);
      // Only when it changed what runs (answers may then differ from the files as published) or was asked for.
      if (tuningApplied(info.tuning) || s.graphTuning !== undefined) err(`Graph tuning: ${describeTuning(info.tuning)}`);
      if (info.isTestModel && !model?.embedded) err('Note: this is a test model with random weights; its answers carry no meaning.');
    }
    const images = await link.images(s.images);

    let endsWithNewline = true;
    const agent = s.params.tools === true || s.params.explain !== undefined;
    const streamId = `cli-${randomUUID()}`;
    // With the tool loop, each step is traced on stderr as it happens and the final answer is
    // printed at the end (the streamed text of the loop's turns is the model's raw output).
    const steps = client.connection.onNotification(AgentStepNotification, (step) => {
      if (!s.json && step.streamId === streamId) err(formatStep(step));
    });
    const result: AskResult = await client.ask(
      { ...s.params, prompt: s.question, images, streamId },
      s.json || agent
        ? () => undefined
        : (d) => {
            if (d.text === '') return;
            process.stdout.write(d.text);
            endsWithNewline = d.text.endsWith('\n');
          },
      cancel.token,
    )
      .catch((e: unknown) => {
        if (link.remote && e instanceof ResponseError && e.code === LensErrorCode.ModelNotLoaded) {
          throw new Error(`${e.message} (${link.where} has no model loaded: pass --model <folder on the daemon's machine>, or ask its operator to load one.)`);
        }
        throw e;
      })
      .finally(() => steps.dispose());
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
    await link.close();
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
