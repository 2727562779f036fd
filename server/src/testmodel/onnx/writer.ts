/**
 * Serialises a `GraphBuilder` to an .onnx file, streaming the initializers.
 *
 * Protobuf allows the fields of a message in any order and repeated fields to be split, so the
 * file is written as: ModelProto header (ir_version, producer, opsets) + field 7 (graph) whose
 * body is the graph without initializers followed by one field-5 entry per initializer. Each
 * initializer is its TensorProto header (name, dims, type, external-data entries) followed by
 * field 9 (raw_data) when stored inline. Lengths are known in advance, so nothing large is ever
 * held in memory.
 *
 * External data (`<file>.onnx_data`): `data_location = EXTERNAL` and `location`/`offset`/`length`
 * entries, no raw_data. Tensors smaller than `INLINE_THRESHOLD` bytes always stay inline, and
 * external offsets are aligned to 4096 bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { GraphBuilder } from './builder';
import { TensorData } from './tensorData';

/** Inline size above which `external: 'auto'` switches to external data (protobuf's limit is 2 GiB). */
export const AUTO_EXTERNAL_BYTES = 1.8e9;
/** Tensors smaller than this stay inline even in external-data files. */
const INLINE_THRESHOLD = 1024;
const ALIGN = 4096;

const PRODUCER = 'llava-lens-testmodel';

export interface WriteOptions {
  /** true: external data; false: inline; 'auto': external when the inline file would pass AUTO_EXTERNAL_BYTES. */
  external: boolean | 'auto';
}

export interface WriteResult {
  /** Paths written (the graph, then its data file if any). */
  files: string[];
  external: boolean;
  bytes: number;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function varintLen(n: number): number {
  return varint(n).length;
}

/** Length-delimited field key byte for field numbers < 16. */
function lenKey(field: number): number {
  return (field << 3) | 2;
}

/** Buffered synchronous file writer. */
class FileSink {
  private readonly fd: number;
  private readonly buf = Buffer.allocUnsafe(8 << 20);
  private used = 0;
  written = 0;

  constructor(file: string) {
    this.fd = fs.openSync(file, 'w');
  }

  write(bytes: Uint8Array): void {
    this.written += bytes.length;
    if (bytes.length > this.buf.length - this.used) {
      this.flush();
      if (bytes.length > this.buf.length) {
        fs.writeSync(this.fd, bytes);
        return;
      }
    }
    this.buf.set(bytes, this.used);
    this.used += bytes.length;
  }

  pad(to: number): void {
    if (this.written < to) this.write(new Uint8Array(to - this.written));
  }

  flush(): void {
    let off = 0;
    while (off < this.used) off += fs.writeSync(this.fd, this.buf, off, this.used - off);
    this.used = 0;
  }

  close(): void {
    this.flush();
    fs.closeSync(this.fd);
  }
}

interface Planned {
  t: TensorData;
  header: Uint8Array;
  inline: boolean;
  /** Bytes of the TensorProto message. */
  messageLen: number;
  offset: number;
}

function plan(tensors: TensorData[], external: boolean, dataFileName: string): Planned[] {
  let offset = 0;
  return tensors.map((t) => {
    const inline = !external || t.byteLength < INLINE_THRESHOLD;
    const proto: onnx.ITensorProto = { name: t.name, dims: t.dims, dataType: t.dataType };
    let myOffset = 0;
    if (!inline) {
      myOffset = Math.ceil(offset / ALIGN) * ALIGN;
      offset = myOffset + t.byteLength;
      proto.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      proto.externalData = [
        { key: 'location', value: dataFileName },
        { key: 'offset', value: String(myOffset) },
        { key: 'length', value: String(t.byteLength) },
      ];
    }
    const header = onnx.TensorProto.encode(proto).finish();
    const messageLen = header.length + (inline ? 1 + varintLen(t.byteLength) + t.byteLength : 0);
    return { t, header, inline, messageLen, offset: myOffset };
  });
}

function inlineSize(tensors: TensorData[]): number {
  return tensors.reduce((a, t) => a + t.byteLength, 0);
}

/** Writes `g` to `file` (and `file + '_data'` for external data). Synchronous; overwrites. */
export function writeModel(file: string, g: GraphBuilder, opts: WriteOptions): WriteResult {
  const external = opts.external === 'auto' ? inlineSize(g.initializers) > AUTO_EXTERNAL_BYTES : opts.external;
  const dataPath = `${file}_data`;
  const dataName = path.basename(dataPath);
  const planned = plan(g.initializers, external, dataName);

  const modelHeader = onnx.ModelProto.encode({
    irVersion: 8,
    producerName: PRODUCER,
    producerVersion: '1',
    opsetImport: g.opsetImports(),
  }).finish();
  const graphBody = onnx.GraphProto.encode(g.graphProtoWithoutInitializers()).finish();
  let graphLen = graphBody.length;
  for (const p of planned) graphLen += 1 + varintLen(p.messageLen) + p.messageLen;

  const sink = new FileSink(file);
  const files = [file];
  try {
    sink.write(modelHeader);
    sink.write(Uint8Array.from([lenKey(7), ...varint(graphLen)]));
    sink.write(graphBody);
    for (const p of planned) {
      sink.write(Uint8Array.from([lenKey(5), ...varint(p.messageLen)]));
      sink.write(p.header);
      if (p.inline) {
        sink.write(Uint8Array.from([lenKey(9), ...varint(p.t.byteLength)]));
        const before = sink.written;
        p.t.write((c) => sink.write(c));
        if (sink.written - before !== p.t.byteLength) {
          throw new Error(`testmodel: ${p.t.name} wrote ${sink.written - before} of ${p.t.byteLength} bytes`);
        }
      }
    }
  } finally {
    sink.close();
  }
  let bytes = fs.statSync(file).size;

  if (planned.some((p) => !p.inline)) {
    const data = new FileSink(dataPath);
    try {
      for (const p of planned) {
        if (p.inline) continue;
        data.pad(p.offset);
        p.t.write((c) => data.write(c));
        if (data.written !== p.offset + p.t.byteLength) throw new Error(`testmodel: ${p.t.name}: external data size mismatch`);
      }
    } finally {
      data.close();
    }
    files.push(dataPath);
    bytes += fs.statSync(dataPath).size;
  } else if (fs.existsSync(dataPath)) {
    fs.rmSync(dataPath);
  }
  return { files, external, bytes };
}
