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
 *  - `groupedAttention`: grouped-query attention exported with standard operators repeats each KV
 *    head `rep` times (`Unsqueeze` → `Tile`|`Expand` → `Reshape`, writing [B, nH, T, D] per layer
 *    per step) before `Q·Kᵀ` and `P·V`. Query heads h = kv·rep … kv·rep+rep−1 share KV head kv, so
 *    the pass folds the query heads into rows instead: `Q [B, nH, S, D] → [B, Hkv, rep·S, D]`,
 *    multiplied by the unrepeated `K`/`V` `[B, Hkv, T, D]`, and the product reshaped back to
 *    `[B, nH, S, ·]`. No repeat is written and each product is one [rep·S × D] GEMM per KV head.
 *    Same values up to float summation order.
 *  - `int8Vision` (vision encoder): every fp32 `MatMul` by a constant 2-D weight [K, N] with K and
 *    N ≥ 128 becomes `com.microsoft.DynamicQuantizeMatMul` with the weight quantized to int8 per
 *    output column (symmetric, scale = max|w| / 127); onnxruntime quantizes the activations per
 *    tensor at run time and uses its int8 GEMM (VNNI on x64). The same scheme as onnxruntime's
 *    `quantize_dynamic`, which transformers.js's own q8 files use. Not bit-exact (measured in
 *    docs/performance.md).
 *
 * Cache: the tuned graph is written to `<model>/.llava-lens-cache/<file>-<key>.onnx` (or, when the
 * model folder is not writable, `<user cache>/graphs/`), with a `.json` sidecar recording what was
 * applied. A sidecar with `tuned: false` records "nothing to do" so an untunable file is not parsed
 * again. `<key>` is a sha256 over the tuning version and options and a cheap fingerprint of the
 * source: its size, mtime, first and last MiB (and the size and mtime of every external data file
 * it names). A file replaced by a different one of the same size and mtime and the same first and
 * last MiB would not be noticed; downloads never produce that. Each tuned copy is as large as the
 * weights it rewrote, so a folder keeps the `KEEP_PER_SOURCE` most recently used copies per source
 * (a hit touches the sidecar) and drops copies made by an older `TUNING_VERSION` (`pruneCache`).
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
export const TUNING_VERSION = 2;

