/**
 * The panel's HTML document and its content security policy. Pure: the host passes the webview's
 * `cspSource` and the URIs of media/dist/panel.js and media/panel.css.
 *
 * CSP: nothing loads by default; scripts only with this document's nonce; styles only from the
 * extension's media (no inline styles: the script positions boxes through CSSOM, which CSP
 * allows); images from the webview's resource origin (media/ and the images shown, as
 * `localResourceRoots` allows) and `data:` (images that tools return as base64).
 */
import { randomBytes } from 'node:crypto';

export function makeNonce(): string {
  return randomBytes(18).toString('base64').replace(/[+/=]/g, '');
}

export interface PanelHtmlOptions {
  cspSource: string;
  nonce: string;
  scriptUri: string;
  styleUri: string;
}

export function contentSecurityPolicy(o: Pick<PanelHtmlOptions, 'cspSource' | 'nonce'>): string {
  return [
    "default-src 'none'",
    `img-src ${o.cspSource} data:`,
    `style-src ${o.cspSource}`,
    `font-src ${o.cspSource}`,
    `script-src 'nonce-${o.nonce}'`,
    "connect-src 'none'",
    "frame-src 'none'",
    "form-action 'none'",
    "base-uri 'none'",
  ].join('; ');
}

function attr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

export function panelHtml(o: PanelHtmlOptions): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${attr(contentSecurityPolicy(o))}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${attr(o.styleUri)}">
<title>LLaVA Lens</title>
</head>
<body>
<div id="toolbar"><button id="new-conversation" type="button" title="Start a new conversation" aria-label="Start a new conversation">New Conversation</button></div>
<p id="empty-hint">Ask about an image: right-click an image in the Explorer and choose “Ask About Image…”, or run “LLaVA Lens: Ask About Image…” from the Command Palette. You can also paste or drop an image here (hold Shift while dragging from the Explorer).</p>
<main id="conversation" aria-label="Conversation"></main>
<div id="status-line" role="status" aria-live="polite" hidden></div>
<div id="composer">
  <div id="pending" aria-label="Images for the next question" hidden></div>
  <label for="followup" class="visually-hidden">Follow-up question</label>
  <textarea id="followup" rows="2" placeholder="Ask a follow-up question (Enter to send, Shift+Enter for a new line; paste or drop images)"></textarea>
  <div class="composer-buttons">
    <button id="stop" type="button" disabled title="Stop the answer" aria-label="Stop the answer">Stop</button>
    <button id="send" type="button" title="Send the question" aria-label="Send the question">Send</button>
  </div>
</div>
<dialog id="lightbox" aria-label="Enlarged image"><img id="lightbox-img" alt=""><div><button id="lightbox-close" type="button">Close</button></div></dialog>
<script nonce="${attr(o.nonce)}" src="${attr(o.scriptUri)}"></script>
</body>
</html>`;
}
