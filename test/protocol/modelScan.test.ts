import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseVariantFileName, scanModelRoots, variantsFromFileNames } from '../../server/src/daemon/modelScan';

async function model(dir: string, files: string[], config: unknown = { model_type: 'llava' }) {
  await fs.mkdir(path.join(dir, 'onnx'), { recursive: true });
  await fs.writeFile(path.join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  for (const f of files) await fs.writeFile(path.join(dir, 'onnx', f), '');
}

test('parseVariantFileName maps suffixes to precisions', () => {
  assert.deepEqual(parseVariantFileName('vision_encoder.onnx'), { role: 'vision_encoder', dtype: 'fp32' });
  assert.deepEqual(parseVariantFileName('decoder_model_merged_q4f16.onnx'), { role: 'decoder_model_merged', dtype: 'q4f16' });
  assert.deepEqual(parseVariantFileName('decoder_model_merged_q4.onnx'), { role: 'decoder_model_merged', dtype: 'q4' });
  assert.deepEqual(parseVariantFileName('embed_tokens_quantized.onnx'), { role: 'embed_tokens', dtype: 'quantized' });
  for (const s of ['fp16', 'int8', 'uint8', 'bnb4']) assert.equal(parseVariantFileName(`embed_tokens_${s}.onnx`)?.dtype, s);
  assert.equal(parseVariantFileName('decoder_model_merged.onnx_data'), undefined);
  assert.equal(parseVariantFileName('decoder_model_merged_fp8.onnx'), undefined);
  assert.equal(parseVariantFileName('model.onnx'), undefined);
});

test('variantsFromFileNames lists each precision once, in a fixed order', () => {
  const v = variantsFromFileNames([
    'decoder_model_merged_q4.onnx',
    'decoder_model_merged.onnx',
    'decoder_model_merged.onnx_data',
    'decoder_model_merged_fp16.onnx',
    'vision_encoder_fp16.onnx',
    'embed_tokens.onnx',
    'README.md',
  ]);
  assert.deepEqual(v, { vision_encoder: ['fp16'], embed_tokens: ['fp32'], decoder_model_merged: ['fp32', 'fp16', 'q4'] });
});

test('scanModelRoots finds model folders to a small depth, skipping hidden and missing', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-scan-'));
  try {
    await model(path.join(root, 'a'), ['vision_encoder.onnx', 'embed_tokens.onnx', 'decoder_model_merged_q4.onnx'], { model_type: 'llava_onevision' });
    await model(path.join(root, 'org', 'b'), ['vision_encoder_fp16.onnx'], 'not json');
    await model(path.join(root, '.hidden', 'c'), []);
    await model(path.join(root, 'node_modules', 'd'), []);
    await model(path.join(root, '1', '2', '3', '4', 'deep'), []);
    // A model inside a model folder is not searched.
    await model(path.join(root, 'a', 'nested'), []);
    await fs.mkdir(path.join(root, 'empty'));
    await fs.writeFile(path.join(root, 'config.json'), '{}'); // root has config.json but no onnx/
    const linked = await fs.mkdtemp(path.join(os.tmpdir(), 'lens-scan-linked-'));
    await model(path.join(linked, 'e'), ['embed_tokens_fp16.onnx']);
    await fs.symlink(path.join(linked, 'e'), path.join(root, 'link-e'));
    await fs.symlink(root, path.join(root, 'loop')); // a cycle: bounded by the depth limit

    const missing = path.join(root, 'missing');
    const { models, skippedRoots } = await scanModelRoots([root, missing, root]);
    assert.deepEqual(
      models.map((m) => path.relative(root, m.path)),
      ['a', 'link-e', path.join('org', 'b')],
    );
    await fs.rm(linked, { recursive: true, force: true });
    assert.equal(models[0].name, 'a');
    assert.equal(models[0].modelType, 'llava_onevision');
    assert.deepEqual(models[0].variants, { vision_encoder: ['fp32'], embed_tokens: ['fp32'], decoder_model_merged: ['q4'] });
    assert.deepEqual(models[1].variants.embed_tokens, ['fp16']);
    assert.equal(models[2].modelType, 'unknown');
    assert.deepEqual(skippedRoots, [{ root: missing, reason: 'not a readable folder' }]);

    const deeper = await scanModelRoots([root], 5);
    assert.ok(deeper.models.some((m) => m.name === 'deep'));
    const self = await scanModelRoots([path.join(root, 'a')]);
    assert.deepEqual(self.models.map((m) => m.name), ['a']);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});
