/**
 * The asking flow: which images (explorer selection, the active image preview, a file picker),
 * checking them, the question, and streaming the daemon's answer and tool steps into the panel.
 * Every question ends its turn (done, cancelled or error) — nothing waits forever.
 * A remote daemon (`llavaLens.remote.url`) gets the images' bytes, read through
 * `vscode.workspace.fs`; the local daemon gets their paths.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { LensErrorCode } from '../../common/errors';
import type { AskParams, AskResult, ImageParam } from '../../common/protocol';
import { hasImageExtension } from './commandTable';
import type { LensDaemon } from './daemon/lensDaemon';
import { advice, adviceForDaemonError, type Advice } from './errorAdvice';
import { sniffImage, SNIFF_BYTES } from './imageFile';
import { imageBytesParam } from './imageParams';
import type { Notifier } from './notify';
import type { ImageView } from './panel/messages';
import { stepView, timingsView } from './panel/model';
import { LensPanel, type PanelActions } from './panel/panel';
import { toAskOptions, type LensSettings } from './settings';
import { panelStatusLine } from './statusText';

/** JSON-RPC codes vscode-jsonrpc uses when the connection went away under a pending request. */
const CONNECTION_LOST_CODES = new Set([-32097 /* PendingResponseRejected */, -32096 /* ConnectionInactive */]);

export interface AskRequest {
  images: vscode.Uri[];
  question: string;
}

