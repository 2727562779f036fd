/**
 * LLaVA Lens for VS Code: activation wires the pieces together. Activation is lazy (commands,
 * the panel serializer, Markdown/HTML for the alt-text features) and does not start the daemon:
 * the first question or model action does (daemon/lensDaemon.ts).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { AltTextFeatures } from './altText/altTextProvider';
import { Asker } from './asker';
import { readClipboardImage } from './clipboardImage';
import { COMMANDS, PRESET_QUESTIONS, type CommandId } from './commandTable';
import { LensDaemon } from './daemon/lensDaemon';
import { advice } from './errorAdvice';
import { downloadModel } from './modelDownload';
import { selectModel } from './modelPicker';
import { createNotifier } from './notify';
import { isPanelState, EMPTY_STATE } from './panel/messages';
import { restoredState } from './panel/model';
import { LensPanel, PANEL_VIEW_TYPE } from './panel/panel';
import { BACKEND_API_KEY_SECRET, readSettings, REMOTE_TOKEN_SECRET, SECTION, settingsEffects, type LensSettings } from './settings';
import { presentStatus } from './statusText';

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('LLaVA Lens', { log: true });
  context.subscriptions.push(output);
  const log = (line: string) => output.info(line);
  const notify = createNotifier(log);

  // Settings: read once here and on every change; bad values are reported, not ignored.
  let lastProblems = '';
  const read = (): LensSettings => {
    const config = vscode.workspace.getConfiguration(SECTION);
    const { settings, problems } = readSettings((key) => {
      const inspected = config.inspect(key);
      const set = inspected?.workspaceFolderValue ?? inspected?.workspaceValue ?? inspected?.globalValue;
      return set === undefined ? undefined : config.get(key);
    });
    const key = problems.join('\n');
    if (key && key !== lastProblems) void notify(advice.settingsProblems(problems));
    lastProblems = key;
    return settings;
  };
  let current = read();
  const settings = () => current;

  const daemon = new LensDaemon(context, output, settings, notify);
  activeDaemon = daemon;
  const asker = new Asker(context, daemon, settings, notify, log);
  const altText = new AltTextFeatures(asker, settings, notify);
  context.subscriptions.push(daemon, altText);

  // Status bar: the daemon's state; click for the actions menu.
  const status = vscode.window.createStatusBarItem('llavaLens.status', vscode.StatusBarAlignment.Right, 100);
  status.name = 'LLaVA Lens';
  status.command = 'llavaLens.statusMenu';
  const showStatus = () => {
    // The daemon in use; before the first use, the one the settings name.
    const remoteUrl = daemon.view.phase === 'idle' ? current.remoteUrl || undefined : daemon.remoteUrl;
    // The serving engine until the daemon's own status names the model (device `remote`).
    const backend =
      daemon.view.phase === 'running' ? undefined
      : daemon.view.phase === 'idle' ? (current.backend === 'openai' && !current.remoteUrl ? { baseUrl: current.backendBaseUrl, model: current.backendModel } : undefined)
      : daemon.backend;
    const p = presentStatus(daemon.view, { ...(remoteUrl ? { remoteUrl } : {}), ...(backend ? { backend } : {}) });
    status.text = p.text;
    status.tooltip = p.tooltip;
    status.backgroundColor = p.error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    status.accessibilityInformation = { label: p.text.replace(/^\$\([^)]*\)\s*/, ''), role: 'button' };
  };
  showStatus();
  status.show();
  context.subscriptions.push(status);

  let restartWhenIdle = false;
  /** Restarts the daemon now, or after the answer in flight. */
  const restartSoon = () => {
    if (daemon.inFlight) restartWhenIdle = true;
    else void daemon.restart().catch(() => undefined);
  };
  context.subscriptions.push(
    daemon.onDidChangeView(() => {
      showStatus();
      if (restartWhenIdle && daemon.inFlight === 0) {
        restartWhenIdle = false;
        void daemon.restart().catch(() => undefined);
      }
    }),
    daemon.onDidRestart(() => {
      const panel = LensPanel.active;
      if (panel) panel.conversation = undefined;
    }),
  );

  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(SECTION)) return;
      const before = current;
      current = read();
      const fx = settingsEffects(before, current);
      if (fx.diagnostics) altText.refreshAll();
      if (fx.remote && daemon.view.phase !== 'idle') {
        // Leave the daemon in use (local or remote) for the one the settings now name.
        log(`llavaLens.remote.* changed: switching to ${current.remoteUrl || 'a local daemon'}` + (daemon.inFlight ? ' after the current answer.' : '.'));
        restartSoon();
      } else if (fx.restartDaemon && daemon.isRunning) {
        log('Settings that the daemon takes at start changed: restarting it' + (daemon.inFlight ? ' after the current answer.' : '.'));
        restartSoon();
      } else if (fx.restartDaemon && daemon.view.phase === 'failed') {
        void daemon.stop(); // e.g. the missing backend URL is set now: the next use starts afresh
      } else if (fx.reloadModel) {
        void daemon.reloadModel();
      }
      showStatus();
    }),
  );

  // The panel comes back after a window reload with what its webview persisted.
  context.subscriptions.push(
    vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
      async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown) {
        LensPanel.revive(panel, context, asker, isPanelState(state) ? restoredState(state) : EMPTY_STATE);
      },
    }),
  );

  const askWith = (question: string | undefined, explain?: 'screenshot' | 'diagram') => async (clicked?: unknown, selected?: unknown) => {
    const uris = await asker.targetImages(clicked, selected);
    if (uris) await asker.askAboutImages(uris, question, explain);
  };

  const handlers: Record<CommandId, (...args: unknown[]) => unknown> = {
    'llavaLens.askAboutImage': askWith(undefined),
    'llavaLens.explainDiagram': askWith(PRESET_QUESTIONS['llavaLens.explainDiagram'], 'diagram'),
    'llavaLens.explainScreenshot': askWith(PRESET_QUESTIONS['llavaLens.explainScreenshot'], 'screenshot'),
    'llavaLens.extractText': async (clicked?: unknown, selected?: unknown) => {
      const uris = await asker.targetImages(clicked, selected);
      if (uris) await asker.extractText(uris);
    },
    'llavaLens.askAboutClipboardImage': () => askAboutClipboard(context, asker, notify),
    'llavaLens.describeImage': (uri, offset) => altText.describeImage(uri, offset),
    'llavaLens.generateAltText': (uri, offset) => altText.generateAltText(uri, offset),
    'llavaLens.selectModel': () => selectModel(daemon, settings, log),
    'llavaLens.downloadModel': (request?: unknown) => downloadModel(daemon, settings, notify, log, request),
    'llavaLens.restartDaemon': async () => {
      asker.stop();
      try {
        await daemon.restart();
        void vscode.window.setStatusBarMessage('LLaVA Lens: daemon restarted', 3000);
      } catch {
        // LensDaemon told the user why
      }
    },
    'llavaLens.showLogs': () => output.show(true),
    'llavaLens.openSettings': () => vscode.commands.executeCommand('workbench.action.openSettings', '@ext:llava-lens.llava-lens'),
    'llavaLens.statusMenu': () => statusMenu(asker),
    'llavaLens.stop': () => {
      if (asker.busy) asker.stop();
      else void vscode.window.setStatusBarMessage('LLaVA Lens: no answer to stop', 2000);
    },
    'llavaLens.setRemoteToken': () => setRemoteToken(context, daemon, settings),
    'llavaLens.setBackendApiKey': () => setBackendApiKey(context, daemon, settings, restartSoon),
    'llavaLens.showPanel': () => LensPanel.show(context, asker, false),
  };
  for (const spec of COMMANDS) {
    context.subscriptions.push(vscode.commands.registerCommand(spec.id, handlers[spec.id]));
  }
}

