/**
 * Load-time graph tuning of the decoder, with an on-disk cache of the tuned file.
 *
 * Passes (each switchable, see `GraphTuningOptions`):
 *  - `int8Activations`: `accuracy_level = 4` on 4-bit `com.microsoft.MatMulNBits` nodes that leave
 *    it unset (0 or absent). onnxruntime then quantizes the activations to int8 per block and uses
 *    its int8 dot-product kernels (AVX-VNNI / AVX512-VNNI / NEON dot) instead of dequantizing the
 *    weights to f32. Not bit-exact: greedy tokens can differ from the untuned graph (measured in
 *    docs/performance.md).
 *  - `lastLogitsOnly`: when the decoder has no `num_logits_to_keep` input, a
 *    `Slice(hidden, -1:, axis -2)` before the LM head so a prefill of S positions computes one
 *    row of logits instead of S (each row is [V] = 152k floats for Qwen2). Same last-row values.
 *
 * Cache: the tuned graph is written to `<model>/.llava-lens-cache/<file>-<key>.onnx` (or, when the
 * model folder is not writable, `<user cache>/graphs/`), with a `.json` sidecar recording what was
 * applied. A sidecar with `tuned: false` records "nothing to do" so an untunable file is not parsed
 * again. `<key>` is a sha256 over the tuning version and options and a cheap fingerprint of the
 * source: its size, mtime, first and last MiB (and the size and mtime of every external data file
 * it names). A file replaced by a different one of the same size and mtime and the same first and
 * last MiB would not be noticed; downloads never produce that.
 *
 * External data: initializers stored outside the .onnx keep their `location`, which stays relative
 * to the source folder. onnxruntime refuses locations that leave the loaded file's folder, so such a
 * tuned graph is loaded from bytes with the source folder as external-data folder
 * (`TunedGraph.externalDataDir`, applied by `backend.createSession`).
 *
 * Everything here may fail without harm: on any error the source file is used and the reason is
 * returned in `skipped`.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import type { GraphTuningPasses } from './types';

/** Bump when a pass changes what it writes: old cache entries are then ignored. */
export const TUNING_VERSION = 1;

export interface GraphTuningOptions extends GraphTuningPasses {
  /** Folders tried in order for the tuned file. Default: `<model>/.llava-lens-cache`, then `userGraphCacheDir()`. */
  cacheDirs?: string[];
}

export interface TunedGraph {
  /** The file to load: the tuned copy, or the source when nothing applied or tuning failed. */
  path: string;
  /** Set when the graph references external data in this folder (load from bytes, see the module doc). */
  externalDataDir?: string;
  /** What was changed, in words (empty when `path` is the source). */
  applied: string[];
  /** Passes that did not apply, and why. */
  skipped: string[];
  /** True when the tuned file (or the "nothing to do" note) came from the cache. */
  cacheHit: boolean;
  /** Wall time spent here, ms. */
  ms: number;
}

/** The passes that apply to a decoder (`int8Vision` off), from the load's options. */
export function decoderPasses(opts: GraphTuningOptions = {}): GraphTuningOptions {
  return { ...opts, int8Vision: false };
}

/** The passes that apply to a vision encoder (only `int8Vision`), from the load's options. */
export function visionPasses(opts: GraphTuningOptions = {}): GraphTuningOptions {
  return { cacheDirs: opts.cacheDirs, int8Activations: false, lastLogitsOnly: false, groupedAttention: false, int8Vision: opts.int8Vision !== false };
}

/** True when no pass is on. */
function allOff(opts: GraphTuningOptions): boolean {
  return opts.int8Activations === false && opts.lastLogitsOnly === false && opts.groupedAttention === false && opts.int8Vision === false;
}

/** `$LLAVA_LENS_CACHE/graphs`, else `$XDG_CACHE_HOME/llava-lens/graphs`, else `~/.cache/llava-lens/graphs`. */
export function userGraphCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LLAVA_LENS_CACHE) return path.join(env.LLAVA_LENS_CACHE, 'graphs');
  const base = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'llava-lens', 'graphs');
}

/** The model folder of `file`: the parent of `onnx/`, else the file's own folder. */
function modelDirOf(file: string): string {
  const dir = path.dirname(path.resolve(file));
  return path.basename(dir) === 'onnx' ? path.dirname(dir) : dir;
}

