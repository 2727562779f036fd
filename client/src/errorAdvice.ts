/**
 * Every failure the user can meet, as the notification it becomes: a message saying what went
 * wrong and what to do, and the buttons that fix it. Pure: `notify.ts` turns a `FixAction` into
 * a command. No spinner ends without one of these or an answer.
 */
import { LensErrorCode } from '../../common/errors';
import type { DownloadModelParams } from '../../common/protocol';
import { IMAGE_EXTENSIONS } from './commandTable';

export type FixAction =
  | { kind: 'openSetting'; setting: string; label?: string }
  | { kind: 'showLogs' }
  | { kind: 'restartDaemon'; label?: string }
  | { kind: 'setRemoteToken' }
  | { kind: 'setBackendApiKey' }
  | { kind: 'selectModel' }
  | { kind: 'chooseImage' }
  | { kind: 'openSettings' }
  /** "Download Model…"; with `params`, that download again (Retry / Resume) without the picks. */
  | { kind: 'downloadModel'; label?: string; params?: DownloadModelParams }
  | { kind: 'openUrl'; url: string; label: string };

/** What `adviceForDaemonError` knows about a failed `lens/downloadModel`, for Retry and the repository's page. */
export interface DownloadContext {
  params: DownloadModelParams;
  /** The Hub the daemon asks (`HF_ENDPOINT`, else https://huggingface.co). */
  endpoint: string;
}

export interface Advice {
  severity: 'error' | 'warning' | 'info';
  message: string;
  actions: FixAction[];
}

export function fixLabel(a: FixAction): string {
  switch (a.kind) {
    case 'openSetting':
      return a.label ?? 'Open Setting';
    case 'showLogs':
      return 'Show Logs';
    case 'restartDaemon':
      return a.label ?? 'Restart Daemon';
    case 'setRemoteToken':
      return 'Set Token…';
    case 'setBackendApiKey':
      return 'Set API Key…';
    case 'selectModel':
      return 'Select Model…';
    case 'chooseImage':
      return 'Choose Image…';
    case 'openSettings':
      return 'Open Settings';
    case 'downloadModel':
      return a.label ?? 'Download Model…';
    case 'openUrl':
      return a.label;
  }
}

const IMAGE_LIST = IMAGE_EXTENSIONS.filter((e) => e !== 'tif').join(', ');

