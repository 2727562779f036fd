/**
 * Images inside OpenAI messages: `data:<mime>;base64,<bytes>` URIs, read (endpoint) and written
 * (HTTP backend). Remote `http(s)://` image URLs are never fetched: a daemon that fetched URLs
 * for its clients could be pointed at internal hosts.
 */
import { decodeBase64 } from '../../../common/protocol';

const MAGIC: Array<[string, number[]]> = [
  ['image/png', [0x89, 0x50, 0x4e, 0x47]],
  ['image/jpeg', [0xff, 0xd8, 0xff]],
  ['image/gif', [0x47, 0x49, 0x46, 0x38]],
  ['image/webp', [0x52, 0x49, 0x46, 0x46]],
  ['image/bmp', [0x42, 0x4d]],
];

/** The MIME type the bytes' signature says, else `image/png` (servers sniff the bytes anyway). */
export function sniffMime(bytes: Uint8Array): string {
  return MAGIC.find(([, m]) => m.every((b, i) => bytes[i] === b))?.[0] ?? 'image/png';
}

export function toDataUri(bytes: Uint8Array, mimeType?: string): string {
  return `data:${mimeType ?? sniffMime(bytes)};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
}

/**
 * The image in a `data:` URI, or a message (worded for the client, naming `field`) saying why
 * the URL cannot be used.
 */
export function fromDataUri(url: string, field: string): { bytes: Uint8Array; mimeType?: string } | { error: string } {
  if (/^https?:\/\//i.test(url)) {
    return { error: `${field}: remote image URLs are not fetched by this server; send the image inline as a data URI ("data:image/png;base64,...").` };
  }
  const m = /^data:([^;,]*)((?:;[^;,]*)*),/i.exec(url);
  if (!m) return { error: `${field} must be a data URI ("data:image/png;base64,..."), got ${JSON.stringify(url.slice(0, 40))}.` };
  if (!/;base64$/i.test(m[2])) return { error: `${field}: only base64 data URIs are accepted (";base64,").` };
  const bytes = decodeBase64(url.slice(m[0].length));
  if (!bytes || bytes.length === 0) return { error: `${field}: the data URI's base64 is invalid or empty.` };
  const mime = m[1].trim().toLowerCase();
  return mime ? { bytes, mimeType: mime } : { bytes };
}