const MIB = 1 << 20;

/** Cheap fingerprint of the source (see the module doc) plus the options: hex sha256. */
export function sourceKey(file: string, opts: GraphTuningOptions, externalFiles: string[] = []): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: TUNING_VERSION, int8: opts.int8Activations !== false, last: opts.lastLogitsOnly !== false, gqa: opts.groupedAttention !== false, vision: opts.int8Vision !== false }));
  const st = fs.statSync(file);
  h.update(`${st.size}:${st.mtimeMs}`);
  const fd = fs.openSync(file, 'r');
  try {
    const n = Math.min(MIB, st.size);
    const buf = Buffer.alloc(n);
    fs.readSync(fd, buf, 0, n, 0);
    h.update(buf);
    if (st.size > MIB) {
      fs.readSync(fd, buf, 0, n, st.size - n);
      h.update(buf);
    }
  } finally {
    fs.closeSync(fd);
  }
  for (const f of externalFiles) {
    try {
      const s = fs.statSync(f);
      h.update(`${path.basename(f)}:${s.size}:${s.mtimeMs}`);
    } catch {
      h.update(`${path.basename(f)}:missing`);
    }
  }
  return h.digest('hex');
}

/** External data files beside `file` by the usual names (`<file>_data`, `<file>.data`, numbered chunks); fingerprinted by size and mtime. */
function likelyExternalFiles(file: string): string[] {
  const dir = path.dirname(file);
  const base = path.basename(file);
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n !== base && n.startsWith(base) && /(_data|\.data)(_\d+)?$/.test(n)).map((n) => path.join(dir, n));
}

interface Sidecar {
  version: number;
  source: string;
  tuned: boolean;
  applied: string[];
  skipped: string[];
  external: boolean;
}

/**
 * Returns the graph to load for `source`: a cached tuned copy, a freshly tuned one, or the source.
 * Never throws; failures come back in `skipped` with `path === source`.
 */
export async function tuneGraph(source: string, opts: GraphTuningOptions = {}, log: (msg: string) => void = () => undefined): Promise<TunedGraph> {
  const t0 = performance.now();
  const done = (r: Omit<TunedGraph, 'ms'>): TunedGraph => ({ ...r, ms: performance.now() - t0 });
  if (allOff(opts)) {
    return done({ path: source, applied: [], skipped: ['graph tuning is off'], cacheHit: false });
  }
  const abs = path.resolve(source);
  let key: string;
  try {
    key = sourceKey(abs, opts, likelyExternalFiles(abs)).slice(0, 24);
  } catch (e) {
    return done({ path: source, applied: [], skipped: [`cannot read ${source}: ${(e as Error).message}`], cacheHit: false });
  }
  const stem = `${path.basename(abs, '.onnx')}-${key}`;
  const dirs = opts.cacheDirs ?? [path.join(modelDirOf(abs), '.llava-lens-cache'), userGraphCacheDir()];

  // 1. cache lookup
  for (const dir of dirs) {
    const note = readSidecar(path.join(dir, `${stem}.json`));
    if (!note) continue;
    if (!note.tuned) return done({ path: source, applied: [], skipped: note.skipped, cacheHit: true });
    const file = path.join(dir, `${stem}.onnx`);
    if (fs.existsSync(file)) {
      return done({ path: file, externalDataDir: note.external ? path.dirname(abs) : undefined, applied: note.applied, skipped: note.skipped, cacheHit: true });
    }
  }

  // 2. tune
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(await fs.promises.readFile(abs));
  } catch (e) {
    return done({ path: source, applied: [], skipped: [`cannot parse ${source} as ONNX: ${(e as Error).message}`], cacheHit: false });
  }
  const report = tuneModelProto(model, opts);
  const external = hasExternalData(model);
  const note: Sidecar = { version: TUNING_VERSION, source: abs, tuned: report.applied.length > 0, applied: report.applied, skipped: report.skipped, external };

  // 3. write (first writable cache folder)
  const bytes = report.applied.length ? onnx.ModelProto.encode(model).finish() : undefined;
  const errors: string[] = [];
  for (const dir of dirs) {
    try {
      fs.mkdirSync(dir, { recursive: true });
      if (bytes) writeAtomic(path.join(dir, `${stem}.onnx`), bytes);
      writeAtomic(path.join(dir, `${stem}.json`), Buffer.from(JSON.stringify(note, null, 1) + '\n'));
      if (!bytes) return done({ path: source, applied: [], skipped: report.skipped, cacheHit: false });
      log(`graph tuning: ${report.applied.join('; ')} -> ${path.join(dir, `${stem}.onnx`)}`);
      return done({ path: path.join(dir, `${stem}.onnx`), externalDataDir: external ? path.dirname(abs) : undefined, applied: report.applied, skipped: report.skipped, cacheHit: false });
    } catch (e) {
      errors.push(`${dir}: ${(e as Error).message}`);
    }
  }
  const why = `no writable cache folder for the tuned graph (${errors.join('; ')})`;
  log(`graph tuning: ${why}; loading ${source} untuned`);
  return done({ path: source, applied: [], skipped: [...report.skipped, why], cacheHit: false });
}

