/**
 * The LLaVA Lens daemon: registers the protocol's handlers on an LSP connection and drives one
 * `Engine` through a FIFO queue. It never ends the process: `exit` disposes the connection and
 * resolves `DaemonHandle.exited`; the process entry decides what happens next.
 *
 * Every request is checked where it enters (`check*` from common/protocol.ts) and every failure
 * leaves as a `ResponseError` (see errors.ts); the daemon keeps serving after any of them.
 */
import { fileURLToPath } from 'node:url';
import { CancellationToken, ErrorCodes, ResponseError } from 'vscode-jsonrpc';
import type { Connection } from 'vscode-languageserver/node';
import { LensError, LensErrorCode } from '../../../common/errors';
import {
  AgentStepNotification,
  AnswerDeltaNotification,
  AskRequest,
  ListToolsRequest,
  RunToolRequest,
  checkRunToolParams,
  DEFAULT_IMAGES_PER_PROMPT,
  DEFAULT_QUEUE_LIMIT,
  ForgetConversationRequest,
  ListModelsRequest,
  LoadModelRequest,
    SERVER_NAME,
  StatusNotification,
  UnloadModelRequest,
  WorkDoneProgress,
  checkAskParams,
  checkForgetConversationParams,
  checkInitializationOptions,
  checkListModelsParams,
  checkLoadModelParams,
  checkNoParams,
} from '../../../common/protocol';
import type {
  AskParams,
  ListToolsResult,
  RunToolParams,
  ToolRunResult,
  ForgetConversationParams,
  ListModelsParams,
  ListModelsResult,
  LensInitializationOptions,
  LensInitializeResult,
  LoadModelParams,
  ModelInfo,
  WorkDoneProgressValue,
} from '../../../common/protocol';
import type { AskResult, AskStage, Engine, LoadOptions } from '../runtime/types';
import { checkAgainstModel, resolveImage, resolveUserPath, toAskRequest, ZERO_TIMINGS } from './askInputs';
import { invalidParams, toResponseError } from './errors';
import { scanModelRoots } from './modelScan';
import { RequestQueue } from './queue';
import { StatusReporter } from './status';
import { productVersion } from './version';

export interface DaemonOptions {
  /** Reported in `serverInfo`; defaults to package.json's version. */
  version?: string;
  /** Execution providers this build offers (for `lensCapabilities`); default `['cpu']`. */
  executionProviders?: () => string[];
  /** Extra log sink (the process entry passes stderr). Logs also go to the client as `window/logMessage`. */
  log?: (line: string) => void;
}

export interface DaemonHandle {
  /** Resolves once the `exit` notification has been handled and the connection disposed. */
  readonly exited: Promise<void>;
}

/**
 * Makes the engine. Called once, when `initialize` arrives (or at the first request that needs
 * the engine, if a client skips `initialize`), with the client's initialization options so that
 * engine-wide settings such as `maxHistoryTurns` can reach the constructor.
 */
export type EngineFactory = (init: LensInitializationOptions) => Engine;

