/**
 * Joining, splitting, indexing and converting tensors: `concat`, `stack`, `split`, `chunk`,
 * `gather` (index_select) and `cast`.
 *
 * Dtypes: 32-bit tensors (f32, i32, u32) are moved as raw bits, so integer tensors keep their
 * exact values and type; f16/bf16 inputs are widened to f32 (the compute type), as every other op
 * does. `cast` converts back to a 16-bit storage type.
 *
 * Tensors over one storage binding (`engine/window.ts`): when every operand fits, each op is one
 * dispatch as always; otherwise it splits its dispatch and binds each piece's windows:
 * - strided copies (concat, stack, denseCopy): into boxes of the coalesced 6-axis shape
 *   (`boxes` in `engine/window.ts`), so transposed views are tiled;
 * - gather: by output rows; a source slab over the limit is read in masked passes, one per source
 *   row range (each output row is written by the pass holding its index);
 * - its scatter-add backward: by output rows; a gradient slab over the limit is summed in passes
 *   over index ranges, each continuing the previous one's sums (the same additions in the same
 *   order, so the result is bit-identical);
 * - cast: by element pairs.
 * Only a single row over the limit (gather / scatter-add) cannot be split: that throws a RangeError
 * before any GPU work.
 *
 * @module
 */
import { apply1, fromData } from "../graph.ts";
import { gridFor, type KernelSpec } from "../kernel.ts";
import { type DType, DTYPE_BYTES, isHalf } from "../dtype.ts";
import { contiguousStrides, fmtShape, normAxis, numel, type Shape } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor, type TensorView } from "../tensor.ts";
import type { Binding, Runtime } from "../runtime.ts";
import {
  boxes,
  type BoxOperand,
  boxSpan,
  chunks,
  fitsBinding,
  rangeFits,
  windowElems,
  windowOf,
} from "../window.ts";
import { coalesce } from "../../kernels/elementwise.ts";
import {
  castHalfKernel,
  gatherKernel,
  MOVE_WG,
  scatterAddKernel,
  type SourceMode,
  stridedCopyKernel,
} from "../../kernels/movement.ts";
import { copy } from "./elementwise.ts";
import { contiguous, narrow, reshape } from "./movement.ts";

const FLOATS: readonly DType[] = ["f32", "f16", "bf16"];

function sourceMode(dtype: DType): SourceMode {
  return dtype === "f16" ? "f16" : dtype === "bf16" ? "bf16" : "raw";
}

/** Output dtype of a copy of these inputs: the common 32-bit dtype, or f32 for any float mix. */
function joinedDType(op: string, xs: readonly Tensor[]): DType {
  const d0 = xs[0]!.dtype;
  if (xs.every((x) => x.dtype === d0)) return isHalf(d0) ? "f32" : d0;
  if (xs.every((x) => FLOATS.includes(x.dtype))) return "f32";
  throw new TypeError(
    `${op}: cannot join dtypes ${xs.map((x) => x.dtype).join(", ")} (cast the inputs to one dtype)`,
  );
}

/** A planned dispatch: kernel, bindings, parameter words, grid. */
type Planned = [KernelSpec, Binding[], number[], [number, number, number]];

/**
 * Plans the strided copy of view `src` into `dst` starting at element `dOff` with strides
 * `dStrides` (over `src.shape`): one dispatch, or one per box of the coalesced shape (`boxes` in
 * `engine/window.ts`) when an operand is over the binding limit.
 */
