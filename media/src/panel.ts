/**
 * The LLaVA Lens panel, inside the webview. Bundled by esbuild into media/dist/panel.js.
 *
 * It keeps a `PanelState` (the same reducer as the host: client/src/panel/model.ts), renders it
 * into the DOM contract the e2e suite relies on (docs/extension.md), persists it with
 * `setState` so the serializer can restore it after a window reload, and sends user actions to
 * the host as `WebviewMessage`s. Every piece of text from the model or a tool goes in through
 * `textContent`, except answers, which go through the Markdown renderer (escapes raw HTML,
 * filters links).
 */
import type { HostMessage, ImageView, PanelState, StepView, TurnView, WebviewMessage } from '../../client/src/panel/messages';
import { EMPTY_STATE } from '../../client/src/panel/messages';
import { applyHostMessage, isStreaming, timingsLine } from '../../client/src/panel/model';
import { StreamingMarkdown } from '../../client/src/panel/render';

interface VsCodeApi {
  postMessage(msg: WebviewMessage): void;
  getState(): unknown;
  setState(state: PanelState): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const post = (msg: WebviewMessage) => vscode.postMessage(msg);

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the panel's HTML`);
  return el as T;
}

const conversation = byId<HTMLElement>('conversation');
const statusLine = byId<HTMLElement>('status-line');
const followup = byId<HTMLTextAreaElement>('followup');
const send = byId<HTMLButtonElement>('send');
const stop = byId<HTMLButtonElement>('stop');
const pendingEl = byId<HTMLElement>('pending');
const lightbox = byId<HTMLDialogElement>('lightbox');
const lightboxImg = byId<HTMLImageElement>('lightbox-img');
const emptyHint = byId<HTMLElement>('empty-hint');

let state: PanelState = EMPTY_STATE;

