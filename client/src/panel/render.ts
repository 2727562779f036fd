/**
 * Answers as HTML: Markdown (markdown-it, raw HTML disabled) with highlighted code blocks
 * (highlight.js core and a few languages). Pure string functions, run in the webview and in
 * Node tests.
 *
 * Safety (a model's answer is untrusted text):
 * - `html: false`: any tag in the answer is escaped and shows as text, never as markup;
 * - links: only http, https, mailto and relative targets become links (`isSafeHref`); anything
 *   else (javascript:, data:, vbscript:, file:, protocol-relative //host) stays plain text;
 * - Markdown images are not loaded: they render as "[image: alt]" text;
 * - no `style` attributes (table alignment becomes a class), so the panel's CSP needs no
 *   'unsafe-inline'.
 * The only tags produced are markdown-it's and highlight.js's `<span class="hljs-…">`.
 *
 * Speed: `StreamingMarkdown` renders a growing answer incrementally: finished blocks are
 * rendered once and appended; only the unfinished tail is rendered again on each flush, and
 * without highlighting once it is long.
 */
import MarkdownIt = require('markdown-it');
import { isSafeHref } from './links';

export { isSafeHref };

type Md = MarkdownIt.MarkdownIt;
type RenderRule = MarkdownIt.RendererRule;
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import c from 'highlight.js/lib/languages/c';
import cpp from 'highlight.js/lib/languages/cpp';
import csharp from 'highlight.js/lib/languages/csharp';
import css from 'highlight.js/lib/languages/css';
import diff from 'highlight.js/lib/languages/diff';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import markdown from 'highlight.js/lib/languages/markdown';
import plaintext from 'highlight.js/lib/languages/plaintext';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import shell from 'highlight.js/lib/languages/shell';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';

const LANGUAGES = { bash, c, cpp, csharp, css, diff, go, java, javascript, json, markdown, plaintext, python, rust, shell, sql, typescript, xml, yaml };
for (const [name, lang] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, lang);

/** Code blocks longer than this are shown without highlighting (highlight.js is the slow part). */
export const HIGHLIGHT_LIMIT = 100_000;
/** While streaming, a tail longer than this is rendered without highlighting until it is finished. */
export const TAIL_HIGHLIGHT_LIMIT = 16_000;

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function createRenderer(highlight: boolean): Md {
  const md: Md = new MarkdownIt({
    html: false,
    linkify: true,
    typographer: false,
    breaks: false,
    highlight: highlight
      ? (code: string, lang: string): string => {
          const name = lang.trim().toLowerCase();
          if (!name || code.length > HIGHLIGHT_LIMIT || !hljs.getLanguage(name)) return '';
          try {
            return hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
          } catch {
            return '';
          }
        }
      : null,
  });
  md.validateLink = isSafeHref;
  const rules = md.renderer.rules;
  const image: RenderRule = (tokens, idx, options, env, self) => {
    const alt = self.renderInlineAsText(tokens[idx].children ?? [], options, env);
    return `<span class="md-image">${escapeHtml(`[image${alt ? `: ${alt}` : ''}]`)}</span>`;
  };
  rules.image = image;
  const renderToken: RenderRule = (tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options);
  const defaultLinkOpen = rules.link_open ?? renderToken;
  const linkOpen: RenderRule = (tokens, idx, options, env, self) => {
    tokens[idx].attrSet('rel', 'noopener noreferrer');
    return defaultLinkOpen(tokens, idx, options, env, self);
  };
  rules.link_open = linkOpen;
  // Table alignment: a class instead of an inline style (the CSP has no 'unsafe-inline').
  // Fence languages: only identifier characters reach the class attribute.
  md.core.ruler.push('lens_sanitize_attrs', (state: MarkdownIt.StateCore) => {
    for (const t of state.tokens) {
      // A fence's language becomes a class name: keep it to a plain identifier.
      if (t.type === 'fence') t.info = /^[\w+#.-]*/.exec(t.info.trim())?.[0] ?? '';
      if (t.type !== 'th_open' && t.type !== 'td_open') continue;
      const style = t.attrGet('style');
      if (style === null) continue;
      t.attrs = (t.attrs ?? []).filter((a) => a[0] !== 'style');
      const m = /text-align:\s*(left|right|center)/.exec(String(style));
      if (m) t.attrJoin('class', `align-${m[1]}`);
    }
  });
  return md;
}

let highlighted: Md | undefined;
let plain: Md | undefined;

/** Renders a whole answer. `highlight: false` skips code highlighting (for long unfinished tails). */
export function renderMarkdown(text: string, opts: { highlight?: boolean } = {}): string {
  const md = opts.highlight === false ? (plain ??= createRenderer(false)) : (highlighted ??= createRenderer(true));
  return md.render(text);
}

/** What one `StreamingMarkdown.flush` produced. */
export interface RenderUpdate {
  /** HTML of blocks that became final: append it after the earlier ones. */
  append: string;
  /** HTML of the unfinished tail: replaces the previous tail. */
  tail: string;
}

/** Longest piece rendered at once (characters): bounds the work per flush, so long answers render in linear time. */
export const MAX_BLOCK = 8_000;

const LIST_OR_INDENT = /^(\s|[-*+][ \t]|\d{1,9}[.)][ \t]|>)/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/**
 * A growing Markdown answer rendered in pieces. The text is cut into blocks at blank lines that
 * are outside code fences and followed by a line that starts a new top-level block (not an
 * indented continuation, list item or quote, so lists and quotes stay whole). A block is rendered
 * once, when the next one has begun; `final` renders the rest.
 *
 * No piece grows past `MAX_BLOCK`: a longer paragraph or list is cut at a line break (or, for
 * one huge line, at a space), and a longer code block is closed and reopened (the continuation's
 * `<pre>` gets class `continued`). That changes the look of degenerate answers slightly and keeps
 * a 1 MB answer responsive while it streams and when it is restored.
 */
