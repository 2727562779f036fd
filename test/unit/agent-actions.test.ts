import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseActions } from '../../server/src/agent/actions';
import { parseLooseJson } from '../../server/src/agent/looseJson';

// --- LLaVA-Plus ------------------------------------------------------------------------------

test('llava-plus: the canonical form with one action', () => {
  const r = parseActions('"thoughts🤔" The text is small; read it with OCR.\n"actions🚀" [{"API_name": "ocr", "API_params": {}}]\n"value👉" I will read the text first.');
  assert.equal(r.form, 'llava-plus');
  assert.deepEqual(r.actions, [{ tool: 'ocr', args: {} }]);
  assert.equal(r.thought, 'The text is small; read it with OCR.');
  assert.equal(r.value, 'I will read the text first.');
  assert.deepEqual(r.errors, []);
  assert.equal(r.partial, false);
});

test('llava-plus: an answer without tools carries "actions🚀" []', () => {
  const r = parseActions('"thoughts🤔" Thanks to the output of ocr, I can answer.\n"actions🚀" []\n"value👉" The button says "Run Tests".');
  assert.deepEqual(r.actions, []);
  assert.deepEqual(r.errors, []);
  assert.equal(r.value, 'The button says "Run Tests".');
});

test('llava-plus: spacing and quoting variants real checkpoints emit', () => {
  const variants = [
    'thoughts🤔 need ocr\nactions🚀 [{"API_name": "ocr", "API_params": {}}]\nvalue👉 ok',
    '"thoughts 🤔" need ocr "actions 🚀" [{"API_name": "ocr", "API_params": {}}] "value 👉" ok',
    '"thoughts" 🤔 need ocr\n"actions" 🚀 [{"API_name": "ocr", "API_params": {}}]\n"value" 👉 ok',
    '"thought🤔": need ocr\n"actions🚀": [{"API_name": "ocr", "API_params": {}}]\n"value👉": ok',
    '"thoughts🤔"need ocr"actions🚀"[{"API_name":"ocr","API_params":{}}]"value👉"ok',
    '🤔 need ocr 🚀 [{"API_name": "ocr", "API_params": {}}] 👉 ok',
    'thoughts: need ocr\nactions: [{"API_name": "ocr", "API_params": {}}]\nvalue: ok',
    '"thoughts🤔" need ocr\n"actions🚀" [{\'API_name\': \'ocr\', \'API_params\': {},}]\n"value👉" ok',
    '"thoughts🤔" need ocr\n"actions🚀" [{API_name: "ocr", API_params: {}}]\n"value👉" ok',
    '"thoughts🤔" need ocr\n"actions🚀️" {"API_name": "ocr", "API_params": {}}\n"value👉" ok',
  ];
  for (const v of variants) {
    const r = parseActions(v);
    assert.deepEqual(r.actions, [{ tool: 'ocr', args: {} }], v);
    assert.deepEqual(r.errors, [], v);
    assert.equal(r.thought, 'need ocr', v);
    assert.equal(r.value, 'ok', v);
  }
});

test('llava-plus: several actions, arguments kept as written', () => {
  const r = parseActions(
    '"thoughts🤔" read, then look closer\n"actions🚀" [{"API_name": "ocr", "API_params": {}}, {"API_name": "zoom", "API_params": {"box": [0.1, 0.2, 0.5, 0.6]}}]\n"value👉" working',
  );
  assert.deepEqual(r.actions, [
    { tool: 'ocr', args: {} },
    { tool: 'zoom', args: { box: [0.1, 0.2, 0.5, 0.6] } },
  ]);
});

test('llava-plus: Python literals and trailing commas are read', () => {
  const r = parseActions('"actions🚀" [{"API_name": "grid", "API_params": {"rows": 3, "labels": True, "x": None,},},] "value👉" ok');
  assert.deepEqual(r.actions, [{ tool: 'grid', args: { rows: 3, labels: true, x: null } }]);
  assert.deepEqual(r.errors, []);
});

