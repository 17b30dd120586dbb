/**
 * Reductions along axes: sum, mean, max, min (one kernel), variance (composed).
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { gridFor } from "../kernel.ts";
import { normAxes, numel } from "../shape.ts";
import { checkAlive, type GradContext, type OpDef, type Tensor } from "../tensor.ts";
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

const REDUCE: OpDef<ReduceAttrs> = {
  name: "reduce",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const x = inputs[0]!;
    const y = outputs[0]!;
    const { outer, r, inner } = attrs;
    const words = [outer, r, inner, x.offset, 0];
    const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
    if (inner === 1) {
      const v4 = r % 4 === 0 && x.offset % 4 === 0;
      rt.dispatch(
        reduceKernel(attrs.kind, v4 ? "row4" : "row"),
        [x.buffer, y.buffer],
        words,
        gridFor(outer, 1, maxG),
      );
    } else {
      rt.dispatch(
        reduceKernel(attrs.kind, "col"),
        [x.buffer, y.buffer],
        words,
        gridFor(outer * inner, 64, maxG),
      );
    }
  },
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