function readSidecar(file: string): Sidecar | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as Sidecar;
    return s.version === TUNING_VERSION && Array.isArray(s.applied) ? s : undefined;
  } catch {
    return undefined;
  }
}

function writeAtomic(file: string, bytes: Uint8Array): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

function hasExternalData(model: onnx.IModelProto): boolean {
  const ext = onnx.TensorProto.DataLocation.EXTERNAL;
  return (model.graph?.initializer ?? []).some((t) => t.dataLocation === ext);
}

// ---------------------------------------------------------------------------------------------
// Passes (pure: they edit the proto in place and say what they did)

export interface TuningReport {
  applied: string[];
  skipped: string[];
}

/** Applies the enabled passes to `model` in place. */
export function tuneModelProto(model: onnx.IModelProto, opts: GraphTuningOptions = {}): TuningReport {
  const r: TuningReport = { applied: [], skipped: [] };
  const g = model.graph;
  if (!g) {
    r.skipped.push('the file has no graph');
    return r;
  }
  if (opts.int8Activations !== false) {
    const n = setMatMulNBitsAccuracy(g, 4);
    if (n.changed) r.applied.push(`accuracy_level=4 on ${n.changed} of ${n.total} 4-bit MatMulNBits`);
    else r.skipped.push(n.total ? `all ${n.total} 4-bit MatMulNBits already set accuracy_level` : 'no 4-bit MatMulNBits');
  }
  if (opts.lastLogitsOnly !== false) {
    const why = sliceBeforeLmHead(model, g);
    if (why === undefined) r.applied.push('last-position Slice before the LM head');
    else r.skipped.push(`last-position logits: ${why}`);
  }
  return r;
}

const MS_DOMAIN = 'com.microsoft';
const AttrType = onnx.AttributeProto.AttributeType;

function intAttr(n: onnx.INodeProto, name: string): number | undefined {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? Number(a.i ?? 0) : undefined;
}

/** Sets accuracy_level on 4-bit MatMulNBits nodes that leave it unset (absent or 0), subgraphs included. */
export function setMatMulNBitsAccuracy(g: onnx.IGraphProto, level: number): { changed: number; total: number } {
  let changed = 0;
  let total = 0;
  const visit = (graph: onnx.IGraphProto) => {
    for (const n of graph.node ?? []) {
      for (const a of n.attribute ?? []) {
        if (a.g) visit(a.g);
        for (const sg of a.graphs ?? []) visit(sg);
      }
      if (n.opType !== 'MatMulNBits' || n.domain !== MS_DOMAIN) continue;
      if ((intAttr(n, 'bits') ?? 4) !== 4) continue;
      total++;
      const cur = intAttr(n, 'accuracy_level');
      if (cur !== undefined && cur !== 0) continue;
      n.attribute = (n.attribute ?? []).filter((a) => a.name !== 'accuracy_level');
      n.attribute.push({ name: 'accuracy_level', type: AttrType.INT, i: level });
      changed++;
    }
  };
  visit(g);
  return { changed, total };
}

/** Ops the LM-head search walks back through from `logits` (elementwise, shape-preserving). */
const PASS_THROUGH = new Set(['Identity', 'Cast', 'Add', 'Mul', 'Div', 'Sub', 'Tanh']);
/** Ops that can be the LM head: x [.., S, H] times a constant weight. */
const HEAD_OPS = new Set(['MatMul', 'MatMulNBits', 'Gemm', 'FusedMatMul', 'MatMulInteger']);
const INT64_MAX = 0x7fffffffffffffffn;

