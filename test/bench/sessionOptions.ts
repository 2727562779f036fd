/**
 * Session-option study: `node [--single-threaded-gc] out/test/bench/sessionOptions.js [--rounds N]`.
 *
 * Loads the bench decoder (graph-tuned, as the engine loads it; once untuned) once per option set, then
 * interleaves the sets round by round (so machine load drifts evenly over them): a 774-token
 * prefill and 32 decode steps at that context each. Also the vision encoder with 1 and 2 threads.
 * Prints a Markdown table of medians; docs/performance.md records the choice it supports.
 */
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { defaultIntraOpThreads } from '../../server/src/runtime/backend';
import { tuneGraph } from '../../server/src/runtime/graphTuning';
import { cacheRoot, ensureBenchModel } from './model';
import { summarize } from './stats';

type Opts = ort.InferenceSession.SessionOptions;
/** Variants; all but the first two run on top of `defaultIntraOpThreads()` threads (what the engine uses). */
function sets(threads: number | undefined): Array<[string, Opts, 'original'?]> {
  const t: Opts = threads !== undefined ? { intraOpNumThreads: threads } : {};
  const n = threads ?? 'default';
  return [
    ["onnxruntime's default threads (other options default)", {}],
    ['intraOpNumThreads 1', { intraOpNumThreads: 1 }],
    [`intraOpNumThreads ${n} (the engine's choice: spinning, CPU arena, level all)`, t],
    [`intraOpNumThreads ${n}, no spinning`, { ...t, extra: { session: { 'intra_op.allow_spinning': '0' } } }],
    [`intraOpNumThreads ${n}, no CPU arena`, { ...t, enableCpuMemArena: false }],
    [`intraOpNumThreads ${n}, graphOptimizationLevel extended`, { ...t, graphOptimizationLevel: 'extended' }],
    [`intraOpNumThreads ${n}, graph tuning off (the original file)`, t, 'original'],
  ];
}

const H = 896, L = 24, PROMPT = 774, STEPS = 32;

function feeds(S: number, P: number, prev?: ort.InferenceSession.ReturnType): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {
    inputs_embeds: new ort.Tensor('float32', Float32Array.from({ length: S * H }, (_, i) => Math.sin(i * 0.7 + P)), [1, S, H]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(P + S).fill(1n), [1, P + S]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: S }, (_, i) => BigInt(P + i)), [1, S]),
    num_logits_to_keep: new ort.Tensor('int64', new BigInt64Array([1n]), []),
  };
  for (let i = 0; i < L; i++) {
    for (const k of ['key', 'value']) f[`past_key_values.${i}.${k}`] = prev ? prev[`present.${i}.${k}`] : new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 64]);
  }
  return f;
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--rounds');
  const rounds = i > 0 ? Number(process.argv[i + 1]) : 5;
  const dir = path.join(cacheRoot(), 'bench-model');
  await ensureBenchModel(dir, (m) => process.stderr.write(`${m}\n`));
  const tuned = await tuneGraph(path.join(dir, 'onnx', 'decoder_model_merged.onnx'));
  const base: Opts = { graphOptimizationLevel: 'all', logSeverityLevel: 3 };
  const sessions = [];
  const threads = defaultIntraOpThreads();
  for (const [label, o, which] of sets(threads)) {
    const t = performance.now();
    const s = await ort.InferenceSession.create(which === 'original' ? path.join(dir, 'onnx', 'decoder_model_merged.onnx') : tuned.path, { ...base, ...o });
    sessions.push({ label, s, loadMs: performance.now() - t, prefill: [] as number[], tps: [] as number[] });
  }
  for (let r = 0; r <= rounds; r++) {
    for (const x of r % 2 ? [...sessions].reverse() : sessions) {
      let t = performance.now();
      let out = await x.s.run(feeds(PROMPT, 0));
      const pre = performance.now() - t;
      t = performance.now();
      for (let k = 0; k < STEPS; k++) out = await x.s.run(feeds(1, PROMPT + k, out));
      if (r > 0) x.prefill.push(pre), x.tps.push((STEPS * 1000) / (performance.now() - t));
    }
    process.stderr.write(`round ${r}/${rounds}\n`);
  }
  const lines = ['| decoder session options | load (ms) | 774-token prefill (ms) | decode (tokens/s) |', '|---|---|---|---|'];
  for (const x of sessions) {
    const p = summarize(x.prefill), d = summarize(x.tps);
    lines.push(`| ${x.label} | ${x.loadMs.toFixed(0)} | ${p.median.toFixed(0)} (${p.min.toFixed(0)}–${p.max.toFixed(0)}) | ${d.median.toFixed(1)} (${d.min.toFixed(1)}–${d.max.toFixed(1)}) |`);
    await x.s.release();
  }

  // Vision encoder: thread count only (one long run; spinning and arena do not matter there).
  const vis = [];
  for (const n of [...new Set([1, threads ?? 2])]) vis.push({ n, s: await ort.InferenceSession.create(path.join(dir, 'onnx', 'vision_encoder.onnx'), { ...base, intraOpNumThreads: n }), ms: [] as number[] });
  const px = new ort.Tensor('float32', Float32Array.from({ length: 3 * 384 * 384 }, (_, k) => Math.sin(k)), [1, 3, 384, 384]);
  for (let r = 0; r <= Math.min(rounds, 3); r++) {
    for (const v of vis) {
      const t = performance.now();
      await v.s.run({ pixel_values: px });
      if (r > 0) v.ms.push(performance.now() - t);
    }
  }
  lines.push('', '| vision encoder threads | one 384×384 view (ms) |', '|---|---|');
  for (const v of vis) {
    const m = summarize(v.ms);
    lines.push(`| ${v.n} | ${m.median.toFixed(0)} (${m.min.toFixed(0)}–${m.max.toFixed(0)}) |`);
    await v.s.release();
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : e}\n`);
  process.exitCode = 1;
});
