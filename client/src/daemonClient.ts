/**
 * `LensClient`: the typed client of the LLaVA Lens daemon, shared by the CLI and the VS Code
 * extension (which wraps it; this file must not import 'vscode').
 *
 * Either spawn a daemon (`LensClient.spawnStdio`), connect to a shared one over WebSocket
 * (`LensClient.connectWebSocket`), or wrap an existing vscode-jsonrpc `MessageConnection`
 * (`new LensClient(connection)`, e.g. over in-memory streams in tests).
 * Methods may be called concurrently; the daemon queues engine work in arrival order.
 *
 * Over WebSocket the daemon is shared with other clients: send images as bytes
 * (`readImageParam` in imageParams.ts; a shared daemon refuses paths from remote clients), and
 * leave with `dispose()`, which closes the socket (`shutdown()` + `exit` are for a daemon the
 * client owns; a shared one keeps serving the others either way).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { CancellationToken, Emitter, type Disposable, type Event, type MessageConnection } from 'vscode-jsonrpc';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type WebSocket from 'ws';
import { daemonNodeFlags, withDaemonEnv } from '../../server/src/daemon/nodeFlags';
import { CloseCode, connectWebSocket, WebSocketMessageReader, WebSocketMessageWriter, type ConnectOptions } from '../../common/wsTransport';
import {
  AgentStepNotification,
  AnswerDeltaNotification,
  AskRequest,
  DownloadModelRequest,
  ExitNotification,
  ForgetConversationRequest,
  InitializedNotification,
  InitializeRequest,
  ListCatalogueRequest,
  ListModelsRequest,
  ListToolsRequest,
  LoadModelRequest,
  RunToolRequest,
  ShutdownRequest,
  StatusNotification,
  UnloadModelRequest,
  WorkDoneProgress,
} from '../../common/protocol';
import type {
  AgentStepParams,
  AnswerDeltaParams,
  AskParams,
  AskResult,
  CatalogueEntry,
  DownloadModelParams,
  DownloadModelResult,
  LensInitializationOptions,
  LensInitializeResult,
  LensStatus,
  ListModelsParams,
  ListModelsResult,
  ListToolsResult,
  LoadModelParams,
  RunToolParams,
  ToolRunResult,
  ModelInfo,
  ProgressToken,
  WorkDoneProgressValue,
  WorkspaceFolder,
} from '../../common/protocol';

export interface SpawnOptions {
  /** Script that accepts `serve --stdio` (the daemon's main.js or bin/llava-lens.js). */
  daemonPath: string;
  /** Arguments after the script; default `['serve', '--stdio']`. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Node executable; default the current one. */
  nodePath?: string;
  cwd?: string;
  /** Receives the daemon's stderr (its log). Default: kept (the last lines go into exit errors). */
  onStderr?: (chunk: string) => void;
}

export interface InitializeOptions {
  /** `initialize.processId`; default this process's id, or null over WebSocket (the daemon may run elsewhere). */
  processId?: number | null;
  initializationOptions?: LensInitializationOptions;
  workspaceFolders?: WorkspaceFolder[];
  clientName?: string;
  clientVersion?: string;
}

/** A progress event, from the LSP work-done progress of `lens/loadModel` or `lens/downloadModel`. */
export interface WorkDoneProgressEvent {
  kind: WorkDoneProgressValue['kind'];
  /** 0..100 when known. */
  percent?: number;
  message?: string;
}

/** A load progress event (`lens/loadModel`). */
export type LoadProgressEvent = WorkDoneProgressEvent;

/**
 * A download progress event (`lens/downloadModel`): `begin`, then `report`s whose `message` is
 * the daemon's progress line (percent, bytes, rate, ETA, file), then `end` (also on failure).
 */
export type DownloadProgressEvent = WorkDoneProgressEvent;

/** Thrown (as the rejection of pending calls) when the spawned daemon exits unexpectedly. */
export class DaemonExitedError extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderrTail: string,
  ) {
    super(
      `The LLaVA Lens daemon exited unexpectedly (${signal ? `signal ${signal}` : `code ${exitCode}`}).` +
        (stderrTail ? ` Its last output:\n${stderrTail}` : ''),
    );
    this.name = 'DaemonExitedError';
  }
}

/**
 * Thrown (as the rejection of pending and later calls) when a WebSocket connection to a daemon
 * closed without `dispose()`: the daemon stopped, the network dropped, or the daemon closed it
 * (the code and reason say why: 1008 policy, 1009 message too big, 4008 reading too slowly…).
 */
