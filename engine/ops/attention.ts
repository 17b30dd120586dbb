/**
 * Scaled dot-product attention (fused, flash-attention style) and rotary position embeddings.
 *
 * - {@linkcode attention}: `softmax(q kᵀ · scale) v` per (batch, head), never materialising the
 *   `L × L` scores: one fused forward kernel (online softmax) that also saves the per-row
 *   log-sum-exp, and a backward of two fused kernels that recompute the probabilities from it
 *   (`kernels/attention.ts`).
 * - {@linkcode ropeHalf} (rotate-half pairs `(j, j + D/2)`, Liger / HF-Llama layout, the one the
 *   Open-Sora 2.0 MMDiT uses) and {@linkcode ropeInterleaved} (Flux adjacent pairs `(2j, 2j+1)`
 *   with `pe` rotation matrices), both differentiable w.r.t. x (the backward is the transposed
 *   rotation, i.e. a rotation by −θ); the tables are treated as constants.
 * - {@linkcode ropeTablesHalf} / {@linkcode ropeTablesFlux}: the tables from `(t, h, w)`
 *   position ids, as `LigerEmbedND` / `EmbedND` of `opensora/models/mmdit`.
 *
 * QK normalisation composes from existing ops: `rmsNorm(q, scale, 1e-6)` from `./norm.ts`
 * normalises the last (head) axis of `[B, H, L, D]` (or `[B, L, H, D]`) heads, so an MMDiT
 * attention is
 * `attention(ropeHalf(rmsNorm(q, qs), cos, sin), ropeHalf(rmsNorm(k, ks), cos, sin), v)`.
 *
 * Tensors larger than one storage binding (`engine/window.ts`) run in several dispatches that
 * each bind only their windows: groups of heads, or, for a head over the limit, ranges of its
 * rows (RoPE) or blocks of its rows times ranges of the other side's rows (attention).
 *
 * @module
 */
import { DTYPE_BYTES } from "../dtype.ts";
import { apply, apply1, fromData } from "../graph.ts";
import { gridFor, type KernelSpec } from "../kernel.ts";
import type { Runtime } from "../runtime.ts";
import { fmtShape } from "../shape.ts";
import {
  checkAlive,
  type GradContext,
  noGrad,
  type OpDef,
  type Tensor,
  type TensorView,
} from "../tensor.ts";
import {
  ATTN_HEAD_DIMS,
  ATTN_WG,
  attnBwdKVKernel,
  attnBwdQKernel,
  attnFwdKernel,
  type AttnTile,
  attnTile,
  ropeKernel,
} from "../../kernels/attention.ts";
import { chunks, fitsBinding, rangeFits, spanOf, type Window, windowOf } from "../window.ts";
import { copy } from "./elementwise.ts";
import { pad, slice } from "./movement.ts";

// ---------------------------------------------------------------- attention

interface AttnAttrs {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  /** Head dim of the compiled variant (the inputs' D, padded). */
  D: number;
  scale: number;
}

/** Options of {@linkcode attention}. */
export interface AttentionOptions {
  /** Score scale; default `1 / sqrt(D)`. */
  scale?: number;
}

function f32Word(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0]!;
}

/**
 * One tensor bound by an attention kernel, in binding order: `[B, H, L, D]` (vec4 slot words
 * `[offset, stride b, stride h, stride l]`) or `[B, H, L]` (lse / Δ: one offset word).
 */
interface AttnOperand {
  /** Name in error messages (`q`, `dk`, ...). */
  name: string;
  view: TensorView;
  /**
   * `true`: indexed by the rows the workgroups own (query rows, or key rows for dK/dV); `false`:
   * by the streamed rows (keys, or queries for dK/dV).
   */
  rows: boolean;
}

/**
 * What one dispatch of an op over `B·H` heads covers: heads `[bh0, bh1)`, rows `[r0, r1)` of each
 * and, for attention, streamed rows `[s0, s1)` (all of both when it covers several heads).
 */
