/**
 * Normalisation kernels (LayerNorm, RMSNorm, RMSNorm over channels, GroupNorm), forward and
 * backward, plus the row-reduction skeleton they share with the softmax kernels.
 *
 * Every kernel works on a dense `[outer, n, inner]` tensor and reduces across the middle axis
 * (length `n`, stride `inner`): a *row* is one `(o, i)` pair, `rows` of them. Three layouts
 * (compiled in; the sizes are parameters):
 * 1. `row` (inner == 1, n > {@linkcode SHORT_ROW}): one workgroup of {@linkcode ROW_WG}
 *    invocations per row; each accumulates a strided part, then a tree reduction in workgroup
 *    memory gives the row statistics to every invocation, which then write their part.
 * 2. `row4`: the same with vec4 loads and stores (n % 4 == 0, offsets 4-aligned).
 * 3. `col` (inner > 1, or short rows): one invocation per row loops over n with stride `inner`;
 *    for inner > 1 adjacent invocations read adjacent addresses.
 *
 * Forward (`normFwdKernel`): one pass accumulates the statistics (LayerNorm: Σ(x-K), Σ(x-K)²,
 * shifted by the row's first element K so the single pass keeps its precision; RMSNorm: Σx²), a
 * second pass writes `y = (x - mean) · rstd · w[c] + b[c]`; the row's `mean` (0 for RMSNorm) and
 * `rstd` are saved as a second output `[rows, 2]` (interleaved, so the statistics of a block of
 * rows are one contiguous range) for the backward pass. The affine index `c` is the position along
 * the axis, or for GroupNorm (`grouped`) `(o % G) · cpg + j / S`.
 *
 * Forward parameters: [rows, n, inner, xOff, wOff, bOff, G, cpg, S, eps, yOff, statsOff, o0].
 *
 * Backward (`normBwdKernel`), with x̂ = (x - mean) · rstd and g = dy · w[c]:
 * `dx = rstd · (g - mean(g) - x̂ · mean(g · x̂))` (RMSNorm drops the `mean(g)` term).
 *
 * Backward parameters: [rows, n, inner, xOff, gOff, statsOff, wOff, G, cpg, S, dxOff, o0].
 *
 * A dispatch may cover only a block of the rows (an op whose tensors do not fit one storage binding
 * binds a window of each per block, `engine/window.ts`): `rows` counts the block's rows, the row
 * index `row` and the element indices start at the block's first row, every operand is read or
 * written at its offset parameter (the window's start already subtracted), and `o0` is the outer
 * index of the block's first row (the grouped affine index needs the absolute one). Offsets are in
 * elements of the binding's type (vec4 units for `row4` bindings).
 *
 * @module
 */
import { type KernelSpec, paramsWGSL } from "../engine/kernel.ts";

/** Invocations per workgroup of the `row` layouts (one row per workgroup). */
export const ROW_WG = 64;
/** Invocations per workgroup of the `col` layout (one row per invocation). */
export const COL_WG = 64;
/** Rows of at most this length (with inner == 1) use the per-invocation `col` layout. */
export const SHORT_ROW = 32;

/** How a row kernel maps rows to invocations. */
export type RowLayout = "row" | "row4" | "col";

/**
 * The layout for rows of length `n` with stride `inner`; `aligned` says whether every buffer
 * offset is a multiple of 4 elements (needed for vec4 access).
 */
export function rowLayout(n: number, inner: number, aligned: boolean): RowLayout {
  if (inner !== 1 || n <= SHORT_ROW) return "col";
  return n % 4 === 0 && aligned ? "row4" : "row";
}

/** Workgroup counts for a row kernel over `rows` rows. */
export function rowGrid(layout: RowLayout, rows: number): number {
  return layout === "col" ? Math.ceil(rows / COL_WG) : rows;
}

/**
 * The pieces of a row kernel; the skeleton supplies, in scope of every piece: `rows`, `n`,
 * `row` (row index in the dispatch), `o` (outer index in the dispatch), `base` (index of the row's
 * first element from the dispatch's first element, in element units of the layout) and, in `body`
 * and `write`, `e` (element index, likewise) and `jj` (position along the axis, in vec4 units for
 * `row4`). `body` updates the accumulator `a`; `post` sees the row's total as `r`. Every operand
 * is indexed as its offset parameter plus `e` (or plus `row` for per-row values).
 */
