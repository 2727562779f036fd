/**
 * Computes the daemon's `lens/status` from its parts. Each session sends it to its client when
 * something other than `rssBytes` changed, starting after `initialized` (LSP wants no
 * server-initiated messages before the client finished initializing).
 */
import type { AskStage, LensState, LensStatus, ModelInfo } from '../../../common/protocol';

export interface StatusInputs {
  initialized: boolean;
  /** Label of the running queue job, if any. */
  running: string | undefined;
  queueLength: number;
  loading: { percent: number; message: string } | undefined;
  lastLoadError: string | undefined;
  model: ModelInfo | undefined;
  /** Stage of the running ask, if any. */
  stage?: AskStage;
}

/** "Encoding image 1/2 (view 3/10)"-style text for a running ask's stage. */
export function describeStage(s: AskStage): string {
  const of = s.index !== undefined && s.total !== undefined && s.total > 1 ? ` ${s.index + 1}/${s.total}` : '';
  switch (s.stage) {
    case 'image':
      return `Reading image${of}`;
    case 'vision':
      return `Encoding image${of ? ` (view${of})` : ''}`;
    case 'prefill':
      return 'Reading the prompt';
    case 'generate':
      return 'Answering';
  }
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
    status.message = s.stage && s.running === 'lens/ask' ? describeStage(s.stage) : `Running ${s.running}`;
    if (s.stage && s.running === 'lens/ask') status.stage = s.stage;
  } else if (state === 'ready') {
    status.message = s.model ? `${s.model.name} on ${s.model.device}` : 'No model loaded';
  }
  if (s.model && state !== 'loading') {
    status.model = s.model;
    status.device = s.model.device;
  }
  return status;
}