interface HeadPiece {
  bh0: number;
  bh1: number;
  r0: number;
  r1: number;
  s0: number;
  s1: number;
}

/**
 * Cuts `BH` heads of `L` rows (and `S` streamed rows) into dispatches whose windows `fits`: as
 * many whole heads as fit per dispatch; when not even one head fits, every head is cut into
 * ranges of whole blocks of `block` rows times ranges of whole steps of `step` streamed rows, in
 * order (each streamed range after the first accumulates). A piece with an empty range of rows or
 * of streamed rows must fit when the operands indexed by the other range fit. Every head spans
 * the same lengths, so what fits for head 0 fits for all. `unit` throws the op's error when the
 * smallest piece (one block and one step of head 0) does not fit.
 */
function headPieces(
  BH: number,
  [L, S]: [number, number],
  [block, step]: [number, number],
  fits: (p: HeadPiece) => boolean,
  unit: (p: HeadPiece) => void,
  what: string,
): HeadPiece[] {
  const piece = (bh0: number, bh1: number, r0: number, r1: number, s0: number, s1: number) => ({
    bh0,
    bh1,
    r0,
    r1,
    s0,
    s1,
  });
  const heads = (a: number, b: number) => piece(a, b, 0, L, 0, S);
  if (fits(heads(0, 1))) {
    return chunks(BH, (a, b) => fits(heads(a, b)), what).map(([a, b]) => heads(a, b));
  }
  unit(piece(0, 1, 0, Math.min(block, L), 0, Math.min(step, S)));
  const rows = chunks(L, (a, b) => fits(piece(0, 1, a, b, 0, 0)), what, block);
  const stream: [number, number][] = S === 0
    ? [[0, 0]]
    : chunks(S, (a, b) => fits(piece(0, 1, 0, 0, a, b)), what, step);
  const out: HeadPiece[] = [];
  for (let bh = 0; bh < BH; bh++) {
    for (const [r0, r1] of rows) {
      for (const [s0, s1] of stream) out.push(piece(bh, bh + 1, r0, r1, s0, s1));
    }
  }
  return out;
}

/** Element range `[lo, hi)` of `o`'s buffer that a piece touches (empty: `[offset, offset)`). */
function attnSpan(o: AttnOperand, p: HeadPiece): [number, number] {
  const v = o.view;
  const L = v.shape[2]!;
  const inner = v.shape[3] ?? 1;
  const [r0, r1] = o.rows ? [p.r0, p.r1] : [p.s0, p.s1];
  if (r1 === r0) return [v.offset, v.offset];
  const [lo, hi] = spanOf(
    v.shape,
    v.strides,
    (p.bh0 * L + r0) * inner,
    ((p.bh1 - 1) * L + r1) * inner,
  );
  return [v.offset + lo, v.offset + hi];
}

/**
 * Throws the RangeError of an op whose smallest piece cannot run: `what` (e.g. `one row of x`) of
 * `v` spans elements `[lo, hi)`, over the binding limit.
 */
function checkFits(
  rt: Runtime,
  op: string,
  what: string,
  v: TensorView,
  [lo, hi]: [number, number],
): void {
  if (rangeFits(rt, v.dtype, lo, hi)) return;
  throw new RangeError(
    `${op}: ${what} ${fmtShape(v.shape)} spans ${(hi - lo) * DTYPE_BYTES[v.dtype]} bytes, ` +
      `over the storage-binding limit of ${rt.maxBinding} bytes`,
  );
}

/**
 * Encodes an attention kernel over `ops` (binding order; `[B, H, L, D]` ones get slot words
 * first, then the `[B, H, L]` offsets). `rows` / `stream`: the lengths of the rows the workgroups
 * own and of those they stream over; `r`, `t`: the kernel's tile. Every buffer fits one binding:
 * one dispatch of everything, as without windows. Else {@linkcode headPieces}: groups of heads,
 * or (row blocks × streamed ranges) of one head, the later streamed ranges accumulating into the
 * outputs (`spec(true)`: the kernel's accumulate variant); a RangeError before anything is
 * dispatched when one block and one step do not fit.
 */
