/**
 * onnxruntime session creation and execution-provider choice.
 *
 * `device: auto` tries the GPU providers this platform's onnxruntime-node can offer, in order,
 * and falls back to CPU, logging why each was skipped. A provider list handed to onnxruntime
 * does not fall back by itself when a provider's libraries are missing, so we try one at a time.
 * The provider that created the first session is used for the others.
 *
 * CUDA on Linux x64 needs the CUDA provider libraries, which onnxruntime-node's install script
 * downloads; this project skips that script at `npm ci` and README "GPU" shows how to run it
 * (`ONNXRUNTIME_NODE_INSTALL=cuda12`) on a machine with internet access.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { Device } from './types';

/** Order tried by `auto`, per platform. webgpu is only used when asked for explicitly. */
export function autoProviderOrder(platform: NodeJS.Platform = process.platform, arch: string = process.arch): string[] {
  if (platform === 'win32') return arch === 'x64' ? ['dml', 'cuda', 'cpu'] : ['dml', 'cpu'];
  if (platform === 'darwin') return ['coreml', 'cpu'];
  if (platform === 'linux' && arch === 'x64') return ['cuda', 'cpu'];
  return ['cpu'];
}

/**
 * Providers this onnxruntime-node build can use here: the ones bundled with the package, plus
 * CUDA when its separately installed libraries are present.
 */
export function availableProviders(): string[] {
  const list = (ort as unknown as { listSupportedBackends?: () => Array<{ name: string; bundled: boolean }> }).listSupportedBackends?.() ?? [];
  const names = list.filter((b) => b.bundled || missingProviderLibrary(b.name) === undefined && b.name === 'cuda').map((b) => b.name);
  return names.includes('cpu') ? names : ['cpu', ...names];
}

export interface SessionFactoryOptions {
  /** Threads for one operator; undefined: `defaultIntraOpThreads()`. */
  intraOpNumThreads?: number;
  log: (msg: string) => void;
}

/**
 * Intra-op threads when none is configured: on Linux, the physical cores this process may use
 * (from /sys CPU topology, capped by `os.availableParallelism()`); elsewhere undefined, which lets
 * onnxruntime choose. Measured (docs/performance.md): onnxruntime's own default ran one thread on
 * a 2-core AMD EPYC VM, and two threads made prefill 1.7× and decode 1.25× faster there.
 */
