/**
 * `npm run bench`: LLaVA Lens against transformers.js on the same model files, same machine,
 * same run. See docs/performance.md for what is measured and how; `--help` for options.
 *
 * Each side runs in its own child process (peak memory stays separate); the bench alternates
 * between them, one warm-up round, then `--reps` measured rounds. Output: a Markdown table, or
 * with `--json` one JSON object; both are also written to bench/results/latest.{md,json}.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs, USAGE, type BenchArgs } from './args';
import { defaultIntraOpThreads } from '../../server/src/runtime/backend';
import { measureBandwidth } from './bandwidth';
import { measureDaemonOverhead } from './daemonOverhead';
import { NODE_CANDIDATES, OURS_NODE_ENV, OURS_NODE_FLAGS, candidateLabel, type NodeCandidate } from './flags';
import { makeImages } from './images';
import * as ort from 'onnxruntime-node';
import { decoderPasses, tuneGraph, visionPasses } from '../../server/src/runtime/graphTuning';
import { decodeImage } from '../../server/src/runtime/image';
import { readModelSpec } from '../../server/src/runtime/modelSpec';
import { preprocess, type PreprocessSpec } from '../../server/src/runtime/preprocess';
import type { GraphTuningPasses } from '../../server/src/runtime/types';
import { logitError } from './logitError';
import { cacheRoot, decoderBytes, ensureBenchModel, singleViewTwin } from './model';
import { markdown, ratiosOf, type BenchResult } from './report';
import { ChildSide } from './runner';
import type { TurnResult } from './side';
import { summarize, type Summary } from './stats';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const Q1 = 'Describe this image in detail.';
const Q2 = 'What colour is the circle?';
const Q3 = 'Is there any text in the picture?';
/** EOS and turn separator of the bench model (`generation_config.json` eos_token_id, `<|im_end|>`). */
function banIds(dir: string): number[] {
  const gen = JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8'));
  const tok = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const ids = new Set<number>([gen.eos_token_id].flat().filter((x: unknown): x is number => typeof x === 'number'));
  for (const t of tok.added_tokens ?? []) if (t.content === '<|im_end|>' || t.content === '<|endoftext|>') ids.add(t.id);
  return [...ids];
}

function version(pkg: string): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

type Series = Record<string, number[]>;
const push = (s: Series, k: string, v: number) => (s[k] ??= []).push(v);