export interface RowKernelParts {
  name: string;
  layout: RowLayout;
  /** Binding declarations (1..), inputs then outputs. */
  bindings: string;
  inputs: number;
  outputs: number;
  /** Number of parameter words read. */
  words: number;
  helpers?: string;
  /** Accumulator type and initial value. */
  accType: string;
  accInit: string;
  /** Name of a WGSL function `(AT, AT) -> AT` combining two partial accumulators. */
  combine: string;
  /** Per-row statements before the accumulation loop. */
  pre: string;
  /** Per-element accumulation statements. */
  body: string;
  /** Per-row statements after the reduction (the total is `r`). */
  post: string;
  /** Per-element output statements. */
  write: string;
  /** Per-row statements run by one invocation (e.g. saving statistics). */
  rowEnd?: string;
}

/** Assembles a row kernel from its parts (see {@linkcode RowKernelParts}). */
export function rowKernel(p: RowKernelParts): KernelSpec {
  const v4 = p.layout === "row4";
  const head = `${paramsWGSL(Math.ceil(p.words / 4) * 4)}
alias ET = ${v4 ? "vec4<f32>" : "f32"};
fn hsum(v: ET) -> f32 { return ${v4 ? "v.x + v.y + v.z + v.w" : "v"}; }
${p.bindings}
${p.helpers ?? ""}`;
  let main: string;
  if (p.layout === "col") {
    main = `@compute @workgroup_size(${COL_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let rows = pu(0u); let n = pu(1u); let inner = pu(2u);
  let row = (wg.y * nwg.x + wg.x) * ${COL_WG}u + lid;
  if (row >= rows) { return; }
  let o = row / inner;
  let base = o * n * inner + row % inner;
  ${p.pre}
  var a: ${p.accType} = ${p.accInit};
  for (var jj = 0u; jj < n; jj++) {
    let e = base + jj * inner;
    ${p.body}
  }
  let r = a;
  ${p.post}
  for (var jj = 0u; jj < n; jj++) {
    let e = base + jj * inner;
    ${p.write}
  }
  ${p.rowEnd ?? ""}
}`;
  } else {
    main = `var<workgroup> part: array<${p.accType}, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let rows = pu(0u); let n = pu(1u);
  let row = wg.y * nwg.x + wg.x;
  if (row >= rows) { return; }
  let o = row;
  let nE = n / ${v4 ? 4 : 1}u;
  let base = row * nE;
  ${p.pre}
  var a: ${p.accType} = ${p.accInit};
  for (var jj = lid; jj < nE; jj += ${ROW_WG}u) {
    let e = base + jj;
    ${p.body}
  }
  part[lid] = a;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] = ${p.combine}(part[lid], part[lid + s]); }
    workgroupBarrier();
  }
  let r = part[0];
  ${p.post}
  for (var jj = lid; jj < nE; jj += ${ROW_WG}u) {
    let e = base + jj;
    ${p.write}
  }
  if (lid == 0u) { ${p.rowEnd ?? ""} }
}`;
  }
  return { name: p.name, code: head + "\n" + main, inputs: p.inputs, outputs: p.outputs };
}

/** Whether a norm subtracts the mean (`layer`: LayerNorm, GroupNorm) or not (`rms`). */
export type NormKind = "layer" | "rms";

/** What a norm kernel compiles in. */
export interface NormVariant {
  kind: NormKind;
  layout: RowLayout;
  weight: boolean;
  bias: boolean;
  /** GroupNorm affine indexing `(o % G) · cpg + j / S` (else the position along the axis). */
  grouped: boolean;
}

const ADD = `fn add_f(a: f32, b: f32) -> f32 { return a + b; }
fn add_v2(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return a + b; }`;

function variantKey(v: NormVariant): string {
  return `${v.kind}_${v.layout}${v.weight ? "_w" : ""}${v.bias ? "_b" : ""}${
    v.grouped ? "_g" : ""
  }`;
}

/**
 * Affine binding element type and index expression for a variant; `G, cpg, S` are parameter words
 * `wordBase..wordBase + 2`, the block's first outer index `o0` is word `o0Word`.
 */
function affine(
  v: NormVariant,
  wordBase: number,
  o0Word: number,
): { wt: string; pre: string; idx: string } {
  const v4 = v.layout === "row4";
  if (!v.grouped) return { wt: v4 ? "vec4<f32>" : "f32", pre: "", idx: "jj" };
  // grouped row4 requires S % 4 == 0, so the 4 lanes share one channel
  return {
    wt: "f32",
    pre: `let chBase = ((pu(${o0Word}u) + o) % pu(${wordBase}u)) * pu(${wordBase + 1}u);
  let S = pu(${wordBase + 2}u);`,
    idx: `chBase + (jj * ${v4 ? 4 : 1}u) / S`,
  };
}

const fwdCache = new Map<string, KernelSpec>();

