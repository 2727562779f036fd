/**
 * The LLaVA Lens daemon's protocol handlers for one client connection (a session), over the
 * shared `DaemonCore` (core.ts: engine, fair queue, status, held conversations).
 *
 * - `startDaemon(connection, engineFactory)`: a private daemon — one core, one session (stdio,
 *   node-ipc). `shutdown` cancels everything and unloads the model; the engine is made with this
 *   client's initialization options.
 * - `attachSession(core, connection, {client, kind})`: one more client of a shared daemon
 *   (`serve --ws`). `shutdown`/`exit`/disconnect end only this client's work; engine-wide options
 *   are the operator's; paths follow the client kind's rules (access.ts); limits apply per client.
 *
 * Nothing here ends the process: `exit` disposes the connection and resolves `exited`. Every
 * request is checked where it enters (`check*` from common/protocol.ts) and every failure leaves
 * as a `ResponseError` (errors.ts); the daemon keeps serving after any of them.
 */
import { fileURLToPath } from 'node:url';
import { CancellationToken, ErrorCodes, ResponseError } from 'vscode-jsonrpc';
import type { Connection } from 'vscode-languageserver/node';
import { LensError, LensErrorCode } from '../../../common/errors';
import {
  AgentStepNotification,
  AnswerDeltaNotification,
  AskRequest,
  DownloadModelRequest,
  ListCatalogueRequest,
  checkDownloadModelParams,
  ListToolsRequest,
  QueuePositionNotification,
  RunToolRequest,
  checkRunToolParams,
  DEFAULT_IMAGES_PER_PROMPT,
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
  CatalogueEntry,
  DownloadModelParams,
  DownloadModelResult,
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
import { describeTuning } from '../../../common/tuning';
import type { AskResult, AskStage, LoadOptions } from '../runtime/types';
import { RateLimiter, resolveClientPath, resolveImageParam, type AccessContext, type ClientKind } from './access';
import { checkAgainstModel, toAskRequest, ZERO_TIMINGS } from './askInputs';
import { DaemonCore, type CoreOptions, type EngineFactory } from './core';
import { invalidParams, toResponseError } from './errors';
import { CATALOGUE, defaultModelsDir, formatProgressLine, pullModel } from '../hub';
import { scanModelRoots } from './modelScan';
import { productVersion } from './version';

export type { EngineFactory } from './core';

export interface DaemonOptions {
  /** Reported in `serverInfo`; defaults to package.json's version. */
  version?: string;
  /** Execution providers this build offers (for `lensCapabilities`); default `['cpu']`. */
  executionProviders?: () => string[];
  /** Extra log sink (the process entry passes stderr). Logs also go to the client as `window/logMessage`. */
  log?: (line: string) => void;
}

export interface DaemonHandle {
  /** Resolves once the `exit` notification has been handled (or the connection closed) and the connection disposed. */
  readonly exited: Promise<void>;
  /** The transport closed without `exit` (a WebSocket client went away): cancel its work, keep its conversations a while. */
  disconnected(): void;
}

/** A private daemon: one client, which owns the engine (stdio, node-ipc, in-process tests). */
export function startDaemon(connection: Connection, engineFactory: EngineFactory, opts: DaemonOptions & { core?: CoreOptions } = {}): DaemonHandle {
  const core = new DaemonCore(engineFactory, { ...opts.core, ...(opts.log ? { log: (level, line) => opts.log!(`[${level}] ${line}`) } : {}) });
  return attachSession(core, connection, { ...opts, client: 'local', kind: 'private' });
}

export interface SessionOptions extends DaemonOptions {
  /** Unique per connection (fair queue, held conversations). */
  client: string;
  kind: ClientKind;
}

/** Registers all handlers for one client on `connection` and starts listening. */
export function attachSession(core: DaemonCore, connection: Connection, opts: SessionOptions): DaemonHandle {
  const version = opts.version ?? productVersion();
  const client = opts.client;
  const log = (level: 'error' | 'warn' | 'info', line: string) => {
    opts.log?.(`[${level}] ${line}`);
    if (closed) return;
    try {
      connection.console[level](line);
    } catch {
      // the client went away meanwhile
    }
  };
  const logError = (line: string) => log('error', line);

  let init: LensInitializationOptions = {};
  let initializeReceived = false;
  let initialized = false;
  let shuttingDown = false;
  let closed = false;
  const access: AccessContext = { kind: opts.kind, workspaceFolders: [], modelRoots: core.modelRoots, limits: core.limits };
  const rate = new RateLimiter(core.limits.requestsPerMinute);
  core.clientConnected(client);

  let lastStatusKey = '';
  const sendStatus = () => {
    if (!initialized || closed) return;
    const status = core.status(true);
    const { rssBytes: _rss, ...rest } = status;
    const key = JSON.stringify(rest);
    if (key === lastStatusKey) return;
    lastStatusKey = key;
    void connection.sendNotification(StatusNotification, status).catch(() => undefined);
  };
  const unsubscribe = core.onChange(sendStatus);

  /**
   * Wraps a handler: shutdown gate, rate limit, parameter check, error boundary. Registered by
   * method name so that missing or positional params reach `check` (and get a product-coded
   * answer) instead of vscode-jsonrpc's generic reply.
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
          throw new ResponseError(ErrorCodes.InvalidRequest, `${type.method}: the daemon is shutting down for this client; reconnect or start a new one.`);
        }
        if (core.shared && !initializeReceived) {
          throw new ResponseError(ErrorCodes.ServerNotInitialized, `${type.method}: send initialize first (a shared daemon serves initialized connections only).`);
        }
        rate.check(type.method);
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
    if (initializeReceived) throw new ResponseError(ErrorCodes.InvalidRequest, 'initialize: already initialized on this connection; open a new connection to start over.');
    const problem = checkInitializationOptions(params.initializationOptions) ?? checkFolders(params.workspaceFolders, params.rootUri);
    if (problem) throw new ResponseError(LensErrorCode.InvalidParams, problem);
    init = (params.initializationOptions as LensInitializationOptions | undefined) ?? {};
    const folders = (params.workspaceFolders ?? []).map((f) => f.uri);
    if (folders.length === 0 && params.rootUri) folders.push(params.rootUri);
    access.workspaceFolders = folders.filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u));
    initializeReceived = true;
    if (core.shared) {
      const operatorOnly = (['maxHistoryTurns', 'queueLimit'] as const).filter((k) => init[k] !== undefined);
      if (operatorOnly.length) {
        log('warn', `initializationOptions ${operatorOnly.join(', ')}: this is a shared daemon, so the operator's settings (serve flags) apply, not this client's.`);
      }
      if (init.maxImageMegapixels !== undefined && init.maxImageMegapixels * 1e6 < core.limits.maxImagePixels) {
        access.limits = { ...access.limits, maxImagePixels: Math.round(init.maxImageMegapixels * 1e6) };
      }
    } else {
      core.configure(init);
      if (init.queueLimit !== undefined) core.queue.setLimit(init.queueLimit);
      if (init.maxImageMegapixels !== undefined) access.limits = { ...access.limits, maxImagePixels: Math.round(init.maxImageMegapixels * 1e6) };
    }
    const model = core.engine().info() ?? null;
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
    sendStatus();
    // A shared daemon loads `model` only when none is loaded (the operator's model otherwise stays).
    if (init.model && !(core.shared && core.info())) {
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
    if (core.shared) {
      core.queue.cancelClient(client);
      return;
    }
    core.queue.cancelAll();
    await core.queue.idle();
    await core.engineCreated?.unload().catch((e: unknown) => logError(`unload during shutdown failed: ${String(e)}`));
  });

  let markExited: () => void = () => {};
  const exited = new Promise<void>((resolve) => (markExited = resolve));
  const end = () => {
    if (closed) return;
    closed = true;
    unsubscribe();
    if (core.shared) core.clientGone(client);
    else {
      core.queue.cancelAll();
      core.dispose();
    }
    markExited();
  };
  connection.onExit(() => {
    end();
    connection.dispose();
  });

  // --- models ----------------------------------------------------------------------------------

  async function loadModel(params: LoadModelParams, token: CancellationToken | undefined): Promise<ModelInfo> {
    const path = await resolveClientPath(access, params.path, 'model', 'lens/loadModel "path"');
    const options: LoadOptions = { device: params.device ?? init.device ?? 'auto' };
    const dtype = params.dtype ?? init.dtype;
    if (dtype !== undefined) options.dtype = dtype;
    // lens/loadModel's own value, else this client's initialize option, else the operator's (core).
    const graphTuning = params.graphTuning ?? init.graphTuning;
    if (graphTuning !== undefined) options.graphTuning = graphTuning;
    options.maxImagePixels = core.shared ? core.limits.maxImagePixels : access.limits.maxImagePixels;
    options.maxImageBytes = core.limits.maxImageBytes;
    const progressToken = params.workDoneToken;
    const progress = (value: WorkDoneProgressValue) => {
      if (progressToken !== undefined) void connection.sendProgress(WorkDoneProgress, progressToken, value).catch(() => undefined);
    };
    progress({ kind: 'begin', title: 'Loading model', message: path, percentage: 0, cancellable: true });
    return core.loadModel(
      path,
      options,
      client,
      (p) => {
        if ('done' in p) progress({ kind: 'end', message: p.done });
        else progress({ kind: 'report', message: p.message, percentage: Math.round(p.percent) });
      },
      token,
    ).then(
      (info) => {
        if (info.tuning || (options.graphTuning ?? core.graphTuning) === false) log('info', `${info.name}: graph tuning ${describeTuning(info.tuning)}`);
        return info;
      },
      (e: unknown) => {
        if (e instanceof LensError && e.code === LensErrorCode.Cancelled) progress({ kind: 'end', message: 'Cancelled' });
        throw e;
      },
    );
  }

  handle<LoadModelParams, ModelInfo>(LoadModelRequest, checkLoadModelParams, (params, token) => loadModel(params, token));

  handle<unknown, null>(UnloadModelRequest, checkNoParams(UnloadModelRequest.method), (_params, token) =>
    core.queue.enqueue(
      {
        label: 'lens/unloadModel',
        client,
        bypassLimit: true,
        run: async () => {
          await core.engine().unload();
          core.lastLoadError = undefined;
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
    // A private daemon also lists what lens/downloadModel (and llava-lens pull) put in the models folder.
    const wanted = params?.roots ?? (core.shared ? core.modelRoots : [...(init.modelRoots ?? []), defaultModelsDir()]);
    const roots: string[] = [];
    for (const r of wanted) roots.push(await resolveClientPath(access, r, 'model', 'lens/listModels "roots"'));
    const result = await scanModelRoots(roots);
    for (const s of result.skippedRoots) log('warn', `lens/listModels: skipped ${s.root} (${s.reason})`);
    return { models: result.models };
  });

  handle<unknown, { models: CatalogueEntry[] }>(ListCatalogueRequest, checkNoParams(ListCatalogueRequest.method), async () => ({ models: [...CATALOGUE] }));

  handle<DownloadModelParams, DownloadModelResult>(DownloadModelRequest, checkDownloadModelParams, async (params, token) => {
    if (core.shared) {
      throw new LensError(LensErrorCode.PathNotAllowed, "lens/downloadModel: a shared daemon's models are its operator's: ask them to run `llava-lens pull` on the daemon's machine, then pick it with lens/listModels.");
    }
    const progressToken = params.workDoneToken;
    const progress = (value: WorkDoneProgressValue) => {
      if (progressToken !== undefined) void connection.sendProgress(WorkDoneProgress, progressToken, value).catch(() => undefined);
    };
    const abort = new AbortController();
    const sub = token.onCancellationRequested(() => abort.abort());
    progress({ kind: 'begin', title: `Downloading ${params.repo}`, percentage: 0, cancellable: true });
    try {
      const r = await pullModel({
        repo: params.repo,
        ...(params.revision !== undefined ? { revision: params.revision } : {}),
        ...(params.dtype !== undefined ? { dtype: params.dtype } : {}),
        signal: abort.signal,
        onProgress: (p) =>
          progress({ kind: 'report', message: formatProgressLine(p), ...(p.bytesTotal > 0 ? { percentage: Math.floor((100 * p.bytesDone) / p.bytesTotal) } : {}) }),
      });
      progress({ kind: 'end', message: `Downloaded ${params.repo} to ${r.path}` });
      log('info', `lens/downloadModel: ${params.repo}@${r.commit} in ${r.path} (${r.downloadedBytes} bytes fetched)`);
      return { path: r.path, repo: r.repo, revision: r.revision, commit: r.commit, bytes: r.bytes, downloadedBytes: r.downloadedBytes };
    } catch (e) {
      progress({ kind: 'end', message: `Failed: ${e instanceof Error ? e.message : String(e)}` });
      throw e;
    } finally {
      sub.dispose();
    }
  });

  // --- asking ----------------------------------------------------------------------------------

  handle<AskParams, AskResult>(AskRequest, checkAskParams, async (params, token) => {
    const req = await toAskRequest(params, access, core.info());
    if (core.shared) req.owner = client;
    const { streamId } = params;
    const cancelledAnswer = (): AskResult => {
      const info = core.info();
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
    const result = await core.queue.enqueue(
      {
        label: 'lens/ask',
        client,
        ...(streamId !== undefined
          ? { onPosition: (ahead: number) => void connection.sendNotification(QueuePositionNotification, { streamId, ahead }).catch(() => undefined) }
          : {}),
        run: async (signal) => {
          if (signal.aborted) return cancelledAnswer();
          const engine = core.engine();
          const info = engine.info();
          if (!info) {
            throw new LensError(
              LensErrorCode.ModelNotLoaded,
              core.lastLoadError
                ? `No model is loaded: the last load failed (${core.lastLoadError}). Fix that and send lens/loadModel again.`
                : 'No model is loaded. Send lens/loadModel {path} first, or start the daemon with initializationOptions.model.',
            );
          }
          checkAgainstModel(req, info, params.maxTokens !== undefined);
          if (req.agent && !engine.runTool) {
            throw invalidParams('lens/ask: this daemon runs no tools (its engine has none); ask without "tools"/"explain".');
          }
          let index = 0;
          const onStage = (stage: AskStage) => {
            core.askStage = stage;
            core.changed();
          };
          return engine
            .ask(
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
            )
            .finally(() => {
              core.askStage = undefined;
            });
        },
        whenCancelledWhileQueued: cancelledAnswer,
      },
      token,
    );
    core.hold(result.conversationId, client);
    if (closed) log('info', `lens/ask of ${client}, which left, ended: ${result.finishReason} after ${result.tokenIds.length} token(s)`);
    return result;
  });

  // --- tools -----------------------------------------------------------------------------------

  handle<unknown, ListToolsResult>(ListToolsRequest, checkNoParams(ListToolsRequest.method), async () => ({ tools: core.engine().listTools?.() ?? [] }));

  handle<RunToolParams, ToolRunResult>(RunToolRequest, checkRunToolParams, async (params, token) => {
    const image = await resolveImageParam(access, params.image, 'image');
    const cancelled = (): ToolRunResult => ({ summary: '{"error": "cancelled"}', data: { error: 'cancelled' }, error: 'cancelled', status: 'cancelled', ms: 0 });
    return core.queue.enqueue(
      {
        label: 'lens/runTool',
        client,
        run: async (signal) => {
          const e = core.engine();
          if (!e.runTool) throw invalidParams('lens/runTool: this daemon runs no tools (its engine has none).');
          return e.runTool(params.name, params.args ?? {}, image, signal, params.timeoutMs);
        },
        whenCancelledWhileQueued: cancelled,
      },
      token,
    );
  });

  handle<ForgetConversationParams, null>(ForgetConversationRequest, checkForgetConversationParams, (params, token) =>
    core.forget(params.conversationId, client, token),
  );

  connection.listen();
  return {
    exited,
    disconnected: () => {
      end();
      connection.dispose();
    },
  };
}

/** Why `workspaceFolders` / `rootUri` of `initialize` are unusable, or undefined. */
function checkFolders(folders: unknown, rootUri: unknown): string | undefined {
  const uris: Array<[string, unknown]> = [];
  if (folders !== undefined && folders !== null) {
    if (!Array.isArray(folders)) return 'initialize: "workspaceFolders" must be null or a list of {uri, name}.';
    folders.forEach((f: unknown, i) => uris.push([`workspaceFolders[${i}].uri`, typeof f === 'object' && f !== null ? (f as { uri?: unknown }).uri : f]));
  }
  if (rootUri !== undefined && rootUri !== null) uris.push(['rootUri', rootUri]);
  for (const [field, uri] of uris) {
    if (typeof uri !== 'string') return `initialize: "${field}" must be a string URI.`;
    if (!uri.startsWith('file:')) continue; // other schemes are ignored (no paths from them)
    try {
      fileURLToPath(uri);
    } catch {
      return `initialize: "${field}" (${uri.length > 80 ? uri.slice(0, 80) + '…' : uri}) is not a file URI on this machine: send file:///absolute/path.`;
    }
  }
  return undefined;
}
