/**
 * The command table (client/src/commandTable.ts) against package.json `contributes`: every
 * command in the palette under "LLaVA Lens", the explorer menu on image files, the image-preview
 * button and keybinding, lazy activation, and a `main` that the build produces.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { CATEGORY, COMMANDS, EXPLORER_COMMANDS, hasImageExtension, IMAGE_EXTENSIONS, IMAGE_PREVIEW_WHEN, IMAGE_WHEN, PRESET_QUESTIONS } from '../../client/src/commandTable';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const contributes = pkg.contributes;

/** Contract ids the e2e suite relies on (docs/extension.md). */
const CONTRACT_IDS = [
  'llavaLens.askAboutImage',
  'llavaLens.explainDiagram',
  'llavaLens.explainScreenshot',
  'llavaLens.extractText',
  'llavaLens.askAboutClipboardImage',
  'llavaLens.describeImage',
  'llavaLens.generateAltText',
  'llavaLens.selectModel',
  'llavaLens.restartDaemon',
  'llavaLens.showLogs',
  'llavaLens.openSettings',
  'llavaLens.statusMenu',
  'llavaLens.stop',
  'llavaLens.setRemoteToken',
];

test('extension identity: llava-lens.llava-lens', () => {
  assert.equal(pkg.publisher, 'llava-lens');
  assert.equal(pkg.name, 'llava-lens');
  assert.ok(pkg.engines.vscode);
});

test('package.json commands are exactly the command table, all in the "LLaVA Lens" category', () => {
  const declared = contributes.commands.map((c: { command: string; title: string; category: string; icon?: string }) => ({
    id: c.command,
    title: c.title,
    category: c.category,
    icon: c.icon,
  }));
  assert.deepEqual(
    declared,
    COMMANDS.map((c) => ({ id: c.id, title: c.title, category: CATEGORY, icon: c.icon })),
  );
  for (const id of CONTRACT_IDS) assert.ok(COMMANDS.some((c) => c.id === id), id);
  assert.equal(COMMANDS.find((c) => c.id === 'llavaLens.askAboutImage')?.title, 'Ask About Image…');
  // None hidden from the palette.
  const palette = contributes.menus.commandPalette ?? [];
  for (const entry of palette) assert.notEqual(entry.when, 'false', `${entry.command} is hidden from the palette`);
});

test('explorer context menu: the four image commands, on image files, in one group', () => {
  const menu = contributes.menus['explorer/context'];
  assert.deepEqual(
    menu.map((m: { command: string }) => m.command),
    EXPLORER_COMMANDS,
  );
  for (const m of menu) {
    assert.equal(m.when, IMAGE_WHEN);
    assert.match(m.group, /^llavaLens@\d$/);
  }
  // The `when` regex accepts exactly the image extensions.
  const re = new RegExp(/\/(.*)\/i$/.exec(IMAGE_WHEN)![1], 'i');
  for (const ext of ['png', 'jpg', 'jpeg', 'gif', 'webp', 'svg', 'bmp', 'tiff', 'tif', 'avif', 'PNG']) assert.ok(re.test(`.${ext}`), ext);
  for (const ext of ['txt', 'pngx', 'md', 'svgz']) assert.ok(!re.test(`.${ext}`), ext);
  for (const ext of IMAGE_EXTENSIONS) assert.ok(hasImageExtension(`/a/b.${ext.toUpperCase()}`));
  assert.equal(hasImageExtension('/a/b.txt'), false);
  assert.equal(hasImageExtension('/a/png'), false);
});

test('image preview: editor-title button and keybinding only there', () => {
  const title = contributes.menus['editor/title'];
  assert.deepEqual(title, [{ command: 'llavaLens.askAboutImage', when: IMAGE_PREVIEW_WHEN, group: 'navigation' }]);
  assert.equal(IMAGE_PREVIEW_WHEN, "activeCustomEditorId == 'imagePreview.previewEditor'");
  const kb = contributes.keybindings.find((k: { command: string }) => k.command === 'llavaLens.askAboutImage');
  assert.equal(kb.key, 'ctrl+alt+l');
  assert.equal(kb.mac, 'cmd+alt+l');
  assert.equal(kb.when, IMAGE_PREVIEW_WHEN);
  assert.ok(COMMANDS.find((c) => c.id === 'llavaLens.askAboutImage')?.icon, 'a title-bar button needs an icon');
});

test('activation is lazy: commands, the panel serializer, Markdown/HTML; never *', () => {
  const events: string[] = pkg.activationEvents;
  assert.ok(!events.includes('*'));
  assert.ok(!events.includes('onStartupFinished'));
  assert.ok(events.includes('onWebviewPanel:llavaLens.panel'));
  assert.ok(events.includes('onLanguage:markdown'));
  assert.ok(events.includes('onLanguage:html'));
  for (const c of COMMANDS) assert.ok(events.includes(`onCommand:${c.id}`), c.id);
});

test('main points at what `npm run build` produces', () => {
  assert.equal(pkg.main, './out/client/src/extension.js');
  assert.ok(fs.existsSync(path.join(ROOT, pkg.main)), 'run npm run build first');
  assert.ok(pkg.scripts.build.includes('tsc -p .') && pkg.scripts.build.includes('bundle.js webview'));
  assert.ok(pkg.scripts.package.includes('bundle.js package'));
});

test('preset commands have their questions', () => {
  for (const id of ['llavaLens.explainDiagram', 'llavaLens.explainScreenshot', 'llavaLens.extractText', 'llavaLens.describeImage'] as const) {
    assert.ok((PRESET_QUESTIONS[id] ?? '').length > 10, id);
  }
  assert.equal(PRESET_QUESTIONS['llavaLens.askAboutImage'], undefined, 'Ask About Image asks the user');
});
