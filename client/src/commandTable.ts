/**
 * The extension's commands as data: ids, palette titles, icons and the questions the preset
 * commands ask. `package.json` `contributes.commands` must list exactly these (a unit test checks
 * it); `extension.ts` registers a handler for each id. No 'vscode' import here.
 */

export const CATEGORY = 'LLaVA Lens';

/** Image file extensions the explorer menu, the file picker and the input checks accept (lower case, no dot). */
export const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'gif', 'webp', 'svg', 'bmp', 'tiff', 'tif', 'avif'] as const;

/** `resourceExtname` clause for `when` expressions of the explorer menu. */
export const IMAGE_WHEN = 'resourceExtname =~ /^\\.(png|jpe?g|gif|webp|svg|bmp|tiff?|avif)$/i';

/** The built-in image preview; our editor-title button and keybinding are shown only there. */
export const IMAGE_PREVIEW_WHEN = "activeCustomEditorId == 'imagePreview.previewEditor'";

export type CommandId =
  | 'llavaLens.askAboutImage'
  | 'llavaLens.explainDiagram'
  | 'llavaLens.explainScreenshot'
  | 'llavaLens.extractText'
  | 'llavaLens.askAboutClipboardImage'
  | 'llavaLens.describeImage'
  | 'llavaLens.generateAltText'
  | 'llavaLens.selectModel'
  | 'llavaLens.downloadModel'
  | 'llavaLens.restartDaemon'
  | 'llavaLens.showLogs'
  | 'llavaLens.openSettings'
  | 'llavaLens.statusMenu'
  | 'llavaLens.stop'
  | 'llavaLens.setRemoteToken'
  | 'llavaLens.setBackendApiKey'
  | 'llavaLens.showPanel';

export interface CommandSpec {
  id: CommandId;
  /** Title in the palette (shown as "LLaVA Lens: <title>"). */
  title: string;
  /** Codicon for buttons (editor title). */
  icon?: string;
  /** Whether the command takes image files (explorer / image preview / file picker). */
  takesImages: boolean;
}

export const COMMANDS: readonly CommandSpec[] = [
  { id: 'llavaLens.askAboutImage', title: 'Ask About Image…', icon: '$(comment-discussion)', takesImages: true },
  { id: 'llavaLens.explainDiagram', title: 'Explain Diagram', takesImages: true },
  { id: 'llavaLens.explainScreenshot', title: 'Explain Screenshot', takesImages: true },
  { id: 'llavaLens.extractText', title: 'Extract Text', takesImages: true },
  { id: 'llavaLens.askAboutClipboardImage', title: 'Ask About Clipboard Image', takesImages: false },
  { id: 'llavaLens.describeImage', title: 'Describe Image', takesImages: false },
  { id: 'llavaLens.generateAltText', title: 'Generate Alt Text', takesImages: false },
  { id: 'llavaLens.selectModel', title: 'Select Model…', takesImages: false },
  { id: 'llavaLens.downloadModel', title: 'Download Model…', takesImages: false },
  { id: 'llavaLens.restartDaemon', title: 'Restart Daemon', takesImages: false },
  { id: 'llavaLens.showLogs', title: 'Show Logs', takesImages: false },
  { id: 'llavaLens.openSettings', title: 'Open Settings', takesImages: false },
  { id: 'llavaLens.statusMenu', title: 'Status and Actions…', takesImages: false },
  { id: 'llavaLens.stop', title: 'Stop Answer', icon: '$(debug-stop)', takesImages: false },
  { id: 'llavaLens.setRemoteToken', title: 'Set Remote Daemon Token…', takesImages: false },
  { id: 'llavaLens.setBackendApiKey', title: 'Set Backend API Key…', takesImages: false },
  { id: 'llavaLens.showPanel', title: 'Show Panel', takesImages: false },
];

/** The commands in the explorer context menu on image files, in menu order. */
export const EXPLORER_COMMANDS: readonly CommandId[] = [
  'llavaLens.askAboutImage',
  'llavaLens.explainDiagram',
  'llavaLens.explainScreenshot',
  'llavaLens.extractText',
];

/** Questions the preset commands ask (no input box). `askAboutImage` asks the user instead. */
export const PRESET_QUESTIONS: Partial<Record<CommandId, string>> = {
  'llavaLens.explainDiagram':
    'Explain this diagram: what are its parts, how are they connected, and what does it show as a whole?',
  'llavaLens.explainScreenshot':
    'Explain this screenshot: what application or page is shown, what is on the screen, and is anything notable (errors, warnings, state)?',
  'llavaLens.extractText': 'Extract all text visible in this image, in reading order. Keep the layout as Markdown where it helps (headings, lists, tables).',
  'llavaLens.describeImage': 'Describe this image in detail.',
};

/** The question "Generate Alt Text" asks; the answer is cleaned by `cleanAltText` (imageRefs.ts). */
export const ALT_TEXT_QUESTION =
  'Write alt text for this image: one short sentence (at most 125 characters) saying what it shows, for someone who cannot see it. Reply with the alt text only.';

export function commandSpec(id: CommandId): CommandSpec {
  const spec = COMMANDS.find((c) => c.id === id);
  if (!spec) throw new Error(`unknown command ${id}`);
  return spec;
}

/** Lower-case extension without the dot ('' when none). */
export function extensionOf(filePath: string): string {
  const base = filePath.split(/[\\/]/).pop() ?? '';
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

export function hasImageExtension(filePath: string): boolean {
  return (IMAGE_EXTENSIONS as readonly string[]).includes(extensionOf(filePath));
}
