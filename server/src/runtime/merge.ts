/**
 * Merging image features into the prompt embeddings (llama.cpp's mtmd keeps the LLM unaware of
 * images in the same way: the decoder only ever sees embeddings).
 *
 * Each image occupies a run of `imageTokenId` positions in `ids`, one position per feature row,
 * in image order. The rows are written over the token embeddings at those positions.
 */
import { LensError, LensErrorCode } from '../../../common/errors';

export interface ImageFeatures {
  /** [rows, H] f32 */
  data: Float32Array;
  rows: number;
}

/**
 * Expands each single image placeholder token to `rows[i]` copies, in order.
 * Throws when the number of placeholders differs from the number of images.
 */
export function expandImageTokens(ids: readonly number[], imageTokenId: number, rows: readonly number[]): number[] {
  const out: number[] = [];
  let img = 0;
  for (const id of ids) {
    if (id !== imageTokenId) {
      out.push(id);
      continue;
    }
    if (img >= rows.length) {
      throw new LensError(LensErrorCode.InvalidParams, `the prompt has more image placeholders than images (${rows.length} given): remove '<image>' from the question text; images are placed by the daemon.`);
    }
    for (let r = 0; r < rows[img]; r++) out.push(imageTokenId);
    img++;
  }
  if (img !== rows.length) {
    throw new LensError(LensErrorCode.Internal, `the chat template placed ${img} image placeholders for ${rows.length} images: the model's chat template does not render image parts.`);
  }
  return out;
}

/**
 * Writes feature rows over the image-token positions of `embeds` [S, H] (in place).
 * Image slots must equal the total feature rows.
 */
export function mergeImageFeatures(embeds: Float32Array, ids: readonly number[], imageTokenId: number, hidden: number, images: readonly ImageFeatures[]): void {
  const slots = ids.reduce((n, id) => n + (id === imageTokenId ? 1 : 0), 0);
  const rows = images.reduce((n, f) => n + f.rows, 0);
  if (slots !== rows) {
    throw new LensError(LensErrorCode.Internal, `image slots (${slots}) != image feature rows (${rows}): prompt expansion and vision encoder disagree.`);
  }
  let img = 0;
  let row = 0;
  for (let pos = 0; pos < ids.length; pos++) {
    if (ids[pos] !== imageTokenId) continue;
    const f = images[img];
    if (f.data.length !== f.rows * hidden) {
      throw new LensError(LensErrorCode.InvalidModelFolder, `image features have width ${f.data.length / f.rows}, the LLM hidden size is ${hidden}: wrong vision encoder file for this decoder?`);
    }
    embeds.set(f.data.subarray(row * hidden, (row + 1) * hidden), pos * hidden);
    row++;
    if (row === f.rows) {
      img++;
      row = 0;
    }
  }
}
