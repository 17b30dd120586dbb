/**
 * Embeddings: the sinusoidal timestep embedding of diffusion models, and table lookups.
 *
 * @module
 */
import { apply1, fromData } from "../graph.ts";
import { fmtShape } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor } from "../tensor.ts";
import { checkDType } from "../dtype.ts";
import { mul, neg, zeros } from "./elementwise.ts";
import { reshape } from "./movement.ts";
import { concat, gather } from "./concat.ts";

// ---------------------------------------------------------------- accurate sin / cos

/**
 * sin/cos with explicit range reduction: `k = round(x · 2/π)`, `f = x - k·(π/2)` with π/2 split
 * in three f32 parts (Cody–Waite; the first has 8 significant bits, so `k·P1` is exact for
 * |k| < 2^16), then odd/even polynomials on [-π/4, π/4] and the quadrant `k mod 4`. Only
 * add/mul/round/floor, so the result is within a few f32 ulp of the true sin/cos of the f32 input
 * for |x| < 1e5 on every device. (WGSL's `sin`/`cos` only promise 2^-11 absolute error on
 * [-π, π], and GPUs reduce large arguments in f32: at x ≈ 1000, as timestep embeddings produce,
 * that is an error of ~1e-4.)
 */
const TRIG_HELPERS = `
struct TrigArg { f: VT, m: VT }
fn te_reduce(x: VT) -> TrigArg {
  let k = round(x * 0.63661975);
  let f = ((x - k * 1.5703125) - k * 0.0004838267923332751) - k * 2.5632829192545614e-12;
  return TrigArg(f, k - 4.0 * floor(k * 0.25));
}
fn te_cos_poly(t: VT) -> VT {
  let t2 = t * t;
  return 1.0 + t2 * (-0.5 + t2 * (0.041666668 + t2 * (-0.0013888889 + t2 * (2.4801588e-5 +
    t2 * -2.7557319e-7))));
}
fn te_sin_poly(t: VT) -> VT {
  let t2 = t * t;
  return t * (1.0 + t2 * (-0.16666667 + t2 * (0.008333334 + t2 * (-1.984127e-4 +
    t2 * 2.7557319e-6))));
}
fn te_cos(x: VT) -> VT {
  let a = te_reduce(x);
  let s = te_sin_poly(a.f);
  let c = te_cos_poly(a.f);
  return select(select(select(s, -c, a.m < VT(2.5)), -s, a.m < VT(1.5)), c, a.m < VT(0.5));
}
fn te_sin(x: VT) -> VT {
  let a = te_reduce(x);
  let s = te_sin_poly(a.f);
  let c = te_cos_poly(a.f);
  return select(select(select(-c, -s, a.m < VT(2.5)), c, a.m < VT(1.5)), s, a.m < VT(0.5));
}
`;

const PRECISE_COS: OpDef = {
  name: "precise_cos",
  kind: "elementwise",
  helpers: TRIG_HELPERS,
  expr: (a) => `te_cos(${a[0]})`,
  backward: ({ inputs, grads }) => [mul(grads[0]!, neg(preciseSin(inputs[0]!)))],
};

const PRECISE_SIN: OpDef = {
  name: "precise_sin",
  kind: "elementwise",
  helpers: TRIG_HELPERS,
  expr: (a) => `te_sin(${a[0]})`,
  backward: ({ inputs, grads }) => [mul(grads[0]!, preciseCos(inputs[0]!))],
};

function trig(op: OpDef, x: Tensor): Tensor {
  checkAlive(op.name, x);
  checkDType(op.name, x.dtype, ["f32", "f16", "bf16"]);
  return apply1(op, [x], undefined, { shape: x.shape, dtype: "f32" });
}

/** cos(x), accurate to a few ulp for |x| < 1e5 on every device (an elementwise op; fuses). */
export function preciseCos(x: Tensor): Tensor {
  return trig(PRECISE_COS, x);
}

/** sin(x), accurate to a few ulp for |x| < 1e5 on every device (an elementwise op; fuses). */
export function preciseSin(x: Tensor): Tensor {
  return trig(PRECISE_SIN, x);
}

// ---------------------------------------------------------------- timestep embedding

/**
 * Frequencies `exp(-ln(maxPeriod) · i / half)` for `i < half`, computed in float64 and rounded
 * to f32 (the constant table of {@linkcode timestepEmbedding}).
 */
export function timestepFrequencies(half: number, maxPeriod = 10000): Float32Array {
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = Math.exp((-Math.log(maxPeriod) * i) / half);
  return out;
}

/**
 * Sinusoidal timestep embedding (as in Open-Sora / Flux `timestep_embedding`):
 * `args = (timeFactor · t)[:, None] · freqs[None, :]`, `emb = concat([cos(args), sin(args)], -1)`
 * with cosines first, `half = floor(dim / 2)`; an odd `dim` gets a trailing zero column. The
 * arguments reach `timeFactor · t` (~1000), so sin/cos use {@linkcode preciseCos} /
 * {@linkcode preciseSin} (explicit range reduction) to match on every device.
 * `t` has shape `[N]`; the result is `[N, dim]` f32. Differentiable w.r.t. `t`.
 *
 * @example
 * ```ts ignore
 * const emb = timestepEmbedding(t, 256);   // [N, 256]
 * ```
 */
export function timestepEmbedding(
  t: Tensor,
  dim = 256,
  maxPeriod = 10000,
  timeFactor = 1000,
): Tensor {
  checkAlive("timestepEmbedding", t);
  if (t.rank !== 1) {
    throw new RangeError(`timestepEmbedding: t must have shape [N], got ${fmtShape(t.shape)}`);
  }
  if (!Number.isInteger(dim) || dim < 1) {
    throw new RangeError(`timestepEmbedding: dim ${dim} must be an integer >= 1`);
  }
  const n = t.shape[0]!;
  const half = Math.floor(dim / 2);
  const freqs = fromData(timestepFrequencies(half, maxPeriod), [1, half], "f32");
  const args = mul(reshape(mul(t, timeFactor), [n, 1]), freqs);
  const parts = [preciseCos(args), preciseSin(args)];
  if (dim % 2 === 1) parts.push(zeros([n, 1]));
  return concat(parts, -1);
}

/** Looks up rows of an embedding table `[vocab, dim]` for integer ids: `gather(table, ids, 0)`. */
export function embedding(table: Tensor, ids: Tensor | Int32Array | readonly number[]): Tensor {
  return gather(table, ids, 0);
}
