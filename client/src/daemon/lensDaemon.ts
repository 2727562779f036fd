/**
 * The daemon's lifecycle in VS Code: started on first use through vscode-languageclient over node
 * IPC, restarted automatically after a crash (bounded: 4 restarts in 3 minutes), stopped with the
 * extension. Publishes a `DaemonView` for the status bar and tells the user what a crash cost.
 *
 * With `llavaLens.remote.url` set, no daemon is spawned: the LanguageClient talks to that shared
 * daemon over WebSocket (remoteTransport.ts; token from SecretStorage). It sends no model path or
 * other local paths (`initializationOptions` is empty), a refusal (no or wrong token) offers
 * "Set Token…", and a dropped connection is reconnected (bounded like the crash restarts: 4 drops
 * in 3 minutes, each with up to `RECONNECT_DELAYS_MS.length` attempts), saying so. Leaving a
 * remote daemon closes the socket without `shutdown`: the daemon keeps serving its other clients.
 *
 * With `llavaLens.backend.kind` "openai" the spawned daemon generates on an OpenAI-compatible
 * server (`serve --backend openai …`, flags from `toDaemonSpawn`; the API key from SecretStorage
 * reaches it in its environment, never its command line). No model is prepared or sent: the model
 * is the server's (`backend.model`), which the daemon reports from the start (device `remote`).
 *
 * Pairs: `ensureStarted`/`stop`; `restart` = stop + start. Callers get a `LensClient` from
 * `ensureStarted` (concurrent callers share one start).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { CloseAction, ErrorAction, LanguageClient, State, TransportKind, type LanguageClientOptions, type ServerOptions } from 'vscode-languageclient/node';
import type WebSocket from 'ws';
import type { LensCapabilities, LensStatus } from '../../../common/protocol';
import { cacheDir, ensureDefaultModel } from '../../../server/src/cli/defaultModel';
import { LensClient } from '../daemonClient';
import { advice, adviceForDaemonError } from '../errorAdvice';
import type { Notifier } from '../notify';
import { BACKEND_API_KEY_SECRET, DAEMON_NODE_ARGS, DAEMON_NODE_ENV, REMOTE_TOKEN_SECRET, toDaemonSpawn, toInitializationOptions, toLoadModelParams, type LensSettings } from '../settings';
import type { DaemonView } from '../statusText';
import { lensConnectionFor } from './languageClientConnection';
import { closeSocket, openRemoteSocket, RECONNECT_DELAYS_MS, RemoteConnectError, transportsOver } from './remoteTransport';

const START_TIMEOUT_MS = 60_000;
const MAX_RESTARTS = 4;
const RESTART_WINDOW_MS = 3 * 60_000;
const TEST_MODEL_NOTICE_KEY = 'llavaLens.testModelNoticeShown';

/** Where the daemon's entry is: beside the bundle in a VSIX, or the tsc output in a checkout. */
export function daemonModulePath(extensionPath: string): string {
  const bundled = path.join(__dirname, 'daemon.js');
  if (path.basename(__dirname) === 'dist' && fs.existsSync(bundled)) return bundled;
  return path.join(extensionPath, 'out', 'server', 'src', 'daemon', 'main.js');
}

export class LensDaemon implements vscode.Disposable {
  private languageClient: LanguageClient | undefined;
  private lens: LensClient | undefined;
  private starting: Promise<LensClient> | undefined;
  private viewValue: DaemonView = { phase: 'idle' };
  private readonly viewEmitter = new vscode.EventEmitter<DaemonView>();
  private readonly restartEmitter = new vscode.EventEmitter<void>();
  private readonly crashes: number[] = [];
  private stopping = false;
  private lastErrorNotified: string | undefined;
  /** The model folder the daemon was told to load (the embedded default's folder when none is configured). */
  private modelPath: string | undefined;
  private embedded = false;
  /** The shared daemon in use (set when a start chose it), and its open socket. */
  private remote: string | undefined;
  private socket: WebSocket | undefined;
  /** The serving engine the local daemon generates on (set when a start chose `backend.kind` "openai"). */
  private backendInUse: { baseUrl: string; model: string } | undefined;
  private reconnecting = false;
  private disposed = false;

