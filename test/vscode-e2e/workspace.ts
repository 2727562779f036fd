/**
 * The workspace the end-to-end suite opens, generated for each run (nothing binary is committed):
 * a diagram, a screenshot-like image and a Markdown file with an image reference that has no alt
 * text; plus the agent steps the daemon's test hook replays as tool calls.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { diagramPng } from '../fixtures/images';
import { renderScene, screenshotScene } from '../fixtures/ocrImages';

export const DIAGRAM = 'diagram.png';
export const SCREENSHOT = 'screenshot.png';
export const MARKDOWN = 'NOTES.md';
/** The line of MARKDOWN with the image reference (0-based). */
export const MARKDOWN_IMAGE_LINE = 4;
export const MARKDOWN_TEXT = ['# Notes', '', 'The request pipeline:', '', `![](${DIAGRAM})`, '', 'More text.', ''].join('\n');

/** Matches the image reference once it has alt text; group 1 is the alt text. */
export const ALT_TEXT_RE = new RegExp(`!\\[([^\\]]*\\S[^\\]]*)\\]\\(${DIAGRAM.replace('.', '\\.')}\\)`);

export async function makeWorkspace(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, DIAGRAM), await diagramPng());
  fs.writeFileSync(path.join(dir, SCREENSHOT), (await renderScene(screenshotScene('light'))).png);
  fs.writeFileSync(path.join(dir, MARKDOWN), MARKDOWN_TEXT);
}

/** The "Encoder" block of diagramPng (640×400), normalised: OCR's box for its label lies inside. */
export const ENCODER_BOX: [number, number, number, number] = [240 / 640, 90 / 400, 400 / 640, 160 / 400];
