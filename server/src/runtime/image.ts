/**
 * Stage 1 of a request: decode an image (bytes or a path) into 8-bit sRGB RGB pixels.
 *
 * sharp (libvips) does the work. The pixel limit is checked from the header before any pixel is
 * decoded, so a small file that declares a huge canvas (a decompression bomb) costs only a header
 * read. Everything that can go wrong becomes a `LensError` whose message says what happened and
 * what to do.
 *
 * Next stage: `preprocess.ts` (pixel values for the vision encoder).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { ImageInput } from './types';

export interface DecodedImage {
  /** [Hpx, Wpx, 3] RGB u8, row-major HWC, sRGB, alpha flattened onto white, EXIF orientation applied. Owned by the caller. */
  data: Uint8Array;
  /** Pixels, after EXIF orientation. */
  width: number;
  height: number;
  /** Detected from the content: 'png' | 'jpeg' | 'webp' | 'gif' | 'svg' | 'tiff' | 'avif'. */
  format: string;
  /** Things worth telling the user that did not stop the decode (e.g. a mimeType that disagrees with the content). */
  notes?: string[];
}

export interface DecodeOptions {
  /** Largest accepted width × height, pixels (default `DEFAULT_MAX_PIXELS`). */
  maxPixels: number;
}

export const DEFAULT_MAX_PIXELS = 50e6;

/** Formats this build decodes, as `DecodedImage.format` names them. AVIF needs libheif with an AV1 decoder in sharp. */
export const SUPPORTED_FORMATS: readonly string[] = [
  'png', 'jpeg', 'webp', 'gif', 'svg', 'tiff',
  ...(sharp.format.heif?.input?.buffer ? ['avif'] : []),
];

const SUPPORTED_LIST = SUPPORTED_FORMATS.map((f) => (f === 'webp' ? 'WebP' : f.toUpperCase())).join(', ');
const LIMIT_SETTING = 'llava-lens.maxImageMegapixels';

/**
 * Decodes one image. May run concurrently with other calls (sharp uses its own thread pool).
 * Fails with `LensError`: ImageNotFound (path missing, not a file, unreadable), ImageDecodeFailed
 * (empty, corrupt, truncated), UnsupportedImage (a format outside `SUPPORTED_FORMATS`),
 * ImageTooLarge (over `opts.maxPixels`, checked from the header), InvalidParams (bad options).
 */
