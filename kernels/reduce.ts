/**
 * Reductions over the middle axis of a dense `[outer, R, inner]` tensor → `[outer, inner]`.
 *
 * Variants (compiled in: the reduce op and the variant; sizes are parameters):
 * 1. `row` (inner == 1): one workgroup of {@linkcode REDUCE_WG} invocations per row; each
 *    accumulates a strided part of the row (vec4 loads when R % 4 == 0 and aligned), then a
 *    tree reduction in workgroup memory.
 * 2. `col` (inner > 1): one invocation per output element walks R with stride `inner`; adjacent
 *    invocations read adjacent addresses.
 *
 * Parameters: [count, R, inner, inOffset, outOffset, accumulate]: `count` is the number of rows
 * (`row`) or of outputs (`col`, output `id` is `[id / inner, id % inner]`; `outer · inner` for the
 * whole tensor, fewer for a block of one outer index). With `accumulate` ≠ 0 the kernel combines
 * its result with the value already in the output instead of overwriting it (`col` continues its
 * sequential walk from that value, so the result is the same to the bit): an op whose reduced
 * range does not fit one storage binding reduces it in segments, each bound as a window
 * (`engine/window.ts`), into the same output.
 *
 * @module
 */
import { wgsl } from "npm:wgsl-preprocessor@1.0.1/wgsl-preprocessor.js";
import { type KernelSpec, paramsWGSL } from "../engine/kernel.ts";

/** Workgroup size of the row variant. */
export const REDUCE_WG = 64;

/** The reduce ops a kernel can apply. */
export type ReduceKind = "sum" | "max" | "min";

const INIT: Record<ReduceKind, string> = {
  sum: "0.0",
  max: "-3.4028234663852886e38",
  min: "3.4028234663852886e38",
};
const COMB: Record<ReduceKind, (a: string, b: string) => string> = {
  sum: (a, b) => `${a} + ${b}`,
  max: (a, b) => `max(${a}, ${b})`,
  min: (a, b) => `min(${a}, ${b})`,
};
const HORIZ: Record<ReduceKind, (v: string) => string> = {
  sum: (v) => `${v}.x + ${v}.y + ${v}.z + ${v}.w`,
  max: (v) => `max(max(${v}.x, ${v}.y), max(${v}.z, ${v}.w))`,
  min: (v) => `min(min(${v}.x, ${v}.y), min(${v}.z, ${v}.w))`,
};

const cache = new Map<string, KernelSpec>();

/** The kernel for one reduce op and variant. */
export function reduceKernel(kind: ReduceKind, variant: "row" | "row4" | "col"): KernelSpec {
  const key = `${kind}/${variant}`;
  let k = cache.get(key);
  if (k) return k;
  const c = COMB[kind];
  const v4 = variant === "row4";
  // Variants through wgsl-preprocessor: #if picks the column walk, or the row walk with scalar
  // or vec4 loads; the reduce op is spliced in as text.
  const body = variant === "col"
    ? wgsl`@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let id = (wg.y * nwg.x + wg.x) * 64u + lid;
  let r = pu(1u); let inner = pu(2u);
  if (id >= pu(0u)) { return; }
  let o = id / inner; let i = id % inner;
  var base = pu(3u) + o * r * inner + i;
  var acc: f32 = ${INIT[kind]};
  if (pu(5u) != 0u) { acc = y[pu(4u) + id]; }
  for (var j = 0u; j < r; j++) { acc = ${c("acc", "x[base]")}; base += inner; }
  y[pu(4u) + id] = acc;
}`
    : wgsl`@group(0) @binding(1) var<storage, read> x: array<${v4 ? "vec4<f32>" : "f32"}>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, ${REDUCE_WG}>;
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  let outer = pu(0u); let r = pu(1u);
  if (row >= outer) { return; }
#if ${v4}
  let n4 = r / 4u; let base = pu(3u) / 4u + row * n4;
  var acc4 = vec4<f32>(${INIT[kind]});
  for (var j = lid; j < n4; j += ${REDUCE_WG}u) { acc4 = ${c("acc4", "x[base + j]")}; }
  var acc: f32 = ${HORIZ[kind]("acc4")};
#else
  let base = pu(3u) + row * r;
  var acc: f32 = ${INIT[kind]};
  for (var j = lid; j < r; j += ${REDUCE_WG}u) { acc = ${c("acc", "x[base + j]")}; }
#endif
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${REDUCE_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] = ${c("part[lid]", "part[lid + s]")}; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    var v = part[0];
    if (pu(5u) != 0u) { v = ${c("y[pu(4u) + row]", "v")}; }
    y[pu(4u) + row] = v;
  }
}`;
  k = { name: `reduce_${kind}_${variant}`, code: paramsWGSL(8) + body, inputs: 1, outputs: 1 };
  cache.set(key, k);
  return k;
}
