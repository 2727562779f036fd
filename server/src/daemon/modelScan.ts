/**
 * Finds model folders under a set of roots: a folder with a `config.json` file and an `onnx/`
 * folder is a model (and is not searched further). Pure fs; no onnxruntime.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DTYPES, MODEL_FILE_ROLES } from '../../../common/protocol';
import type { ModelEntry, ModelFileRole, ModelVariants } from '../../../common/protocol';

export interface ScanResult {
  models: ModelEntry[];
  /** Roots that do not exist or cannot be read, with the reason. */
  skippedRoots: Array<{ root: string; reason: string }>;
}

/** Folders never searched: they are large and never hold models. */
const SKIP_DIRS = new Set(['node_modules', '.git']);

const SUFFIX_TO_DTYPE: ReadonlyMap<string, string> = new Map(
  DTYPES.map((d) => [d === 'fp32' ? '' : `_${d}`, d] as [string, string]),
);

/**
 * The role and precision a file name stands for, e.g. `decoder_model_merged_q4f16.onnx` ->
 * `{role: 'decoder_model_merged', dtype: 'q4f16'}`; undefined for other files (including
 * external-data files such as `*.onnx_data`).
 */
export function parseVariantFileName(fileName: string): { role: ModelFileRole; dtype: string } | undefined {
  if (!fileName.endsWith('.onnx')) return undefined;
  const stem = fileName.slice(0, -'.onnx'.length);
  for (const role of MODEL_FILE_ROLES) {
    if (!stem.startsWith(role)) continue;
    const dtype = SUFFIX_TO_DTYPE.get(stem.slice(role.length));
    if (dtype !== undefined) return { role, dtype };
  }
  return undefined;
}

/** Precisions per file found in an `onnx/` folder's file names, each list in `DTYPES` order. */
export function variantsFromFileNames(fileNames: string[]): ModelVariants {
  const variants: ModelVariants = { vision_encoder: [], embed_tokens: [], decoder_model_merged: [] };
  for (const name of fileNames) {
    const v = parseVariantFileName(name);
    if (v && !variants[v.role].includes(v.dtype)) variants[v.role].push(v.dtype);
  }
  const order = (d: string) => (DTYPES as readonly string[]).indexOf(d);
  for (const role of MODEL_FILE_ROLES) variants[role].sort((a, b) => order(a) - order(b));
  return variants;
}

async function isFile(p: string): Promise<boolean> {
  return fs.stat(p).then((s) => s.isFile(), () => false);
}

async function isDir(p: string): Promise<boolean> {
  return fs.stat(p).then((s) => s.isDirectory(), () => false);
}

async function readModelType(configPath: string): Promise<string> {
  try {
    const config: unknown = JSON.parse(await fs.readFile(configPath, 'utf8'));
    const t = typeof config === 'object' && config !== null ? (config as Record<string, unknown>).model_type : undefined;
    return typeof t === 'string' && t !== '' ? t : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The model in `dir`, or undefined when `dir` is not a model folder. */
export async function readModelEntry(dir: string): Promise<ModelEntry | undefined> {
  const configPath = path.join(dir, 'config.json');
  const onnxDir = path.join(dir, 'onnx');
  if (!(await isFile(configPath)) || !(await isDir(onnxDir))) return undefined;
  const files = await fs.readdir(onnxDir).catch(() => [] as string[]);
  return {
    path: path.resolve(dir),
    name: path.basename(path.resolve(dir)),
    modelType: await readModelType(configPath),
    variants: variantsFromFileNames(files),
  };
}

/**
 * Scans each root to `maxDepth` levels below it (the root itself is level 0). Hidden folders,
 * `node_modules` and `.git` are skipped; links to folders are followed. Results are sorted by
 * path and list each folder once, at the shortest path it was reached by.
 */
export async function scanModelRoots(roots: string[], maxDepth = 3): Promise<ScanResult> {
  const models: ModelEntry[] = [];
  const skippedRoots: ScanResult['skippedRoots'] = [];
  const seen = new Set<string>(); // real paths of folders already visited

  // Breadth first, so that a folder reachable by several paths is reported at the shortest.
  let level: string[] = [];
  for (const root of roots) {
    const abs = path.resolve(root);
    if (await isDir(abs)) level.push(abs);
    else skippedRoots.push({ root: abs, reason: 'not a readable folder' });
  }
  for (let depth = 0; depth <= maxDepth && level.length > 0; depth++) {
    const next: string[] = [];
    for (const dir of level) {
      const real = await fs.realpath(dir).catch(() => dir);
      if (seen.has(real)) continue;
      seen.add(real);
      const model = await readModelEntry(dir);
      if (model) {
        models.push(model);
        continue;
      }
      if (depth === maxDepth) continue;
      const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        if (e.name.startsWith('.') || SKIP_DIRS.has(e.name)) continue;
        const child = path.join(dir, e.name);
        // Links to folders are followed; `seen` stops cycles.
        if (e.isDirectory() || (e.isSymbolicLink() && (await isDir(child)))) next.push(child);
      }
    }
    level = next;
  }
  models.sort((a, b) => a.path.localeCompare(b.path));
  return { models, skippedRoots };
}