function planCopy(
  rt: Runtime,
  src: TensorView,
  dst: GPUBuffer,
  dOff: number,
  dStrides: readonly number[],
  label: string,
): Planned[] {
  const n = numel(src.shape);
  if (n === 0) return [];
  const co = coalesce(src.shape, [src.strides, dStrides]);
  if (!co) {
    throw new RangeError(
      `${label}: input ${fmtShape(src.shape)} with strides [${src.strides}] needs more than 6 ` +
        `axes; make it contiguous first`,
    );
  }
  const [ss, ds] = co.strides as [number[], number[]];
  const sh = co.shape;
  const inner = sh[5]!;
  const mode = sourceMode(src.dtype);
  const vec4 = mode === "raw" && inner % 4 === 0 && ss[5] === 1 && ds[5] === 1 &&
    src.offset % 4 === 0 && dOff % 4 === 0 &&
    sh.every((d, a) => a === 5 || d === 1 || (ss[a]! % 4 === 0 && ds[a]! % 4 === 0));
  const spec = stridedCopyKernel(mode, vec4);
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  const s: BoxOperand = { buffer: src.buffer, dtype: src.dtype, offset: src.offset, strides: ss };
  const d: BoxOperand = { buffer: dst, dtype: "f32", offset: dOff, strides: ds };
  return boxes(rt, sh, [s, d], vec4 ? 4 : 1).map((box) => {
    const [s0, s1] = boxSpan(s, box)!;
    const [d0, d1] = boxSpan(d, box)!;
    const sw = windowOf(rt, src.buffer, src.dtype, s0, s1, label);
    const dw = windowOf(rt, dst, "f32", d0, d1, label);
    const runsPerRow = vec4 ? box.size[5]! / 4 : Math.ceil(box.size[5]! / 4);
    const runs = (numel(box.size) / box.size[5]!) * runsPerRow;
    const words = [runs, s0 - sw.shift, d0 - dw.shift, runsPerRow];
    for (let a = 0; a < 6; a++) words.push(box.size[a]!, ss[a]!, ds[a]!);
    return [spec, [sw.binding, dw.binding], words, gridFor(runs, MOVE_WG, maxG)];
  });
}

/** Records planned dispatches (planned first, so that an op refuses its input before any). */
function dispatchAll(rt: Runtime, plan: readonly Planned[]): void {
  for (const [spec, bindings, words, grid] of plan) rt.dispatch(spec, bindings, words, grid);
}

// ---------------------------------------------------------------- concat

interface ConcatAttrs {
  axis: number;
  sizes: number[];
}

const CONCAT: OpDef<ConcatAttrs> = {
  name: "concat",
  kind: "kernel",
  // one strided copy per input into its window of the (dense) output
  encode: ({ rt, inputs, outputs, attrs }) => {
    const out = outputs[0]!;
    const st = contiguousStrides(out.shape);
    let start = 0;
    const plan = inputs.flatMap((x, k) => {
      const p = planCopy(rt, x, out.buffer, out.offset + start * st[attrs.axis]!, st, "concat");
      start += attrs.sizes[k]!;
      return p;
    });
    dispatchAll(rt, plan);
  },
  backward: ({ grads, attrs }) => {
    const g = grads[0]!;
    let start = 0;
    return attrs.sizes.map((n) => {
      const s = narrow(g, attrs.axis, start, n);
      start += n;
      return s;
    });
  },
};

/**
 * Joins tensors along an existing axis (negative counts from the end). Inputs may be strided
 * views (one copy kernel per input, no intermediate copies); all other axes must match.
 *
 * @example
 * ```ts ignore
 * const emb = concat([cos(args), sin(args)], -1);
 * ```
 */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new RangeError("concat: no tensors given");
  for (const x of xs) checkAlive("concat", x);
  const x0 = xs[0]!;
  if (x0.rank === 0) throw new RangeError("concat: cannot join scalars (use stack)");
  const a = normAxis("concat", axis, x0.rank);
  for (const x of xs) {
    const ok = x.rank === x0.rank && x.shape.every((d, i) => i === a || d === x0.shape[i]);
    if (!ok) {
      throw new RangeError(
        `concat: shapes ${fmtShape(x0.shape)} and ${fmtShape(x.shape)} differ outside axis ${a}`,
      );
    }
  }
  const dtype = joinedDType("concat", xs);
  const sizes = xs.map((x) => x.shape[a]!);
  const shape = [...x0.shape];
  shape[a] = sizes.reduce((p, q) => p + q, 0);
  return apply1(CONCAT, [...xs], { axis: a, sizes }, { shape, dtype });
}

/** Joins same-shape tensors along a new axis `axis` (in `[-(rank + 1), rank]`). */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new RangeError("stack: no tensors given");
  const x0 = xs[0]!;
  const a = normAxis("stack", axis, x0.rank + 1);
  for (const x of xs) {
    checkAlive("stack", x);
    if (x.shape.join() !== x0.shape.join()) {
      throw new RangeError(
        `stack: shapes ${fmtShape(x0.shape)} and ${fmtShape(x.shape)} differ`,
      );
    }
  }
  const shape = [...x0.shape.slice(0, a), 1, ...x0.shape.slice(a)];
  return concat(xs.map((x) => reshape(x, shape)), a);
}

