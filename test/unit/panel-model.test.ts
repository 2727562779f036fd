/**
 * The panel's shared state and messages (client/src/panel/{model,messages,html}.ts): the reducer
 * both sides apply, tool steps as cards and boxes, guards on webview messages and persisted
 * state, and the document's content security policy.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AgentStepParams } from '../../common/protocol';
import { contentSecurityPolicy, makeNonce, panelHtml } from '../../client/src/panel/html';
import { EMPTY_STATE, isPanelState, isWebviewMessage, type PanelState, type TurnView } from '../../client/src/panel/messages';
import { applyHostMessage, isStreaming, restoredState, stepView, timingsLine } from '../../client/src/panel/model';

function turn(id: string, extra: Partial<TurnView> = {}): TurnView {
  return { id, newConversation: true, images: [{ path: '/w/a.png', name: 'a.png' }], question: 'What?', answer: '', state: 'streaming', steps: [], ...extra };
}

test('the reducer builds a turn from start, deltas, steps and end', () => {
  let s: PanelState = EMPTY_STATE;
  s = applyHostMessage(s, { type: 'turnStart', turn: turn('t1') });
  assert.equal(isStreaming(s), true);
  s = applyHostMessage(s, { type: 'delta', turnId: 't1', text: 'Hello' });
  s = applyHostMessage(s, { type: 'delta', turnId: 't1', text: ' world' });
  s = applyHostMessage(s, { type: 'step', turnId: 't1', step: stepView({ streamId: 's', index: 1, tool: 'ocr', ms: 3 }) });
  s = applyHostMessage(s, { type: 'step', turnId: 't1', step: stepView({ streamId: 's', index: 0, tool: 'zoom', ms: 5 }) });
  s = applyHostMessage(s, { type: 'step', turnId: 't1', step: stepView({ streamId: 's', index: 0, tool: 'zoom', ms: 5 }) });
  assert.equal(s.turns[0].answer, 'Hello world');
  assert.deepEqual(s.turns[0].steps.map((x) => x.tool), ['zoom', 'ocr']);
  const timings = { firstTokenMs: 420, tokensPerSec: 31.5, newTokens: 12, totalMs: 800, device: 'cpu', model: 'tiny' };
  s = applyHostMessage(s, { type: 'turnEnd', turnId: 't1', state: 'done', answer: 'Hello world!', timings });
  assert.equal(s.turns[0].state, 'done');
  assert.equal(s.turns[0].answer, 'Hello world!');
  assert.equal(isStreaming(s), false);
  assert.equal(timingsLine(timings), 'first token 0.42 s · 31.5 tokens/s · 12 tokens in 0.8 s · cpu');
  // Unknown turn ids change nothing.
  assert.equal(applyHostMessage(s, { type: 'delta', turnId: 'nope', text: 'x' }), s);
});

test('restoring after a reload ends streaming turns with a note', () => {
  const s: PanelState = { ...EMPTY_STATE, statusLine: 'Loading 45%', turns: [turn('a', { state: 'done', answer: 'x' }), turn('b', { answer: 'partial' })] };
  const r = restoredState(s);
  assert.equal(r.turns[0].state, 'done');
  assert.equal(r.turns[1].state, 'cancelled');
  assert.match(r.turns[1].note ?? '', /reload/);
  assert.equal(r.statusLine, '');
  assert.equal(isPanelState(r), true);
});

test('agent steps: args pretty-printed, boxes clamped and ordered, bad artefacts dropped, image index from args', () => {
  const p: AgentStepParams = {
    streamId: 's',
    index: 2,
    thought: 'look closer',
    tool: 'detect',
    args: { image: 1, query: 'cat' },
    observation: 'found 2',
    ms: 12.5,
    artefacts: [
      { kind: 'boxes', boxes: [{ box: [0.5, 0.6, 0.1, 0.2], label: 'cat', score: 0.93 }, { box: [-1, 0, 2, 0.5] }, { box: [0, 0, 1] as unknown as [number, number, number, number] }] },
      { kind: 'image', mimeType: 'image/png', base64: 'iVBORw0KGgo=', caption: 'crop' },
      { kind: 'image', mimeType: 'text/html', base64: 'PHNjcmlwdD4=' },
      { kind: 'image', mimeType: 'image/png', base64: '"><script>' },
    ],
  };
  const v = stepView(p);
  assert.equal(v.imageIndex, 1);
  assert.equal(v.args, JSON.stringify({ image: 1, query: 'cat' }, null, 2));
  assert.deepEqual(v.boxes, [{ box: [0.1, 0.2, 0.5, 0.6], label: 'cat', score: 0.93 }, { box: [0, 0, 1, 0.5] }]);
  assert.equal(v.images.length, 1);
  assert.equal(v.images[0].caption, 'crop');
  assert.equal(stepView({ streamId: 's', index: 0, ms: 1, args: 'raw' }).imageIndex, 0);
  assert.equal(stepView({ streamId: 's', index: 0, ms: 1, error: 'timeout' }).error, 'timeout');
});

test('webview messages are checked before the host acts on them', () => {
  const good = [
    { type: 'ready' },
    { type: 'send', text: 'why?' },
    { type: 'stop' },
    { type: 'copy', turnId: 't1' },
    { type: 'insert', turnId: 't1' },
    { type: 'openImage', path: '/w/a.png' },
    { type: 'openLink', href: 'https://x' },
    { type: 'attach', name: 'p.png', mimeType: 'image/png', base64: 'AAAA' },
    { type: 'attachUris', uris: ['file:///w/a.png'] },
    { type: 'removePending', index: 0 },
    { type: 'newConversation' },
  ];
  for (const m of good) assert.equal(isWebviewMessage(m), true, JSON.stringify(m));
  const bad = [null, 'ready', {}, { type: 'eval', code: 'x' }, { type: 'send' }, { type: 'send', text: 1 }, { type: 'attachUris', uris: [1] }, { type: 'removePending', index: 0.5 }, { type: 'copy' }];
  for (const m of bad) assert.equal(isWebviewMessage(m), false, JSON.stringify(m));
});

test('persisted state is validated', () => {
  assert.equal(isPanelState(EMPTY_STATE), true);
  assert.equal(isPanelState({ ...EMPTY_STATE, turns: [turn('x')] }), true);
  assert.equal(isPanelState({ version: 2, turns: [], pending: [] }), false);
  assert.equal(isPanelState({ ...EMPTY_STATE, turns: [{ ...turn('x'), state: 'weird' }] }), false);
  assert.equal(isPanelState({ ...EMPTY_STATE, turns: [{ ...turn('x'), images: [{ path: 1 }] }] }), false);
  assert.equal(isPanelState(undefined), false);
});

test('the panel document: nonce-based CSP, no inline styles or eval, the DOM contract ids', () => {
  const nonce = makeNonce();
  assert.match(nonce, /^[A-Za-z0-9]{16,}$/);
  assert.notEqual(nonce, makeNonce());
  const csp = contentSecurityPolicy({ cspSource: 'https://res.vscode-cdn.net', nonce });
  assert.match(csp, /^default-src 'none'/);
  assert.match(csp, new RegExp(`script-src 'nonce-${nonce}'`));
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.match(csp, /img-src https:\/\/res.vscode-cdn.net data:/);
  const html = panelHtml({ cspSource: 'https://res.vscode-cdn.net', nonce, scriptUri: 'https://r/panel.js', styleUri: 'https://r/panel.css' });
  assert.match(html, new RegExp(`<script nonce="${nonce}" src="https://r/panel.js"></script>`));
  for (const id of ['conversation', 'stop', 'followup', 'send', 'status-line', 'lightbox', 'new-conversation']) assert.match(html, new RegExp(`id="${id}"`), id);
  assert.match(html, /<textarea id="followup"/);
  assert.doesNotMatch(html, /style="/);
  assert.equal((html.match(/<script/g) ?? []).length, 1);
});