function firstDiff(a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

async function run(args: BenchArgs): Promise<BenchResult> {
  const t0 = performance.now();
  const load0 = os.loadavg()[0];
  const notes: string[] = [];
  const dir = path.resolve(args.model ?? path.join(cacheRoot(), 'bench-model'));
  const genS = await ensureBenchModel(dir, log);
  if (genS) notes.push(`bench model generated in ${genS.toFixed(0)} s (reused on later runs)`);
  const twin = singleViewTwin(dir);
  const imgs = await makeImages(path.join(os.tmpdir(), 'llava-lens-bench'), args.reps + 1);
  const ban = banIds(twin);
  const threads = defaultIntraOpThreads();
  notes.push(`intra-op threads: ${threads ?? "onnxruntime's default"} on both sides`);

  log('measuring memory bandwidth');
  const bw = measureBandwidth();
  const wBytes = decoderBytes(dir);
  const ceilingTps = (bw.bestGBs * 1e9) / wBytes;

  log(`starting ours (${candidateLabel({ flags: OURS_NODE_FLAGS, env: OURS_NODE_ENV })}) and transformers.js (default flags and environment)`);
  const ours = await ChildSide.start('ours', 'ours', [...OURS_NODE_FLAGS], OURS_NODE_ENV);
  const theirs = args.oursOnly ? undefined : await ChildSide.start('transformers.js', 'transformers', []);
  const O: Series = {}, Th: Series = {}, K: Series = {};
  try {
    const lo = await ours.call('load', { dir: twin, banIds: ban });
    push(O, 'loadMs', lo.loadMs);
    notes.push(...lo.notes.filter((n) => n.includes('graph tuning')));
    if (theirs) push(Th, 'loadMs', (await theirs.call('load', { dir: twin, banIds: ban, threads })).loadMs);

    log('preprocessing');
    // Preprocessing runs take milliseconds and this VM's speed drifts between phases ~2.5× apart
    // (every operation at once): many samples, after warm-up passes (sharp, JIT), keep the median honest.
    // Each call starts after a pause: an image arriving at an idle process, not while the other
    // side's process (or this one) still collects the previous call's garbage on helper threads.
    const pre = args.quick ? 3 : 15;
    const warm = 2;
    const settle = () => new Promise((r) => setTimeout(r, 150));
    const idle = async <T>(f: () => Promise<T>): Promise<T> => {
      await settle();
      return f();
    };
    for (let i = 0; i < pre + warm; i++) {
      const keep = i >= warm;
      const a = await idle(() => ours.call('preprocess', imgs.jpeg, false));
      const b = await idle(() => ours.call('preprocess', imgs.png, false));
      const c = await idle(() => ours.call('preprocess', imgs.jpeg, true));
      const d = await idle(() => ours.call('preprocess', imgs.png, true));
      if (keep) {
        push(O, 'preprocessJpegMs', a.totalMs);
        push(O, 'preprocessPngMs', b.totalMs);
        push(O, 'preprocessJpegAnyresMs', c.totalMs);
        push(O, 'preprocessPngAnyresMs', d.totalMs);
      }
      if (i === warm) notes.push(`anyres views: JPEG ${c.views}, PNG ${d.views} (one view each without tiling); ours' JPEG: decode ${a.decodeMs.toFixed(1)} ms + preprocess ${a.preprocessMs.toFixed(1)} ms`);
      if (theirs) {
        const e = await idle(() => theirs.call('preprocess', imgs.jpeg, false));
        const f = await idle(() => theirs.call('preprocess', imgs.png, false));
        if (keep) {
          push(Th, 'preprocessJpegMs', e.totalMs);
          push(Th, 'preprocessPngMs', f.totalMs);
        }
      }
    }

    let promptTokens = 0;
    for (let rep = 0; rep <= args.reps; rep++) {
      const keep = rep > 0;
      const image = imgs.conv[rep];
      log(`${keep ? `round ${rep}/${args.reps}` : 'warm-up round'}`);
      const rec = (s: Series, r: TurnResult, k: string) => {
        if (keep) push(s, k, r.ttftMs);
      };
      const oursRound = async () => {
        const a = await ours.call('newImage', image, Q1, args.tokens);
        if (a.tokens !== args.tokens) throw new Error(`ours generated ${a.tokens} tokens, expected ${args.tokens}`);
        promptTokens = a.promptTokens;
        rec(O, a, 'ttftCold');
        if (keep) push(O, 'decodeTps', a.decodeTps), push(O, 'visionMs', a.visionMs);
        rec(O, await ours.call('repeatImage', image, Q3), 'ttftRepeatImage');
        rec(O, await ours.call('followUp', Q2), 'ttftFollowUp');
      };
      const theirRound = async () => {
        if (!theirs) return;
        const a = await theirs.call('newImage', image, Q1, args.tokens);
        if (a.tokens !== args.tokens) throw new Error(`transformers.js generated ${a.tokens} tokens, expected ${args.tokens}`);
        if (promptTokens && a.promptTokens !== promptTokens) notes.push(`prompt lengths differ: ours ${promptTokens}, transformers.js ${a.promptTokens}`);
        rec(Th, a, 'ttftCold');
        if (keep) push(Th, 'decodeTps', a.decodeTps), push(Th, 'visionMs', a.visionMs);
        rec(K, await theirs.call('followUpKv', Q2), 'ttftFollowUp');
        rec(Th, await theirs.call('repeatImage', image, Q3), 'ttftRepeatImage');
        rec(Th, await theirs.call('followUp', Q2), 'ttftFollowUp');
      };
      // Alternate who goes first, so drift in the machine's load does not favour one side.
      if (rep % 2 === 0) await oursRound(), await theirRound();
      else await theirRound(), await oursRound();
    }

    const so = await ours.call('stats');
    push(O, 'peakRssMB', so.peakRssMB);
    if (theirs) push(Th, 'peakRssMB', (await theirs.call('stats')).peakRssMB);

    const S = (s: Series) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, summarize(v)])) as Record<string, Summary>;
    const oursS = S(O), theirsS = S(Th), kvS = S(K);
    await ours.stop();
    await theirs?.stop();

    log('daemon overhead (stand-in engine over stdio JSON-RPC)');
    const daemon = await measureDaemonOverhead(ROOT, []);

    let anyres: BenchResult['anyres'];
    if (args.anyres) {
      log('ours with anyres tiling (one run)');
      const a = await ChildSide.start('ours-anyres', 'ours', [...OURS_NODE_FLAGS], OURS_NODE_ENV);
      try {
        await a.call('load', { dir, banIds: ban });
        const r = await a.call('newImage', imgs.conv[0], Q1, 1);
        anyres = { ttftMs: r.ttftMs, visionMs: r.visionMs, promptTokens: r.promptTokens };
      } finally {
        await a.stop();
      }
    }

    const imageTokens = 729;
    const rooflineFraction = (oursS.decodeTps?.median ?? NaN) / ceilingTps;
    const partial = { ours: oursS, theirs: theirsS, theirsKv: kvS };
    const ratios = ratiosOf(partial);
    const medians: Record<string, number> = {};
    for (const [side, rec] of Object.entries(partial)) for (const [k, v] of Object.entries(rec)) medians[`${side}.${k}`] = v.median;
    const cpus = os.cpus();
    return {
      machine: {
        cpu: cpus[0]?.model.trim() ?? '?',
        cores: cpus.length,
        memGB: os.totalmem() / 2 ** 30,
        os: `${os.type()} ${os.release()} ${os.arch()}`,
        node: process.versions.node,
        onnxruntime: version('onnxruntime-node'),
        transformersjs: version('@huggingface/transformers'),
        loadavg: [load0, os.loadavg()[0]],
      },
      settings: { reps: args.reps, tokens: args.tokens, model: dir, promptTokens, imageTokens, oursNodeFlags: [...OURS_NODE_FLAGS], oursNodeEnv: { ...OURS_NODE_ENV }, theirsNodeFlags: [], wallSeconds: (performance.now() - t0) / 1000 },
      bandwidth: { memchrGBs: bw.memchrGBs, sumGBs: bw.sumGBs, bestGBs: bw.bestGBs, decoderBytes: wBytes, ceilingTps },
      ...partial,
      daemon,
      anyres,
      ratios,
      rooflineFraction,
      tokenOverheadMs: daemon.tokenOverheadMs,
      preprocessJpegMs: oursS.preprocessJpegMs?.median ?? NaN,
      notes,
      medians,
    };
  } finally {
    await ours.stop().catch(() => undefined);
    await theirs?.stop().catch(() => undefined);
  }
}

