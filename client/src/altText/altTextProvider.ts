/**
 * Markdown and HTML: a Hint diagnostic on images without alt text (`llavaLens.altTextDiagnostics.enabled`)
 * and the code actions "Describe Image" (asks in the panel) and "Generate Alt Text" (asks the
 * model, then writes the alt text as one undoable WorkspaceEdit). Parsing lives in imageRefs.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ALT_TEXT_QUESTION, PRESET_QUESTIONS } from '../commandTable';
import { advice, adviceForDaemonError } from '../errorAdvice';
import type { Asker } from '../asker';
import type { Notifier } from '../notify';
import type { LensSettings } from '../settings';
import { altTextEdit, cleanAltText, findImageRefs, lacksAltText, localImagePath, refAt, relocateRef, type ImageRef } from './imageRefs';

export const ALT_TEXT_LANGUAGES = ['markdown', 'html'] as const;
export const MISSING_ALT_CODE = 'missing-alt-text';
const DIAGNOSTIC_DELAY_MS = 300;

function isRefLanguage(doc: vscode.TextDocument): boolean {
  return (ALT_TEXT_LANGUAGES as readonly string[]).includes(doc.languageId);
}

function rangeOf(doc: vscode.TextDocument, start: number, end: number): vscode.Range {
  return new vscode.Range(doc.positionAt(start), doc.positionAt(end));
}

export class AltTextFeatures implements vscode.CodeActionProvider, vscode.Disposable {
  static readonly providedCodeActionKinds = [vscode.CodeActionKind.QuickFix, vscode.CodeActionKind.RefactorRewrite, vscode.CodeActionKind.Empty];

  private readonly diagnostics = vscode.languages.createDiagnosticCollection('llavaLens.altText');
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly asker: Asker,
    private readonly settings: () => LensSettings,
    private readonly notify: Notifier,
  ) {
    this.disposables.push(
      this.diagnostics,
      vscode.languages.registerCodeActionsProvider(
        ALT_TEXT_LANGUAGES.map((language) => ({ language })),
        this,
        { providedCodeActionKinds: AltTextFeatures.providedCodeActionKinds },
      ),
      vscode.workspace.onDidOpenTextDocument((d) => this.schedule(d)),
      vscode.workspace.onDidChangeTextDocument((e) => this.schedule(e.document)),
      vscode.workspace.onDidCloseTextDocument((d) => this.diagnostics.delete(d.uri)),
    );
    this.refreshAll();
  }

  /** Re-checks every open Markdown/HTML document (after the setting changed). */
  refreshAll(): void {
    if (!this.settings().altTextDiagnostics) {
      this.diagnostics.clear();
      return;
    }
    for (const d of vscode.workspace.textDocuments) this.update(d);
  }

  private schedule(doc: vscode.TextDocument): void {
    if (!isRefLanguage(doc)) return;
    const key = doc.uri.toString();
    clearTimeout(this.timers.get(key));
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        this.update(doc);
      }, DIAGNOSTIC_DELAY_MS),
    );
  }

  private update(doc: vscode.TextDocument): void {
    if (!isRefLanguage(doc) || doc.isClosed) return;
    if (!this.settings().altTextDiagnostics) {
      this.diagnostics.delete(doc.uri);
      return;
    }
    const list: vscode.Diagnostic[] = [];
    for (const ref of findImageRefs(doc.getText(), doc.languageId)) {
      if (!lacksAltText(ref)) continue;
      const d = new vscode.Diagnostic(
        rangeOf(doc, ref.start, ref.end),
        'Image without alt text: screen readers cannot describe it. LLaVA Lens can write one (Generate Alt Text).',
        vscode.DiagnosticSeverity.Hint,
      );
      d.source = 'LLaVA Lens';
      d.code = MISSING_ALT_CODE;
      list.push(d);
    }
    this.diagnostics.set(doc.uri, list);
  }

  provideCodeActions(doc: vscode.TextDocument, range: vscode.Range | vscode.Selection, context: vscode.CodeActionContext): vscode.CodeAction[] {
    const refs = findImageRefs(doc.getText(), doc.languageId);
    const start = doc.offsetAt(range.start);
    const end = doc.offsetAt(range.end);
    const ref = refs.find((r) => r.start <= end && r.end >= start);
    if (!ref || !localImagePath(ref.src)) return [];
    const args = [doc.uri, ref.start];
    const missing = context.diagnostics.filter((d) => d.code === MISSING_ALT_CODE && d.source === 'LLaVA Lens');
    const generate = new vscode.CodeAction('Generate Alt Text', missing.length ? vscode.CodeActionKind.QuickFix : vscode.CodeActionKind.RefactorRewrite);
    generate.command = { command: 'llavaLens.generateAltText', title: 'Generate Alt Text', arguments: args };
    if (missing.length) {
      generate.diagnostics = missing;
      generate.isPreferred = true;
    }
    const describe = new vscode.CodeAction('Describe Image', vscode.CodeActionKind.Empty);
    describe.command = { command: 'llavaLens.describeImage', title: 'Describe Image', arguments: args };
    return [generate, describe];
  }

  // -------------------------------------------------------------------------------------------
  // Commands
  // -------------------------------------------------------------------------------------------

  /** The document and reference a command is about: from the code action's arguments, else the cursor. */
  private async target(uriArg?: unknown, offsetArg?: unknown): Promise<{ doc: vscode.TextDocument; ref: ImageRef } | undefined> {
    let doc: vscode.TextDocument | undefined;
    let offset: number | undefined;
    if (uriArg instanceof vscode.Uri && typeof offsetArg === 'number') {
      doc = await vscode.workspace.openTextDocument(uriArg);
      offset = offsetArg;
    } else {
      const editor = vscode.window.activeTextEditor;
      if (editor && isRefLanguage(editor.document)) {
        doc = editor.document;
        offset = doc.offsetAt(editor.selection.active);
      }
    }
    if (!doc || offset === undefined) return undefined;
    const ref = refAt(findImageRefs(doc.getText(), doc.languageId), offset);
    return ref ? { doc, ref } : undefined;
  }

  /** The image file a reference points to, or undefined (after telling the user) for remote images. */
  private imageUri(doc: vscode.TextDocument, ref: ImageRef): vscode.Uri | undefined {
    const local = localImagePath(ref.src);
    if (!local) {
      void this.notify(advice.remoteImage(ref.src));
      return undefined;
    }
    const folder = vscode.workspace.getWorkspaceFolder(doc.uri) ?? vscode.workspace.workspaceFolders?.[0];
    const candidates: string[] = [];
    if (local.fromRoot && folder) candidates.push(path.join(folder.uri.fsPath, local.path));
    if (path.isAbsolute(local.path)) candidates.push(local.path);
    else candidates.push(path.resolve(path.dirname(doc.uri.fsPath), local.path));
    const found = candidates.find((c) => fs.existsSync(c)) ?? candidates[0];
    return vscode.Uri.file(found);
  }

  async describeImage(uriArg?: unknown, offsetArg?: unknown): Promise<void> {
    const t = await this.target(uriArg, offsetArg);
    if (!t) {
      void this.notify(advice.noImageRef(), (uris) => void this.asker.askAboutImages(uris, PRESET_QUESTIONS['llavaLens.describeImage']));
      return;
    }
    const uri = this.imageUri(t.doc, t.ref);
    if (uri) await this.asker.askAboutImages([uri], PRESET_QUESTIONS['llavaLens.describeImage']);
  }

  async generateAltText(uriArg?: unknown, offsetArg?: unknown): Promise<void> {
    const t = await this.target(uriArg, offsetArg);
    if (!t) {
      void this.notify(advice.noImageRef());
      return;
    }
    const uri = this.imageUri(t.doc, t.ref);
    if (!uri) return;
    const images = await this.asker.checkImages([uri], () => undefined);
    if (!images) return;
    const image = images[0];
    let text: string;
    try {
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `LLaVA Lens: writing alt text for ${image.name}…`, cancellable: true },
        (_progress, token) => this.asker.askQuietly(image, ALT_TEXT_QUESTION, token),
      );
      if (result.finishReason === 'cancelled') return;
      text = result.text;
    } catch (e) {
      const code = (e as { code?: number }).code;
      const message = e instanceof Error ? e.message : String(e);
      this.asker.log(`[alt text] failed: ${message}`);
      if (code !== undefined) void this.notify(adviceForDaemonError(code, message));
      return;
    }
    const alt = cleanAltText(text);
    if (!alt) {
      void vscode.window.showWarningMessage(`LLaVA Lens: the model gave no usable alt text for ${image.name}; try again or write it yourself.`);
      return;
    }
    // The document may have changed while the model answered: find the reference again.
    const doc = t.doc;
    const now = relocateRef(findImageRefs(doc.getText(), doc.languageId), t.ref);
    if (!now) {
      void vscode.window.showWarningMessage(`LLaVA Lens: the image reference to ${t.ref.src} changed while the alt text was written; nothing was edited.`);
      return;
    }
    const e = altTextEdit(now, alt);
    const edit = new vscode.WorkspaceEdit();
    edit.replace(doc.uri, rangeOf(doc, e.start, e.end), e.text);
    const applied = await vscode.workspace.applyEdit(edit);
    if (!applied) void vscode.window.showWarningMessage('LLaVA Lens: the alt text could not be written (is the file read-only?).');
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const d of this.disposables) d.dispose();
  }
}
