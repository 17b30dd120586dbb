/**
 * Softmax and log-softmax along one axis, each one fused kernel forward and one backward.
 *
 * The input is made dense and viewed as `[outer, n, inner]` (n = the axis), which the kernel
 * reduces across directly (no transpose copy). Only when there are very few columns and long
 * rows (e.g. axis 0 of `[4096, 2]`) is the axis moved last first, so that a whole workgroup
 * shares each row. Tensors larger than one storage binding are processed in blocks of rows, each
 * binding only its windows (`rowPieces` of `engine/ops/norm.ts`); a row that does not fit throws.
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { gridFor, type KernelSpec } from "../kernel.ts";
import type { Runtime } from "../runtime.ts";
import { normAxis, numel, type Shape } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor, type TensorView } from "../tensor.ts";
import { rowGrid, type RowLayout, rowLayout } from "../../kernels/norm.ts";
import { softmaxBwdKernel, softmaxFwdKernel } from "../../kernels/softmax.ts";
import { copy } from "./elementwise.ts";
import { contiguous, permute, reshape } from "./movement.ts";
import { rowPieces } from "./norm.ts";

interface SoftmaxAttrs {
  log: boolean;
  /** The caller's input shape (for errors). */
  shape: Shape;
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

/**
 * Dispatches a softmax kernel over the rows of dense `[outer, n, inner]` operands, split into
 * blocks whose windows fit one storage binding ({@linkcode rowPieces}); extra parameter words:
 * every operand's offset in its binding.
 */
function encodeRows(
  rt: Runtime,
  a: SoftmaxAttrs,
  what: string,
  spec: (layout: RowLayout) => KernelSpec,
  views: TensorView[],
): void {
  if (a.outer * a.inner === 0 || a.n === 0) return;
  const layout = layoutOf(a, views.map((v) => v.offset));
  const u = layout === "row4" ? 4 : 1;
  const k = spec(layout);
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  const ops = views.map((view) => ({ view, kind: "rows" as const }));
  for (const pc of rowPieces(rt, what, a.shape, a.outer, a.n, a.inner, ops)) {
    rt.dispatch(
      k,
      pc.bindings,
      [pc.rows, a.n, a.inner, ...pc.offsets.map((o) => o / u)],
      gridFor(rowGrid(layout, pc.rows), 1, maxG),
    );
  }
}

const SOFTMAX_BWD: OpDef<SoftmaxAttrs> = {
  name: "softmax_backward",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const what = `${attrs.log ? "logSoftmax" : "softmax"} backward`;
    const spec = (layout: RowLayout) => softmaxBwdKernel(attrs.log, layout);
    encodeRows(rt, attrs, what, spec, [inputs[0]!, inputs[1]!, outputs[0]!]);
  },
};

const SOFTMAX: OpDef<SoftmaxAttrs> = {
  name: "softmax",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const what = attrs.log ? "logSoftmax" : "softmax";
    const spec = (layout: RowLayout) => softmaxFwdKernel(attrs.log, layout);
    encodeRows(rt, attrs, what, spec, [inputs[0]!, outputs[0]!]);
  },
  backward: ({ outputs, grads, attrs }) => {
    const y = outputs[0]!;
    const g = contiguous(grads[0]!);
    return [apply1(SOFTMAX_BWD, [y, g], attrs, { shape: y.shape, dtype: "f32" })];
  },
};

function softmaxAlong(
  name: string,
  log: boolean,
  x: Tensor,
  axis: number,
  shape: Shape = x.shape,
): Tensor {
  checkAlive(name, x);
  if (x.rank === 0) return reshape(softmaxAlong(name, log, reshape(x, [1]), 0, shape), []);
  const ax = normAxis(name, axis, x.rank);
  const outer = numel(x.shape.slice(0, ax));
  const n = x.shape[ax]!;
  const inner = numel(x.shape.slice(ax + 1));
  if (inner > 1 && n >= LONG_ROW && outer * inner < FEW_COLUMNS) {
    const perm = [...Array(x.rank).keys()].filter((d) => d !== ax).concat(ax);
    const inv = perm.map((_, i) => perm.indexOf(i));
    return permute(softmaxAlong(name, log, permute(x, perm), -1, shape), inv);
  }
  const src = x.dtype === "f32" ? contiguous(x) : copy(x);
  const attrs = { log, shape, outer, n, inner };
  return apply1(SOFTMAX, [src], attrs, { shape: x.shape, dtype: "f32" });
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
