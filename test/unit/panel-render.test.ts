/**
 * The panel's answer renderer (client/src/panel/render.ts), in Node: hostile answers render
 * inert (no tag or attribute outside an allow-list, no unsafe link), code is highlighted and
 * escaped, and a 1 MB answer streams with bounded work per flush.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSafeHref } from '../../client/src/panel/links';
import { MAX_BLOCK, renderMarkdown, StreamingMarkdown } from '../../client/src/panel/render';

const ALLOWED_TAGS = new Set([
  'p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote', 'pre', 'code', 'em', 'strong', 's', 'a',
  'table', 'thead', 'tbody', 'tr', 'th', 'td', 'hr', 'br', 'span',
]);
const ALLOWED_ATTRS = new Set(['href', 'class', 'rel', 'start', 'title']);

interface Tag {
  name: string;
  attrs: Array<[string, string]>;
}

/** Every tag in `html` (a small tokenizer: enough for markdown-it's well-formed output). */
function tags(html: string): Tag[] {
  const out: Tag[] = [];
  const re = /<\/?([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>/g;
  for (let m = re.exec(html); m; m = re.exec(html)) {
    const attrs: Array<[string, string]> = [];
    const attrRe = /([^\s=/]+)(?:="([^"]*)")?/g;
    for (let a = attrRe.exec(m[2]); a; a = attrRe.exec(m[2])) attrs.push([a[1].toLowerCase(), a[2] ?? '']);
    out.push({ name: m[1].toLowerCase(), attrs });
  }
  return out;
}

function decodeAttr(v: string): string {
  return v.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}

function assertInert(html: string, label: string): void {
  for (const t of tags(html)) {
    assert.ok(ALLOWED_TAGS.has(t.name), `${label}: tag <${t.name}> in ${html.slice(0, 300)}`);
    for (const [name, value] of t.attrs) {
      assert.ok(ALLOWED_ATTRS.has(name), `${label}: attribute ${name} on <${t.name}>`);
      if (name === 'href') assert.ok(isSafeHref(decodeAttr(value)), `${label}: unsafe href ${value}`);
      if (name === 'class') assert.match(value, /^[\w -]*$/, `${label}: odd class ${value}`);
    }
  }
  assert.doesNotMatch(html, /<script/i, label);
  assert.doesNotMatch(html, /<[^>]*\son\w+=/i, `${label}: event handler attribute`);
  assert.doesNotMatch(html, /href="\s*(javascript|data|vbscript|file):/i, label);
}

const HOSTILE: Array<[string, string]> = [
  ['script tag', 'Hello <script>alert(1)</script> world'],
  ['script block', '<script>\nalert(document.cookie)\n</script>'],
  ['img onerror', '<img src=x onerror=alert(1)>'],
  ['svg onload', '<svg onload=alert(1)><circle/></svg>'],
  ['iframe', '<iframe src="javascript:alert(1)"></iframe>'],
  ['style', '<style>body{display:none}</style>'],
  ['html link', '<a href="javascript:alert(1)">click</a>'],
  ['md javascript link', '[click](javascript:alert(1))'],
  ['md mixed case', '[click](JaVaScRiPt:alert(1))'],
  ['md tab in scheme', '[click](java\tscript:alert(1))'],
  ['md entity colon', '[click](javascript&colon;alert(1))'],
  ['md numeric entity', '[click](javascript&#58;alert(1))'],
  ['md percent colon', '[click](javascript%3aalert(1))'],
  ['md data', '[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)'],
  ['md vbscript', '[click](vbscript:msgbox(1))'],
  ['md file', '[click](file:///etc/passwd)'],
  ['md protocol-relative', '[click](//evil.example/x)'],
  ['md reference link', '[click][x]\n\n[x]: javascript:alert(1)'],
  ['autolink', '<javascript:alert(1)>'],
  ['linkify bare', 'see javascript:alert(1) and www.example.com'],
  ['md image', '![tracker](https://evil.example/pixel.png "t")'],
  ['md image onerror', '![x" onerror="alert(1)](x.png)'],
  ['fence breakout', '```js\n</code></pre><script>alert(1)</script>\n```'],
  ['fence info', '```js" onmouseover="alert(1)\nx\n```'],
  ['table', '| a | <b onclick=x>b</b> |\n|:--|--:|\n| <img src=x onerror=y> | 2 |'],
  ['entities', '&lt;script&gt;alert(1)&lt;/script&gt; &#60;img src=x onerror=alert(1)&#62;'],
  ['nested', '> - [a](javascript:1)\n>   <script>x</script>'],
];

for (const [label, text] of HOSTILE) {
  test(`hostile answer renders inert: ${label}`, () => {
    assertInert(renderMarkdown(text), label);
    const s = new StreamingMarkdown();
    for (const ch of text.match(/[\s\S]{1,3}/g) ?? []) {
      s.append(ch);
      const u = s.flush(false);
      assertInert(u.append + u.tail, `${label} (streaming)`);
    }
    assertInert(s.flush(true).append, `${label} (final)`);
  });
}

test('raw HTML shows as text, not markup', () => {
  const html = renderMarkdown('<img src=x onerror=alert(1)>');
  assert.match(html, /&lt;img src=x onerror=alert\(1\)&gt;/);
});

test('safe links stay links; images become text', () => {
  const html = renderMarkdown('[a](https://example.com/x?y=1) [b](mailto:me@example.com) [c](docs/readme.md) ![cat](cat.png)');
  assert.match(html, /<a href="https:\/\/example.com\/x\?y=1" rel="noopener noreferrer">a<\/a>/);
  assert.match(html, /<a href="mailto:me@example.com"/);
  assert.match(html, /<a href="docs\/readme.md"/);
  assert.match(html, /<span class="md-image">\[image: cat\]<\/span>/);
  assert.doesNotMatch(html, /<img/);
});

test('isSafeHref', () => {
  for (const ok of ['https://a.b', 'http://a.b/c', 'mailto:x@y.z', 'docs/a.md', './a.png', '../a', '#frag', '?q=1', 'a/b:c']) assert.equal(isSafeHref(ok), true, ok);
  for (const bad of ['javascript:alert(1)', ' JAVASCRIPT:x', 'java\nscript:x', 'data:text/html,x', 'vbscript:x', 'file:///etc', '//evil.com', '\\\\evil\\x', 'javascript&colon;x', 'javascript%3ax', 'command:workbench.action.quit', 'vscode:extension/x']) {
    assert.equal(isSafeHref(bad), false, bad);
  }
});

test('code blocks are highlighted and escaped; unknown languages are escaped plainly', () => {
  const html = renderMarkdown('```typescript\nconst a: string = "<b>";\n```\n\n```nosuchlang\n<i>x</i>\n```');
  assert.match(html, /<span class="hljs-keyword">const<\/span>/);
  assert.match(html, /&quot;&lt;b&gt;&quot;/);
  assert.match(html, /&lt;i&gt;x&lt;\/i&gt;/);
  assertInert(html, 'code');
});

test('table alignment becomes a class (no inline styles under the CSP)', () => {
  const html = renderMarkdown('| a | b | c |\n|:-|:-:|-:|\n| 1 | 2 | 3 |');
  assert.doesNotMatch(html, /style=/);
  assert.match(html, /class="align-left"/);
  assert.match(html, /class="align-center"/);
  assert.match(html, /class="align-right"/);
});

test('streamed pieces render like the whole answer for ordinary Markdown', () => {
  const text = [
    '# Title',
    '',
    'A paragraph with **bold** and `code`.',
    '',
    '- one',
    '- two',
    '',
    '```python',
    'print("hi")',
    '',
    'x = 1',
    '```',
    '',
    '> quoted',
    '',
    'Last paragraph.',
    '',
  ].join('\n');
  const s = new StreamingMarkdown();
  let html = '';
  let tail = '';
  for (const ch of text.match(/[\s\S]{1,5}/g) ?? []) {
    s.append(ch);
    const u = s.flush(false);
    html += u.append;
    tail = u.tail;
  }
  assert.ok(tail.length > 0);
  html += s.flush(true).append;
  assert.equal(html, renderMarkdown(text));
});

/** 1 MB answers of a few shapes, streamed in small deltas. */
const MB = 1 << 20;
const SHAPES: Record<string, () => string> = {
  prose: () => {
    let s = '';
    for (let i = 0; s.length < MB; i++) s += `## Part ${i}\n\nText with **bold**, \`code\`, [a link](https://example.com/${i}) and <b>raw</b> html.\n\n- a\n- b\n\n\`\`\`js\nconst x = "<script>";\n\`\`\`\n\n`;
    return s;
  },
  'one code block': () => '```python\n' + 'x = 1  # <img onerror=alert(1)>\n'.repeat(MB / 32),
  'one huge line of brackets': () => '['.repeat(MB),
  'emphasis soup': () => '*a _b '.repeat(MB / 6),
};

for (const [shape, make] of Object.entries(SHAPES)) {
  test(`a 1 MB answer streams with bounded work per flush: ${shape}`, () => {
    const text = make();
    const s = new StreamingMarkdown();
    const deltaChars = 256;
    const flushEvery = 32 * 1024;
    let sinceFlush = 0;
    let total = 0;
    let slowest = 0;
    const t0 = Date.now();
    for (let i = 0; i < text.length; i += deltaChars) {
      s.append(text.slice(i, i + deltaChars));
      sinceFlush += deltaChars;
      if (sinceFlush >= flushEvery) {
        const t = Date.now();
        const u = s.flush(false);
        slowest = Math.max(slowest, Date.now() - t);
        // Work is the new text plus at most one unfinished piece (and a reopened fence line): never the whole answer again.
        assert.ok(s.renderedChars <= sinceFlush + 2 * MAX_BLOCK + 64, `${shape}: rendered ${s.renderedChars} chars for ${sinceFlush} new`);
        total += u.append.length;
        sinceFlush = 0;
      }
    }
    const last = s.flush(true);
    total += last.append.length;
    const elapsed = Date.now() - t0;
    assert.ok(total > text.length / 2, `${shape}: output too short`);
    assert.ok(slowest < 2000, `${shape}: one flush took ${slowest} ms`);
    assert.ok(elapsed < 60_000, `${shape}: streaming took ${elapsed} ms`);
  });
}

test('a restored 1 MB answer renders in pieces too (final flush of the whole text)', () => {
  const s = new StreamingMarkdown();
  s.append('*a _b '.repeat(MB / 6));
  const t0 = Date.now();
  const html = s.flush(true).append;
  assert.ok(html.length > MB / 2);
  assert.ok(Date.now() - t0 < 30_000);
});

test('a cut code block is reopened with its language and marked as continued', () => {
  const s = new StreamingMarkdown();
  s.append('```js\n' + 'let a = 1;\n'.repeat(3 * MAX_BLOCK / 11) + '```\n');
  const html = s.flush(true).append;
  assert.ok((html.match(/<pre class="continued"><code class="language-js">/g) ?? []).length >= 2, html.slice(0, 200));
  assert.doesNotMatch(html, /```/);
});
