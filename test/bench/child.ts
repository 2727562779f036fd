/**
 * Child process of the bench: `node [flags] out/test/bench/child.js <ours|transformers>`. Runs
 * the bench's commands (see side.ts) one at a time and answers over the IPC channel.
 */
import type { Command, Reply, Side } from './side';

/** Loads only the side's own module, so each child holds one runtime. */
async function makeSide(kind: string): Promise<Side> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (kind === 'ours') return new (require('./sideOurs') as typeof import('./sideOurs')).OursSide();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (kind === 'transformers') return new (require('./sideTransformers') as typeof import('./sideTransformers')).TransformersSide();
  throw new Error(`unknown side ${kind}`);
}

async function main(): Promise<void> {
  const side = await makeSide(process.argv[2]);
  let chain = Promise.resolve();
  process.on('message', (m: Command) => {
    chain = chain.then(async () => {
      let reply: Reply;
      try {
        const fn = (side as any)[m.cmd] as ((...a: unknown[]) => Promise<unknown>) | undefined;
        if (!fn) throw new Error(`${process.argv[2]} has no ${m.cmd}`);
        reply = { id: m.id, ok: true, value: await fn.apply(side, m.args) };
      } catch (e) {
        reply = { id: m.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      }
      process.send!(reply);
    });
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ id: 0, ok: true, value: 'ready' } satisfies Reply);
}

main().catch((e) => {
  process.stderr.write(`bench child: ${e instanceof Error ? e.stack : e}\n`);
  process.exit(1);
});
