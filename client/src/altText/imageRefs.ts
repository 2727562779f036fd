/**
 * Finds image references in Markdown and HTML text, with the offsets an editor needs to flag a
 * missing alt text and to write one. Pure (no 'vscode'); offsets are UTF-16 indices into the
 * text, as `TextDocument.positionAt` takes them.
 *
 * Markdown: inline `![alt](dest "title")` (dest may be `<...>`), full reference `![alt][id]` with
 * its `[id]: dest` definition, and raw `<img>` tags. Code spans and fenced/indented code blocks
 * are skipped. HTML: `<img>` tags outside comments, `<script>`, `<style>` and `<template>`.
 */

export type RefKind = 'markdown' | 'html';

export interface ImageRef {
  kind: RefKind;
  /** The whole reference: `![..](..)` or `<img ...>`. [start, end) */
  start: number;
  end: number;
  /** The image location as written (not decoded, not resolved). */
  src: string;
  /** Current alt text; undefined when an `<img>` has no alt attribute. */
  alt: string | undefined;
  /**
   * Where the alt text goes. Markdown: inside the brackets. HTML with `alt=`: the value (inside
   * the quotes). HTML without: an empty range just after `<img`, where ` alt="…"` is inserted.
   */
  altStart: number;
  altEnd: number;
  /** True when the edit must insert a whole ` alt="…"` attribute (HTML without alt). */
  altInsert: boolean;
}

/** A reference needs alt text when it has none: Markdown `![](x)`, or `<img>` without `alt` (`alt=""` marks a decorative image and is fine). */
export function lacksAltText(ref: ImageRef): boolean {
  if (ref.kind === 'markdown') return (ref.alt ?? '').trim() === '';
  return ref.alt === undefined;
}

export function findImageRefs(text: string, languageId: string): ImageRef[] {
  return languageId === 'html' ? findHtmlImages(text, 0, text.length) : findMarkdownImages(text);
}

/** The reference whose range contains `offset` (ends inclusive, so a cursor just after `)` counts). */
export function refAt(refs: readonly ImageRef[], offset: number): ImageRef | undefined {
  return refs.find((r) => offset >= r.start && offset <= r.end);
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

interface Span {
  start: number;
  end: number;
}

function findMarkdownImages(text: string): ImageRef[] {
  const skip = markdownCodeSpans(text);
  const defs = referenceDefinitions(text, skip);
  const refs: ImageRef[] = [];
  let skipIndex = 0;
  for (let i = 0; i < text.length; i++) {
    while (skipIndex < skip.length && skip[skipIndex].end <= i) skipIndex++;
    if (skipIndex < skip.length && skip[skipIndex].start <= i) {
      i = skip[skipIndex].end - 1;
      continue;
    }
    const c = text.charCodeAt(i);
    if (c === 0x5c /* \ */) {
      i++;
      continue;
    }
    if (c === 0x21 /* ! */ && text[i + 1] === '[') {
      const ref = markdownImageAt(text, i, defs);
      if (ref) {
        refs.push(ref);
        i = ref.end - 1;
      }
    } else if (c === 0x3c /* < */ && /^<img[\s/>]/i.test(text.slice(i, i + 5))) {
      const tag = parseImgTag(text, i);
      if (tag) {
        refs.push(tag);
        i = tag.end - 1;
      }
    }
  }
  return refs;
}

/** `![` at `at`: the bracketed alt (balanced, escapes honoured, one paragraph) then `(dest)` or `[id]`. */
function markdownImageAt(text: string, at: number, defs: Map<string, string>): ImageRef | undefined {
  const altStart = at + 2;
  let depth = 0;
  let i = altStart;
  for (; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\\') {
      i++;
    } else if (ch === '[') {
      depth++;
    } else if (ch === ']') {
      if (depth === 0) break;
      depth--;
    } else if (ch === '\n' && /^\n[ \t]*\n/.test(text.slice(i, i + 3 + 40))) {
      return undefined; // a blank line ends the paragraph
    }
  }
  if (i >= text.length) return undefined;
  const altEnd = i;
  const alt = text.slice(altStart, altEnd);
  const after = altEnd + 1;
  if (text[after] === '(') {
    const dest = inlineDestination(text, after + 1);
    if (!dest) return undefined;
    return { kind: 'markdown', start: at, end: dest.end, src: dest.src, alt, altStart, altEnd, altInsert: false };
  }
  if (text[after] === '[') {
    const close = text.indexOf(']', after + 1);
    if (close < 0) return undefined;
    const label = text.slice(after + 1, close) || alt;
    const src = defs.get(normalizeLabel(label));
    if (src === undefined) return undefined;
    return { kind: 'markdown', start: at, end: close + 1, src, alt, altStart, altEnd, altInsert: false };
  }
  return undefined;
}

