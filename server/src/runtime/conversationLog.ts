/**
 * Conversation log: conversations persisted in the daemon's state folder, one append-only
 * JSON-lines file per conversation, `<stateDir>/conversations/<id>.jsonl`, so a crash or restart
 * loses at most the answer in flight (issue 6 §5).
 *
 * Format: one JSON object per line, each ending in '\n'.
 *   line 1    header `{v: 1, id, model, created}` (model = the model folder path that wrote the ids)
 *   line 2..  one `TurnRecord` per completed turn, in order: a delta on the conversation after
 *             the previous turn (history ranges dropped, messages appended with their image
 *             bytes, context ids as {keep, add}, the answer's ids). Replaying the lines rebuilds
 *             messages, image bytes and context ids exactly.
 *
 * Durability: `append` writes the line and fdatasyncs the file before it resolves (a new file
 * also syncs its folder).
 * Damage is reported through `report`, never fatal, never deleted:
 *   - a truncated last line (crash mid-write) or a corrupt line ends the replay at the last good
 *     turn; the bad tail is appended to `<id>.jsonl.corrupt` and cut off the file, so later turns
 *     append to a clean file;
 *   - a corrupt header (or empty file) moves the file to `<id>.jsonl.corrupt` and `read` throws
 *     LensError(UnknownConversation) saying so.
 * Ids are 1-128 characters of [A-Za-z0-9-] (anything else: LensError(InvalidParams)), so no id can
 * name a path outside the folder.
 * Calls on the same id must not overlap (the engine runs one call at a time).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LensError, LensErrorCode } from '../../../common/errors';
import type { ChatMessage } from './prompt';

/** An image as stored: the file's bytes, base64. */
export interface StoredImage {
  base64: string;
  mimeType?: string;
}

export interface TurnRecord {
  /** [start, count] message ranges removed before this turn (oldest turns dropped), in order; each also removes its messages' images from the front of the image list. */
  drop?: Array<[number, number]>;
  /** Messages appended: the system prompt (first turn), the user or tool message, the assistant answer. */
  add: ChatMessage[];
  /** Images of the appended messages, in order. */
  images: StoredImage[];
  /** Context ids after the turn: the first `keep` ids of the previous turn's, then `add`. */
  ids: { keep: number; add: number[] };
  /** The answer's ids as generated. */
  lastAnswerIds: number[];
}

/** A conversation as replayed from its file. */
export interface StoredConversation {
  id: string;
  /** Model folder that wrote the ids (from the header). */
  model: string;
  messages: ChatMessage[];
  /** Every image of `messages`, in order. */
  images: Array<{ bytes: Buffer; mimeType?: string }>;
  ids: number[];
  lastAnswerIds: number[];
  /** Turns replayed. */
  turns: number;
}

const ID_RE = /^[A-Za-z0-9-]{1,128}$/;
const ROLES = new Set(['system', 'user', 'assistant', 'tool']);

/** Ids of `next` as {keep, add} on `prev`: `next = prev.slice(0, keep).concat(add)`. */
export function idsDelta(prev: readonly number[], next: readonly number[]): TurnRecord['ids'] {
  let keep = 0;
  while (keep < prev.length && keep < next.length && prev[keep] === next[keep]) keep++;
  return { keep, add: next.slice(keep) };
}

export class ConversationLog {
  /** `<stateDir>/conversations` */
  readonly dir: string;

  constructor(stateDir: string, private readonly report: (msg: string) => void) {
    this.dir = path.join(stateDir, 'conversations');
  }

  static isValidId(id: unknown): id is string {
    return typeof id === 'string' && ID_RE.test(id);
  }

  /** Path of a conversation's file; throws InvalidParams for an id that is not 1-128 of [A-Za-z0-9-]. */
  file(id: string): string {
    if (!ConversationLog.isValidId(id)) {
      throw new LensError(LensErrorCode.InvalidParams, `conversation id '${String(id).slice(0, 64)}' is not valid: ids are 1-128 letters, digits and '-'; use the id lens/ask returned.`);
    }
    return path.join(this.dir, `${id}.jsonl`);
  }

  /** Appends one completed turn (after the header when the file is new) and syncs it to disk. Throws the fs error when that fails. */
  async append(id: string, model: string, turn: TurnRecord): Promise<void> {
    const file = this.file(id);
    await fs.promises.mkdir(this.dir, { recursive: true });
    const fh = await fs.promises.open(file, 'a');
    let isNew = false;
    try {
      isNew = (await fh.stat()).size === 0;
      const header = isNew ? JSON.stringify({ v: 1, id, model, created: new Date().toISOString() }) + '\n' : '';
      await fh.appendFile(header + JSON.stringify(turn) + '\n');
      await fh.datasync();
    } finally {
      await fh.close();
    }
    if (isNew) await syncDir(this.dir);
  }

