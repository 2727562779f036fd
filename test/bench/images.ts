/**
 * Photo-like test images made with sharp from a seeded pattern (gradients, shapes, noise), so
 * JPEG/PNG decoding does real work. Distinct seeds give distinct bytes (a new image each time for
 * the vision cache).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';

function pixels(w: number, h: number, seed: number): Buffer {
  const buf = Buffer.alloc(w * h * 3);
  let s = (seed * 2654435761) >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const cx = w * (0.3 + 0.4 * rnd()), cy = h * (0.3 + 0.4 * rnd()), r = Math.min(w, h) * (0.15 + 0.2 * rnd());
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inCircle = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
      const stripe = ((x + 2 * y + seed * 7) >> 5) & 1;
      const n = (rnd() - 0.5) * 40;
      buf[i] = Math.max(0, Math.min(255, (inCircle ? 200 : (255 * x) / w) + n));
      buf[i + 1] = Math.max(0, Math.min(255, (inCircle ? 40 : (255 * y) / h) + n + stripe * 30));
      buf[i + 2] = Math.max(0, Math.min(255, (inCircle ? 60 : 128 + 100 * Math.sin((x + y) / 40 + seed)) + n));
    }
  }
  return buf;
}

export async function writeJpeg(file: string, w: number, h: number, seed: number): Promise<string> {
  await sharp(pixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
  return file;
}

export async function writePng(file: string, w: number, h: number, seed: number): Promise<string> {
  await sharp(pixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
  return file;
}

/** The bench's images in `dir`: the preprocessing pair and one JPEG per conversation. */
export async function makeImages(dir: string, conversations: number): Promise<{ jpeg: string; png: string; conv: string[] }> {
  fs.mkdirSync(dir, { recursive: true });
  const jpeg = await writeJpeg(path.join(dir, 'photo-1024x768.jpg'), 1024, 768, 1);
  const png = await writePng(path.join(dir, 'screen-1920x1080.png'), 1920, 1080, 2);
  const conv: string[] = [];
  for (let i = 0; i < conversations; i++) conv.push(await writeJpeg(path.join(dir, `conv-${i}.jpg`), 1024, 768, 100 + i));
  return { jpeg, png, conv };
}
