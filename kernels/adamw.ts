/**
 * Optimizer kernels over flat f32 arenas (every parameter segment padded to a multiple of 64
 * elements, so every binding is vec4-aligned and its length a multiple of 4). A chunk larger than
 * one storage binding (one parameter larger than the chunk size) is processed as windows of
 * whole multiples of 64 elements, one dispatch each; the kernels only see their window:
 *
 * 1. {@linkcode sqNormPartialKernel}: partial sums of squares of a gradient chunk, one per
 *    workgroup (grid-stride loop with vec4 loads and a vec4 accumulator, then a tree reduction
 *    in workgroup memory). Parameters: `[n4, partialOffset]`; grid `[groups, 1, 1]`.
 * 2. {@linkcode sqNormFinalKernel}: one workgroup sums the partials `part[first ..
 *    first + count)` and writes the L2 norm `sqrt(Σ)` to `out[0]`. Parameters: `[count, first,
 *    mode]`; grid `[1, 1, 1]`. When the partials are bound as several windows, one dispatch per
 *    window: `mode` bit 0 adds `out[0]` (the sum so far) to the window's sum, bit 1 takes the
 *    square root (the last window); a single dispatch uses mode 2.
 * 3. {@linkcode adamwKernel}: the fused AdamW update of one chunk (PyTorch `_single_tensor_adam`
 *    order of operations, in f32): optional clip `g *= min(maxNorm / (norm + 1e-6), 1)` with the
 *    norm read from a GPU buffer; `p *= 1 − lr·wd`; `m = lerp(m, g, 1 − β1)`;
 *    `v = v·β2 + (1 − β2)·g·g`; `p += (−stepSize·m) / (sqrt(v) / sqrt(1 − β2^s) + eps)`.
 *    Parameters: `[n4, clip, decay, w1 = 1 − β1, β2, w2 = 1 − β2, stepSize, bc2sqrt, eps,
 *    maxNorm]`; the bias corrections are computed on the CPU in float64.
 * 4. {@linkcode emaKernel}: `ema = ema·d + src·(1 − d)`. Parameters: `[n4, d, 1 − d]`.
 *
 * Nothing shape-dependent is compiled in: one pipeline per kernel.
 *
 * @module
 */
import { type KernelSpec, paramsWGSL } from "../engine/kernel.ts";

/** Invocations per workgroup of every optimizer kernel. */
export const OPTIM_WG = 64;
/** Maximum workgroups (= partial sums) of the norm kernel per chunk. */
export const NORM_GROUPS = 4096;

const MAIN = `@compute @workgroup_size(${OPTIM_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {`;

const TREE = `  sh[lid] = acc;
  workgroupBarrier();
  for (var s = ${OPTIM_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { sh[lid] = sh[lid] + sh[lid + s]; }
    workgroupBarrier();
  }`;

const cache = new Map<string, KernelSpec>();
function cached(name: string, build: () => Omit<KernelSpec, "name">): KernelSpec {
  let k = cache.get(name);
  if (!k) cache.set(name, k = { name, ...build() });
  return k;
}

/** Partial sums of squares of a vec4 chunk (see the module doc). */
export function sqNormPartialKernel(): KernelSpec {
  return cached("optim_sqnorm_partial", () => ({
    inputs: 1,
    outputs: 1,
    code: `${paramsWGSL(4)}
@group(0) @binding(1) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
var<workgroup> sh: array<f32, ${OPTIM_WG}>;
${MAIN}
  let n4 = pu(0u);
  let stride = nwg.x * ${OPTIM_WG}u;
  var acc4 = vec4<f32>(0.0);
  for (var i = wg.x * ${OPTIM_WG}u + lid; i < n4; i += stride) {
    let x = g[i];
    acc4 += x * x;
  }
  let acc = (acc4.x + acc4.y) + (acc4.z + acc4.w);
${TREE}
  if (lid == 0u) { part[pu(1u) + wg.x] = sh[0]; }
}`,
  }));
}

/** Sum of the partials of one window, square root after the last, into `out[0]`. */
export function sqNormFinalKernel(): KernelSpec {
  return cached("optim_sqnorm_final", () => ({
    inputs: 1,
    outputs: 1,
    code: `${paramsWGSL(4)}
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
var<workgroup> sh: array<f32, ${OPTIM_WG}>;
${MAIN}
  let count = pu(0u);
  var acc = 0.0;
  for (var i = lid; i < count; i += ${OPTIM_WG}u) { acc += part[pu(1u) + i]; }
${TREE}
  if (lid == 0u) {
    var total = sh[0];
    if ((pu(2u) & 1u) != 0u) { total += out[0]; }
    out[0] = select(total, sqrt(total), (pu(2u) & 2u) != 0u);
  }
}`,
  }));
}

/** The fused clip + decay + moments + update kernel of one arena chunk. */
export function adamwKernel(): KernelSpec {
  return cached("optim_adamw_v4", () => ({
    inputs: 2,
    outputs: 3,
    code: `${paramsWGSL(12)}
@group(0) @binding(1) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> nrm: array<f32>;
@group(0) @binding(3) var<storage, read_write> p: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;
${MAIN}
  let i = (wg.y * nwg.x + wg.x) * ${OPTIM_WG}u + lid;
  if (i >= pu(0u)) { return; }
  var gi = g[i];
  if (pu(1u) != 0u) {
    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6), clamped to 1
    gi = gi * min(pf(9u) / (nrm[0] + 1e-6), 1.0);
  }
  // exp_avg.lerp_(grad, 1 - beta1), with ATen's two-sided lerp formula
  let w1 = pf(3u);
  var mi = m[i];
  if (w1 < 0.5) { mi = mi + w1 * (gi - mi); } else { mi = gi - (gi - mi) * (1.0 - w1); }
  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value = 1 - beta2)
  let vi = v[i] * pf(4u) + pf(5u) * gi * gi;
  // denom = sqrt(v) / sqrt(bias_correction2) + eps; p.addcdiv_(m, denom, value = -step_size)
  let denom = sqrt(vi) / pf(7u) + pf(8u);
  let pd = p[i] * pf(2u);
  p[i] = pd + (-pf(6u) * mi) / denom;
  m[i] = mi;
  v[i] = vi;
}`,
  }));
}

/** Exponential moving average of one arena chunk. */
export function emaKernel(): KernelSpec {
  return cached("optim_ema_v4", () => ({
    inputs: 1,
    outputs: 1,
    code: `${paramsWGSL(4)}
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> ema: array<vec4<f32>>;
${MAIN}
  let i = (wg.y * nwg.x + wg.x) * ${OPTIM_WG}u + lid;
  if (i >= pu(0u)) { return; }
  ema[i] = ema[i] * pf(1u) + src[i] * pf(2u);
}`,
  }));
}
