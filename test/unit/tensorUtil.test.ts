import assert from 'node:assert/strict';
import { test } from 'node:test';
import { f16BitsToF32, f32ToF16Bits, fromFloat16, toFloat16 } from '../../server/src/runtime/tensorUtil';

test('float16 conversion: exact values, rounding, specials', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [0.5, 0x3800],
    [5.960464477539063e-8, 0x0001], // smallest subnormal
    [70000, 0x7c00], // overflow -> Inf
    [1 + 2 ** -11, 0x3c00], // tie rounds to even
    [1 + 3 * 2 ** -11, 0x3c02],
  ];
  for (const [v, bits] of cases) assert.equal(f32ToF16Bits(v), bits, `f32ToF16(${v})`);
  assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  assert.equal(f16BitsToF32(0x7c00), Infinity);
  const xs = Float32Array.from([0.1, -3.25, 1000, 1e-3]);
  const back = fromFloat16(toFloat16(xs));
  xs.forEach((x, i) => assert.ok(Math.abs(back[i] - x) <= Math.abs(x) * 1e-3, `${x} -> ${back[i]}`));
});
