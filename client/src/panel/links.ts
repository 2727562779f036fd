/**
 * Which link targets an answer may carry (used by the Markdown renderer and again by the host
 * before it opens a clicked link). Pure and tiny, so the extension host does not load the
 * renderer for it.
 */

const ALLOWED_SCHEMES = new Set(['http', 'https', 'mailto']);

/** Whether `url` may become a link: http(s), mailto, or relative (not protocol-relative). */
export function isSafeHref(url: string): boolean {
  // Browsers ignore control characters and whitespace inside a scheme ("java\tscript:").
  const compact = url.replace(/[\u0000-\u0020\u007f-\u009f]/g, '');
  if (compact.startsWith('//') || compact.startsWith('\\\\') || compact.startsWith('/\\')) return false;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(compact);
  if (scheme) return ALLOWED_SCHEMES.has(scheme[1].toLowerCase());
  // A relative reference has no colon before its first / ? #; refuse anything that could turn
  // into one: a raw colon after odd characters, "%3a", or an entity ("javascript&colon;x").
  const firstSegment = /^[^/?#]*/.exec(compact)?.[0] ?? '';
  return !/:|%3a|%0|%1|%7f|&(colon|#0*58|#x0*3a);/i.test(firstSegment);
}
