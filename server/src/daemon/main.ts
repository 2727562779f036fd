/**
 * Daemon process entry: `node out/server/src/daemon/main.js serve --stdio | --node-ipc`.
 *
 * This is the only daemon file that ends the process. In stdio mode stdout carries the protocol,
 * so every log line (ours, and `console.*` from any module) goes to stderr.
 *
 * Test hook: `LLAVA_LENS_ENGINE=/abs/module.js` makes the daemon use that module's
 * `createEngine(init, {log})` instead of the ONNX engine (the CLI e2e tests use a fake engine).
 */
import * as util from 'node:util';
import { IPCMessageReader, IPCMessageWriter, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type { MessageReader, MessageWriter } from 'vscode-jsonrpc';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { LensInitializationOptions } from '../../../common/protocol';
import { availableProviders } from '../runtime/backend';
import type { Engine } from '../runtime/types';
import { WorkerEngine } from '../runtime/workerEngine';
import { createDaemonConnection } from './connection';
import { startDaemon, type EngineFactory } from './server';
import { SERVE_USAGE } from '../cli/help';

function logLine(line: string): void {
  process.stderr.write(line.endsWith('\n') ? line : line + '\n');
}

/** An engine whose every model call explains that the runtime could not be loaded. */
function unavailableEngine(reason: string): Engine {
  const fail = (): never => {
    throw new LensError(LensErrorCode.ModelLoadFailed, `The ONNX engine could not be started: ${reason}. Reinstall llava-lens (npm install) and retry.`);
  };
  return { load: async () => fail(), unload: async () => {}, info: () => undefined, ask: async () => fail(), forget: () => {} };
}

/** The engine the daemon uses: the test hook's module, else the ONNX engine on a worker thread. */
export function defaultEngineFactory(log: (msg: string) => void): EngineFactory {
  return (init: LensInitializationOptions) => {
    const hook = process.env.LLAVA_LENS_ENGINE;
    try {
      if (hook) {
        const mod = require(hook) as { createEngine(init: LensInitializationOptions, o: { log: (m: string) => void }): Engine };
        return mod.createEngine(init, { log });
      }
      // The worker-thread engine keeps the daemon responsive (status, queue, cancel) while
      // onnxruntime computes.
      const limits = init.maxHistoryTurns !== undefined ? { maxHistoryTurns: init.maxHistoryTurns } : undefined;
      return new WorkerEngine(limits ? { log, limits } : { log });
    } catch (e) {
      const reason = e instanceof Error ? e.message.split('\n')[0] : String(e);
      log(`[error] engine unavailable: ${reason}`);
      return unavailableEngine(reason);
    }
  };
}


/**
 * Runs the daemon until the client sends `exit` or goes away. Returns an exit code for usage
 * errors; otherwise the process ends from inside (exit notification, closed stdin, dead parent).
 */
export function runServe(argv: string[]): number | undefined {
  const stdio = argv.includes('--stdio');
  const ipc = argv.includes('--node-ipc');
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  if (stdio === ipc) {
    process.stderr.write(`llava-lens serve: choose exactly one of --stdio or --node-ipc.\n\n${SERVE_USAGE}`);
    return 2;
  }

  // stdout belongs to the protocol in stdio mode: route console.* to stderr everywhere.
  for (const level of ['log', 'info', 'warn', 'debug', 'error'] as const) {
    console[level] = (...args: unknown[]) => logLine(util.format(...args));
  }
  process.on('unhandledRejection', (reason) => logLine(`[error] unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}`));
  process.on('uncaughtException', (err) => logLine(`[error] uncaught exception: ${err.stack ?? err.message}`));

  let reader: MessageReader;
  let writer: MessageWriter;
  if (stdio) {
    reader = new StreamMessageReader(process.stdin);
    writer = new StreamMessageWriter(process.stdout);
  } else {
    reader = new IPCMessageReader(process);
    writer = new IPCMessageWriter(process);
  }

  let exitCode = 1;
  const connection = createDaemonConnection(reader, writer, {
    onExit: (code) => {
      exitCode = code;
      process.exit(code);
    },
    onParentGone: () => {
      logLine('[info] the client process is gone; exiting');
      process.exit(1);
    },
  });
  const clientGone = () => process.exit(exitCode);
  if (stdio) {
    process.stdin.on('end', clientGone);
    process.stdin.on('close', clientGone);
  } else {
    process.on('disconnect', clientGone);
  }
  // Over stdio, logs go to stderr (the CLI shows its tail on errors) and to the client; over
  // node-ipc the extension's language client already shows stderr, so logs go to the client
  // only (window/logMessage), once.
  const engineLog = stdio ? logLine : (m: string) => connection.console.info(m);
  startDaemon(connection, defaultEngineFactory(engineLog), { executionProviders: availableProviders, ...(stdio ? { log: logLine } : {}) });
  return undefined;
}

if (require.main === module) {
  const [command, ...rest] = process.argv.slice(2);
  if (command !== 'serve') {
    process.stderr.write(SERVE_USAGE);
    process.exitCode = 2;
  } else {
    const code = runServe(rest);
    if (code !== undefined) process.exitCode = code;
  }
}