  /** Fires whenever the view (status bar state) changes. */
  readonly onDidChangeView = this.viewEmitter.event;
  /** Fires after a daemon process replaced another (crash restart or restart command): conversations are gone. */
  readonly onDidRestart = this.restartEmitter.event;
  /** Asks in flight; a crash loses them (the user is told). */
  inFlight = 0;
  /** Increments with every daemon process; a conversation id is valid only in its generation. */
  generation = 0;
  capabilities: LensCapabilities | undefined;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.LogOutputChannel,
    private readonly settings: () => LensSettings,
    private readonly notify: Notifier,
  ) {}

  get view(): DaemonView {
    return this.viewValue;
  }

  get isRunning(): boolean {
    return this.languageClient?.state === State.Running;
  }

  get usingTestModel(): boolean {
    return this.embedded;
  }

  /** The URL of the shared daemon in use (or being connected to); undefined for a local daemon. Images go to it as bytes. */
  get remoteUrl(): string | undefined {
    return this.remote;
  }

  /** The OpenAI-compatible server (and model) the local daemon generates on; undefined for the local model or a remote daemon. */
  get backend(): { baseUrl: string; model: string } | undefined {
    return this.backendInUse;
  }

  private setView(v: DaemonView): void {
    this.viewValue = v;
    this.viewEmitter.fire(v);
  }

  /**
   * Starts the daemon (or connects to the remote one) unless it runs; resolves with the client,
   * rejects (after telling the user, unless `quiet`) when it cannot start.
   */
  ensureStarted(opts: { quiet?: boolean } = {}): Promise<LensClient> {
    if (this.lens && this.languageClient && (this.languageClient.state === State.Running || this.languageClient.state === State.Starting)) {
      return Promise.resolve(this.lens);
    }
    this.starting ??= this.start(opts.quiet ?? false).finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async start(quiet: boolean): Promise<LensClient> {
    if (this.languageClient) await this.disposeClient(); // a client that gave up or failed to start
    const s = this.settings();
    let serverOptions: ServerOptions;
    if (s.remoteUrl) {
      this.backendInUse = undefined;
      serverOptions = await this.connectRemote(s, quiet);
    } else {
      this.remote = undefined;
      const spawn = toDaemonSpawn(s, s.backend === 'openai' ? await this.context.secrets.get(BACKEND_API_KEY_SECRET) : undefined);
      if (!spawn.ok) {
        this.backendInUse = undefined;
        this.output.error(spawn.message);
        this.setView({ phase: 'failed', message: spawn.message });
        if (!quiet) void this.notify(advice.backendIncomplete(spawn.message));
        throw new Error(spawn.message);
      }
      if (s.backend === 'openai') {
        // The server's model: nothing to prepare here, no folder to send.
        this.modelPath = undefined;
        this.embedded = false;
        this.backendInUse = { baseUrl: s.backendBaseUrl, model: s.backendModel };
      } else {
        this.backendInUse = undefined;
        this.setView({ phase: 'preparing', message: 'Preparing the model…' });
        try {
          await this.resolveModel(s);
        } catch (e) {
          const reason = e instanceof Error ? e.message : String(e);
          this.setView({ phase: 'failed', message: `No model: ${reason}` });
          void this.notify(advice.defaultModelFailed(reason));
          throw e;
        }
      }
      serverOptions = this.localServerOptions(s, spawn);
    }

    this.setView({ phase: 'starting' });
    const client = this.createLanguageClient(serverOptions);
    this.languageClient = client;
    this.lens = new LensClient(lensConnectionFor(client));
    this.lens.onStatus((status) => this.onStatus(status));
    this.lens.onLog((m) => this.output.appendLine(`[daemon] ${m.message}`));
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) {
        this.generation++;
        this.capabilities = (client.initializeResult as { lensCapabilities?: LensCapabilities } | undefined)?.lensCapabilities;
      }
    });

    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer to initialize within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      });
      await Promise.race([client.start(), timeout]);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.output.error(`The daemon did not start: ${reason}`);
      this.setView({ phase: 'failed', message: `The daemon did not start: ${reason}` });
      await this.disposeClient();
      if (!quiet) void this.notify(advice.daemonDidNotStart(reason));
      throw e;
    } finally {
      clearTimeout(timer);
    }
    this.output.info(
      `Daemon ${this.remote ? `at ${this.remote} connected` : 'started'} (${this.capabilities?.version ?? 'unknown version'}; providers ${this.capabilities?.executionProviders.join(', ') ?? '?'}).`,
    );
    if (this.viewValue.phase !== 'running') this.setView({ phase: 'running', status: { state: 'starting', rssBytes: 0, queueLength: 0 } });
    return this.lens;
  }

  /** The folder to load: the configured one, or the embedded test model (generated on first use, with a progress notification). */
  private async resolveModel(s: LensSettings): Promise<void> {
    if (s.model) {
      const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
      this.modelPath = path.isAbsolute(s.model) || !folder ? s.model : path.join(folder, s.model);
      this.embedded = false;
      return;
    }
    const log = (line: string) => this.output.info(line);
    this.modelPath = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'LLaVA Lens: preparing the embedded test model (first use only)…' },
      () => ensureDefaultModel(log),
    );
    this.embedded = true;
    if (!this.context.globalState.get<boolean>(TEST_MODEL_NOTICE_KEY)) {
      await this.context.globalState.update(TEST_MODEL_NOTICE_KEY, true);
      void this.notify(advice.testModelNotice());
    }
  }

  /**
   * Opens the socket to the remote daemon now (so that a refusal is reported here, once, with
   * its fix) and returns server options that hand it to the LanguageClient.
   */
  private async connectRemote(s: LensSettings, quiet: boolean): Promise<ServerOptions> {
    const url = s.remoteUrl;
    this.remote = url;
    this.modelPath = undefined;
    this.embedded = false;
    this.setView({ phase: 'preparing', message: `Connecting to ${url}…` });
    this.output.info(`Connecting to the remote daemon at ${url}`);
    let socket: WebSocket;
    try {
      socket = await openRemoteSocket({ url, tlsCa: s.remoteTlsCa, token: async () => (await this.context.secrets.get(REMOTE_TOKEN_SECRET))?.trim() });
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.output.error(`Could not connect to ${url}: ${reason}`);
      this.setView({ phase: 'failed', message: `Could not connect to ${url}: ${reason}` });
      const r = e instanceof RemoteConnectError ? e : undefined;
      if (!quiet) void this.notify(advice.remoteConnectFailed(url, reason, { ...(r?.status !== undefined ? { status: r.status } : {}), noToken: r?.noToken ?? false }));
      throw e;
    }
    return async () => {
      this.socket = socket;
      return transportsOver(socket);
    };
  }

  /** `spawn`: the backend's flags and environment (toDaemonSpawn; the API key only in `env`). */
  private localServerOptions(s: LensSettings, spawn: { args: string[]; env: Record<string, string> }): ServerOptions {
    const module = daemonModulePath(this.context.extensionPath);
    // DAEMON_NODE_ENV: with it (and DAEMON_NODE_ARGS) the daemon has what it needs and does not relaunch.
    const env = { ...process.env, ...DAEMON_NODE_ENV, LLAVA_LENS_CACHE: cacheDir(process.env), ...spawn.env };
    const run = {
      module,
      transport: TransportKind.ipc,
      args: ['serve', ...spawn.args],
      options: { env, execArgv: [...DAEMON_NODE_ARGS] },
      ...(s.nodePath ? { runtime: s.nodePath } : {}),
    };
    const vars = Object.entries(DAEMON_NODE_ENV).map(([k, v]) => `${k}=${v}`);
    this.output.info(`Starting the daemon: ${[...vars, s.nodePath || 'node', ...DAEMON_NODE_ARGS, module, 'serve', '--node-ipc', ...spawn.args].join(' ')}`);
    return { run, debug: run };
  }

  private createLanguageClient(serverOptions: ServerOptions): LanguageClient {
    const clientOptions: LanguageClientOptions = {
      outputChannel: this.output,
      revealOutputChannelOn: 4 /* RevealOutputChannelOn.Never */,
      initializationOptions: () => toInitializationOptions(this.settings(), this.modelPath),
      workspaceFolder: vscode.workspace.workspaceFolders?.[0],
      errorHandler: {
        error: (_error, _message, count) => ({ action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true }),
        closed: () => this.onClosed(),
      },
    };
    return new LanguageClient('llavaLens', 'LLaVA Lens', serverOptions, clientOptions);
  }

  /** The daemon's connection closed. Not stopping on purpose: a crash. Restart (bounded) and say what was lost. */
  private onClosed(): { action: CloseAction; handled: boolean; message?: string } {
    if (this.stopping) return { action: CloseAction.DoNotRestart, handled: true };
    if (this.starting) return { action: CloseAction.DoNotRestart, handled: true }; // start() reports it
    const lost = this.inFlight > 0;
    const now = Date.now();
    this.crashes.push(now);
    while (this.crashes.length && now - this.crashes[0] > RESTART_WINDOW_MS) this.crashes.shift();
    if (this.remote) return this.onRemoteClosed(this.remote, lost);
    if (this.crashes.length > MAX_RESTARTS) {
      this.output.error('The daemon stopped again; not restarting it (too many crashes in 3 minutes).');
      this.setView({ phase: 'failed', message: 'The daemon keeps stopping; see the logs, then restart it.' });
      void this.notify(advice.daemonGaveUp(lost));
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    this.output.warn(`The daemon stopped unexpectedly; restarting it${lost ? ' (the answer in flight is lost)' : ''}.`);
    this.setView({ phase: 'starting' });
    void this.notify(advice.daemonRestarted(lost));
    setImmediate(() => this.restartEmitter.fire());
    return { action: CloseAction.Restart, handled: true };
  }

  /**
   * The remote daemon's connection closed by itself. The LanguageClient is not restarted (it would
   * reconnect at once, without a pause, and report a failure twice); `reconnect` does it, pausing
   * between attempts, unless there were too many drops lately.
   */
  private onRemoteClosed(url: string, lost: boolean): { action: CloseAction; handled: boolean; message: string } {
    this.socket = undefined;
    if (this.crashes.length > MAX_RESTARTS) {
      this.output.error(`The connection to ${url} dropped again; not reconnecting (too many drops in 3 minutes).`);
      this.setView({ phase: 'failed', message: `The connection to ${url} keeps dropping; see the logs, then reconnect.` });
      void this.notify(advice.remoteGaveUp(url, 'the connection keeps dropping'));
      return { action: CloseAction.DoNotRestart, handled: true, message: `Connection to ${url} closed; not reconnecting.` };
    }
    this.output.warn(`The connection to ${url} dropped; reconnecting${lost ? ' (the answer in flight is lost)' : ''}.`);
    this.setView({ phase: 'preparing', message: `Connection to ${url} lost; reconnecting…` });
    void this.notify(advice.remoteDropped(url, lost));
    setImmediate(() => void this.reconnect(url));
    return { action: CloseAction.DoNotRestart, handled: true, message: `Connection to ${url} closed; reconnecting.` };
  }

  /** Tries to connect again, pausing `RECONNECT_DELAYS_MS` before each attempt; gives up on a refusal or after the last one. */
  private async reconnect(url: string): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    try {
      let reason = '';
      for (let attempt = 0; attempt < RECONNECT_DELAYS_MS.length; attempt++) {
        await new Promise<void>((resolve) => setTimeout(resolve, RECONNECT_DELAYS_MS[attempt]));
        // Stopped, switched to another daemon, or reconnected by a question meanwhile: nothing to do.
        if (this.disposed || this.viewValue.phase === 'idle' || this.settings().remoteUrl !== url || this.isRunning) return;
        try {
          await this.ensureStarted({ quiet: true });
          this.output.info(`Reconnected to ${url}.`);
          void vscode.window.setStatusBarMessage(`LLaVA Lens: reconnected to ${url}`, 5000);
          this.restartEmitter.fire();
          return;
        } catch (e) {
          reason = e instanceof Error ? e.message : String(e);
          this.output.warn(`Reconnecting to ${url} (attempt ${attempt + 1} of ${RECONNECT_DELAYS_MS.length}) failed: ${reason}`);
          if (e instanceof RemoteConnectError && e.refused) {
            // A new token or policy is needed first: say so (Set Token…) instead of retrying.
            void this.notify(advice.remoteConnectFailed(url, reason, { ...(e.status !== undefined ? { status: e.status } : {}), noToken: e.noToken }));
            return;
          }
          if (attempt + 1 < RECONNECT_DELAYS_MS.length) this.setView({ phase: 'preparing', message: `Reconnecting to ${url} (attempt ${attempt + 2} of ${RECONNECT_DELAYS_MS.length})…` });
        }
      }
      this.setView({ phase: 'failed', message: `Could not reconnect to ${url}: ${reason}` });
      void this.notify(advice.remoteGaveUp(url, reason));
    } finally {
      this.reconnecting = false;
    }
  }

  private onStatus(status: LensStatus): void {
    this.setView({ phase: 'running', status });
    if (status.state === 'error' && status.message && status.message !== this.lastErrorNotified) {
      this.lastErrorNotified = status.message;
      void this.notify(adviceForDaemonError(1003, `the model could not be loaded: ${status.message}`));
    }
    if (status.state === 'ready' && status.model) this.lastErrorNotified = undefined;
  }

  /** Loads the configured model (after a settings change) into the running daemon; no-op when not running. */
  async reloadModel(): Promise<void> {
    // A remote daemon's model is its operator's choice; a serving engine's is llavaLens.backend.model.
    if (!this.lens || !this.isRunning || this.remote || this.backendInUse) return;
    const s = this.settings();
    try {
      await this.resolveModel(s);
      if (!this.modelPath) return;
      await this.lens.loadModel(toLoadModelParams(s, this.modelPath));
    } catch (e) {
      const code = (e as { code?: number }).code;
      const message = e instanceof Error ? e.message : String(e);
      if (code === 1041) return; // replaced by a newer load
      if (this.viewValue.phase === 'running' && this.viewValue.status.state === 'error') return; // onStatus told the user
      void this.notify(adviceForDaemonError(code, message));
    }
  }

  /** Stops the daemon (shutdown + exit); the next use starts a new one. */
  async stop(): Promise<void> {
    await this.disposeClient();
    this.setView({ phase: 'idle' });
  }

  async restart(): Promise<LensClient> {
    await this.stop();
    this.crashes.length = 0;
    const client = await this.ensureStarted();
    this.restartEmitter.fire();
    return client;
  }

  private async disposeClient(): Promise<void> {
    const client = this.languageClient;
    const socket = this.socket;
    this.languageClient = undefined;
    this.socket = undefined;
    this.lens?.dispose();
    this.lens = undefined;
    this.capabilities = undefined;
    if (!client) return;
    this.stopping = true;
    try {
      // A shared daemon is left by closing the socket (no `shutdown`: it serves other clients).
      if (socket) await Promise.all([closeSocket(socket), client.state === State.Running ? stateLeaves(client, State.Running, 3000) : undefined]);
      if (client.needsStop()) await client.stop(3000);
    } catch (e) {
      this.output.warn(`Stopping the daemon: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.stopping = false;
      try {
        await client.dispose(1000);
      } catch {
        // already stopped
      }
    }
  }

  dispose(): void {
    this.disposed = true;
    void this.disposeClient();
    this.viewEmitter.dispose();
    this.restartEmitter.dispose();
  }
}

/** Resolves when `client` leaves `state` (or after `timeoutMs`). */
function stateLeaves(client: LanguageClient, state: State, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    const sub = client.onDidChangeState((e) => {
      if (e.newState !== state) done();
    });
    function done() {
      clearTimeout(timer);
      sub.dispose();
      resolve();
    }
  });
}
