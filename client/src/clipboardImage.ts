/**
 * Reads an image from the system clipboard (VS Code's clipboard API is text only), with the
 * platform's own tools: `wl-paste` or `xclip` on Linux, AppleScript on macOS, PowerShell on
 * Windows. No 'vscode' import. When none works, the caller offers pasting into the panel.
 */
import { execFile } from 'node:child_process';

const TIMEOUT_MS = 5000;
const MAX_BYTES = 64 * 1024 * 1024;

function run(cmd: string, args: string[], encoding: 'buffer' | 'utf8'): Promise<Buffer | string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding, timeout: TIMEOUT_MS, maxBuffer: MAX_BYTES, windowsHide: true }, (err, stdout) => {
      if (err) reject(err);
      else resolve(stdout);
    });
  });
}

/** What failed, per tool, so the message can say why. */
export class NoClipboardImage extends Error {}

/** PNG bytes of the clipboard's image. Throws `NoClipboardImage` saying why there is none. */
export async function readClipboardImage(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): Promise<Buffer> {
  const attempts: Array<() => Promise<Buffer>> = [];
  const reasons: string[] = [];
  if (platform === 'linux') {
    if (env.WAYLAND_DISPLAY) attempts.push(async () => (await run('wl-paste', ['--no-newline', '--type', 'image/png'], 'buffer')) as Buffer);
    attempts.push(async () => (await run('xclip', ['-selection', 'clipboard', '-t', 'image/png', '-o'], 'buffer')) as Buffer);
  } else if (platform === 'darwin') {
    attempts.push(async () => {
      const out = (await run('osascript', ['-e', 'get the clipboard as «class PNGf»'], 'utf8')) as string;
      const hex = /«data PNGf([0-9A-Fa-f]+)»/.exec(out)?.[1];
      if (!hex) throw new Error('the clipboard holds no PNG image');
      return Buffer.from(hex, 'hex');
    });
  } else if (platform === 'win32') {
    const script =
      'Add-Type -AssemblyName System.Windows.Forms; Add-Type -AssemblyName System.Drawing; ' +
      '$i = [System.Windows.Forms.Clipboard]::GetImage(); if ($i) { $m = New-Object System.IO.MemoryStream; ' +
      '$i.Save($m, [System.Drawing.Imaging.ImageFormat]::Png); [Convert]::ToBase64String($m.ToArray()) }';
    attempts.push(async () => {
      const out = ((await run('powershell.exe', ['-NoProfile', '-STA', '-Command', script], 'utf8')) as string).trim();
      if (!out) throw new Error('the clipboard holds no image');
      return Buffer.from(out, 'base64');
    });
  }
  for (const attempt of attempts) {
    try {
      const bytes = await attempt();
      if (bytes.length > 8 && bytes[0] === 0x89 && bytes[1] === 0x50) return bytes;
      reasons.push('the clipboard holds no image');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      reasons.push(err.code === 'ENOENT' ? `${err.path ?? 'the clipboard tool'} is not installed` : (err.message.split('\n')[0] ?? 'failed'));
    }
  }
  throw new NoClipboardImage(reasons.length ? [...new Set(reasons)].join('; ') : `reading images from the clipboard is not supported on ${platform}`);
}
