/**
 * The panel's host side: one webview panel (viewType `llavaLens.panel`) holding the
 * conversation. It owns the authoritative `PanelState`, applies the same reducer as the webview
 * (model.ts) before posting each message, batches answer deltas (~30 ms), and answers the
 * webview's `ready` with the whole state, so a webview that reloads (window reload, new image
 * roots, hidden and shown again) always catches up.
 *
 * `localResourceRoots` is media/ plus the folders of the images shown (roots are folders). VS
 * Code reloads a webview whose options change, so when an image from a new folder appears the
 * panel sets the roots and the HTML again and waits for `ready`.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { hasImageExtension } from '../commandTable';
import { makeNonce, panelHtml } from './html';
import { EMPTY_STATE, isWebviewMessage, type HostMessage, type ImageView, type PanelState, type StepView, type TimingsView, type TurnView, type WebviewMessage } from './messages';
import { applyHostMessage } from './model';
import { isSafeHref } from './links';

export const PANEL_VIEW_TYPE = 'llavaLens.panel';
const DELTA_BATCH_MS = 30;
const MAX_PASTED_BYTES = 50 * 1024 * 1024;

/** What the panel asks its owner to do (the asking flow lives in asker.ts). */
export interface PanelActions {
  followUp(panel: LensPanel, text: string): void;
  stop(): void;
  newConversation(panel: LensPanel): void;
  insertText(text: string): Promise<void>;
  log(line: string): void;
}

/** The conversation the daemon holds for this panel: valid only in the daemon generation that created it. */
export interface DaemonConversation {
  id: string;
  generation: number;
}

export class LensPanel implements vscode.Disposable {
  private static current: LensPanel | undefined;

  private state: PanelState;
  private ready = false;
  private roots = '';
  private readonly deltas = new Map<string, string>();
  private deltaTimer: NodeJS.Timeout | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private disposed = false;
  /** The daemon conversation follow-ups continue; undefined = the next question starts one. */
  conversation: DaemonConversation | undefined;
  private turnCounter = 0;

