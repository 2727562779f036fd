/**
 * A client process for ws-faults.test.ts: `node wsAskChild.js <url> <image file> <maxTokens> <prompt>`
 * (token from LLAVA_LENS_TOKEN) connects to a shared daemon, starts one streaming greedy ask and
 * prints `first-delta` on its first delta, then `done <finishReason>` at the end. The test
 * SIGKILLs it mid-stream: a client that vanishes without closing its socket.
 */
import { readFileSync } from 'node:fs';
import { LensClient } from '../../client/src/daemonClient';

async function main(): Promise<void> {
  const [url, image, maxTokens, prompt] = process.argv.slice(2);
  const client = await LensClient.connectWebSocket(url, { token: process.env.LLAVA_LENS_TOKEN ?? '' });
  await client.initialize();
  let first = true;
  const r = await client.ask({ prompt, images: [{ bytes: readFileSync(image).toString('base64') }], maxTokens: Number(maxTokens), temperature: 0 }, () => {
    if (first) process.stdout.write('first-delta\n');
    first = false;
  });
  process.stdout.write(`done ${r.finishReason}\n`);
  client.dispose();
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
