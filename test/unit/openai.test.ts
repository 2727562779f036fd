/**
 * The OpenAI-compatible pieces that need no server: request checks, messages -> engine turns
 * (system, images, tool calls and results per tool format), tool calls parsed from a model's
 * answer, the SSE reader, data URIs, the stateless-conversation index and the error mapping.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LensError, LensErrorCode } from '../../common/errors';
import { fromDataUri, sniffMime, toDataUri } from '../../server/src/openai/dataUri';
import { parseChatRequest } from '../../server/src/openai/request';
import { readSseData, sseData, SSE_DONE } from '../../server/src/openai/sse';
import { extractToolCalls } from '../../server/src/openai/toolText';
import { toEngineTurns } from '../../server/src/openai/turns';
import { HttpError, toHttpError, type WireTool } from '../../server/src/openai/wire';
import { fingerprint, StatelessIndex } from '../../server/src/runtime/statelessConversations';

const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
const pngUri = toDataUri(PNG);
const OCR: WireTool = { type: 'function', function: { name: 'ocr', description: 'reads text', parameters: { type: 'object', properties: {} } } };

function status400(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof HttpError && e.status === 400 && re.test(e.message));
}

describe('parseChatRequest', () => {
  test('reads the generation options', () => {
    const p = parseChatRequest({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 7,
      temperature: 0,
      top_p: 0.5,
      top_k: -1,
      seed: -1,
      stop: 'END',
      stream: true,
      stream_options: { include_usage: true },
      user: 'ignored-unknown-field',
    });
    assert.equal(p.model, 'm');
    assert.equal(p.maxTokens, 7);
    assert.equal(p.temperature, 0);
    assert.equal(p.topP, 0.5);
    assert.equal(p.topK, 0);
    assert.equal(p.seed, 2 ** 32 - 1);
    assert.deepEqual(p.stop, ['END']);
    assert.equal(p.stream, true);
    assert.equal(p.includeUsage, true);
    assert.equal(parseChatRequest({ messages: [{ role: 'user', content: 'x' }], max_tokens: 5, max_completion_tokens: 9 }).maxTokens, 9);
  });

  test('refuses what it cannot honour, naming the field', () => {
    const msgs = [{ role: 'user', content: 'hi' }];
    status400(() => parseChatRequest({ messages: [] }), /"messages" must be a non-empty list/);
    status400(() => parseChatRequest({ messages: msgs, n: 2 }), /"n" other than 1 is not supported/);
    status400(() => parseChatRequest({ messages: msgs, logprobs: true }), /logprobs/);
    status400(() => parseChatRequest({ messages: msgs, response_format: { type: 'json_object' } }), /response_format/);
    status400(() => parseChatRequest({ messages: msgs, presence_penalty: 0.5 }), /presence_penalty.*repetition_penalty/);
    status400(() => parseChatRequest({ messages: msgs, tools: [OCR], tool_choice: 'required' }), /tool_choice.*cannot be forced/);
    status400(() => parseChatRequest({ messages: msgs, temperature: 3 }), /"temperature" must be between 0 and 2/);
    status400(() => parseChatRequest({ messages: msgs, max_tokens: 0 }), /"max_tokens" must be a positive integer/);
    status400(() => parseChatRequest({ messages: [{ role: 'robot', content: 'x' }] }), /messages\[0\]\.role must be one of/);
    status400(() => parseChatRequest({ messages: [{ role: 'user', content: [{ type: 'input_audio' }] }] }), /messages\[0\]\.content\[0\].*"input_audio" are not supported/);
    status400(() => parseChatRequest({ messages: [{ role: 'tool', content: 'r' }] }), /tool_call_id/);
    // tool_choice "none" takes the tools away
    assert.deepEqual(parseChatRequest({ messages: msgs, tools: [OCR], tool_choice: 'none' }).tools, []);
  });
});

describe('toEngineTurns', () => {
  test('system messages merge; earlier turns become history; images come from data URIs', () => {
    const p = parseChatRequest({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: 'Answer in English.' },
        { role: 'user', content: [{ type: 'image_url', image_url: { url: pngUri } }, { type: 'text', text: 'What is it?' }] },
        { role: 'assistant', content: 'A box.' },
        { role: 'user', content: [{ type: 'text', text: 'Which colour?' }, { type: 'text', text: 'Be exact.' }] },
      ],
    });
    const t = toEngineTurns(p.messages, p.tools, 'chatml');
    assert.deepEqual(
      t.history.map((h) => [h.role, h.text, h.images.length]),
      [
        ['system', 'Be brief.\n\nAnswer in English.', 0],
        ['user', 'What is it?', 1],
        ['assistant', 'A box.', 0],
      ],
    );
    assert.deepEqual(t.history[1].images[0], { bytes: PNG, mimeType: 'image/png' });
    assert.deepEqual(t.turn, { role: 'user', text: 'Which colour?\nBe exact.', images: [] });
  });

  test('remote image URLs are refused with a clear 400', () => {
    const p = parseChatRequest({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }, { type: 'text', text: 'q' }] }] });
    status400(() => toEngineTurns(p.messages, [], 'chatml'), /messages\[0\]\.content\[0\]\.image_url\.url: remote image URLs are not fetched.*data URI/);
  });

  test('a conversation ending with the assistant is refused', () => {
    const p = parseChatRequest({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] });
    status400(() => toEngineTurns(p.messages, [], 'chatml'), /last message must be from the user/);
  });

  test('tool calls and results, in ChatML and LLaVA-Plus', () => {
    const p = parseChatRequest({
      messages: [
        { role: 'user', content: 'Read the sign.' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'ocr', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'c1', content: '{"texts":["STOP"]}' },
      ],
      tools: [OCR],
    });
    const chatml = toEngineTurns(p.messages, p.tools, 'chatml');
    assert.equal(chatml.history[0].role, 'system');
    assert.match(chatml.history[0].text, /<tools>[\s\S]*"name":"ocr"[\s\S]*<\/tools>/);
    assert.equal(chatml.history[2].text, '<tool_call>\n{"name":"ocr","arguments":{}}\n</tool_call>');
    assert.deepEqual(chatml.turn, { role: 'tool', text: '{"texts":["STOP"]}', images: [] });

    const plus = toEngineTurns(p.messages, p.tools, 'llava-plus');
    assert.match(plus.history[0].text, /"actions🚀"/);
    assert.match(plus.history[2].text, /"actions🚀" \[\{"API_name":"ocr","API_params":\{\}\}\]/);
    assert.equal(plus.turn.role, 'user');
    assert.match(plus.turn.text, /^ocr model outputs: \{"texts":\["STOP"\]\}\n\nPlease summarize the model outputs and answer my first question: Read the sign\.$/);
  });
});

describe('extractToolCalls', () => {
  test('ChatML and LLaVA-Plus calls to offered tools become tool_calls', () => {
    const a = extractToolCalls('Let me read it.\n<tool_call>\n{"name": "ocr", "arguments": {"lang": "en"}}\n</tool_call>', [OCR], true);
    assert.equal(a.content, 'Let me read it.');
    assert.equal(a.calls.length, 1);
    assert.equal(a.calls[0].function.name, 'ocr');
    assert.deepEqual(JSON.parse(a.calls[0].function.arguments), { lang: 'en' });
    assert.match(a.calls[0].id, /^call_\w+$/);
    const b = extractToolCalls('"thoughts🤔" need text "actions🚀" [{"API_name": "ocr", "API_params": {}}] "value👉" I will read it.', [OCR], true);
    assert.equal(b.calls[0].function.name, 'ocr');
    assert.equal(b.content, 'need text');
  });

  test('an answer without calls, or calls to tools not offered, stays text', () => {
    assert.deepEqual(extractToolCalls('  The sign says STOP. ', [OCR], true), { content: 'The sign says STOP.', calls: [] });
    assert.deepEqual(extractToolCalls('"thoughts🤔" none "actions🚀" [] "value👉" It says STOP.', [OCR], true), { content: 'It says STOP.', calls: [] });
    assert.equal(extractToolCalls('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', [OCR], true).calls.length, 0);
  });

  test('parallel_tool_calls false keeps the first call', () => {
    const text = '<tool_call>{"name": "ocr", "arguments": {}}</tool_call>\n<tool_call>{"name": "ocr", "arguments": {"x": 1}}</tool_call>';
    assert.equal(extractToolCalls(text, [OCR], true).calls.length, 2);
    assert.equal(extractToolCalls(text, [OCR], false).calls.length, 1);
  });
});

describe('readSseData', () => {
  async function* bytes(parts: string[]): AsyncGenerator<Uint8Array> {
    for (const p of parts) yield new TextEncoder().encode(p);
  }
  async function all(parts: string[]): Promise<string[]> {
    const out: string[] = [];
    for await (const d of readSseData(bytes(parts))) out.push(d);
    return out;
  }

  test('events split anywhere, CRLF, comments and multi-line data', async () => {
    const stream = sseData({ a: 1 }) + ': ping\n\n' + 'data: x\r\ndata: y\r\n\r\n' + 'event: e\ndata:z\n\n' + SSE_DONE;
    const whole = await all([stream]);
    assert.deepEqual(whole, ['{"a":1}', 'x\ny', 'z', '[DONE]']);
    for (let cut = 1; cut < stream.length; cut++) assert.deepEqual(await all([stream.slice(0, cut), stream.slice(cut)]), whole, `cut at ${cut}`);
    assert.deepEqual(await all(['data: {"a"', ':1}\n\nda', 'ta: [DONE]\n\n']), ['{"a":1}', '[DONE]']);
  });

  test('an event cut off by the end is not yielded', async () => {
    assert.deepEqual(await all(['data: {"a":1}\n\ndata: {"b"']), ['{"a":1}']);
  });
});

test('data URIs', () => {
  assert.equal(sniffMime(PNG), 'image/png');
  assert.deepEqual(fromDataUri(pngUri, 'f'), { bytes: PNG, mimeType: 'image/png' });
  assert.match((fromDataUri('data:image/png,abc', 'f') as { error: string }).error, /only base64/);
  assert.match((fromDataUri('data:image/png;base64,@@@', 'f') as { error: string }).error, /invalid or empty/);
  assert.match((fromDataUri('file:///etc/passwd', 'f') as { error: string }).error, /must be a data URI/);
});

test('the stateless index continues a conversation once and keeps the most recent', () => {
  const idx = new StatelessIndex(2);
  const p = (t: string) => fingerprint([{ role: 'user', text: t, images: [] }]);
  assert.notEqual(fingerprint([{ role: 'user', text: 'a', images: ['k1'] }]), fingerprint([{ role: 'user', text: 'a', images: ['k2'] }]));
  assert.deepEqual(idx.put(p('a'), 'A'), []);
  assert.deepEqual(idx.put(p('b'), 'B'), []);
  assert.deepEqual(idx.put(p('c'), 'C'), ['A']);
  assert.equal(idx.take(p('a')), undefined);
  assert.equal(idx.take(p('b')), 'B');
  assert.equal(idx.take(p('b')), undefined);
  assert.deepEqual(idx.put(p('c'), 'C2'), ['C'], 'the same messages again: the older conversation goes');
  idx.remove('C2');
  assert.equal(idx.has('C2'), false);
});

test('product errors map to HTTP statuses', () => {
  const s = (code: LensErrorCode) => toHttpError(new LensError(code, 'x')).status;
  assert.equal(s(LensErrorCode.InvalidParams), 400);
  assert.equal(s(LensErrorCode.PromptTooLong), 400);
  assert.equal(s(LensErrorCode.ImageTooLarge), 413);
  assert.equal(s(LensErrorCode.RateLimited), 429);
  assert.equal(s(LensErrorCode.Busy), 503);
  assert.equal(s(LensErrorCode.ModelNotLoaded), 503);
  assert.equal(s(LensErrorCode.Internal), 500);
  assert.equal(s(LensErrorCode.BackendFailed), 502);
  assert.equal(toHttpError(new Error('boom')).status, 500);
  assert.deepEqual(toHttpError(new LensError(LensErrorCode.PromptTooLong, 'too long')).body(), { error: { message: 'too long', type: 'invalid_request_error', code: 'context_length_exceeded' } });
});
