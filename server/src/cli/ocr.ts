/**
 * `llava-lens ocr <image> [--json]`: text in reading order, through the daemon's `lens/runTool`
 * (the same client and protocol as everything else; no model is loaded). Plain output is the
 * copyable text (one row a line, cells of a row tab-separated); `--json` prints
 * `{lines: [{text, box: [x0,y0,x1,y1], score}], ms}` with boxes normalised to the image.
 * `--connect ws://host:port` (with a token, see connect.ts) runs it on a shared daemon; the image
 * then travels as bytes.
 */
import * as path from 'node:path';
import { linesToText, type OcrData } from '../tools/ocr';
import { UsageError, parse } from './args';
import { CONNECT_OPTIONS, openDaemon, parseConnect, type ConnectSettings } from './connect';

export interface OcrSettings {
  image: string;
  json: boolean;
  connect?: ConnectSettings;
}

export function parseOcrArgs(argv: string[]): OcrSettings {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, ...CONNECT_OPTIONS });
  if (positionals.length !== 1) throw new UsageError('ocr needs exactly one image: ocr <image> [--json].');
  const settings: OcrSettings = { image: path.resolve(positionals[0]), json: values.json ?? false };
  const connect = parseConnect(values);
  if (connect) settings.connect = connect;
  return settings;
}

export async function runOcr(s: OcrSettings): Promise<number> {
  const link = await openDaemon(s.connect);
  const client = link.client;
  try {
    await client.initialize({ clientName: 'llava-lens-cli' });
    const [image] = await link.images([s.image]);
    const r = await client.runTool({ name: 'ocr', image });
    if (r.error) throw new Error(`OCR failed: ${r.error}`);
    const d = r.data as OcrData;
    if (s.json) process.stdout.write(JSON.stringify({ lines: d.lines.map(({ text, box, score }) => ({ text, box, score })), ms: d.ms }) + '\n');
    else {
      const text = linesToText(d.lines);
      process.stdout.write(text + (text ? '\n' : ''));
      process.stderr.write(`${d.lines.length} line${d.lines.length === 1 ? '' : 's'} in ${Math.round(d.ms)} ms\n`);
    }
    return 0;
  } finally {
    await link.close();
  }
}