let activeDaemon: LensDaemon | undefined;

/** Stops the daemon (shutdown + exit) before VS Code disposes the rest. */
export function deactivate(): Promise<void> | undefined {
  return activeDaemon?.stop();
}

async function statusMenu(asker: Asker): Promise<void> {
  const items: Array<vscode.QuickPickItem & { command: CommandId }> = [
    { label: '$(symbol-misc) Select Model…', command: 'llavaLens.selectModel' },
    { label: '$(cloud-download) Download Model…', command: 'llavaLens.downloadModel' },
    { label: '$(debug-restart) Restart Daemon', command: 'llavaLens.restartDaemon' },
    { label: '$(output) Show Logs', command: 'llavaLens.showLogs' },
    { label: '$(settings-gear) Open Settings', command: 'llavaLens.openSettings' },
    { label: '$(comment-discussion) Show Panel', command: 'llavaLens.showPanel' },
  ];
  if (asker.busy) items.unshift({ label: '$(debug-stop) Stop Answer', command: 'llavaLens.stop' });
  const picked = await vscode.window.showQuickPick(items, { title: 'LLaVA Lens' });
  if (picked) await vscode.commands.executeCommand(picked.command);
}

/** Stores (or deletes) the remote daemon's token; with `llavaLens.remote.url` set, connects with it at once. */
async function setRemoteToken(context: vscode.ExtensionContext, daemon: LensDaemon, settings: () => LensSettings): Promise<void> {
  const token = await vscode.window.showInputBox({
    title: 'LLaVA Lens: remote daemon token',
    prompt: 'Kept in VS Code’s secret storage. Leave empty to delete it.',
    password: true,
    ignoreFocusOut: true,
  });
  if (token === undefined) return;
  if (token.trim() === '') {
    await context.secrets.delete(REMOTE_TOKEN_SECRET);
    void vscode.window.showInformationMessage('LLaVA Lens: remote daemon token deleted.');
    return;
  }
  await context.secrets.store(REMOTE_TOKEN_SECRET, token.trim());
  const url = settings().remoteUrl;
  if (!url) {
    void vscode.window.showInformationMessage('LLaVA Lens: token saved. Set llavaLens.remote.url to use the remote daemon.');
    return;
  }
  void vscode.window.setStatusBarMessage(`LLaVA Lens: token saved; connecting to ${url}`, 5000);
  if (!daemon.isRunning || daemon.remoteUrl !== url) await daemon.restart().catch(() => undefined); // a refusal is reported by LensDaemon
}