export function defaultIntraOpThreads(platform: NodeJS.Platform = process.platform, sysCpu = '/sys/devices/system/cpu'): number | undefined {
  if (platform !== 'linux') return undefined;
  try {
    const cores = new Set<string>();
    for (const name of fs.readdirSync(sysCpu)) {
      if (!/^cpu\d+$/.test(name)) continue;
      const topo = path.join(sysCpu, name, 'topology');
      if (!fs.existsSync(topo)) continue; // offline CPU
      const pkg = fs.readFileSync(path.join(topo, 'physical_package_id'), 'utf8').trim();
      const core = fs.readFileSync(path.join(topo, 'core_id'), 'utf8').trim();
      cores.add(`${pkg}:${core}`);
    }
    return cores.size > 0 ? Math.max(1, Math.min(cores.size, os.availableParallelism())) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Session options, chosen by measurement (docs/performance.md): graph optimisation `all`, the CPU
 * arena and thread spinning left on (turning either off was not faster), threads as above.
 */
function sessionOptions(provider: string, o: SessionFactoryOptions): ort.InferenceSession.SessionOptions {
  const opts: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider as ort.InferenceSession.ExecutionProviderConfig],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  const threads = o.intraOpNumThreads ?? defaultIntraOpThreads();
  return threads !== undefined ? { ...opts, intraOpNumThreads: threads } : opts;
}

/**
 * The CUDA provider ships outside the npm package (its install script fetches it): when its
 * library is absent, say so instead of letting onnxruntime log a load failure.
 */
function missingProviderLibrary(provider: string): string | undefined {
  if (provider !== 'cuda') return undefined;
  const binDir = path.join(path.dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  const lib = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return fs.existsSync(path.join(binDir, lib)) ? undefined : `the CUDA provider library (${lib}) is not installed; see README "GPU"`;
}

/**
 * A graph to load: a path, or a path whose external data lives in another folder (a tuned copy
 * of a graph, see graphTuning.ts). The latter is read into memory and loaded from bytes with that
 * folder as onnxruntime's external-initializer folder (such graph files are small: the weights
 * stay in the data file).
 */
export type ModelSource = string | { path: string; externalDataDir?: string };

async function sessionInput(source: ModelSource, opts: ort.InferenceSession.SessionOptions): Promise<{ model: string | Uint8Array; opts: ort.InferenceSession.SessionOptions }> {
  if (typeof source === 'string' || !source.externalDataDir) return { model: typeof source === 'string' ? source : source.path, opts };
  const bytes = await fs.promises.readFile(source.path);
  const extra = { ...(opts.extra ?? {}), session: { ...((opts.extra as { session?: object } | undefined)?.session ?? {}), model_external_initializers_file_folder_path: source.externalDataDir } };
  return { model: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), opts: { ...opts, extra } };
}

/**
 * Creates a session from a file path (so external data next to the graph resolves) with the
 * first provider that works. Returns the session and the provider that ran.
 * Throws LensError(DeviceUnavailable) when an explicitly requested device cannot be used, and
 * LensError(ModelLoadFailed) when onnxruntime rejects the graph itself.
 */
export async function createSession(
  source: ModelSource,
  device: Device | string,
  o: SessionFactoryOptions,
): Promise<{ session: ort.InferenceSession; provider: string }> {
  const file = typeof source === 'string' ? source : source.path;
  const candidates = device === 'auto' ? autoProviderOrder() : [device];
  const compiled = (ort as unknown as { listSupportedBackends?: () => Array<{ name: string }> }).listSupportedBackends?.().map((b) => b.name) ?? ['cpu'];
  const reasons: string[] = [];
  for (const provider of candidates) {
    if (provider !== 'cpu' && !compiled.includes(provider)) {
      reasons.push(`${provider}: not in this onnxruntime-node build (has ${compiled.join(', ')})`);
      continue;
    }
    const missing = missingProviderLibrary(provider);
    if (missing) {
      if (device !== 'auto') throw new LensError(LensErrorCode.DeviceUnavailable, `device '${provider}' is not usable: ${missing}. Use device 'auto' or 'cpu'.`);
      reasons.push(`${provider}: ${missing}`);
      continue;
    }
    try {
      const input = await sessionInput(source, sessionOptions(provider, o));
      const session = typeof input.model === 'string' ? await ort.InferenceSession.create(input.model, input.opts) : await ort.InferenceSession.create(input.model, input.opts);
      if (reasons.length) o.log(`execution provider: using ${provider}; skipped ${reasons.join('; ')}`);
      return { session, provider };
    } catch (e) {
      const msg = (e as Error).message ?? String(e);
      if (provider === 'cpu' || device !== 'auto') {
        const looksLikeProvider = /provider|cuda|dml|coreml|webgpu|libonnxruntime_providers|\.so|dll/i.test(msg) && provider !== 'cpu';
        if (looksLikeProvider) {
          throw new LensError(
            LensErrorCode.DeviceUnavailable,
            `device '${provider}' is not usable here (${firstLine(msg)}): use device 'auto' or 'cpu', or install the ${provider} provider (README "GPU").`,
          );
        }
        throw new LensError(LensErrorCode.ModelLoadFailed, `onnxruntime could not load ${file}: ${firstLine(msg)}. The file may be corrupt or from an unsupported exporter; download it again.`);
      }
      reasons.push(`${provider}: ${firstLine(msg)}`);
      o.log(`execution provider ${provider} failed for ${file}: ${firstLine(msg)}; trying the next`);
    }
  }
  throw new LensError(LensErrorCode.DeviceUnavailable, `no execution provider worked: ${reasons.join('; ')}`);
}

function firstLine(s: string): string {
  const line = s.split('\n').find((l) => l.trim()) ?? s;
  return line.length > 300 ? line.slice(0, 300) + '…' : line;
}

/** Tensor metadata of one session input/output, with symbolic dims as strings. */
export interface IoMeta {
  name: string;
  type: string;
  shape: ReadonlyArray<number | string>;
}

export function inputMeta(session: ort.InferenceSession): Map<string, IoMeta> {
  return metaMap(session.inputMetadata);
}

export function outputMeta(session: ort.InferenceSession): Map<string, IoMeta> {
  return metaMap(session.outputMetadata);
}

function metaMap(list: readonly ort.InferenceSession.ValueMetadata[]): Map<string, IoMeta> {
  const m = new Map<string, IoMeta>();
  for (const v of list) {
    if (!v.isTensor) continue;
    m.set(v.name, { name: v.name, type: v.type, shape: v.shape });
  }
  return m;
}
