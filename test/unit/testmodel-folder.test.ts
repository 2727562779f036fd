/**
 * The generated folder's tokenizer, chat templates and JSON files, and `--config` validation.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describePresets, makeTestModel, PresetName } from '../../server/src/testmodel';
import { byteToUnicode, trainBpe } from '../../server/src/testmodel/tokenizer/bpe';
import { CORPUS } from '../../server/src/testmodel/tokenizer/corpus';

// These packages are typed as ES modules; under CommonJS they are loaded through their `require` builds.
const TJS = require('@huggingface/transformers');
const { Tokenizer } = require('@huggingface/tokenizers') as {
  Tokenizer: new (json: unknown, config: unknown) => {
    encode(text: string, opts?: { add_special_tokens?: boolean }): { ids: number[] };
    decode(ids: number[]): string;
    token_to_id(token: string): number | undefined;
  };
};
const { Template } = require('@huggingface/jinja') as { Template: new (src: string) => { render(ctx: Record<string, unknown>): string } };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llava-lens-testmodel-folder-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const folders = new Map<PresetName, Promise<string>>();
function folder(preset: PresetName): Promise<string> {
  let p = folders.get(preset);
  if (!p) {
    const dir = path.join(root, preset);
    p = makeTestModel(dir, { preset }).then(() => dir);
    folders.set(preset, p);
  }
  return p;
}

function readJson(dir: string, name: string) {
  return JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
}

/** Golden special-token ids (the tokenizer is deterministic; downstream tests may rely on these). */
const SPECIAL_IDS: Record<'tiny-llava' | 'tiny-onevision', Record<string, number>> = {
  'tiny-llava': { '<unk>': 0, '<s>': 1, '</s>': 2, '<image>': 609, '<pad>': 610 },
  'tiny-onevision': { '<|endoftext|>': 606, '<|im_start|>': 607, '<|im_end|>': 608, '<image>': 609 },
};

const SAMPLES = [
  'The image shows a cat sitting on a wooden table.',
  "It's 2024: naïve café — 日本語 😀\n\n\tdef f(x):\n        return x * 2  ",
  '',
  '   leading and trailing spaces   ',
];

test('byte-level BPE: full byte alphabet, deterministic merges from the built-in corpus', () => {
  const alphabet = byteToUnicode();
  assert.equal(new Set(alphabet).size, 256);
  assert.equal(alphabet[0x20], 'Ġ');
  assert.equal(alphabet[0x0a], 'Ċ');
  assert.equal(alphabet[0x41], 'A');
  const a = trainBpe(CORPUS, 350);
  const b = trainBpe(CORPUS, 350);
  assert.deepEqual(a, b);
  assert.equal(a.merges.length, 350);
  assert.equal(a.tokens.length, 256 + 350);
  assert.ok(a.tokens.includes('Ġimage'), 'frequent corpus words become tokens');
});

for (const preset of ['tiny-llava', 'tiny-onevision'] as const) {
  test(`${preset}: tokenizer loads in @huggingface/tokenizers and transformers.js, round-trips, keeps special tokens whole`, async () => {
    const dir = await folder(preset);
    const tj = readJson(dir, 'tokenizer.json');
    const tc = readJson(dir, 'tokenizer_config.json');
    const tk = new Tokenizer(tj, tc);
    TJS.env.allowRemoteModels = false;
    TJS.env.localModelPath = root + path.sep;
    const at = await TJS.AutoTokenizer.from_pretrained(preset);
    for (const text of SAMPLES) {
      const ids = tk.encode(text, { add_special_tokens: false }).ids;
      assert.deepEqual(at.encode(text, { add_special_tokens: false }), ids, `libraries disagree on ${JSON.stringify(text)}`);
      if (text === '') {
        assert.deepEqual(ids, []);
        continue;
      }
      assert.equal(tk.decode(ids), text);
      assert.equal(at.decode(ids), text);
    }
    // No BOS/EOS added by the tokenizer itself (the chat template adds BOS).
    assert.deepEqual(tk.encode('hi').ids, tk.encode('hi', { add_special_tokens: false }).ids);
    for (const [content, id] of Object.entries(SPECIAL_IDS[preset])) {
      assert.equal(tk.token_to_id(content), id, content);
      assert.deepEqual(tk.encode(`a${content}b`, { add_special_tokens: false }).ids.filter((x: number) => x === id), [id]);
      assert.equal(tc.added_tokens_decoder[String(id)].content, content);
    }
    const cfg = readJson(dir, 'config.json');
    assert.equal(cfg.image_token_index, SPECIAL_IDS[preset]['<image>']);
    assert.ok(cfg.text_config.vocab_size >= Math.max(...Object.values(SPECIAL_IDS[preset])) + 1);
    assert.equal(tc.tokenizer_class, preset === 'tiny-llava' ? 'PreTrainedTokenizerFast' : 'Qwen2Tokenizer');
    assert.equal(tc.add_bos_token, false);
    assert.equal(tc.add_eos_token, false);
  });
}

