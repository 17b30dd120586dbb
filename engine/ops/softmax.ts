/**
 * Softmax and log-softmax along one axis, each one fused kernel forward and one backward.
 *
 * The input is made dense and viewed as `[outer, n, inner]` (n = the axis), which the kernel
 * reduces across directly (no transpose copy). Only when there are very few columns and long
 * rows (e.g. axis 0 of `[4096, 2]`) is the axis moved last first, so that a whole workgroup
 * shares each row.
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { gridFor } from "../kernel.ts";
import { normAxis, numel } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor } from "../tensor.ts";
import { rowGrid, rowLayout } from "../../kernels/norm.ts";
import { softmaxBwdKernel, softmaxFwdKernel } from "../../kernels/softmax.ts";
import { copy } from "./elementwise.ts";
import { contiguous, permute, reshape } from "./movement.ts";

interface SoftmaxAttrs {
  log: boolean;
  outer: number;
  n: number;
  inner: number;
}

/** Rows at least this long with fewer than {@linkcode FEW_COLUMNS} columns are moved last. */
const LONG_ROW = 1024;
const FEW_COLUMNS = 64;

function layoutOf(a: SoftmaxAttrs, offsets: number[]) {
  return rowLayout(a.n, a.inner, offsets.every((o) => o % 4 === 0));
}

const SOFTMAX_BWD: OpDef<SoftmaxAttrs> = {
  name: "softmax_backward",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const y = inputs[0]!;
    const g = inputs[1]!;
    const rows = attrs.outer * attrs.inner;
    if (rows === 0 || attrs.n === 0) return;
    const layout = layoutOf(attrs, [y.offset, g.offset]);
    const u = layout === "row4" ? 4 : 1;
    rt.dispatch(
      softmaxBwdKernel(attrs.log, layout),
      [y.buffer, g.buffer, outputs[0]!.buffer],
      [layout === "col" ? rows : attrs.outer, attrs.n, attrs.inner, y.offset / u, g.offset / u],
      gridFor(rowGrid(layout, rows), 1, rt.info.limits.maxComputeWorkgroupsPerDimension),
    );
  },
};

const SOFTMAX: OpDef<SoftmaxAttrs> = {
  name: "softmax",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const x = inputs[0]!;
    const rows = attrs.outer * attrs.inner;
    if (rows === 0 || attrs.n === 0) return;
    const layout = layoutOf(attrs, [x.offset]);
    const u = layout === "row4" ? 4 : 1;
    rt.dispatch(
      softmaxFwdKernel(attrs.log, layout),
      [x.buffer, outputs[0]!.buffer],
      [layout === "col" ? rows : attrs.outer, attrs.n, attrs.inner, x.offset / u],
      gridFor(rowGrid(layout, rows), 1, rt.info.limits.maxComputeWorkgroupsPerDimension),
    );
  },
  backward: ({ outputs, grads, attrs }) => {
    const y = outputs[0]!;
    const g = contiguous(grads[0]!);
    return [apply1(SOFTMAX_BWD, [y, g], attrs, { shape: y.shape, dtype: "f32" })];
  },
};

function softmaxAlong(name: string, log: boolean, x: Tensor, axis: number): Tensor {
  checkAlive(name, x);
  if (x.rank === 0) return reshape(softmaxAlong(name, log, reshape(x, [1]), 0), []);
  const ax = normAxis(name, axis, x.rank);
  const outer = numel(x.shape.slice(0, ax));
  const n = x.shape[ax]!;
  const inner = numel(x.shape.slice(ax + 1));
  if (inner > 1 && n >= LONG_ROW && outer * inner < FEW_COLUMNS) {
    const perm = [...Array(x.rank).keys()].filter((d) => d !== ax).concat(ax);
    const inv = perm.map((_, i) => perm.indexOf(i));
    return permute(softmaxAlong(name, log, permute(x, perm), -1), inv);
  }
  const src = x.dtype === "f32" ? contiguous(x) : copy(x);
  return apply1(SOFTMAX, [src], { log, outer, n, inner }, { shape: x.shape, dtype: "f32" });
}

/**
 * Softmax along `axis`: `exp(x - max) / Σ exp(x - max)` (stable for large inputs). The input may
 * be any view; the output is dense (a permuted view of a dense result in the few-columns case).
 * Differentiable (fused backward `y · (dy - Σ dy·y)`).
 *
 * @example
 * ```ts ignore
 * const p = softmax(scores);        // over the last axis
 * const q = softmax(logits, 1);     // over the channels of N C H W
 * ```
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxAlong("softmax", false, x, axis);
}

/**
 * Log-softmax along `axis`: `x - max - log Σ exp(x - max)`. Differentiable (fused backward
 * `dy - exp(y) · Σ dy`).
 *
 * @example
 * ```ts ignore
 * const logp = logSoftmax(logits);
 * ```
 */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxAlong("logSoftmax", true, x, axis);
}