export class ConnectionClosedError extends Error {
  constructor(
    readonly url: string,
    readonly closeCode: number,
    readonly reason: string,
  ) {
    super(
      `The connection to the LLaVA Lens daemon at ${url} closed unexpectedly (code ${closeCode}${reason ? `: ${reason}` : closeCode === 1006 ? ', the connection dropped' : ''}). ` +
        'Check that the daemon still runs there, then connect again.',
    );
    this.name = 'ConnectionClosedError';
  }
}

const STDERR_TAIL_CHARS = 4000;

/**
 * The part of a vscode-jsonrpc `MessageConnection` that `LensClient` uses. A `MessageConnection`
 * is one; the VS Code extension adapts vscode-languageclient's `LanguageClient` (which owns the
 * connection and does `initialize` itself) to it (`client/src/daemon/languageClientConnection.ts`).
 */
export type LensConnection = Pick<MessageConnection, 'sendRequest' | 'sendNotification' | 'onNotification' | 'onProgress' | 'listen' | 'dispose'>;

export class LensClient implements Disposable {
  private readonly statusEmitter = new Emitter<LensStatus>();
  private readonly logEmitter = new Emitter<{ type: number; message: string }>();
  private readonly streams = new Map<string, (d: AnswerDeltaParams) => void>();
  private readonly stepStreams = new Map<string, (s: AgentStepParams) => void>();
  private lastStatusValue: LensStatus | undefined;
  private childExit: Promise<void> | undefined;
  private exitError: DaemonExitedError | ConnectionClosedError | undefined;
  private socket: WebSocket | undefined;
  /** The daemon's URL when connected over WebSocket. */
  private urlValue: string | undefined;
  private stderrTail = '';
  private shuttingDown = false;

  /** Fired for every `lens/status` notification. */
  readonly onStatus: Event<LensStatus> = this.statusEmitter.event;
  /** Fired for the daemon's `window/logMessage` notifications (type: 1 error .. 4 log). */
  readonly onLog: Event<{ type: number; message: string }> = this.logEmitter.event;

  /** Wraps a connection that is not listening yet; `child` is the daemon process, if any. */
  constructor(
    readonly connection: LensConnection,
    readonly child?: ChildProcess,
  ) {
    connection.onNotification(StatusNotification, (s) => {
      this.lastStatusValue = s;
      this.statusEmitter.fire(s);
    });
    connection.onNotification(AnswerDeltaNotification, (d) => this.streams.get(d.streamId)?.(d));
    connection.onNotification(AgentStepNotification, (s) => this.stepStreams.get(s.streamId)?.(s));
    connection.onNotification('window/logMessage', (p: { type: number; message: string }) => this.logEmitter.fire(p));
    connection.listen();
  }

