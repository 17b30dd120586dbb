/**
 * Softmax and log-softmax along the middle axis of a dense `[outer, n, inner]` tensor, forward
 * and backward, on the row skeleton of `kernels/norm.ts` (layouts `row`, `row4`, `col`).
 *
 * Forward: one pass keeps an online (max, Σ exp(x - max)) pair per invocation, rescaling the sum
 * when the max grows (numerically stable, one exp per element); the pairs are merged in the
 * workgroup reduction; a second pass writes `exp(x - max) / Σ` or `(x - max) - log Σ`.
 * Parameters: [rows, n, inner, xOff, yOff].
 *
 * Backward, from the output y and its gradient dy: softmax `dx = y · (dy - Σ dy·y)`,
 * log-softmax `dx = dy - exp(y) · Σ dy`. Parameters: [rows, n, inner, yOff, gOff, dxOff].
 *
 * Offsets are in elements of the binding's type (vec4 units for `row4`); a dispatch may cover a
 * block of the rows, each operand then bound as a window (see `kernels/norm.ts`).
 *
 * @module
 */
import type { KernelSpec } from "../engine/kernel.ts";
import { rowKernel, type RowLayout } from "./norm.ts";

const LOWEST = "-3.4028234663852886e38";

const MERGE = `fn smx_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}
fn add_f(a: f32, b: f32) -> f32 { return a + b; }`;

const fwdCache = new Map<string, KernelSpec>();

/** The forward kernel. Bindings: x → y. */
export function softmaxFwdKernel(log: boolean, layout: RowLayout): KernelSpec {
  const key = `${log ? "log" : "exp"}_${layout}`;
  let k = fwdCache.get(key);
  if (k) return k;
  const body = layout === "row4"
    ? `let v = x[xo + e];
    let m = max(a.x, max(max(v.x, v.y), max(v.z, v.w)));
    a = vec2<f32>(m, a.y * exp(a.x - m) + hsum(exp(v - m)));`
    : `let v = x[xo + e];
    if (v > a.x) { a = vec2<f32>(v, a.y * exp(a.x - v) + 1.0); } else { a.y += exp(v - a.x); }`;
  k = rowKernel({
    name: `softmax_fwd_${key}`,
    layout,
    bindings: `@group(0) @binding(1) var<storage, read> x: array<ET>;
@group(0) @binding(2) var<storage, read_write> y: array<ET>;`,
    inputs: 1,
    outputs: 1,
    words: 5,
    helpers: MERGE,
    accType: "vec2<f32>",
    accInit: `vec2<f32>(${LOWEST}, 0.0)`,
    combine: "smx_merge",
    pre: `let xo = pu(3u); let yo = pu(4u);`,
    body,
    post: log ? `let m = r.x; let ls = log(r.y);` : `let m = r.x; let inv = 1.0 / r.y;`,
    write: log ? `y[yo + e] = (x[xo + e] - m) - ls;` : `y[yo + e] = exp(x[xo + e] - m) * inv;`,
  });
  fwdCache.set(key, k);
  return k;
}

const bwdCache = new Map<string, KernelSpec>();

/** The backward kernel. Bindings: y, dy → dx. */
export function softmaxBwdKernel(log: boolean, layout: RowLayout): KernelSpec {
  const key = `${log ? "log" : "exp"}_${layout}`;
  let k = bwdCache.get(key);
  if (k) return k;
  k = rowKernel({
    name: `softmax_bwd_${key}`,
    layout,
    bindings: `@group(0) @binding(1) var<storage, read> y: array<ET>;
@group(0) @binding(2) var<storage, read> gy: array<ET>;
@group(0) @binding(3) var<storage, read_write> dx: array<ET>;`,
    inputs: 2,
    outputs: 1,
    words: 6,
    helpers: MERGE,
    accType: "f32",
    accInit: "0.0",
    combine: "add_f",
    pre: `let yo = pu(3u); let go = pu(4u); let dxo = pu(5u);`,
    body: log ? `a += hsum(gy[go + e]);` : `a += hsum(gy[go + e] * y[yo + e]);`,
    post: ``,
    write: log
      ? `dx[dxo + e] = gy[go + e] - exp(y[yo + e]) * r;`
      : `let yv = y[yo + e]; dx[dxo + e] = yv * (gy[go + e] - r);`,
  });
  bwdCache.set(key, k);
  return k;
}
