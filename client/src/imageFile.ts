/**
 * Recognises image files by their first bytes, so a wrong file is refused with a clear message
 * before the daemon is involved. Pure.
 */

export type ImageFormat = 'png' | 'jpeg' | 'gif' | 'webp' | 'bmp' | 'tiff' | 'avif' | 'svg';

/** Bytes `sniffImage` needs from the start of a file. */
export const SNIFF_BYTES = 512;

function ascii(bytes: Uint8Array, from: number, to: number): string {
  return String.fromCharCode(...bytes.subarray(from, Math.min(to, bytes.length)));
}

/** The format of an image from its first bytes (up to `SNIFF_BYTES`), or undefined when it is not one LLaVA Lens reads. */
export function sniffImage(bytes: Uint8Array): ImageFormat | undefined {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 4) === 'PNG' && b[4] === 0x0d && b[5] === 0x0a) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 6 && (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a')) return 'gif';
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP') return 'webp';
  if (b.length >= 2 && ascii(b, 0, 2) === 'BM') return 'bmp';
  if (b.length >= 4 && ((ascii(b, 0, 2) === 'II' && b[2] === 42 && b[3] === 0) || (ascii(b, 0, 2) === 'MM' && b[2] === 0 && b[3] === 42))) return 'tiff';
  if (b.length >= 12 && ascii(b, 4, 8) === 'ftyp' && /^avi[fs]$/.test(ascii(b, 8, 12))) return 'avif';
  // SVG: text (optional BOM, XML declaration, comments, doctype) whose first element is <svg.
  let text = new TextDecoder('utf-8', { fatal: false }).decode(b.subarray(0, SNIFF_BYTES)).replace(/^\uFEFF/, '');
  text = text.replace(/^\s*(<\?xml[^>]*>\s*|<!--[\s\S]*?-->\s*|<!DOCTYPE[^>]*>\s*)*/i, '');
  if (/^<svg[\s>]/i.test(text)) return 'svg';
  return undefined;
}