export class StreamingMarkdown {
  private text = '';
  /** Characters already rendered into final blocks. */
  private stableEnd = 0;
  /** Where line scanning resumes (a line start, or where a long line was cut). */
  private scanPos = 0;
  private fence: { char: string; len: number; opener: string } | undefined;
  /** After a code block was cut: its opening line, which the next piece starts with. */
  private reopen: string | undefined;
  private afterBlank = false;
  /** Characters given to the Markdown renderer by the last `flush` (tests check the work stays bounded). */
  renderedChars = 0;

  get length(): number {
    return this.text.length;
  }

  get value(): string {
    return this.text;
  }

  append(s: string): void {
    this.text += s;
  }

  flush(final = false): RenderUpdate {
    this.renderedChars = 0;
    const pieces = this.scan(final);
    if (final) {
      if (this.text.length > this.stableEnd || this.reopen) pieces.push(this.cut(this.text.length, false));
      return { append: pieces.join(''), tail: '' };
    }
    const tailText = (this.reopen ? `${this.reopen}\n` : '') + this.text.slice(this.stableEnd);
    if (this.text.length > this.stableEnd) this.renderedChars += tailText.length;
    const tail = this.text.length > this.stableEnd ? continued(renderMarkdown(tailText, { highlight: tailText.length <= TAIL_HIGHLIGHT_LIMIT }), this.reopen !== undefined) : '';
    return { append: pieces.join(''), tail };
  }

  /** Renders [stableEnd, at) as a final piece; `closeFence` closes the open code block and reopens it in the next piece. */
  private cut(at: number, closeFence: boolean): string {
    const wasReopened = this.reopen !== undefined;
    let piece = (this.reopen ? `${this.reopen}\n` : '') + this.text.slice(this.stableEnd, at);
    if (closeFence && this.fence) {
      if (!piece.endsWith('\n')) piece += '\n';
      piece += `${this.fence.char.repeat(this.fence.len)}\n`;
      this.reopen = this.fence.opener;
    } else {
      this.reopen = undefined;
    }
    this.stableEnd = at;
    this.renderedChars += piece.length;
    return continued(renderMarkdown(piece), wasReopened);
  }

  /** Scans the lines added since the last call and renders the pieces that are now final. */
  private scan(final: boolean): string[] {
    const pieces: string[] = [];
    for (;;) {
      let nl = this.text.indexOf('\n', this.scanPos);
      if (nl < 0) {
        const partial = this.text.length - Math.max(this.scanPos, this.stableEnd);
        if (partial > MAX_BLOCK) {
          // One huge line: cut it at a space near its end (else anywhere) and go on from there.
          const from = this.text.length - 1024;
          const space = this.text.lastIndexOf(' ', this.text.length - 1);
          const at = space > from ? space + 1 : this.text.length;
          pieces.push(this.cut(at, this.fence !== undefined));
          this.scanPos = at;
          this.afterBlank = false;
          continue;
        }
        if (!final || this.scanPos >= this.text.length) break;
        nl = this.text.length; // at the end, the last line counts as complete
      }
      const line = this.text.slice(this.scanPos, nl);
      const lineStart = this.scanPos;
      this.scanPos = nl + 1;
      const fenceMatch = FENCE.exec(line);
      if (this.fence) {
        if (fenceMatch && fenceMatch[1][0] === this.fence.char && fenceMatch[1].length >= this.fence.len && line.trim() === fenceMatch[1]) {
          this.fence = undefined;
        } else if (lineStart - this.stableEnd > MAX_BLOCK) {
          pieces.push(this.cut(lineStart, true));
        }
        this.afterBlank = false;
        continue;
      }
      const blank = line.trim() === '';
      const natural = !blank && this.afterBlank && !LIST_OR_INDENT.test(line);
      const forced = lineStart - this.stableEnd > MAX_BLOCK;
      if ((natural || forced) && lineStart > this.stableEnd) pieces.push(this.cut(lineStart, false));
      if (fenceMatch) this.fence = { char: fenceMatch[1][0], len: fenceMatch[1].length, opener: line.trim() };
      this.afterBlank = blank;
    }
    return pieces;
  }
}

/** Marks the first `<pre>` of a piece that continues a cut code block. */
function continued(html: string, isContinuation: boolean): string {
  return isContinuation ? html.replace('<pre>', '<pre class="continued">') : html;
}
