/**
 * Daemon process entry: `node out/server/src/daemon/main.js serve --stdio | --node-ipc | --ws <port>`.
 *
 * This is the only daemon file that ends the process. In stdio mode stdout carries the protocol,
 * so every log line (ours, and `console.*` from any module) goes to stderr.
 *
 * Test hook: `LLAVA_LENS_ENGINE=/abs/module.js` makes the daemon use that module's
 * `createEngine(init, {log})` instead of the ONNX engine (the CLI e2e tests use a fake engine).
 *
 * Started without `DAEMON_NODE_FLAGS` (nodeFlags.ts), the entry re-runs itself with them and relays
 * to that child; the daemon logs the node flags it runs with at start.
 *
 * `--backend openai` replaces the ONNX engine by an OpenAI-compatible server (openai/backend.ts)
 * wrapped in the tool loop; `serve --ws` also answers OpenAI clients on its port (openai/endpoint.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as util from 'node:util';
import { IPCMessageReader, IPCMessageWriter, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type { MessageReader, MessageWriter } from 'vscode-jsonrpc';
import { LensError, LensErrorCode } from '../../../common/errors';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../../common/wsTransport';
import { AgentEngine } from '../agent/agentEngine';
import { OpenAiEngine } from '../openai/backend';
import { openAiEndpoint } from '../openai/endpoint';
import type { LensInitializationOptions } from '../../../common/protocol';
import { availableProviders } from '../runtime/backend';
import type { Engine } from '../runtime/types';
import { WorkerEngine } from '../runtime/workerEngine';
import { createDaemonConnection } from './connection';
import { DaemonCore } from './core';
import { describeNodeFlags, relaunchServe } from './nodeFlags';
import { parseServeFlags, type BackendFlags, type ServeFlags } from './serveFlags';
import { startDaemon, type EngineFactory } from './server';
import { defaultStateDir, ensureStateDir, loadOrCreateToken, type TokenSource } from './stateDir';
import { isLoopback, serveWebSocket, type WsServer } from './wsServer';
import { SERVE_USAGE } from '../cli/help';
import { describeTuning } from '../../../common/tuning';

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

/** Saved conversations not continued for this long are deleted when an engine starts. */
const PERSISTED_CONVERSATION_DAYS = 7;

/** The API key `--api-key-env` names; throws (a usage error) when that variable is not set. */
function backendKey(backend: BackendFlags): string | undefined {
  if (backend.apiKeyEnv === undefined) return undefined;
  const key = process.env[backend.apiKeyEnv]?.trim();
  if (!key) throw new Error(`--api-key-env ${backend.apiKeyEnv}: that environment variable is not set (or empty); set it to the server's API key.`);
  return key;
}

/**
 * The engine the daemon uses: the test hook's module, else with `backend` an OpenAI-compatible
 * server (in the tool loop, on this thread: the work is the server's), else the ONNX engine on a
 * worker thread. `stateDir` turns on persisted conversations (runtime/conversationLog.ts; the
 * remote backend keeps its conversations in memory only).
 */
export function defaultEngineFactory(log: (msg: string) => void, persist: { stateDir?: string } = {}, kv: { maxKvBytes?: number; maxKvBytesPerOwner?: number } = {}, backend?: BackendFlags): EngineFactory {
  return (init: LensInitializationOptions) => {
    const hook = process.env.LLAVA_LENS_ENGINE;
    try {
      if (hook) {
        const mod = require(hook) as { createEngine(init: LensInitializationOptions, o: { log: (m: string) => void }): Engine };
        return mod.createEngine(init, { log });
      }
      if (backend) {
        const apiKey = backendKey(backend);
        return new AgentEngine(
          new OpenAiEngine({ baseUrl: backend.baseUrl, model: backend.model, log, nativeTools: backend.tools === 'api', ...(apiKey ? { apiKey } : {}), ...(init.maxHistoryTurns !== undefined ? { maxHistoryTurns: init.maxHistoryTurns } : {}) }),
        );
      }
      // The worker-thread engine keeps the daemon responsive (status, queue, cancel) while
      // onnxruntime computes.
      const limits = { ...(init.maxHistoryTurns !== undefined ? { maxHistoryTurns: init.maxHistoryTurns } : {}), ...kv };
      return new WorkerEngine({ log, limits, ...(persist.stateDir ? { stateDir: persist.stateDir, conversationMaxAgeMs: PERSISTED_CONVERSATION_DAYS * 86_400_000 } : {}) });
    } catch (e) {
      const reason = e instanceof Error ? e.message.split('\n')[0] : String(e);
      log(`[error] engine unavailable: ${reason}`);
      return unavailableEngine(reason);
    }
  };
}


