/**
 * Functions that run inside the webview's page or the workbench's own page (passed to
 * playwright's `evaluate`, which sends their source text). They may use nothing from this module's scope. The project compiles without
 * the DOM library, so the little of the DOM they touch is declared here, for this module only.
 */

interface El {
  getAttribute(name: string): string | null;
  querySelector(sel: string): El | null;
  textContent: string | null;
  addEventListener(type: string, fn: () => void, opts?: { once: boolean }): void;
}
interface Img extends El {
  complete: boolean;
  naturalWidth: number;
  src: string;
}
interface Observer {
  observe(target: unknown, opts: Record<string, unknown>): void;
  disconnect(): void;
}
declare const document: { body: unknown; querySelectorAll(sel: string): ArrayLike<El> };
declare const MutationObserver: new (cb: (records: MutationRec[]) => void) => Observer;
interface DomNode {
  parentElement: (El & { closest(sel: string): El | null }) | null;
  closest?(sel: string): El | null;
}
interface MutationRec {
  target: DomNode;
}

export interface AnswerWatch {
  state: string | null;
  text: string;
  /**
   * Seen with data-state=streaming and at least two different non-empty texts before it ended: a
   * placeholder ("…") alone, or the whole answer in one update, is not streaming.
   */
  streamed: boolean;
  timedOut: boolean;
}

/**
 * Resolves when the last turn's `.answer` reaches done, cancelled or error (or after `ms`),
 * watching the whole document so that re-rendered elements are followed.
 */
export function watchLastAnswer(_el: unknown, ms: number): Promise<AnswerWatch> {
  return new Promise((resolve) => {
    const streamingTexts = new Set<string>();
    const current = (): El | null => {
      const turns = document.querySelectorAll('#conversation > .turn');
      const last = turns.length > 0 ? turns[turns.length - 1] : undefined;
      return last ? last.querySelector('.answer') : null;
    };
    const finish = (timedOut: boolean) => {
      obs.disconnect();
      clearTimeout(timer);
      const a = current();
      resolve({ state: a ? a.getAttribute('data-state') : null, text: (a && a.textContent) || '', streamed: streamingTexts.size >= 2, timedOut });
    };
    const check = () => {
      const a = current();
      const state = a ? a.getAttribute('data-state') : null;
      const text = ((a && a.textContent) || '').trim();
      if (state === 'streaming' && text.length > 0 && streamingTexts.size < 2) streamingTexts.add(text);
      if (state === 'done' || state === 'cancelled' || state === 'error') finish(false);
    };
    const obs = new MutationObserver(check);
    const timer = setTimeout(() => finish(true), ms);
    obs.observe(document.body, { attributes: true, attributeFilter: ['data-state'], childList: true, subtree: true, characterData: true });
    check();
  });
}

/** Resolves once an `<img>` has decoded pixels; rejects on its error event or after `ms`. */
export function imageLoaded(el: unknown, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const i = el as Img;
    if (i.complete && i.naturalWidth > 0) return resolve();
    if (i.complete && i.src) return reject(new Error(`image ${i.src.slice(0, 300)} failed to load`));
    const timer = setTimeout(() => reject(new Error(`image ${i.src.slice(0, 300)} did not load within ${ms} ms`)), ms);
    i.addEventListener('load', () => (clearTimeout(timer), resolve()), { once: true });
    i.addEventListener('error', () => (clearTimeout(timer), reject(new Error(`image ${i.src.slice(0, 300)} failed to load`))), { once: true });
  });
}

/** True for a closed `<details>`. */
export function isClosedDetails(el: unknown): boolean {
  const d = el as { tagName?: string; open?: boolean };
  return d.tagName === 'DETAILS' && d.open === false;
}

/**
 * Clicks `#stop` the moment the last turn's answer is streaming with at least `minChars`
 * characters, or `graceMs` after it started streaming if no text has shown by then (the panel may
 * hold back its first render, and the tiny test model writes a whole answer in a second or two).
 * A DOM click: a click through the input pipeline can land after the answer when the page is busy
 * rendering it. Resolves with the state and text length it saw when it clicked (or gave up).
 */
