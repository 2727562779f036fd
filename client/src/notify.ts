/**
 * Shows an `Advice` (errorAdvice.ts) as a notification whose buttons run the fix. Thin 'vscode'
 * layer; `chooseImage` asks the owner what to do with a picked file (usually: ask again).
 */
import * as vscode from 'vscode';
import { fixLabel, type Advice, type FixAction } from './errorAdvice';

export type Notifier = (advice: Advice, onChooseImage?: (uris: vscode.Uri[]) => void) => Promise<void>;

export function createNotifier(log: (line: string) => void): Notifier {
  return async (advice, onChooseImage) => {
    log(`[${advice.severity}] ${advice.message}`);
    const show =
      advice.severity === 'error'
        ? vscode.window.showErrorMessage
        : advice.severity === 'warning'
          ? vscode.window.showWarningMessage
          : vscode.window.showInformationMessage;
    const actions = advice.actions.filter((a) => a.kind !== 'chooseImage' || onChooseImage);
    const picked = await show(advice.message, ...actions.map(fixLabel));
    const action = actions.find((a) => fixLabel(a) === picked);
    if (action) await runFix(action, onChooseImage);
  };
}

export async function runFix(action: FixAction, onChooseImage?: (uris: vscode.Uri[]) => void): Promise<void> {
  switch (action.kind) {
    case 'openSetting':
      await vscode.commands.executeCommand('workbench.action.openSettings', action.setting);
      return;
    case 'openSettings':
      await vscode.commands.executeCommand('llavaLens.openSettings');
      return;
    case 'showLogs':
      await vscode.commands.executeCommand('llavaLens.showLogs');
      return;
    case 'restartDaemon':
      await vscode.commands.executeCommand('llavaLens.restartDaemon');
      return;
    case 'setRemoteToken':
      await vscode.commands.executeCommand('llavaLens.setRemoteToken');
      return;
    case 'setBackendApiKey':
      await vscode.commands.executeCommand('llavaLens.setBackendApiKey');
      return;
    case 'selectModel':
      await vscode.commands.executeCommand('llavaLens.selectModel');
      return;
    case 'downloadModel':
      await vscode.commands.executeCommand('llavaLens.downloadModel', ...(action.params ? [action.params] : []));
      return;
    case 'openUrl':
      await vscode.env.openExternal(vscode.Uri.parse(action.url));
      return;
    case 'chooseImage': {
      const uris = await pickImages(true);
      if (uris?.length && onChooseImage) onChooseImage(uris);
      return;
    }
  }
}

/** The file picker for images. */
export async function pickImages(canSelectMany: boolean): Promise<vscode.Uri[] | undefined> {
  return vscode.window.showOpenDialog({
    canSelectMany,
    openLabel: 'Ask About Image',
    title: 'LLaVA Lens: choose image(s)',
    filters: { Images: ['png', 'jpg', 'jpeg', 'gif', 'webp', 'svg', 'bmp', 'tiff', 'tif', 'avif'] },
  });
}