/**
 * Inserts `Slice(x, starts=[-1], ends=[INT64_MAX], axes=[-2])` on the LM head's activation input.
 * Returns undefined when applied, else why not.
 */
export function sliceBeforeLmHead(model: onnx.IModelProto, g: onnx.IGraphProto): string | undefined {
  if ((g.input ?? []).some((i) => i.name === 'num_logits_to_keep')) return 'the export has num_logits_to_keep (used at run time)';
  const out = (g.output ?? []).find((o) => o.name === 'logits');
  if (!out) return "no 'logits' output";
  const opset = (model.opsetImport ?? []).find((o) => !o.domain)?.version;
  if (opset !== undefined && opset !== null && Number(opset) < 11) return `opset ${opset} < 11 (Slice without negative axes)`;
  const nodes = g.node ?? [];
  const producer = new Map<string, onnx.INodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const inits = new Set((g.initializer ?? []).map((t) => t.name!));
  const consumers = (name: string) => nodes.filter((n) => (n.input ?? []).includes(name));
  /** A value computed from initializers only (a weight, possibly Cast/Transpose/Dequantized). */
  const isConst = (name: string, depth = 0): boolean => {
    if (inits.has(name)) return true;
    const p = producer.get(name);
    if (!p || depth > 4) return p?.opType === 'Constant';
    if (p.opType === 'Constant') return true;
    return (p.input ?? []).filter((i) => i).every((i) => isConst(i, depth + 1));
  };

  const chain: string[] = []; // values from the head's output to `logits`
  let value = 'logits';
  let head: onnx.INodeProto | undefined;
  for (let steps = 0; steps < 8; steps++) {
    const p = producer.get(value);
    if (!p) return `'${value}' has no producer`;
    chain.push(value);
    if (HEAD_OPS.has(p.opType ?? '')) {
      head = p;
      break;
    }
    if (!PASS_THROUGH.has(p.opType ?? '')) return `the LM head is not found before a ${p.opType} node`;
    const live = (p.input ?? []).filter((i) => i && !isConst(i));
    if (live.length !== 1) return `${p.opType} before 'logits' has ${live.length} non-constant inputs`;
    if (consumers(live[0]).length !== 1) return `'${live[0]}' is used elsewhere`;
    value = live[0];
  }
  if (!head) return 'the LM head is too far from the output';
  const [x, w] = head.input ?? [];
  if (!x || !w || !isConst(w)) return `${head.opType} '${head.name}' does not multiply by a constant weight`;
  if (head.opType === 'Gemm' && (intAttr(head, 'transA') ?? 0) !== 0) return 'Gemm with transA';

  const prefix = 'llava_lens/last_position';
  const i64 = (name: string, v: bigint): onnx.ITensorProto => ({
    name,
    dims: [1],
    dataType: onnx.TensorProto.DataType.INT64,
    rawData: new Uint8Array(new BigInt64Array([v]).buffer),
  });
  g.initializer = [...(g.initializer ?? []), i64(`${prefix}/starts`, -1n), i64(`${prefix}/ends`, INT64_MAX), i64(`${prefix}/axes`, -2n)];
  const sliced = `${prefix}/hidden`;
  const slice: onnx.INodeProto = { name: `${prefix}/Slice`, opType: 'Slice', domain: '', input: [x, `${prefix}/starts`, `${prefix}/ends`, `${prefix}/axes`], output: [sliced] };
  head.input = [sliced, ...(head.input ?? []).slice(1)];
  g.node = [...nodes.slice(0, nodes.indexOf(head)), slice, ...nodes.slice(nodes.indexOf(head))];
  // Declared shapes of the values after the head said "sequence_length" rows: now 1.
  const inChain = new Set(chain);
  g.valueInfo = (g.valueInfo ?? []).filter((v) => !inChain.has(v.name ?? ''));
  const dims = out.type?.tensorType?.shape?.dim;
  if (dims && dims.length >= 2) dims[dims.length - 2] = { dimValue: 1 };
  return undefined;
}