/**
 * Stores (or deletes) the serving engine's API key. A daemon running on that engine restarts
 * (after the answer in flight) to get it: the key reaches the daemon only in its environment.
 */
async function setBackendApiKey(context: vscode.ExtensionContext, daemon: LensDaemon, settings: () => LensSettings, restartSoon: () => void): Promise<void> {
  const key = await vscode.window.showInputBox({
    title: 'LLaVA Lens: API key of the OpenAI-compatible server',
    prompt: 'Sent as "Authorization: Bearer" to llavaLens.backend.baseUrl. Kept in VS Code’s secret storage. Leave empty to delete it.',
    password: true,
    ignoreFocusOut: true,
  });
  if (key === undefined) return;
  if (key.trim() === '') await context.secrets.delete(BACKEND_API_KEY_SECRET);
  else await context.secrets.store(BACKEND_API_KEY_SECRET, key.trim());
  const saved = key.trim() === '' ? 'API key deleted' : 'API key saved';
  const s = settings();
  if (s.backend !== 'openai' || s.remoteUrl) {
    void vscode.window.showInformationMessage(`LLaVA Lens: ${saved}. It is used when llavaLens.backend.kind is "openai" (and llavaLens.remote.url is empty).`);
    return;
  }
  void vscode.window.setStatusBarMessage(`LLaVA Lens: ${saved}${daemon.backend ? '; restarting the daemon' : ''}`, 5000);
  if (daemon.backend && daemon.view.phase !== 'idle') restartSoon();
}

async function askAboutClipboard(context: vscode.ExtensionContext, asker: Asker, notify: ReturnType<typeof createNotifier>): Promise<void> {
  let bytes: Buffer;
  try {
    bytes = await readClipboardImage();
  } catch (e) {
    const panel = LensPanel.show(context, asker, false);
    panel.focusInput();
    void notify(advice.noClipboardImage(e instanceof Error ? e.message : String(e)), (uris) => void asker.askAboutImages(uris, undefined));
    return;
  }
  const dir = path.join(context.globalStorageUri.fsPath, 'pasted');
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, `clipboard-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}.png`);
  await fs.writeFile(file, bytes);
  await asker.askAboutImages([vscode.Uri.file(file)], undefined);
}