/**
 * `--flags`: decode tok/s, new-image time to first token and peak memory of each side under each
 * candidate flag set. All flag sets of one side are loaded at once (one child each) and run in
 * interleaved rounds, so load from other processes spreads evenly over them.
 */
async function flagStudy(args: BenchArgs): Promise<string> {
  const dir = singleViewTwin(path.resolve(args.model ?? path.join(cacheRoot(), 'bench-model')));
  const rounds = Math.max(args.reps, 2);
  const imgs = await makeImages(path.join(os.tmpdir(), 'llava-lens-bench'), rounds + 1);
  const ban = banIds(dir);
  const lines = ['| side | node flags; environment | decode tokens/s | time to first token, new image (ms) | peak RSS (MB) |', '|---|---|---|---|---|'];
  for (const kind of ['ours', 'transformers'] as const) {
    if (kind === 'transformers' && args.oursOnly) continue;
    const kids: Array<{ cand: NodeCandidate; c: ChildSide; tps: number[]; ttft: number[] }> = [];
    try {
      for (const cand of NODE_CANDIDATES) {
        log(`flags: loading ${kind} ${candidateLabel(cand)}`);
        const c = await ChildSide.start(kind, kind, [...cand.flags], cand.env);
        kids.push({ cand, c, tps: [], ttft: [] });
        await c.call('load', { dir, banIds: ban, threads: defaultIntraOpThreads() });
      }
      for (let r = 0; r <= rounds; r++) {
        log(`flags: ${kind} round ${r}/${rounds}`);
        for (const k of r % 2 ? [...kids].reverse() : kids) {
          const x = await k.c.call('newImage', imgs.conv[r], Q1, args.tokens);
          if (r > 0) k.tps.push(x.decodeTps), k.ttft.push(x.ttftMs);
        }
      }
      for (const k of kids) {
        const st = await k.c.call('stats');
        const a = summarize(k.tps), b = summarize(k.ttft);
        lines.push(`| ${kind} | ${candidateLabel(k.cand)} | ${a.median.toFixed(1)} (${a.min.toFixed(1)}–${a.max.toFixed(1)}) | ${b.median.toFixed(0)} (${b.min.toFixed(0)}–${b.max.toFixed(0)}) | ${st.peakRssMB.toFixed(0)} |`);
      }
    } finally {
      for (const k of kids) await k.c.stop();
    }
  }
  return lines.join('\n');
}