function encodeAttn(
  rt: Runtime,
  spec: (accumulate: boolean) => KernelSpec,
  op: string,
  a: AttnAttrs,
  [rows, stream]: [number, number],
  { r, t }: AttnTile,
  ops: AttnOperand[],
): void {
  const BH = a.B * a.H;
  if (BH === 0 || rows === 0) return;
  const block = ATTN_WG * r;
  const what = `${op} (q ${fmtShape(ops[0]!.view.shape)})`;
  const pieces = ops.every((o) => fitsBinding(rt, o.view.buffer))
    ? [{ bh0: 0, bh1: BH, r0: 0, r1: rows, s0: 0, s1: stream }]
    : headPieces(
      BH,
      [rows, stream],
      [block, t],
      (p) => ops.every((o) => rangeFits(rt, o.view.dtype, ...attnSpan(o, p))),
      (p) =>
        ops.forEach((o) =>
          checkFits(
            rt,
            what,
            o.rows ? `one block of ${block} rows of a head of ${o.name}` : `${t} rows of ${o.name}`,
            o.view,
            attnSpan(o, p),
          )
        ),
      what,
    );
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  for (const p of pieces) {
    const ws: Window[] = ops.map((o) =>
      windowOf(rt, o.view.buffer, o.view.dtype, ...attnSpan(o, p), `${op} ${o.name}`)
    );
    const nrb = Math.ceil((p.r1 - p.r0) / block);
    const groups = (p.bh1 - p.bh0) * nrb;
    const words = [a.H, a.Lq, a.Lk, nrb, groups, f32Word(a.scale), p.bh0, p.r0 / block];
    words.push(p.s0, p.s1, 0, 0);
    ops.forEach((o, i) => {
      const v = o.view;
      if (v.shape.length !== 4) return;
      const st = [0, 1, 2].map((d) => (v.shape[d] === 1 ? 0 : v.strides[d]! / 4));
      words.push(((v.offset - ws[i]!.shift) / 4) >>> 0, ...st);
    });
    ops.forEach((o, i) => {
      if (o.view.shape.length !== 4) words.push((o.view.offset - ws[i]!.shift) >>> 0);
    });
    rt.dispatch(spec(p.s0 > 0), ws.map((w) => w.binding), words, gridFor(groups, 1, maxG));
  }
}

const ATTN_BWD_Q: OpDef<AttnAttrs> = {
  name: "attention_backward_q",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [q, k, v, o, g, lse] = inputs as [
      TensorView,
      TensorView,
      TensorView,
      TensorView,
      TensorView,
      TensorView,
    ];
    const [dq, del] = outputs as [TensorView, TensorView];
    const tile = attnTile(attrs.D, "dq", rt.info.isFallback);
    encodeAttn(
      rt,
      (acc) => attnBwdQKernel(attrs.D, tile, acc),
      "attention backward dq",
      attrs,
      [attrs.Lq, attrs.Lk],
      tile,
      [
        { name: "q", view: q, rows: true },
        { name: "k", view: k, rows: false },
        { name: "v", view: v, rows: false },
        { name: "out", view: o, rows: true },
        { name: "dOut", view: g, rows: true },
        { name: "lse", view: lse, rows: true },
        { name: "dq", view: dq, rows: true },
        { name: "Δ", view: del, rows: true },
      ],
    );
  },
};

