/**
 * Joining, splitting, indexing and converting tensors: `concat`, `stack`, `split`, `chunk`,
 * `gather` (index_select) and `cast`.
 *
 * Dtypes: 32-bit tensors (f32, i32, u32) are moved as raw bits, so integer tensors keep their
 * exact values and type; f16/bf16 inputs are widened to f32 (the compute type), as every other op
 * does. `cast` converts back to a 16-bit storage type.
 *
 * @module
 */
import { apply1, fromData } from "../graph.ts";
import { gridFor } from "../kernel.ts";
import { type DType, isHalf } from "../dtype.ts";
import { contiguousStrides, fmtShape, normAxis, numel, type Shape } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor, type TensorView } from "../tensor.ts";
import type { Runtime } from "../runtime.ts";
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

/**
 * Records one strided copy of view `src` into the window of `dst` that starts at element `dOff`
 * with strides `dStrides` (over `src.shape`).
 */
function encodeCopy(
  rt: Runtime,
  src: TensorView,
  dst: GPUBuffer,
  dOff: number,
  dStrides: readonly number[],
  label: string,
): void {
  const n = numel(src.shape);
  if (n === 0) return;
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
  const runsPerRow = vec4 ? inner / 4 : Math.ceil(inner / 4);
  const runs = (n / inner) * runsPerRow;
  const words = [runs, src.offset, dOff, runsPerRow];
  for (let a = 0; a < 6; a++) words.push(sh[a]!, ss[a]!, ds[a]!);
  rt.dispatch(
    stridedCopyKernel(mode, vec4),
    [src.buffer, dst],
    words,
    gridFor(runs, MOVE_WG, rt.info.limits.maxComputeWorkgroupsPerDimension),
  );
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
    inputs.forEach((x, k) => {
      encodeCopy(rt, x, out.buffer, out.offset + start * st[attrs.axis]!, st, "concat");
      start += attrs.sizes[k]!;
    });
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

const GATHER: OpDef<GatherAttrs> = {
  name: "gather",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [x, idx] = inputs as [TensorView, TensorView];
    const nIdx = numel(idx.shape);
    const { outer, n, inner } = attrs;
    if (outer * nIdx * inner === 0) return;
    const mode = sourceMode(x.dtype);
    const vec4 = mode === "raw" && inner % 4 === 0 && x.offset % 4 === 0;
    const runsPerRow = vec4 ? inner / 4 : Math.ceil(inner / 4);
    const runs = outer * nIdx * runsPerRow;
    rt.dispatch(
      gatherKernel(mode, idx.dtype === "u32" ? "u32" : "i32", vec4),
      [x.buffer, idx.buffer, outputs[0]!.buffer],
      [runs, nIdx, inner, n, idx.offset, x.offset, runsPerRow],
      gridFor(runs, MOVE_WG, rt.info.limits.maxComputeWorkgroupsPerDimension),
    );
  },
  backward: ({ inputs, grads, attrs }) => [
    scatterAdd(grads[0]!, inputs[1]!, attrs, inputs[0]!.shape),
    null,
  ],
};

const SCATTER_ADD: OpDef<GatherAttrs> = {
  name: "gather_backward",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [g, idx] = inputs as [TensorView, TensorView];
    const nIdx = numel(idx.shape);
    const { outer, n, inner } = attrs;
    if (outer * n * inner === 0) return;
    const vec4 = inner % 4 === 0 && g.offset % 4 === 0;
    const runsPerRow = vec4 ? inner / 4 : Math.ceil(inner / 4);
    const runs = outer * n * runsPerRow;
    rt.dispatch(
      scatterAddKernel(idx.dtype === "u32" ? "u32" : "i32", vec4),
      [g.buffer, idx.buffer, outputs[0]!.buffer],
      [runs, nIdx, inner, n, idx.offset, g.offset, runsPerRow],
      gridFor(runs, MOVE_WG, rt.info.limits.maxComputeWorkgroupsPerDimension),
    );
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
  encode: ({ rt, inputs, outputs, attrs }) => {
    const x = inputs[0]!;
    const n = numel(x.shape);
    if (n === 0) return;
    const pairs = Math.ceil(n / 2);
    rt.dispatch(
      castHalfKernel(attrs.dtype),
      [x.buffer, outputs[0]!.buffer],
      [n, x.offset],
      gridFor(pairs, MOVE_WG, rt.info.limits.maxComputeWorkgroupsPerDimension),
    );
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