/** The forward kernel of one norm variant. Bindings: x, [w], [b] → y, stats. */
export function normFwdKernel(v: NormVariant): KernelSpec {
  const key = variantKey(v);
  let k = fwdCache.get(key);
  if (k) return k;
  const af = affine(v, 6, 12);
  const layer = v.kind === "layer";
  let bi = 1;
  const decl: string[] = [`@group(0) @binding(${bi++}) var<storage, read> x: array<ET>;`];
  if (v.weight) decl.push(`@group(0) @binding(${bi++}) var<storage, read> w: array<${af.wt}>;`);
  if (v.bias) decl.push(`@group(0) @binding(${bi++}) var<storage, read> b: array<${af.wt}>;`);
  decl.push(`@group(0) @binding(${bi++}) var<storage, read_write> y: array<ET>;`);
  decl.push(`@group(0) @binding(${bi++}) var<storage, read_write> st: array<f32>;`);
  const first = v.layout === "row4" ? "x[xo + base].x" : "x[xo + base]";
  k = rowKernel({
    name: `norm_fwd_${key}`,
    layout: v.layout,
    bindings: decl.join("\n"),
    inputs: 1 + (v.weight ? 1 : 0) + (v.bias ? 1 : 0),
    outputs: 2,
    words: 13,
    helpers: ADD,
    accType: layer ? "vec2<f32>" : "f32",
    accInit: layer ? "vec2<f32>(0.0)" : "0.0",
    combine: layer ? "add_v2" : "add_f",
    pre: `let xo = pu(3u); let yo = pu(10u); ${layer ? `let K = ${first};` : ""} ${af.pre}`,
    body: layer
      ? `let d = x[xo + e] - K; a += vec2<f32>(hsum(d), hsum(d * d));`
      : `let v = x[xo + e]; a += hsum(v * v);`,
    post: layer
      ? `let nf = f32(n); let mu = r.x / nf; let mean = K + mu;
  let rstd = inverseSqrt(max(r.y / nf - mu * mu, 0.0) + pf(9u));`
      : `let mean = 0.0; let rstd = inverseSqrt(r / f32(n) + pf(9u));`,
    write: `var v = ${layer ? "(x[xo + e] - mean)" : "x[xo + e]"} * rstd;` +
      (v.weight ? ` v = v * w[pu(4u) + ${af.idx}];` : "") +
      (v.bias ? ` v = v + b[pu(5u) + ${af.idx}];` : "") +
      ` y[yo + e] = v;`,
    rowEnd: `let so = pu(11u) + 2u * row; st[so] = mean; st[so + 1u] = rstd;`,
  });
  fwdCache.set(key, k);
  return k;
}

const bwdCache = new Map<string, KernelSpec>();

/**
 * The backward kernel (input gradient) of one norm variant (`bias` is ignored). Bindings:
 * x, dy, stats, [w] → dx.
 */
export function normBwdKernel(v: NormVariant): KernelSpec {
  const key = variantKey({ ...v, bias: false });
  let k = bwdCache.get(key);
  if (k) return k;
  const af = affine(v, 7, 11);
  const decl = [
    `@group(0) @binding(1) var<storage, read> x: array<ET>;`,
    `@group(0) @binding(2) var<storage, read> gy: array<ET>;`,
    `@group(0) @binding(3) var<storage, read> st: array<f32>;`,
  ];
  if (v.weight) decl.push(`@group(0) @binding(4) var<storage, read> w: array<${af.wt}>;`);
  decl.push(
    `@group(0) @binding(${v.weight ? 5 : 4}) var<storage, read_write> dx: array<ET>;`,
  );
  const g = v.weight ? `gy[go + e] * w[pu(6u) + ${af.idx}]` : `gy[go + e]`;
  k = rowKernel({
    name: `norm_bwd_${key}`,
    layout: v.layout,
    bindings: decl.join("\n"),
    inputs: v.weight ? 4 : 3,
    outputs: 1,
    words: 12,
    helpers: ADD,
    accType: "vec2<f32>",
    accInit: "vec2<f32>(0.0)",
    combine: "add_v2",
    pre: `let xo = pu(3u); let go = pu(4u); let so = pu(5u) + 2u * row; let dxo = pu(10u);
  let mean = st[so]; let rstd = st[so + 1u]; ${af.pre}`,
    body: `let xh = (x[xo + e] - mean) * rstd; let g = ${g};
    a += vec2<f32>(hsum(g), hsum(g * xh));`,
    post: `let c1 = ${v.kind === "layer" ? "r.x / f32(n)" : "0.0"}; let c2 = r.y / f32(n);`,
    write: `let xh = (x[xo + e] - mean) * rstd; let g = ${g};
    dx[dxo + e] = rstd * (g - c1 - xh * c2);`,
  });
  bwdCache.set(key, k);
  return k;
}
