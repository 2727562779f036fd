/** `llava-lens demo`: draws the sample diagram and asks about it (what `npm run demo` runs). */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GRAPH_TUNING_OPTIONS, parse, parseDevice, parseDtype, parseGraphTuningFlags } from './args';
import { runAsk, type AskSettings } from './ask';
import { sampleDiagramPng } from './sampleImage';

export const DEMO_QUESTION = 'What does this diagram show?';

export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parse(argv, { model: { type: 'string' }, device: { type: 'string' }, dtype: { type: 'string' }, out: { type: 'string' }, ...GRAPH_TUNING_OPTIONS });
  const device = parseDevice(values.device);
  const dtype = parseDtype(values.dtype);
  const graphTuning = parseGraphTuningFlags(values);

  const tmpDir = values.out === undefined ? await fs.mkdtemp(path.join(os.tmpdir(), 'llava-lens-demo-')) : undefined;
  const imagePath = values.out !== undefined ? path.resolve(values.out) : path.join(tmpDir!, 'diagram.png');
  try {
    await fs.writeFile(imagePath, await sampleDiagramPng());
    process.stderr.write(`Sample image: ${imagePath}\nQuestion: ${DEMO_QUESTION}\n`);
    const settings: AskSettings = { images: [imagePath], question: DEMO_QUESTION, json: false, params: {}, timingsTable: true };
    if (values.model !== undefined) settings.model = values.model;
    if (device !== undefined) settings.device = device;
    if (dtype !== undefined) settings.dtype = dtype;
    if (graphTuning !== undefined) settings.graphTuning = graphTuning;
    return await runAsk(settings);
  } finally {
    if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
  }
}
