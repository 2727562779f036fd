/**
 * The demo's sample image: a small pipeline diagram (boxes, arrows, labels) drawn from a fixed
 * SVG and rasterised with sharp. Same input, same PNG bytes (text rendering depends on the
 * fonts installed, so bytes may differ between machines, never between runs).
 */

export const SAMPLE_WIDTH = 640;
export const SAMPLE_HEIGHT = 360;

const BOXES = [
  { x: 30, y: 140, label: 'Image', fill: '#dbeafe' },
  { x: 185, y: 140, label: 'Vision encoder', fill: '#dcfce7' },
  { x: 340, y: 140, label: 'Language model', fill: '#fef9c3' },
  { x: 495, y: 140, label: 'Answer', fill: '#fee2e2' },
];
const BOX_W = 115;
const BOX_H = 70;

export function sampleDiagramSvg(): string {
  const boxes = BOXES.map(
    (b) =>
      `<rect x="${b.x}" y="${b.y}" width="${BOX_W}" height="${BOX_H}" rx="10" fill="${b.fill}" stroke="#1f2937" stroke-width="2"/>` +
      `<text x="${b.x + BOX_W / 2}" y="${b.y + BOX_H / 2 + 5}" font-size="14" text-anchor="middle" fill="#111827">${b.label}</text>`,
  );
  const arrows = BOXES.slice(1).map((b, i) => {
    const x1 = BOXES[i].x + BOX_W;
    const x2 = b.x - 4;
    const y = b.y + BOX_H / 2;
    return `<line x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" stroke="#1f2937" stroke-width="3" marker-end="url(#head)"/>`;
  });
  const edgeLabels = ['pixels', 'features', 'tokens'].map((t, i) => {
    const x = (BOXES[i].x + BOX_W + BOXES[i + 1].x) / 2;
    return `<text x="${x}" y="${BOXES[i].y - 10}" font-size="12" text-anchor="middle" fill="#374151">${t}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${SAMPLE_WIDTH}" height="${SAMPLE_HEIGHT}" viewBox="0 0 ${SAMPLE_WIDTH} ${SAMPLE_HEIGHT}">
<defs><marker id="head" markerWidth="10" markerHeight="10" refX="8" refY="5" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#1f2937"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="${SAMPLE_WIDTH / 2}" y="60" font-size="22" text-anchor="middle" fill="#111827">How LLaVA answers a question</text>
${boxes.join('\n')}
${arrows.join('\n')}
${edgeLabels.join('\n')}
<text x="${SAMPLE_WIDTH / 2}" y="300" font-size="13" text-anchor="middle" fill="#4b5563">question + image features go into one prompt</text>
</svg>`;
}

/** The sample diagram as PNG bytes. */
export async function sampleDiagramPng(): Promise<Buffer> {
  const sharp = (await import('sharp')).default; // loaded here only: it is slow to load
  return sharp(Buffer.from(sampleDiagramSvg())).png({ compressionLevel: 9, palette: false }).toBuffer();
}
