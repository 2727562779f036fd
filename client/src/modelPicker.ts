/**
 * "Select Model…": the models found under `llavaLens.modelFolders` and in the daemon's models
 * folder, where "Download Model…" puts them (via `lens/listModels`), the embedded test model, a
 * folder chosen on disk, or — when few models are installed — "Download Model…". The choice is
 * written to `llavaLens.model` (workspace settings when a folder is open), and the settings
 * listener loads it (`useModelFolder`).
 *
 * With a remote daemon (`llavaLens.remote.url`) the model is its operator's choice: the list is
 * the daemon's own `lens/listModels` (its folders, on its machine), and picking one loads it there
 * (for every client of that daemon) after a confirmation; nothing is written to the settings.
 *
 * With a serving engine (`llavaLens.backend.kind` "openai") the model is `llavaLens.backend.model`:
 * a message says so, with a button that opens that setting.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ModelEntry } from '../../common/protocol';
import { cacheDir, DEFAULT_PRESET } from '../../server/src/cli/defaultModel';
import type { LensDaemon } from './daemon/lensDaemon';
import type { LensClient } from './daemonClient';
import { FEW_MODELS, mergeModelLists } from './downloadChoices';
import { advice } from './errorAdvice';
import { createNotifier } from './notify';
import { SECTION, type LensSettings } from './settings';

interface ModelItem extends vscode.QuickPickItem {
  action: 'model' | 'embedded' | 'browse' | 'addFolder' | 'download';
  path?: string;
}

/**
 * Makes `folder` the model: writes `llavaLens.model` (workspace settings when a folder is open),
 * which the settings listener loads; when it is already the setting, loads it again (a download
 * may have added files).
 */
export async function useModelFolder(folder: string, daemon: LensDaemon, settings: () => LensSettings): Promise<void> {
  if (settings().model === folder) {
    await daemon.reloadModel();
    return;
  }
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await vscode.workspace.getConfiguration(SECTION).update('model', folder, target);
}

/**
 * What a private daemon lists: its models folder and the roots it started with (`lens/listModels`
 * without roots), plus `llavaLens.modelFolders` as they are now; the embedded test model's
 * folder is left out (it has its own item).
 */
async function listInstalled(client: LensClient, folders: string[]): Promise<ModelEntry[]> {
  const lists = await Promise.all([client.listModels({}), ...(folders.length ? [client.listModels({ roots: folders })] : [])]);
  return mergeModelLists(
    lists.map((l) => l.models),
    [path.join(cacheDir(process.env), 'models', DEFAULT_PRESET)],
  );
}

function variantsText(m: ModelEntry): string {
  const d = m.variants.decoder_model_merged;
  return d.length ? `decoder: ${d.join(', ')}` : '';
}

