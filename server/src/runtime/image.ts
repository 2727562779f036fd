/**
 * Stage 1 of a request: decode an image (bytes or a path) into 8-bit sRGB RGB pixels.
 *
 * sharp (libvips) does the work. Hostile input is refused before it costs anything:
 * - the encoded size is checked first (`maxBytes`; a file's size from `stat`, before reading it);
 * - the pixel limit is checked from the header before any pixel is decoded, so a small file that
 *   declares a huge canvas (a decompression bomb) costs only a header read;
 * - an SVG is read as text before librsvg sees it and must be self-contained (see "SVG policy").
 * The format comes from the content (sniffing), never from a file extension or mimeType.
 * Everything that can go wrong becomes a `LensError` whose message says what happened and what to do.
 *
 * Next stage: `preprocess.ts` (pixel values for the vision encoder).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
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
  /** Set when `DecodeOptions.resize` was applied while decoding: the image's own size (`width`/`height` are the resized one). */
  resizedFrom?: { width: number; height: number };
}

/**
 * A resize preprocessing would do first, done by libvips in the decoding pipeline instead: no
 * full-size RGB buffer is made, copied to JS and handed back to libvips (preprocess.ts
 * `decodeResize` says when a model's preprocessing starts this way). Applied only where the
 * pipeline's other steps do nothing (3-channel sRGB without alpha, ICC profile, EXIF rotation, or
 * pages; not SVG), so the pixels are exactly those of decoding and then resizing; otherwise the
 * image is decoded at full size and `resizedFrom` stays unset.
 */
export interface DecodeResize {
  /** Target size for an image of this (oriented) size. */
  size: (width: number, height: number) => { width: number; height: number };
  kernel: 'cubic' | 'linear';
}

export interface DecodeOptions {
  /**
   * Largest accepted width × height, pixels (default `DEFAULT_MAX_PIXELS`). For an SVG it also
   * bounds the raster images it embeds as data: URIs, all together.
   */
  maxPixels: number;
  /**
   * Largest accepted encoded input, bytes (default `DEFAULT_MAX_BYTES`): the file or `bytes`, and a
   * gzip-compressed SVG once inflated. A path's size is checked before the file is read.
   */
  maxBytes?: number;
  /** Resize while decoding when that gives the same pixels (see `DecodeResize`). */
  resize?: DecodeResize;
}

export const DEFAULT_MAX_PIXELS = 50e6;
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/** Formats this build decodes, as `DecodedImage.format` names them. AVIF needs libheif with an AV1 decoder in sharp. */
export const SUPPORTED_FORMATS: readonly string[] = [
  'png', 'jpeg', 'webp', 'gif', 'svg', 'tiff',
  ...(sharp.format.heif?.input?.buffer ? ['avif'] : []),
];

const SUPPORTED_LIST = SUPPORTED_FORMATS.map((f) => (f === 'webp' ? 'WebP' : f.toUpperCase())).join(', ');
const LIMIT_SETTING = 'the limit (VS Code setting llavaLens.maxImageMegapixels, or serve --max-image-megapixels)';

/**
 * Decodes one image. May run concurrently with other calls (sharp uses its own thread pool).
 * Fails with `LensError`: ImageNotFound (path missing, not a file, unreadable), ImageDecodeFailed
 * (empty, corrupt, truncated), UnsupportedImage (a format outside `SUPPORTED_FORMATS`, not an image,
 * an SVG that is not self-contained), ImageTooLarge (over `opts.maxBytes`, or over `opts.maxPixels`
 * checked from the header), InvalidParams (bad options). Refusals that need only the size, the
 * header or an SVG's text come in milliseconds (about 0.7 s to scan a 58 MB SVG); a corrupt image
 * fails where the decoder meets the damage.
 */
