/**
 * Batched matrix multiply with broadcasting batch axes, transposed operands read in place (a
 * `transpose(w)` view costs no copy) and a fused bias epilogue. Backward is two matmuls.
 * Operands stored as f16 / bf16 (compact weights) are read as they are and widened in the kernel;
 * they must not require grad (the gradient w.r.t. the other operand reads them the same way).
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { broadcastShapes, fmtShape, numel } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor, type TensorView } from "../tensor.ts";
import { encodeMatmul, type MatmulDType } from "../../kernels/matmul.ts";
import { isHalf } from "../dtype.ts";
import { contiguous, expand, reshape, sumTo, transpose } from "./movement.ts";
import { copy } from "./elementwise.ts";
import { sum } from "./reduce.ts";

/** How an operand's last two axes sit in memory. */
interface Operand {
  trans: boolean;
  ld: number;
  batchStride: number;
}

/** Layout of a matrix operand, or null when it needs a dense copy. */
function layout(t: Tensor, batchShape: readonly number[]): Operand | null {
  const r = t.rank;
  const rows = t.shape[r - 2]!;
  const cols = t.shape[r - 1]!;
  const sr = t.strides[r - 2]!;
  const sc = t.strides[r - 1]!;
  let trans: boolean;
  let ld: number;
  if ((cols === 1 || sc === 1) && (rows === 1 || sr >= cols)) {
    trans = false;
    ld = rows === 1 ? cols : sr;
  } else if ((rows === 1 || sr === 1) && (cols === 1 || sc >= rows)) {
    trans = true;
    ld = cols === 1 ? rows : sc;
  } else return null;
  // batch axes: one stride must describe them all (or 0 = broadcast)
  const nb = batchShape.length;
  const lead = nb - (r - 2);
  let stride: number | null = null;
  let expectNext: number | null = null;
  for (let i = nb - 1; i >= 0; i--) {
    const size = batchShape[i]!;
    if (size === 1) continue;
    const ti = i - lead;
    const s = ti >= 0 && t.shape[ti] !== 1 ? t.strides[ti]! : 0;
    if (stride === null) {
      stride = s;
      expectNext = s * size;
    } else {
      if (stride === 0 ? s !== 0 : s !== expectNext) return null;
      expectNext = s * size;
    }
  }
  return { trans, ld, batchStride: stride ?? 0 };
}

interface MatmulAttrs {
  batchShape: number[];
  m: number;
  n: number;
  k: number;
  bias: boolean;
}

const MATMUL: OpDef<MatmulAttrs> = {
  name: "matmul",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [a, b] = inputs as [TensorView, TensorView];
    const la = viewLayout(a, attrs.batchShape)!;
    const lb = viewLayout(b, attrs.batchShape)!;
    const out = outputs[0]!;
    encodeMatmul(rt, {
      batch: numel(attrs.batchShape),
      m: attrs.m,
      n: attrs.n,
      k: attrs.k,
      a: a.buffer,
      aOffset: a.offset,
      aBatchStride: la.batchStride,
      lda: la.ld,
      transA: la.trans,
      b: b.buffer,
      bOffset: b.offset,
      bBatchStride: lb.batchStride,
      ldb: lb.ld,
      transB: lb.trans,
      aDType: a.dtype as MatmulDType,
      bDType: b.dtype as MatmulDType,
      bias: attrs.bias ? { buffer: inputs[2]!.buffer, offset: inputs[2]!.offset } : undefined,
      out: out.buffer,
      outOffset: out.offset,
    });
  },
  backward: ({ inputs, grads, attrs }) => {
    const [a, b, bias] = inputs as [Tensor, Tensor, Tensor | undefined];
    const g = grads[0]!;
    // C = A·B  ⇒  dA = dC·Bᵀ, dB = Aᵀ·dC (summed over broadcast batch axes)
    const ga = a.requiresGrad ? sumTo(matmul(g, transpose(b)), a.shape) : null;
    const gb = b.requiresGrad ? sumTo(matmul(transpose(a), g), b.shape) : null;
    const out: (Tensor | null)[] = [ga, gb];
    if (attrs.bias) out.push(bias!.requiresGrad ? sum(g, [...Array(g.rank - 1).keys()]) : null);
    return out;
  },
};

function viewLayout(v: TensorView, batchShape: readonly number[]): Operand | null {
  return layout(
    { rank: v.shape.length, shape: v.shape, strides: v.strides } as unknown as Tensor,
    batchShape,
  );
}

/** Options of {@linkcode matmul}. */
export interface MatmulOptions {
  /** A `[n]` vector added to every output row (fused into the kernel). */
  bias?: Tensor;
}

