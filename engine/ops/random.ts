/**
 * Seeded, counter-based random tensors that are the same on every device.
 *
 * Element `i` of a random tensor is drawn from Threefry-2x32-20 with key = the 64-bit `seed`
 * (low word, high word) and counter = `(i, offset)`: no state, no sequence; the same
 * `(seed, offset, shape)` gives the same numbers on every GPU and in the CPU twins below
 * ({@linkcode uniformCpu}, {@linkcode normalCpu}). Use `offset` as a stream number (e.g. the
 * training step) to get independent draws from one seed.
 *
 * The ops are elementwise (no inputs), so a random tensor consumed by elementwise ops is fused
 * into their kernel and never stored.
 *
 * Precision:
 * - {@linkcode randUniform}: `u = (bits >> 8) · 2^-24` is exact on every device; with the default
 *   `[0, 1)` the GPU values equal the CPU twin bit for bit. Other ranges compute
 *   `low + (high - low) · u` in f32 (within 1 ulp of the CPU twin: a device may contract it to an
 *   FMA).
 * - {@linkcode randNormal}: Box–Muller on the two Threefry words of the element,
 *   `z = sqrt(-2 ln u1) · cos(2π u2)` with `u1 = ((w0 >> 8) + 1) · 2^-24` in (0, 1] and
 *   `u2 = (w1 >> 8) · 2^-24`. The cosine uses exact range reduction and polynomials, the log a
 *   series near 1, so results agree with the float64 CPU twin to a few ulp, bounded by the device's
 *   `log`/`sqrt` precision (≤ 1e-5 absolute in practice).
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { checkShape, numel, type Shape } from "../shape.ts";
import type { OpDef, Tensor } from "../tensor.ts";
import {
  RNG_HELPERS,
  THREEFRY_PARITY,
  THREEFRY_ROTATIONS,
  THREEFRY_ROUNDS,
  threefryExpr,
} from "../../kernels/rng.ts";

/** A 64-bit seed: a non-negative safe integer, or a bigint below 2^64. */
export type Seed = number | bigint;

/** Options of {@linkcode randUniform}. */
export interface UniformOptions {
  /** Random seed (the Threefry key). */
  seed: Seed;
  /** Counter word 1 (stream), an integer in [0, 2^32); default 0. */
  offset?: number;
  /** Lower bound (inclusive); default 0. */
  low?: number;
  /** Upper bound (exclusive); default 1. */
  high?: number;
}

/** Options of {@linkcode randNormal}. */
export interface NormalOptions {
  /** Random seed (the Threefry key). */
  seed: Seed;
  /** Counter word 1 (stream), an integer in [0, 2^32); default 0. */
  offset?: number;
  /** Mean; default 0. */
  mean?: number;
  /** Standard deviation; default 1. */
  std?: number;
}

/** Splits a seed into its two 32-bit key words `[lo, hi]`, validating it. */
export function seedWords(op: string, seed: Seed): [number, number] {
  if (typeof seed === "bigint") {
    if (seed < 0n || seed >= 1n << 64n) {
      throw new RangeError(`${op}: seed ${seed} must be in [0, 2^64)`);
    }
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(
      `${op}: seed ${seed} must be an integer in [0, 2^53) (or a bigint below 2^64)`,
    );
  }
  return [seed % 2 ** 32, Math.floor(seed / 2 ** 32)];
}

function checkOffset(op: string, offset: number): number {
  if (!Number.isInteger(offset) || offset < 0 || offset > 0xffffffff) {
    throw new RangeError(`${op}: offset ${offset} must be an integer in [0, 2^32)`);
  }
  return offset;
}

/** 16-bit halves of the key words and the offset: exact as f32 scalars. */
function keyScalars(op: string, seed: Seed, offset: number): number[] {
  const [lo, hi] = seedWords(op, seed);
  const off = checkOffset(op, offset);
  return [lo & 0xffff, lo >>> 16, hi & 0xffff, hi >>> 16, off & 0xffff, off >>> 16];
}

function checkElements(op: string, shape: Shape): void {
  checkShape(op, shape);
  if (numel(shape) > 0xffffffff) {
    throw new RangeError(`${op}: more than 2^32 elements (the element index is one counter word)`);
  }
}

interface UniformAttrs {
  key: number[];
  low: number;
  high: number;
}

const UNIFORM: OpDef<UniformAttrs> = {
  name: "rand_uniform",
  kind: "elementwise",
  helpers: RNG_HELPERS,
  scalars: (a) => [...a.key, a.low, a.high],
  expr: (_x, s) => `(${s[6]} + (${s[7]} - ${s[6]}) * rng_u01(${threefryExpr(s, "IDX")}.a))`,
};

