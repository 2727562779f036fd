/**
 * The daemon's own cost, with the real daemon process over stdio JSON-RPC and the real client
 * (`client/src/daemonClient.ts`), and a stand-in engine that streams instantly (streamEngine.ts),
 * so nothing but the protocol path is timed:
 *  - per streamed token: (time of an N-token ask - time of a 1-token ask) / (N - 1), minus the
 *    stand-in engine's own per-token time measured in process;
 *  - per request round trip: a `lens/forgetConversation` (a no-op for unknown ids), median;
 *  - the worker-thread hop the real engine adds per token (one structured-clone message from the
 *    engine thread), measured in process.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { LensClient } from '../../client/src/daemonClient';
import { StreamEngine } from './streamEngine';
import { summarize } from './stats';

export interface DaemonOverhead {
  tokenOverheadMs: number;
  rawTokenMs: number;
  engineTokenMs: number;
  workerHopMs: number;
  roundTripMs: number;
  roundTripMinMs: number;
  nodeFlags: string[];
}

async function timeAsk(client: LensClient, n: number): Promise<number> {
  let got = 0;
  const t = performance.now();
  const r = await client.ask({ images: [], prompt: 'go', maxTokens: n }, () => got++);
  const ms = performance.now() - t;
  if (got !== n || r.tokenIds.length !== n) throw new Error(`daemon overhead: expected ${n} deltas, got ${got}`);
  return ms;
}

async function inProcessTokenMs(n: number): Promise<number> {
  const e = new StreamEngine();
  await e.load('.', {}, () => undefined);
  const ac = new AbortController();
  const run = async (k: number) => {
    const t = performance.now();
    await e.ask({ images: [], prompt: 'go', options: { maxTokens: k, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [] } }, () => undefined, ac.signal);
    return performance.now() - t;
  };
  await run(n);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) xs.push((await run(n)) - (await run(1)));
  return summarize(xs).median / (n - 1);
}

/** Per-message cost of engine-thread -> main-thread delta messages (as workerEngine.ts sends them). */
async function workerHopMs(n: number): Promise<number> {
  const src = `
    const { parentPort } = require('node:worker_threads');
    parentPort.on('message', async (n) => {
      for (let i = 0; i < n; i++) {
        await new Promise((r) => setImmediate(r));
        parentPort.postMessage({ type: 'delta', id: 1, delta: { text: ' word', tokenId: 1000 + (i % 7) } });
      }
      parentPort.postMessage({ type: 'result', id: 1 });
    });`;
  const w = new Worker(src, { eval: true });
  const run = (k: number) =>
    new Promise<number>((resolve) => {
      const t = performance.now();
      const on = (m: { type: string }) => {
        if (m.type !== 'result') return;
        w.off('message', on);
        resolve(performance.now() - t);
      };
      w.on('message', on);
      w.postMessage(k);
    });
  await run(n);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) xs.push((await run(n)) - (await run(1)));
  await w.terminate();
  return summarize(xs).median / (n - 1);
}

export async function measureDaemonOverhead(root: string, nodeFlags: string[], n = 2000, reps = 5): Promise<DaemonOverhead> {
  const client = LensClient.spawnStdio({
    daemonPath: path.join(root, 'out', 'server', 'src', 'daemon', 'main.js'),
    env: { ...process.env, LLAVA_LENS_ENGINE: path.join(__dirname, 'streamEngine.js') },
    onStderr: () => undefined,
  });
  try {
    await client.initialize({ clientName: 'llava-lens-bench' });
    await client.loadModel({ path: root });
    await timeAsk(client, n); // warm-up
    await timeAsk(client, 1);
    const per: number[] = [];
    for (let i = 0; i < reps; i++) {
      const big = await timeAsk(client, n);
      const one = await timeAsk(client, 1);
      per.push((big - one) / (n - 1));
    }
    const rtt: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await client.forgetConversation('bench-none');
      rtt.push(performance.now() - t);
    }
    const engineTokenMs = await inProcessTokenMs(n);
    const hop = await workerHopMs(n);
    const raw = summarize(per).median;
    const r = summarize(rtt.slice(20));
    return { tokenOverheadMs: Math.max(0, raw - engineTokenMs) + hop, rawTokenMs: raw, engineTokenMs, workerHopMs: hop, roundTripMs: r.median, roundTripMinMs: r.min, nodeFlags };
  } finally {
    await client.shutdown().catch(() => undefined);
  }
}
