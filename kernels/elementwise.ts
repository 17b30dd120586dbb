/**
 * Fused elementwise kernel: one dispatch evaluates a whole chain (a small DAG) of elementwise ops.
 *
 * Layout: the output is dense f32 of `numel` elements. Each leaf (input) is either *direct*
 * (dense, same element order as the output: index = offset + i) or *strided* (index = offset +
 * Σ coord_d · stride_d over the output's coordinates, stride 0 for broadcast axes). Shapes are
 * coalesced to at most 6 axes before the call. The *vec4* variant (every leaf direct, f32 and
 * 4-aligned, numel % 4 == 0) handles four elements per invocation with vec4 loads.
 *
 * One dispatch computes the flat output positions `[base, base + count)` (all of them, unless the
 * scheduler splits a chunk whose tensors exceed one storage binding into windows): coordinates come
 * from the global position `i = base + local`, every leaf reads `offset + …` and the output is
 * written at `outOffset + i`, where the offsets are already shifted into the bound windows (u32
 * arithmetic wraps, so a shifted offset may be "negative").
 *
 * Parameter words: [count, base, shape0..5, outOffset, then per leaf: offset (+ 6 strides if
 * strided), then the f32 scalars]. What the text depends on (op chain, leaf modes and dtypes,
 * vec4) is the cache key; the sizes are not. In the vec4 variant `count`, `base` and the offsets
 * are in elements and multiples of 4.
 *
 * @module
 */
import { type KernelSpec, paramsWGSL } from "../engine/kernel.ts";
import type { DType } from "../engine/dtype.ts";

/** Invocations per workgroup of the elementwise kernels. */
export const EW_WORKGROUP = 64;
/** Maximum number of distinct leaves in one fused kernel. */
export const EW_MAX_LEAVES = 6;
/** Maximum number of scalar parameters in one fused kernel. */
export const EW_MAX_SCALARS = 12;
/** Axes the index math handles (shapes are coalesced and padded to this). */
export const EW_RANK = 6;

/** Parameter word of the first shape axis (after count and base). */
export const EW_SHAPE = 2;
/** Parameter word of the output offset (after the shape). */
export const EW_OUT = EW_SHAPE + EW_RANK;

/** One input of a fused kernel. */
export interface FusedLeaf {
  dtype: DType;
  strided: boolean;
}

/** One SSA statement: `let v<i> = <expr>;` */
export interface FusedStmt {
  expr: string;
}

/** A fused elementwise program, as built by the scheduler. */
export interface FusedProgram {
  leaves: FusedLeaf[];
  /** Statements in order; leaf values are `l0..`, statement results `v0..`; the last is the output. */
  stmts: FusedStmt[];
  /** Helper function sources used by the expressions. */
  helpers: string[];
  nScalars: number;
  vec4: boolean;
  /**
   * Box mode (scalar only): the dispatch covers a sub-box of the index space (its sizes in the
   * parameter words after the output offset, its first position as `base`) instead of a flat
   * range, so that a transposed leaf over the binding limit is tiled (engine/window.ts `boxes`).
   */
  box?: boolean;
  /** Names of the ops, for the kernel label. */
  label: string;
}

function leafDecl(i: number, leaf: FusedLeaf, vec4: boolean): string {
  const b = i + 1;
  if (leaf.dtype === "f32") {
    return `@group(0) @binding(${b}) var<storage, read> in${i}: array<${
      vec4 ? "vec4<f32>" : "f32"
    }>;`;
  }
  if (leaf.dtype === "i32") {
    return `@group(0) @binding(${b}) var<storage, read> in${i}: array<i32>;`;
  }
  return `@group(0) @binding(${b}) var<storage, read> in${i}: array<u32>;`;
}

function leafLoad(i: number, leaf: FusedLeaf, idx: string): string {
  switch (leaf.dtype) {
    case "f32":
      return `in${i}[${idx}]`;
    case "i32":
      return `f32(in${i}[${idx}])`;
    case "u32":
      return `f32(in${i}[${idx}])`;
    case "f16":
      return `unpack2x16float(in${i}[(${idx}) >> 1u])[(${idx}) & 1u]`;
    case "bf16":
      return `bitcast<f32>(((in${i}[(${idx}) >> 1u] >> (((${idx}) & 1u) * 16u)) & 0xffffu) << 16u)`;
  }
}

