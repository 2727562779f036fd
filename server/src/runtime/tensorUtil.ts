/**
 * Small tensor helpers shared by the runtime stages: typed tensor creation and float reads,
 * converting float16 (onnxruntime takes it as Uint16Array; see float16.ts) where a session wants it.
 */
import * as ort from 'onnxruntime-node';

import { fromFloat16, toFloat16 } from './float16';

export { f16BitsToF32, f32ToF16Bits, fromFloat16, toFloat16 } from './float16';

/** The float element types a session may declare for a float input/output. */
export type FloatType = 'float32' | 'float16';

/** Makes a float tensor of the type a session input declares, converting from f32 if needed. */
export function floatTensor(type: FloatType, data: Float32Array, dims: readonly number[]): ort.Tensor {
  return type === 'float16' ? new ort.Tensor('float16', toFloat16(data), dims) : new ort.Tensor('float32', data, dims);
}

/** Reads any float tensor as f32 (copying when it is float16). */
export function tensorToF32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') {
    const d = t.data as unknown;
    return d instanceof Uint16Array ? fromFloat16(d) : Float32Array.from(d as ArrayLike<number>);
  }
  throw new Error(`expected a float tensor, got ${t.type}`);
}

export function int64Tensor(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]);
  return new ort.Tensor('int64', data, dims);
}
