/** The bench's Markdown table and JSON object. */
import { fmt, type Summary } from './stats';

export interface Machine {
  cpu: string;
  cores: number;
  memGB: number;
  os: string;
  node: string;
  onnxruntime: string;
  transformersjs: string;
  /** 1-minute load average at the start and end of the run (other processes share the CPU). */
  loadavg: [number, number];
}

export interface BenchResult {
  machine: Machine;
  settings: { reps: number; tokens: number; model: string; promptTokens: number; imageTokens: number; oursNodeFlags: string[]; theirsNodeFlags: string[]; /** Variables added to ours' environment (`OURS_NODE_ENV`); absent in results from before it existed. */ oursNodeEnv?: Record<string, string>; wallSeconds: number };
  bandwidth: { memchrGBs: number; sumGBs: number; bestGBs: number; decoderBytes: number; ceilingTps: number };
  ours: Record<string, Summary>;
  theirs: Record<string, Summary>;
  theirsKv: Record<string, Summary>;
  daemon?: { tokenOverheadMs: number; rawTokenMs: number; engineTokenMs: number; workerHopMs: number; roundTripMs: number };
  anyres?: { ttftMs: number; visionMs: number; promptTokens: number };
  ratios: Record<string, number>;
  rooflineFraction: number;
  tokenOverheadMs: number;
  preprocessJpegMs: number;
  notes: string[];
  /** Every median in one flat object (`<side>.<measure>`). */
  medians: Record<string, number>;
}

const ratio = (a: Summary | undefined, b: Summary | undefined) => (a && b && b.median ? a.median / b.median : NaN);

export function ratiosOf(r: Pick<BenchResult, 'ours' | 'theirs' | 'theirsKv'>): Record<string, number> {
  return {
    decodeTps: ratio(r.ours.decodeTps, r.theirs.decodeTps),
    ttftCold: ratio(r.ours.ttftCold, r.theirs.ttftCold),
    ttftRepeatImage: ratio(r.ours.ttftRepeatImage, r.theirs.ttftRepeatImage),
    ttftFollowUp: ratio(r.ours.ttftFollowUp, r.theirs.ttftFollowUp),
    ttftFollowUpVsKv: ratio(r.ours.ttftFollowUp, r.theirsKv.ttftFollowUp),
    peakRss: ratio(r.ours.peakRssMB, r.theirs.peakRssMB),
    visionMs: ratio(r.ours.visionMs, r.theirs.visionMs),
    preprocessJpeg: ratio(r.ours.preprocessJpegMs, r.theirs.preprocessJpegMs),
    preprocessPng: ratio(r.ours.preprocessPngMs, r.theirs.preprocessPngMs),
  };
}

const ROWS: Array<[key: string, label: string, digits: number, ratioKey?: string]> = [
  ['preprocessJpegMs', 'decode + preprocess, 1024×768 JPEG, one view (ms)', 1, 'preprocessJpeg'],
  ['preprocessPngMs', 'decode + preprocess, 1920×1080 PNG, one view (ms)', 1, 'preprocessPng'],
  ['preprocessJpegAnyresMs', 'decode + preprocess, JPEG, anyres tiles (ms)', 1],
  ['preprocessPngAnyresMs', 'decode + preprocess, PNG, anyres tiles (ms)', 1],
  ['visionMs', 'vision encoder, one 384×384 view (ms)', 0, 'visionMs'],
  ['ttftCold', 'time to first token, new image (ms)', 0, 'ttftCold'],
  ['ttftRepeatImage', 'time to first token, same image, new conversation (ms)', 0, 'ttftRepeatImage'],
  ['ttftFollowUp', 'time to first token, follow-up (ms)', 0, 'ttftFollowUp'],
  ['decodeTps', 'decode, forced tokens (tokens/s)', 1, 'decodeTps'],
  ['peakRssMB', 'peak resident memory (MB)', 0, 'peakRss'],
  ['loadMs', 'model load (ms)', 0],
];

export function markdown(r: BenchResult): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(`### LLaVA Lens vs transformers.js ${m.transformersjs} — ${m.cpu}, ${m.cores} cores, ${m.memGB.toFixed(0)} GB, ${m.os}, Node ${m.node}, onnxruntime-node ${m.onnxruntime}`);
  lines.push('');
  lines.push(`Bench model (generated \`bench\` preset, llava-onevision-qwen2-0.5b dimensions, 4-bit decoder), one 384×384 view, ${r.settings.promptTokens}-token prompt (${r.settings.imageTokens} image tokens), ${r.settings.tokens} forced tokens; median (min–max) of ${r.settings.reps} runs after a warm-up, sides alternating. Ours with \`${Object.entries(r.settings.oursNodeEnv ?? {}).map(([k, v]) => `${k}=${v} `).join('')}node ${r.settings.oursNodeFlags.join(' ') || '(no flags)'}\`, transformers.js with default Node flags${r.settings.oursNodeEnv ? ' and environment' : ''}. Load average ${m.loadavg[0].toFixed(2)} → ${m.loadavg[1].toFixed(2)}.`);
  lines.push('');
  lines.push('| measure | ours | transformers.js | transformers.js, KV by hand | ours / transformers.js |');
  lines.push('|---|---|---|---|---|');
  for (const [key, label, d, rk] of ROWS) {
    const o = r.ours[key], t = r.theirs[key], k = r.theirsKv[key];
    if (!o && !t) continue;
    const rat = rk && Number.isFinite(r.ratios[rk]) ? r.ratios[rk].toFixed(2) : '';
    const extra = key === 'ttftFollowUp' && Number.isFinite(r.ratios.ttftFollowUpVsKv) ? ` (vs KV by hand: ${r.ratios.ttftFollowUpVsKv.toFixed(2)})` : '';
    lines.push(`| ${label} | ${fmt(o, d)} | ${fmt(t, d)} | ${k ? fmt(k, d) : ''} | ${rat}${extra} |`);
  }
  const b = r.bandwidth;
  lines.push(`| memory read bandwidth (GB/s; memchr / JS sum) | ${b.memchrGBs.toFixed(1)} / ${b.sumGBs.toFixed(1)} | | | |`);
  lines.push(`| decode ceiling: bandwidth ÷ ${(b.decoderBytes / 1e6).toFixed(0)} MB decoder weights (tokens/s) | ${b.ceilingTps.toFixed(1)} | | | |`);
  lines.push(`| decode as a fraction of the ceiling | ${(100 * r.rooflineFraction).toFixed(0)}% | ${Number.isFinite(r.theirs.decodeTps?.median) ? (100 * r.theirs.decodeTps.median / b.ceilingTps).toFixed(0) + '%' : '–'} | | |`);
  if (r.daemon) {
    lines.push(`| daemon overhead per streamed token (ms) | ${r.daemon.tokenOverheadMs.toFixed(3)} | | | |`);
    lines.push(`| daemon request round trip, stdio JSON-RPC (ms) | ${r.daemon.roundTripMs.toFixed(3)} | | | |`);
  }
  if (r.anyres) lines.push(`| ours with anyres tiling: time to first token, new image (ms; ${r.anyres.promptTokens} tokens) | ${r.anyres.ttftMs.toFixed(0)} | | | |`);
  lines.push('');
  for (const n of r.notes) lines.push(`- ${n}`);
  lines.push(`\nWall time of the run: ${r.settings.wallSeconds.toFixed(0)} s.`);
  return lines.join('\n');
}