const ATTN_BWD_KV: OpDef<AttnAttrs> = {
  name: "attention_backward_kv",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [q, k, v, g, lse, del] = inputs as [
      TensorView,
      TensorView,
      TensorView,
      TensorView,
      TensorView,
      TensorView,
    ];
    const [dk, dv] = outputs as [TensorView, TensorView];
    const tile = attnTile(attrs.D, "dkv", rt.info.isFallback);
    encodeAttn(
      rt,
      (acc) => attnBwdKVKernel(attrs.D, tile, acc),
      "attention backward dk/dv",
      attrs,
      [attrs.Lk, attrs.Lq],
      tile,
      [
        { name: "q", view: q, rows: false },
        { name: "k", view: k, rows: true },
        { name: "v", view: v, rows: true },
        { name: "dOut", view: g, rows: false },
        { name: "lse", view: lse, rows: false },
        { name: "Δ", view: del, rows: false },
        { name: "dk", view: dk, rows: true },
        { name: "dv", view: dv, rows: true },
      ],
    );
  },
};

const ATTN: OpDef<AttnAttrs> = {
  name: "attention",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [q, k, v] = inputs as [TensorView, TensorView, TensorView];
    const [o, lse] = outputs as [TensorView, TensorView];
    const tile = attnTile(attrs.D, "fwd", rt.info.isFallback);
    encodeAttn(
      rt,
      (acc) => attnFwdKernel(attrs.D, tile, acc),
      "attention",
      attrs,
      [attrs.Lq, attrs.Lk],
      tile,
      [
        { name: "q", view: q, rows: true },
        { name: "k", view: k, rows: false },
        { name: "v", view: v, rows: false },
        { name: "out", view: o, rows: true },
        { name: "lse", view: lse, rows: true },
      ],
    );
  },
  backward: attentionBackward,
};

function attentionBackward({ inputs, outputs, grads, attrs }: GradContext<AttnAttrs>) {
  const gOut = grads[0];
  if (!gOut) return [null, null, null];
  const [q, k, v] = inputs as [Tensor, Tensor, Tensor];
  let [o, lse] = outputs as [Tensor, Tensor];
  if (o.disposed || lse.disposed) {
    // the forward's outputs were freed (forward and backward in different scopes): recompute
    [o, lse] = noGrad(() => forwardNode(q, k, v, attrs));
  }
  const g = aligned(gOut);
  const { B, H, Lq } = attrs;
  const [dq, del] = apply(ATTN_BWD_Q, [q, k, v, o, g, lse], attrs, [
    { shape: q.shape, dtype: "f32" },
    { shape: [B, H, Lq], dtype: "f32" },
  ]) as [Tensor, Tensor];
  const [dk, dv] = apply(ATTN_BWD_KV, [q, k, v, g, lse, del], attrs, [
    { shape: k.shape, dtype: "f32" },
    { shape: v.shape, dtype: "f32" },
  ]) as [Tensor, Tensor];
  return [dq, dk, dv];
}

function forwardNode(q: Tensor, k: Tensor, v: Tensor, a: AttnAttrs): [Tensor, Tensor] {
  return apply(ATTN, [q, k, v], a, [
    { shape: q.shape, dtype: "f32" },
    { shape: [a.B, a.H, a.Lq], dtype: "f32" },
  ]) as [Tensor, Tensor];
}

/**
 * `x` itself when the kernels can read it in place (f32, dense head dim, offset and the other
 * strides multiples of 4), else a dense copy.
 */
function aligned(x: Tensor): Tensor {
  const ok = x.dtype === "f32" && x.offset % 4 === 0 &&
    x.shape.every((n, i) => n === 1 || (i === 3 ? x.strides[i] === 1 : x.strides[i]! % 4 === 0));
  return ok ? x : copy(x);
}

/** Variant head dim for `d` (the smallest compiled one that holds it). */
function variantDim(d: number): number {
  const v = ATTN_HEAD_DIMS.find((x) => x >= d);
  if (v === undefined) {
    throw new RangeError(
      `attention: head dim ${d} is not supported (at most ${ATTN_HEAD_DIMS.at(-1)})`,
    );
  }
  return v;
}