// ---------------------------------------------------------------------------------------------
// DOM helpers
// ---------------------------------------------------------------------------------------------

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(cls: string, label: string, title: string): HTMLButtonElement {
  const b = el('button', cls, label);
  b.type = 'button';
  b.title = title;
  b.setAttribute('aria-label', title);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Turns
// ---------------------------------------------------------------------------------------------

interface TurnDom {
  root: HTMLElement;
  answer: HTMLElement;
  stable: HTMLElement;
  tail: HTMLElement;
  cards: HTMLElement;
  stages: HTMLElement;
  note: HTMLElement;
  timings: HTMLElement;
  stream: StreamingMarkdown;
  /** Indices of the steps already drawn as cards. */
  steps: Set<number>;
}

const turns = new Map<string, TurnDom>();

function buildTurn(turn: TurnView, number: number): TurnDom {
  const root = el('section', 'turn');
  root.dataset.turnId = turn.id;
  root.setAttribute('aria-label', `Question ${number}`);
  if (turn.newConversation && number > 1) root.classList.add('new-conversation');

  if (turn.images.length) {
    const thumbs = el('div', 'thumbs');
    for (const image of turn.images) {
      const b = el('button', 'thumb-button');
      b.type = 'button';
      b.title = `Enlarge ${image.name}`;
      b.setAttribute('aria-label', `Enlarge ${image.name}`);
      const img = el('img', 'thumb');
      img.alt = image.name;
      if (image.src) img.src = image.src;
      img.dataset.full = image.src ?? '';
      b.append(img);
      thumbs.append(b);
    }
    root.append(thumbs);
  }
  root.append(el('div', 'question', turn.question));
  const cards = el('div', 'tool-cards');
  const stages = el('div', 'stages');
  const answer = el('div', 'answer markdown-body');
  answer.setAttribute('aria-live', 'polite');
  answer.setAttribute('aria-label', 'Answer');
  answer.setAttribute('role', 'region');
  const stable = el('div', 'md-stable');
  const tail = el('div', 'md-tail');
  answer.append(stable, tail);
  const note = el('div', 'note');
  note.setAttribute('role', 'status');
  const actions = el('div', 'answer-actions');
  actions.append(button('copy-answer', 'Copy', 'Copy the answer'), button('insert-answer', 'Insert', 'Insert the answer at the cursor in the editor'));
  if (turn.images.length) actions.append(button('open-image', 'Open Image', `Open ${turn.images[0].name} in the editor`));
  const timings = el('div', 'timings');
  root.append(cards, stages, answer, note, actions, timings);

  const dom: TurnDom = { root, answer, stable, tail, cards, stages, note, timings, stream: new StreamingMarkdown(), steps: new Set() };
  turns.set(turn.id, dom);
  dom.stream.append(turn.answer);
  if (turn.state === 'streaming') {
    const u = dom.stream.flush(false);
    stable.innerHTML = u.append;
    tail.innerHTML = u.tail;
  } else {
    stable.innerHTML = dom.stream.flush(true).append;
  }
  for (const step of turn.steps) addStep(dom, turn, step);
  finishTurnDom(dom, turn);
  return dom;
}

/** Everything that depends on the turn's state: data-state, aria-busy, note, timings, buttons. */
function finishTurnDom(dom: TurnDom, turn: TurnView): void {
  dom.answer.dataset.state = turn.state;
  dom.answer.setAttribute('aria-busy', String(turn.state === 'streaming'));
  dom.note.textContent = turn.note ?? '';
  dom.note.hidden = !turn.note;
  dom.timings.textContent = turn.timings ? timingsLine(turn.timings) : '';
  dom.timings.hidden = !turn.timings;
  for (const b of dom.root.querySelectorAll<HTMLButtonElement>('.copy-answer, .insert-answer')) b.disabled = turn.state === 'streaming' && turn.answer === '';
  if (turn.state === 'streaming' && turn.answer === '' && !dom.stable.firstChild && !dom.tail.firstChild) {
    dom.tail.textContent = '…';
    dom.tail.classList.add('waiting');
  } else {
    dom.tail.classList.remove('waiting');
  }
}

function addStep(dom: TurnDom, turn: TurnView, step: StepView): void {
  if (dom.steps.has(step.index)) return;
  dom.steps.add(step.index);
  const card = el('details', 'tool-card');
  card.dataset.index = String(step.index);
  if (step.error) card.classList.add('failed');
  const summary = el('summary');
  const name = step.tool ?? (step.error ? 'tool call failed' : 'thought');
  summary.textContent = `${name}${step.error ? ' (failed)' : ''} · ${Math.round(step.ms)} ms`;
  summary.setAttribute('aria-label', `Tool step ${step.index + 1}: ${name}${step.error ? ', failed' : ''}, ${Math.round(step.ms)} milliseconds`);
  card.append(summary);
  const field = (cls: string, label: string, value: string | undefined, pre: boolean) => {
    if (value === undefined || value === '') return;
    const row = el('div', `tool-field ${cls}`);
    row.append(el('div', 'tool-label', label), el(pre ? 'pre' : 'div', 'tool-value', value));
    card.append(row);
  };
  field('tool-thought', 'Thought', step.thought, false);
  field('tool-name', 'Tool', step.tool, false);
  field('tool-args', 'Arguments', step.args, true);
  field('tool-result', 'Result', step.observation, true);
  field('tool-error', 'Error', step.error, true);
  if (step.boxes.length) field('tool-boxes', 'Regions', step.boxes.map((b) => `${b.label ?? 'region'} [${b.box.map((n) => n.toFixed(3)).join(', ')}]`).join('\n'), true);
  for (const image of step.images) {
    const fig = el('figure', 'tool-image');
    const img = el('img');
    img.src = `data:${image.mimeType};base64,${image.base64}`;
    img.alt = image.caption ?? `Image from ${name}`;
    fig.append(img);
    if (image.caption) fig.append(el('figcaption', undefined, image.caption));
    card.append(fig);
  }
  dom.cards.append(card);
  if (step.boxes.length) drawBoxes(dom, turn);
}

const BOX_COLORS = 6;

/** One `.image-stage` per image that has regions: the image, with every step's boxes over it in percent (they scale with the image). */
function drawBoxes(dom: TurnDom, turn: TurnView): void {
  dom.stages.replaceChildren();
  const byImage = new Map<number, Array<StepView['boxes'][number]>>();
  for (const step of turn.steps) {
    if (!step.boxes.length) continue;
    const list = byImage.get(step.imageIndex) ?? [];
    list.push(...step.boxes);
    byImage.set(step.imageIndex, list);
  }
  for (const [index, boxes] of [...byImage].sort((a, b) => a[0] - b[0])) {
    const image: ImageView | undefined = turn.images[index] ?? turn.images[0];
    if (!image?.src) continue;
    const stage = el('div', 'image-stage');
    stage.dataset.imageIndex = String(index);
    const img = el('img', 'stage-image');
    img.src = image.src;
    img.alt = `${image.name} with ${boxes.length} marked region(s)`;
    stage.append(img);
    boxes.forEach((b, k) => {
      const [x0, y0, x1, y1] = b.box;
      const box = el('div', `overlay-box box-color-${k % BOX_COLORS}`);
      box.style.left = `${x0 * 100}%`;
      box.style.top = `${y0 * 100}%`;
      box.style.width = `${(x1 - x0) * 100}%`;
      box.style.height = `${(y1 - y0) * 100}%`;
      const label = [b.label, b.score !== undefined ? b.score.toFixed(2) : undefined].filter((s) => s !== undefined).join(' ');
      if (label) {
        box.title = label;
        box.append(el('span', 'overlay-label', label));
      }
      stage.append(box);
    });
    dom.stages.append(stage);
  }
}

// ---------------------------------------------------------------------------------------------
// Streaming render scheduling: adaptive, so a huge answer never blocks input
// ---------------------------------------------------------------------------------------------

const dirty = new Set<string>();
let renderTimer: ReturnType<typeof setTimeout> | undefined;
let lastRenderMs = 0;

function scheduleRender(): void {
  if (renderTimer !== undefined) return;
  const delay = Math.min(1000, Math.max(30, lastRenderMs * 3));
  renderTimer = setTimeout(renderDirty, delay);
}

function renderDirty(): void {
  renderTimer = undefined;
  const t0 = performance.now();
  const stick = nearBottom();
  for (const id of dirty) {
    const dom = turns.get(id);
    if (!dom) continue;
    const u = dom.stream.flush(false);
    if (u.append) dom.stable.insertAdjacentHTML('beforeend', u.append);
    dom.tail.innerHTML = u.tail;
    dom.tail.classList.remove('waiting');
  }
  dirty.clear();
  if (stick) scrollToBottom();
  lastRenderMs = performance.now() - t0;
}

function nearBottom(): boolean {
  const s = document.scrollingElement ?? document.documentElement;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom(): void {
  const s = document.scrollingElement ?? document.documentElement;
  s.scrollTop = s.scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// State -> DOM
// ---------------------------------------------------------------------------------------------

let persistTimer: ReturnType<typeof setTimeout> | undefined;

/** `setState` serialises everything; while an answer streams, do it at most twice a second. */
function persist(now = false): void {
  if (persistTimer !== undefined) clearTimeout(persistTimer);
  persistTimer = undefined;
  if (now) vscode.setState(state);
  else persistTimer = setTimeout(() => vscode.setState(state), 500);
}

function renderAll(): void {
  turns.clear();
  dirty.clear();
  conversation.replaceChildren(...state.turns.map((t, i) => buildTurn(t, i + 1).root));
  renderChrome();
  scrollToBottom();
}

function renderPending(): void {
  pendingEl.replaceChildren();
  state.pending.forEach((image, index) => {
    const chip = el('div', 'pending-image');
    const img = el('img', 'pending-thumb');
    img.alt = image.name;
    if (image.src) img.src = image.src;
    const remove = button('remove-pending', '×', `Remove ${image.name}`);
    remove.dataset.index = String(index);
    chip.append(img, el('span', 'pending-name', image.name), remove);
    pendingEl.append(chip);
  });
  pendingEl.hidden = state.pending.length === 0;
}

function renderChrome(): void {
  const streaming = isStreaming(state);
  stop.disabled = !streaming;
  send.disabled = streaming;
  statusLine.textContent = state.statusLine;
  statusLine.hidden = state.statusLine === '';
  emptyHint.hidden = state.turns.length > 0;
  renderPending();
}

function turnView(id: string): TurnView | undefined {
  return state.turns.find((t) => t.id === id);
}

function onHostMessage(msg: HostMessage): void {
  state = applyHostMessage(state, msg);
  switch (msg.type) {
    case 'reset':
      renderAll();
      persist(true);
      return;
    case 'turnStart': {
      conversation.append(buildTurn(msg.turn, state.turns.length).root);
      renderChrome();
      scrollToBottom();
      break;
    }
    case 'delta': {
      const dom = turns.get(msg.turnId);
      if (dom) {
        dom.stream.append(msg.text);
        dirty.add(msg.turnId);
        scheduleRender();
      }
      break;
    }
    case 'step': {
      const dom = turns.get(msg.turnId);
      const turn = turnView(msg.turnId);
      if (dom && turn) addStep(dom, turn, msg.step);
      break;
    }
    case 'turnEnd': {
      const dom = turns.get(msg.turnId);
      const turn = turnView(msg.turnId);
      if (dom && turn) {
        const stick = nearBottom();
        dirty.delete(msg.turnId);
        if (dom.stream.value !== msg.answer) {
          // Some deltas never reached this webview (it was reloading): draw the final text anew.
          dom.stream = new StreamingMarkdown();
          dom.stream.append(msg.answer);
          dom.stable.replaceChildren();
        }
        const u = dom.stream.flush(true);
        if (u.append) dom.stable.insertAdjacentHTML('beforeend', u.append);
        dom.tail.replaceChildren();
        finishTurnDom(dom, turn);
        if (stick) scrollToBottom();
      }
      renderChrome();
      persist(true);
      return;
    }
    case 'pending':
      renderPending();
      break;
    case 'statusLine':
      renderChrome();
      break;
    case 'focusInput':
      followup.focus();
      return;
  }
  persist();
}

// ---------------------------------------------------------------------------------------------
// User input
// ---------------------------------------------------------------------------------------------

function submit(): void {
  const text = followup.value.trim();
  if (!text || send.disabled) return;
  post({ type: 'send', text });
  followup.value = '';
}

send.addEventListener('click', submit);
stop.addEventListener('click', () => post({ type: 'stop' }));
byId<HTMLButtonElement>('new-conversation').addEventListener('click', () => post({ type: 'newConversation' }));
followup.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    submit();
  }
});