/** After `(`: optional spaces, `<dest>` or a bare dest (balanced parens), optional title, `)`. */
function inlineDestination(text: string, from: number): { src: string; end: number } | undefined {
  let i = from;
  while (text[i] === ' ' || text[i] === '\t' || text[i] === '\n') i++;
  let src: string;
  if (text[i] === '<') {
    const close = text.indexOf('>', i + 1);
    if (close < 0 || text.slice(i + 1, close).includes('\n')) return undefined;
    src = text.slice(i + 1, close);
    i = close + 1;
  } else {
    const start = i;
    let depth = 0;
    for (; i < text.length; i++) {
      const ch = text[i];
      if (ch === '\\') {
        i++;
        continue;
      }
      if (ch === ' ' || ch === '\t' || ch === '\n') break;
      if (ch === '(') depth++;
      if (ch === ')') {
        if (depth === 0) break;
        depth--;
      }
    }
    src = text.slice(start, i);
  }
  while (text[i] === ' ' || text[i] === '\t' || text[i] === '\n') i++;
  const quote = text[i];
  if (quote === '"' || quote === "'" || quote === '(') {
    const closer = quote === '(' ? ')' : quote;
    const close = text.indexOf(closer, i + 1);
    if (close < 0) return undefined;
    i = close + 1;
    while (text[i] === ' ' || text[i] === '\t' || text[i] === '\n') i++;
  }
  if (text[i] !== ')') return undefined;
  return { src, end: i + 1 };
}

function normalizeLabel(label: string): string {
  return label.trim().replace(/\s+/g, ' ').toLowerCase();
}

/** `[id]: dest` lines (up to 3 spaces of indent), outside code. */
function referenceDefinitions(text: string, skip: readonly Span[]): Map<string, string> {
  const defs = new Map<string, string>();
  const re = /^ {0,3}\[([^\]\n]+)\]:[ \t]*(?:<([^>\n]*)>|(\S+))/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const at = m.index;
    if (skip.some((s) => at >= s.start && at < s.end)) continue;
    const key = normalizeLabel(m[1]);
    if (!defs.has(key)) defs.set(key, m[2] ?? m[3]);
  }
  return defs;
}

