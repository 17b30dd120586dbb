/**
 * Reductions along axes: sum, mean, max, min (one kernel), variance (composed).
 *
 * Tensors larger than one storage binding are reduced in pieces that each bind only their windows
 * (see `encodeReduce`): blocks of outputs, and for reduced ranges that do not fit (a full
 * reduction of a large tensor), segments accumulated into the output.
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { gridFor } from "../kernel.ts";
import type { Runtime } from "../runtime.ts";
import { normAxes, numel } from "../shape.ts";
import {
  checkAlive,
  type GradContext,
  type OpDef,
  type Tensor,
  type TensorView,
} from "../tensor.ts";
import { chunks, fitsBinding, rangeFits, windowOf } from "../window.ts";
import { reduceKernel, type ReduceKind } from "../../kernels/reduce.ts";
import { copy, div, eq, mul, square, sub } from "./elementwise.ts";
import { contiguous, expand, permute, reshape } from "./movement.ts";

interface ReduceAttrs {
  kind: ReduceKind;
  outer: number;
  r: number;
  inner: number;
  axes: number[];
}

/**
 * Records the reduction of dense `x` viewed as `[outer, r, inner]` into dense `y` (`[outer, inner]`):
 * one dispatch when both fit one storage binding; else blocks of outer indices whose windows fit;
 * when one `[r, inner]` slab does not fit, for each outer index the reduced axis is cut into
 * segments (the first writes the output, the later ones combine with it: the kernels' accumulate
 * word) and each segment into blocks of columns, every piece binding only its windows.
 */
function encodeReduce(rt: Runtime, x: TensorView, y: TensorView, a: ReduceAttrs): void {
  const { kind, outer, r, inner } = a;
  const slab = r * inner;
  const v4 = inner === 1 && r % 4 === 0 && x.offset % 4 === 0;
  const spec = reduceKernel(kind, inner === 1 ? (v4 ? "row4" : "row") : "col");
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  // outputs [o, o1) x [i0, i1) (one o unless whole rows) over the reduced positions [j0, j1)
  const xRange = (o: number, o1: number, i0: number, i1: number, j0: number, j1: number) => {
    const first = x.offset + o * slab + j0 * inner + i0;
    return [first, j1 > j0 ? x.offset + (o1 - 1) * slab + (j1 - 1) * inner + i1 : first] as const;
  };
  const yRange = (o: number, o1: number, i0: number, i1: number) =>
    [y.offset + o * inner + i0, y.offset + (o1 - 1) * inner + i1] as const;
  const fits = (o: number, o1: number, i0: number, i1: number, j0: number, j1: number) =>
    (fitsBinding(rt, x.buffer) || rangeFits(rt, x.dtype, ...xRange(o, o1, i0, i1, j0, j1))) &&
    (fitsBinding(rt, y.buffer) || rangeFits(rt, y.dtype, ...yRange(o, o1, i0, i1)));
  const run = (o: number, o1: number, i0: number, i1: number, j0: number, j1: number) => {
    const [xa, xb] = xRange(o, o1, i0, i1, j0, j1);
    const [ya, yb] = yRange(o, o1, i0, i1);
    const xw = windowOf(rt, x.buffer, x.dtype, xa, xb, kind);
    const yw = windowOf(rt, y.buffer, y.dtype, ya, yb, kind);
    const count = inner === 1 ? o1 - o : yb - ya;
    rt.dispatch(
      spec,
      [xw.binding, yw.binding],
      [count, j1 - j0, inner, xa - xw.shift, ya - yw.shift, j0 > 0 ? 1 : 0],
      gridFor(count, inner === 1 ? 1 : 64, maxG),
    );
  };
  if (fits(0, 1, 0, inner, 0, r)) {
    for (const [o, o1] of chunks(outer, (o, o1) => fits(o, o1, 0, inner, 0, r), kind)) {
      run(o, o1, 0, inner, 0, r);
    }
    return;
  }
  // segments of the reduced axis whose [len, inner] block fits (at least one position)
  const segs: [number, number][] = r === 0 ? [[0, 0]] : chunks(
    r,
    (j0, j1) => j1 - j0 === 1 || rangeFits(rt, x.dtype, 0, (j1 - j0) * inner),
    kind,
    v4 ? 4 : 1,
  );
  for (let o = 0; o < outer; o++) {
    for (const [j0, j1] of segs) {
      for (const [i0, i1] of chunks(inner, (i0, i1) => fits(o, o + 1, i0, i1, j0, j1), kind)) {
        run(o, o + 1, i0, i1, j0, j1);
      }
    }
  }
}

