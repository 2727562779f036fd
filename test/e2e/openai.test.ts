/**
 * The OpenAI-compatible side, over loopback with real processes and sockets:
 *   (a) the shared daemon's own `/v1/chat/completions` (a real `serve --ws` on a generated tiny
 *       model): greedy answers equal `lens/ask` over WebSocket, as JSON and streamed; refusals;
 *       a stateless follow-up reuses the KV cache;
 *   (b) the HTTP backend `OpenAiEngine` against that endpoint (same text, follow-ups, streaming,
 *       cancellation) and against small scripted servers (500/503, a dropped connection, tool
 *       calls through the tool loop);
 *   (c) `llava-lens ask --backend openai` and `serve --backend openai` (a daemon whose generation
 *       runs on another daemon's endpoint).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LensClient } from '../../client/src/daemonClient';
import { LensError, LensErrorCode } from '../../common/errors';
import type { AskResult } from '../../common/protocol';
import { AgentEngine } from '../../server/src/agent/agentEngine';
import { OpenAiEngine } from '../../server/src/openai/backend';
import { readSseData } from '../../server/src/openai/sse';
import type { ChatChunk, ChatCompletion, ChatRequest } from '../../server/src/openai/wire';
import type { AgentStepInfo, AnswerDelta, GenerationOptions } from '../../server/src/runtime/types';
import { makeTestModel } from '../../server/src/testmodel';
import { diagramPng } from '../fixtures/images';
import { BIN, serveWs, WS_TEST_TOKEN as TOKEN, type ServedDaemon } from './wsServe';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lens-openai-'));
const modelDir = path.join(root, 'tiny-onevision');
const imagePath = path.join(root, 'diagram.png');
const Q = 'What does this diagram show?';
const Q2 = 'And the colours?';
const never = () => new AbortController().signal;
const greedy = (o: Partial<GenerationOptions> = {}): GenerationOptions => ({ maxTokens: 16, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, stop: [], ...o });

let daemon: ServedDaemon;
let ws: LensClient;
let base: string;
let modelName: string;
let png: Buffer;
let dataUri: string;
/** The reference: the same questions over WebSocket (`lens/ask`, greedy, 16 tokens). */
let first: AskResult;
let followUp: AskResult;

const userTurn = (text: string, withImage: boolean) => ({
  role: 'user',
  content: [...(withImage ? [{ type: 'image_url', image_url: { url: dataUri } }] : []), { type: 'text', text }],
});

/** POSTs a chat completion; `key` null sends no Authorization header. */
function post(body: unknown, key: string | null = TOKEN, signal?: AbortSignal): Promise<Response> {
  return fetch(`${base}/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(key !== null ? { Authorization: `Bearer ${key}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

async function expectError(res: Response, status: number, re: RegExp): Promise<void> {
  const body = (await res.json()) as { error: { message: string; type: string } };
  assert.equal(res.status, status, JSON.stringify(body));
  assert.match(body.error.message, re);
  assert.equal(typeof body.error.type, 'string');
}

async function backendFailure(p: Promise<unknown>): Promise<LensError & { data: { url: string; status?: number } }> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof LensError, `expected a LensError, got ${String(e)}`);
    assert.equal(e.code, LensErrorCode.BackendFailed, e.message);
    return e as LensError & { data: { url: string; status?: number } };
  }
  assert.fail('expected the backend to fail');
}

/** A small scripted OpenAI-compatible server: `handle` answers each POST (bodies are recorded). */
async function fakeServer(handle: (body: ChatRequest, res: http.ServerResponse, n: number) => void): Promise<{ base: string; bodies: ChatRequest[]; close(): Promise<void> }> {
  const bodies: ChatRequest[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'fake', object: 'model', created: 0, owned_by: 'test' }] }));
        return;
      }
      const body = JSON.parse(raw) as ChatRequest;
      bodies.push(body);
      handle(body, res, bodies.length - 1);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    bodies,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const sse = (res: http.ServerResponse, events: unknown[], end = true) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`);
  if (end) res.end('data: [DONE]\n\n');
};
const chunk = (delta: ChatChunk['choices'][0]['delta'], finish: ChatChunk['choices'][0]['finish_reason'] = null): ChatChunk => ({
  id: 'x',
  object: 'chat.completion.chunk',
  created: 0,
  model: 'fake',
  choices: [{ index: 0, delta, finish_reason: finish }],
});

before(async () => {
  // ChatML (its answers render back as generated, so follow-ups reuse the KV cache), with a
  // longer context than the preset's: room for a tool prompt and a long answer to cancel.
  await makeTestModel(modelDir, { preset: 'tiny-onevision', seed: 1, config: { text: { maxPositions: 4096 } } });
  png = await diagramPng();
  fs.writeFileSync(imagePath, png);
  dataUri = `data:image/png;base64,${png.toString('base64')}`;
  daemon = await serveWs({ model: modelDir });
  base = `http://127.0.0.1:${daemon.port}/v1`;
  ws = await daemon.connect();
  first = await ws.ask({ prompt: Q, images: [{ bytes: png.toString('base64') }], temperature: 0, maxTokens: 16 });
  followUp = await ws.ask({ prompt: Q2, images: [], temperature: 0, maxTokens: 16, conversationId: first.conversationId });
  modelName = first.model;
  assert.equal(first.tokenIds.length, 16, 'the reference answer should run to its token limit');
  assert.ok(followUp.timings.cachedTokens > 0, 'the reference follow-up reuses its KV cache');
});