export function stopWhenStreaming(
  _el: unknown,
  arg: { minChars: number; graceMs: number; ms: number },
): Promise<{ state: string | null; chars: number; clicked: boolean }> {
  return new Promise((resolve) => {
    let grace: ReturnType<typeof setTimeout> | undefined;
    const current = (): El | null => {
      const turns = document.querySelectorAll('#conversation > .turn');
      const last = turns.length > 0 ? turns[turns.length - 1] : undefined;
      return last ? last.querySelector('.answer') : null;
    };
    const snap = () => {
      const a = current();
      return { state: a ? a.getAttribute('data-state') : null, chars: ((a && a.textContent) || '').trim().length };
    };
    const stopButton = () => document.querySelectorAll('#stop')[0] as unknown as { disabled: boolean; click(): void } | undefined;
    const finish = (clicked: boolean, seen = snap()) => {
      obs.disconnect();
      clearTimeout(timer);
      clearTimeout(grace);
      resolve({ ...seen, clicked });
    };
    const click = () => {
      const s = snap();
      const stop = stopButton();
      if (s.state !== 'streaming' || !stop || stop.disabled) return false;
      stop.click();
      finish(true, s);
      return true;
    };
    const check = () => {
      const s = snap();
      if (s.state === 'streaming') {
        // The "…" placeholder before the first token is one character.
        if (s.chars >= arg.minChars && click()) return;
        if (grace === undefined) grace = setTimeout(click, arg.graceMs);
      } else if (s.state === 'done' || s.state === 'cancelled' || s.state === 'error') finish(false, s);
    };
    const obs = new MutationObserver(check);
    const timer = setTimeout(() => finish(false), arg.ms);
    obs.observe(document.body, { attributes: true, childList: true, subtree: true, characterData: true });
    check();
  });
}

/** One state of a notification toast, as `recordNotifications` saw it. */
export interface SeenNotification {
  /** The toast's text (message, source, button labels), whitespace collapsed. */
  text: string;
  /** Width of its progress bar (`.progress-bit`, "42%") when it has a determinate one. */
  bar?: string;
}

/**
 * Starts recording every state of the notification toasts whose text contains `match` into
 * `globalThis.__lensNotifications` (read it with `recordedNotifications`). It follows the DOM
 * mutations themselves, so a state shown for a moment before its toast closed is kept too.
 */
export function recordNotifications(match: string): void {
  const g = globalThis as unknown as { __lensNotifications?: SeenNotification[]; __lensNotificationsObs?: Observer };
  g.__lensNotificationsObs?.disconnect();
  const seen: SeenNotification[] = (g.__lensNotifications = []);
  const ITEM = '.notification-list-item';
  const note = (item: El | null) => {
    if (!item) return;
    const text = (item.textContent || '').replace(/\s+/g, ' ').trim();
    if (!text.includes(match)) return;
    const bit = item.querySelector('.progress-bit');
    const width = bit ? /width:\s*([\d.]+%)/.exec(bit.getAttribute('style') || '') : null;
    const entry: SeenNotification = { text, ...(width ? { bar: width[1] } : {}) };
    const last = seen[seen.length - 1];
    if (!last || last.text !== entry.text || last.bar !== entry.bar) seen.push(entry);
  };
  const scan = (records: MutationRec[]) => {
    for (const r of records) {
      const t = r.target;
      note(t.closest ? t.closest(ITEM) : t.parentElement ? t.parentElement.closest(ITEM) : null);
    }
    const items = document.querySelectorAll(`.notifications-toasts ${ITEM}`);
    for (let i = 0; i < items.length; i++) note(items[i]);
  };
  const obs = new MutationObserver(scan);
  g.__lensNotificationsObs = obs;
  obs.observe(document.body, { attributes: true, childList: true, subtree: true, characterData: true });
  scan([]);
}

/** What `recordNotifications` has seen so far (it keeps recording). */
export function recordedNotifications(): SeenNotification[] {
  return (globalThis as unknown as { __lensNotifications?: SeenNotification[] }).__lensNotifications ?? [];
}
