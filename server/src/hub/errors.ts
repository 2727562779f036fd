/**
 * Errors of the Hub download module. Every failure is a `LensError` so the daemon can hand it to
 * a client unchanged. The download-specific codes (1060-1063) are in `common/errors.ts`.
 *
 * Codes used from `common/errors.ts` as they are: InvalidParams (bad repo id, precision not in
 * the repository), InvalidModelFolder (the repository is not in the layout the runtime reads),
 * Busy (another pull of the same repository runs), Cancelled.
 */
import { LensError, LensErrorCode } from '../../../common/errors';

export const HubErrorCode = {
  RepoNotFound: LensErrorCode.RepoNotFound,
  AccessDenied: LensErrorCode.AccessDenied,
  DownloadFailed: LensErrorCode.DownloadFailed,
  DownloadCorrupt: LensErrorCode.DownloadCorrupt,
} as const;

export type HubErrorCodeValue = (typeof HubErrorCode)[keyof typeof HubErrorCode];

export function hubError(code: HubErrorCodeValue | LensErrorCode, message: string, data?: unknown): LensError {
  return new LensError(code as LensErrorCode, message, data);
}

export function cancelledError(what: string): LensError {
  return new LensError(LensErrorCode.Cancelled, `${what} was cancelled; run it again to resume (finished files and partial downloads are kept).`);
}

const LOCAL_FAILURES = new Set(['ENOSPC', 'EACCES', 'EPERM', 'EROFS', 'EISDIR', 'ENOTDIR', 'EMFILE', 'ABORT_ERR']);

/**
 * Errors worth another attempt: network failures and 5xx/429 answers (a `LensError` says so with
 * `data.retryable`). Disk errors and aborts are not.
 */
export function isRetryable(e: unknown): boolean {
  if (e instanceof LensError) return (e.data as { retryable?: boolean } | undefined)?.retryable === true;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if ((e as Error | undefined)?.name === 'AbortError') return false;
  return !(code !== undefined && LOCAL_FAILURES.has(code));
}