export const advice = {
  notAnImage(name: string): Advice {
    return {
      severity: 'error',
      message: `LLaVA Lens: "${name}" is not an image it can read. Choose a ${IMAGE_LIST} file.`,
      actions: [{ kind: 'chooseImage' }],
    };
  },
  unreadable(name: string, reason: string): Advice {
    return {
      severity: 'error',
      message: `LLaVA Lens: could not read "${name}" (${reason}). Check that the file exists and is readable, or choose another image.`,
      actions: [{ kind: 'chooseImage' }],
    };
  },
  someSkipped(skipped: string[], used: number): Advice {
    return {
      severity: 'warning',
      message: `LLaVA Lens: left out ${skipped.length} file(s) that are not images (${skipped.slice(0, 3).join(', ')}${skipped.length > 3 ? ', …' : ''}); asking about ${used} image(s).`,
      actions: [],
    };
  },
  tooManyImages(given: number, limit: number): Advice {
    return {
      severity: 'warning',
      message: `LLaVA Lens: the model takes at most ${limit} image(s) per question; asking about the first ${limit} of ${given}.`,
      actions: [{ kind: 'selectModel' }],
    };
  },
  /**
   * A remote daemon (`llavaLens.remote.url`) could not be reached or refused the connection.
   * `status` is the HTTP status of a refusal (401 token, 403 origin/address), `noToken` when no
   * token is stored, `reason` the daemon's own words (or the network error).
   */
  remoteConnectFailed(url: string, reason: string, o: { status?: number; noToken?: boolean } = {}): Advice {
    if (o.noToken) {
      return {
        severity: 'error',
        message: `LLaVA Lens: no token is set for the remote daemon at ${url}. Set it (the daemon's operator has it; the daemon says where it keeps it when it starts), or clear llavaLens.remote.url to use a local daemon.`,
        actions: [{ kind: 'setRemoteToken' }, { kind: 'openSettings' }],
      };
    }
    if (o.status === 401) {
      return {
        severity: 'error',
        message: `LLaVA Lens: the remote daemon at ${url} refused the token (${reason}). Set the daemon's current token.`,
        actions: [{ kind: 'setRemoteToken' }, { kind: 'openSettings' }],
      };
    }
    if (o.status !== undefined) {
      return {
        severity: 'error',
        message: `LLaVA Lens: the remote daemon at ${url} refused the connection (${reason}). Ask its operator to allow this client, or change llavaLens.remote.url.`,
        actions: [{ kind: 'openSettings' }, { kind: 'setRemoteToken' }, { kind: 'showLogs' }],
      };
    }
    return {
      severity: 'error',
      message: `LLaVA Lens: could not connect to the remote daemon at ${url} (${reason}). Check that it runs and the URL, then retry.`,
      actions: [{ kind: 'restartDaemon', label: 'Retry' }, { kind: 'openSettings' }, { kind: 'showLogs' }],
    };
  },
  remoteDropped(url: string, lostAnswer: boolean): Advice {
    return {
      severity: 'warning',
      message:
        `LLaVA Lens: the connection to the remote daemon at ${url} dropped; reconnecting.` +
        (lostAnswer ? ' The answer in flight was lost (ask again); the conversation stays in the panel.' : ''),
      actions: [{ kind: 'showLogs' }],
    };
  },
  remoteGaveUp(url: string, reason: string): Advice {
    return {
      severity: 'error',
      message: `LLaVA Lens: could not reconnect to the remote daemon at ${url} (${reason}). Check that it runs, then reconnect.`,
      actions: [{ kind: 'restartDaemon', label: 'Reconnect' }, { kind: 'openSettings' }, { kind: 'showLogs' }],
    };
  },
  /** `backend.kind` is "openai" but its base URL or model is not set (`message` from `toDaemonSpawn`): nothing is spawned. */
  backendIncomplete(message: string): Advice {
    return {
      severity: 'error',
      message: `LLaVA Lens: ${message}`,
      actions: [{ kind: 'openSetting', setting: 'llavaLens.backend', label: 'Open Settings' }],
    };
  },
  /** "Select Model…" with a serving engine: its model is a setting, not a folder. */
  modelFromBackend(baseUrl: string, model: string): Advice {
    return {
      severity: 'info',
      message:
        `LLaVA Lens generates on the OpenAI-compatible server at ${baseUrl}, with the model llavaLens.backend.model names (${model ? `now "${model}"` : 'not set yet'}). ` +
        'Change that setting to use another model the server serves, or set llavaLens.backend.kind to "onnx" to choose a local model folder.',
      actions: [{ kind: 'openSetting', setting: 'llavaLens.backend.model', label: 'Open Setting' }],
    };
  },
  testModelNotice(): Advice {
    return {
      severity: 'info',
      message:
        'LLaVA Lens is using its embedded tiny test model: it has random weights, so its answers are meaningless text. Choose a real LLaVA-family ONNX model folder to get real answers.',
      actions: [{ kind: 'selectModel' }, { kind: 'openSettings' }],
    };
  },
  defaultModelFailed(reason: string): Advice {
    return {
      severity: 'error',
      message: `LLaVA Lens: no model is configured and the embedded test model could not be generated (${reason}). Choose a model folder in the settings.`,
      actions: [{ kind: 'selectModel' }, { kind: 'openSetting', setting: 'llavaLens.model', label: 'Open Setting' }, { kind: 'showLogs' }],
    };
  },
  daemonDidNotStart(reason: string): Advice {
    return {
      severity: 'error',
      message: `LLaVA Lens: the daemon did not start (${reason}).`,
      actions: [{ kind: 'showLogs' }, { kind: 'restartDaemon' }, { kind: 'openSetting', setting: 'llavaLens.daemon.nodePath', label: 'Node Path Setting' }],
    };
  },
  daemonRestarted(lostAnswer: boolean): Advice {
    return {
      severity: 'warning',
      message: lostAnswer
        ? 'LLaVA Lens: the daemon stopped unexpectedly and was restarted. The answer in flight was lost (ask again); the conversation stays in the panel, and the model is being reloaded.'
        : 'LLaVA Lens: the daemon stopped unexpectedly and was restarted; nothing was lost (the model is being reloaded).',
      actions: [{ kind: 'showLogs' }],
    };
  },
  daemonGaveUp(lostAnswer: boolean): Advice {
    return {
      severity: 'error',
      message:
        'LLaVA Lens: the daemon keeps stopping, so it was not restarted again' +
        (lostAnswer ? ' (the answer in flight was lost)' : '') +
        '. See the logs, then restart it.',
      actions: [{ kind: 'showLogs' }, { kind: 'restartDaemon' }],
    };
  },
  settingsProblems(problems: string[]): Advice {
    return { severity: 'warning', message: `LLaVA Lens: ${problems.join(' ')}`, actions: [{ kind: 'openSettings' }] };
  },
  noClipboardImage(reason: string): Advice {
    return {
      severity: 'warning',
      message: `LLaVA Lens: no image found on the clipboard (${reason}). Copy an image, or paste it into the LLaVA Lens panel (Ctrl+V / Cmd+V), or choose a file.`,
      actions: [{ kind: 'chooseImage' }],
    };
  },
  noImageRef(): Advice {
    return {
      severity: 'info',
      message: 'LLaVA Lens: put the cursor on an image reference (![alt](path) or <img src="…">) in a Markdown or HTML file, or choose an image.',
      actions: [{ kind: 'chooseImage' }],
    };
  },
  /** "Download Model…" with a shared daemon: nothing is sent; its operator downloads models. */
  downloadOnRemote(url: string): Advice {
    return {
      severity: 'info',
      message: `LLaVA Lens uses the shared daemon at ${url}, whose models are its operator's: they download one on the daemon's machine (llava-lens pull owner/name), then you can pick it with Select Model….`,
      actions: [{ kind: 'selectModel' }],
    };
  },
  downloadCancelled(params: DownloadModelParams): Advice {
    return {
      severity: 'info',
      message: `LLaVA Lens: the download of ${params.repo} was cancelled. The files fetched so far are kept: downloading it again resumes.`,
      actions: [{ kind: 'downloadModel', label: 'Resume', params }],
    };
  },
  remoteImage(src: string): Advice {
    return {
      severity: 'warning',
      message: `LLaVA Lens: "${src}" is not a local file; LLaVA Lens only reads images in your workspace. Download it into the workspace first.`,
      actions: [],
    };
  },
};