/** Splits `x` along `axis` into views of the given sizes (they must add up to the axis size). */
export function split(x: Tensor, sizes: readonly number[], axis = 0): Tensor[] {
  checkAlive("split", x);
  const a = normAxis("split", axis, x.rank);
  const total = sizes.reduce((p, q) => p + q, 0);
  if (sizes.some((s) => !Number.isInteger(s) || s < 0) || total !== x.shape[a]) {
    throw new RangeError(
      `split: sizes [${sizes.join(", ")}] do not add up to axis ${a} of ${fmtShape(x.shape)}`,
    );
  }
  let start = 0;
  return sizes.map((n) => {
    const v = narrow(x, a, start, n);
    start += n;
    return v;
  });
}

/**
 * Splits `x` along `axis` into `n` views of `ceil(size / n)` elements (the last may be smaller,
 * and fewer than `n` come back when the size is too small), as `torch.chunk`.
 */
export function chunk(x: Tensor, n: number, axis = 0): Tensor[] {
  checkAlive("chunk", x);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`chunk: n = ${n} must be >= 1`);
  const a = normAxis("chunk", axis, x.rank);
  const d = x.shape[a]!;
  const c = Math.max(1, Math.ceil(d / n));
  const sizes: number[] = [];
  for (let s = 0; s < d; s += c) sizes.push(Math.min(c, d - s));
  if (sizes.length === 0) sizes.push(0);
  return split(x, sizes, a);
}

/**
 * A dense copy of a strided tensor that keeps 32-bit dtypes (i32 stays i32; `contiguous` from
 * movement.ts widens to f32), or `x` itself when already dense.
 */
export function denseCopy(x: Tensor): Tensor {
  if (x.contiguous) return x;
  return apply1(CONCAT, [x], { axis: 0, sizes: [x.shape[0]!] }, {
    shape: x.shape,
    dtype: joinedDType("denseCopy", [x]),
  });
}

// ---------------------------------------------------------------- gather

interface GatherAttrs {
  axis: number;
  outer: number;
  n: number;
  inner: number;
}

/**
 * Throws a RangeError (before any GPU work) when rows of `inner` elements of `t` are over one
 * storage binding while `t` is: the op cannot split a row.
 */
function checkRows(rt: Runtime, op: string, t: TensorView, inner: number): void {
  if (fitsBinding(rt, t.buffer) || inner <= windowElems(rt, t.dtype)) return;
  const bytes = numel(t.shape) * DTYPE_BYTES[t.dtype];
  throw new RangeError(
    `${op}: ${t.dtype} tensor ${fmtShape(t.shape)} (${bytes} bytes) has rows of ${inner} ` +
      `elements, over one storage binding (limit ${rt.maxBinding} bytes); it cannot be split`,
  );
}

/** True when elements `[a, b)` of `t` fit one window (or its whole buffer fits one binding). */
function fitsRange(rt: Runtime, t: TensorView, a: number, b: number): boolean {
  return fitsBinding(rt, t.buffer) || rangeFits(rt, t.dtype, a, b);
}

/**
 * Gather: rows `o·nIdx + j` of the output. When something is over the binding limit the rows are
 * cut so that the output window, the index range they read and (unless they lie in one `o`) their
 * source slabs fit; a piece in one `o` whose slab does not fit reads it in masked passes over
 * source row ranges `[rLo, rHi)`.
 */
