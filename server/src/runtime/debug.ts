/**
 * Debug dumps, off unless `LLAVA_LENS_DEBUG_DIR` names a folder. Each named intermediate
 * (`pixel_values`, `image_features`, `inputs_embeds`, `logits_first`) is written as raw f32
 * little-endian (`<n>-<name>.f32`) with a JSON sidecar (dims, min, max, mean, first values), and
 * per-stage timings go to `<n>-timings.json`. `n` counts requests since the daemon started.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export class DebugDump {
  private static counter = 0;
  readonly enabled: boolean;
  private readonly prefix: string;

  constructor(private readonly dir = process.env.LLAVA_LENS_DEBUG_DIR) {
    this.enabled = !!dir;
    this.prefix = String(++DebugDump.counter).padStart(4, '0');
    if (this.enabled) fs.mkdirSync(dir!, { recursive: true });
  }

  tensor(name: string, data: Float32Array, dims: readonly number[]): void {
    if (!this.enabled) return;
    const base = path.join(this.dir!, `${this.prefix}-${name}`);
    fs.writeFileSync(base + '.f32', Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    let min = Infinity, max = -Infinity, sum = 0;
    for (const v of data) {
      if (v < min) min = v;
      if (v > max) max = v;
      sum += v;
    }
    fs.writeFileSync(base + '.json', JSON.stringify({ name, dims, min, max, mean: sum / (data.length || 1), first: Array.from(data.subarray(0, 8)) }, null, 1));
  }

  json(name: string, value: unknown): void {
    if (!this.enabled) return;
    fs.writeFileSync(path.join(this.dir!, `${this.prefix}-${name}.json`), JSON.stringify(value, null, 1));
  }
}