interface NormalAttrs {
  key: number[];
  mean: number;
  std: number;
}

const NORMAL: OpDef<NormalAttrs> = {
  name: "rand_normal",
  kind: "elementwise",
  helpers: RNG_HELPERS,
  scalars: (a) => [...a.key, a.mean, a.std],
  expr: (_x, s) => `(${s[6]} + ${s[7]} * rng_box_muller(${threefryExpr(s, "IDX")}))`,
};

/**
 * Uniform random values in `[low, high)` (f32), reproducible across devices.
 *
 * @example
 * ```ts ignore
 * const noise = randUniform([4, 16], { seed: 42, offset: step });
 * ```
 */
export function randUniform(shape: Shape, opts: UniformOptions): Tensor {
  checkElements("randUniform", shape);
  const { seed, offset = 0, low = 0, high = 1 } = opts;
  if (!(high >= low)) throw new RangeError(`randUniform: high ${high} < low ${low}`);
  return apply1(UNIFORM, [], { key: keyScalars("randUniform", seed, offset), low, high }, {
    shape,
    dtype: "f32",
  });
}

/**
 * Normal random values (Box–Muller), reproducible across devices up to a few ulp.
 *
 * @example
 * ```ts ignore
 * const eps = randNormal(latents.shape, { seed: 7, offset: step });
 * ```
 */
export function randNormal(shape: Shape, opts: NormalOptions): Tensor {
  checkElements("randNormal", shape);
  const { seed, offset = 0, mean = 0, std = 1 } = opts;
  if (!(std >= 0)) throw new RangeError(`randNormal: std ${std} must be >= 0`);
  return apply1(NORMAL, [], { key: keyScalars("randNormal", seed, offset), mean, std }, {
    shape,
    dtype: "f32",
  });
}

// ---------------------------------------------------------------- CPU twin

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

/**
 * Threefry-2x32-20 on the CPU: the two output words for `key` and `counter` (u32 pairs).
 * Bit-identical to the WGSL `rng_threefry`.
 */
export function threefry2x32(
  key: readonly [number, number],
  counter: readonly [number, number],
): [number, number] {
  const ks = [key[0] >>> 0, key[1] >>> 0, (THREEFRY_PARITY ^ key[0] ^ key[1]) >>> 0];
  let x0 = (counter[0] + ks[0]!) >>> 0;
  let x1 = (counter[1] + ks[1]!) >>> 0;
  for (let r = 0; r < THREEFRY_ROUNDS; r++) {
    x0 = (x0 + x1) >>> 0;
    x1 = (rotl(x1, THREEFRY_ROTATIONS[r % 8]!) ^ x0) >>> 0;
    if (r % 4 === 3) {
      const i = (r + 1) / 4;
      x0 = (x0 + ks[i % 3]!) >>> 0;
      x1 = (x1 + ks[(i + 1) % 3]! + i) >>> 0;
    }
  }
  return [x0, x1];
}

/** CPU twin of {@linkcode randUniform}: the same f32 values (bit-exact for `[0, 1)`). */
export function uniformCpu(shape: Shape | number, opts: UniformOptions): Float32Array {
  const n = typeof shape === "number" ? shape : numel(shape);
  const { seed, offset = 0, low = 0, high = 1 } = opts;
  const key = seedWords("uniformCpu", seed);
  const off = checkOffset("uniformCpu", offset);
  const f = Math.fround;
  const lo = f(low);
  const span = f(f(high) - lo);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = (threefry2x32(key, [i, off])[0] >>> 8) * 2 ** -24;
    out[i] = f(lo + f(span * u));
  }
  return out;
}

/**
 * CPU twin of {@linkcode randNormal}, from the same Threefry words, computed in float64 then
 * rounded to f32 (the GPU agrees to a few ulp).
 */
export function normalCpu(shape: Shape | number, opts: NormalOptions): Float32Array {
  const n = typeof shape === "number" ? shape : numel(shape);
  const { seed, offset = 0, mean = 0, std = 1 } = opts;
  const key = seedWords("normalCpu", seed);
  const off = checkOffset("normalCpu", offset);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const [w0, w1] = threefry2x32(key, [i, off]);
    const u1 = ((w0 >>> 8) + 1) * 2 ** -24;
    const u2 = (w1 >>> 8) * 2 ** -24;
    const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    out[i] = Math.fround(mean) + Math.fround(std) * z;
  }
  return out;
}