test('llava-plus: malformed actions become errors, never a throw', () => {
  const cases: Array<[string, RegExp]> = [
    ['"thoughts🤔" x "actions🚀" use the ocr tool please "value👉" y', /the actions "use the ocr tool please" are not a JSON list/],
    ['"thoughts🤔" x "actions🚀" [{"API_params": {}}] "value👉" y', /action 1 has no tool name/],
    ['"thoughts🤔" x "actions🚀" [{"API_name": "zoom", "API_params": [1, 2]}] "value👉" y', /arguments must be an object/],
    ['"thoughts🤔" x "actions🚀" ["ocr"] "value👉" y', /action 1 is "ocr", not an object/],
    ['"thoughts🤔" x "actions🚀" [{"API_name": "ocr" "API_params": {}}] "value👉" y', /are not valid JSON: expected ',' or '}'/],
  ];
  for (const [text, re] of cases) {
    const r = parseActions(text);
    assert.equal(r.actions.length, 0, text);
    assert.equal(r.errors.length, 1, text);
    assert.match(r.errors[0], re);
    assert.equal(r.partial, false);
    assert.equal(r.value, 'y');
  }
});

test('llava-plus: one bad action does not drop the good one', () => {
  const r = parseActions('"actions🚀" [{"API_name": "ocr", "API_params": {}}, {"API_params": {}}]');
  assert.deepEqual(r.actions, [{ tool: 'ocr', args: {} }]);
  assert.equal(r.errors.length, 1);
});

test('llava-plus: output cut off while streaming', () => {
  const cut = '"thoughts🤔" I should zoom.\n"actions🚀" [{"API_name": "zoom", "API_params": {"box": [0.1, 0.2';
  for (let n = cut.indexOf('[') + 1; n <= cut.length; n++) {
    const r = parseActions(cut.slice(0, n));
    assert.equal(r.actions.length, 0, cut.slice(0, n));
    assert.equal(r.partial, true, cut.slice(0, n));
    assert.match(r.errors[0], /cut off/);
    assert.equal(r.thought, 'I should zoom.');
  }
  const bare = parseActions('"thoughts🤔" I should zoom.\n"actions🚀"');
  assert.equal(bare.partial, true);
  assert.match(bare.errors[0], /ends right after/);
  // Cut inside the thought: nothing to run, no error, the thought is what there is.
  const early = parseActions('"thoughts🤔" I should zo');
  assert.deepEqual([early.actions, early.errors, early.thought], [[], [], 'I should zo']);
});

test('llava-plus: a model inventing the next turn does not leak into the value', () => {
  const r = parseActions('"thoughts🤔" a "actions🚀" [] "value👉" The answer. "thoughts🤔" b "actions🚀" [{"API_name": "ocr", "API_params": {}}]');
  assert.deepEqual(r.actions, []);
  assert.equal(r.value, 'The answer.');
});

test('plain answers stay plain, even with words like "Actions:"', () => {
  for (const text of ['The image shows a cat.', 'Actions: click Save, then close the dialog.', 'Thoughts: it is a cat.']) {
    const r = parseActions(text);
    assert.deepEqual([r.form, r.actions, r.errors, r.value], ['text', [], [], text]);
  }
  assert.deepEqual(parseActions('  ').actions, []);
});

// --- ChatML -----------------------------------------------------------------------------------

test('chatml: several tool calls, text before them is the thought', () => {
  const r = parseActions(
    'Let me read it first.\n<tool_call>\n{"name": "ocr", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "zoom", "arguments": {"box": [0, 0, 0.5, 0.5]}}\n</tool_call>',
  );
  assert.equal(r.form, 'chatml');
  assert.equal(r.thought, 'Let me read it first.');
  assert.deepEqual(r.actions, [
    { tool: 'ocr', args: {} },
    { tool: 'zoom', args: { box: [0, 0, 0.5, 0.5] } },
  ]);
  assert.deepEqual(r.errors, []);
});

test('chatml: arguments as a JSON string (OpenAI style) and the OpenAI function wrapper', () => {
  const r = parseActions('<tool_call>{"name": "grid", "arguments": "{\\"rows\\": 3}"}</tool_call><tool_call>{"function": {"name": "ocr", "arguments": "{}"}}</tool_call>');
  assert.deepEqual(r.actions, [
    { tool: 'grid', args: { rows: 3 } },
    { tool: 'ocr', args: {} },
  ]);
});

test('chatml: a missing closing tag (eaten as a stop string) is fine', () => {
  const r = parseActions('<tool_call>\n{"name": "ocr", "arguments": {}}');
  assert.deepEqual(r.actions, [{ tool: 'ocr', args: {} }]);
  assert.deepEqual(r.errors, []);
});