const REDUCE: OpDef<ReduceAttrs> = {
  name: "reduce",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => encodeReduce(rt, inputs[0]!, outputs[0]!, attrs),
};

function reduce(
  kind: ReduceKind,
  x: Tensor,
  axes: number | readonly number[] | undefined,
  keepDims: boolean,
): Tensor {
  checkAlive(kind, x);
  const ax = normAxes(kind, axes, x.rank);
  const outShape = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const finalShape = keepDims ? outShape : x.shape.filter((_, i) => !ax.includes(i));
  const dense = (t: Tensor) => (t.dtype === "f32" ? contiguous(t) : copy(t));
  if (ax.length === 0 || x.rank === 0) return reshape(dense(x), finalShape);
  // Reduce a run of adjacent axes in place; otherwise move the axes last and copy.
  const adjacent = ax.every((a, i) => i === 0 || a === ax[i - 1]! + 1);
  let src: Tensor;
  let outer: number;
  let r: number;
  let inner: number;
  if (adjacent) {
    src = dense(x);
    outer = numel(x.shape.slice(0, ax[0]));
    r = numel(ax.map((a) => x.shape[a]!));
    inner = numel(x.shape.slice(ax.at(-1)! + 1));
  } else {
    // reduce the permuted tensor over its trailing axes, so the op's input and output share axes
    const keep = [...Array(x.rank).keys()].filter((i) => !ax.includes(i));
    const p = permute(x, [...keep, ...ax]);
    const trailing = ax.map((_, i) => keep.length + i);
    return reshape(reduce(kind, p, trailing, true), finalShape);
  }
  // the kernel writes [outer, inner] densely, which is the element order of `outShape`
  const y = apply1(REDUCE_OP[kind], [src], { kind, outer, r, inner, axes: ax }, {
    shape: outShape,
    dtype: "f32",
  });
  return reshape(y, finalShape);
}

const REDUCE_OP: Record<ReduceKind, OpDef<ReduceAttrs>> = {
  // d sum / dx = 1: the gradient is broadcast back over the reduced axes
  sum: {
    ...REDUCE,
    name: "sum",
    backward: ({ inputs, grads }) => [expand(grads[0]!, inputs[0]!.shape)],
  },
  max: { ...REDUCE, name: "max", backward: extremumGrad },
  min: { ...REDUCE, name: "min", backward: extremumGrad },
};

/** The gradient goes to the elements equal to the extremum, shared equally among ties. */
function extremumGrad(
  { inputs, outputs, grads, attrs }: GradContext<ReduceAttrs>,
): (Tensor | null)[] {
  const x = inputs[0]!;
  const mask = eq(x, expand(outputs[0]!, x.shape));
  const ties = expand(sum(mask, attrs.axes, true), x.shape);
  return [div(mul(mask, expand(grads[0]!, x.shape)), ties)];
}

/** Sum over `axes` (all axes when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return reduce("sum", x, axes, keepDims);
}
/** Maximum over `axes` (the gradient is shared among ties). */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return reduce("max", x, axes, keepDims);
}
/** Minimum over `axes`. */
export function min(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return reduce("min", x, axes, keepDims);
}
/** Mean over `axes`. */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normAxes("mean", axes, x.rank);
  const n = numel(ax.map((a) => x.shape[a]!));
  return div(sum(x, ax, keepDims), n);
}
/** Variance over `axes` (biased, as in normalisation layers, unless `correction` = 1). */
export function variance(
  x: Tensor,
  axes?: number | readonly number[],
  keepDims = false,
  correction = 0,
): Tensor {
  const ax = normAxes("variance", axes, x.rank);
  const n = numel(ax.map((a) => x.shape[a]!));
  const m = expand(mean(x, ax, true), x.shape);
  return div(sum(square(sub(x, m)), ax, keepDims), n - correction);
}