/**
 * Scaled dot-product attention `softmax(q kᵀ · scale) v` (non-causal, no mask) per batch and
 * head. `q` is `[B, H, Lq, D]`, `k` and `v` are `[B, H, Lk, D]` (any `L ≥ 1`, `D ≤ 128`); the
 * inputs may be strided views (e.g. heads split from `[B, L, H·D]` by reshape + permute are read
 * in place when the head dim is dense). Returns a dense `[B, H, Lq, D]`. Memory is linear in L:
 * besides the output only a `[B, H, Lq]` log-sum-exp is saved for the backward, which
 * recomputes the probabilities. Differentiable w.r.t. q, k and v. Tensors larger than one
 * storage binding run in several dispatches that each bind only their windows: groups of heads,
 * or, for a head over the limit, blocks of its rows times ranges of the other side's rows.
 *
 * Head dims 16, 32, 64, 128 run directly; others are zero-padded to the next of those (the
 * default scale still uses the true D).
 *
 * @example
 * ```ts ignore
 * // heads from a [B, L, H*D] projection, merged back after attention
 * const heads = (t: Tensor) => permute(reshape(t, [B, L, H, D]), [0, 2, 1, 3]);
 * const o = attention(heads(q), heads(k), heads(v));            // [B, H, L, D]
 * const merged = reshape(permute(o, [0, 2, 1, 3]), [B, L, H * D]);
 * ```
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Tensor {
  for (const t of [q, k, v]) checkAlive("attention", t);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) {
    throw new RangeError(
      `attention: q, k, v must be [B, H, L, D]; got q ${fmtShape(q.shape)}, k ${
        fmtShape(k.shape)
      }, v ${fmtShape(v.shape)}`,
    );
  }
  const [B, H, Lq, D] = q.shape as [number, number, number, number];
  const Lk = k.shape[2]!;
  const same = (a: readonly number[], b: readonly number[]) => a.every((n, i) => n === b[i]);
  if (!same(k.shape, [B, H, Lk, D]) || !same(v.shape, k.shape)) {
    throw new RangeError(
      `attention: k and v must be [B, H, Lk, D] matching q ${fmtShape(q.shape)}; got k ${
        fmtShape(k.shape)
      }, v ${fmtShape(v.shape)}`,
    );
  }
  if (Lk === 0 || D === 0) {
    throw new RangeError(
      `attention: empty keys or head dim (q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)})`,
    );
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const Dv = variantDim(D);
  const prep = (t: Tensor) => aligned(Dv === D ? t : pad(t, [[0, 0], [0, 0], [0, 0], [0, Dv - D]]));
  const attrs: AttnAttrs = { B, H, Lq, Lk, D: Dv, scale };
  const out = forwardNode(prep(q), prep(k), prep(v), attrs)[0];
  return Dv === D ? out : slice(out, [0, 0, 0, 0], [B, H, Lq, D]);
}

// ---------------------------------------------------------------- RoPE

interface RopeAttrs {
  interleaved: boolean;
  transpose: boolean;
}

const ROPE: OpDef<RopeAttrs> = {
  name: "rope",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [x, t1, t2] = inputs as [TensorView, TensorView, TensorView];
    const out = outputs[0]!;
    const [B, H, L, D] = x.shape as [number, number, number, number];
    const rows = B * H * L;
    if (rows * D === 0) return;
    const st = (v: TensorView, i: number) => (v.shape[i] === 1 ? 0 : v.strides[i]!);
    // tables: half → cos/sin [Bt, L, D]; interleaved → pe [Bt, 1, L, D/2, 2, 2] (sin unused);
    // as seen from x's rows: [B, H, L, w] (w elements per row) with strides (b, 0, l, 1)
    const lAxis = attrs.interleaved ? 2 : 1;
    const w = attrs.interleaved ? 2 * D : D;
    const tb = attrs.interleaved
      ? [t1.offset, st(t1, 0), st(t1, 2), t1.offset, 0, 0]
      : [t1.offset, st(t1, 0), st(t1, 1), t2.offset, st(t2, 0), st(t2, 1)];
    // rows [a, b) read these element ranges of x, table 1, table 2 and write these of out
    const ranges = (a: number, b: number): [number, number][] => {
      const span = (v: TensorView, shape: number[], strides: number[], n: number) => {
        const [lo, hi] = spanOf(shape, strides, a * n, b * n);
        return [v.offset + lo, v.offset + hi] as [number, number];
      };
      const table = (t: TensorView) => span(t, [B, H, L, w], [st(t, 0), 0, st(t, lAxis), 1], w);
      return [
        span(x, x.shape as number[], x.strides as number[], D),
        table(t1),
        table(t2),
        [out.offset + a * D, out.offset + b * D],
      ];
    };
    const views = [x, t1, t2, out];
    const names = ["x", attrs.interleaved ? "pe" : "cos", attrs.interleaved ? "pe" : "sin", "y"];
    // rows of a piece: whole heads, or a range of rows of one head
    const rowsOf = (p: HeadPiece): [number, number] => [p.bh0 * L + p.r0, (p.bh1 - 1) * L + p.r1];
    const fits = (p: HeadPiece) =>
      ranges(...rowsOf(p)).every(([lo, hi], i) => rangeFits(rt, views[i]!.dtype, lo, hi));
    const unit = (p: HeadPiece) =>
      ranges(...rowsOf(p)).forEach((r, i) =>
        checkFits(rt, "rope", `one row of ${names[i]}`, views[i]!, r)
      );
    const pieces: [number, number][] = views.every((v) => fitsBinding(rt, v.buffer))
      ? [[0, rows]]
      : headPieces(B * H, [L, 0], [1, 1], fits, unit, `rope ${fmtShape(x.shape)}`).map(rowsOf);
    const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
    for (const [a, b] of pieces) {
      const ws = ranges(a, b).map(([lo, hi], i) =>
        windowOf(rt, views[i]!.buffer, views[i]!.dtype, lo, hi, `rope ${names[i]}`)
      );
      const pairs = (b - a) * (D / 2);
      const words = [
        pairs,
        H,
        L,
        D / 2,
        (attrs.interleaved ? 1 : 0) | (attrs.transpose ? 2 : 0),
        (x.offset - ws[0]!.shift) >>> 0,
        ...[0, 1, 2, 3].map((i) => st(x, i)),
        (tb[0]! - ws[1]!.shift) >>> 0,
        tb[1]!,
        tb[2]!,
        (tb[3]! - ws[2]!.shift) >>> 0,
        tb[4]!,
        tb[5]!,
        a,
        (out.offset - ws[3]!.shift) >>> 0,
      ];
      rt.dispatch(ropeKernel(), ws.map((w) => w.binding), words, gridFor(pairs, 64, maxG));
    }
  },
  backward: ({ inputs, grads, attrs }) => [
    apply1(
      ROPE,
      [grads[0]!, inputs[1]!, inputs[2]!],
      { ...attrs, transpose: !attrs.transpose },
      { shape: inputs[0]!.shape, dtype: "f32" },
    ),
    null,
    null,
  ],
};

/** Tables must be f32 with a dense trailing part (the kernel walks only batch and L strides). */
function denseTail(t: Tensor, from: number): Tensor {
  let expect = 1;
  for (let i = t.rank - 1; i >= from; i--) {
    if (t.shape[i] !== 1 && t.strides[i] !== expect) return copy(t);
    expect *= t.shape[i]!;
  }
  return t.dtype === "f32" ? t : copy(t);
}