export async function decodeImage(input: ImageInput, opts: DecodeOptions = { maxPixels: DEFAULT_MAX_PIXELS }): Promise<DecodedImage> {
  const maxPixels = opts.maxPixels;
  if (!(Number.isFinite(maxPixels) && maxPixels >= 1)) {
    throw new LensError(LensErrorCode.InvalidParams, `maxPixels must be a positive number of pixels, got ${String(maxPixels)}`);
  }
  const { bytes, claimed, label } = await readInput(input);
  if (bytes.length === 0) {
    throw new LensError(LensErrorCode.ImageDecodeFailed, `${label} is empty (0 bytes): pass the image's contents`);
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  // 1. Header only: format and declared size. sharp's own limit is off here so we can name the size.
  let meta: sharp.Metadata;
  try {
    meta = await sharp(buf, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw classifyFailure(bytes, claimed, label, e);
  }
  const format = formatName(meta);
  if (!SUPPORTED_FORMATS.includes(format)) {
    throw new LensError(
      LensErrorCode.UnsupportedImage,
      `${label} is ${describeFormat(format)}, which this build cannot decode: convert it to one of ${SUPPORTED_LIST}`,
    );
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!(width > 0 && height > 0)) {
    throw new LensError(LensErrorCode.ImageDecodeFailed, `${label} declares no usable size (${width}×${height}): the file is damaged`);
  }
  if (width * height > maxPixels) {
    throw new LensError(
      LensErrorCode.ImageTooLarge,
      `image is ${width}×${height} (${((width * height) / 1e6).toFixed(1)} MP), over the ${formatMp(maxPixels)} MP limit: ` +
        `downscale it or raise ${LIMIT_SETTING}`,
      { width, height, maxPixels },
    );
  }

  // 2. Pixels: first frame/page, EXIF orientation, alpha onto white, any space/depth -> 8-bit sRGB.
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    out = await sharp(buf, { limitInputPixels: Math.floor(maxPixels), failOn: 'error', pages: 1, page: 0 })
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new LensError(
      LensErrorCode.ImageDecodeFailed,
      `${label} (${describeFormat(format)}) could not be decoded: ${sharpReason(e)}: the file is probably corrupt or truncated; re-save or re-export it`,
    );
  }

  const notes: string[] = [];
  if (claimed && claimed.format !== format) {
    notes.push(`${claimed.source} says ${claimed.format} but the content is ${format}; decoded as ${format}`);
  }
  const rgb = toRgb(out.data, out.info.width, out.info.height, out.info.channels);
  return { data: rgb, width: out.info.width, height: out.info.height, format, ...(notes.length ? { notes } : {}) };
}

interface Claim {
  format: string;
  /** Where the claim came from, for the note: 'mimeType image/png' or 'file extension .png'. */
  source: string;
}

async function readInput(input: ImageInput): Promise<{ bytes: Uint8Array; claimed?: Claim; label: string }> {
  if ('bytes' in input) {
    if (!(input.bytes instanceof Uint8Array)) {
      throw new LensError(LensErrorCode.InvalidParams, 'image bytes must be a Uint8Array');
    }
    const fmt = input.mimeType ? MIME_FORMATS[input.mimeType.toLowerCase().split(';')[0].trim()] : undefined;
    return { bytes: input.bytes, claimed: fmt ? { format: fmt, source: `mimeType ${input.mimeType}` } : undefined, label: 'the image' };
  }
  const p = input.path;
  let stat;
  try {
    stat = await fs.stat(p);
  } catch (e) {
    throw notFound(p, e);
  }
  if (!stat.isFile()) {
    throw new LensError(LensErrorCode.ImageNotFound, `${p} is not a file${stat.isDirectory() ? ' (it is a folder)' : ''}: pick an image file`);
  }
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(p);
  } catch (e) {
    throw notFound(p, e);
  }
  const ext = path.extname(p).toLowerCase();
  const fmt = EXT_FORMATS[ext];
  return { bytes, claimed: fmt ? { format: fmt, source: `file extension ${ext}` } : undefined, label: p };
}

function notFound(p: string, e: unknown): LensError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new LensError(LensErrorCode.ImageNotFound, `image file not found: ${p}: check the path`);
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new LensError(LensErrorCode.ImageNotFound, `cannot read ${p} (permission denied): check the file's permissions`);
  }
  if (code === 'EISDIR') {
    return new LensError(LensErrorCode.ImageNotFound, `${p} is not a file (it is a folder): pick an image file`);
  }
  return new LensError(LensErrorCode.ImageNotFound, `cannot read ${p} (${code ?? String(e)}): check the path and permissions`);
}

/** A header-level failure: corrupt data of a format we know, a format we do not decode, or not an image at all. */
function classifyFailure(bytes: Uint8Array, claimed: Claim | undefined, label: string, e: unknown): LensError {
  const sniffed = sniffFormat(bytes);
  if (sniffed && SUPPORTED_FORMATS.includes(sniffed)) {
    return new LensError(
      LensErrorCode.ImageDecodeFailed,
      `${label} looks like ${describeFormat(sniffed)} but its header could not be read: ${sharpReason(e)}: the file is corrupt or truncated; re-save or re-export it`,
    );
  }
  if (sniffed) {
    return new LensError(
      LensErrorCode.UnsupportedImage,
      `${label} is ${describeFormat(sniffed)}, which this build cannot decode: convert it to one of ${SUPPORTED_LIST}`,
    );
  }
  if (claimed && SUPPORTED_FORMATS.includes(claimed.format)) {
    return new LensError(
      LensErrorCode.ImageDecodeFailed,
      `${label} should be ${describeFormat(claimed.format)} (${claimed.source}) but its content is not a valid image (${sharpReason(e)}): the file is corrupt`,
    );
  }
  return new LensError(
    LensErrorCode.UnsupportedImage,
    `${label} is not in a recognised image format (${sharpReason(e)}): supported formats are ${SUPPORTED_LIST}`,
  );
}

/** sharp reports AVIF and HEIC both as 'heif'; tell them apart by the codec. */
function formatName(meta: sharp.Metadata): string {
  if (meta.format === 'heif') return meta.compression === 'av1' ? 'avif' : 'heic';
  return String(meta.format);
}

