/**
 * The alt-text reference finder (client/src/altText/imageRefs.ts): Markdown and HTML image
 * references with exact offsets, what is skipped (code, comments), the edits that write alt
 * text, and cleaning a model's answer into alt text.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { altTextEdit, cleanAltText, findImageRefs, lacksAltText, localImagePath, refAt, relocateRef, type ImageRef } from '../../client/src/altText/imageRefs';

function apply(text: string, ref: ImageRef, alt: string): string {
  const e = altTextEdit(ref, alt);
  return text.slice(0, e.start) + e.text + text.slice(e.end);
}

test('markdown inline images: ranges, src, alt', () => {
  const text = 'Intro ![](img/a.png) and ![A cat](<img/my cat.png> "Title") end.\n![nested [x] y](b.png)';
  const refs = findImageRefs(text, 'markdown');
  assert.equal(refs.length, 3);
  const [a, b, c] = refs;
  assert.equal(text.slice(a.start, a.end), '![](img/a.png)');
  assert.equal(a.src, 'img/a.png');
  assert.equal(a.alt, '');
  assert.equal(lacksAltText(a), true);
  assert.equal(text.slice(b.start, b.end), '![A cat](<img/my cat.png> "Title")');
  assert.equal(b.src, 'img/my cat.png');
  assert.equal(b.alt, 'A cat');
  assert.equal(text.slice(b.altStart, b.altEnd), 'A cat');
  assert.equal(lacksAltText(b), false);
  assert.equal(c.alt, 'nested [x] y');
  assert.equal(c.src, 'b.png');
});

test('markdown reference images and raw <img> tags', () => {
  const text = 'See ![][logo] and ![Logo][logo].\n\n<img src="x.png">\n\n[logo]: ./logo.svg "The logo"\n';
  const refs = findImageRefs(text, 'markdown');
  assert.equal(refs.length, 3);
  assert.equal(refs[0].src, './logo.svg');
  assert.equal(refs[0].alt, '');
  assert.equal(refs[1].alt, 'Logo');
  assert.equal(refs[2].kind, 'html');
  assert.equal(refs[2].src, 'x.png');
  assert.equal(refs[2].alt, undefined);
});

test('images inside code are not references', () => {
  const text = [
    'Inline `![](no.png)` code.',
    '',
    '```md',
    '![](fenced.png)',
    '```',
    '',
    '    ![](indented.png)',
    '',
    '~~~',
    '<img src="tilde.png">',
    '~~~',
    '',
    '``two ![](ticks.png) ``',
    '',
    '\\![](escaped.png)',
    '',
    '![](yes.png)',
  ].join('\n');
  const refs = findImageRefs(text, 'markdown');
  assert.deepEqual(refs.map((r) => r.src), ['yes.png']);
});

test('html: alt present, empty (decorative), missing; comments and scripts skipped', () => {
  const text = `<p><IMG SRC='a.png' ALT="A &amp; B"></p>
<!-- <img src="commented.png"> -->
<script>const s = '<img src="script.png">';</script>
<img
  src=b.png
  alt="">
<img class="x" src="c.png" />
<img data-src="lazy.png">`;
  const refs = findImageRefs(text, 'html');
  assert.deepEqual(refs.map((r) => r.src), ['a.png', 'b.png', 'c.png']);
  assert.equal(refs[0].alt, 'A & B');
  assert.equal(text.slice(refs[0].altStart, refs[0].altEnd), 'A &amp; B');
  assert.equal(lacksAltText(refs[0]), false);
  assert.equal(refs[1].alt, '');
  assert.equal(lacksAltText(refs[1]), false, 'alt="" marks a decorative image');
  assert.equal(refs[2].alt, undefined);
  assert.equal(lacksAltText(refs[2]), true);
  assert.equal(refs[2].altInsert, true);
});

test('alt text edits: markdown brackets escaped; html attribute inserted or replaced, escaped', () => {
  const md = 'x ![](a.png) y';
  const [r] = findImageRefs(md, 'markdown');
  assert.equal(apply(md, r, 'A [red] square\\'), 'x ![A \\[red\\] square\\\\](a.png) y');
  const html = '<img src="a.png"> <img alt="old" src="b.png">';
  const [h1, h2] = findImageRefs(html, 'html');
  assert.equal(apply(html, h1, 'Say "hi" <now> & later'), '<img alt="Say &quot;hi&quot; &lt;now&gt; &amp; later" src="a.png"> <img alt="old" src="b.png">');
  assert.equal(apply(html, h2, 'new'), '<img src="a.png"> <img alt="new" src="b.png">');
  // The edited documents parse back to the same references with the new alt text.
  assert.equal(findImageRefs(apply(md, r, 'A [red] square'), 'markdown')[0].alt, 'A \\[red\\] square');
  assert.equal(findImageRefs(apply(html, h1, 'Say "hi"'), 'html')[0].alt, 'Say "hi"');
});

test('refAt and relocateRef find the reference after the document changed', () => {
  const text = 'a ![](x.png) b ![](y.png)';
  const refs = findImageRefs(text, 'markdown');
  assert.equal(refAt(refs, 3)?.src, 'x.png');
  assert.equal(refAt(refs, refs[1].end)?.src, 'y.png');
  assert.equal(refAt(refs, 0), undefined);
  const changed = 'NEW LINE\n' + text;
  const moved = relocateRef(findImageRefs(changed, 'markdown'), refs[1]);
  assert.equal(moved?.src, 'y.png');
  assert.equal(changed.slice(moved!.start, moved!.end), '![](y.png)');
  assert.equal(relocateRef(findImageRefs('nothing here', 'markdown'), refs[0]), undefined);
});

test('local image paths: relative, root, file URLs, encoded; URLs and data are not local', () => {
  assert.deepEqual(localImagePath('img/a%20b.png?raw=1#x'), { path: 'img/a b.png', fromRoot: false });
  assert.deepEqual(localImagePath('/docs/a.png'), { path: '/docs/a.png', fromRoot: true });
  assert.deepEqual(localImagePath('file:///tmp/a%20b.png'), { path: '/tmp/a b.png', fromRoot: false });
  assert.deepEqual(localImagePath('C:\\img\\a.png'), { path: 'C:\\img\\a.png', fromRoot: false });
  for (const remote of ['https://x/a.png', 'http://x/a.png', 'data:image/png;base64,AAAA', '//cdn/a.png', 'javascript:alert(1)', '']) {
    assert.equal(localImagePath(remote), undefined, remote);
  }
});

test('cleanAltText: one plain line, no prefix or quotes, cut at a word', () => {
  assert.equal(cleanAltText('Alt text: "A **red** square on a\nwhite background."'), 'A red square on a white background.');
  assert.equal(cleanAltText('```\ncode\n```\nA chart'), 'A chart');
  const long = cleanAltText('word '.repeat(100), 50);
  assert.ok(long.length <= 51 && long.endsWith('…'), long);
  assert.equal(cleanAltText('   '), '');
  assert.equal(cleanAltText('\u0002Th\u0014 W\ufffdue\u0000 ok\u200b'), 'Th Wue ok');
});
