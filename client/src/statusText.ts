/**
 * What the status bar item shows for a daemon state: the text (`$(eye) LLaVA Lens: …`) and a
 * Markdown-free tooltip with the details. Pure.
 */
import type { LensStatus } from '../../common/protocol';
import { describeTuning } from '../../common/tuning';

/** The extension's view of the daemon: not started yet, the daemon's own `lens/status`, or stopped. */
export type DaemonView =
  | { phase: 'idle' }
  | { phase: 'preparing'; message: string }
  | { phase: 'starting' }
  | { phase: 'running'; status: LensStatus }
  | { phase: 'failed'; message: string };

export interface StatusPresentation {
  text: string;
  tooltip: string;
  /** True when the item should use the error background. */
  error: boolean;
}

const PREFIX = '$(eye) LLaVA Lens';

function mib(bytes: number): string {
  return `${Math.round(bytes / (1024 * 1024))} MiB`;
}

/**
 * `remoteUrl`: the shared daemon in use (`llavaLens.remote.url`); `backend`: the serving engine the
 * local daemon generates on (`llavaLens.backend.*`). Both are shown in the tooltip.
 */
export function presentStatus(view: DaemonView, extra: { remoteUrl?: string; backend?: { baseUrl: string; model: string } } = {}): StatusPresentation {
  const lines: string[] = [];
  let text: string;
  let error = false;
  switch (view.phase) {
    case 'idle':
      text = PREFIX;
      lines.push('The daemon starts on first use (Ask About Image, or a model action).');
      break;
    case 'preparing':
      text = `${PREFIX}: starting…`;
      lines.push(view.message);
      break;
    case 'starting':
      text = `${PREFIX}: starting…`;
      lines.push(extra.remoteUrl ? `Connecting to ${extra.remoteUrl}…` : 'Starting the daemon…');
      break;
    case 'failed':
      text = `${PREFIX}: error`;
      error = true;
      lines.push(view.message);
      break;
    case 'running': {
      const s = view.status;
      const model = s.model;
      switch (s.state) {
        case 'starting':
          text = `${PREFIX}: starting…`;
          break;
        case 'loading':
          text = `${PREFIX}: loading ${Math.round(s.percent ?? 0)}%`;
          break;
        case 'busy':
          text = `${PREFIX}: busy`;
          break;
        case 'error':
          text = `${PREFIX}: error`;
          error = true;
          break;
        case 'ready':
          text = model ? `${PREFIX}: ${s.device ?? model.device} · ${model.name}` : `${PREFIX}: no model`;
          break;
      }
      if (s.message) lines.push(s.message);
      if (model && model.device === 'remote') {
        // A model on an OpenAI-compatible server: its path is the server's URL, no precision here.
        lines.push(`Model: ${model.name}`);
        lines.push(`Server: ${model.path} (OpenAI-compatible)`);
        lines.push('Device: remote');
      } else if (model) {
        lines.push(`Model: ${model.name}${model.isTestModel ? ' (tiny test model, random weights)' : ''}`);
        lines.push(`Folder: ${model.path}`);
        lines.push(`Device: ${s.device ?? model.device}`);
        const dtypes = Object.entries(model.dtype)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
        lines.push(`Precision: ${dtypes}`);
        lines.push(`Graph tuning: ${describeTuning(model.tuning)}`);
      } else if (s.state !== 'loading') {
        lines.push('No model loaded.');
      }
      if (s.queueLength > 0) lines.push(`Waiting requests: ${s.queueLength}`);
      lines.push(`Daemon memory: ${mib(s.rssBytes)}`);
      break;
    }
  }
  if (extra.remoteUrl) lines.push(`Remote daemon: ${extra.remoteUrl} (shared; its operator chooses the model)`);
  else if (extra.backend) lines.push(`Backend: ${extra.backend.model} at ${extra.backend.baseUrl} (llavaLens.backend.model chooses the model)`);
  lines.push('Click for actions.');
  return { text, tooltip: lines.join('\n'), error };
}

/** The line the panel shows while a question waits on the daemon ('' once the answer streams). */
export function panelStatusLine(view: DaemonView): string {
  switch (view.phase) {
    case 'idle':
      return '';
    case 'preparing':
      return view.message;
    case 'starting':
      return 'Starting the LLaVA Lens daemon…';
    case 'failed':
      return view.message;
    case 'running': {
      const s = view.status;
      if (s.state === 'loading') return `Loading the model ${Math.round(s.percent ?? 0)}%…`;
      if (s.state === 'starting') return 'Starting the LLaVA Lens daemon…';
      if (s.state === 'busy' && s.stage && s.stage.stage !== 'generate') return s.message ?? `Working (${s.stage.stage})…`;
      if (s.state === 'busy' && s.queueLength > 0) return `${s.queueLength} request(s) waiting…`;
      return '';
    }
  }
}