function f32(x: Tensor): Tensor {
  return x.dtype === "f32" ? x : copy(x);
}

function checkX(op: string, x: Tensor): [number, number, number, number] {
  checkAlive(op, x);
  if (x.rank !== 4 || x.shape[3]! % 2 !== 0) {
    throw new RangeError(`${op}: x must be [B, H, L, D] with even D, got ${fmtShape(x.shape)}`);
  }
  return x.shape as [number, number, number, number];
}

/**
 * Rotary embedding, rotate-half layout (LigerRopeFunction / HF-Llama; the Open-Sora 2.0 MMDiT
 * with `use_liger_rope=True`): with h = D/2, for j < h
 * `y[j] = x[j]·cos[j] − x[j+h]·sin[j]`, `y[j+h] = x[j+h]·cos[j+h] + x[j]·sin[j+h]`
 * (i.e. `x·cos + rotate_half(x)·sin`). `x` is `[B, H, L, D]` (any layout); `cos`, `sin` are
 * `[B, L, D]` or `[1, L, D]` (broadcast over heads and batch), e.g. from
 * {@linkcode ropeTablesHalf}. Returns a dense tensor. Differentiable w.r.t. x (the tables are
 * constants).
 *
 * @example
 * ```ts ignore
 * const { cos, sin } = ropeTablesHalf(ids, [B, L, 3], [16, 56, 56]);
 * const qr = ropeHalf(q, cos, sin);
 * ```
 */
