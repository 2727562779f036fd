/**
 * A small ONNX graph builder: nodes with generated names, typed graph inputs/outputs with
 * symbolic dimensions, deduplicated constants, and generated weights (see `tensorData.ts`).
 *
 * Precision modes (one per file):
 *  - `fp32`: everything float32.
 *  - `fp16`: weights stored float16, each followed by a Cast to float32; float graph inputs and
 *    outputs are float16 and cast at the boundary. All arithmetic stays float32.
 *  - `q4`:   like fp32, but `linear()` emits `com.microsoft` MatMulNBits (4-bit, block 32).
 *
 * Nothing is written here; `writer.ts` serialises a builder.
 */
import { onnx } from 'onnx-proto';
import {
  DataType,
  TensorData,
  WeightInit,
  denseWeight,
  linearWeightKN,
  literalTensor,
  q4LinearWeight,
  Q4_BLOCK_SIZE,
} from './tensorData';

export type Precision = 'fp32' | 'fp16' | 'q4';
export type ElemType = 'float' | 'int64' | 'bool';
/** A dimension: a fixed size or a symbolic name such as `batch_size`. */
export type Dim = number | string;
/** Attribute values: integer, integer list, `{ f }` float, string, or a subgraph. */
export type AttrValue = number | number[] | { f: number } | string | onnx.IGraphProto;

export const MS_DOMAIN = 'com.microsoft';
/** Large positive int64 used as "to the end" in Slice. */
export const INT64_MAX = Number.MAX_SAFE_INTEGER;

export function valueInfo(name: string, elemType: number, shape: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`testmodel: attribute ${name}: use { f } for floats`);
    return { name, type: T.INT, i: v };
  }
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (typeof v === 'string') return { name, type: T.STRING, s: Buffer.from(v, 'utf8') };
  if ('f' in v && typeof v.f === 'number') return { name, type: T.FLOAT, f: v.f };
  return { name, type: T.GRAPH, g: v as onnx.IGraphProto };
}

function elemTypeCode(t: ElemType, precision: Precision): number {
  if (t === 'int64') return DataType.INT64;
  if (t === 'bool') return DataType.BOOL;
  return precision === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT;
}

export interface NodeOptions {
  /** Explicit output names (default: one generated name). A number asks for that many generated outputs. */
  outputs?: string[] | number;
  domain?: string;
}