/** Ranges holding code: fenced blocks (``` or ~~~), indented blocks after a blank line, code spans. Sorted, disjoint. */
export function markdownCodeSpans(text: string): Span[] {
  const spans: Span[] = [];
  const lines = text.split('\n');
  let offset = 0;
  let fence: { char: string; len: number; start: number } | undefined;
  let prevBlank = true;
  let indented: Span | undefined;
  const proseLines: Array<{ start: number; line: string }> = [];
  for (const line of lines) {
    const lineStart = offset;
    offset += line.length + 1;
    if (fence) {
      const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(line);
      if (close && close[1][0] === fence.char && close[1].length >= fence.len) {
        spans.push({ start: fence.start, end: Math.min(offset, text.length) });
        fence = undefined;
      }
      continue;
    }
    const open = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (open && !(open[1][0] === '`' && line.slice(open[0].length).includes('`'))) {
      if (indented) spans.push(indented), (indented = undefined);
      fence = { char: open[1][0], len: open[1].length, start: lineStart };
      prevBlank = false;
      continue;
    }
    const blank = line.trim() === '';
    if (/^( {4}|\t)/.test(line) && !blank && (prevBlank || indented)) {
      indented = indented ? { start: indented.start, end: lineStart + line.length } : { start: lineStart, end: lineStart + line.length };
      continue;
    }
    if (!blank && indented) spans.push(indented), (indented = undefined);
    prevBlank = blank;
    proseLines.push({ start: lineStart, line });
  }
  if (indented) spans.push(indented);
  if (fence) spans.push({ start: fence.start, end: text.length });
  // Code spans: a run of N backticks up to the next run of exactly N (within prose; may span lines).
  const prose = proseLines.length ? text : '';
  const re = /`+/g;
  const inBlock = (at: number) => spans.some((s) => at >= s.start && at < s.end);
  const codeSpans: Span[] = [];
  for (let m = re.exec(prose); m; m = re.exec(prose)) {
    if (inBlock(m.index) || (m.index > 0 && prose[m.index - 1] === '\\')) continue;
    const run = m[0];
    const closeRe = new RegExp(`(?<!\`)${run}(?!\`)`, 'g');
    closeRe.lastIndex = m.index + run.length;
    const close = closeRe.exec(prose);
    if (!close || inBlock(close.index)) continue;
    codeSpans.push({ start: m.index, end: close.index + run.length });
    re.lastIndex = close.index + run.length;
  }
  return [...spans, ...codeSpans].sort((a, b) => a.start - b.start);
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

function findHtmlImages(text: string, from: number, to: number): ImageRef[] {
  const refs: ImageRef[] = [];
  const lower = text.toLowerCase();
  let i = from;
  while (i < to) {
    const lt = text.indexOf('<', i);
    if (lt < 0 || lt >= to) break;
    if (text.startsWith('<!--', lt)) {
      const close = text.indexOf('-->', lt + 4);
      i = close < 0 ? to : close + 3;
      continue;
    }
    const raw = /^<(script|style|template|textarea)[\s>]/i.exec(text.slice(lt, lt + 12));
    if (raw) {
      const close = lower.indexOf(`</${raw[1].toLowerCase()}`, lt + 1);
      i = close < 0 ? to : close + 2;
      continue;
    }
    if (/^<img[\s/>]/i.test(text.slice(lt, lt + 5))) {
      const tag = parseImgTag(text, lt);
      if (tag) {
        refs.push(tag);
        i = tag.end;
        continue;
      }
    }
    i = lt + 1;
  }
  return refs;
}

/** Parses `<img ...>` at `at` (attribute values quoted or bare; `>` inside quotes is fine). */
function parseImgTag(text: string, at: number): ImageRef | undefined {
  let i = at + 4;
  let src: string | undefined;
  let alt: { value: string; start: number; end: number } | undefined;
  const attr = /[\s/]*([^\s"'>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/y;
  while (i < text.length) {
    while (i < text.length && /[\s/]/.test(text[i])) i++;
    if (text[i] === '>') {
      const ref: ImageRef = {
        kind: 'html',
        start: at,
        end: i + 1,
        src: src ?? '',
        alt: alt?.value,
        altStart: alt ? alt.start : at + 4,
        altEnd: alt ? alt.end : at + 4,
        altInsert: !alt,
      };
      return src === undefined ? undefined : ref;
    }
    attr.lastIndex = i;
    const m = attr.exec(text);
    if (!m || m[0].length === 0) return undefined;
    const name = m[1].toLowerCase();
    const value = m[2] ?? m[3] ?? m[4] ?? '';
    if (name === 'src' && src === undefined) src = decodeEntities(value);
    if (name === 'alt' && alt === undefined) {
      const quoted = m[2] !== undefined || m[3] !== undefined;
      const valueEnd = attr.lastIndex - (quoted ? 1 : 0);
      const valueStart = valueEnd - value.length;
      alt = { value: decodeEntities(value), start: valueStart, end: valueEnd };
    }
    i = attr.lastIndex;
  }
  return undefined;
}

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos|#39);/gi, (all, e: string) => {
    const k = e.toLowerCase();
    if (k === 'amp') return '&';
    if (k === 'lt') return '<';
    if (k === 'gt') return '>';
    if (k === 'quot') return '"';
    if (k === 'apos' || k === '#39') return "'";
    const code = k.startsWith('#x') ? parseInt(k.slice(2), 16) : parseInt(k.slice(1), 10);
    return Number.isFinite(code) && code > 0 && code < 0x110000 ? String.fromCodePoint(code) : all;
  });
}