export function ropeHalf(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const [B, , L, D] = checkX("ropeHalf", x);
  for (const t of [cos, sin]) {
    checkAlive("ropeHalf", t);
    if (
      t.rank !== 3 || (t.shape[0] !== B && t.shape[0] !== 1) || t.shape[1] !== L ||
      t.shape[2] !== D
    ) {
      throw new RangeError(
        `ropeHalf: cos/sin must be [${B}, ${L}, ${D}] (or batch 1) for x ${fmtShape(x.shape)}, ` +
          `got ${fmtShape(t.shape)}`,
      );
    }
  }
  return apply1(ROPE, [f32(x), denseTail(cos, 2), denseTail(sin, 2)], {
    interleaved: false,
    transpose: false,
  }, { shape: x.shape, dtype: "f32" });
}

/**
 * Rotary embedding, Flux layout (`apply_rope` of `opensora/models/mmdit/math.py`): adjacent
 * pairs rotated by 2×2 matrices, `[y[2j], y[2j+1]] = pe[j] · [x[2j], x[2j+1]]`. `x` is
 * `[B, H, L, D]` (any layout), `pe` is `[B, 1, L, D/2, 2, 2]` (or batch 1), e.g. from
 * {@linkcode ropeTablesFlux}. Returns a dense tensor. Differentiable w.r.t. x (`peᵀ` applied to
 * the gradient; the table is a constant).
 *
 * @example
 * ```ts ignore
 * const pe = ropeTablesFlux(ids, [B, L, 3], [16, 56, 56]);
 * const qr = ropeInterleaved(q, pe);
 * ```
 */
export function ropeInterleaved(x: Tensor, pe: Tensor): Tensor {
  const [B, , L, D] = checkX("ropeInterleaved", x);
  checkAlive("ropeInterleaved", pe);
  const want = [B, 1, L, D / 2, 2, 2];
  if (pe.rank !== 6 || !pe.shape.every((n, i) => n === want[i] || (i === 0 && n === 1))) {
    throw new RangeError(
      `ropeInterleaved: pe must be ${fmtShape(want)} (or batch 1) for x ${fmtShape(x.shape)}, ` +
        `got ${fmtShape(pe.shape)}`,
    );
  }
  const p = denseTail(pe, 3);
  return apply1(ROPE, [f32(x), p, p], { interleaved: true, transpose: false }, {
    shape: x.shape,
    dtype: "f32",
  });
}