  /**
   * Starts `node <DAEMON_NODE_FLAGS> <daemonPath> serve --stdio` as a child process and connects to
   * it. The flags (server/src/daemon/nodeFlags.ts) are on its command line and `DAEMON_ENV` (glibc's
   * malloc tunables, Linux) is in its environment, so the daemon runs with them in that one process;
   * `LLAVA_LENS_NODE_FLAGS=none` in `env` leaves both out.
   */
  static spawnStdio(opts: SpawnOptions): LensClient {
    const env = opts.env ?? process.env;
    const child = spawn(opts.nodePath ?? process.execPath, [...daemonNodeFlags(env), opts.daemonPath, ...(opts.args ?? ['serve', '--stdio'])], {
      env: withDaemonEnv(env),
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group on POSIX: a terminal's Ctrl-C reaches only the client, which decides
      // (cancel, then quit). The daemon still exits when its stdin closes.
      detached: process.platform !== 'win32',
    });
    child.stdin!.on('error', () => undefined); // EPIPE after the daemon died; reported via 'close'
    const connection = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    const client = new LensClient(connection, child);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      client.stderrTail = (client.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
      opts.onStderr?.(chunk);
    });
    client.childExit = new Promise<void>((resolve) => {
      child.on('error', (err) => {
        // spawn failed (no 'close' follows); in-flight calls fail on the disposed connection
        client.stderrTail += `\n${err.message}`;
        if (!client.shuttingDown) client.exitError = new DaemonExitedError(null, null, client.stderrTail.trim());
        connection.dispose();
        resolve();
      });
      child.on('close', (code, signal) => {
        if (!client.shuttingDown) client.exitError = new DaemonExitedError(code, signal, client.stderrTail.trim());
        connection.dispose();
        resolve();
      });
    });
    return client;
  }

  /**
   * Connects to a daemon serving WebSocket (`llava-lens serve --ws <port>`). Rejects with a
   * `ConnectError` (common/wsTransport.ts) carrying the daemon's reason when it refuses (wrong
   * token, origin, address) or cannot be reached. Once connected, an unexpected close rejects the
   * pending calls (and later ones) with a `ConnectionClosedError` naming the URL, code and reason.
   */
  static async connectWebSocket(url: string, opts: ConnectOptions): Promise<LensClient> {
    const socket = await connectWebSocket(url, opts);
    const connection = createMessageConnection(new WebSocketMessageReader(socket), new WebSocketMessageWriter(socket));
    const client = new LensClient(connection);
    client.socket = socket;
    client.urlValue = url;
    socket.on('error', () => undefined); // reported by 'close', which always follows
    socket.once('close', (code: number, reason: Buffer) => {
      if (!client.shuttingDown) client.exitError = new ConnectionClosedError(url, code, reason.toString('utf8'));
      connection.dispose(); // rejects the pending calls; call() reports exitError instead
    });
    return client;
  }

  /** The daemon's WebSocket URL, or undefined for a spawned or wrapped connection. */
  get url(): string | undefined {
    return this.urlValue;
  }

  /** The last `lens/status` received. */
  get lastStatus(): LensStatus | undefined {
    return this.lastStatusValue;
  }

  /** Sends `initialize` then `initialized`. */
  async initialize(opts: InitializeOptions = {}): Promise<LensInitializeResult> {
    const result = await this.call(() =>
      this.connection.sendRequest(InitializeRequest, {
        processId: opts.processId !== undefined ? opts.processId : this.socket ? null : process.pid,
        clientInfo: { name: opts.clientName ?? 'llava-lens-client', ...(opts.clientVersion ? { version: opts.clientVersion } : {}) },
        rootUri: null,
        capabilities: { window: { workDoneProgress: true } },
        initializationOptions: opts.initializationOptions ?? {},
        workspaceFolders: opts.workspaceFolders ?? null,
      }),
    );
    await this.connection.sendNotification(InitializedNotification, {});
    return result;
  }

  /** Loads a model; `onProgress` gets the work-done progress (begin, reports with percent, end). */
  loadModel(params: LoadModelParams, onProgress?: (p: LoadProgressEvent) => void, token?: CancellationToken): Promise<ModelInfo> {
    const workDoneToken = params.workDoneToken ?? `load-${randomUUID()}`;
    return this.withWorkDoneProgress(workDoneToken, onProgress, () =>
      this.connection.sendRequest(LoadModelRequest, { ...params, workDoneToken }, token ?? CancellationToken.None),
    );
  }

  /**
   * Downloads a repository from the Hub into the daemon's models folder (a private daemon only;
   * a shared one refuses with 1014). `onProgress` gets the work-done progress; cancelling
   * `token` rejects with 1041 (partial files are kept for the next attempt, never a half folder).
   * Other failures: 1060 repository not found, 1061 access denied (gated/private: `HF_TOKEN`),
   * 1062 network/server/disk, 1063 checksum, 1002 not a layout the runtime reads, 1040 the same
   * repository is being downloaded.
   */
  downloadModel(
    params: DownloadModelParams,
    opts: { onProgress?: (p: DownloadProgressEvent) => void; token?: CancellationToken } = {},
  ): Promise<DownloadModelResult> {
    const workDoneToken = params.workDoneToken ?? `download-${randomUUID()}`;
    return this.withWorkDoneProgress(workDoneToken, opts.onProgress, () =>
      this.connection.sendRequest(DownloadModelRequest, { ...params, workDoneToken }, opts.token ?? CancellationToken.None),
    );
  }

  /** The daemon's built-in catalogue of known-good repositories and their precision variants. */
  listCatalogue(): Promise<{ models: CatalogueEntry[] }> {
    return this.call(() => this.connection.sendRequest(ListCatalogueRequest));
  }

  unloadModel(): Promise<null> {
    return this.call(() => this.connection.sendRequest(UnloadModelRequest));
  }

  listModels(params: ListModelsParams = {}): Promise<ListModelsResult> {
    return this.call(() => this.connection.sendRequest(ListModelsRequest, params));
  }

  /**
   * Asks a question. With `onDelta`, the answer streams (a `streamId` is chosen unless given);
   * deltas arrive in order and all before the promise resolves. `onStep` receives the tool
   * loop's `lens/agentStep` notifications for this ask (it also makes the ask stream). Cancelling
   * `token` resolves with `finishReason: 'cancelled'` and the text so far.
   */
  async ask(
    params: AskParams,
    onDelta?: (d: AnswerDeltaParams) => void,
    token?: CancellationToken,
    onStep?: (s: AgentStepParams) => void,
  ): Promise<AskResult> {
    if (!onDelta && !onStep) return this.call(() => this.connection.sendRequest(AskRequest, params, token ?? CancellationToken.None));
    const streamId = params.streamId ?? `ask-${randomUUID()}`;
    if (onDelta) this.streams.set(streamId, onDelta);
    if (onStep) this.stepStreams.set(streamId, onStep);
    try {
      return await this.call(() => this.connection.sendRequest(AskRequest, { ...params, streamId }, token ?? CancellationToken.None));
    } finally {
      this.streams.delete(streamId);
      this.stepStreams.delete(streamId);
    }
  }

  listTools(): Promise<ListToolsResult> {
    return this.call(() => this.connection.sendRequest(ListToolsRequest));
  }

  /** Runs one tool on one image (no model needed); a failing tool is a result with `error`. */
  runTool(params: RunToolParams, token?: CancellationToken): Promise<ToolRunResult> {
    return this.call(() => this.connection.sendRequest(RunToolRequest, params, token ?? CancellationToken.None));
  }

  forgetConversation(conversationId: string): Promise<null> {
    return this.call(() => this.connection.sendRequest(ForgetConversationRequest, { conversationId }));
  }

  /**
   * `shutdown` + `exit`, then waits for the spawned daemon to end (killing it after
   * `timeoutMs`). For a wrapped connection it only sends the two messages.
   */
  async shutdown(timeoutMs = 5000): Promise<void> {
    this.shuttingDown = true;
    if (!this.exitError) {
      try {
        await this.connection.sendRequest(ShutdownRequest);
        await this.connection.sendNotification(ExitNotification);
      } catch {
        // the daemon is already gone; nothing to shut down
      }
    }
    await this.waitForExit(timeoutMs);
    this.dispose();
  }

  /** Waits for the spawned daemon to exit; kills it after `timeoutMs`. */
  async waitForExit(timeoutMs = 5000): Promise<void> {
    const exit = this.childExit;
    if (!exit || !this.child) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([exit, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.child.kill();
      await exit;
    }
  }

  /** Closes the connection (over WebSocket: the socket, normally; the shared daemon keeps running). */
  dispose(): void {
    this.shuttingDown = true;
    if (this.socket && this.socket.readyState !== this.socket.CLOSED) this.socket.close(CloseCode.Normal, 'client done');
    this.connection.dispose();
    this.statusEmitter.dispose();
    this.logEmitter.dispose();
  }

  /** Runs a request carrying `workDoneToken`, passing its `$/progress` values to `onProgress` until it settles. */
  private async withWorkDoneProgress<T>(workDoneToken: ProgressToken, onProgress: ((p: WorkDoneProgressEvent) => void) | undefined, send: () => Promise<T>): Promise<T> {
    const sub = this.connection.onProgress(WorkDoneProgress, workDoneToken, (v) => {
      const event: WorkDoneProgressEvent = { kind: v.kind };
      if (v.kind !== 'end' && v.percentage !== undefined) event.percent = v.percentage;
      if (v.message !== undefined) event.message = v.message;
      onProgress?.(event);
    });
    try {
      return await this.call(send);
    } finally {
      sub.dispose();
    }
  }

  /** Runs a request; if the daemon died (or the socket closed) meanwhile, reports that instead of a transport error. */
  private async call<T>(send: () => Promise<T>): Promise<T> {
    if (this.exitError) throw this.exitError;
    try {
      return await send();
    } catch (e) {
      if (this.child && !this.shuttingDown) {
        // a dead daemon surfaces first as a write/dispose error; prefer the clearer exit error
        await Promise.race([this.childExit, Promise.resolve()]);
      }
      if (this.exitError && !this.shuttingDown) throw this.exitError;
      throw e;
    }
  }
}