/**
 * A failed daemon request as advice, from its JSON-RPC error code and message. `download` (a
 * failed `lens/downloadModel`) adds Retry and the repository's page where they help.
 */
export function adviceForDaemonError(code: number | undefined, message: string, download?: DownloadContext): Advice {
  const text = `LLaVA Lens: ${message}`;
  const retry: FixAction[] = download ? [{ kind: 'downloadModel', label: 'Retry', params: download.params }] : [];
  if (download && (code === LensErrorCode.InvalidModelFolder || code === LensErrorCode.InvalidParams)) {
    // Not a layout the runtime reads, or no file in the precision asked for: choose again.
    return { severity: 'error', message: text, actions: [{ kind: 'downloadModel', label: 'Download Model…' }, { kind: 'showLogs' }] };
  }
  switch (code) {
    case LensErrorCode.RepoNotFound:
      return {
        severity: 'error',
        message: `${text} Check the repository id (owner/name, as in its Hub address); a private repository also needs HF_TOKEN set for the daemon.`,
        actions: [{ kind: 'downloadModel', label: 'Download Model…' }, { kind: 'showLogs' }],
      };
    case LensErrorCode.AccessDenied:
      return {
        severity: 'error',
        message:
          `${text} Set HF_TOKEN to a Hugging Face access token that may read it (for a gated model, accept its terms on its page first): ` +
          'run `huggingface-cli login` (the daemon reads that token at each download) or start VS Code with HF_TOKEN set, then retry.',
        actions: [
          ...(download ? [{ kind: 'openUrl', url: `${download.endpoint.replace(/\/+$/, '')}/${download.params.repo}`, label: 'Open Model Page' } as const] : []),
          ...retry,
          { kind: 'showLogs' },
        ],
      };
    case LensErrorCode.DownloadFailed:
      return { severity: 'error', message: `${text} The files fetched so far are kept: Retry resumes.`, actions: [...retry, { kind: 'showLogs' }] };
    case LensErrorCode.DownloadCorrupt:
      return { severity: 'error', message: text, actions: [...retry, { kind: 'showLogs' }] };
    case LensErrorCode.ImageTooLarge:
      return {
        severity: 'error',
        message: `${text} Raise llavaLens.maxImageMegapixels or use a smaller image.`,
        actions: [{ kind: 'openSetting', setting: 'llavaLens.maxImageMegapixels', label: 'Open Setting' }],
      };
    case LensErrorCode.ImageNotFound:
    case LensErrorCode.ImageDecodeFailed:
    case LensErrorCode.UnsupportedImage:
      return { severity: 'error', message: text, actions: [{ kind: 'chooseImage' }] };
    case LensErrorCode.ModelNotLoaded:
    case LensErrorCode.InvalidModelFolder:
    case LensErrorCode.ModelLoadFailed:
      return { severity: 'error', message: text, actions: [{ kind: 'selectModel' }, { kind: 'showLogs' }] };
    case LensErrorCode.DeviceUnavailable:
      return {
        severity: 'error',
        message: text,
        actions: [{ kind: 'openSetting', setting: 'llavaLens.device', label: 'Device Setting' }, { kind: 'showLogs' }],
      };
    case LensErrorCode.BackendFailed:
      // The serving engine (llavaLens.backend.*) failed: its URL, key or model, or the server itself.
      return {
        severity: 'error',
        message: text,
        actions: [{ kind: 'openSetting', setting: 'llavaLens.backend', label: 'Backend Settings' }, { kind: 'setBackendApiKey' }, { kind: 'showLogs' }],
      };
    case LensErrorCode.PromptTooLong:
      return { severity: 'error', message: `${text} Ask with fewer images or a shorter question, or start a new conversation.`, actions: [] };
    case LensErrorCode.Busy:
      return { severity: 'warning', message: text, actions: [] };
    case LensErrorCode.InvalidParams:
      return { severity: 'error', message: text, actions: [{ kind: 'openSettings' }, { kind: 'showLogs' }] };
    default:
      return { severity: 'error', message: text, actions: [{ kind: 'showLogs' }, { kind: 'restartDaemon' }] };
  }
}