export class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly inputs: onnx.IValueInfoProto[] = [];
  readonly outputs: onnx.IValueInfoProto[] = [];
  readonly initializers: TensorData[] = [];
  usesMsDomain = false;
  private readonly opCount = new Map<string, number>();
  private readonly constCache = new Map<string, string>();
  private readonly names = new Set<string>();
  private scopeStack: string[] = [];

  constructor(
    readonly graphName: string,
    readonly precision: Precision,
    readonly seed: number,
  ) {}

  /** Runs `fn` with node names prefixed by `/scope` (names only; no effect on results). */
  scoped<T>(scope: string, fn: () => T): T {
    this.scopeStack.push(scope);
    try {
      return fn();
    } finally {
      this.scopeStack.pop();
    }
  }

  private nodeName(opType: string): string {
    const prefix = this.scopeStack.length ? `/${this.scopeStack.join('/')}/` : '/';
    const key = prefix + opType;
    const n = this.opCount.get(key) ?? 0;
    this.opCount.set(key, n + 1);
    return `${prefix}${opType}${n === 0 ? '' : `_${n}`}`;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`testmodel: duplicate value name ${name}`);
    this.names.add(name);
    return name;
  }

  /** Adds a node and returns all its output names. */
  opN(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, opts: NodeOptions = {}): string[] {
    const name = this.nodeName(opType);
    const outSpec = opts.outputs ?? 1;
    const outputs =
      typeof outSpec === 'number'
        ? Array.from({ length: outSpec }, (_, i) => this.claim(`${name}_output_${i}`))
        : outSpec.map((o) => this.claim(o));
    if (opts.domain === MS_DOMAIN) this.usesMsDomain = true;
    this.nodes.push({
      name,
      opType,
      input: inputs,
      output: outputs,
      domain: opts.domain ?? '',
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  /** Adds a node with one output and returns its name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, opts: NodeOptions = {}): string {
    return this.opN(opType, inputs, attrs, opts)[0];
  }

  /**
   * Declares a graph input and returns the name to compute with. Float inputs of an fp16 graph
   * are declared float16 and cast to float32 here.
   */
  input(name: string, elemType: ElemType, shape: Dim[]): string {
    this.inputs.push(valueInfo(this.claim(name), elemTypeCode(elemType, this.precision), shape));
    if (elemType === 'float' && this.precision === 'fp16') {
      return this.op('Cast', [name], { to: DataType.FLOAT });
    }
    return name;
  }

  /**
   * The name to give the node producing graph output `name`: the name itself, or a temporary
   * when `output()` must still cast it to float16.
   */
  outName(name: string, elemType: ElemType = 'float'): string {
    return elemType === 'float' && this.precision === 'fp16' ? `${name}_fp32` : name;
  }

  /** Declares graph output `name` computed as `value` (produced under `outName(name)`, or any value: then an Identity/Cast is added). */
  output(name: string, value: string, elemType: ElemType, shape: Dim[]): void {
    const cast = elemType === 'float' && this.precision === 'fp16';
    if (cast) {
      this.op('Cast', [value], { to: DataType.FLOAT16 }, { outputs: [name] });
    } else if (value !== name) {
      this.op('Identity', [value], {}, { outputs: [name] });
    }
    this.outputs.push(valueInfo(name, elemTypeCode(elemType, this.precision), shape));
  }

  private addInitializer(t: TensorData): string {
    this.initializers.push(t);
    return this.claim(t.name);
  }

  /** An int64 constant (deduplicated). `dims` defaults to [values.length]; pass [] for a scalar. */
  constI64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const arr = new BigInt64Array(values.map((v) => BigInt(v)));
    const name = `const_i64_${this.constCache.size}`;
    this.addInitializer(literalTensor(name, DataType.INT64, dims, new Uint8Array(arr.buffer)));
    this.constCache.set(key, name);
    return name;
  }

  /** A float32 constant (deduplicated; float32 in every precision mode). */
  constF32(values: number[], dims: number[] = [values.length]): string {
    const key = `f32:${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const arr = new Float32Array(values);
    const name = `const_f32_${this.constCache.size}`;
    this.addInitializer(literalTensor(name, DataType.FLOAT, dims, new Uint8Array(arr.buffer)));
    this.constCache.set(key, name);
    return name;
  }

  /** A float32 scalar constant. */
  scalar(v: number): string {
    return this.constF32([v], []);
  }

  /**
   * A generated float parameter (stored in canonical row-major order) and the float32 value to
   * compute with. `key` defaults to `name`.
   */
  param(name: string, dims: number[], init: WeightInit, key: string = name): string {
    const fp16 = this.precision === 'fp16';
    const t = denseWeight(name, dims, init, this.seed, key, fp16 ? DataType.FLOAT16 : DataType.FLOAT);
    this.addInitializer(t);
    return fp16 ? this.op('Cast', [name], { to: DataType.FLOAT }) : name;
  }

  /**
   * A linear layer `x [.., K] -> [.., N]` with weight `${prefix}.weight` (PyTorch [N, K]) and an
   * optional bias `${prefix}.bias` [N]. fp32/fp16: MatMul with the weight stored [K, N];
   * q4: MatMulNBits. The bias is a separate Add, as the exporters leave it. `out` names the
   * result (e.g. `outName('logits')`).
   */
  linear(
    x: string,
    prefix: string,
    K: number,
    N: number,
    init: WeightInit,
    bias: WeightInit | null = null,
    out?: string,
  ): string {
    let y: string;
    const finalOut = (isLast: boolean): NodeOptions => (isLast && out ? { outputs: [out] } : {});
    const wKey = `${prefix}.weight`;
    if (this.precision === 'q4') {
      const q = q4LinearWeight(`${prefix}.MatMul.weight`, K, N, init, this.seed, wKey);
      const b = this.addInitializer(q.weight);
      const s = this.addInitializer(q.scales);
      y = this.op('MatMulNBits', [x, b, s], { K, N, bits: 4, block_size: Q4_BLOCK_SIZE }, { domain: MS_DOMAIN, ...finalOut(!bias) });
    } else {
      const fp16 = this.precision === 'fp16';
      const t = linearWeightKN(`${prefix}.MatMul.weight`, K, N, init, this.seed, wKey, fp16 ? DataType.FLOAT16 : DataType.FLOAT);
      let w = this.addInitializer(t);
      if (fp16) w = this.op('Cast', [w], { to: DataType.FLOAT });
      y = this.op('MatMul', [x, w], {}, finalOut(!bias));
    }
    if (bias) y = this.op('Add', [y, this.param(`${prefix}.bias`, [N], bias)], {}, finalOut(true));
    return y;
  }

  /** Moves graph output `name` to the front (HF exports list `logits` first). */
  outputFirst(name: string): void {
    const i = this.outputs.findIndex((o) => o.name === name);
    if (i > 0) this.outputs.unshift(...this.outputs.splice(i, 1));
  }

  /** The GraphProto without initializers (the writer streams those). */
  graphProtoWithoutInitializers(): onnx.IGraphProto {
    return { name: this.graphName, node: this.nodes, input: this.inputs, output: this.outputs };
  }

  /** Opsets this graph needs. */
  opsetImports(): onnx.IOperatorSetIdProto[] {
    const sets: onnx.IOperatorSetIdProto[] = [{ domain: '', version: 17 }];
    if (this.usesMsDomain) sets.push({ domain: MS_DOMAIN, version: 1 });
    return sets;
  }
}

/**
 * A subgraph for `If`/`Loop` bodies: nodes that may read outer-scope values by name and declared
 * outputs. Built with plain protos (subgraphs here are tiny).
 */
export function subgraph(name: string, nodes: onnx.INodeProto[], outputs: onnx.IValueInfoProto[]): onnx.IGraphProto {
  return { name, node: nodes, output: outputs };
}
