/**
 * Normalisation layers as fused kernels: LayerNorm and RMSNorm over the last axis, RMSNorm over
 * the channels of `N C ...` (the DC-AE's RMSNorm3d) and GroupNorm.
 *
 * All four are one op: a dense input viewed as `[outer, n, inner]` is normalised across `n`
 * (stride `inner`), then scaled and shifted per channel. The forward kernel also returns the
 * per-row mean (0 for RMS) and rstd as a second output `[rows, 2]`, which the backward kernel
 * uses for the input gradient; the weight and bias gradients are sums (reduce ops) of
 * `dy · x̂` and `dy`.
 *
 * Tensors larger than one storage binding: {@linkcode rowPieces} (shared with softmax) splits the
 * dispatch into blocks of whole `[n, inner]` slabs (outer indices), or, when one slab does not fit,
 * into blocks of columns of one slab if the `n` elements of one column fit; each block binds only
 * the window of every operand it touches. A column that does not fit throws a RangeError.
 *
 * @module
 */
import { apply, apply1 } from "../graph.ts";
import { gridFor, Params } from "../kernel.ts";
import type { Binding, Runtime } from "../runtime.ts";
import { fmtShape, numel, type Shape } from "../shape.ts";
import { DTYPE_BYTES } from "../dtype.ts";
import { chunks, fitsBinding, rangeFits, windowOf } from "../window.ts";
import { checkAlive, type OpDef, type Tensor, type TensorView } from "../tensor.ts";
import {
  normBwdKernel,
  normFwdKernel,
  type NormKind,
  rowGrid,
  type RowLayout,
  rowLayout,
} from "../../kernels/norm.ts";
import { copy, mul, sub } from "./elementwise.ts";
import { contiguous, expand, reshape, slice } from "./movement.ts";
import { sum } from "./reduce.ts";

interface NormAttrs {
  /** The builder's name, for errors. */
  op: string;
  kind: NormKind;
  outer: number;
  n: number;
  inner: number;
  /** Affine indexing `(o % G) · cpg + j / S` (GroupNorm). */
  grouped: boolean;
  G: number;
  cpg: number;
  S: number;
  eps: number;
  weight: boolean;
  bias: boolean;
  /** x viewed as `[P, G, c, Q]`, parameters indexed by `[G, c]`, summed over P and Q. */
  x4: Shape;
  /** Shape of the row statistics, broadcastable to `x4`. */
  s4: Shape;
}

/**
 * An operand of a row kernel over a dense `[outer, n, inner]` tensor: `rows` (dense, the shape of
 * the tensor), `stats` (`[outer · inner, 2]`, one pair per row) or `whole` (`size` elements every row
 * reads, e.g. an affine weight).
 */
export interface RowOperand {
  view: TensorView;
  kind: "rows" | "stats" | "whole";
  /** Elements of a `whole` operand. */
  size?: number;
}

/** One dispatch of a row kernel over a block of rows (see {@linkcode rowPieces}). */
export interface RowPiece {
  /** Rows of the block (the kernels' `rows` parameter). */
  rows: number;
  /** Outer index of the block's first row. */
  o0: number;
  /** Per operand: its element offset in its binding (the window's shift subtracted). */
  offsets: number[];
  /** Per operand: its binding (the whole buffer, or the window the block touches). */
  bindings: Binding[];
}

/**
 * Splits a row kernel over a dense `[outer, n, inner]` tensor into dispatches whose operands each
 * fit one storage binding: a single piece with whole buffers when everything fits (as before
 * windows existed), else blocks of whole `[n, inner]` slabs, else (inner > 1) blocks of columns
 * `[i0, i1)` of one slab. Throws a RangeError naming `op`, the `shape`, its bytes and the limit
 * when one row (one column of a slab: `n` elements `inner` apart) does not fit.
 */