/** Angles `[B, L, Σ d_a / 2]` from position ids, per axis `pos · θ^(−2i/d_a)`. */
function ropeAngles(
  op: string,
  ids: Float32Array,
  shape: readonly [number, number, number],
  axesDim: readonly number[],
  theta: number,
  f32: boolean,
): Float64Array {
  const [B, L, n] = shape;
  if (ids.length !== B * L * n || axesDim.length !== n) {
    throw new RangeError(
      `${op}: ids of ${ids.length} values for shape ${fmtShape(shape)} and axes_dim [${axesDim}]`,
    );
  }
  if (axesDim.some((d) => d % 2 !== 0 || d <= 0)) {
    throw new RangeError(`${op}: axes_dim entries must be even and positive, got [${axesDim}]`);
  }
  const r = f32 ? Math.fround : (x: number) => x;
  const omega: number[] = [];
  const axisOf: number[] = [];
  axesDim.forEach((d, a) => {
    for (let i = 0; i < d; i += 2) {
      // liger_rope: arange(0, d, 2, f32) / d, theta ** scale, 1 / that, all in f32
      omega.push(r(1 / r(theta ** r(i / d))));
      axisOf.push(a);
    }
  });
  const half = omega.length;
  const out = new Float64Array(B * L * half);
  for (let t = 0; t < B * L; t++) {
    for (let j = 0; j < half; j++) out[t * half + j] = r(ids[t * n + axisOf[j]!]! * omega[j]!);
  }
  return out;
}

/**
 * Rotate-half RoPE tables from `(t, h, w)` position ids, as `LigerEmbedND(dim, theta, axes_dim)`:
 * per axis a, `ω_i = 1 / θ^(2i/d_a)` (f32), angles `φ = pos · ω` concatenated over the axes
 * (`D/2 = Σ d_a/2` values), then `cos = [cos φ, cos φ]`, `sin = [sin φ, sin φ]` (`[B, L, D]`).
 * `ids` is row-major `[B, L, nAxes]`.
 *
 * @example
 * ```ts ignore
 * const { cos, sin } = ropeTablesHalf(ids, [1, 4096, 3], [16, 56, 56], 10000);
 * ```
 */
export function ropeTablesHalf(
  ids: Float32Array,
  shape: readonly [number, number, number],
  axesDim: readonly number[],
  theta = 10000,
): { cos: Tensor; sin: Tensor } {
  const phi = ropeAngles("ropeTablesHalf", ids, shape, axesDim, theta, true);
  const [B, L] = shape;
  const half = phi.length / (B * L);
  const D = 2 * half;
  const c = new Float32Array(B * L * D);
  const s = new Float32Array(B * L * D);
  for (let t = 0; t < B * L; t++) {
    for (let j = 0; j < half; j++) {
      const a = phi[t * half + j]!;
      c[t * D + j] = c[t * D + j + half] = Math.cos(a);
      s[t * D + j] = s[t * D + j + half] = Math.sin(a);
    }
  }
  return { cos: fromData(c, [B, L, D], "f32"), sin: fromData(s, [B, L, D], "f32") };
}

/**
 * Flux RoPE table from position ids, as `EmbedND(dim, theta, axes_dim)` (angles in float64, then
 * cast): `pe[b, 0, l, j] = [[cos φ_j, −sin φ_j], [sin φ_j, cos φ_j]]`, shape
 * `[B, 1, L, D/2, 2, 2]`. `ids` is row-major `[B, L, nAxes]`.
 *
 * @example
 * ```ts ignore
 * const pe = ropeTablesFlux(ids, [1, 4096, 3], [16, 56, 56], 10000);
 * ```
 */
export function ropeTablesFlux(
  ids: Float32Array,
  shape: readonly [number, number, number],
  axesDim: readonly number[],
  theta = 10000,
): Tensor {
  const phi = ropeAngles("ropeTablesFlux", ids, shape, axesDim, theta, false);
  const [B, L] = shape;
  const half = phi.length / (B * L);
  const pe = new Float32Array(phi.length * 4);
  for (let i = 0; i < phi.length; i++) {
    const c = Math.cos(phi[i]!), s = Math.sin(phi[i]!);
    pe[4 * i] = c;
    pe[4 * i + 1] = -s;
    pe[4 * i + 2] = s;
    pe[4 * i + 3] = c;
  }
  return fromData(pe, [B, 1, L, half, 2, 2], "f32");
}
