/**
 * The daemon's error boundary: everything a handler throws becomes a JSON-RPC `ResponseError`.
 * `LensError` keeps its code and message; `ResponseError` passes through; anything else is a bug,
 * answered as `Internal` and logged with its stack. Nothing here ends the process.
 */
import { ResponseError } from 'vscode-jsonrpc';
import { LensError, LensErrorCode } from '../../../common/errors';

export function invalidParams(message: string): LensError {
  return new LensError(LensErrorCode.InvalidParams, message);
}

export function toResponseError(e: unknown, method: string, logError: (msg: string) => void): ResponseError<unknown> {
  if (e instanceof ResponseError) return e;
  if (e instanceof LensError) return new ResponseError(e.code, e.message, e.data);
  const err = e instanceof Error ? e : new Error(String(e));
  logError(`${method} failed unexpectedly: ${err.stack ?? err.message}`);
  return new ResponseError(
    LensErrorCode.Internal,
    `${method} failed unexpectedly: ${err.message}. The daemon is still running; retry, and if it keeps failing report it with the daemon log.`,
  );
}
