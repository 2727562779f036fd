/**
 * Images as `lens/ask` / `lens/runTool` parameters made of BYTES (`{bytes, mimeType}`), for a
 * daemon reached over WebSocket: a shared daemon refuses paths from remote clients (it cannot read
 * this machine's files) and accepts them from local ones only inside declared workspace folders,
 * so clients over WebSocket always send the file's contents. Used by the CLI (`--connect`) and the
 * extension (`llavaLens.remote.url`). No 'vscode' import: the extension reads the bytes itself
 * (`vscode.workspace.fs`) and calls `imageBytesParam`.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { ImageParam } from '../../common/protocol';

/** An image as bytes params. */
export type ImageBytesParam = Extract<ImageParam, { bytes: string }>;
import { DEFAULT_MAX_MESSAGE_BYTES } from '../../common/wsTransport';
import { sniffImage, type ImageFormat } from './imageFile';

/**
 * Largest image file that fits one WebSocket message once base64-encoded (4/3 of its size), with
 * 1 MiB left for the rest of the request. Several images in one question share the same budget.
 */
export const MAX_IMAGE_BYTES_OVER_WS = Math.floor(((DEFAULT_MAX_MESSAGE_BYTES - 1024 * 1024) * 3) / 4);

const MIME: Record<ImageFormat, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  bmp: 'image/bmp',
  tiff: 'image/tiff',
  avif: 'image/avif',
  svg: 'image/svg+xml',
};

/** The MIME type of image bytes, from their first bytes; undefined when they are no image LLaVA Lens reads. */
export function imageMimeType(bytes: Uint8Array): string | undefined {
  const format = sniffImage(bytes);
  return format ? MIME[format] : undefined;
}

/**
 * `{bytes: base64, mimeType}` for an image file's contents. `name` is only for messages.
 * Throws when the bytes are too large for one message (say which file and what to do). The
 * MIME type is left out when the bytes are not recognised (the daemon then answers with its
 * own decode error, which names the image).
 */
export function imageBytesParam(bytes: Uint8Array, name: string): ImageBytesParam {
  if (bytes.length > MAX_IMAGE_BYTES_OVER_WS) throw tooLarge(name, bytes.length);
  const mimeType = imageMimeType(bytes);
  const base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  return mimeType ? { bytes: base64, mimeType } : { bytes: base64 };
}

/**
 * Reads an image file and returns it as bytes params. Rejects with a message naming the file when
 * it cannot be read or is too large. Checks the size before reading, so a huge file is not loaded.
 */
export async function readImageParam(file: string): Promise<ImageBytesParam> {
  const name = path.basename(file);
  let size: number;
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) throw new Error(`${file} is not a file`);
    size = stat.size;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `Image not found: ${file}. Check the path.` : `Cannot read the image ${file}: ${(e as Error).message}.`);
  }
  if (size > MAX_IMAGE_BYTES_OVER_WS) throw tooLarge(name, size);
  return imageBytesParam(await fs.readFile(file), name);
}

function tooLarge(name: string, size: number): Error {
  return new Error(
    `${name} is ${mib(size)}, more than the ${mib(MAX_IMAGE_BYTES_OVER_WS)} an image sent to a daemon over WebSocket may have; shrink or crop it first.`,
  );
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