function planGather(rt: Runtime, x: TensorView, idx: TensorView, out: TensorView, a: GatherAttrs) {
  const nIdx = numel(idx.shape);
  const { outer, n, inner } = a;
  const mode = sourceMode(x.dtype);
  const vec4 = mode === "raw" && inner % 4 === 0 && x.offset % 4 === 0;
  const spec = gatherKernel(mode, idx.dtype === "u32" ? "u32" : "i32", vec4);
  const runsPerRow = vec4 ? inner / 4 : Math.ceil(inner / 4);
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  const plan: Planned[] = [];
  checkRows(rt, "gather", x, inner);
  checkRows(rt, "gather", out, inner);
  const all = [x, idx, out].every((t) => fitsBinding(rt, t.buffer));
  const slab = (o0: number, r0: number, o1: number, r1: number): [number, number] => [
    x.offset + (o0 * n + r0) * inner,
    x.offset + (o1 * n + r1) * inner,
  ];
  const jRange = (r0: number, r1: number): [number, number] =>
    Math.floor(r0 / nIdx) === Math.floor((r1 - 1) / nIdx)
      ? [r0 % nIdx, ((r1 - 1) % nIdx) + 1]
      : [0, nIdx];
  const rows: [number, number][] = all ? [[0, outer * nIdx]] : chunks(
    outer * nIdx,
    (r0, r1) => {
      const [j0, j1] = jRange(r0, r1);
      const o0 = Math.floor(r0 / nIdx), o1 = Math.floor((r1 - 1) / nIdx);
      return fitsRange(rt, out, out.offset + r0 * inner, out.offset + r1 * inner) &&
        fitsRange(rt, idx, idx.offset + j0, idx.offset + j1) &&
        (o0 === o1 || fitsRange(rt, x, ...slab(o0, 0, o1, n)));
    },
    "gather",
  );
  for (const [r0, r1] of rows) {
    const o0 = Math.floor(r0 / nIdx), o1 = Math.floor((r1 - 1) / nIdx);
    const passes: [number, number][] = all || fitsRange(rt, x, ...slab(o0, 0, o1, n))
      ? [[0, n]]
      : chunks(n, (s0, s1) => fitsRange(rt, x, ...slab(o0, s0, o0, s1)), "gather");
    const [j0, j1] = jRange(r0, r1);
    const iw = windowOf(rt, idx.buffer, idx.dtype, idx.offset + j0, idx.offset + j1, "gather");
    const ow = windowOf(
      rt,
      out.buffer,
      out.dtype,
      out.offset + r0 * inner,
      out.offset + r1 * inner,
    );
    const runs = (r1 - r0) * runsPerRow;
    for (const [s0, s1] of passes) {
      const xw = windowOf(rt, x.buffer, x.dtype, ...slab(o0, s0, o1, s1), "gather");
      const words = [runs, nIdx, inner, n, idx.offset - iw.shift, x.offset - xw.shift];
      words.push(runsPerRow, r0, ow.shift - out.offset, s0, s1);
      plan.push([
        spec,
        [xw.binding, iw.binding, ow.binding],
        words.map((w) => w >>> 0),
        gridFor(runs, MOVE_WG, maxG),
      ]);
    }
  }
  return plan;
}

const GATHER: OpDef<GatherAttrs> = {
  name: "gather",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [x, idx] = inputs as [TensorView, TensorView];
    if (attrs.outer * numel(idx.shape) * attrs.inner === 0) return;
    dispatchAll(rt, planGather(rt, x, idx, outputs[0]!, attrs));
  },
  backward: ({ inputs, grads, attrs }) => [
    scatterAdd(grads[0]!, inputs[1]!, attrs, inputs[0]!.shape),
    null,
  ],
};

/**
 * Scatter-add: rows `o·n + r` of the output. When something is over the binding limit the rows
 * are cut so that the output window and (unless they lie in one `o`) the gradient slabs and the
 * whole index list fit; a piece in one `o` whose gradient slab or index list does not fit sums in
 * passes over index ranges `[jLo, jHi)`, each adding to the previous one's output.
 */