after(async () => {
  ws?.dispose();
  await daemon?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('(a) the daemon\'s /v1 endpoint', () => {
  test('GET /v1/models lists the loaded model', async () => {
    const res = await fetch(`${base}/models`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    const list = (await res.json()) as { data: Array<{ id: string; max_model_len: number }> };
    assert.deepEqual(list.data.map((m) => m.id), [modelName]);
    assert.equal(list.data[0].max_model_len, 4096);
  });

  test('a greedy answer about an image equals lens/ask over WebSocket', async () => {
    const res = await post({ model: modelName, messages: [userTurn(Q, true)], max_tokens: 16, temperature: 0 });
    assert.equal(res.status, 200);
    const c = (await res.json()) as ChatCompletion;
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.model, modelName);
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].message.content, first.text);
    assert.equal(c.choices[0].finish_reason, 'length');
    assert.equal(c.usage.completion_tokens, first.tokenIds.length);
    assert.equal(c.usage.prompt_tokens, first.timings.promptTokens);
    assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
  });

  test('streamed: a role chunk, the same text in pieces, the finish reason, usage, [DONE]', async () => {
    const res = await post({ messages: [userTurn(Q, true)], max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const events: string[] = [];
    for await (const d of readSseData(res.body as unknown as AsyncIterable<Uint8Array>)) events.push(d);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as ChatChunk);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const pieces = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).filter((t) => t !== '');
    assert.ok(pieces.length > 1, 'the answer streams in several pieces');
    assert.equal(pieces.join(''), first.text);
    assert.equal(chunks.flatMap((c) => c.choices).find((ch) => ch.finish_reason)?.finish_reason, 'length');
    const usage = chunks.at(-1)!;
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage?.completion_tokens, 16);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  });

  test('a stateless follow-up continues the earlier request\'s conversation (KV cache reused)', async () => {
    const messages = [userTurn(Q, true), { role: 'assistant', content: first.text }, userTurn(Q2, false)];
    const res = await post({ messages, max_tokens: 16, temperature: 0 });
    const c = (await res.json()) as ChatCompletion;
    assert.equal(res.status, 200, JSON.stringify(c));
    assert.equal(c.choices[0].message.content, followUp.text);
    assert.ok((c.usage.prompt_tokens_details?.cached_tokens ?? 0) > 0, `cached tokens: ${JSON.stringify(c.usage)}`);
  });

  test('refusals are OpenAI-shaped errors with the right status', async () => {
    await expectError(await post({ messages: [userTurn(Q, false)] }, null), 401, /no token/);
    await expectError(await post({ messages: [userTurn(Q, false)] }, 'wrong'), 401, /wrong token/);
    await expectError(await post('{not json'), 400, /not valid JSON/);
    await expectError(await post({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://169.254.169.254/x.png' } }] }] }), 400, /remote image URLs are not fetched/);
    await expectError(await post({ model: 'gpt-4o', messages: [userTurn(Q, false)] }), 404, /serves the model ".*", not "gpt-4o"/);
    await expectError(await post({ messages: [userTurn(Q, false)], n: 3 }), 400, /"n" other than 1/);
    await expectError(await post({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,aGVsbG8=' } }, { type: 'text', text: Q }] }] }), 400, /./);
    await expectError(await post({ messages: [userTurn(Q, false)], max_tokens: 1_000_000 }), 400, /over this daemon's limit/);
    const res = await fetch(`${base}/embeddings`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` } });
    await expectError(res, 404, /serves GET \/v1\/models and POST \/v1\/chat\/completions/);
    const page = await fetch(`${base}/models`, { headers: { Authorization: `Bearer ${TOKEN}`, Origin: 'https://evil.example' } });
    await expectError(page, 403, /requests from web pages \(Origin https:\/\/evil\.example\) are refused/);
  });

  test('tools: offered to the model in its format; tool calls and results in the history are accepted', async () => {
    const tools = [{ type: 'function', function: { name: 'ocr', description: 'Reads the text in the image.', parameters: { type: 'object', properties: {} } } }];
    const messages = [
      userTurn(Q, true),
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'ocr', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"texts": ["Client", "Daemon"]}' },
    ];
    const res = await post({ messages, tools, max_tokens: 8, temperature: 0 });
    const c = (await res.json()) as ChatCompletion;
    assert.equal(res.status, 200, JSON.stringify(c));
    assert.ok(['stop', 'length', 'tool_calls'].includes(c.choices[0].finish_reason));
    assert.ok(c.usage.prompt_tokens > first.timings.promptTokens + 100, 'the tool descriptions are in the prompt');
  });
});

describe('(b) OpenAiEngine, the HTTP backend', () => {
  const engine = () => new OpenAiEngine({ baseUrl: base, model: modelName, apiKey: TOKEN });

  test('same text as the local engine, streamed, and a follow-up turn', async () => {
    const e = engine();
    const info = await e.load('', {}, () => undefined, never());
    assert.equal(info.name, modelName);
    assert.equal(info.device, 'remote');
    assert.equal(info.contextLength, 4096);
    const deltas: AnswerDelta[] = [];
    const r1 = await e.ask({ prompt: Q, images: [{ bytes: png }], options: greedy() }, (d) => deltas.push(d), never());
    assert.equal(r1.text, first.text);
    assert.ok(deltas.length > 1);
    assert.equal(deltas.map((d) => d.text).join(''), r1.text);
    assert.equal(r1.finishReason, 'length');
    assert.equal(r1.timings.newTokens, 16);
    const r2 = await e.ask({ conversationId: r1.conversationId, prompt: Q2, images: [], options: greedy() }, () => undefined, never());
    assert.equal(r2.text, followUp.text);
    assert.equal(r2.conversationId, r1.conversationId);
    assert.ok(r2.timings.cachedTokens > 0, 'the daemon continued its conversation with the KV cache');
    e.forget(r1.conversationId);
    await assert.rejects(e.ask({ conversationId: r1.conversationId, prompt: Q2, images: [], options: greedy() }, () => undefined, never()), (err: LensError) => err.code === LensErrorCode.UnknownConversation);
  });

  test('cancelling mid-stream closes the request: the daemon stops generating and serves the next one', async () => {
    const e = engine();
    const ac = new AbortController();
    const r = await e.ask({ prompt: 'Write a very long story.', images: [], options: greedy({ maxTokens: 3500 }) }, () => ac.abort(), ac.signal);
    assert.equal(r.finishReason, 'cancelled');
    // Cancelled at its first piece: the daemon stopped long before the 3500 tokens (about 25 s here).
    const line = await daemon.waitForLog(/closed its chat completion request; the answer was cancelled after \d+ tokens/);
    assert.ok(Number(/after (\d+) tokens/.exec(line)![1]) < 500, line);
    const next = await e.ask({ prompt: Q, images: [{ bytes: png }], options: greedy() }, () => undefined, never());
    assert.equal(next.text, first.text);
  });

  test('errors: a wrong key (401), a bad request (400), an unreachable server', async () => {
    const wrongKey = new OpenAiEngine({ baseUrl: base, model: modelName, apiKey: 'nope' });
    let err = await backendFailure(wrongKey.ask({ prompt: Q, images: [], options: greedy() }, () => undefined, never()));
    assert.equal(err.data.status, 401);
    assert.match(err.message, new RegExp(`${base}/chat/completions answered 401.*API key.*wrong token`));
    err = await backendFailure(wrongKey.load('', {}, () => undefined, never()));
    assert.equal(err.data.status, 401);

    err = await backendFailure(engine().ask({ prompt: Q, images: [{ bytes: Buffer.from('not an image at all') }], options: greedy() }, () => undefined, never()));
    assert.equal(err.data.status, 400);
    assert.match(err.message, /answered 400.*The server said: .+/);

    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    err = await backendFailure(new OpenAiEngine({ baseUrl: `http://127.0.0.1:${port}/v1`, model: 'm' }).ask({ prompt: Q, images: [], options: greedy() }, () => undefined, never()));
    assert.match(err.message, /cannot reach the OpenAI-compatible server at http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions \(ECONNREFUSED\)/);
  });

  test('errors: 500 and 503 answers, an error event, a dropped connection, a stream that just ends', async () => {
    const server = await fakeServer((_body, res, n) => {
      if (n === 0) {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'CUDA out of memory', type: 'server_error' } }));
      } else if (n === 1) {
        res.writeHead(503, { 'Content-Type': 'text/plain' });
        res.end('model is loading, retry later');
      } else if (n === 2) {
        sse(res, [chunk({ content: 'Hello' }), { error: { message: 'engine crashed' } }]);
      } else if (n === 3) {
        sse(res, [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hel' }), chunk({ content: 'lo' })], false);
        setImmediate(() => res.socket?.destroy());
      } else {
        sse(res, [chunk({ content: 'Hello' })], false);
        res.end();
      }
    });
    try {
      const e = new OpenAiEngine({ baseUrl: server.base, model: 'fake' });
      const ask = (onDelta: (d: AnswerDelta) => void = () => undefined) => e.ask({ prompt: Q, images: [], options: greedy() }, onDelta, never());
      let err = await backendFailure(ask());
      assert.equal(err.data.status, 500);
      assert.match(err.message, /answered 500 Internal Server Error: the server failed.*The server said: CUDA out of memory/);
      err = await backendFailure(ask());
      assert.equal(err.data.status, 503);
      assert.match(err.message, /answered 503 Service Unavailable.*model is loading, retry later/);
      err = await backendFailure(ask());
      assert.match(err.message, /reported an error mid-answer: engine crashed/);
      const got: string[] = [];
      err = await backendFailure(ask((d) => got.push(d.text)));
      assert.match(err.message, /the connection to .*\/chat\/completions dropped mid-answer after \d+ chunks/);
      assert.deepEqual(got, ['Hel', 'lo'], 'what arrived before the drop was streamed');
      err = await backendFailure(ask());
      assert.match(err.message, /ended after 1 chunks without finishing the answer/);
    } finally {
      await server.close();
    }
  });

  test('tools: the loop\'s tools go out as OpenAI tools, tool_calls come back as actions, results as tool messages', async () => {
    const server = await fakeServer((body, res, n) => {
      if (n === 0) {
        sse(res, [
          chunk({ role: 'assistant', content: 'Let me measure it.' }),
          chunk({ tool_calls: [{ index: 0, id: 'call_42', type: 'function', function: { name: 'image_info', arguments: '' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '{}' } }] }),
          chunk({}, 'tool_calls'),
        ]);
      } else {
        sse(res, [chunk({ content: `The image is ${body.messages.some((m) => m.role === 'tool') ? 'measured' : 'unknown'}.` }), chunk({}, 'stop')]);
      }
    });
    try {
      const e = new AgentEngine(new OpenAiEngine({ baseUrl: server.base, model: 'fake' }));
      const steps: AgentStepInfo[] = [];
      const r = await e.ask({ prompt: 'How big is it?', images: [{ bytes: png }], agent: { tools: true }, options: greedy() }, () => undefined, never(), undefined, (s) => steps.push(s));
      assert.equal(r.text, 'The image is measured.');
      assert.deepEqual(steps.map((s) => [s.tool, s.final ?? false]), [['image_info', false], [undefined, true]]);
      assert.match(steps[0].observation ?? '', /"size":\[640,400\]/);
      assert.equal(server.bodies.length, 2);
      for (const b of server.bodies) assert.ok(b.tools?.some((t) => t.function.name === 'image_info'), 'tools offered on every turn');
      assert.ok(!server.bodies[0].messages.some((m) => m.role === 'system'), 'no tool system prompt when the API takes tools');
      const msgs = server.bodies[1].messages;
      const call = msgs.find((m) => m.role === 'assistant');
      assert.equal(call?.tool_calls?.[0].id, 'call_42');
      assert.equal(call?.tool_calls?.[0].function.name, 'image_info');
      const result = msgs.find((m) => m.role === 'tool');
      assert.equal(result?.tool_call_id, 'call_42');
      assert.match(String(result?.content), /"size":\[640,400\]/);
      const first = msgs[0].content as Array<{ type: string; image_url?: { url: string } }>;
      assert.ok(first[0].image_url?.url.startsWith('data:image/png;base64,'), 'the image went as a data URI');
    } finally {
      await server.close();
    }
  });

  test('tools in a system prompt (--backend-tools prompt): calls parsed from the text, results as user turns', async () => {
    const server = await fakeServer((_body, res, n) => {
      const text = n === 0 ? '<tool_call>\n{"name": "image_info", "arguments": {}}\n</tool_call>' : 'It is 640 by 400.';
      sse(res, [chunk({ content: text }), chunk({}, 'stop')]);
    });
    try {
      const e = new AgentEngine(new OpenAiEngine({ baseUrl: server.base, model: 'fake', nativeTools: false }));
      const r = await e.ask({ prompt: 'How big is it?', images: [{ bytes: png }], agent: { tools: true }, options: greedy() }, () => undefined, never());
      assert.equal(r.text, 'It is 640 by 400.');
      assert.equal(r.steps?.[0].tool, 'image_info');
      assert.ok(server.bodies.every((b) => b.tools === undefined), 'no OpenAI tools sent');
      const [sys, , , obs] = server.bodies[1].messages;
      assert.equal(sys.role, 'system');
      assert.match(String(sys.content), /<tools>[\s\S]*image_info/);
      assert.equal(obs.role, 'user');
      assert.match(JSON.stringify(obs.content), /size/);
    } finally {
      await server.close();
    }
  });

  test('the tool loop on the daemon\'s endpoint (tools offered, the model\'s answer parsed there)', async () => {
    const e = new AgentEngine(engine());
    const r = await e.ask({ prompt: Q, images: [{ bytes: png }], agent: { tools: true, maxSteps: 1 }, options: greedy({ maxTokens: 8 }) }, () => undefined, never());
    assert.ok(r.steps && r.steps.length >= 1 && r.steps.at(-1)!.final, JSON.stringify(r.steps));
  });
});

describe('(c) the command line', () => {
  function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  test('llava-lens ask --backend openai --base-url <the daemon>/v1 prints the answer', async () => {
    const r = await run(['ask', '--backend', 'openai', '--base-url', base, '--api-key', TOKEN, imagePath, '-q', Q, '--max-tokens', '16', '--temperature', '0']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, first.text.endsWith('\n') ? first.text : `${first.text}\n`);
    assert.match(r.stderr, new RegExp(`Model: ${modelName} \\(openai-compatible, remote\\) on remote at ${base}`));
    const j = await run(['ask', '--backend', 'openai', '--base-url', base, '--api-key-env', 'LENS_KEY', imagePath, '-q', Q, '--max-tokens', '16', '--temperature', '0', '--json'], { LENS_KEY: TOKEN });
    assert.equal(j.code, 0, j.stderr);
    const out = JSON.parse(j.stdout) as AskResult;
    assert.equal(out.text, first.text);
    assert.equal(out.device, 'remote');
  });

  test('a wrong key or a model the server does not serve fails before anything starts', async () => {
    const r = await run(['ask', '--backend', 'openai', '--base-url', base, '--api-key', 'nope', imagePath, '-q', Q]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\/v1\/models answered 401 Unauthorized: check the API key/);
    const m = await run(['ask', '--backend', 'openai', '--base-url', base, '--api-key', TOKEN, '--model', 'gpt-4o', imagePath, '-q', Q]);
    assert.equal(m.code, 2);
    assert.match(m.stderr, new RegExp(`does not serve "gpt-4o"; it serves "${modelName}"`));
    const u = await run(['ask', '--base-url', base, imagePath, '-q', Q]);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /--base-url only applies with --backend openai/);
  });

  test('serve --ws --backend openai: a daemon whose generation runs on another daemon\'s endpoint', async () => {
    const app = 'https://app.example';
    const front = await serveWs({ args: ['--backend', 'openai', '--base-url', base, '--backend-model', modelName, '--api-key-env', 'UPSTREAM_KEY', '--allow-origin', app], env: { UPSTREAM_KEY: TOKEN } });
    try {
      await front.waitForLog(/\[info\] loaded .* on remote/);
      // its own /v1 endpoint answers too; an allowed web origin gets CORS
      const frontBase = `http://127.0.0.1:${front.port}/v1`;
      const pre = await fetch(`${frontBase}/chat/completions`, { method: 'OPTIONS', headers: { Origin: app, 'Access-Control-Request-Method': 'POST' } });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get('access-control-allow-origin'), app);
      assert.match(pre.headers.get('access-control-allow-headers') ?? '', /Authorization/);
      const models = await fetch(`${frontBase}/models`, { headers: { Authorization: `Bearer ${TOKEN}`, Origin: app } });
      assert.equal(models.headers.get('access-control-allow-origin'), app);
      assert.deepEqual(((await models.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id), [modelName]);
      const client = await front.connect();
      try {
        const r = await client.ask({ prompt: Q, images: [{ bytes: png.toString('base64') }], temperature: 0, maxTokens: 16 });
        assert.equal(r.text, first.text);
        assert.equal(r.device, 'remote');
        const r2 = await client.ask({ prompt: Q2, images: [], temperature: 0, maxTokens: 16, conversationId: r.conversationId });
        assert.equal(r2.text, followUp.text);
      } finally {
        client.dispose();
      }
    } finally {
      await front.stop();
    }
  });
});