/** Builds the WGSL kernel of a fused program. */
export function fusedKernel(p: FusedProgram): KernelSpec {
  const { leaves, vec4 } = p;
  const box = p.box === true && !vec4;
  let w = EW_SHAPE + EW_RANK + 1 + (box ? EW_RANK : 0);
  const leafBase: number[] = [];
  for (const l of leaves) {
    leafBase.push(w);
    w += l.strided ? 1 + EW_RANK : 1;
  }
  const scalarBase = w;
  w += p.nScalars;
  const lines: string[] = [];
  lines.push(paramsWGSL(Math.ceil(w / 4) * 4));
  lines.push(`alias VT = ${vec4 ? "vec4<f32>" : "f32"};`);
  lines.push(`alias UT = ${vec4 ? "vec4<u32>" : "u32"};`);
  leaves.forEach((l, i) => lines.push(leafDecl(i, l, vec4)));
  lines.push(
    `@group(0) @binding(${leaves.length + 1}) var<storage, read_write> out: array<VT>;`,
  );
  for (const h of p.helpers) lines.push(h);
  const body: string[] = [];
  body.push(`let li = (wg.y * nwg.x + wg.x) * ${EW_WORKGROUP}u + lid;`);
  if (vec4) {
    body.push(`if (li >= pu(0u) / 4u) { return; }`);
    body.push(`let i = pu(1u) / 4u + li;`);
    body.push(`let IDX = vec4<u32>(4u * i, 4u * i + 1u, 4u * i + 2u, 4u * i + 3u);`);
  } else if (box) {
    // coordinates: the box's first position (base over the shape) plus li over the box's sizes
    body.push(`if (li >= pu(0u)) { return; }`);
    body.push(`var c: array<u32, ${EW_RANK}>;`);
    body.push(`var r = pu(1u);`);
    body.push(`var q = li;`);
    for (let d = EW_RANK - 1; d >= 0; d--) {
      const S = `pu(${EW_SHAPE + d}u)`, B = `pu(${EW_OUT + 1 + d}u)`;
      body.push(`c[${d}] = r % ${S} + q % ${B}; r = r / ${S}; q = q / ${B};`);
    }
    body.push(`var i = 0u;`);
    for (let d = 0; d < EW_RANK; d++) body.push(`i = i * pu(${EW_SHAPE + d}u) + c[${d}];`);
    body.push(`let IDX = i;`);
  } else {
    body.push(`if (li >= pu(0u)) { return; }`);
    body.push(`let i = pu(1u) + li;`);
    body.push(`let IDX = i;`);
    if (leaves.some((l) => l.strided)) {
      body.push(`var c: array<u32, ${EW_RANK}>;`);
      body.push(`var r = i;`);
      for (let d = EW_RANK - 1; d >= 0; d--) {
        body.push(`c[${d}] = r % pu(${EW_SHAPE + d}u); r = r / pu(${EW_SHAPE + d}u);`);
      }
    }
  }
  leaves.forEach((l, li) => {
    const base = leafBase[li]!;
    if (vec4) {
      body.push(`let l${li} = in${li}[pu(${base}u) / 4u + i];`);
      return;
    }
    let idx = `pu(${base}u) + i`;
    if (l.strided) {
      const terms = [...Array(EW_RANK).keys()].map((d) => `c[${d}] * pu(${base + 1 + d}u)`);
      idx = `pu(${base}u) + ${terms.join(" + ")}`;
    }
    body.push(`let x${li} = ${idx};`);
    body.push(`let l${li} = ${leafLoad(li, l, `x${li}`)};`);
  });
  for (let s = 0; s < p.nScalars; s++) {
    body.push(`let s${s} = VT(pf(${scalarBase + s}u));`);
  }
  p.stmts.forEach((st, si) => body.push(`let v${si} = ${st.expr};`));
  body.push(
    `out[${vec4 ? `pu(${EW_OUT}u) / 4u` : `pu(${EW_OUT}u)`} + i] = v${p.stmts.length - 1};`,
  );
  lines.push(
    `@compute @workgroup_size(${EW_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${body.join("\n  ")}
}`,
  );
  return {
    name: `ew${box ? "box" : ""}_${p.label}`.slice(0, 120),
    code: lines.join("\n"),
    inputs: leaves.length,
    outputs: 1,
  };
}

/**
 * Merges adjacent axes that are contiguous in the output and in every leaf, drops size-1 axes,
 * and pads to {@linkcode EW_RANK} axes. Returns null if more than EW_RANK axes remain.
 */
export function coalesce(
  shape: readonly number[],
  leafStrides: (readonly number[])[],
): { shape: number[]; strides: number[][] } | null {
  const dims: number[] = [];
  const st: number[][] = leafStrides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (
      last >= 0 &&
      leafStrides.every((s, li) => st[li]![last] === s[d]! * shape[d]!)
    ) {
      dims[last] = dims[last]! * shape[d]!;
      leafStrides.forEach((s, li) => st[li]![last] = s[d]!);
      continue;
    }
    dims.push(shape[d]!);
    leafStrides.forEach((s, li) => st[li]!.push(s[d]!));
  }
  if (dims.length > EW_RANK) return null;
  while (dims.length < EW_RANK) {
    dims.unshift(1);
    st.forEach((s) => s.unshift(0));
  }
  return { shape: dims, strides: st };
}