/** Registers all handlers on `connection` and starts listening. */
export function startDaemon(connection: Connection, engineFactory: EngineFactory, opts: DaemonOptions = {}): DaemonHandle {
  let engineInstance: Engine | undefined;
  const engine = (): Engine => (engineInstance ??= engineFactory(init));
  const version = opts.version ?? productVersion();
  const log = (level: 'error' | 'warn' | 'info', line: string) => {
    opts.log?.(`[${level}] ${line}`);
    connection.console[level](line);
  };
  const logError = (line: string) => log('error', line);

  let init: LensInitializationOptions = {};
  let workspaceRoot: string | undefined;
  let initialized = false;
  let shuttingDown = false;
  let loading: { percent: number; message: string } | undefined;
  let askStage: AskStage | undefined;
  let lastLoadError: string | undefined;

  const status = new StatusReporter(
    () => ({
      initialized,
      running: queue.runningLabel,
      stage: askStage,
      queueLength: queue.waitingCount,
      loading,
      lastLoadError,
      model: engineInstance?.info(),
    }),
    (s) => void connection.sendNotification(StatusNotification, s).catch(() => undefined),
  );
  const queue = new RequestQueue(DEFAULT_QUEUE_LIMIT, () => status.update());

  /**
   * Wraps a handler: shutdown gate, parameter check, error boundary. Registered by method name so
   * that missing or positional params reach `check` (and get a product-coded answer) instead of
   * vscode-jsonrpc's generic reply.
   */
  function handle<P, R>(
    type: { readonly method: string },
    check: (v: unknown) => string | undefined,
    fn: (params: P, token: CancellationToken) => Promise<R>,
  ): void {
    connection.onRequest(type.method, async (...args: unknown[]) => {
      const last = args[args.length - 1];
      const token = CancellationToken.is(last) ? last : CancellationToken.None;
      const params = CancellationToken.is(last) ? args.slice(0, -1) : args;
      try {
        if (shuttingDown) {
          throw new ResponseError(ErrorCodes.InvalidRequest, `${type.method}: the daemon is shutting down; start a new one.`);
        }
        if (params.length > 1) throw invalidParams(`${type.method}: params must be one object, not a list of ${params.length} values.`);
        const problem = check(params[0]);
        if (problem) throw invalidParams(problem);
        return await fn(params[0] as P, token);
      } catch (e) {
        throw toResponseError(e, type.method, logError);
      }
    });
  }

  // --- lifecycle -------------------------------------------------------------------------------

  connection.onInitialize((params): LensInitializeResult => {
    const problem = checkInitializationOptions(params.initializationOptions);
    if (problem) throw new ResponseError(LensErrorCode.InvalidParams, problem);
    init = (params.initializationOptions as LensInitializationOptions | undefined) ?? {};
    queue.setLimit(init.queueLimit ?? DEFAULT_QUEUE_LIMIT);
    const folder = params.workspaceFolders?.[0]?.uri ?? params.rootUri ?? undefined;
    workspaceRoot = folder?.startsWith('file:') ? fileURLToPath(folder) : undefined;
    const model = engine().info() ?? null;
    return {
      capabilities: {},
      serverInfo: { name: SERVER_NAME, version },
      lensCapabilities: {
        modelLoaded: model,
        imagesPerPrompt: model?.imagesPerPrompt ?? DEFAULT_IMAGES_PER_PROMPT,
        toolCallFormat: model?.toolCallFormat ?? 'none',
        executionProviders: opts.executionProviders?.() ?? ['cpu'],
        device: model?.device ?? null,
        version,
        streaming: 'lens/answerDelta',
      },
    };
  });

  connection.onInitialized(() => {
    initialized = true;
    status.enable();
    if (init.model) {
      const path = init.model;
      log('info', `Loading ${path} (initializationOptions.model)`);
      loadModel({ path }, undefined).then(
        (info) => log('info', `Loaded ${info.name} on ${info.device}`),
        (e: unknown) => log('error', `Could not load initializationOptions.model ${path}: ${e instanceof Error ? e.message : String(e)}`),
      );
    }
  });

  connection.onShutdown(async () => {
    shuttingDown = true;
    queue.cancelAll();
    await queue.idle();
    await engineInstance?.unload().catch((e: unknown) => logError(`unload during shutdown failed: ${String(e)}`));
  });

  let markExited: () => void = () => {};
  const exited = new Promise<void>((resolve) => (markExited = resolve));
  connection.onExit(() => {
    queue.cancelAll();
    connection.dispose();
    markExited();
  });

  // --- models ----------------------------------------------------------------------------------

  function loadModel(params: LoadModelParams, token: CancellationToken | undefined): Promise<ModelInfo> {
    const path = resolveUserPath(params.path, workspaceRoot);
    const options: LoadOptions = { device: params.device ?? init.device ?? 'auto' };
    const dtype = params.dtype ?? init.dtype;
    if (dtype !== undefined) options.dtype = dtype;
    if (init.maxImageMegapixels !== undefined) options.maxImagePixels = Math.round(init.maxImageMegapixels * 1e6);
    const progressToken = params.workDoneToken;
    const progress = (value: WorkDoneProgressValue) => {
      if (progressToken !== undefined) void connection.sendProgress(WorkDoneProgress, progressToken, value).catch(() => undefined);
    };

    return queue.enqueue(
      {
        label: 'lens/loadModel',
        run: async (signal) => {
          loading = { percent: 0, message: `Loading ${path}` };
          progress({ kind: 'begin', title: 'Loading model', message: path, percentage: 0, cancellable: true });
          status.update();
          try {
            const info = await engine().load(
              path,
              options,
              (p) => {
                loading = { percent: p.percent, message: p.message };
                progress({ kind: 'report', message: p.message, percentage: Math.round(p.percent) });
                status.update();
              },
              signal,
            );
            lastLoadError = undefined;
            progress({ kind: 'end', message: `Loaded ${info.name} on ${info.device}` });
            return info;
          } catch (e) {
            if (signal.aborted) {
              progress({ kind: 'end', message: 'Cancelled' });
              throw new LensError(LensErrorCode.Cancelled, `lens/loadModel ${path} was cancelled; send lens/loadModel again to load a model.`);
            }
            lastLoadError = e instanceof Error ? e.message : String(e);
            progress({ kind: 'end', message: `Failed: ${lastLoadError}` });
            throw e;
          } finally {
            loading = undefined;
          }
        },
        whenCancelledWhileQueued: () => {
          throw new LensError(LensErrorCode.Cancelled, `lens/loadModel ${path} was cancelled before it started; the loaded model (if any) is unchanged.`);
        },
      },
      token,
    );
  }

  handle<LoadModelParams, ModelInfo>(LoadModelRequest, checkLoadModelParams, (params, token) => loadModel(params, token));

  handle<unknown, null>(UnloadModelRequest, checkNoParams(UnloadModelRequest.method), (_params, token) =>
    queue.enqueue(
      {
        label: 'lens/unloadModel',
        bypassLimit: true,
        run: async () => {
          await engine().unload();
          lastLoadError = undefined;
          return null;
        },
        whenCancelledWhileQueued: () => {
          throw new LensError(LensErrorCode.Cancelled, 'lens/unloadModel was cancelled before it started; the model is still loaded.');
        },
      },
      token,
    ),
  );

  handle<ListModelsParams | undefined, ListModelsResult>(ListModelsRequest, checkListModelsParams, async (params) => {
    const roots = (params?.roots ?? init.modelRoots ?? []).map((r) => resolveUserPath(r, workspaceRoot));
    const result = await scanModelRoots(roots);
    for (const s of result.skippedRoots) log('warn', `lens/listModels: skipped ${s.root} (${s.reason})`);
    return { models: result.models };
  });

  // --- asking ----------------------------------------------------------------------------------

  handle<AskParams, AskResult>(AskRequest, checkAskParams, async (params, token) => {
    const req = await toAskRequest(params, workspaceRoot);
    const { streamId } = params;
    const cancelledAnswer = (): AskResult => {
      const info = engineInstance?.info();
      return {
        text: '',
        tokenIds: [],
        conversationId: params.conversationId ?? '',
        finishReason: 'cancelled',
        timings: { ...ZERO_TIMINGS },
        device: info?.device ?? '',
        model: info?.name ?? '',
      };
    };
    return queue.enqueue(
      {
        label: 'lens/ask',
        run: async (signal) => {
          if (signal.aborted) return cancelledAnswer();
          const info = engine().info();
          if (!info) {
            throw new LensError(
              LensErrorCode.ModelNotLoaded,
              lastLoadError
                ? `No model is loaded: the last load failed (${lastLoadError}). Fix that and send lens/loadModel again.`
                : 'No model is loaded. Send lens/loadModel {path} first, or start the daemon with initializationOptions.model.',
            );
          }
          checkAgainstModel(req, info, params.maxTokens !== undefined);
          if (req.agent && !engine().runTool) {
            throw invalidParams('lens/ask: this daemon runs no tools (its engine has none); ask without "tools"/"explain".');
          }
          let index = 0;
          const onStage = (stage: AskStage) => {
            askStage = stage;
            status.update();
          };
          return engine().ask(
            req,
            (d) => {
              if (streamId === undefined) return;
              const delta = { streamId, text: d.text, tokenId: d.tokenId, index: index++, ...(d.turn !== undefined ? { turn: d.turn } : {}) };
              const withConversation = params.conversationId ? { ...delta, conversationId: params.conversationId } : delta;
              void connection.sendNotification(AnswerDeltaNotification, withConversation).catch(() => undefined);
            },
            signal,
            onStage,
            (step) => {
              if (streamId !== undefined) void connection.sendNotification(AgentStepNotification, { ...step, streamId }).catch(() => undefined);
            },
          ).finally(() => {
            askStage = undefined;
          });
        },
        whenCancelledWhileQueued: cancelledAnswer,
      },
      token,
    );
  });

  // --- tools -----------------------------------------------------------------------------------

  handle<unknown, ListToolsResult>(ListToolsRequest, checkNoParams(ListToolsRequest.method), async () => ({ tools: engine().listTools?.() ?? [] }));

  handle<RunToolParams, ToolRunResult>(RunToolRequest, checkRunToolParams, async (params, token) => {
    const image = await resolveImage(params.image, 0, workspaceRoot);
    const cancelled = (): ToolRunResult => ({ summary: '{"error": "cancelled"}', data: { error: 'cancelled' }, error: 'cancelled', status: 'cancelled', ms: 0 });
    return queue.enqueue(
      {
        label: 'lens/runTool',
        run: async (signal) => {
          const e = engine();
          if (!e.runTool) throw invalidParams('lens/runTool: this daemon runs no tools (its engine has none).');
          return e.runTool(params.name, params.args ?? {}, image, signal, params.timeoutMs);
        },
        whenCancelledWhileQueued: cancelled,
      },
      token,
    );
  });

  handle<ForgetConversationParams, null>(ForgetConversationRequest, checkForgetConversationParams, (params, token) =>
    queue.enqueue(
      {
        label: 'lens/forgetConversation',
        bypassLimit: true,
        run: async () => {
          engine().forget(params.conversationId);
          return null;
        },
        whenCancelledWhileQueued: () => {
          throw new LensError(LensErrorCode.Cancelled, 'lens/forgetConversation was cancelled before it ran; the conversation is kept.');
        },
      },
      token,
    ),
  );

  connection.listen();
  return { exited };
}