/** Routes every `console.*` line to stderr (stdout carries the protocol in stdio mode) and logs process-level failures. */
function logToStderr(): void {
  for (const level of ['log', 'info', 'warn', 'debug', 'error'] as const) {
    console[level] = (...args: unknown[]) => logLine(util.format(...args));
  }
  process.on('unhandledRejection', (reason) => logLine(`[error] unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}`));
  process.on('uncaughtException', (err) => logLine(`[error] uncaught exception: ${err.stack ?? err.message}`));
}

/** The state folder for persisted conversations, or undefined with --no-persist. */
function persistDir(flags: ServeFlags): string | undefined {
  if (flags.noPersist) return undefined;
  return ensureStateDir(flags.stateDir ?? defaultStateDir());
}

/**
 * Runs the daemon. Private modes (stdio, node-ipc) run until the client sends `exit` or goes
 * away; `--ws` runs until SIGINT/SIGTERM. Returns an exit code for usage errors.
 */
export function runServe(argv: string[]): number | undefined | Promise<number | undefined> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  let flags: ServeFlags;
  try {
    flags = parseServeFlags(argv);
    if (flags.backend) backendKey(flags.backend);
  } catch (e) {
    process.stderr.write(`llava-lens serve: ${(e as Error).message}\n\n${SERVE_USAGE}`);
    return 2;
  }
  if (flags.mode === 'ws') return runShared(flags);
  const stdio = flags.mode === 'stdio';
  logToStderr();
  logLine(`[info] ${describeNodeFlags()}`);

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
  const stateDir = persistDir(flags);
  startDaemon(connection, defaultEngineFactory(engineLog, stateDir ? { stateDir } : {}, {}, flags.backend), {
    executionProviders: availableProviders,
    ...(stdio ? { log: logLine } : {}),
    core: { limits: flags.limits, ...(flags.graphTuning !== undefined ? { graphTuning: flags.graphTuning } : {}) },
  });
  return undefined;
}

