/**
 * Server-sent events as OpenAI streams them: each event is `data: <JSON>\n\n`, the stream ends
 * with `data: [DONE]`. `sseData` writes one event; `readSseData` reads the `data` of each event
 * from a byte stream (fetch's body), whatever the chunking, ignoring comments (`: ping`) and
 * other fields.
 */

export function sseData(payload: unknown): string {
  return `data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`;
}

export const SSE_DONE = 'data: [DONE]\n\n';

/**
 * The `data` of each event, in order (multi-line data joined with "\n"). Ends when the stream
 * ends; an event cut off by the end of the stream is not yielded. Rejects when reading fails
 * (a dropped connection, an abort).
 */
export async function* readSseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      if (nl === buffer.length - 1 && buffer[nl] === '\r') break; // maybe "\r\n" split across chunks
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      }
    }
  }
}