export function rowPieces(
  rt: Runtime,
  op: string,
  shape: Shape,
  outer: number,
  n: number,
  inner: number,
  operands: RowOperand[],
): RowPiece[] {
  const slab = n * inner;
  // rows from (o, i0) to (o1 - 1, i1 - 1): outer blocks [o, o1) x [0, inner) or columns of one o
  const range = (d: RowOperand, o: number, i0: number, o1: number, i1: number) => {
    const off = d.view.offset;
    if (d.kind === "whole") return [off, off + d.size!] as const;
    if (d.kind === "stats") {
      return [off + 2 * (o * inner + i0), off + 2 * ((o1 - 1) * inner + i1)] as const;
    }
    return [off + o * slab + i0, off + (o1 - 1) * slab + (n - 1) * inner + i1] as const;
  };
  const fits = (o: number, i0: number, o1: number, i1: number) =>
    operands.every((d) =>
      fitsBinding(rt, d.view.buffer) || rangeFits(rt, d.view.dtype, ...range(d, o, i0, o1, i1))
    );
  const piece = (o: number, i0: number, o1: number, i1: number): RowPiece => {
    const offsets: number[] = [];
    const bindings = operands.map((d) => {
      const [first, end] = range(d, o, i0, o1, i1);
      const w = windowOf(rt, d.view.buffer, d.view.dtype, first, end, op);
      offsets.push(first - w.shift);
      return w.binding;
    });
    return { rows: (o1 - o - 1) * inner + i1 - i0, o0: o, offsets, bindings };
  };
  if (fits(0, 0, 1, inner)) {
    return chunks(outer, (a, b) => fits(a, 0, b, inner), op).map(([a, b]) => piece(a, 0, b, inner));
  }
  if (inner > 1 && fits(0, 0, 1, 1)) {
    const out: RowPiece[] = [];
    for (let o = 0; o < outer; o++) {
      for (const [a, b] of chunks(inner, (a, b) => fits(o, a, o + 1, b), op)) {
        out.push(piece(o, a, o + 1, b));
      }
    }
    return out;
  }
  const eb = DTYPE_BYTES[operands[0]!.view.dtype];
  const span = (n - 1) * inner + 1;
  const unit = inner === 1
    ? `one row of ${n} elements (${n * eb} bytes)`
    : `one row (${n} elements ${inner} apart) spans ${span} elements (${span * eb} bytes) and`;
  throw new RangeError(
    `${op}: input ${fmtShape(shape)} (${numel(shape) * eb} bytes): ${unit} does not fit one ` +
      `storage binding (limit ${rt.maxBinding} bytes)`,
  );
}

function pickLayout(a: NormAttrs, x: TensorView[], w: TensorView[]): RowLayout {
  const offs = [...x, ...(a.grouped ? [] : w)].map((v) => v.offset);
  const layout = rowLayout(a.n, a.inner, offs.every((o) => o % 4 === 0));
  // grouped vec4 needs the 4 lanes in one channel
  return layout === "row4" && a.grouped && a.S % 4 !== 0 ? "row" : layout;
}

function variant(a: NormAttrs, layout: RowLayout, bias: boolean) {
  return { kind: a.kind, layout, weight: a.weight, bias, grouped: a.grouped };
}

/** Elements of the affine parameters (read whole by every row). */
function channels(a: NormAttrs): number {
  return a.grouped ? a.G * a.cpg : a.n;
}

const NORM_BWD: OpDef<NormAttrs> = {
  name: "norm_backward",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs: a }) => {
    const rows = a.outer * a.inner;
    if (rows === 0 || a.n === 0) return;
    const [x, g, st, w] = inputs as [TensorView, TensorView, TensorView, TensorView?];
    const dx = outputs[0]!;
    const layout = pickLayout(a, [x, g, dx], w ? [w] : []);
    const u = layout === "row4" ? 4 : 1;
    const wu = layout === "row4" && !a.grouped ? 4 : 1;
    const ops: RowOperand[] = [
      { view: x, kind: "rows" },
      { view: g, kind: "rows" },
      { view: st, kind: "stats" },
      ...(w ? [{ view: w, kind: "whole" as const, size: channels(a) }] : []),
      { view: dx, kind: "rows" },
    ];
    const spec = normBwdKernel(variant(a, layout, false));
    const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
    for (const pc of rowPieces(rt, `${a.op} backward`, x.shape, a.outer, a.n, a.inner, ops)) {
      const [xo, go, so] = pc.offsets as [number, number, number];
      const p = new Params().u32(
        pc.rows,
        a.n,
        a.inner,
        xo / u,
        go / u,
        so,
        (w ? pc.offsets[3]! : 0) / wu,
        a.G,
        a.cpg,
        a.S,
        pc.offsets.at(-1)! / u,
        pc.o0,
      );
      rt.dispatch(spec, pc.bindings, p, gridFor(rowGrid(layout, pc.rows), 1, maxG));
    }
  },
};

