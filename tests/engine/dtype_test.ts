/**
 * dtype helpers (CPU only). The safetensors tests check a few hand-computed rounding cases through
 * the file format; here the conversions are checked exhaustively over all 65536 16-bit patterns,
 * plus the dtype table and the unsupported-dtype error.
 */
import {
  bf16ToF32,
  checkDType,
  type DType,
  DTYPE_BYTES,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  isHalf,
} from "../../engine/dtype.ts";
import { assertThrows } from "../_assert_close.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const ALL_BITS = Uint16Array.from({ length: 65536 }, (_, i) => i);
const hex = (v: number) => `0x${v.toString(16).padStart(4, "0")}`;

Deno.test("dtype: table and isHalf", () => {
  const want: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, u32: 4 };
  for (const [k, v] of Object.entries(want)) check(DTYPE_BYTES[k as DType] === v, `${k} bytes`);
  check(isHalf("f16") && isHalf("bf16"), "halves");
  check(!isHalf("f32") && !isHalf("i32") && !isHalf("u32"), "not halves");
});

Deno.test("dtype: checkDType names the op, the dtype and the supported list", async () => {
  checkDType("matmul", "f32", ["f32", "f16"]);
  const e = await assertThrows(
    () => checkDType("matmul", "i32", ["f32", "f16"]),
    "matmul",
    "unsupported dtype i32",
    "f32, f16",
  );
  check(e instanceof TypeError, "TypeError");
});

Deno.test("dtype: f16 -> f32 -> f16 round-trips every bit pattern (NaN stays NaN)", () => {
  const wide = f16ToF32(ALL_BITS);
  const back = f32ToF16(wide);
  for (let i = 0; i < 65536; i++) {
    const isNaN16 = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (isNaN16) {
      check(Number.isNaN(wide[i]!), `${hex(i)} widens to NaN`);
      check((back[i]! & 0x7c00) === 0x7c00 && (back[i]! & 0x3ff) !== 0, `${hex(i)} NaN kept`);
      continue;
    }
    check(back[i] === i, `f16 ${hex(i)} -> ${wide[i]} -> ${hex(back[i]!)}`);
  }
  // spot values of the widening
  check(wide[0x3c00] === 1 && wide[0xc000] === -2 && wide[0x7bff] === 65504, "normals");
  check(wide[0x0001] === 2 ** -24 && Object.is(wide[0x8000], -0), "subnormal, -0");
  check(wide[0x7c00] === Infinity && wide[0xfc00] === -Infinity, "infinities");
});

Deno.test("dtype: bf16 -> f32 -> bf16 round-trips every bit pattern (NaN quieted)", () => {
  const wide = bf16ToF32(ALL_BITS);
  const back = f32ToBf16(wide);
  for (let i = 0; i < 65536; i++) {
    const isNaN16 = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
    if (isNaN16) {
      check(Number.isNaN(wide[i]!), `${hex(i)} widens to NaN`);
      check(back[i] === (i | 0x40), `bf16 NaN ${hex(i)} -> ${hex(back[i]!)}`);
      continue;
    }
    check(back[i] === i, `bf16 ${hex(i)} -> ${wide[i]} -> ${hex(back[i]!)}`);
  }
});

Deno.test("dtype: f32 -> f16/bf16 rounds within half an ulp", () => {
  // Random f32 values in the f16 normal range: the chosen half must be a nearest one.
  const xs = new Float32Array(4096);
  for (let i = 0; i < xs.length; i++) {
    xs[i] = (Math.sin(i * 12.9898) * 43758.5453 % 1) * 2 ** ((i % 28) - 14);
  }
  const h = f16ToF32(f32ToF16(xs));
  const b = bf16ToF32(f32ToBf16(xs));
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    // relative rounding error is at most half an ulp: 2^-11 for f16, 2^-8 for bf16
    const ah = Math.abs(x) >= 2 ** -14 ? Math.abs(h[i]! - x) / Math.abs(x) : Math.abs(h[i]! - x);
    check(ah <= (Math.abs(x) >= 2 ** -14 ? 2 ** -11 : 2 ** -25), `f16 of ${x} = ${h[i]}`);
    if (x !== 0) {
      check(Math.abs(b[i]! - x) / Math.abs(x) <= 2 ** -8, `bf16 of ${x} = ${b[i]}`);
    }
  }
});