export class Asker implements PanelActions {
  private readonly inFlight = new Map<string, vscode.CancellationTokenSource>();
  private lastTextEditor: vscode.TextEditor | undefined;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly daemon: LensDaemon,
    private readonly settings: () => LensSettings,
    private readonly notify: Notifier,
    readonly log: (line: string) => void,
  ) {
    this.lastTextEditor = vscode.window.activeTextEditor;
    context.subscriptions.push(
      vscode.window.onDidChangeActiveTextEditor((e) => {
        if (e) this.lastTextEditor = e;
      }),
      daemon.onDidChangeView((view) => {
        if (this.inFlight.size) LensPanel.active?.setStatusLine(panelStatusLine(view));
      }),
    );
  }

  get busy(): boolean {
    return this.inFlight.size > 0;
  }

  // -------------------------------------------------------------------------------------------
  // Images
  // -------------------------------------------------------------------------------------------

  /** The active tab's image when it is the built-in image preview. */
  static activePreviewImage(): vscode.Uri | undefined {
    const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    if (input instanceof vscode.TabInputCustom && input.viewType === 'imagePreview.previewEditor') return input.uri;
    return undefined;
  }

  /**
   * The images a command is about. Explorer: `(clicked, selected[])` — the whole selection when
   * the clicked file is in it. Editor title: `(uri)`. Keybinding/palette: the active image
   * preview, else a file picker. Undefined when the user cancelled the picker.
   */
  async targetImages(clicked?: unknown, selected?: unknown): Promise<vscode.Uri[] | undefined> {
    const isUri = (u: unknown): u is vscode.Uri => u instanceof vscode.Uri;
    if (Array.isArray(selected) && selected.length > 1 && selected.every(isUri)) return selected;
    if (isUri(clicked)) return [clicked];
    const preview = Asker.activePreviewImage();
    if (preview) return [preview];
    const picked = await vscode.window.showOpenDialog({
      canSelectMany: true,
      openLabel: 'Ask About Image',
      title: 'LLaVA Lens: choose image(s)',
      filters: { Images: ['png', 'jpg', 'jpeg', 'gif', 'webp', 'svg', 'bmp', 'tiff', 'tif', 'avif'] },
    });
    return picked?.length ? picked : undefined;
  }

  /**
   * Checks that each file is a readable image (by its first bytes). Non-images in a multi-file
   * selection are left out with a warning; if nothing usable is left, the user is told why with
   * a button to choose another file. Returns the usable images.
   */
  async checkImages(uris: vscode.Uri[], retry: (uris: vscode.Uri[]) => void): Promise<ImageView[] | undefined> {
    const ok: ImageView[] = [];
    const skipped: string[] = [];
    let firstProblem: Advice | undefined;
    for (const uri of uris) {
      const name = path.basename(uri.fsPath);
      if (uri.scheme !== 'file') {
        firstProblem ??= advice.unreadable(name, `only files on this machine can be read, not ${uri.scheme}: resources`);
        skipped.push(name);
        continue;
      }
      let head: Uint8Array;
      try {
        const handle = await fs.open(uri.fsPath, 'r');
        try {
          const stat = await handle.stat();
          if (!stat.isFile()) throw new Error('it is not a file');
          const buf = Buffer.alloc(SNIFF_BYTES);
          const { bytesRead } = await handle.read(buf, 0, SNIFF_BYTES, 0);
          head = buf.subarray(0, bytesRead);
        } finally {
          await handle.close();
        }
      } catch (e) {
        const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : e instanceof Error ? e.message : String(e);
        firstProblem ??= advice.unreadable(name, reason);
        skipped.push(name);
        continue;
      }
      if (!sniffImage(head)) {
        firstProblem ??= head.length === 0 ? advice.unreadable(name, 'the file is empty') : advice.notAnImage(name);
        skipped.push(name);
        continue;
      }
      ok.push({ path: uri.fsPath, name });
    }
    if (ok.length === 0) {
      void this.notify(firstProblem ?? advice.notAnImage(uris.map((u) => path.basename(u.fsPath)).join(', ')), retry);
      return undefined;
    }
    if (skipped.length) void this.notify(advice.someSkipped(skipped, ok.length));
    return ok;
  }

  // -------------------------------------------------------------------------------------------
  // Asking
  // -------------------------------------------------------------------------------------------

  /** A command's whole flow: images, checks, question (asked when `question` is undefined), answer in the panel. */
  async askAboutImages(uris: vscode.Uri[], question: string | undefined, explain?: AskParams['explain']): Promise<void> {
    const images = await this.checkImages(uris, (again) => void this.askAboutImages(again, question, explain));
    if (!images) return;
    const q = question ?? (await this.inputQuestion(images));
    if (!q) return;
    // Explain Screenshot / Diagram read the text first (OCR) and work on one image each.
    if (explain) for (const image of images) await this.ask([image], q, true, explain);
    else await this.ask(images, q, true);
  }

  /**
   * "Extract Text": the daemon's `ocr` tool on each image (no model involved). The panel shows
   * the copyable text in reading order as the answer, and a tool card with the boxes over the image.
   */
  async extractText(uris: vscode.Uri[]): Promise<void> {
    const images = await this.checkImages(uris, (again) => void this.extractText(again));
    if (!images) return;
    for (const image of images) {
      const panel = LensPanel.show(this.context, this, true);
      const turnId = panel.startTurn([image], 'Extract text', true);
      const cts = new vscode.CancellationTokenSource();
      this.inFlight.set(turnId, cts);
      this.daemon.inFlight++;
      try {
        const client = await this.daemon.ensureStarted();
        const [imageParam] = await this.imageParams([image]);
        const r = await client.runTool({ name: 'ocr', image: imageParam }, cts.token);
        panel.step(turnId, stepView({ streamId: '', index: 0, tool: 'ocr', args: {}, observation: r.summary, ...(r.artefacts ? { artefacts: r.artefacts } : {}), ...(r.error ? { error: r.error } : {}), ms: r.ms }));
        const data = r.data as { text?: string; lines?: unknown[] } | undefined;
        if (r.status === 'cancelled') panel.endTurn(turnId, 'cancelled', '', undefined, 'Stopped.');
        else if (r.error) panel.endTurn(turnId, 'error', '', undefined, `Text extraction failed: ${r.error}`);
        else {
          const n = data?.lines?.length ?? 0;
          panel.endTurn(turnId, 'done', data?.text ? '```text\n' + data.text.replace(/```/g, '`\u200b``') + '\n```' : '(no text found)', undefined, `${n} line${n === 1 ? '' : 's'} read by OCR (PP-OCRv4) in ${(r.ms / 1000).toFixed(1)} s.`);
        }
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        panel.endTurn(turnId, 'error', '', undefined, message);
        void this.notify(adviceForDaemonError((e as { code?: number }).code, message), (again) => void this.extractText(again));
      } finally {
        this.daemon.inFlight--;
        this.inFlight.delete(turnId);
        cts.dispose();
      }
    }
  }

  /**
   * The images as the daemon in use takes them: paths for the local daemon; for a remote one, the
   * files' bytes (it cannot read this machine's files), read through `vscode.workspace.fs`.
   * Call after `ensureStarted` (which decides local or remote). Rejects naming an unreadable or too large file.
   */
  private async imageParams(images: ImageView[]): Promise<ImageParam[]> {
    if (!this.daemon.remoteUrl) return images.map((i) => ({ path: i.path }));
    return Promise.all(images.map(async (i) => imageBytesParam(await vscode.workspace.fs.readFile(vscode.Uri.file(i.path)), i.name)));
  }

  async inputQuestion(images: ImageView[]): Promise<string | undefined> {
    const names = images.map((i) => i.name).join(', ');
    const q = await vscode.window.showInputBox({
      title: `LLaVA Lens: ask about ${names}`,
      prompt: 'Your question about the image(s)',
      placeHolder: 'What does this show?',
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? undefined : 'Type a question (or press Escape to cancel).'),
    });
    return q?.trim() || undefined;
  }

  /**
   * Asks in the panel. `newConversation` starts a daemon conversation; otherwise the panel's
   * conversation continues — or, when the daemon lost it (restart, window reload), the
   * conversation's images are sent again with a note.
   */
  async ask(imagesIn: ImageView[], question: string, newConversation: boolean, explain?: AskParams['explain']): Promise<void> {
    const panel = LensPanel.show(this.context, this, true);
    let images = imagesIn;
    let note: string | undefined;
    let conversationId: string | undefined;
    if (!newConversation) {
      const conv = panel.conversation;
      if (conv && conv.generation === this.daemon.generation && this.daemon.isRunning) {
        conversationId = conv.id;
      } else if (panel.snapshot.turns.length) {
        images = [...panel.conversationImages(), ...imagesIn];
        note = 'The daemon restarted since the earlier answers, so they are not in the model’s context; the images were sent again.';
      }
    }
    // A turn that starts a daemon conversation records every image sent with it (follow-ups after a restart re-send them).
    const startsConversation = conversationId === undefined;
    const turnId = panel.startTurn(startsConversation ? images : imagesIn, question, startsConversation);
    const cts = new vscode.CancellationTokenSource();
    this.inFlight.set(turnId, cts);
    let text = '';
    this.daemon.inFlight++;
    try {
      panel.setStatusLine(panelStatusLine(this.daemon.isRunning ? this.daemon.view : { phase: 'starting' }));
      const client = await this.daemon.ensureStarted();
      const limit = this.daemon.capabilities?.imagesPerPrompt;
      if (limit !== undefined && images.length > limit) {
        void this.notify(advice.tooManyImages(images.length, limit));
        images = images.slice(0, limit);
      }
      const params = {
        prompt: question,
        images: await this.imageParams(images),
        ...toAskOptions(this.settings(), images.length),
        ...(explain ? { explain } : {}),
        ...(conversationId ? { conversationId } : {}),
      };
      let result: AskResult;
      try {
        result = await client.ask(
          params,
          (d) => {
            text += d.text;
            if (text.length === d.text.length) panel.setStatusLine('');
            panel.delta(turnId, d.text);
          },
          cts.token,
          (step) => panel.step(turnId, stepView(step)),
        );
      } catch (e) {
        if (conversationId && (e as { code?: number }).code === LensErrorCode.UnknownConversation) {
          // The daemon no longer knows the conversation: ask again with the conversation's images.
          note = 'The daemon no longer had this conversation, so the earlier answers are not in the model’s context; the images were sent again.';
          images = [...panel.conversationImages(), ...imagesIn];
          result = await client.ask({ ...params, conversationId: undefined, images: await this.imageParams(images) }, (d) => {
            text += d.text;
            panel.delta(turnId, d.text);
          }, cts.token, (step) => panel.step(turnId, stepView(step)));
        } else {
          throw e;
        }
      }
      panel.conversation = { id: result.conversationId, generation: this.daemon.generation };
      const cancelled = result.finishReason === 'cancelled';
      const endNote = [note, cancelled ? 'Stopped.' : result.finishReason === 'length' ? `Stopped at the token limit (llavaLens.maxNewTokens).` : undefined]
        .filter(Boolean)
        .join(' ');
      panel.endTurn(turnId, cancelled ? 'cancelled' : 'done', result.text, timingsView(result), endNote || undefined);
    } catch (e) {
      const code = (e as { code?: number }).code;
      const message = e instanceof Error ? e.message : String(e);
      if (cts.token.isCancellationRequested && this.daemon.view.phase !== 'failed') {
        // Stopped before the daemon took the question (still starting or loading).
        panel.endTurn(turnId, 'cancelled', text, undefined, 'Stopped.');
      } else if (code !== undefined && CONNECTION_LOST_CODES.has(code)) {
        // The daemon went away mid-answer; LensDaemon already told the user and restarts it.
        panel.endTurn(turnId, 'error', text, undefined, 'The daemon stopped while answering, so this answer was lost. Ask again.');
      } else if (this.daemon.view.phase === 'failed' && code === undefined) {
        panel.endTurn(turnId, 'error', text, undefined, this.daemon.view.message);
      } else {
        const a = adviceForDaemonError(code, message);
        panel.endTurn(turnId, 'error', text, undefined, message);
        void this.notify(a, (uris) => void this.askAboutImages(uris, question));
      }
      this.log(`[ask] failed: ${message}`);
    } finally {
      this.daemon.inFlight--;
      this.inFlight.delete(turnId);
      cts.dispose();
      if (!this.inFlight.size) panel.setStatusLine('');
    }
  }

  /** A question without the panel (alt text): returns the answer text; cancellable from the progress notification. */
  async askQuietly(image: ImageView, question: string, token: vscode.CancellationToken): Promise<AskResult> {
    const client = await this.daemon.ensureStarted();
    this.daemon.inFlight++;
    try {
      const result = await client.ask({ prompt: question, images: await this.imageParams([image]), ...toAskOptions(this.settings()) }, undefined, token);
      void client.forgetConversation(result.conversationId).catch(() => undefined);
      return result;
    } finally {
      this.daemon.inFlight--;
    }
  }

  // -------------------------------------------------------------------------------------------
  // PanelActions
  // -------------------------------------------------------------------------------------------

  followUp(panel: LensPanel, text: string): void {
    const pending = panel.takePending();
    const fresh = panel.snapshot.turns.length === 0;
    void this.ask(pending, text, fresh);
  }

  stop(): void {
    for (const cts of this.inFlight.values()) cts.cancel();
  }

  newConversation(panel: LensPanel): void {
    this.stop();
    panel.conversation = undefined;
  }

  async insertText(text: string): Promise<void> {
    const editor = vscode.window.visibleTextEditors.find((e) => e === this.lastTextEditor) ?? vscode.window.visibleTextEditors[0];
    if (!editor) {
      await vscode.env.clipboard.writeText(text);
      void vscode.window.showInformationMessage('LLaVA Lens: no text editor is open to insert into, so the answer was copied to the clipboard.');
      return;
    }
    await editor.edit((b) => {
      for (const sel of editor.selections) b.replace(sel, text);
    });
    await vscode.window.showTextDocument(editor.document, editor.viewColumn);
  }

  /** Files (from a drop or the picker) that are images, by extension. */
  static imageUris(uris: readonly vscode.Uri[]): vscode.Uri[] {
    return uris.filter((u) => hasImageExtension(u.fsPath));
  }
}