/**
 * `a · b` over the last two axes, broadcasting leading (batch) axes: `[..., m, k] · [..., k, n]
 * → [..., m, n]`. A 1-D `a` or `b` is treated as a row / column vector and that axis is dropped
 * from the result, as in numpy.
 *
 * @example
 * ```ts ignore
 * const y = matmul(x, transpose(w), { bias: b }); // x·wᵀ + b, like nn.Linear, no copy of w
 * ```
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  checkAlive("matmul", a);
  checkAlive("matmul", b);
  if (a.rank === 0 || b.rank === 0) throw new RangeError(`matmul: scalars are not matrices`);
  if (a.rank === 1) {
    return reshape(matmul(reshape(a, [1, a.shape[0]!]), b, options), dropAxis(-2, a, b));
  }
  if (b.rank === 1) {
    return reshape(matmul(a, reshape(b, [b.shape[0]!, 1]), options), dropAxis(-1, a, b));
  }
  const m = a.shape[a.rank - 2]!;
  const k = a.shape[a.rank - 1]!;
  const k2 = b.shape[b.rank - 2]!;
  const n = b.shape[b.rank - 1]!;
  if (k !== k2) {
    throw new RangeError(
      `matmul: inner sizes differ: ${fmtShape(a.shape)} · ${fmtShape(b.shape)} (${k} vs ${k2})`,
    );
  }
  const batchShape = broadcastShapes("matmul", a.shape.slice(0, -2), b.shape.slice(0, -2));
  const bias = options.bias;
  if (bias && (bias.rank !== 1 || bias.shape[0] !== n)) {
    throw new RangeError(
      `matmul: bias ${fmtShape(bias.shape)} must be [${n}] for output width ${n}`,
    );
  }
  // Fold a broadcast-free batch of `a` into m when b is a single matrix (one larger GEMM).
  if (b.rank === 2 && a.rank > 2 && a.contiguous) {
    const a2 = reshape(a, [numel(a.shape.slice(0, -1)), k]);
    const y = matmul(a2, b, options);
    return reshape(y, [...a.shape.slice(0, -1), n]);
  }
  const fa = operand(halfOrF32("matmul", "a", a), batchShape);
  const fb = operand(halfOrF32("matmul", "b", b), batchShape);
  const ins = [fa, fb];
  if (bias) ins.push(bias.dtype === "f32" ? contiguous(bias) : copy(bias));
  if (m === 0 || n === 0 || k === 0) {
    throw new RangeError(`matmul: empty operand ${fmtShape(a.shape)} · ${fmtShape(b.shape)}`);
  }
  return apply1(MATMUL, ins, { batchShape, m, n, k, bias: !!bias }, {
    shape: [...batchShape, m, n],
    dtype: "f32",
  });
}

/**
 * An operand the kernel reads: f32 as it is, f16 / bf16 as it is (widened in the kernel; frozen:
 * no gradient w.r.t. a 16-bit operand), other dtypes widened to f32 by a copy.
 */
export function halfOrF32(op: string, name: string, t: Tensor): Tensor {
  if (isHalf(t.dtype)) {
    if (t.requiresGrad) {
      throw new TypeError(
        `${op}: ${name} ${fmtShape(t.shape)} is ${t.dtype} and requires grad; gradients w.r.t. ` +
          `f16/bf16 weights are not supported (they are frozen storage): train an f32 copy ` +
          `(copy(w)) or clear requiresGrad`,
      );
    }
    return t;
  }
  return t.dtype === "f32" ? t : copy(t);
}

/**
 * The operand as the kernel can read it (a 16-bit operand whose layout needs a copy is widened
 * to f32 by that copy): in place when one batch stride describes it, else a
 * dense copy (broadcast over the full batch when its batch axes mix broadcast and real strides).
 */
function operand(t: Tensor, batchShape: readonly number[]): Tensor {
  if (layout(t, batchShape)) return t;
  const c = contiguous(t);
  if (layout(c, batchShape)) return c;
  return copy(expand(t, [...batchShape, ...t.shape.slice(-2)]));
}

function dropAxis(axis: -1 | -2, a: Tensor, b: Tensor): number[] {
  const a2 = a.rank === 1 ? [1, a.shape[0]!] : a.shape;
  const b2 = b.rank === 1 ? [b.shape[0]!, 1] : b.shape;
  const batch = broadcastShapes("matmul", a2.slice(0, -2), b2.slice(0, -2));
  const full = [...batch, a2[a2.length - 2]!, b2[b2.length - 1]!];
  full.splice(full.length + axis, 1);
  return full;
}

/** `x · wᵀ + b` with `w` stored `[out, in]` as in PyTorch's `nn.Linear` (no copy of `w`). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  return matmul(x, transpose(weight), bias ? { bias } : {});
}
