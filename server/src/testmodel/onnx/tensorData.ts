/**
 * Initializer payloads that are produced on demand, in chunks, while a model file is written.
 * Nothing here holds a whole weight in memory, so a 1.6 GB vision encoder streams through a few
 * megabytes of buffer.
 *
 * Weights are generated from the counter-based generator in `../prng` keyed by the tensor's
 * canonical (Hugging Face style) name, so the same name and seed give the same numbers in every
 * layout and precision.
 */
import * as os from 'node:os';
import { onnx } from 'onnx-proto';
import { f16BitsToF32, f32ToF16Bits } from '../../runtime/float16';
import { hashKey, normalAt } from '../prng';

export const DataType = onnx.TensorProto.DataType;

/** Tensor data produced on demand. */
export interface TensorData {
  name: string;
  dataType: number;
  dims: number[];
  byteLength: number;
  /** Calls `sink` with consecutive chunks whose lengths add up to `byteLength`. Chunks may be reused after `sink` returns. */
  write(sink: (chunk: Uint8Array) => void): void;
}

/** Element value = mean + std * N(0, 1) (approximately normal, see `normalAt`). */
export interface WeightInit {
  std: number;
  mean?: number;
}

/** Elements generated per chunk. */
const CHUNK = 1 << 20;

if (os.endianness() !== 'LE') {
  // Typed-array views are written as raw bytes; ONNX raw_data is little-endian.
  throw new Error('testmodel: big-endian hosts are not supported');
}

/** IEEE float32 -> float16 bits, round to nearest even. */
export const toHalfBits = f32ToF16Bits;
/** float16 bits -> number. */
export const fromHalfBits = f16BitsToF32;

