/**
 * OCR stage 3: reading order. Recognised boxes are grouped into rows (boxes that overlap
 * vertically by at least half the smaller height), rows are read top to bottom and each row left
 * to right; neighbours in a row whose gap is under `mergeGap` × the row's text height are one
 * line (the detector sometimes splits a line at wide word gaps). Farther boxes in a row stay
 * separate lines (table cells, diagram labels side by side).
 */

export interface Piece {
  text: string;
  score: number;
  /** Pixels of the raw image, x1/y1 exclusive. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Gap (in text heights) under which two boxes of one row are joined with a space. */
export const DEFAULT_MERGE_GAP = 1.2;

export function readingOrder(pieces: Piece[], mergeGap = DEFAULT_MERGE_GAP): Piece[] {
  const sorted = pieces.slice().sort((a, b) => a.y0 + a.y1 - (b.y0 + b.y1) || a.x0 - b.x0);
  const rows: Piece[][] = [];
  const rowRange: Array<[number, number]> = [];
  for (const p of sorted) {
    const h = p.y1 - p.y0;
    let placed = false;
    // Rows are in top-to-bottom order; only the last few can overlap a box that starts lower.
    for (let r = rows.length - 1; r >= 0 && r >= rows.length - 4; r--) {
      const [top, bottom] = rowRange[r];
      const overlap = Math.min(bottom, p.y1) - Math.max(top, p.y0);
      const minH = Math.min(h, ...rows[r].map((q) => q.y1 - q.y0));
      if (overlap >= 0.5 * minH) {
        rows[r].push(p);
        rowRange[r] = [Math.min(top, p.y0), Math.max(bottom, p.y1)];
        placed = true;
        break;
      }
    }
    if (!placed) {
      rows.push([p]);
      rowRange.push([p.y0, p.y1]);
    }
  }
  const out: Piece[] = [];
  rows.forEach((row) => {
    row.sort((a, b) => a.x0 - b.x0);
    let cur = { ...row[0] };
    let chars = cur.text.length;
    let weighted = cur.score * chars;
    for (const p of row.slice(1)) {
      const h = Math.min(cur.y1 - cur.y0, p.y1 - p.y0);
      if (p.x0 - cur.x1 < mergeGap * h) {
        cur.text = `${cur.text} ${p.text}`;
        weighted += p.score * p.text.length;
        chars += p.text.length;
        cur = { ...cur, x1: Math.max(cur.x1, p.x1), y0: Math.min(cur.y0, p.y0), y1: Math.max(cur.y1, p.y1) };
        cur.score = chars ? weighted / chars : 0;
      } else {
        out.push(cur);
        cur = { ...p };
        chars = cur.text.length;
        weighted = cur.score * chars;
      }
    }
    out.push(cur);
  });
  return out;
}