document.addEventListener('click', (e) => {
  const target = e.target as HTMLElement | null;
  if (!target) return;
  const link = target.closest('a');
  if (link) {
    e.preventDefault();
    const href = link.getAttribute('href');
    if (href) post({ type: 'openLink', href });
    return;
  }
  const turnEl = target.closest<HTMLElement>('.turn');
  const turnId = turnEl?.dataset.turnId;
  if (target.closest('.thumb-button')) {
    const img = target.closest('.thumb-button')?.querySelector<HTMLImageElement>('img.thumb');
    if (img?.src) {
      lightboxImg.src = img.src;
      lightboxImg.alt = img.alt;
      lightbox.showModal();
    }
  } else if (target.closest('.copy-answer') && turnId) {
    post({ type: 'copy', turnId });
  } else if (target.closest('.insert-answer') && turnId) {
    post({ type: 'insert', turnId });
  } else if (target.closest('.open-image') && turnId) {
    const image = turnView(turnId)?.images[0];
    if (image) post({ type: 'openImage', path: image.path });
  } else if (target.closest('.remove-pending')) {
    const index = Number((target.closest('.remove-pending') as HTMLElement).dataset.index);
    post({ type: 'removePending', index });
  }
});

byId<HTMLButtonElement>('lightbox-close').addEventListener('click', () => lightbox.close());
lightbox.addEventListener('click', (e) => {
  if (e.target === lightbox) lightbox.close();
});