/**
 * `--divergence`: what graph tuning does to the numbers. Greedy tokens over 256 forced tokens for
 * three prompts, ours untuned against every pass together and each pass that is not exact alone;
 * the logit error of each decoder variant (logitError.ts) and the vision features' cosine.
 */
async function divergence(args: BenchArgs): Promise<string> {
  const base = path.resolve(args.model ?? path.join(cacheRoot(), 'bench-model'));
  const dir = singleViewTwin(base);
  const imgs = await makeImages(path.join(os.tmpdir(), 'llava-lens-bench'), 3);
  const ban = banIds(dir);
  const N = 256;
  const threads = defaultIntraOpThreads();
  const prompts: Array<[string, string]> = [[imgs.conv[0], Q1], [imgs.conv[1], Q2], [imgs.conv[2], Q3]];
  const none: GraphTuningPasses = { int8Activations: false, lastLogitsOnly: false, groupedAttention: false, int8Vision: false };
  const variants: Array<[string, GraphTuningPasses | false]> = [
    ['untuned', false],
    ['all passes', {}],
    ['int8Activations only', { ...none, int8Activations: true }],
    ['groupedAttention only', { ...none, groupedAttention: true }],
    ['int8Vision only', { ...none, int8Vision: true }],
  ];
  const runs: Record<string, number[][]> = {};
  for (const [label, tuning] of variants) {
    log(`divergence: ours, ${label}`);
    const c = await ChildSide.start(label, 'ours', [...OURS_NODE_FLAGS], OURS_NODE_ENV);
    try {
      await c.call('load', { dir, banIds: ban, tuning });
      runs[label] = [];
      for (const [img, q] of prompts) runs[label].push((await c.call('newImage', img, q, N)).ids);
    } finally {
      await c.stop();
    }
  }
  const lines = [`Greedy tokens over ${N} forced tokens, ${prompts.length} prompts, against the untuned graphs:`, ''];
  lines.push('| tuning | first difference | tokens equal at the same position |', '|---|---|---|');
  for (const [label] of variants.slice(1)) {
    const d = runs[label].map((ids, i) => firstDiff(ids, runs.untuned[i]));
    const agree = runs[label].map((ids, i) => ids.filter((x, j) => x === runs.untuned[i][j]).length);
    lines.push(`| ${label} | ${d.map((x) => (x < 0 ? 'identical' : `token ${x}`)).join(', ')} | ${agree.map((n) => `${n}/${N}`).join(', ')} |`);
  }
  log('divergence: logit error');
  const src = path.join(base, 'onnx', 'decoder_model_merged.onnx');
  const cfg = JSON.parse(fs.readFileSync(path.join(base, 'config.json'), 'utf8')).text_config;
  lines.push('', `Decoder logits against the untuned graph, same inputs (a 200-position prefill, then single tokens):`, '');
  lines.push('| tuning | steps | max abs diff | RMS diff | logit std | same argmax | top-2 gap < max diff |', '|---|---|---|---|---|---|---|');
  for (const [label, tuning] of variants.slice(1, 4)) {
    const tuned = await tuneGraph(src, decoderPasses(tuning || {}));
    const e = await logitError(src, tuned.path, cfg.hidden_size, cfg.num_key_value_heads, cfg.head_dim, threads);
    lines.push(`| ${label} | ${e.steps} | ${e.maxAbs.toExponential(2)} | ${e.rms.toExponential(2)} | ${e.std.toFixed(3)} | ${e.sameArgmax}/${e.steps} | ${e.closeCalls}/${e.steps} |`);
  }
  log('divergence: vision features');
  const vsrc = path.join(base, 'onnx', 'vision_encoder.onnx');
  const vt = await tuneGraph(vsrc, visionPasses({}));
  const f = await featureError(vsrc, vt.path, imgs.conv, readModelSpec(dir).preprocess, threads);
  lines.push('', `Vision features, int8 weights against fp32, ${f.images} images: cosine ${f.minCos.toFixed(5)} (lowest), RMS diff ${f.rms.toExponential(2)} against a feature RMS of ${f.norm.toFixed(3)}, max abs diff ${f.maxAbs.toFixed(3)}.`);
  return lines.join('\n');
}

