/**
 * The `image_info` tool: what the file is (format, size, colour space, alpha, EXIF orientation,
 * ICC profile, density) and its dominant colours.
 *
 * Dominant colours: k-means in RGB on a 64×64 thumbnail of the decoded image (alpha on white),
 * started from the centres of the most populated cells of a 4-bit-per-channel histogram, so the
 * answer is the same on every run.
 */
import sharp from 'sharp';
import { intArg, parseWith } from './args';
import { rgbOf, type Rgb } from './pixels';
import type { Tool } from './types';

export interface ImageInfoArgs {
  /** How many dominant colours (1..10, default 5). */
  colours: number;
}

export interface DominantColour {
  /** `#rrggbb`. */
  hex: string;
  rgb: [number, number, number];
  /** Share of the pixels, 0..1. */
  fraction: number;
}

export interface ImageInfo {
  format: string;
  /** Pixels after EXIF orientation. */
  width: number;
  height: number;
  /** Stored pixels, before EXIF orientation. */
  storedWidth: number;
  storedHeight: number;
  /** libvips' interpretation: 'srgb', 'b-w' (greyscale), 'cmyk', 'rgb16', 'grey16', … */
  colourSpace: string;
  channels: number;
  hasAlpha: boolean;
  /** EXIF orientation tag 1..8, or null when absent. */
  exifOrientation: number | null;
  /** Human words for the orientation ('normal', 'rotated 90° clockwise', …), or null. */
  orientation: string | null;
  hasIccProfile: boolean;
  /** Dots per inch, when the file says. */
  density: number | null;
  /** Pages or animation frames. */
  pages: number;
  bitDepth: string | null;
  dominantColours: DominantColour[];
}

const ORIENTATIONS: Record<number, string> = {
  1: 'normal',
  2: 'mirrored horizontally',
  3: 'rotated 180°',
  4: 'mirrored vertically',
  5: 'mirrored horizontally and rotated 270° clockwise',
  6: 'rotated 90° clockwise',
  7: 'mirrored horizontally and rotated 90° clockwise',
  8: 'rotated 270° clockwise',
};

export const imageInfoTool: Tool<ImageInfoArgs> = {
  name: 'image_info',
  description: 'Describes the image file: format, size in pixels, colour space, alpha channel, EXIF orientation and its dominant colours.',
  schema: {
    type: 'object',
    properties: { colours: { type: 'integer', minimum: 1, maximum: 10, default: 5, description: 'How many dominant colours to list.' } },
    additionalProperties: false,
  },
  timeoutMs: 10_000,
  parseArgs: (raw) => parseWith(raw, ['colours'], (o) => ({ colours: intArg(o, 'colours', 1, 10, 5) })),
  run: async (args, ctx) => {
    const buf = Buffer.from(ctx.image.bytes.buffer, ctx.image.bytes.byteOffset, ctx.image.bytes.byteLength);
    const meta = await sharp(buf, { limitInputPixels: false }).metadata();
    ctx.signal.throwIfAborted();
    const rgb = await rgbOf(ctx.image);
    ctx.signal.throwIfAborted();
    const exif = typeof meta.orientation === 'number' ? meta.orientation : null;
    const info: ImageInfo = {
      format: meta.format === 'heif' ? (meta.compression === 'av1' ? 'avif' : 'heic') : String(meta.format),
      width: meta.autoOrient?.width ?? meta.width,
      height: meta.autoOrient?.height ?? meta.height,
      storedWidth: meta.width,
      storedHeight: meta.height,
      colourSpace: String(meta.space ?? 'unknown'),
      channels: meta.channels ?? 0,
      hasAlpha: meta.hasAlpha === true,
      exifOrientation: exif,
      orientation: exif === null ? null : ORIENTATIONS[exif] ?? `unknown (${exif})`,
      hasIccProfile: meta.hasProfile === true,
      density: meta.density ?? null,
      pages: meta.pages ?? 1,
      bitDepth: meta.depth ?? null,
      dominantColours: await dominantColours(rgb, args.colours),
    };
    const forModel = {
      format: info.format,
      size: [info.width, info.height],
      colour_space: info.colourSpace,
      alpha: info.hasAlpha,
      exif_orientation: info.orientation ?? 'none',
      dominant_colours: info.dominantColours.map((c) => `${c.hex} ${Math.round(c.fraction * 100)}%`),
    };
    return {
      summary: JSON.stringify(forModel),
      data: info,
    };
  },
};

/**
 * The `k` dominant colours of `img` (fewer when it has fewer distinct colours), largest share
 * first. Deterministic.
 */
export async function dominantColours(img: Rgb, k: number): Promise<DominantColour[]> {
  const thumb = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .resize(64, 64, { fit: 'inside', kernel: 'nearest' })
    .raw()
    .toBuffer();
  const n = thumb.length / 3;

  // Seeds: centres (means) of the most populated 16-level cells, visited in descending count.
  const cells = new Map<number, { count: number; sum: [number, number, number] }>();
  for (let i = 0; i < n; i++) {
    const r = thumb[3 * i];
    const g = thumb[3 * i + 1];
    const b = thumb[3 * i + 2];
    const key = ((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4);
    const c = cells.get(key) ?? { count: 0, sum: [0, 0, 0] };
    c.count++;
    c.sum[0] += r;
    c.sum[1] += g;
    c.sum[2] += b;
    cells.set(key, c);
  }
  const ranked = [...cells.entries()].sort((a, b) => b[1].count - a[1].count || a[0] - b[0]);
  const centres: number[][] = ranked.slice(0, k).map(([, c]) => c.sum.map((s) => s / c.count));

  // Lloyd iterations.
  const assign = new Int32Array(n);
  for (let iter = 0; iter < 20; iter++) {
    const sums = centres.map(() => [0, 0, 0, 0]);
    let moved = false;
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestD = Infinity;
      for (let j = 0; j < centres.length; j++) {
        const dr = thumb[3 * i] - centres[j][0];
        const dg = thumb[3 * i + 1] - centres[j][1];
        const db = thumb[3 * i + 2] - centres[j][2];
        const d = dr * dr + dg * dg + db * db;
        if (d < bestD) {
          bestD = d;
          best = j;
        }
      }
      if (assign[i] !== best) moved = true;
      assign[i] = best;
      const s = sums[best];
      s[0] += thumb[3 * i];
      s[1] += thumb[3 * i + 1];
      s[2] += thumb[3 * i + 2];
      s[3]++;
    }
    sums.forEach((s, j) => {
      if (s[3]) centres[j] = [s[0] / s[3], s[1] / s[3], s[2] / s[3]];
    });
    if (!moved && iter > 0) break;
  }
  const counts = new Array(centres.length).fill(0);
  for (let i = 0; i < n; i++) counts[assign[i]]++;
  return centres
    .map((c, j) => {
      const rgb = c.map((v) => Math.round(v)) as [number, number, number];
      return { hex: `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`, rgb, fraction: counts[j] / n };
    })
    .filter((c) => c.fraction > 0)
    .sort((a, b) => b.fraction - a.fraction || a.hex.localeCompare(b.hex));
}
