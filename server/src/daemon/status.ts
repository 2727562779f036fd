/**
 * Computes the daemon's `lens/status` from its parts and sends it when something other than
 * `rssBytes` changed. Sending starts with `enable()` (after `initialized`: LSP wants no
 * server-initiated messages before the client finished initializing).
 */
import type { LensState, LensStatus, ModelInfo } from '../../../common/protocol';

export interface StatusInputs {
  initialized: boolean;
  /** Label of the running queue job, if any. */
  running: string | undefined;
  queueLength: number;
  loading: { percent: number; message: string } | undefined;
  lastLoadError: string | undefined;
  model: ModelInfo | undefined;
}

export function computeStatus(s: StatusInputs, rssBytes: number): LensStatus {
  let state: LensState;
  if (!s.initialized) state = 'starting';
  else if (s.loading || s.running === 'lens/loadModel') state = 'loading';
  else if (s.running) state = 'busy';
  else state = s.lastLoadError ? 'error' : 'ready';

  const status: LensStatus = { state, rssBytes, queueLength: s.queueLength };
  if (state === 'loading') {
    status.percent = Math.round(s.loading?.percent ?? 0);
    status.message = s.loading?.message ?? 'Loading model';
  } else if (state === 'error') {
    status.message = s.lastLoadError;
  } else if (state === 'busy') {
    status.message = `Running ${s.running}`;
  } else if (state === 'ready') {
    status.message = s.model ? `${s.model.name} on ${s.model.device}` : 'No model loaded';
  }
  if (s.model && state !== 'loading') {
    status.model = s.model;
    status.device = s.model.device;
  }
  return status;
}

export class StatusReporter {
  private enabled = false;
  private lastKey = '';

  constructor(
    private readonly inputs: () => StatusInputs,
    private readonly send: (s: LensStatus) => void,
  ) {}

  enable(): void {
    this.enabled = true;
    this.update();
  }

  /** The status as it is now. */
  current(): LensStatus {
    return computeStatus(this.inputs(), process.memoryUsage().rss);
  }

  /** Recomputes and sends when it changed. */
  update(): void {
    if (!this.enabled) return;
    const status = this.current();
    const { rssBytes: _rss, ...rest } = status;
    const key = JSON.stringify(rest);
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.send(status);
  }
}