test('chat templates: vicuna (llava) and ChatML (onevision) with image parts, system and tool turns', async () => {
  const conv = [
    { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is this?' }] },
    { role: 'assistant', content: 'A chart.' },
    { role: 'tool', content: 'ocr model outputs: {}' },
  ];
  const render = async (preset: PresetName, messages: unknown[], add_generation_prompt: boolean) => {
    const tc = readJson(await folder(preset), 'tokenizer_config.json');
    return new Template(tc.chat_template).render({ messages, add_generation_prompt, bos_token: tc.bos_token, eos_token: tc.eos_token });
  };
  const sys =
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";
  assert.equal(
    await render('tiny-llava', conv, true),
    `<s>${sys} USER: <image>\nWhat is this? ASSISTANT: A chart.</s> USER: ocr model outputs: {} ASSISTANT:`,
  );
  assert.equal(await render('tiny-llava', [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }], false), '<s>Be brief. USER: Hi');
  assert.equal(
    await render('tiny-onevision', conv, true),
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n' +
      '<|im_start|>assistant\nA chart.<|im_end|>\n<|im_start|>tool\nocr model outputs: {}<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    await render('tiny-onevision', [{ role: 'system', content: 'S' }, { role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Q' }] }], false),
    '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<image>\n<image>\nQ<|im_end|>\n',
  );
});

test('config, generation, processor JSON and README mirror the HF layout', async () => {
  const llava = await folder('tiny-llava');
  const ov = await folder('tiny-onevision');
  const c1 = readJson(llava, 'config.json');
  assert.equal(c1.model_type, 'llava');
  assert.equal(c1.llava_lens_test_model, true);
  assert.equal(c1.vision_feature_layer, -2);
  assert.equal(c1.vision_feature_select_strategy, 'default');
  assert.equal(c1.text_config.model_type, 'llama');
  assert.equal(c1.vision_config.model_type, 'clip_vision_model');
  assert.equal(c1.eos_token_id, 2);
  assert.deepEqual(readJson(llava, 'generation_config.json'), { bos_token_id: 1, eos_token_id: 2, pad_token_id: 610 });
  const p1 = readJson(llava, 'preprocessor_config.json');
  assert.deepEqual([p1.size, p1.crop_size, p1.do_pad, p1.resample], [{ shortest_edge: 56 }, { height: 56, width: 56 }, true, 3]);
  assert.equal(readJson(llava, 'processor_config.json').image_token, '<image>');

  const c2 = readJson(ov, 'config.json');
  assert.equal(c2.model_type, 'llava_onevision');
  assert.equal(c2.vision_feature_select_strategy, 'full');
  assert.equal(c2.vision_aspect_ratio, 'anyres_max_9');
  assert.equal(c2.text_config.model_type, 'qwen2');
  assert.equal(c2.text_config.num_key_value_heads, 2);
  assert.equal(c2.image_newline, undefined);
  assert.ok(c2.image_grid_pinpoints.every(([h, w]: number[]) => h % 42 === 0 && w % 42 === 0));
  assert.deepEqual(readJson(ov, 'preprocessor_config.json').image_grid_pinpoints, c2.image_grid_pinpoints);
  assert.deepEqual(readJson(ov, 'generation_config.json'), { bos_token_id: 606, eos_token_id: [608, 606], pad_token_id: 606 });
  const readme = fs.readFileSync(path.join(ov, 'README.md'), 'utf8');
  assert.match(readme, /carry no meaning/);
  assert.match(readme, /seed: 0/);
});

test('config overrides are validated and errors name the key', async () => {
  const bad = (config: Record<string, unknown>, preset: PresetName = 'tiny-llava') =>
    makeTestModel(path.join(root, 'never'), { preset, config });
  await assert.rejects(bad({ text: { hidenSize: 96 } }), /"text\.hidenSize".*valid keys: .*text\.hiddenSize/);
  await assert.rejects(bad({ txt: {} }), /unknown key "txt"/);
  await assert.rejects(bad({ text: { hiddenSize: 96, numHeads: 5 } }), /text\.hiddenSize/);
  await assert.rejects(bad({ text: { numKvHeads: 3 } }), /text\.numKvHeads/);
  await assert.rejects(bad({ vision: { imageSize: 50 } }), /vision\.imageSize/);
  await assert.rejects(bad({ text: { vocabSize: 100 } }), /text\.vocabSize/);
  await assert.rejects(bad({ text: { numLayers: 'two' } }), /text\.numLayers/);
  await assert.rejects(bad({ vision: { gridPinpoints: [[42, 42]] } }), /vision\.gridPinpoints/);
  await assert.rejects(bad({ vision: { gridPinpoints: [[42, 50]] } }, 'tiny-onevision'), /vision\.gridPinpoints\[0\]/);
  await assert.rejects(makeTestModel(path.join(root, 'never'), { preset: 'tiny-llava', variants: ['int8'] }), /variant "int8"/);
  await assert.rejects(makeTestModel(path.join(root, 'never'), { preset: 'tiny-llava', seed: -1 }), /seed/);
  assert.equal(fs.existsSync(path.join(root, 'never')), false);
  const help = describePresets();
  for (const s of ['tiny-llava', 'tiny-onevision', 'bench', 'hiddenSize', 'numKvHeads', 'gridPinpoints']) assert.ok(help.includes(s), s);
});