function planScatter(rt: Runtime, g: TensorView, idx: TensorView, out: TensorView, a: GatherAttrs) {
  const nIdx = numel(idx.shape);
  const { outer, n, inner } = a;
  const vec4 = inner % 4 === 0 && g.offset % 4 === 0;
  const spec = scatterAddKernel(idx.dtype === "u32" ? "u32" : "i32", vec4);
  const runsPerRow = vec4 ? inner / 4 : Math.ceil(inner / 4);
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  checkRows(rt, "gather backward", g, inner);
  checkRows(rt, "gather backward", out, inner);
  const all = [g, idx, out].every((t) => fitsBinding(rt, t.buffer));
  const slab = (o0: number, j0: number, o1: number, j1: number): [number, number] => [
    g.offset + (o0 * nIdx + j0) * inner,
    g.offset + (o1 * nIdx + j1) * inner,
  ];
  const fitsJ = (o0: number, o1: number, j0: number, j1: number) =>
    fitsRange(rt, g, ...slab(o0, j0, o1, j1)) &&
    fitsRange(rt, idx, idx.offset + j0, idx.offset + j1);
  const rows: [number, number][] = all ? [[0, outer * n]] : chunks(
    outer * n,
    (r0, r1) => {
      const o0 = Math.floor(r0 / n), o1 = Math.floor((r1 - 1) / n);
      return fitsRange(rt, out, out.offset + r0 * inner, out.offset + r1 * inner) &&
        (o0 === o1 || fitsJ(o0, o1, 0, nIdx));
    },
    "gather backward",
  );
  const plan: Planned[] = [];
  for (const [r0, r1] of rows) {
    const o0 = Math.floor(r0 / n), o1 = Math.floor((r1 - 1) / n);
    const passes: [number, number][] = all || nIdx === 0 || fitsJ(o0, o1, 0, nIdx)
      ? [[0, nIdx]]
      : chunks(nIdx, (j0, j1) => fitsJ(o0, o0, j0, j1), "gather backward");
    const ow = windowOf(
      rt,
      out.buffer,
      out.dtype,
      out.offset + r0 * inner,
      out.offset + r1 * inner,
    );
    const runs = (r1 - r0) * runsPerRow;
    passes.forEach(([j0, j1], p) => {
      const gw = windowOf(rt, g.buffer, g.dtype, ...slab(o0, j0, o1, j1), "gather backward");
      const iw = windowOf(rt, idx.buffer, idx.dtype, idx.offset + j0, idx.offset + j1);
      const words = [runs, nIdx, inner, n, idx.offset - iw.shift, g.offset - gw.shift];
      words.push(runsPerRow, r0, ow.shift - out.offset, j0, j1, p > 0 ? 1 : 0);
      plan.push([
        spec,
        [gw.binding, iw.binding, ow.binding],
        words.map((w) => w >>> 0),
        gridFor(runs, MOVE_WG, maxG),
      ]);
    });
  }
  return plan;
}

const SCATTER_ADD: OpDef<GatherAttrs> = {
  name: "gather_backward",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [g, idx] = inputs as [TensorView, TensorView];
    if (attrs.outer * attrs.n * attrs.inner === 0) return;
    dispatchAll(rt, planScatter(rt, g, idx, outputs[0]!, attrs));
  },
  backward: ({ inputs, grads, attrs }) => [
    gatherFlat(grads[0]!, inputs[1]!, attrs, inputs[0]!.shape),
    null,
  ],
};

function gatherFlat(x: Tensor, idx: Tensor, attrs: GatherAttrs, outShape: Shape): Tensor {
  return apply1(GATHER, [denseCopy(x), idx], attrs, {
    shape: outShape,
    dtype: isHalf(x.dtype) ? "f32" : x.dtype,
  });
}

function scatterAdd(g: Tensor, idx: Tensor, attrs: GatherAttrs, xShape: Shape): Tensor {
  return apply1(SCATTER_ADD, [contiguous(g), idx], attrs, { shape: xShape, dtype: "f32" });
}

/**
 * Selects entries of `x` along `axis` (index_select): the output shape is
 * `x.shape[:axis] + indices.shape + x.shape[axis+1:]`, so an embedding lookup is
 * `gather(table, ids, 0)`.
 *
 * `indices` is an i32/u32 tensor, or CPU integers (`Int32Array` / `number[]`), which are
 * range-checked here (RangeError) and uploaded. Tensor indices live on the GPU and cannot be
 * checked without a read-back: out-of-range values are **clamped** into `[0, n - 1]`.
 *
 * The gradient w.r.t. `x` is a deterministic scatter-add (no atomics; O(numel(x) · indices)
 * work, see `scatterAddKernel`).
 */
