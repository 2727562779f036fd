/**
 * embed_tokens: `input_ids` int64 [B, S] -> `inputs_embeds` [B, S, H] (a Gather over the
 * embedding table [V, H]).
 */
import { GraphBuilder, Precision } from '../onnx/builder';
import type { ModelSpec } from '../presets';
import { INIT } from './layers';

export function buildEmbedTokens(spec: ModelSpec, vocabRows: number, precision: Precision, seed: number): GraphBuilder {
  const H = spec.text.hiddenSize;
  const b = new GraphBuilder('embed_tokens', precision === 'q4' ? 'fp32' : precision, seed);
  const ids = b.input('input_ids', 'int64', ['batch_size', 'sequence_length']); // [B, S] i64
  const table = b.param('model.embed_tokens.weight', [vocabRows, H], INIT.tokenEmbedding); // [V, H] f32
  const embeds = b.op('Gather', [table, ids], { axis: 0 }, { outputs: [b.outName('inputs_embeds')] }); // [B, S, H] f32
  b.output('inputs_embeds', embeds, 'float', ['batch_size', 'sequence_length', H]);
  return b;
}
