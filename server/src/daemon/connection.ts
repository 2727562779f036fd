/**
 * Builds the daemon's LSP `Connection` over any message reader/writer pair.
 *
 * Why not `createConnection` from `vscode-languageserver/node`: that one calls `process.exit` on
 * the `exit` notification and when a raw input stream ends, and starts a parent-process timer
 * that keeps the event loop alive. Library code must not end the process (and in-process tests
 * must survive `exit`), so here the "watchdog" only reports: the process entry decides.
 */
import { createConnection, createProtocolConnection } from 'vscode-languageserver';
import type { Connection } from 'vscode-languageserver/node';
import type { MessageReader, MessageWriter } from 'vscode-jsonrpc';

export interface ConnectionHooks {
  /**
   * Called after the `exit` notification was handled: code 0 when `shutdown` came first, else 1
   * (LSP semantics). The process entry exits here; tests record it.
   */
  onExit?: (code: number) => void;
  /**
   * Called when the client process named in `initialize.processId` is gone (checked every 3 s
   * with an unref'd timer). Only wanted by the process entry.
   */
  onParentGone?: () => void;
}

export function createDaemonConnection(reader: MessageReader, writer: MessageWriter, hooks: ConnectionHooks = {}): Connection {
  let shutdownReceived = false;
  let parentTimer: NodeJS.Timeout | undefined;
  const watchDog = {
    initialize(params: { processId: number | null }): void {
      const pid = params.processId;
      if (hooks.onParentGone && typeof pid === 'number' && parentTimer === undefined) {
        parentTimer = setInterval(() => {
          try {
            process.kill(pid, 0);
          } catch {
            clearInterval(parentTimer);
            hooks.onParentGone?.();
          }
        }, 3000);
        parentTimer.unref();
      }
    },
    get shutdownReceived() {
      return shutdownReceived;
    },
    set shutdownReceived(value: boolean) {
      shutdownReceived = value;
    },
    exit(code: number): void {
      if (parentTimer) clearInterval(parentTimer);
      hooks.onExit?.(code);
    },
  };
  // Once a write failed or the transport closed, log lines have nowhere to go (see `quiet`).
  let transportDown = false;
  writer.onError(() => (transportDown = true));
  writer.onClose(() => (transportDown = true));
  return createConnection((logger) => createProtocolConnection(reader, writer, quiet(logger, () => transportDown)), watchDog);
}

type Logger = Parameters<typeof createProtocolConnection>[2];

/**
 * vscode-jsonrpc logs through the client's console (window/logMessage), e.g. when the reply to a
 * request cannot be sent because the client went away; on a closed connection that logging
 * itself throws, and would surface as an unhandled rejection. Logging must never fail.
 *
 * Nor loop: a failed send is logged ("Sending notification failed.") through this console, whose
 * own send fails and is logged again, and so on — an endless chain of promise callbacks that
 * starves the event loop (a WebSocket client that went away while the daemon sent it a
 * notification hung the whole shared daemon). So nothing is sent once `transportDown()`.
 */
function quiet(logger: Logger, transportDown: () => boolean): Logger {
  if (!logger) return logger;
  const safe = (f: (m: string) => void) => (m: string) => {
    if (transportDown()) return;
    try {
      f.call(logger, m);
    } catch {
      // the client is gone: nobody to tell
    }
  };
  return { error: safe(logger.error), warn: safe(logger.warn), info: safe(logger.info), log: safe(logger.log) };
}
