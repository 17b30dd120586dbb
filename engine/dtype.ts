/**
 * Element types. Compute happens in f32; f16 and bf16 are *storage* types (weights kept compact,
 * widened to f32 when a kernel loads them); i32/u32 carry indices and masks.
 *
 * @module
 */

/** An element type a tensor can be stored in. */
export type DType = "f32" | "f16" | "bf16" | "i32" | "u32";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  i32: 4,
  u32: 4,
};

/** True for the 16-bit float storage types, which kernels read as packed `u32` pairs. */
export function isHalf(dtype: DType): boolean {
  return dtype === "f16" || dtype === "bf16";
}

/** Throws a TypeError naming the op when `dtype` is not among `allowed`. */
export function checkDType(op: string, dtype: DType, allowed: readonly DType[]): void {
  if (!allowed.includes(dtype)) {
    throw new TypeError(
      `${op}: unsupported dtype ${dtype} (supported: ${allowed.join(", ")}); cast the input first`,
    );
  }
}

// ---- CPU conversions (used by uploads, safetensors and read-back) ----

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** Widens bf16 bits to f32. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const o = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) o[i] = bits[i]! << 16;
  return out;
}

/** Rounds f32 to bf16 bits (round to nearest even, NaN kept quiet). */
export function f32ToBf16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u[i]!;
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) {
      out[i] = (b >>> 16) | 0x40;
      continue;
    }
    out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Widens IEEE half bits to f32. */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i]!);
  return out;
}

/** Rounds f32 to IEEE half bits (round to nearest even). */
export function f32ToF16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = floatToHalf(x[i]!);
  return out;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function floatToHalf(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  e = h >> 10;
  return sign | h;
}
