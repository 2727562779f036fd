/**
 * Adapts vscode-languageclient's `LanguageClient` to the `LensConnection` that `LensClient`
 * (client/src/daemonClient.ts) talks through. The LanguageClient owns the real connection: it
 * starts the daemon, sends `initialize`/`initialized`, and re-creates the connection after a
 * crash; notification and progress handlers registered on it survive those restarts, so one
 * `LensClient` serves every daemon process of a session.
 */
import type { LanguageClient } from 'vscode-languageclient/node';
import type { LensConnection } from '../daemonClient';

type AnyFn = (...args: unknown[]) => unknown;

export function lensConnectionFor(client: LanguageClient): LensConnection {
  // The LanguageClient methods have the same shapes as MessageConnection's for the calls LensClient
  // makes (typed request/notification constants, params, a cancellation token), but TypeScript
  // cannot match the two overload sets, hence the casts.
  const sendRequest = (client.sendRequest as AnyFn).bind(client);
  const sendNotification = (client.sendNotification as AnyFn).bind(client);
  const onNotification = (client.onNotification as AnyFn).bind(client);
  const onProgress = (client.onProgress as AnyFn).bind(client);
  const adapter = {
    sendRequest: (...args: unknown[]) => sendRequest(...args),
    sendNotification: (...args: unknown[]) => sendNotification(...args),
    onNotification: (...args: unknown[]) => onNotification(...args),
    onProgress: (...args: unknown[]) => onProgress(...args),
    // The LanguageClient listens and disposes its own connection.
    listen: () => undefined,
    dispose: () => undefined,
  };
  return adapter as unknown as LensConnection;
}
