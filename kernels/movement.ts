/**
 * Data-movement kernels: strided copy (concat and dense copies), gather along an axis, its
 * deterministic scatter-add backward, and f32 → f16/bf16 storage conversion.
 *
 * All of them address 32-bit words: f32/i32/u32 are copied as raw bits (so integer tensors keep
 * their exact values), f16/bf16 sources are read as packed `u32` pairs and widened to f32 bits.
 * Sizes, strides and offsets are run-time parameters; what is compiled in is the source element
 * type, the vec4 flag and (for gather) the index type.
 *
 * @module
 */
import { type KernelSpec, paramsWGSL } from "../engine/kernel.ts";

/** Invocations per workgroup of every kernel in this file. */
export const MOVE_WG = 64;

/** How a kernel reads its source: raw 32-bit words, or packed halves widened to f32 bits. */
export type SourceMode = "raw" | "f16" | "bf16";

/** Axes of the strided copy (shapes are coalesced and padded to this many). */
export const COPY_RANK = 6;

const cache = new Map<string, KernelSpec>();

function cached(key: string, build: () => KernelSpec): KernelSpec {
  let k = cache.get(key);
  if (!k) cache.set(key, k = build());
  return k;
}

const HEAD = `fn flat_id(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * ${MOVE_WG}u + lid;
}`;

const MAIN = `@compute @workgroup_size(${MOVE_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {`;

/** WGSL function `load(e: u32) -> u32` returning the f32 (or raw) bits of source element `e`. */
function loader(mode: SourceMode, buf: string): string {
  switch (mode) {
    case "raw":
      return `fn load(e: u32) -> u32 { return ${buf}[e]; }`;
    case "f16":
      return `fn load(e: u32) -> u32 { return bitcast<u32>(unpack2x16float(${buf}[e >> 1u])[e & 1u]); }`;
    case "bf16":
      return `fn load(e: u32) -> u32 { return ((${buf}[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu) << 16u; }`;
  }
}

/**
 * Strided copy: `dst[dOff + Σ c_d·dStride_d] = src[sOff + Σ c_d·sStride_d]` over a 6-axis shape.
 * Each invocation copies a run of 4 elements along the innermost axis (index math once per run);
 * the `vec4` variant (raw source, innermost strides 1, sizes/offsets/strides multiples of 4) moves
 * one `vec4<u32>` per invocation.
 *
 * Parameter words: `[runs, sOff, dOff, runsPerRow, then per axis d = 0..5: size, sStride,
 * dStride]` (22 words). Dispatch `runs` invocations, `runsPerRow = ceil(size5 / 4)`.
 */
export function stridedCopyKernel(mode: SourceMode, vec4: boolean): KernelSpec {
  if (vec4 && mode !== "raw") throw new Error("internal: vec4 strided copy needs a raw source");
  return cached(`copy/${mode}/${vec4}`, () => {
    const T = vec4 ? "vec4<u32>" : "u32";
    const decomp: string[] = [];
    for (let d = COPY_RANK - 2; d >= 0; d--) {
      const b = 4 + 3 * d;
      decomp.push(
        `{ let c = r % pu(${b}u); r = r / pu(${b}u); s += c * pu(${b + 1}u); t += c * pu(${
          b + 2
        }u); }`,
      );
    }
    const inner = 4 + 3 * (COPY_RANK - 1);
    const copyRun = vec4 ? `dst[t / 4u + k] = src[s / 4u + k];` : `let e0 = k * 4u;
  let sz = pu(${inner}u);
  let ss = pu(${inner + 1}u);
  let ds = pu(${inner + 2}u);
  for (var j = 0u; j < 4u; j++) {
    let e = e0 + j;
    if (e >= sz) { break; }
    dst[t + e * ds] = load(s + e * ss);
  }`;
    const code = `${paramsWGSL(24)}
@group(0) @binding(1) var<storage, read> src: array<${T}>;
@group(0) @binding(2) var<storage, read_write> dst: array<${T}>;
${HEAD}
${vec4 ? "" : loader(mode, "src")}
${MAIN}
  let id = flat_id(wg, nwg, lid);
  if (id >= pu(0u)) { return; }
  let k = id % pu(3u);
  var r = id / pu(3u);
  var s = pu(1u);
  var t = pu(2u);
  ${decomp.join("\n  ")}
  ${copyRun}
}`;
    return { name: `strided_copy_${mode}${vec4 ? "_v4" : ""}`, code, inputs: 1, outputs: 1 };
  });
}