/** Sums a `[P, G, c, Q]` tensor over P and Q into a `[channels]` parameter gradient. */
function paramSum(t: Tensor, a: NormAttrs, shape: Shape): Tensor {
  let s = sum(t, [0]);
  if (a.x4[3]! > 1) s = sum(s, [2]);
  return reshape(s, shape);
}

const NORM: OpDef<NormAttrs> = {
  name: "norm",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs: a }) => {
    const rows = a.outer * a.inner;
    if (rows === 0 || a.n === 0) return;
    const x = inputs[0]!;
    const params = inputs.slice(1);
    const [y, st] = outputs as [TensorView, TensorView];
    const layout = pickLayout(a, [x, y], params);
    const u = layout === "row4" ? 4 : 1;
    const wu = layout === "row4" && !a.grouped ? 4 : 1;
    const ops: RowOperand[] = [
      { view: x, kind: "rows" },
      ...params.map((view) => ({ view, kind: "whole" as const, size: channels(a) })),
      { view: y, kind: "rows" },
      { view: st, kind: "stats" },
    ];
    const spec = normFwdKernel(variant(a, layout, a.bias));
    const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
    for (const pc of rowPieces(rt, a.op, x.shape, a.outer, a.n, a.inner, ops)) {
      const off = pc.offsets;
      const wo = a.weight ? off[1]! : 0;
      const bo = a.bias ? off[a.weight ? 2 : 1]! : 0;
      const p = new Params()
        .u32(pc.rows, a.n, a.inner, off[0]! / u, wo / wu, bo / wu)
        .u32(a.G, a.cpg, a.S)
        .f32(a.eps)
        .u32(off.at(-2)! / u, off.at(-1)!, pc.o0);
      rt.dispatch(spec, pc.bindings, p, gridFor(rowGrid(layout, pc.rows), 1, maxG));
    }
  },
  backward: ({ inputs, outputs, grads, attrs: a }) => {
    const gy = grads[0];
    if (!gy) return inputs.map(() => null);
    const x = inputs[0]!;
    const w = a.weight ? inputs[1]! : null;
    const b = a.bias ? inputs[a.weight ? 2 : 1]! : null;
    const st = outputs[1]!;
    const g = contiguous(gy);
    const dx = x.requiresGrad
      ? apply1(NORM_BWD, w ? [x, g, st, w] : [x, g, st], a, { shape: x.shape, dtype: "f32" })
      : null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (w?.requiresGrad) {
      const rows = a.outer * a.inner;
      const mean = expand(reshape(slice(st, [0, 0], [rows, 1]), a.s4), a.x4);
      const rstd = expand(reshape(slice(st, [0, 1], [rows, 2]), a.s4), a.x4);
      const xhat = mul(sub(reshape(x, a.x4), mean), rstd);
      dw = paramSum(mul(reshape(g, a.x4), xhat), a, w.shape);
    }
    if (b?.requiresGrad) db = paramSum(reshape(g, a.x4), a, b.shape);
    const out: (Tensor | null)[] = [dx];
    if (w) out.push(dw);
    if (b) out.push(db);
    return out;
  },
};

/** A dense f32 version of `t` (a copy only when needed). */
function dense(t: Tensor): Tensor {
  return t.dtype === "f32" ? contiguous(t) : copy(t);
}

function checkParam(op: string, what: string, p: Tensor | undefined, x: Tensor, n: number) {
  if (!p) return;
  checkAlive(op, p);
  if (p.rank !== 1 || p.shape[0] !== n) {
    throw new RangeError(
      `${op}: ${what} shape ${fmtShape(p.shape)} does not match input ${fmtShape(x.shape)} ` +
        `(expected [${n}])`,
    );
  }
}

function normalize(
  op: string,
  x: Tensor,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  a: Omit<NormAttrs, "op" | "weight" | "bias">,
  channels: number,
): Tensor {
  checkParam(op, "weight", weight, x, channels);
  checkParam(op, "bias", bias, x, channels);
  if (!(a.eps >= 0)) throw new RangeError(`${op}: eps must be >= 0, got ${a.eps}`);
  const ins = [dense(x)];
  if (weight) ins.push(dense(weight));
  if (bias) ins.push(dense(bias));
  const attrs: NormAttrs = { ...a, op, weight: !!weight, bias: !!bias };
  const [y] = apply(NORM, ins, attrs, [
    { shape: x.shape, dtype: "f32" },
    { shape: [a.outer * a.inner, 2], dtype: "f32" },
  ]);
  return y!;
}