  private constructor(
    private readonly panel: vscode.WebviewPanel,
    private readonly context: vscode.ExtensionContext,
    private readonly actions: PanelActions,
    state: PanelState,
  ) {
    this.state = state;
    this.turnCounter = state.turns.length;
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: unknown) => this.onMessage(m)),
    );
    this.refreshRoots(true);
  }

  static get active(): LensPanel | undefined {
    return LensPanel.current;
  }

  /** Shows the panel (creating it beside the editor when there is none). */
  static show(context: vscode.ExtensionContext, actions: PanelActions, preserveFocus = true): LensPanel {
    if (LensPanel.current) {
      LensPanel.current.panel.reveal(undefined, preserveFocus);
      return LensPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(
      PANEL_VIEW_TYPE,
      'LLaVA Lens',
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus },
      LensPanel.webviewOptions(context, []),
    );
    LensPanel.current = new LensPanel(panel, context, actions, EMPTY_STATE);
    return LensPanel.current;
  }

  /** After a window reload: the serializer hands back the panel and what the webview persisted. */
  static revive(panel: vscode.WebviewPanel, context: vscode.ExtensionContext, actions: PanelActions, state: PanelState): LensPanel {
    LensPanel.current?.dispose();
    LensPanel.current = new LensPanel(panel, context, actions, state);
    return LensPanel.current;
  }

  private static webviewOptions(context: vscode.ExtensionContext, images: vscode.Uri[]): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return {
      enableScripts: true,
      enableCommandUris: false,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(context.extensionUri, 'media'), ...images],
    };
  }

  get snapshot(): PanelState {
    return this.state;
  }

  get visible(): boolean {
    return this.panel.visible;
  }

  // -------------------------------------------------------------------------------------------
  // Updates from the asking flow
  // -------------------------------------------------------------------------------------------

  /** Adds a streaming turn; returns its id. */
  startTurn(images: ImageView[], question: string, newConversation: boolean): string {
    const id = `t${++this.turnCounter}-${Date.now().toString(36)}`;
    const turn: TurnView = { id, newConversation, images, question, answer: '', state: 'streaming', steps: [] };
    this.update({ type: 'turnStart', turn });
    return id;
  }

  delta(turnId: string, text: string): void {
    if (!text) return;
    this.deltas.set(turnId, (this.deltas.get(turnId) ?? '') + text);
    this.deltaTimer ??= setTimeout(() => this.flushDeltas(), DELTA_BATCH_MS);
  }

  step(turnId: string, step: StepView): void {
    this.flushDeltas();
    this.update({ type: 'step', turnId, step });
  }

  endTurn(turnId: string, state: 'done' | 'cancelled' | 'error', answer: string, timings?: TimingsView, note?: string): void {
    this.flushDeltas();
    const msg: HostMessage = { type: 'turnEnd', turnId, state, answer };
    if (timings) msg.timings = timings;
    if (note !== undefined) msg.note = note;
    this.update(msg);
  }

  setStatusLine(text: string): void {
    if (text !== this.state.statusLine) this.update({ type: 'statusLine', text });
  }

  /** Takes the images pasted or dropped since the last question. */
  takePending(): ImageView[] {
    const images = this.state.pending;
    if (images.length) this.update({ type: 'pending', images: [] });
    return images;
  }

  focusInput(): void {
    this.post({ type: 'focusInput' });
  }

  turn(id: string): TurnView | undefined {
    return this.state.turns.find((t) => t.id === id);
  }

  /** The images of the conversation's first turn (re-sent when the daemon lost the conversation). */
  conversationImages(): ImageView[] {
    for (let i = this.state.turns.length - 1; i >= 0; i--) {
      const t = this.state.turns[i];
      if (t.newConversation) return t.images;
    }
    return [];
  }

  private flushDeltas(): void {
    if (this.deltaTimer) clearTimeout(this.deltaTimer);
    this.deltaTimer = undefined;
    for (const [turnId, text] of this.deltas) this.update({ type: 'delta', turnId, text });
    this.deltas.clear();
  }

  private update(msg: HostMessage): void {
    if (this.disposed) return;
    this.state = applyHostMessage(this.state, msg);
    if (msg.type === 'turnStart' || msg.type === 'pending') {
      if (this.refreshRoots(false)) return; // the webview reloads and gets everything with `reset`
    }
    this.post(msg);
  }

  // -------------------------------------------------------------------------------------------
  // Webview plumbing
  // -------------------------------------------------------------------------------------------

  /**
   * The folders of the images shown: VS Code matches `localResourceRoots` as folders (a file
   * root never matches), so this is as narrow as the roots can be.
   */
  private imageUris(): vscode.Uri[] {
    const dirs = new Set<string>();
    for (const t of this.state.turns) for (const i of t.images) dirs.add(path.dirname(i.path));
    for (const i of this.state.pending) dirs.add(path.dirname(i.path));
    return [...dirs].sort().map((p) => vscode.Uri.file(p));
  }

  /** Sets roots + HTML when the set of images changed (or `force`); returns true when the webview reloads. */
  private refreshRoots(force: boolean): boolean {
    const images = this.imageUris();
    const key = images.map((u) => u.toString()).join('\n');
    if (!force && key === this.roots) return false;
    this.roots = key;
    this.ready = false;
    this.panel.webview.options = LensPanel.webviewOptions(this.context, images);
    const webview = this.panel.webview;
    const media = vscode.Uri.joinPath(this.context.extensionUri, 'media');
    this.panel.webview.html = panelHtml({
      cspSource: webview.cspSource,
      nonce: makeNonce(),
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(media, 'dist', 'panel.js')).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(media, 'panel.css')).toString(),
    });
    return true;
  }

  private withSrc(image: ImageView): ImageView {
    return { ...image, src: this.panel.webview.asWebviewUri(vscode.Uri.file(image.path)).toString() };
  }

  private withSources(msg: HostMessage): HostMessage {
    switch (msg.type) {
      case 'reset':
        return {
          type: 'reset',
          state: {
            ...msg.state,
            turns: msg.state.turns.map((t) => ({ ...t, images: t.images.map((i) => this.withSrc(i)) })),
            pending: msg.state.pending.map((i) => this.withSrc(i)),
          },
        };
      case 'turnStart':
        return { type: 'turnStart', turn: { ...msg.turn, images: msg.turn.images.map((i) => this.withSrc(i)) } };
      case 'pending':
        return { type: 'pending', images: msg.images.map((i) => this.withSrc(i)) };
      default:
        return msg;
    }
  }

  private post(msg: HostMessage): void {
    if (!this.ready || this.disposed) return; // `ready` brings a full reset
    void this.panel.webview.postMessage(this.withSources(msg));
  }

  private onMessage(raw: unknown): void {
    if (!isWebviewMessage(raw)) {
      this.actions.log(`[panel] ignored a malformed message from the webview`);
      return;
    }
    void this.handle(raw).catch((e) => this.actions.log(`[panel] ${raw.type}: ${e instanceof Error ? e.message : String(e)}`));
  }

  private async handle(m: WebviewMessage): Promise<void> {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.post({ type: 'reset', state: this.state });
        return;
      case 'send':
        if (m.text.trim()) this.actions.followUp(this, m.text.trim());
        return;
      case 'stop':
        this.actions.stop();
        return;
      case 'newConversation':
        this.conversation = undefined;
        this.update({ type: 'reset', state: { ...EMPTY_STATE, pending: this.state.pending } });
        this.actions.newConversation(this);
        return;
      case 'copy': {
        const t = this.turn(m.turnId);
        if (t) {
          await vscode.env.clipboard.writeText(t.answer);
          void vscode.window.setStatusBarMessage('LLaVA Lens: answer copied', 2000);
        }
        return;
      }
      case 'insert': {
        const t = this.turn(m.turnId);
        if (t) await this.actions.insertText(t.answer);
        return;
      }
      case 'openImage': {
        const known = this.state.turns.some((t) => t.images.some((i) => i.path === m.path));
        if (known) await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(m.path), { viewColumn: vscode.ViewColumn.One, preview: true });
        return;
      }
      case 'openLink':
        await this.openLink(m.href);
        return;
      case 'attach':
        await this.attachBytes(m.name, m.mimeType, m.base64);
        return;
      case 'attachUris':
        this.attachUris(m.uris);
        return;
      case 'removePending':
        this.update({ type: 'pending', images: this.state.pending.filter((_, i) => i !== m.index) });
        return;
    }
  }

  private async openLink(href: string): Promise<void> {
    if (!isSafeHref(href)) return;
    if (/^(https?|mailto):/i.test(href)) {
      await vscode.env.openExternal(vscode.Uri.parse(href, true));
      return;
    }
    const folder = vscode.workspace.workspaceFolders?.[0];
    if (!folder) return;
    const target = vscode.Uri.joinPath(folder.uri, decodeURIComponent(href.replace(/[?#].*$/, '')));
    try {
      await vscode.workspace.fs.stat(target);
      await vscode.commands.executeCommand('vscode.open', target, { viewColumn: vscode.ViewColumn.One });
    } catch {
      void vscode.window.showWarningMessage(`LLaVA Lens: the answer links to "${href}", which is not a file in this workspace.`);
    }
  }

  /** A pasted/dropped image: saved under the extension's storage (so it can be shown and sent by path). */
  private async attachBytes(name: string, mimeType: string, base64: string): Promise<void> {
    const ext = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif', 'image/webp': 'webp', 'image/bmp': 'bmp', 'image/svg+xml': 'svg', 'image/tiff': 'tiff', 'image/avif': 'avif' }[mimeType];
    if (!ext) {
      void vscode.window.showWarningMessage(`LLaVA Lens: "${name}" (${mimeType}) is not an image type it reads; paste a png, jpg, gif, webp, svg, bmp, tiff or avif image.`);
      return;
    }
    const bytes = Buffer.from(base64, 'base64');
    if (bytes.length === 0 || bytes.length > MAX_PASTED_BYTES) {
      void vscode.window.showWarningMessage(`LLaVA Lens: the pasted image is ${bytes.length === 0 ? 'empty' : 'larger than 50 MB'}.`);
      return;
    }
    const dir = path.join(this.context.globalStorageUri.fsPath, 'pasted');
    await fs.mkdir(dir, { recursive: true });
    const file = path.join(dir, `${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.${ext}`);
    await fs.writeFile(file, bytes);
    const shown = name && name !== 'image.png' && name !== 'pasted image' ? name : `pasted.${ext}`;
    this.update({ type: 'pending', images: [...this.state.pending, { path: file, name: shown }] });
    this.focusInput();
  }

  private attachUris(uris: string[]): void {
    const added: ImageView[] = [];
    const skipped: string[] = [];
    for (const raw of uris) {
      let uri: vscode.Uri;
      try {
        uri = vscode.Uri.parse(raw, true);
      } catch {
        continue;
      }
      if (uri.scheme !== 'file') continue;
      if (hasImageExtension(uri.fsPath)) added.push({ path: uri.fsPath, name: path.basename(uri.fsPath) });
      else skipped.push(path.basename(uri.fsPath));
    }
    if (skipped.length) void vscode.window.showWarningMessage(`LLaVA Lens: not images, left out: ${skipped.join(', ')}.`);
    if (added.length) {
      this.update({ type: 'pending', images: [...this.state.pending, ...added] });
      this.focusInput();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (LensPanel.current === this) LensPanel.current = undefined;
    if (this.deltaTimer) clearTimeout(this.deltaTimer);
    this.actions.stop();
    for (const d of this.disposables) d.dispose();
    this.panel.dispose();
  }
}