/** Vision features of the same pixels through two vision-encoder files. */
async function featureError(original: string, tuned: string, images: string[], spec: PreprocessSpec, threads: number | undefined): Promise<{ images: number; minCos: number; rms: number; norm: number; maxAbs: number }> {
  const opts = { logSeverityLevel: 3 as const, ...(threads ? { intraOpNumThreads: threads } : {}) };
  const a = await ort.InferenceSession.create(original, opts);
  const b = await ort.InferenceSession.create(tuned, opts);
  let minCos = 1;
  let sq = 0;
  let nn = 0;
  let n = 0;
  let maxAbs = 0;
  for (const file of images) {
    const pv = await preprocess(await decodeImage({ bytes: await fs.promises.readFile(file) }, { maxPixels: 50e6 }), spec);
    const feeds = { [a.inputNames[0]]: new ort.Tensor('float32', pv.data, pv.dims) };
    const x = (await a.run(feeds))[a.outputNames[0]].data as Float32Array;
    const y = (await b.run(feeds))[b.outputNames[0]].data as Float32Array;
    let dot = 0;
    let xx = 0;
    let yy = 0;
    for (let i = 0; i < x.length; i++) {
      dot += x[i] * y[i];
      xx += x[i] * x[i];
      yy += y[i] * y[i];
      sq += (x[i] - y[i]) ** 2;
      maxAbs = Math.max(maxAbs, Math.abs(x[i] - y[i]));
    }
    nn += xx;
    n += x.length;
    minCos = Math.min(minCos, dot / Math.sqrt(xx * yy));
  }
  await a.release();
  await b.release();
  return { images: images.length, minCos, rms: Math.sqrt(sq / n), norm: Math.sqrt(nn / n), maxAbs };
}

async function main(): Promise<void> {
  let args: BenchArgs;
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return;
  }
  try {
    args = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  if (args.divergence) {
    const t = await divergence(args);
    process.stdout.write(t + '\n');
    fs.mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'bench', 'results', 'divergence.md'), t + '\n');
    return;
  }
  if (args.flags) {
    const t = await flagStudy(args);
    process.stdout.write(`${t}\n`);
    fs.mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'bench', 'results', 'flags.md'), t + '\n');
    return;
  }
  const r = await run(args);
  const md = markdown(r);
  process.stdout.write(args.json ? JSON.stringify(r, null, 2) + '\n' : md + '\n');
  if (args.save) {
    const out = path.join(ROOT, 'bench', 'results');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'latest.md'), md + '\n');
    fs.writeFileSync(path.join(out, 'latest.json'), JSON.stringify(r, null, 2) + '\n');
    log(`wrote ${path.relative(process.cwd(), out)}/latest.{md,json}`);
  }
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : e}\n`);
  process.exitCode = 1;
});