test('chatml: malformed and cut-off calls', () => {
  const bad = parseActions('<tool_call>{"name": "ocr", "arguments": {</tool_call><tool_call>{"name": "zoom", "arguments": {"box": [0,0,1,1]}}</tool_call>');
  assert.deepEqual(bad.actions, [{ tool: 'zoom', args: { box: [0, 0, 1, 1] } }]);
  assert.equal(bad.errors.length, 1);
  assert.match(bad.errors[0], /tool call 1 .* is not valid JSON/);
  assert.equal(bad.partial, false);

  const cut = parseActions('Checking.\n<tool_call>\n{"name": "zoom", "arguments": {"box": [0.2, 0.');
  assert.deepEqual(cut.actions, []);
  assert.equal(cut.partial, true);
  assert.match(cut.errors[0], /tool call 1 is cut off/);
  assert.equal(cut.thought, 'Checking.');

  const empty = parseActions('<tool_call></tool_call>');
  assert.match(empty.errors[0], /empty/);
  const noName = parseActions('<tool_call>{"arguments": {}}</tool_call>');
  assert.match(noName.errors[0], /no tool name/);
});

test('chatml: text after the last call is the value', () => {
  const r = parseActions('<tool_call>{"name": "ocr", "arguments": {}}</tool_call>\nI will report back.');
  assert.equal(r.value, 'I will report back.');
});

// --- plain JSON -------------------------------------------------------------------------------

test('json: {"tool", "args"} and {"name", "arguments"} alone in the answer, fenced or not, one or a list', () => {
  assert.deepEqual(parseActions('{"tool": "ocr", "args": {}}').actions, [{ tool: 'ocr', args: {} }]);
  assert.deepEqual(parseActions(' {"name": "zoom", "arguments": {"box": [0, 0, 1, 1]}} ').actions, [{ tool: 'zoom', args: { box: [0, 0, 1, 1] } }]);
  assert.deepEqual(parseActions('```json\n{"tool": "grid", "args": {"rows": 2}}\n```').actions, [{ tool: 'grid', args: { rows: 2 } }]);
  const two = parseActions('[{"tool": "ocr"}, {"tool": "image_info", "args": null}]');
  assert.equal(two.form, 'json');
  assert.deepEqual(two.actions, [
    { tool: 'ocr', args: {} },
    { tool: 'image_info', args: {} },
  ]);
});

test('json: JSON that is not a tool call, or not alone, is an answer', () => {
  for (const text of ['{"answer": 42}', 'Here: {"tool": "ocr", "args": {}}', '{"tool": "ocr", "args": {}} and more', '[1, 2, 3]']) {
    const r = parseActions(text);
    assert.equal(r.form, 'text', text);
    assert.deepEqual(r.actions, [], text);
    assert.equal(r.value, text.trim());
  }
});

test('json: malformed arguments and a cut-off call', () => {
  const bad = parseActions('{"tool": "zoom", "args": "box=[0,0,1,1]"}');
  assert.equal(bad.form, 'json');
  assert.deepEqual(bad.actions, []);
  assert.match(bad.errors[0], /its arguments "box=\[0,0,1,1\]" are not valid JSON/);
  const cut = parseActions('{"tool": "zoom", "args": {"box": [0.1');
  assert.equal(cut.partial, true);
  assert.match(cut.errors[0], /cut off/);
});

// --- the forgiving JSON reader ------------------------------------------------------------------

test('parseLooseJson: JSON, JS-ish and Python-ish values; where it stopped; why it failed', () => {
  const text = '{"a": [1, 2.5, -3e2], "b": "x\\ny", "c": true}';
  assert.deepEqual(parseLooseJson(text), { ok: true, value: { a: [1, 2.5, -300], b: 'x\ny', c: true }, end: text.length });
  assert.deepEqual(parseLooseJson("{a: 'q', b: None, c: False, /* note */ d: [1,],} tail").ok, true);
  const r = parseLooseJson('  [1, 2] tail');
  assert.ok(r.ok && r.end === 8);
  for (const cut of ['{"a": ', '[1, 2', '"abc', '{"a": tr', '{"a"']) {
    const c = parseLooseJson(cut);
    assert.ok(!c.ok && c.incomplete, cut);
  }
  for (const bad of ['{"a" 1}', '[1 2]', '{"a": nope}', '@']) {
    const c = parseLooseJson(bad);
    assert.ok(!c.ok && !c.incomplete, bad);
  }
});