/** Index element types gather accepts. */
export type IndexType = "i32" | "u32";

function indexFn(itype: IndexType): string {
  // clamps into [0, n - 1] (n >= 1 is checked when the op is built)
  return itype === "i32"
    ? `fn index_at(j: u32, n: u32) -> u32 { return u32(clamp(bitcast<i32>(idx[pu(4u) + j]), 0i, i32(n) - 1i)); }`
    : `fn index_at(j: u32, n: u32) -> u32 { return min(idx[pu(4u) + j], n - 1u); }`;
}

/**
 * Gather (index_select) from a dense `[outer, n, inner]` source into a dense
 * `[outer, nIdx, inner]` output: `out[o, j, i] = x[o, clamp(idx[j], 0, n - 1), i]`. Each
 * invocation writes a run of 4 inner elements (or one `vec4` in the vec4 variant: raw source,
 * `inner % 4 == 0`, source offset % 4 == 0).
 *
 * One dispatch covers output rows `[rowBase, rowBase + runs / runsPerRow)` (row = `o·nIdx + j`)
 * and writes only the rows whose clamped index lies in `[rLo, rHi)` (a masked pass over one source
 * range, when the source is bound as windows). Offsets are element offsets into the bound windows
 * and may be "negative" (u32 wrap-around): they are added to before any division.
 *
 * Parameter words: `[runs, nIdx, inner, n, idxOff, xOff, runsPerRow, rowBase, outShift, rLo,
 * rHi]` (output element `e` of the op is `out[e - outShift]`).
 */
export function gatherKernel(mode: SourceMode, itype: IndexType, vec4: boolean): KernelSpec {
  if (vec4 && mode !== "raw") throw new Error("internal: vec4 gather needs a raw source");
  return cached(`gather/${mode}/${itype}/${vec4}`, () => {
    const T = vec4 ? "vec4<u32>" : "u32";
    const code = `${paramsWGSL(12)}
@group(0) @binding(1) var<storage, read> x: array<${T}>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<${T}>;
${HEAD}
${indexFn(itype)}
${vec4 ? "" : loader(mode, "x")}
${MAIN}
  let id = flat_id(wg, nwg, lid);
  if (id >= pu(0u)) { return; }
  let nIdx = pu(1u); let inner = pu(2u); let n = pu(3u);
  let k = id % pu(6u);
  let row = pu(7u) + id / pu(6u);   // = o * nIdx + j
  let o = row / nIdx;
  let j = row % nIdx;
  let r = index_at(j, n);
  if (r < pu(9u) || r >= pu(10u)) { return; }
  let src = pu(5u) + (o * n + r) * inner;
  let dst = row * inner - pu(8u);
  ${
      vec4 ? `out[dst / 4u + k] = x[src / 4u + k];` : `for (var q = 0u; q < 4u; q++) {
    let e = k * 4u + q;
    if (e >= inner) { break; }
    out[dst + e] = load(src + e);
  }`
    }
}`;
    return {
      name: `gather_${mode}_${itype}${vec4 ? "_v4" : ""}`,
      code,
      inputs: 2,
      outputs: 1,
    };
  });
}

/**
 * Backward of gather: scatter-add without atomics, deterministic. For each destination element
 * `gx[o, r, i]` one invocation sums, in index order, the gradient rows `g[o, j, i]` whose clamped
 * index `idx[j]` equals `r`. Cost O(numel(x) / 4 × nIdx) index reads (every invocation scans all
 * indices): fine for the sizes a training step uses, quadratic for huge vocabularies.
 * Each invocation handles 4 inner elements (one `vec4` when `inner % 4 == 0` and the gradient
 * offset is a multiple of 4).
 *
 * One dispatch covers output rows `[rowBase, rowBase + runs / runsPerRow)` (row = `o·n + r`) and
 * the gradient rows `j` in `[jLo, jHi)`; with `accumulate` set its sums start from what `out`
 * holds (a later pass over the next index range, when the gradient is bound as windows: the
 * additions happen in the same order as in one pass, so the result is the same).
 *
 * Parameter words: `[runs, nIdx, inner, n, idxOff, gOff, runsPerRow, rowBase, outShift, jLo, jHi,
 * accumulate]`; output dense `[outer, n, inner]` f32 (element `e` is `out[e - outShift]`).
 */