export interface GraphTuningOptions extends GraphTuningPasses {
  /** Folders tried in order for the tuned file. Default: `<model>/.llava-lens-cache`, then `userGraphCacheDir()`. */
  cacheDirs?: string[];
  /** Which file this is: decoder passes (default) or the vision encoder's `int8Vision`. */
  role?: 'decoder' | 'vision';
  /** Folder that external-data `location`s are relative to (set by `tuneGraph`: the source's folder). */
  externalDataDir?: string;
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

/** The load's options for the decoder file. */
export function decoderPasses(opts: GraphTuningOptions = {}): GraphTuningOptions {
  return { ...opts, role: 'decoder' };
}

/** The load's options for the vision encoder file. */
export function visionPasses(opts: GraphTuningOptions = {}): GraphTuningOptions {
  return { ...opts, role: 'vision' };
}

/** The passes that apply to a file of this role and are on. */
function passesOn(opts: GraphTuningOptions): string[] {
  const names: (keyof GraphTuningPasses)[] = opts.role === 'vision' ? ['int8Vision'] : ['int8Activations', 'lastLogitsOnly', 'groupedAttention'];
  return names.filter((n) => opts[n] !== false);
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
  h.update(JSON.stringify({ v: TUNING_VERSION, role: opts.role ?? 'decoder', passes: passesOn(opts) }));
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
  if (passesOn(opts).length === 0) {
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
    touch(path.join(dir, `${stem}.json`));
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
  const report = tuneModelProto(model, { ...opts, externalDataDir: path.dirname(abs) });
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
      pruneCache(dir, abs, log);
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

/** Tuned copies kept per source file and folder (the most recently used; each is as large as the weights it rewrote). */
export const KEEP_PER_SOURCE = 2;

function touch(file: string): void {
  try {
    const now = new Date();
    fs.utimesSync(file, now, now);
  } catch {
    // read-only cache folder: the entry still works, it just ages
  }
}

/**
 * Deletes what no load will use again from `dir`: entries of an older tuning version (any source)
 * and, for `source`, all but the `KEEP_PER_SOURCE` most recently used (sidecar mtime, touched on
 * every hit). Entries of other sources are left alone. Never throws.
 */
export function pruneCache(dir: string, source: string, log: (msg: string) => void = () => undefined): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return;
  }
  const mine: { stem: string; used: number }[] = [];
  const remove = (stem: string, why: string) => {
    for (const ext of ['.onnx', '.json']) fs.rmSync(path.join(dir, stem + ext), { force: true });
    log(`graph tuning: removed ${path.join(dir, stem)}.onnx (${why})`);
  };
  for (const n of names) {
    const file = path.join(dir, n);
    let note: Partial<Sidecar>;
    try {
      note = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Sidecar>;
    } catch {
      continue;
    }
    if (typeof note.source !== 'string' || typeof note.version !== 'number') continue; // not ours
    const stem = n.slice(0, -'.json'.length);
    try {
      if (note.version !== TUNING_VERSION) remove(stem, `tuning version ${note.version}`);
      else if (note.source === source) mine.push({ stem, used: fs.statSync(file).mtimeMs });
    } catch {
      // raced with another process: fine
    }
  }
  mine.sort((a, b) => b.used - a.used);
  for (const m of mine.slice(KEEP_PER_SOURCE)) {
    try {
      remove(m.stem, `more than ${KEEP_PER_SOURCE} tuned copies of ${path.basename(source)}`);
    } catch {
      // ignore
    }
  }
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
  const on = new Set(passesOn(opts));
  if (on.has('int8Activations')) {
    const n = setMatMulNBitsAccuracy(g, 4);
    if (n.changed) r.applied.push(`accuracy_level=4 on ${n.changed} of ${n.total} 4-bit MatMulNBits`);
    else r.skipped.push(n.total ? `all ${n.total} 4-bit MatMulNBits already set accuracy_level` : 'no 4-bit MatMulNBits');
  }
  if (on.has('lastLogitsOnly')) {
    const why = sliceBeforeLmHead(model, g);
    if (why === undefined) r.applied.push('last-position Slice before the LM head');
    else r.skipped.push(`last-position logits: ${why}`);
  }
  if (on.has('groupedAttention')) {
    const n = groupQueryHeads(g);
    if (n.changed) r.applied.push(`grouped attention without repeated KV heads in ${n.changed} of ${n.total} repeats`);
    else r.skipped.push(n.total ? `grouped attention: none of ${n.total} KV repeats matched (${n.why})` : 'grouped attention: no KV head repeat');
    if (n.changed) removeDeadNodes(g);
  }
  if (on.has('int8Vision')) {
    const n = quantizeMatMulsInt8(g, opts.externalDataDir);
    if (n.changed && !(model.opsetImport ?? []).some((o) => o.domain === MS_DOMAIN)) model.opsetImport = [...(model.opsetImport ?? []), { domain: MS_DOMAIN, version: 1 }];
    if (n.changed) r.applied.push(`int8 weights (DynamicQuantizeMatMul, per-column scales) on ${n.changed} of ${n.total} fp32 MatMuls by a constant weight`);
    else r.skipped.push(n.total ? `int8 weights: none of ${n.total} fp32 MatMuls by a constant weight qualified (${n.why})` : 'int8 weights: no fp32 MatMul by a constant weight');
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

// ---------------------------------------------------------------------------------------------
// Grouped-query attention without repeated KV heads

/** The int64 values of a constant (initializer or Constant node), or undefined. */
function constInts(g: onnx.IGraphProto, name: string): bigint[] | undefined {
  const t = (g.initializer ?? []).find((x) => x.name === name) ?? constNodeTensor(g, name);
  if (!t || t.dataType !== onnx.TensorProto.DataType.INT64) return undefined;
  if (t.int64Data?.length) return t.int64Data.map((v) => BigInt(v.toString()));
  const raw = t.rawData;
  if (!raw || raw.byteLength % 8) return undefined;
  const copy = new Uint8Array(raw); // aligned
  return Array.from(new BigInt64Array(copy.buffer, 0, copy.byteLength / 8));
}

/**
 * Entry `index` of a shape operand when it is known: a constant, or (as torch exports build
 * dynamic shapes) a `Concat` of one-element parts whose part `index` is a constant.
 */
function shapeEntry(g: onnx.IGraphProto, producer: Map<string, onnx.INodeProto>, name: string, rank: number, index: number): bigint | undefined {
  const c = constInts(g, name);
  if (c) return c.length === rank ? c[index] : undefined;
  const cat = producer.get(name);
  if (cat?.opType !== 'Concat' || (cat.input ?? []).length !== rank) return undefined;
  const part = constInts(g, cat.input![index]);
  return part?.length === 1 ? part[0] : undefined;
}

function constNodeTensor(g: onnx.IGraphProto, name: string): onnx.ITensorProto | undefined {
  const n = (g.node ?? []).find((x) => x.opType === 'Constant' && (x.output ?? [])[0] === name);
  return n?.attribute?.find((a) => a.name === 'value')?.t ?? undefined;
}

/** Scalar float constant (initializer or Constant node), or undefined. */
function isScalarConst(g: onnx.IGraphProto, name: string): boolean {
  const t = (g.initializer ?? []).find((x) => x.name === name) ?? constNodeTensor(g, name);
  if (!t) return false;
  const n = (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1);
  return n === 1;
}

function axesOf(g: onnx.IGraphProto, n: onnx.INodeProto): bigint[] | undefined {
  const attr = (n.attribute ?? []).find((a) => a.name === 'axes');
  if (attr) return (attr.ints ?? []).map((v) => BigInt(v.toString()));
  const src = (n.input ?? [])[1];
  return src ? constInts(g, src) : undefined;
}

function intsAttr(n: onnx.INodeProto, name: string): number[] | undefined {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? (a.ints ?? []).map((v) => Number(v)) : undefined;
}

/**
 * Rewrites every `repeat_kv` (see the module doc) whose uses are all `MatMul` B operands, possibly
 * through a `Transpose(perm 0,1,3,2)` and a multiply/divide by a scalar. Needs the KV head count:
 * from the declared shape of the repeated value's source graph input, or the repeat's Reshape shape.
 */
export function groupQueryHeads(g: onnx.IGraphProto): { changed: number; total: number; why: string } {
  const nodes = g.node ?? [];
  const producer = new Map<string, onnx.INodeProto>();
  const users = new Map<string, onnx.INodeProto[]>();
  for (const n of nodes) {
    for (const o of n.output ?? []) producer.set(o, n);
    for (const i of n.input ?? []) if (i) users.set(i, [...(users.get(i) ?? []), n]);
  }
  const graphOutputs = new Set((g.output ?? []).map((o) => o.name!));
  const inputDims = new Map((g.input ?? []).map((i) => [i.name!, i.type?.tensorType?.shape?.dim ?? []]));
  let total = 0;
  let changed = 0;
  let why = '';
  const added: onnx.INodeProto[] = [];
  const inits: onnx.ITensorProto[] = [];
  const shapeConst = (hkv: number | bigint): string => {
    const name = `llava_lens/gqa/shape_${hkv}`;
    if (!inits.some((t) => t.name === name)) {
      inits.push({ name, dims: [4], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(new BigInt64Array([0n, BigInt(hkv), -1n, 0n]).buffer) });
    }
    return name;
  };

  for (const unsq of nodes) {
    if (unsq.opType !== 'Unsqueeze') continue;
    const kv = (unsq.input ?? [])[0];
    const ax = axesOf(g, unsq);
    const rep = (users.get(unsq.output![0]) ?? [])[0];
    if (!kv || !ax || ax.length !== 1 || ax[0] !== 2n || !rep || (rep.opType !== 'Tile' && rep.opType !== 'Expand')) continue;
    if ((users.get(unsq.output![0]) ?? []).length !== 1) continue;
    const reshape = (users.get(rep.output![0]) ?? [])[0];
    if (!reshape || reshape.opType !== 'Reshape' || (users.get(rep.output![0]) ?? []).length !== 1) continue;
    total++;
    // rep count: Tile repeats [1,1,rep,1,1]; Expand shape [B, Hkv, rep, T, D] (entry 2 known).
    const reps = rep.opType === 'Tile' ? constInts(g, rep.input![1]) : undefined;
    const r = Number((rep.opType === 'Tile' ? (reps?.length === 5 ? reps[2] : undefined) : shapeEntry(g, producer, rep.input![1], 5, 2)) ?? NaN);
    if (!(r > 1) || (rep.opType === 'Tile' && reps!.some((v, i) => i !== 2 && v !== 1n))) {
      why = `the ${rep.opType} count is not a known constant of rank 5`;
      continue;
    }
    // KV heads: the new shape [B, nH, T, D] (entry 1 known), else the declared input shape.
    const nH = shapeEntry(g, producer, reshape.input![1], 4, 1);
    let hkv: number | undefined;
    if (nH !== undefined && nH > 0n && Number(nH) % r === 0) hkv = Number(nH) / r;
    if (hkv === undefined) {
      // kv is Concat(past, new) for a past input with declared [B, Hkv, P, D]
      const cat = producer.get(kv);
      const past = cat?.opType === 'Concat' ? (cat.input ?? []).find((i) => inputDims.has(i)) : inputDims.has(kv) ? kv : undefined;
      const d = past ? inputDims.get(past)![1] : undefined;
      if (d?.dimValue !== undefined && d.dimValue !== null && Number(d.dimValue) > 0) hkv = Number(d.dimValue);
    }
    if (hkv === undefined) {
      why = 'the KV head count is not known from the graph';
      continue;
    }
    const repeated = reshape.output![0];
    if (graphOutputs.has(repeated)) {
      why = 'the repeated KV is a graph output';
      continue;
    }
    // Every use of the repeated value: [Transpose(0,1,3,2)] [Mul|Div scalar] -> MatMul input B.
    type Use = { chain: onnx.INodeProto[]; matmul: onnx.INodeProto };
    const uses: Use[] = [];
    let ok = true;
    const walk = (value: string, chain: onnx.INodeProto[]) => {
      for (const u of users.get(value) ?? []) {
        if (u.opType === 'MatMul' && u.input![1] === value && u.input![0] !== value) uses.push({ chain, matmul: u });
        else if (u.opType === 'Transpose' && chain.length === 0 && (intsAttr(u, 'perm') ?? []).join() === '0,1,3,2') walk(u.output![0], [...chain, u]);
        else if ((u.opType === 'Mul' || (u.opType === 'Div' && u.input![0] === value)) && chain.length < 2 && isScalarConst(g, u.input![0] === value ? u.input![1] : u.input![0])) walk(u.output![0], [...chain, u]);
        else ok = false;
        if (graphOutputs.has(value) && chain.length) ok = false;
      }
    };
    walk(repeated, []);
    if (!ok || uses.length === 0) {
      why = 'a repeated KV is used by something other than a MatMul';
      continue;
    }
    // Rewrite: chain(kv) once per use, query heads folded into rows around the MatMul.
    const tag = `llava_lens/gqa/${changed}`;
    const grouped = shapeConst(hkv);
    const back = shapeConst(hkv * r);
    uses.forEach(({ chain, matmul }, j) => {
      let b = kv;
      chain.forEach((c, k) => {
        const consumed = k === 0 ? repeated : chain[k - 1].output![0];
        const out = `${tag}/${j}/chain${k}`;
        added.push({ ...c, name: `${tag}/${j}/${c.opType}${k}`, input: (c.input ?? []).map((i) => (i === consumed ? b : i)), output: [out] });
        b = out;
      });
      const a = `${tag}/${j}/rows`;
      const prod = `${tag}/${j}/product`;
      added.push({ name: `${tag}/${j}/fold`, opType: 'Reshape', domain: '', input: [matmul.input![0], grouped], output: [a] });
      added.push({ name: `${tag}/${j}/MatMul`, opType: 'MatMul', domain: '', input: [a, b], output: [prod] });
      const out = matmul.output![0];
      // The original MatMul becomes the unfold Reshape, producing the same value.
      matmul.opType = 'Reshape';
      matmul.domain = '';
      matmul.input = [prod, back];
      matmul.attribute = [];
      matmul.name = `${tag}/${j}/unfold`;
      matmul.output = [out];
    });
    changed++;
  }
  if (changed) {
    // Insert the new nodes before their first consumer: simplest valid order is to place each
    // group right before the node that now consumes it (the former MatMul).
    const byOut = new Map<string, onnx.INodeProto>();
    for (const n of added) byOut.set(n.output![0], n);
    const order: onnx.INodeProto[] = [];
    const placed = new Set<onnx.INodeProto>();
    const place = (n: onnx.INodeProto) => {
      if (placed.has(n)) return;
      placed.add(n);
      for (const i of n.input ?? []) {
        const dep = byOut.get(i);
        if (dep) place(dep);
      }
      order.push(n);
    };
    for (const n of nodes) place(n);
    g.node = order;
    g.initializer = [...(g.initializer ?? []), ...inits];
  }
  return { changed, total, why };
}

/** Removes nodes none of whose outputs is used (repeatedly), keeping graph outputs. */
export function removeDeadNodes(g: onnx.IGraphProto): number {
  const keep = new Set((g.output ?? []).map((o) => o.name!));
  /** Every value read by a node of `graph` or of its subgraphs (which may read outer values). */
  const readBy = (graph: onnx.IGraphProto, into: Set<string>): Set<string> => {
    for (const n of graph.node ?? []) {
      for (const i of n.input ?? []) into.add(i);
      for (const a of n.attribute ?? []) for (const sg of [a.g, ...(a.graphs ?? [])]) if (sg) readBy(sg, into);
    }
    return into;
  };
  let removed = 0;
  for (;;) {
    const used = readBy(g, new Set(keep));
    const before = (g.node ?? []).length;
    g.node = (g.node ?? []).filter((n) => (n.output ?? []).some((o) => o && used.has(o)));
    if (g.node.length === before) break;
    removed += before - g.node.length;
  }
  const live = readBy(g, new Set());
  const inputs = new Set((g.input ?? []).map((i) => i.name!));
  g.valueInfo = (g.valueInfo ?? []).filter((v) => live.has(v.name ?? '') || keep.has(v.name ?? ''));
  g.initializer = (g.initializer ?? []).filter((t) => live.has(t.name!) || keep.has(t.name!) || inputs.has(t.name!));
  return removed;
}

// ---------------------------------------------------------------------------------------------
// int8 weights for fp32 MatMuls (vision encoder)

/** Smallest K and N worth quantizing: below this the per-call activation quantization costs more than the int8 GEMM saves. */
const INT8_MIN_DIM = 128;

/** The float32 values of an initializer: raw, float_data, or external data under `dir`. */
function floatValues(t: onnx.ITensorProto, dir: string | undefined): Float32Array | undefined {
  if (t.dataType !== onnx.TensorProto.DataType.FLOAT) return undefined;
  const count = (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1);
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    if (!dir) return undefined;
    const kv = new Map((t.externalData ?? []).map((e) => [e.key, e.value]));
    const loc = kv.get('location');
    if (!loc) return undefined;
    const file = path.resolve(dir, loc);
    if (path.relative(dir, file).startsWith('..')) return undefined;
    const offset = Number(kv.get('offset') ?? 0);
    const out = new Float32Array(count);
    const fd = fs.openSync(file, 'r');
    try {
      const got = fs.readSync(fd, new Uint8Array(out.buffer), 0, count * 4, offset);
      if (got !== count * 4) return undefined;
    } finally {
      fs.closeSync(fd);
    }
    return out;
  }
  const raw = t.rawData;
  if (raw && raw.byteLength === count * 4) {
    return raw.byteOffset % 4 === 0 ? new Float32Array(raw.buffer, raw.byteOffset, count) : new Float32Array(new Uint8Array(raw).buffer);
  }
  if (t.floatData && t.floatData.length === count) return Float32Array.from(t.floatData);
  return undefined;
}

/**
 * Symmetric per-column int8 quantization of a row-major [K, N] weight: scale[c] = max|w[·, c]| / 127
 * (1 for an all-zero column), q = round(w / scale) in [-127, 127].
 */
export function quantizeColumnsInt8(w: Float32Array, K: number, N: number): { q: Int8Array; scales: Float32Array } {
  const amax = new Float32Array(N);
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let c = 0; c < N; c++) {
      const a = Math.abs(w[row + c]);
      if (a > amax[c]) amax[c] = a;
    }
  }
  const scales = new Float32Array(N);
  const inv = new Float32Array(N);
  for (let c = 0; c < N; c++) {
    scales[c] = amax[c] > 0 ? amax[c] / 127 : 1;
    inv[c] = 1 / scales[c];
  }
  const q = new Int8Array(K * N);
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let c = 0; c < N; c++) q[row + c] = Math.max(-127, Math.min(127, Math.round(w[row + c] * inv[c])));
  }
  return { q, scales };
}

