/**
 * The daemon's lifecycle in VS Code: started on first use through vscode-languageclient over node
 * IPC, restarted automatically after a crash (bounded: 4 restarts in 3 minutes), stopped with the
 * extension. Publishes a `DaemonView` for the status bar and tells the user what a crash cost.
 *
 * Pairs: `ensureStarted`/`stop`; `restart` = stop + start. Callers get a `LensClient` from
 * `ensureStarted` (concurrent callers share one start).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { CloseAction, ErrorAction, LanguageClient, State, TransportKind, type LanguageClientOptions, type ServerOptions } from 'vscode-languageclient/node';
import type { LensCapabilities, LensStatus } from '../../../common/protocol';
import { cacheDir, ensureDefaultModel } from '../../../server/src/cli/defaultModel';
import { LensClient } from '../daemonClient';
import { advice, adviceForDaemonError } from '../errorAdvice';
import type { Notifier } from '../notify';
import { DAEMON_NODE_ARGS, toInitializationOptions, type LensSettings } from '../settings';
import type { DaemonView } from '../statusText';
import { lensConnectionFor } from './languageClientConnection';

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

  private setView(v: DaemonView): void {
    this.viewValue = v;
    this.viewEmitter.fire(v);
  }

  /** Starts the daemon unless it runs; resolves with the client, rejects (after telling the user) when it cannot start. */
  ensureStarted(): Promise<LensClient> {
    if (this.lens && this.languageClient && (this.languageClient.state === State.Running || this.languageClient.state === State.Starting)) {
      return Promise.resolve(this.lens);
    }
    this.starting ??= this.start().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async start(): Promise<LensClient> {
    if (this.languageClient) await this.disposeClient(); // a client that gave up or failed to start
    const s = this.settings();
    if (s.remoteUrl) void this.notify(advice.remoteNotAvailable(s.remoteUrl));
    this.setView({ phase: 'preparing', message: 'Preparing the model…' });
    try {
      await this.resolveModel(s);
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.setView({ phase: 'failed', message: `No model: ${reason}` });
      void this.notify(advice.defaultModelFailed(reason));
      throw e;
    }

    this.setView({ phase: 'starting' });
    const client = this.createLanguageClient();
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
      void this.notify(advice.daemonDidNotStart(reason));
      throw e;
    } finally {
      clearTimeout(timer);
    }
    this.output.info(`Daemon started (${this.capabilities?.version ?? 'unknown version'}; providers ${this.capabilities?.executionProviders.join(', ') ?? '?'}).`);
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

  private createLanguageClient(): LanguageClient {
    const s = this.settings();
    const module = daemonModulePath(this.context.extensionPath);
    const env = { ...process.env, LLAVA_LENS_CACHE: cacheDir(process.env) };
    const run = {
      module,
      transport: TransportKind.ipc,
      args: ['serve'],
      options: { env, execArgv: [...DAEMON_NODE_ARGS] },
      ...(s.nodePath ? { runtime: s.nodePath } : {}),
    };
    const serverOptions: ServerOptions = { run, debug: run };
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
    this.output.info(`Starting the daemon: ${s.nodePath || 'node'} ${DAEMON_NODE_ARGS.join(' ')} ${module} serve --node-ipc`);
    return new LanguageClient('llavaLens', 'LLaVA Lens', serverOptions, clientOptions);
  }

  /** The daemon's connection closed. Not stopping on purpose: a crash. Restart (bounded) and say what was lost. */
  private onClosed(): { action: CloseAction; handled: boolean } {
    if (this.stopping) return { action: CloseAction.DoNotRestart, handled: true };
    if (this.starting) return { action: CloseAction.DoNotRestart, handled: true }; // start() reports it
    const lost = this.inFlight > 0;
    const now = Date.now();
    this.crashes.push(now);
    while (this.crashes.length && now - this.crashes[0] > RESTART_WINDOW_MS) this.crashes.shift();
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
    if (!this.lens || !this.isRunning) return;
    const s = this.settings();
    try {
      await this.resolveModel(s);
      if (!this.modelPath) return;
      await this.lens.loadModel({ path: this.modelPath, device: s.device, ...(s.dtype !== undefined ? { dtype: s.dtype } : {}) });
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
    this.languageClient = undefined;
    this.lens?.dispose();
    this.lens = undefined;
    this.capabilities = undefined;
    if (!client) return;
    this.stopping = true;
    try {
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
    void this.disposeClient();
    this.viewEmitter.dispose();
    this.restartEmitter.dispose();
  }
}