function product(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function bytesPerElement(dataType: number): number {
  switch (dataType) {
    case DataType.FLOAT:
      return 4;
    case DataType.FLOAT16:
      return 2;
    case DataType.INT64:
      return 8;
    case DataType.UINT8:
    case DataType.BOOL:
      return 1;
    default:
      throw new Error(`testmodel: unsupported data type ${dataType}`);
  }
}

/** Writes float32 values `src[0..n)` to `sink` as FLOAT or FLOAT16 bytes. */
function emitFloats(src: Float32Array, n: number, dataType: number, half: Uint16Array, sink: (c: Uint8Array) => void): void {
  if (dataType === DataType.FLOAT) {
    sink(new Uint8Array(src.buffer, src.byteOffset, n * 4));
  } else {
    for (let i = 0; i < n; i++) half[i] = toHalfBits(src[i]);
    sink(new Uint8Array(half.buffer, half.byteOffset, n * 2));
  }
}

/** A small tensor whose bytes are already known (shape constants, scalars). */
export function literalTensor(name: string, dataType: number, dims: number[], bytes: Uint8Array): TensorData {
  if (bytes.length !== product(dims) * bytesPerElement(dataType)) {
    throw new Error(`testmodel: ${name}: ${bytes.length} bytes for dims [${dims}]`);
  }
  return { name, dataType, dims, byteLength: bytes.length, write: (sink) => sink(bytes) };
}

/**
 * A generated float weight stored in its canonical order (row-major over `dims`), as FLOAT or
 * FLOAT16. `key` names the random stream (normally the Hugging Face parameter name).
 */
export function denseWeight(
  name: string,
  dims: number[],
  init: WeightInit,
  seed: number,
  key: string,
  dataType: number = DataType.FLOAT,
): TensorData {
  const n = product(dims);
  const k = hashKey(seed, key);
  const mean = init.mean ?? 0;
  return {
    name,
    dataType,
    dims,
    byteLength: n * bytesPerElement(dataType),
    write(sink) {
      const buf = new Float32Array(Math.min(CHUNK, n));
      const half = new Uint16Array(dataType === DataType.FLOAT16 ? buf.length : 0);
      for (let start = 0; start < n; start += CHUNK) {
        const len = Math.min(CHUNK, n - start);
        for (let i = 0; i < len; i++) buf[i] = mean + init.std * normalAt(k, start + i);
        emitFloats(buf, len, dataType, half, sink);
      }
    },
  };
}

/**
 * The weight of a linear layer with `inFeatures` K and `outFeatures` N. Its canonical order is
 * PyTorch's [N, K] (element (n, k) is stream value n*K + k); it is stored transposed as [K, N] so
 * that `MatMul(x [.., K], W [K, N])` computes `x @ weight.T`.
 */
export function linearWeightKN(
  name: string,
  inFeatures: number,
  outFeatures: number,
  init: WeightInit,
  seed: number,
  key: string,
  dataType: number = DataType.FLOAT,
): TensorData {
  const K = inFeatures;
  const N = outFeatures;
  const k0 = hashKey(seed, key);
  const mean = init.mean ?? 0;
  return {
    name,
    dataType,
    dims: [K, N],
    byteLength: K * N * bytesPerElement(dataType),
    write(sink) {
      const rowsPerChunk = Math.max(1, Math.floor(CHUNK / N));
      const buf = new Float32Array(rowsPerChunk * N);
      const half = new Uint16Array(dataType === DataType.FLOAT16 ? buf.length : 0);
      for (let kStart = 0; kStart < K; kStart += rowsPerChunk) {
        const rows = Math.min(rowsPerChunk, K - kStart);
        for (let r = 0; r < rows; r++) {
          const kk = kStart + r;
          const base = r * N;
          for (let n = 0; n < N; n++) buf[base + n] = mean + init.std * normalAt(k0, n * K + kk);
        }
        emitFloats(buf, rows * N, dataType, half, sink);
      }
    },
  };
}

export const Q4_BLOCK_SIZE = 32;

/**
 * 4-bit block quantisation of a linear weight for `com.microsoft` MatMulNBits (bits 4,
 * block_size 32, symmetric: no zero points, implicit zero point 8). Per output row n and block
 * b: scale = (value with the largest magnitude) / -8, q = clamp(round(v / scale) + 8, 0, 15);
 * two values per byte, the even element in the low nibble. K is zero-padded to whole blocks.
 *
 * Returns B (uint8 [N, blocks, 16]) and scales (float32 [N * blocks]); the scales are remembered
 * when B is written first so the weight is generated once.
 */
export function q4LinearWeight(
  baseName: string,
  inFeatures: number,
  outFeatures: number,
  init: WeightInit,
  seed: number,
  key: string,
): { weight: TensorData; scales: TensorData; blocks: number } {
  const K = inFeatures;
  const N = outFeatures;
  const bs = Q4_BLOCK_SIZE;
  const blocks = Math.ceil(K / bs);
  const blob = bs / 2;
  const k0 = hashKey(seed, key);
  const mean = init.mean ?? 0;
  let savedScales: Float32Array | null = null;

  /** Quantises rows [n0, n0+rows) into `bytes` (may be null) and `scales`. */
  const quantRows = (n0: number, rows: number, bytes: Uint8Array | null, scales: Float32Array): void => {
    const vals = new Float32Array(bs);
    for (let r = 0; r < rows; r++) {
      const n = n0 + r;
      for (let b = 0; b < blocks; b++) {
        let amax = 0;
        let signed = 0;
        for (let j = 0; j < bs; j++) {
          const kk = b * bs + j;
          const v = kk < K ? Math.fround(mean + init.std * normalAt(k0, n * K + kk)) : 0;
          vals[j] = v;
          if (Math.abs(v) > amax) {
            amax = Math.abs(v);
            signed = v;
          }
        }
        const scale = Math.fround(signed / -8);
        scales[r * blocks + b] = scale;
        if (!bytes) continue;
        const inv = scale !== 0 ? 1 / scale : 0;
        const off = (r * blocks + b) * blob;
        for (let j = 0; j < bs; j += 2) {
          const lo = Math.min(15, Math.max(0, Math.round(vals[j] * inv) + 8));
          const hi = Math.min(15, Math.max(0, Math.round(vals[j + 1] * inv) + 8));
          bytes[off + j / 2] = lo | (hi << 4);
        }
      }
    }
  };

  const rowsPerChunk = Math.max(1, Math.floor(CHUNK / (blocks * bs)));
  const weight: TensorData = {
    name: `${baseName}_Q4`,
    dataType: DataType.UINT8,
    dims: [N, blocks, blob],
    byteLength: N * blocks * blob,
    write(sink) {
      const all = new Float32Array(N * blocks);
      const bytes = new Uint8Array(rowsPerChunk * blocks * blob);
      for (let n0 = 0; n0 < N; n0 += rowsPerChunk) {
        const rows = Math.min(rowsPerChunk, N - n0);
        quantRows(n0, rows, bytes, all.subarray(n0 * blocks, (n0 + rows) * blocks));
        sink(bytes.subarray(0, rows * blocks * blob));
      }
      savedScales = all;
    },
  };
  const scales: TensorData = {
    name: `${baseName}_scales`,
    dataType: DataType.FLOAT,
    dims: [N * blocks],
    byteLength: N * blocks * 4,
    write(sink) {
      let all = savedScales;
      if (!all) {
        all = new Float32Array(N * blocks);
        for (let n0 = 0; n0 < N; n0 += rowsPerChunk) {
          const rows = Math.min(rowsPerChunk, N - n0);
          quantRows(n0, rows, null, all.subarray(n0 * blocks, (n0 + rows) * blocks));
        }
      }
      savedScales = null;
      sink(new Uint8Array(all.buffer, all.byteOffset, all.byteLength));
    },
  };
  return { weight, scales, blocks };
}