/** Pasted or dropped image files go to the host as base64 (it saves them and shows them as pending). */
function attachFiles(files: Iterable<File>): boolean {
  let any = false;
  for (const file of files) {
    if (!file.type.startsWith('image/')) continue;
    any = true;
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      const comma = url.indexOf(',');
      if (comma > 0) post({ type: 'attach', name: file.name || 'pasted image', mimeType: file.type, base64: url.slice(comma + 1) });
    };
    reader.readAsDataURL(file);
  }
  return any;
}

document.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.items ?? [])].filter((i) => i.kind === 'file').map((i) => i.getAsFile()).filter((f): f is File => f !== null);
  if (attachFiles(files)) e.preventDefault();
});
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  const dt = e.dataTransfer;
  if (!dt) return;
  if (attachFiles([...dt.files])) return;
  const uris = (dt.getData('text/uri-list') || dt.getData('text/plain'))
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s && !s.startsWith('#'));
  if (uris.length) post({ type: 'attachUris', uris });
});

window.addEventListener('message', (e: MessageEvent<HostMessage>) => {
  if (e.data && typeof e.data === 'object' && typeof e.data.type === 'string') onHostMessage(e.data);
});

// Show what was persisted at once (the host answers `ready` with the authoritative state).
const saved = vscode.getState() as PanelState | undefined;
if (saved && saved.version === 1 && Array.isArray(saved.turns)) {
  state = saved;
  renderAll();
} else {
  renderChrome();
}
post({ type: 'ready' });