export function gather(
  x: Tensor,
  indices: Tensor | Int32Array | readonly number[],
  axis = 0,
): Tensor {
  checkAlive("gather", x);
  if (x.rank === 0) throw new RangeError("gather: cannot index a scalar");
  const a = normAxis("gather", axis, x.rank);
  const n = x.shape[a]!;
  let idx: Tensor;
  if (indices instanceof Int32Array || Array.isArray(indices)) {
    const data = Int32Array.from(indices as ArrayLike<number>);
    const bad = data.findIndex((v, i) =>
      v < 0 || v >= n || v !== (indices as ArrayLike<number>)[i]
    );
    if (bad >= 0) {
      throw new RangeError(
        `gather: index ${(indices as ArrayLike<number>)[bad]} at position ${bad} is out of ` +
          `range for axis ${a} of ${fmtShape(x.shape)}`,
      );
    }
    idx = fromData(data, [data.length], "i32");
  } else {
    idx = indices as Tensor;
    checkAlive("gather", idx);
    if (idx.dtype !== "i32" && idx.dtype !== "u32") {
      throw new TypeError(`gather: indices must be i32 or u32, got ${idx.dtype}`);
    }
  }
  const nIdx = idx.size;
  if (n === 0 && nIdx > 0) {
    throw new RangeError(`gather: axis ${a} of ${fmtShape(x.shape)} is empty`);
  }
  const attrs: GatherAttrs = {
    axis: a,
    outer: numel(x.shape.slice(0, a)),
    n,
    inner: numel(x.shape.slice(a + 1)),
  };
  const shape = [...x.shape.slice(0, a), ...idx.shape, ...x.shape.slice(a + 1)];
  return gatherFlat(x, denseCopy(idx), attrs, shape);
}

// ---------------------------------------------------------------- cast

const CAST: OpDef<{ dtype: "f16" | "bf16" }> = {
  name: "cast",
  kind: "kernel",
  // by pairs of elements (one output word each); windows cut between pairs
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [x, out] = [inputs[0]!, outputs[0]!];
    const n = numel(x.shape);
    if (n === 0) return;
    const xRange = (p0: number, p1: number): [number, number] => [
      x.offset + 2 * p0,
      x.offset + Math.min(2 * p1, n),
    ];
    const oRange = (p0: number, p1: number): [number, number] => [
      out.offset + 2 * p0,
      out.offset + 2 * p1,
    ];
    const whole = fitsBinding(rt, x.buffer) && fitsBinding(rt, out.buffer);
    const pieces: [number, number][] = whole ? [[0, Math.ceil(n / 2)]] : chunks(
      Math.ceil(n / 2),
      (p0, p1) => fitsRange(rt, x, ...xRange(p0, p1)) && fitsRange(rt, out, ...oRange(p0, p1)),
      "cast",
    );
    const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
    for (const [p0, p1] of pieces) {
      const xw = windowOf(rt, x.buffer, x.dtype, ...xRange(p0, p1), "cast");
      const ow = windowOf(rt, out.buffer, out.dtype, ...oRange(p0, p1), "cast");
      rt.dispatch(
        castHalfKernel(attrs.dtype),
        [xw.binding, ow.binding],
        [n, (x.offset - xw.shift) >>> 0, p0, (ow.shift - out.offset) / 2, p1 - p0],
        gridFor(p1 - p0, MOVE_WG, maxG),
      );
    }
  },
  backward: ({ grads }) => [grads[0]!],
};

/**
 * Converts to a float storage type. `"f16"` / `"bf16"` round to nearest even (bit-identical to
 * `f32ToF16` / `f32ToBf16` in `engine/dtype.ts`); `"f32"` widens (a copy). Casting to the dtype
 * `x` already has returns `x`. The gradient passes through unchanged (as f32).
 */
export function cast(x: Tensor, dtype: "f32" | "f16" | "bf16"): Tensor {
  checkAlive("cast", x);
  if (!FLOATS.includes(dtype)) {
    throw new TypeError(`cast: unsupported target dtype ${dtype} (supported: f32, f16, bf16)`);
  }
  if (x.dtype === dtype) return x;
  if (dtype === "f32") return copy(x);
  const src = x.dtype === "f32" && x.contiguous ? x : copy(x);
  return apply1(CAST, [src], { dtype }, { shape: x.shape, dtype });
}