export async function decodeImage(input: ImageInput, opts: DecodeOptions = { maxPixels: DEFAULT_MAX_PIXELS }): Promise<DecodedImage> {
  const maxPixels = opts.maxPixels;
  if (!(Number.isFinite(maxPixels) && maxPixels >= 1)) {
    throw new LensError(LensErrorCode.InvalidParams, `maxPixels must be a positive number of pixels, got ${String(maxPixels)}`);
  }
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!(Number.isFinite(maxBytes) && maxBytes >= 1)) {
    throw new LensError(LensErrorCode.InvalidParams, `maxBytes must be a positive number of bytes, got ${String(maxBytes)}`);
  }
  const { bytes, claimed, label } = await readInput(input, maxBytes);
  if (bytes.length === 0) {
    throw new LensError(LensErrorCode.ImageDecodeFailed, `${label} is empty (0 bytes): pass the image's contents`);
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  // 1. An SVG (plain or gzipped) is checked as text before librsvg parses it (see "SVG policy").
  let svgChecked = false;
  if (sniffFormat(bytes) === 'svg' || isGzip(bytes)) {
    const text = svgText(buf, maxBytes, label);
    if (text !== undefined && sniffFormat(Buffer.from(text.slice(0, 4096), 'latin1')) === 'svg') {
      await checkSvg(text, { label, maxPixels, maxBytes });
      svgChecked = true;
    }
  }

  // 2. Header only: format and declared size. sharp's own limit is off here so we can name the size.
  //    `metadata()` reads the header and never decodes pixels, whatever the canvas declares
  //    (a 30000×30000 PNG bomb costs a few ms and no memory; see test/unit/image-hostile.test.ts).
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
  if (format === 'svg' && !svgChecked) {
    // libvips recognised an SVG our sniffing did not: check it now, still before rendering.
    const text = svgText(buf, maxBytes, label);
    if (text === undefined) throw new LensError(LensErrorCode.ImageDecodeFailed, `${label} is an SVG that could not be read as text: re-save it as UTF-8`);
    await checkSvg(text, { label, maxPixels, maxBytes });
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!(width > 0 && height > 0)) {
    throw new LensError(LensErrorCode.ImageDecodeFailed, `${label} declares no usable size (${width}×${height}): the file is damaged`);
  }
  if (width * height > maxPixels) throw tooManyPixels(width, height, maxPixels);

  // 3. Pixels: first frame/page, EXIF orientation, alpha onto white, any space/depth -> 8-bit sRGB.
  //    `limitInputPixels` repeats the header check inside libvips, before it allocates anything.
  //    With `opts.resize` on a plain image (see DecodeResize), the resize joins the pipeline.
  const plain = format !== 'svg' && meta.channels === 3 && !meta.hasAlpha && !meta.hasProfile && (meta.orientation ?? 1) === 1 && (meta.pages ?? 1) === 1 && meta.space === 'srgb';
  const target = opts.resize && plain ? opts.resize.size(width, height) : undefined;
  let out: { data: Buffer; info: sharp.OutputInfo };
  try {
    let pipeline = sharp(buf, { limitInputPixels: Math.floor(maxPixels), failOn: 'error', pages: 1, page: 0 })
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb');
    if (target && (target.width !== width || target.height !== height)) {
      pipeline = pipeline.resize(target.width, target.height, { fit: 'fill', kernel: opts.resize!.kernel, fastShrinkOnLoad: false });
    }
    out = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
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
  const resized = out.info.width !== width || out.info.height !== height ? { resizedFrom: { width, height } } : {};
  return { data: rgb, width: out.info.width, height: out.info.height, format, ...(notes.length ? { notes } : {}), ...resized };
}

function tooManyPixels(width: number, height: number, maxPixels: number): LensError {
  return new LensError(
    LensErrorCode.ImageTooLarge,
    `image is ${width}×${height} (${((width * height) / 1e6).toFixed(1)} MP), over the ${formatMp(maxPixels)} MP limit: ` +
      `downscale it or raise ${LIMIT_SETTING}`,
    { width, height, maxPixels },
  );
}

function tooManyBytes(label: string, size: number, maxBytes: number): LensError {
  return new LensError(
    LensErrorCode.ImageTooLarge,
    `${label} is ${formatMiB(size)}, over the ${formatMiB(maxBytes)} limit on image data: ` +
      'send a smaller file (downscale it, or re-encode it as JPEG or WebP) or raise the maxBytes decode option',
    { bytes: size, maxBytes },
  );
}

function formatMiB(n: number): string {
  return `${Number((n / 1024 / 1024).toPrecision(3))} MiB`;
}

interface Claim {
  format: string;
  /** Where the claim came from, for the note: 'mimeType image/png' or 'file extension .png'. */
  source: string;
}

async function readInput(input: ImageInput, maxBytes: number): Promise<{ bytes: Uint8Array; claimed?: Claim; label: string }> {
  if ('bytes' in input) {
    if (!(input.bytes instanceof Uint8Array)) {
      throw new LensError(LensErrorCode.InvalidParams, 'image bytes must be a Uint8Array');
    }
    if (input.bytes.length > maxBytes) throw tooManyBytes('the image', input.bytes.length, maxBytes);
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
  if (stat.size > maxBytes) throw tooManyBytes(p, stat.size, maxBytes); // before reading a byte of it
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(p);
  } catch (e) {
    throw notFound(p, e);
  }
  if (bytes.length > maxBytes) throw tooManyBytes(p, bytes.length, maxBytes); // it grew since stat
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

// --- SVG policy ---------------------------------------------------------------------------------
//
// What librsvg 2.63.2 (sharp 0.35.5, libvips 8.18.7) does on its own, measured:
// - Given a buffer, as here (no base URL), it loads nothing from outside the document, silently:
//   <image href="file:///etc/hostname">, relative and absolute paths, http:, <use href="x.svg#a">,
//   <feImage>, CSS @import and url(), <?xml-stylesheet href?> and <xi:include> all render as if
//   absent. External entities and DTDs are not loaded (the parse fails: "Entity 'h' not defined"),
//   and libxml2 stops entity-expansion bombs ("Maximum entity amplification factor exceeded").
// - Given a *file*, it does load files in that file's folder and below. decodeImage therefore
//   always hands sharp bytes, never a path.
// - It does load data: URIs: PNG and JPEG (GIF, WebP, TIFF, BMP are ignored), nested SVG, CSS and
//   XInclude text. A PNG is decoded whole at its own size whatever size it is drawn at: a 10×10 SVG
//   embedding a 27 kB data: PNG of 15000×15000 took 10 s and 2 GB to render.
// So, before librsvg parses it, an SVG must be self-contained (every reference a same-document
// #fragment or a data: URI; <a> links exempt, they are never fetched) and static (no <script>), may
// not declare external or nesting entities, and the raster images it embeds count against
// maxPixels, all together, from their headers. Refusals say why instead of rendering a picture with
// holes, and do not depend on librsvg's defaults staying as they are.
// Not covered (librsvg bounds it only by the drawn size): a nested SVG image or a <pattern> tile
// drawn far larger than the canvas is rendered into a surface of that size (a 20000×20000 pattern
// tile in a 10×10 SVG: 6 s, 1.6 GB).

interface SvgContext {
  label: string;
  maxPixels: number;
  maxBytes: number;
  /** Pixels of the raster images embedded so far, all levels together. */
  embeddedPixels: number;
}

/** data: URIs inside data: URIs (an SVG embedding an SVG...) deeper than this are refused. */
const SVG_MAX_NESTING = 4;
const SELF_CONTAINED = 'only self-contained SVGs are rendered';
const EMBED_FIX = 'embed the resource as a data: URI, or export the image as PNG';
const DOCTYPE_FIX = 'remove the DOCTYPE, or export the image as PNG';

function isGzip(b: Uint8Array): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/**
 * The bytes, inflated if gzip-compressed (an .svgz) up to `maxBytes`; undefined if the gzip data is
 * corrupt (then sharp cannot read it either). A gzip bomb fails with ImageTooLarge.
 */
function inflated(buf: Buffer, maxBytes: number, label: string): Buffer | undefined {
  if (!isGzip(buf)) return buf;
  try {
    return zlib.gunzipSync(buf, { maxOutputLength: maxBytes });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new LensError(
        LensErrorCode.ImageTooLarge,
        `${label} is gzip-compressed and inflates to more than ${formatMiB(maxBytes)}, the limit on image data: ` +
          'send it uncompressed or as PNG, or raise the maxBytes decode option',
        { maxBytes },
      );
    }
    return undefined;
  }
}

/** The SVG's text, one char per byte (latin1: every byte of UTF-8 markup keeps its ASCII meaning). */
function svgText(buf: Buffer, maxBytes: number, label: string): string | undefined {
  return inflated(buf, maxBytes, label)?.toString('latin1');
}

/**
 * Applies the SVG policy above to a top-level SVG. Fails with UnsupportedImage (not
 * self-contained, scripts, entities, encodings), ImageTooLarge (declared canvas or embedded images
 * over maxPixels) or ImageDecodeFailed (a damaged embedded PNG/JPEG). Reads headers of embedded
 * images only.
 */
async function checkSvg(text: string, opts: { label: string; maxPixels: number; maxBytes: number }): Promise<void> {
  // A canvas declared too big for libvips' int (width="1e9") becomes 1×1 there, with a GLib warning:
  // refuse what is plainly over the limit here already. libvips' own size is checked afterwards.
  const declared = declaredSvgSize(text);
  if (declared && declared.width * declared.height > opts.maxPixels) {
    throw tooManyPixels(Math.round(declared.width), Math.round(declared.height), opts.maxPixels);
  }
  await checkSvgDocument(text, { ...opts, embeddedPixels: 0 }, 0);
}

/** One document: the SVG itself, or the text of a data: URI it uses (a nested SVG, CSS, XInclude). */
async function checkSvgDocument(raw: string, ctx: SvgContext, depth: number): Promise<void> {
  const where = depth > 0 ? ' (inside one of its data: URIs)' : '';
  const refuse = (what: string, fix: string) =>
    new LensError(LensErrorCode.UnsupportedImage, `${ctx.label} is an SVG ${what}${where}: ${SELF_CONTAINED}; ${fix}`);
  const text = raw.replace(/^\xEF\xBB\xBF/, ''); // UTF-8 BOM

  // Encoding: the scan below reads bytes as ASCII-compatible text, which is what libxml2 must read too.
  const encoding = /^\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([^"']*)["']/.exec(text)?.[1];
  if (text.includes('\0') || (encoding && !/^(utf-?8|us-ascii|ascii|iso[-_]?8859-1|latin-?1)$/i.test(encoding))) {
    throw new LensError(LensErrorCode.UnsupportedImage, `${ctx.label} is an SVG in the ${encoding ?? 'UTF-16'} encoding${where}: re-save it as UTF-8`);
  }
  if (/<(?:[^\s<>/:]+:)?script[\s/>]/i.test(text)) {
    throw refuse('with a <script> element', 'remove the script, or export the image as PNG');
  }

  // DOCTYPE: internal entities that are plain text are fine (Illustrator declares namespace URIs so);
  // external, parameter and nesting/markup entities, attribute defaults and foreign DTDs are not.
  if (/<!ATTLIST/i.test(text)) throw refuse('whose DOCTYPE declares attribute defaults (<!ATTLIST>)', DOCTYPE_FIX);
  const entities = new Map<string, string>();
  const declRe = /<!ENTITY\s+(%\s+)?([^\s%"'>]+)\s+(?:"([^"]*)"|'([^']*)'|(SYSTEM|PUBLIC)\b)/gi;
  const decls = [...text.matchAll(declRe)];
  if (decls.length !== (text.match(/<!ENTITY/gi)?.length ?? 0)) {
    throw refuse('with an entity declaration that could not be checked', DOCTYPE_FIX);
  }
  for (const m of decls) {
    const decl = clip(text.slice(m.index, text.indexOf('>', m.index) + 1 || undefined));
    if (m[1]) throw refuse(`whose DOCTYPE declares a parameter entity (${decl})`, DOCTYPE_FIX);
    if (m[5]) throw refuse(`whose DOCTYPE declares an external entity (${decl})`, DOCTYPE_FIX);
    const value = m[3] ?? m[4] ?? '';
    if (/[<&%]/.test(value)) throw refuse(`whose DOCTYPE declares an entity that nests or contains markup (${decl})`, DOCTYPE_FIX);
    entities.set(m[2], value);
  }
  const doctypes = [...text.matchAll(/<!DOCTYPE\s+[^\s[>]+\s*(?:SYSTEM\s+("[^"]*"|'[^']*')|PUBLIC\s+(?:"[^"]*"|'[^']*')\s+("[^"]*"|'[^']*'))?\s*[[>]/gi)];
  if (doctypes.length !== (text.match(/<!DOCTYPE/gi)?.length ?? 0)) {
    throw refuse('with a DOCTYPE that could not be checked', DOCTYPE_FIX);
  }
  for (const m of doctypes) {
    const dtd = (m[1] ?? m[2])?.slice(1, -1);
    // The W3C SVG DTDs are named by many exporters; libxml2 never fetches them here (no network).
    if (dtd !== undefined && !/^https?:\/\/www\.w3\.org\//i.test(dtd)) {
      throw refuse(`whose DOCTYPE refers to an external DTD (${clip(dtd)})`, DOCTYPE_FIX);
    }
  }
  if (entities.size > 0) {
    let expansion = 0;
    for (const m of text.matchAll(/&([^\s&;<>"'#]+);/g)) expansion += entities.get(m[1])?.length ?? 0;
    if (expansion > Math.max(1 << 20, text.length)) {
      throw refuse(`whose entities expand to ${formatMiB(expansion)} of text`, DOCTYPE_FIX);
    }
  }
  const expand = (s: string) => expandXmlRefs(s, entities);

  const dataUris = new Set<string>();
  const dataValues: Array<[number, number]> = []; // where data: attribute values are, to keep them out of the CSS scan
  // href / xlink:href / src attributes (and <?xml-stylesheet href?>), entity and character
  // references resolved as the XML parser will.
  for (const m of text.matchAll(/\s((?:[^\s=<>"'/:]+:)?(?:href|src))\s*=\s*(?:"([^"]*)"|'([^']*)')/gi)) {
    const value = m[2] ?? m[3] ?? '';
    const ref = classifyRef(expand(value));
    if (ref.kind === 'fragment') continue;
    if (ref.kind === 'data') {
      dataUris.add(ref.uri); // its content is checked as a document of its own, below
      const end = m.index + m[0].length - 1; // the closing quote
      dataValues.push([end - value.length, end]);
      continue;
    }
    // In well-formed XML an attribute's element starts at the last '<' before it ('<' cannot occur in values).
    const tagStart = text.lastIndexOf('<', m.index);
    const element = tagStart < 0 ? '' : (/^<([^\s/>]*)/.exec(text.slice(tagStart, tagStart + 200))?.[1] ?? '');
    if (element.replace(/^[^:?]*:/, '') === 'a') continue; // a hyperlink: never fetched when rendering
    throw refuse(`that refers to an external resource (<${element} ${m[1]}="${clip(ref.uri)}">)`, EMBED_FIX);
  }
  // CSS (<style>, style="", presentation attributes like fill="url(#g)"), after XML and CSS unescaping.
  let outside = text;
  if (dataValues.length > 0) {
    outside = '';
    let from = 0;
    for (const [start, end] of dataValues) {
      outside += text.slice(from, start);
      from = end;
    }
    outside += text.slice(from);
  }
  const css = cssUnescape(expand(outside));
  if (/@import\b/i.test(css)) {
    throw refuse('whose CSS uses @import', "put the rules in the SVG's own <style> element, or export the image as PNG");
  }
  for (const m of css.matchAll(/url\(\s*(?:"([^"]*)"|'([^']*)'|([^)]*))/gi)) {
    const ref = classifyRef(m[1] ?? m[2] ?? m[3] ?? '');
    if (ref.kind === 'data') dataUris.add(ref.uri);
    else if (ref.kind === 'external') throw refuse(`that refers to an external resource (url(${clip(ref.uri)}) in CSS)`, EMBED_FIX);
  }

  if (dataUris.size > 0 && depth >= SVG_MAX_NESTING) {
    throw refuse(`that nests data: URIs more than ${SVG_MAX_NESTING} levels deep`, 'export the image as PNG');
  }
  for (const uri of dataUris) await checkDataUri(uri, ctx, depth + 1);
}

/** An embedded resource: a raster image counts against the pixel budget; anything else is checked as a document. */
async function checkDataUri(uri: string, ctx: SvgContext, depth: number): Promise<void> {
  const comma = uri.indexOf(',');
  if (comma < 0) return; // not a data: URI librsvg can use
  const header = uri.slice(5, comma);
  const body = uri.slice(comma + 1);
  const encoded = /;\s*base64\s*$/i.test(header)
    ? Buffer.from(body.replace(/\s+/g, ''), 'base64')
    : Buffer.from(body.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
  const bytes = inflated(encoded, ctx.maxBytes, ctx.label);
  if (!bytes) return; // corrupt gzip: librsvg cannot use it either
  const sniffed = sniffFormat(bytes);
  if (!sniffed || sniffed === 'svg') {
    await checkSvgDocument(bytes.toString('latin1'), ctx, depth); // nested SVG, CSS, XInclude text
    return;
  }
  let meta: sharp.Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    if (sniffed !== 'png' && sniffed !== 'jpeg') return; // librsvg only draws embedded PNG and JPEG
    throw new LensError(
      LensErrorCode.ImageDecodeFailed,
      `${ctx.label} is an SVG that embeds ${describeFormat(sniffed)} whose header cannot be read (${sharpReason(e)}): the embedded image is damaged; re-export the SVG`,
    );
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  ctx.embeddedPixels += width * height;
  if (ctx.embeddedPixels > ctx.maxPixels) {
    const others = ctx.embeddedPixels - width * height;
    throw new LensError(
      LensErrorCode.ImageTooLarge,
      `${ctx.label} is an SVG that embeds ${describeFormat(sniffed)} of ${width}×${height} (${((width * height) / 1e6).toFixed(1)} MP)` +
        `${others > 0 ? ` besides ${(others / 1e6).toFixed(1)} MP of other embedded images` : ''}, over the ${formatMp(ctx.maxPixels)} MP limit ` +
        `(it applies to the images an SVG embeds, all together): downscale the embedded images or raise ${LIMIT_SETTING}`,
      { width, height, maxPixels: ctx.maxPixels },
    );
  }
}

/** What a URL in an SVG points at. Tabs and newlines are dropped and leading spaces/controls trimmed, as URL parsers do. */
function classifyRef(value: string): { kind: 'fragment' | 'data' | 'external'; uri: string } {
  const uri = value.replace(/[\t\n\r]/g, '').replace(/^[\x00-\x20]+/, '');
  if (uri === '' || uri.startsWith('#')) return { kind: 'fragment', uri };
  return { kind: /^data:/i.test(uri) ? 'data' : 'external', uri };
}

/** Resolves character references, the predefined entities and `entities` (plain text, checked above). */
function expandXmlRefs(s: string, entities: Map<string, string>): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#[xX][0-9a-fA-F]+|#[0-9]+|[^\s&;<>"'#]+);/g, (all, ref: string) => {
    if (ref[0] === '#') return codePoint(ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10));
    return PREDEFINED_ENTITIES[ref] ?? entities.get(ref) ?? all;
  });
}

const PREDEFINED_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** CSS escapes (`\75 rl(` is `url(`), so that escaped function names and at-rules are seen. */
function cssUnescape(s: string): string {
  if (!s.includes('\\')) return s;
  return s.replace(/\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|([^\n\r\f0-9a-fA-F]))/g, (_, hex: string | undefined, ch: string | undefined) =>
    hex !== undefined ? codePoint(parseInt(hex, 16)) : (ch ?? ''),
  );
}

function codePoint(n: number): string {
  return Number.isInteger(n) && n > 0 && n <= 0x10ffff ? String.fromCodePoint(n) : '\uFFFD';
}

function clip(s: string, n = 80): string {
  return s.length > n ? `${s.slice(0, n - 3)}...` : s;
}

/**
 * The root <svg>'s declared canvas in pixels, as libvips sizes it (72 dpi), when width/height are
 * absolute lengths or come from the viewBox; undefined when it cannot tell (em, ex, no size).
 */
function declaredSvgSize(text: string): { width: number; height: number } | undefined {
  const root = /<(?:[^\s<>/:!?]+:)?svg((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*\/?>/.exec(text);
  if (!root) return undefined;
  const attrs = new Map<string, string>();
  for (const a of root[1].matchAll(/([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs.set(a[1], a[2] ?? a[3] ?? '');
  const w = svgLength(attrs.get('width'));
  const h = svgLength(attrs.get('height'));
  const vb = /^\s*[-+.\deE]+[\s,]+[-+.\deE]+[\s,]+([-+.\deE]+)[\s,]+([-+.\deE]+)\s*$/.exec(attrs.get('viewBox') ?? '');
  const vw = vb ? Number(vb[1]) : NaN;
  const vh = vb ? Number(vb[2]) : NaN;
  const viewBox = vw > 0 && vh > 0 ? { width: vw, height: vh } : undefined;
  if (w !== undefined && h !== undefined) return { width: w, height: h };
  if (!viewBox) return undefined;
  if (w !== undefined) return { width: w, height: (w * viewBox.height) / viewBox.width };
  if (h !== undefined) return { width: (h * viewBox.width) / viewBox.height, height: h };
  const auto = (v: string | undefined) => v === undefined || /%\s*$/.test(v);
  return auto(attrs.get('width')) && auto(attrs.get('height')) ? viewBox : undefined;
}

const SVG_UNITS: Record<string, number> = { '': 1, px: 1, pt: 1, pc: 12, in: 72, cm: 72 / 2.54, mm: 7.2 / 2.54 };

function svgLength(v: string | undefined): number | undefined {
  const m = v === undefined ? null : /^\s*([+]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? SVG_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const n = Number(m[1]) * unit;
  return n > 0 && Number.isFinite(n) ? n : undefined;
}

/** sharp reports AVIF and HEIC both as 'heif'; tell them apart by the codec. */
function formatName(meta: sharp.Metadata): string {
  if (meta.format === 'heif') return meta.compression === 'av1' ? 'avif' : 'heic';
  return String(meta.format);
}

/** Magic-number sniffing: words errors, and spots SVG text to check before librsvg parses it (sharp decides what it can read). */
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
