/**
 * Pixel helpers shared by the tools: the decoded RGB of a `ToolImage` (decoded once per image
 * object), crops, bilinear resizing and PNG encoding.
 *
 * All images here are `Rgb`: [Hpx, Wpx, 3] u8 HWC, sRGB, the layout `decodeImage` returns.
 */
import sharp from 'sharp';
import { decodeImage } from '../runtime/image';
import type { NormBox, ToolImage } from './types';

export interface Rgb {
  /** [Hpx, Wpx, 3] u8 HWC. */
  data: Uint8Array;
  width: number;
  height: number;
}

const decoded = new WeakMap<ToolImage, Promise<Rgb>>();

/**
 * The image's RGB pixels: `image.pixels` when given, else `image.bytes` decoded with the runtime's
 * `decodeImage` (EXIF applied, alpha on white), memoised per `ToolImage` object. The returned
 * buffer is shared: callers must not modify it. Rejects with the decoder's `LensError`.
 */
export function rgbOf(image: ToolImage): Promise<Rgb> {
  if (image.pixels) return Promise.resolve({ data: image.pixels, width: image.width, height: image.height });
  let p = decoded.get(image);
  if (!p) {
    p = decodeImage({ bytes: image.bytes }).then((d) => ({ data: d.data, width: d.width, height: d.height }));
    decoded.set(image, p);
  }
  return p;
}

/** Integer pixel rectangle, x1/y1 exclusive. */
export interface PxRect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** A copy of `r` inside `img`; the rectangle must already be inside the image and non-empty. */
export function crop(img: Rgb, r: PxRect): Rgb {
  const w = r.x1 - r.x0;
  const h = r.y1 - r.y0;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const src = ((r.y0 + y) * img.width + r.x0) * 3;
    out.set(img.data.subarray(src, src + w * 3), y * w * 3);
  }
  return { data: out, width: w, height: h };
}

/**
 * Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR geometry), no antialiasing: use it
 * for upscaling and mild downscaling (at most ~2×). Deterministic.
 */
export function resizeBilinear(img: Rgb, width: number, height: number): Rgb {
  if (width === img.width && height === img.height) return { data: img.data.slice(), width, height };
  const out = new Uint8Array(width * height * 3);
  const sx = img.width / width;
  const sy = img.height / height;
  const xi0 = new Int32Array(width);
  const xi1 = new Int32Array(width);
  const xf = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), img.width - 1);
    xi0[x] = Math.floor(fx);
    xi1[x] = Math.min(xi0[x] + 1, img.width - 1);
    xf[x] = fx - xi0[x];
  }
  const src = img.data;
  const rowStride = img.width * 3;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), img.height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, img.height - 1);
    const wy = fy - y0;
    const r0 = y0 * rowStride;
    const r1 = y1 * rowStride;
    let o = y * width * 3;
    for (let x = 0; x < width; x++) {
      const a = xi0[x] * 3;
      const b = xi1[x] * 3;
      const wx = xf[x];
      for (let c = 0; c < 3; c++) {
        const top = src[r0 + a + c] + (src[r0 + b + c] - src[r0 + a + c]) * wx;
        const bot = src[r1 + a + c] + (src[r1 + b + c] - src[r1 + a + c]) * wx;
        out[o++] = Math.round(top + (bot - top) * wy);
      }
    }
  }
  return { data: out, width, height };
}

/** PNG bytes of an RGB image. */
export async function toPng(img: Rgb): Promise<Uint8Array> {
  const buf = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .png({ compressionLevel: 6 })
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/** A normalised box in pixels of a `width`×`height` image: clamped, rounded outwards, at least 1 px. */
export function normToPx(box: NormBox, width: number, height: number): PxRect {
  const clamp = (v: number, max: number) => Math.min(Math.max(v, 0), max);
  // The epsilon keeps float noise (0.55 * 800 = 440.00000000000006) from adding a pixel.
  const lo = (v: number, n: number) => Math.floor(clamp(v, 1) * n + 1e-6);
  const hi = (v: number, n: number) => Math.ceil(clamp(v, 1) * n - 1e-6);
  let x0 = lo(Math.min(box[0], box[2]), width);
  let y0 = lo(Math.min(box[1], box[3]), height);
  let x1 = hi(Math.max(box[0], box[2]), width);
  let y1 = hi(Math.max(box[1], box[3]), height);
  if (x1 <= x0) [x0, x1] = x0 >= width ? [width - 1, width] : [x0, x0 + 1];
  if (y1 <= y0) [y0, y1] = y0 >= height ? [height - 1, height] : [y0, y0 + 1];
  return { x0, y0, x1, y1 };
}

/** A pixel rectangle of a `width`×`height` image as a normalised box. */
export const pxToNorm = (r: PxRect, width: number, height: number): NormBox => [r.x0 / width, r.y0 / height, r.x1 / width, r.y1 / height];