/** Replaces fp32 `MatMul(x, W)` by `DynamicQuantizeMatMul(x, int8 W, scales)` (see the module doc). */
export function quantizeMatMulsInt8(g: onnx.IGraphProto, externalDir?: string): { changed: number; total: number; why: string } {
  const inits = new Map((g.initializer ?? []).map((t) => [t.name!, t]));
  const uses = new Map<string, number>();
  for (const n of g.node ?? []) for (const i of n.input ?? []) uses.set(i, (uses.get(i) ?? 0) + 1);
  const replaced = new Set<string>();
  const added: onnx.ITensorProto[] = [];
  let changed = 0;
  let total = 0;
  let why = '';
  for (const n of g.node ?? []) {
    if (n.opType !== 'MatMul' || (n.domain ?? '') !== '') continue;
    const w = inits.get((n.input ?? [])[1] ?? '');
    if (!w || w.dataType !== onnx.TensorProto.DataType.FLOAT || (w.dims ?? []).length !== 2) continue;
    total++;
    const K = Number(w.dims![0]);
    const N = Number(w.dims![1]);
    if (K < INT8_MIN_DIM || N < INT8_MIN_DIM) {
      why = `weights smaller than ${INT8_MIN_DIM}×${INT8_MIN_DIM}`;
      continue;
    }
    if ((uses.get(w.name!) ?? 0) !== 1) {
      why = 'a weight shared with another node';
      continue;
    }
    const values = floatValues(w, externalDir);
    if (!values) {
      why = `the data of '${w.name}' could not be read`;
      continue;
    }
    const { q, scales } = quantizeColumnsInt8(values, K, N);
    const base = `llava_lens/int8/${w.name}`;
    added.push(
      { name: `${base}/q`, dims: [K, N], dataType: onnx.TensorProto.DataType.INT8, rawData: new Uint8Array(q.buffer) },
      { name: `${base}/scale`, dims: [N], dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(scales.buffer) },
    );
    replaced.add(w.name!);
    n.opType = 'DynamicQuantizeMatMul';
    n.domain = MS_DOMAIN;
    n.input = [n.input![0], `${base}/q`, `${base}/scale`];
    n.attribute = [];
    changed++;
  }
  if (changed) {
    g.initializer = [...(g.initializer ?? []).filter((t) => !replaced.has(t.name!)), ...added];
  }
  return { changed, total, why };
}
