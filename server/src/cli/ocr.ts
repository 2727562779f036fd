/**
 * `llava-lens ocr <image> [--json]`: text in reading order, through the daemon's `lens/runTool`
 * (the same client and protocol as everything else; no model is loaded). Plain output is the
 * copyable text (one row a line, cells of a row tab-separated); `--json` prints
 * `{lines: [{text, box: [x0,y0,x1,y1], score}], ms}` with boxes normalised to the image.
 */
import * as path from 'node:path';
import { LensClient } from '../../../client/src/daemonClient';
import { RunToolRequest } from '../../../common/protocol';
import { linesToText, type OcrData } from '../tools/ocr';
import { UsageError, parse } from './args';
import { daemonEntry } from './ask';

export function parseOcrArgs(argv: string[]): { image: string; json: boolean } {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
  if (positionals.length !== 1) throw new UsageError('ocr needs exactly one image: ocr <image> [--json].');
  return { image: path.resolve(positionals[0]), json: values.json ?? false };
}

export async function runOcr(s: { image: string; json: boolean }): Promise<number> {
  const client = LensClient.spawnStdio({ daemonPath: daemonEntry() });
  try {
    await client.initialize({ clientName: 'llava-lens-cli' });
    const r = await client.connection.sendRequest(RunToolRequest, { name: 'ocr', image: { path: s.image } });
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
    await client.shutdown();
  }
}