  /** Replays `<id>.jsonl`; undefined when there is none. Damage: see the header comment. */
  async read(id: string): Promise<StoredConversation | undefined> {
    const file = this.file(id);
    let buf: Buffer;
    try {
      buf = await fs.promises.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    let end = buf.indexOf(10);
    const header = end < 0 ? undefined : parseJson(buf.subarray(0, end));
    if (!isHeader(header, id)) {
      const aside = `${file}.corrupt`;
      await fs.promises.rename(file, aside);
      this.report(`conversation ${id}: ${file} has no readable header; moved to ${aside}`);
      throw new LensError(LensErrorCode.UnknownConversation, `conversation '${id}' cannot be continued: its saved state was corrupt (moved to ${aside}). Start a new conversation by leaving out conversationId.`);
    }
    const conv: StoredConversation = { id, model: header.model, messages: [], images: [], ids: [], lastAnswerIds: [], turns: 0 };
    const stored: StoredImage[] = [];
    let good = end + 1; // bytes of the file replayed so far
    let problem: string | undefined;
    for (let line = 2; good < buf.length; line++) {
      end = buf.indexOf(10, good);
      if (end < 0) {
        problem = `a truncated last line (${buf.length - good} bytes; a crash while writing?)`;
        break;
      }
      const why = applyTurn(conv, stored, parseJson(buf.subarray(good, end)));
      if (why) {
        problem = `line ${line} is corrupt (${why})`;
        break;
      }
      conv.turns++;
      good = end + 1;
    }
    if (problem) {
      await fs.promises.appendFile(`${file}.corrupt`, buf.subarray(good));
      await fs.promises.truncate(file, good);
      this.report(`conversation ${id}: ${file} has ${problem}; restored ${conv.turns} turn(s), the rest was moved to ${file}.corrupt`);
    }
    conv.images = stored.map((s) => ({ bytes: Buffer.from(s.base64, 'base64'), ...(s.mimeType !== undefined ? { mimeType: s.mimeType } : {}) }));
    return conv;
  }

  /** Removes a conversation's file; unknown or invalid ids are ignored. */
  delete(id: string): void {
    if (ConversationLog.isValidId(id)) fs.rmSync(this.file(id), { force: true });
  }

  /** Removes conversation files (`.corrupt` ones included) not modified for more than `maxAgeMs`; returns how many. Synchronous (runs at engine construction). */
  sweep(maxAgeMs: number, now = Date.now()): number {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return 0; // no folder yet
    }
    let removed = 0;
    for (const name of names.filter((n) => /\.jsonl(\.corrupt)?$/.test(n))) {
      const f = path.join(this.dir, name);
      try {
        if (now - fs.statSync(f).mtimeMs > maxAgeMs) {
          fs.rmSync(f);
          removed++;
        }
      } catch (e) {
        this.report(`could not remove old conversation file ${f}: ${(e as Error).message}`);
      }
    }
    if (removed > 0) this.report(`removed ${removed} conversation file(s) unused for more than ${Math.round(maxAgeMs / 3.6e6)} h from ${this.dir}`);
    return removed;
  }
}

function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    return undefined;
  }
}

function isHeader(x: unknown, id: string): x is { v: 1; id: string; model: string } {
  const h = x as { v?: unknown; id?: unknown; model?: unknown } | undefined;
  return typeof h === 'object' && h !== null && h.v === 1 && h.id === id && typeof h.model === 'string';
}

const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.every((n) => Number.isInteger(n) && n >= 0);
const isCount = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0;

/** Applies one turn line to the replayed state; returns why it cannot (then nothing changed). */
function applyTurn(conv: StoredConversation, images: StoredImage[], x: unknown): string | undefined {
  const t = x as Partial<TurnRecord> | undefined;
  if (typeof t !== 'object' || t === null) return 'not a JSON object';
  if (!Array.isArray(t.add) || !t.add.every((m) => ROLES.has(m?.role) && typeof m.text === 'string' && isCount(m.images))) return 'bad messages';
  if (!Array.isArray(t.images) || !t.images.every((i) => typeof i?.base64 === 'string' && (i.mimeType === undefined || typeof i.mimeType === 'string'))) return 'bad images';
  if (t.add.reduce((n, m) => n + m.images, 0) !== t.images.length) return 'image count does not match the messages';
  if (!t.ids || !isCount(t.ids.keep) || t.ids.keep > conv.ids.length || !isIds(t.ids.add) || !isIds(t.lastAnswerIds)) return 'bad ids';
  const messages = [...conv.messages];
  let dropImages = 0;
  for (const r of t.drop ?? []) {
    if (!Array.isArray(r) || !isCount(r[0]) || !isCount(r[1]) || r[0] + r[1] > messages.length) return 'bad drop range';
    dropImages += messages.splice(r[0], r[1]).reduce((n, m) => n + m.images, 0);
  }
  if (dropImages > images.length) return 'drops more images than there are';
  images.splice(0, dropImages);
  images.push(...t.images.map((i) => ({ base64: i.base64, ...(i.mimeType !== undefined ? { mimeType: i.mimeType } : {}) })));
  conv.messages = [...messages, ...t.add.map((m) => ({ role: m.role, text: m.text, images: m.images }))];
  conv.ids = [...conv.ids.slice(0, t.ids.keep), ...t.ids.add];
  conv.lastAnswerIds = t.lastAnswerIds;
  return undefined;
}

/** Makes a new file's directory entry durable (not supported everywhere, e.g. Windows: ignored). */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await fs.promises.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}