export async function selectModel(daemon: LensDaemon, settings: () => LensSettings, log: (line: string) => void): Promise<void> {
  const s = settings();
  if (s.remoteUrl) return selectRemoteModel(daemon, s.remoteUrl, log);
  if (s.backend === 'openai') return createNotifier(log)(advice.modelFromBackend(s.backendBaseUrl || '(llavaLens.backend.baseUrl, not set)', s.backendModel));
  const items: ModelItem[] = [];
  let models: ModelEntry[] = [];
  try {
    models = await listInstalled(await daemon.ensureStarted(), s.modelFolders);
  } catch (e) {
    log(`[models] listing failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  for (const m of models) {
    items.push({
      action: 'model',
      path: m.path,
      label: `${m.path === s.model ? '$(check) ' : ''}${m.name}`,
      description: `${m.modelType} ${variantsText(m)}`.trim(),
      detail: m.path,
    });
  }
  if (models.length === 0) {
    items.push({
      action: 'addFolder',
      label: '$(folder-library) Add a folder to scan for models…',
      detail: s.modelFolders.length ? `No models found in ${s.modelFolders.join(', ')}` : 'llavaLens.modelFolders is empty',
    });
  }
  if (models.length < FEW_MODELS) {
    items.push({
      action: 'download',
      label: '$(cloud-download) Download Model…',
      detail: 'From the Hugging Face Hub: LLaVA-OneVision or LLaVA-Interleave 0.5B, or any repository in the ONNX layout',
    });
  }
  items.push(
    { action: 'browse', label: '$(folder-opened) Choose a model folder…', detail: 'A Hugging Face ONNX export (config.json + onnx/)' },
    {
      action: 'embedded',
      label: `${s.model === '' ? '$(check) ' : ''}Embedded test model (tiny-onevision)`,
      detail: 'Random weights: answers are meaningless; for trying LLaVA Lens out',
    },
  );
  const picked = await vscode.window.showQuickPick(items, { title: 'LLaVA Lens: select a model', matchOnDetail: true });
  if (!picked) return;
  const config = vscode.workspace.getConfiguration(SECTION);
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  switch (picked.action) {
    case 'model':
      await config.update('model', picked.path, target);
      return;
    case 'embedded':
      await config.update('model', '', target);
      return;
    case 'download':
      await vscode.commands.executeCommand('llavaLens.downloadModel');
      return;
    case 'browse': {
      const dir = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, openLabel: 'Use This Model', title: 'LLaVA Lens: choose a model folder' });
      if (dir?.[0]) await config.update('model', dir[0].fsPath, target);
      return;
    }
    case 'addFolder': {
      const dir = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, openLabel: 'Scan This Folder', title: 'LLaVA Lens: a folder holding model folders' });
      if (dir?.[0]) {
        await config.update('modelFolders', [...s.modelFolders, dir[0].fsPath], vscode.ConfigurationTarget.Global);
        await selectModel(daemon, settings, log);
      }
      return;
    }
  }
}

interface RemoteModelItem extends vscode.QuickPickItem {
  path?: string;
}

async function selectRemoteModel(daemon: LensDaemon, url: string, log: (line: string) => void): Promise<void> {
  let client;
  try {
    client = await daemon.ensureStarted();
  } catch {
    return; // LensDaemon told the user why
  }
  let models: ModelEntry[] = [];
  try {
    models = (await client.listModels({})).models;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    log(`[models] listing the remote daemon's models failed: ${message}`);
    void vscode.window.showErrorMessage(`LLaVA Lens: the daemon at ${url} did not list its models (${message}).`);
    return;
  }
  const current = client.lastStatus?.model?.path ?? daemon.capabilities?.modelLoaded?.path;
  const items: RemoteModelItem[] = models.map((m) => ({
    path: m.path,
    label: `${m.path === current ? '$(check) ' : ''}${m.name}`,
    description: `${m.modelType} ${variantsText(m)}`.trim(),
    detail: m.path,
  }));
  if (items.length === 0) items.push({ label: `The daemon at ${url} lists no models`, detail: 'Its operator chooses its model folders (on the daemon’s machine).' });
  const picked = await vscode.window.showQuickPick(items, { title: `LLaVA Lens: models of the daemon at ${url}`, matchOnDetail: true });
  if (!picked?.path || picked.path === current) return;
  const load = 'Load for Everyone';
  const ok = await vscode.window.showWarningMessage(
    `Load ${picked.label} in the shared daemon at ${url}? It replaces the model for every client of that daemon.`,
    { modal: true },
    load,
  );
  if (ok !== load) return;
  const path = picked.path;
  try {
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LLaVA Lens: loading ${path} at ${url}`, cancellable: true }, (progress, token) =>
      client.loadModel({ path }, (p) => progress.report({ message: p.message ?? '' }), token),
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    log(`[models] loading ${path} at ${url} failed: ${message}`);
    void vscode.window.showErrorMessage(`LLaVA Lens: the daemon at ${url} did not load ${path} (${message}).`);
  }
}