// ---------------------------------------------------------------------------------------------
// Sources and edits
// ---------------------------------------------------------------------------------------------

/**
 * A reference's local file path, relative to the document (or to the workspace root for a
 * leading `/` in Markdown), URL-decoded, without query and fragment; undefined for URLs and
 * data URIs, which LLaVA Lens does not fetch.
 */
export function localImagePath(src: string): { path: string; fromRoot: boolean } | undefined {
  const s = src.trim();
  if (s === '' || /^(data|https?|ftp|mailto|javascript|vscode-[a-z-]+):/i.test(s) || s.startsWith('//')) return undefined;
  let p = s;
  if (/^file:/i.test(p)) {
    try {
      p = decodeURIComponent(new URL(p).pathname);
      if (/^\/[a-z]:\//i.test(p)) p = p.slice(1); // file:///C:/x -> C:/x
      return { path: p, fromRoot: false };
    } catch {
      return undefined;
    }
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(p) && !/^[a-z]:[\\/]/i.test(p)) return undefined; // another scheme (not a drive letter)
  p = p.replace(/[?#].*$/, '');
  try {
    p = decodeURIComponent(p);
  } catch {
    // keep it as written
  }
  return { path: p, fromRoot: p.startsWith('/') && !/^[a-z]:/i.test(p) };
}

/** One text edit: replace [start, end) with `text`. */
export interface OffsetEdit {
  start: number;
  end: number;
  text: string;
}

/** The edit that writes `altText` into `ref` (escaped for Markdown or an HTML attribute). */
export function altTextEdit(ref: ImageRef, altText: string): OffsetEdit {
  if (ref.kind === 'markdown') {
    const escaped = altText.replace(/\\/g, '\\\\').replace(/([[\]])/g, '\\$1');
    return { start: ref.altStart, end: ref.altEnd, text: escaped };
  }
  const escaped = altText.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  if (ref.altInsert) return { start: ref.altStart, end: ref.altEnd, text: ` alt="${escaped}"` };
  return { start: ref.altStart, end: ref.altEnd, text: escaped };
}

/** Makes a model's answer usable as alt text: one line of printable text (no control characters or U+FFFD), no Markdown, no "Alt text:" prefix, at most `max` characters (cut at a word). */
export function cleanAltText(answer: string, max = 150): string {
  let s = answer
    .replace(/```[\s\S]*?(```|$)/g, ' ')
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufffd\u200b-\u200f\u2028\u2029\ufeff]/g, '')
    .replace(/^\s*(alt(ernative)?[ -]?text|description|caption)\s*[:：-]\s*/i, '')
    .replace(/[*_`#>]+/g, '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^["'“”‘’]+|["'“”‘’]+$/g, '')
    .trim();
  if (s.length > max) {
    const cut = s.slice(0, max);
    const space = cut.lastIndexOf(' ');
    s = (space > max * 0.6 ? cut.slice(0, space) : cut).replace(/[\s,;:.-]+$/, '') + '…';
  }
  return s;
}

/**
 * After the document changed, finds the reference that is most likely the one the command was
 * invoked on: same kind and source, nearest to the old start offset.
 */
export function relocateRef(refs: readonly ImageRef[], old: Pick<ImageRef, 'kind' | 'src' | 'start'>): ImageRef | undefined {
  let best: ImageRef | undefined;
  for (const r of refs) {
    if (r.kind !== old.kind || r.src !== old.src) continue;
    if (!best || Math.abs(r.start - old.start) < Math.abs(best.start - old.start)) best = r;
  }
  return best;
}
