/**
 * Counter-based random numbers in WGSL: Threefry-2x32 with 20 rounds (Salmon et al., "Parallel
 * random numbers: as easy as 1, 2, 3", SC 2011). It uses only 32-bit add, xor and rotate, so every
 * device produces the same bits; `engine/ops/random.ts` has the CPU twin.
 *
 * The helpers are written for the fused elementwise kernel's type aliases `UT` (`u32` or
 * `vec4<u32>`) and `VT` (`f32` or `vec4<f32>`), so the random ops are ordinary elementwise ops
 * that fuse with their consumers, in both the scalar and the vec4 variant.
 *
 * - `rng_threefry(k0, k1, c0, c1)`: the two output words for key (k0, k1) and counter (c0, c1);
 * - `rng_word(lo16, hi16)`: rebuilds a u32 from two 16-bit halves passed as exact f32 scalars;
 * - `rng_u01(bits)`: `(bits >> 8) · 2^-24`, in [0, 1), exact;
 * - `rng_neg2log(u)`: `-2 ln u` for u in (0, 1], with a series near 1 (accurate where the
 *   Box–Muller radius is small);
 * - `rng_cos2pi(u)`: `cos(2π u)` for u a multiple of 2^-24, with exact range reduction and
 *   polynomials (does not rely on the device's `cos`, whose WGSL error bound is only 2^-11);
 * - `rng_box_muller(pair)`: a standard normal from the two words, u1 = u01(a) + 2^-24 in (0, 1].
 *
 * @module
 */

/** Threefry-2x32 rotation constants (Random123 `R_32x2`). */
export const THREEFRY_ROTATIONS: readonly number[] = [13, 15, 26, 6, 17, 29, 16, 24];
/** Skein key-schedule parity constant. */
export const THREEFRY_PARITY = 0x1bd11bda;
/** Rounds of the Threefry-2x32 variant used here. */
export const THREEFRY_ROUNDS = 20;

function threefryWGSL(): string {
  const lines: string[] = [];
  for (let r = 0; r < THREEFRY_ROUNDS; r++) {
    lines.push(`x0 = x0 + x1; x1 = rng_rotl(x1, ${THREEFRY_ROTATIONS[r % 8]}u) ^ x0;`);
    if (r % 4 === 3) {
      const i = (r + 1) / 4;
      lines.push(`x0 = x0 + k${i % 3}; x1 = x1 + k${(i + 1) % 3} + UT(${i}u);`);
    }
  }
  return lines.join("\n  ");
}

/** WGSL helpers of the random ops (one text, so fused kernels include it once). */
export const RNG_HELPERS = `
struct RngPair { a: UT, b: UT }
fn rng_rotl(x: UT, r: u32) -> UT { return (x << UT(r)) | (x >> UT(32u - r)); }
fn rng_threefry(k0: UT, k1: UT, c0: UT, c1: UT) -> RngPair {
  let k2 = k0 ^ k1 ^ UT(${THREEFRY_PARITY}u);
  var x0 = c0 + k0;
  var x1 = c1 + k1;
  ${threefryWGSL()}
  return RngPair(x0, x1);
}
fn rng_word(lo16: VT, hi16: VT) -> UT { return UT(lo16) | (UT(hi16) << UT(16u)); }
fn rng_u01(bits: UT) -> VT { return VT(bits >> UT(8u)) * 5.9604644775390625e-8; }
fn rng_neg2log(u: VT) -> VT {
  let v = 1.0 - u;
  let s = v * (1.0 + v * (0.5 + v * (0.33333334 + v * (0.25 + v * (0.2 + v * 0.16666667)))));
  return 2.0 * select(-log(u), s, v < VT(0.03125));
}
fn rng_cos2pi(u: VT) -> VT {
  let w = u - round(u);
  let q = round(4.0 * w);
  let t = 6.2831855 * (w - 0.25 * q);
  let t2 = t * t;
  let c = 1.0 + t2 * (-0.5 + t2 * (0.041666668 + t2 * (-0.0013888889 + t2 * (2.4801588e-5 +
    t2 * -2.7557319e-7))));
  let s = t * (1.0 + t2 * (-0.16666667 + t2 * (0.008333334 + t2 * (-1.984127e-4 +
    t2 * 2.7557319e-6))));
  let aq = abs(q);
  return select(select(select(s, -s, q > VT(0.5)), -c, aq > VT(1.5)), c, aq < VT(0.5));
}
fn rng_box_muller(p: RngPair) -> VT {
  let u1 = rng_u01(p.a) + 5.9604644775390625e-8;
  return sqrt(rng_neg2log(u1)) * rng_cos2pi(rng_u01(p.b));
}
`;

/**
 * WGSL expression of the two Threefry words for element `idx` (a `UT` expression): key words and
 * counter word 1 are rebuilt from 16-bit halves given as scalar names
 * `[keyLo.lo, keyLo.hi, keyHi.lo, keyHi.hi, ctr.lo, ctr.hi]`.
 */
export function threefryExpr(s: readonly string[], idx: string): string {
  return `rng_threefry(rng_word(${s[0]}, ${s[1]}), rng_word(${s[2]}, ${s[3]}), ${idx}, ` +
    `rng_word(${s[4]}, ${s[5]}))`;
}