export function scatterAddKernel(itype: IndexType, vec4: boolean): KernelSpec {
  return cached(`scatter_add/${itype}/${vec4}`, () => {
    const T = vec4 ? "vec4<f32>" : "f32";
    const code = `${paramsWGSL(12)}
@group(0) @binding(1) var<storage, read> g: array<${T}>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<${T}>;
${HEAD}
${indexFn(itype)}
${MAIN}
  let id = flat_id(wg, nwg, lid);
  if (id >= pu(0u)) { return; }
  let nIdx = pu(1u); let inner = pu(2u); let n = pu(3u);
  let k = id % pu(6u);
  let row = pu(7u) + id / pu(6u);   // = o * n + r
  let o = row / n;
  let r = row % n;
  let j0 = pu(9u);
  let dst = row * inner - pu(8u);
  ${
      vec4
        ? `var acc = vec4<f32>(0.0);
  if (pu(11u) != 0u) { acc = out[dst / 4u + k]; }
  // the first gradient row of the range, in vec4 units (the element index is >= 0 in the window)
  let base = (pu(5u) + (o * nIdx + j0) * inner) / 4u + k;
  for (var j = j0; j < pu(10u); j++) {
    if (index_at(j, n) == r) { acc += g[base + (j - j0) * (inner / 4u)]; }
  }
  out[dst / 4u + k] = acc;`
        : `var acc = vec4<f32>(0.0);
  let e0 = k * 4u;
  let m = min(inner - e0, 4u);
  if (pu(11u) != 0u) {
    for (var q = 0u; q < m; q++) { acc[q] = out[dst + e0 + q]; }
  }
  let base = pu(5u) + o * nIdx * inner + e0;
  for (var j = j0; j < pu(10u); j++) {
    if (index_at(j, n) == r) {
      let b = base + j * inner;
      acc.x += g[b];
      if (m > 1u) { acc.y += g[b + 1u]; }
      if (m > 2u) { acc.z += g[b + 2u]; }
      if (m > 3u) { acc.w += g[b + 3u]; }
    }
  }
  for (var q = 0u; q < m; q++) { out[dst + e0 + q] = acc[q]; }`
    }
}`;
    return { name: `scatter_add_${itype}${vec4 ? "_v4" : ""}`, code, inputs: 2, outputs: 1 };
  });
}

/**
 * f32 → f16 / bf16 storage conversion with integer arithmetic only (round to nearest even,
 * overflow to ±inf, subnormals, quiet NaN), so the bits equal `engine/dtype.ts`'s CPU conversion
 * on every device. (WGSL's `pack2x16float` leaves the rounding direction to the implementation
 * and is indeterminate on overflow, hence the explicit version.) Each invocation packs two
 * elements into one `u32`; an odd tail is padded with zero bits.
 *
 * One dispatch converts the pairs `[pairBase, pairBase + pairs)`; output word `w` is
 * `out[w - outShift]` (the output bound as a window).
 *
 * Parameter words: `[n, xOff, pairBase, outShift, pairs]`; dispatch `pairs` invocations.
 */
export function castHalfKernel(dtype: "f16" | "bf16"): KernelSpec {
  return cached(`cast/${dtype}`, () => {
    const conv = dtype === "bf16"
      ? `fn conv(b: u32) -> u32 {
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) { return (b >> 16u) | 0x40u; }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}`
      : `fn conv(x: u32) -> u32 {
  let sign = (x >> 16u) & 0x8000u;
  let ex = i32((x >> 23u) & 0xffu);
  var mant = x & 0x7fffffu;
  if (ex == 255i) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = ex - 112i;            // ex - 127 + 15
  if (e >= 31i) { return sign | 0x7c00u; }
  if (e <= 0i) {
    if (e < -10i) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14i - e);
    var h = mant >> shift;
    let rem = mant & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u) != 0u)) { h += 1u; }
    return sign | h;
  }
  var h = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) { h += 1u; }
  return sign | h;
}`;
    const code = `${paramsWGSL(8)}
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${HEAD}
${conv}
${MAIN}
  let id = flat_id(wg, nwg, lid);
  if (id >= pu(4u)) { return; }
  let i = pu(2u) + id;
  let n = pu(0u);
  let e = 2u * i;
  if (e >= n) { return; }
  let lo = conv(x[pu(1u) + e]);
  var hi = 0u;
  if (e + 1u < n) { hi = conv(x[pu(1u) + e + 1u]); }
  out[i - pu(3u)] = lo | (hi << 16u);
}`;
    return { name: `cast_f32_${dtype}`, code, inputs: 1, outputs: 1 };
  });
}
