/** Parent-side handle of a bench child process (child.ts). */
import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { mergeEnv } from '../../server/src/daemon/nodeFlags';
import type { Command, Reply, Side } from './side';

type Args<K extends keyof Side> = Parameters<Exclude<Side[K], undefined>>;
type Ret<K extends keyof Side> = Awaited<ReturnType<Exclude<Side[K], undefined>>>;

export class ChildSide {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private exited: Error | undefined;

  private constructor(
    readonly label: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.value);
      else p.reject(new Error(`${label}: ${r.error}`));
    });
    child.on('exit', (code, signal) => {
      this.exited = new Error(`${label} child exited (${signal ?? code})`);
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  /**
   * Starts `node <nodeFlags> child.js <kind>` and waits for it to be ready. `nodeEnv`: variables
   * added to this process's environment for the child, merged as the daemon merges `DAEMON_ENV`
   * (`mergeEnv`: GLIBC_TUNABLES key by key, the keys already set here win): `OURS_NODE_ENV`
   * (flags.ts) for ours as the daemon runs, nothing for transformers.js (as its users run it).
   */
  static async start(label: string, kind: 'ours' | 'transformers', nodeFlags: string[], nodeEnv: Readonly<Record<string, string>> = {}): Promise<ChildSide> {
    const env = { ...process.env, ...mergeEnv(process.env, nodeEnv) };
    const child = fork(path.join(__dirname, 'child.js'), [kind], { execArgv: nodeFlags, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const side = new ChildSide(label, child);
    await new Promise<void>((resolve, reject) => {
      side.pending.set(0, { resolve: () => resolve(), reject });
    });
    return side;
  }

  call<K extends keyof Side>(cmd: K, ...args: Args<K>): Promise<Ret<K>> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, cmd, args } as Command);
    });
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.disconnect();
    await done;
  }
}
