/** The product version, read once from the `package.json` above this file (source or `out/`). */
import * as fs from 'node:fs';
import * as path from 'node:path';

let cached: string | undefined;

export function productVersion(): string {
  if (cached !== undefined) return cached;
  cached = '0.0.0';
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const pkg: unknown = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      const p = pkg as { name?: unknown; version?: unknown };
      if (p.name === 'llava-lens' && typeof p.version === 'string') {
        cached = p.version;
        break;
      }
    } catch {
      // no package.json here; keep walking up
    }
    if (path.dirname(dir) === dir) break;
  }
  return cached;
}