/** `serve --ws`: one engine, many clients, until SIGINT/SIGTERM. */
async function runShared(flags: ServeFlags): Promise<number | undefined> {
  logToStderr();
  logLine(`[info] ${describeNodeFlags()}`);
  let token: TokenSource;
  const stateDir = ensureStateDir(flags.stateDir ?? defaultStateDir());
  try {
    token = loadOrCreateToken(stateDir);
  } catch (e) {
    process.stderr.write(`llava-lens serve: ${(e as Error).message}\n`);
    return 2;
  }
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (flags.tlsCert || flags.tlsKey) {
    try {
      tls = { cert: fs.readFileSync(flags.tlsCert!), key: fs.readFileSync(flags.tlsKey!) };
    } catch (e) {
      process.stderr.write(`llava-lens serve: cannot read the TLS certificate or key (${(e as Error).message}).\n`);
      return 2;
    }
  }
  const modelRoots = [...flags.modelRoots, ...(flags.model ? [path.dirname(flags.model)] : [])];
  const engineInit: LensInitializationOptions = flags.maxHistoryTurns !== undefined ? { maxHistoryTurns: flags.maxHistoryTurns } : {};
  const persist = flags.noPersist ? {} : { stateDir };
  const factory = defaultEngineFactory(logLine, persist, {
    ...(flags.maxKvMb !== undefined ? { maxKvBytes: flags.maxKvMb * 1024 * 1024 } : {}),
    ...(flags.maxKvMbPerClient !== undefined ? { maxKvBytesPerOwner: flags.maxKvMbPerClient * 1024 * 1024 } : {}),
  }, flags.backend);
  const core = new DaemonCore(() => factory(engineInit), { shared: true, limits: flags.limits, modelRoots, ...(flags.graphTuning !== undefined ? { graphTuning: flags.graphTuning } : {}), log: (level, line) => logLine(`[${level}] ${line}`) });
  const openai = openAiEndpoint(core, { token: token.token, allowedOrigins: flags.allowedOrigins, maxBodyBytes: flags.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, log: logLine });
  let server: WsServer;
  try {
    server = await serveWebSocket(core, {
      port: flags.port!,
      host: flags.host,
      token: token.token,
      allowRemote: flags.allowRemote,
      allowedOrigins: flags.allowedOrigins,
      ...(tls ? { tls } : {}),
      ...(flags.maxMessageBytes !== undefined ? { maxMessageBytes: flags.maxMessageBytes } : {}),
      ...(flags.maxConnections !== undefined ? { maxConnections: flags.maxConnections } : {}),
      executionProviders: availableProviders,
      log: logLine,
      httpHandler: openai.handle,
    });
  } catch (e) {
    process.stderr.write(`llava-lens serve: ${(e as Error).message}\n`);
    return 2;
  }
  // Before the "listening" line: whoever waits for it may signal at once.
  const stop = (signal: string) => {
    logLine(`[info] ${signal}: stopping`);
    openai.close();
    void server.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  if (!isLoopback(flags.host)) {
    logLine(`[warn] listening on ${flags.host}: reachable from other machines${tls ? '' : ' WITHOUT TLS (the token travels in clear text; use --tls-cert/--tls-key)'}. Remote clients send image bytes, never paths.`);
  }
  logLine(`[info] LLaVA Lens daemon listening on ${server.url} (token from ${token.from}; state in ${stateDir}${flags.noPersist ? ', conversations not persisted' : ''})`);
  logLine(`[info] OpenAI-compatible API at ${server.url.replace(/^ws/, 'http')}/v1 (POST /chat/completions, GET /models; the same token as a Bearer key)`);
  if (flags.backend) {
    const b = flags.backend;
    core.loadModel(b.model, {}, 'operator', () => undefined).then(
      (info) => logLine(`[info] loaded ${info.name} on ${info.device} (${b.baseUrl})`),
      (e: unknown) => logLine(`[error] could not load ${b.model} from ${b.baseUrl}: ${e instanceof Error ? e.message : String(e)}`),
    );
  }
  if (flags.model) {
    const model = path.resolve(flags.model);
    core.loadModel(model, { device: flags.device ?? 'auto', maxImagePixels: core.limits.maxImagePixels, maxImageBytes: core.limits.maxImageBytes, ...(flags.dtype ? { dtype: flags.dtype } : {}) }, 'operator', () => undefined).then(
      (info) => logLine(`[info] loaded ${info.name} on ${info.device}; graph tuning ${describeTuning(info.tuning)}`),
      (e: unknown) => logLine(`[error] could not load ${model}: ${e instanceof Error ? e.message : String(e)}`),
    );
  }
  return undefined;
}

if (require.main === module) {
  const [command, ...rest] = process.argv.slice(2);
  if (command !== 'serve') {
    process.stderr.write(SERVE_USAGE);
    process.exitCode = 2;
  } else {
    void Promise.resolve(relaunchServe(rest) ?? runServe(rest)).then((code) => {
      if (code !== undefined) process.exitCode = code;
    });
  }
}