/** Magic-number sniffing, used only to word errors (sharp decides what it can read). */
export function sniffFormat(b: Uint8Array): string | undefined {
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, Math.min(to, b.length)));
  if (b.length >= 8 && b[0] === 0x89 && ascii(1, 4) === 'PNG') return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return 'gif';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  const head4 = ascii(0, 4);
  if (head4 === 'II*\0' || head4 === 'MM\0*' || head4 === 'II+\0' || head4 === 'MM\0+') return 'tiff';
  if (ascii(4, 8) === 'ftyp') {
    const boxEnd = Math.min(b.length, ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0 || 32);
    const brands: string[] = [ascii(8, 12)];
    for (let i = 16; i + 4 <= boxEnd; i += 4) brands.push(ascii(i, i + 4));
    if (brands.some((x) => x === 'avif' || x === 'avis')) return 'avif';
    if (brands.some((x) => ['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'].includes(x))) return 'heic';
    if (brands.some((x) => x === 'jp2 ' || x === 'jpx ')) return 'jp2';
    return undefined;
  }
  if (ascii(0, 2) === 'BM') return 'bmp';
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && b[2] === 1 && b[3] === 0) return 'ico';
  if (head4 === '8BPS') return 'psd';
  if (head4 === '%PDF') return 'pdf';
  if (head4 === 'qoif') return 'qoi';
  if ((b[0] === 0xff && b[1] === 0x0a) || ascii(4, 8) === 'JXL ') return 'jxl';
  if (b.length >= 12 && ascii(4, 8) === 'jP  ') return 'jp2';
  const text = ascii(0, 1024).replace(/^\uFEFF?\s*/, '');
  if (text.startsWith('<') && /<svg[\s>]/.test(ascii(0, 4096))) return 'svg';
  return undefined;
}

const FORMAT_NAMES: Record<string, string> = {
  png: 'a PNG', jpeg: 'a JPEG', webp: 'a WebP', gif: 'a GIF', svg: 'an SVG', tiff: 'a TIFF', avif: 'an AVIF',
  heic: 'a HEIC/HEIF (HEVC) image', bmp: 'a BMP', ico: 'an ICO icon', psd: 'a Photoshop PSD', pdf: 'a PDF',
  qoi: 'a QOI image', jxl: 'a JPEG XL image', jp2: 'a JPEG 2000 image',
};

function describeFormat(f: string): string {
  return FORMAT_NAMES[f] ?? `a ${f} file`;
}

const MIME_FORMATS: Record<string, string> = {
  'image/png': 'png', 'image/apng': 'png', 'image/jpeg': 'jpeg', 'image/jpg': 'jpeg', 'image/pjpeg': 'jpeg',
  'image/webp': 'webp', 'image/gif': 'gif', 'image/svg+xml': 'svg', 'image/tiff': 'tiff', 'image/avif': 'avif',
  'image/heic': 'heic', 'image/heif': 'heic', 'image/bmp': 'bmp',
};

const EXT_FORMATS: Record<string, string> = {
  '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.jpe': 'jpeg', '.jfif': 'jpeg', '.webp': 'webp', '.gif': 'gif',
  '.svg': 'svg', '.tif': 'tiff', '.tiff': 'tiff', '.avif': 'avif', '.heic': 'heic', '.heif': 'heic', '.bmp': 'bmp',
};

/** sharp's error text, de-duplicated onto one line and bounded. */
function sharpReason(e: unknown): string {
  const raw = e instanceof Error ? e.message : String(e);
  const lines = [...new Set(raw.split('\n').map((l) => l.trim()).filter(Boolean))];
  const text = lines.join('; ').replace(/:$/, '');
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

function formatMp(pixels: number): string {
  return String(Number((pixels / 1e6).toPrecision(3)));
}

/** Guarantees 3 channels even if libvips hands back grey or an extra band. */
function toRgb(data: Buffer, width: number, height: number, channels: number): Uint8Array {
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (channels === 3) return view;
  const n = width * height;
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    if (channels < 3) {
      const g = view[i * channels];
      rgb[i * 3] = g; rgb[i * 3 + 1] = g; rgb[i * 3 + 2] = g;
    } else {
      rgb[i * 3] = view[i * channels]; rgb[i * 3 + 1] = view[i * channels + 1]; rgb[i * 3 + 2] = view[i * channels + 2];
    }
  }
  return rgb;
}