function lastAxis(op: string, kind: NormKind, x: Tensor, w?: Tensor, b?: Tensor, eps = 0) {
  checkAlive(op, x);
  if (x.rank < 1) throw new RangeError(`${op}: needs at least one axis, got ${fmtShape(x.shape)}`);
  const n = x.shape[x.rank - 1]!;
  const rows = n === 0 ? 0 : x.size / n;
  return normalize(op, x, w, b, {
    kind,
    outer: rows,
    n,
    inner: 1,
    grouped: false,
    G: 1,
    cpg: n,
    S: 1,
    eps,
    x4: [rows, 1, n, 1],
    s4: [rows, 1, 1, 1],
  }, n);
}

/**
 * Layer normalisation over the last axis (PyTorch `nn.LayerNorm(n)`):
 * `y = (x - mean) / sqrt(var + eps) · weight + bias` with the biased variance. `weight` and
 * `bias` (shape `[n]`) are optional. Differentiable w.r.t. x, weight and bias.
 *
 * @example
 * ```ts ignore
 * const h = layerNorm(x, gamma, beta, 1e-6);
 * ```
 */
export function layerNorm(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  return lastAxis("layerNorm", "layer", x, weight, bias, eps);
}

/**
 * RMS normalisation over the last axis: `y = x · rsqrt(mean(x²) + eps) · weight` (`weight`
 * shape `[n]`, optional). Differentiable w.r.t. x and weight.
 *
 * @example
 * ```ts ignore
 * const q = rmsNorm(qRaw, scale, 1e-6);
 * ```
 */
export function rmsNorm(x: Tensor, weight?: Tensor, eps = 1e-6): Tensor {
  return lastAxis("rmsNorm", "rms", x, weight, undefined, eps);
}

/**
 * RMS normalisation across the channels (axis 1) of `N C ...` (the DC-AE's RMSNorm3d):
 * `y = x / sqrt(mean_c(x²) + eps) · weight[c] + bias[c]`, computed in place on the layout (no
 * transpose). `weight`, `bias` have shape `[C]` (optional). Differentiable w.r.t. all inputs.
 *
 * @example
 * ```ts ignore
 * const h = rmsNormChannels(x, w, b);   // x: [N, C, T, H, W]
 * ```
 */
export function rmsNormChannels(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  const op = "rmsNormChannels";
  checkAlive(op, x);
  if (x.rank < 2) throw new RangeError(`${op}: needs N C ... input, got ${fmtShape(x.shape)}`);
  const [N, C] = x.shape as [number, number];
  const inner = numel(x.shape.slice(2));
  return normalize(op, x, weight, bias, {
    kind: "rms",
    outer: N,
    n: C,
    inner,
    grouped: false,
    G: 1,
    cpg: C,
    S: 1,
    eps,
    x4: [N, 1, C, inner],
    s4: [N, 1, 1, inner],
  }, C);
}

/**
 * Group normalisation of `N C ...` (PyTorch `nn.GroupNorm(groups, C)`): the channels are split
 * into `groups` groups, each normalised over its channels and all spatial positions, then
 * scaled and shifted per channel by `weight`, `bias` (shape `[C]`, optional).
 * Differentiable w.r.t. all inputs.
 *
 * @example
 * ```ts ignore
 * const h = groupNorm(x, 32, gamma, beta);   // x: [N, C, H, W]
 * ```
 */
export function groupNorm(
  x: Tensor,
  groups: number,
  weight?: Tensor,
  bias?: Tensor,
  eps = 1e-5,
): Tensor {
  const op = "groupNorm";
  checkAlive(op, x);
  if (x.rank < 2) throw new RangeError(`${op}: needs N C ... input, got ${fmtShape(x.shape)}`);
  const [N, C] = x.shape as [number, number];
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) {
    throw new RangeError(
      `${op}: ${C} channels of ${fmtShape(x.shape)} cannot form ${groups} groups`,
    );
  }
  const S = numel(x.shape.slice(2));
  const cpg = C / groups;
  return normalize(op, x, weight, bias, {
    kind: "layer",
    outer: N * groups,
    n: cpg * S,
    inner: 1,
    grouped: true,
    G: groups,
    cpg,
    S,
    eps,
    x4: [N, groups, cpg, S],
    s4: [N, groups, 1, 1],
  }, C);
}
