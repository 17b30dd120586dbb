/**
 * Float64 CPU references for attention (naive softmax over the full score matrix) and RoPE,
 * forward and vector-Jacobian products, on row-major arrays.
 */

/** Sizes of an attention problem: q `[B, H, Lq, D]`, k and v `[B, H, Lk, D]`. */
export interface AttnDims {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  D: number;
}

/** Probabilities `softmax(q kᵀ · scale)` of one (b, h): `[Lq, Lk]`. */
function probs(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  { Lq, Lk, D }: AttnDims,
  qo: number,
  ko: number,
  scale: number,
): { p: Float64Array; lse: Float64Array } {
  const p = new Float64Array(Lq * Lk);
  const lse = new Float64Array(Lq);
  for (let i = 0; i < Lq; i++) {
    let m = -Infinity;
    for (let j = 0; j < Lk; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += q[qo + i * D + d]! * k[ko + j * D + d]!;
      p[i * Lk + j] = s * scale;
      m = Math.max(m, s * scale);
    }
    let z = 0;
    for (let j = 0; j < Lk; j++) z += Math.exp(p[i * Lk + j]! - m);
    for (let j = 0; j < Lk; j++) p[i * Lk + j] = Math.exp(p[i * Lk + j]! - m) / z;
    lse[i] = m + Math.log(z);
  }
  return { p, lse };
}

/** `softmax(q kᵀ · scale) v` and the row log-sum-exp of the scaled scores. */
export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dims: AttnDims,
  scale = 1 / Math.sqrt(dims.D),
): { out: Float64Array; lse: Float64Array } {
  const { B, H, Lq, Lk, D } = dims;
  const out = new Float64Array(B * H * Lq * D);
  const lse = new Float64Array(B * H * Lq);
  for (let bh = 0; bh < B * H; bh++) {
    const qo = bh * Lq * D, ko = bh * Lk * D;
    const r = probs(q, k, dims, qo, ko, scale);
    lse.set(r.lse, bh * Lq);
    for (let i = 0; i < Lq; i++) {
      for (let j = 0; j < Lk; j++) {
        const pij = r.p[i * Lk + j]!;
        for (let d = 0; d < D; d++) out[qo + i * D + d] += pij * v[ko + j * D + d]!;
      }
    }
  }
  return { out, lse };
}

/** Gradients of `sum(attention(q, k, v) · g)` w.r.t. q, k, v. */
export function attentionVjpRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  g: ArrayLike<number>,
  dims: AttnDims,
  scale = 1 / Math.sqrt(dims.D),
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { B, H, Lq, Lk, D } = dims;
  const dq = new Float64Array(B * H * Lq * D);
  const dk = new Float64Array(B * H * Lk * D);
  const dv = new Float64Array(B * H * Lk * D);
  for (let bh = 0; bh < B * H; bh++) {
    const qo = bh * Lq * D, ko = bh * Lk * D;
    const { p } = probs(q, k, dims, qo, ko, scale);
    for (let i = 0; i < Lq; i++) {
      // dP = g vᵀ; dS = P ∘ (dP − rowsum(P ∘ dP))
      const dp = new Float64Array(Lk);
      let dot = 0;
      for (let j = 0; j < Lk; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += g[qo + i * D + d]! * v[ko + j * D + d]!;
        dp[j] = s;
        dot += p[i * Lk + j]! * s;
      }
      for (let j = 0; j < Lk; j++) {
        const pij = p[i * Lk + j]!;
        const ds = pij * (dp[j]! - dot) * scale;
        for (let d = 0; d < D; d++) {
          dv[ko + j * D + d] += pij * g[qo + i * D + d]!;
          dq[qo + i * D + d] += ds * k[ko + j * D + d]!;
          dk[ko + j * D + d] += ds * q[qo + i * D + d]!;
        }
      }
    }
  }
  return { dq, dk, dv };
}

/**
 * Rotate-half RoPE of x `[B, H, L, D]` with cos/sin `[Bt, L, D]` (Bt = B or 1);
 * `transpose` applies the transposed rotation (the VJP).
 */
export function ropeHalfRef(
  x: ArrayLike<number>,
  cos: ArrayLike<number>,
  sin: ArrayLike<number>,
  [B, H, L, D]: readonly number[],
  tableBatch: number,
  transpose = false,
): Float64Array {
  const y = new Float64Array(B! * H! * L! * D!);
  const h2 = D! / 2;
  for (let b = 0; b < B!; b++) {
    for (let hh = 0; hh < H!; hh++) {
      for (let l = 0; l < L!; l++) {
        const xo = ((b * H! + hh) * L! + l) * D!;
        const to = ((tableBatch === 1 ? 0 : b) * L! + l) * D!;
        for (let j = 0; j < h2; j++) {
          const a = x[xo + j]!, o = x[xo + j + h2]!;
          const c1 = cos[to + j]!,
            s1 = sin[to + j]!,
            c2 = cos[to + j + h2]!,
            s2 = sin[to + j + h2]!;
          // forward matrix [[c1, -s1], [s2, c2]]
          if (!transpose) {
            y[xo + j] = a * c1 - o * s1;
            y[xo + j + h2] = o * c2 + a * s2;
          } else {
            y[xo + j] = a * c1 + o * s2;
            y[xo + j + h2] = o * c2 - a * s1;
          }
        }
      }
    }
  }
  return y;
}

/** Flux RoPE of x `[B, H, L, D]` with pe `[Bt, 1, L, D/2, 2, 2]`; `transpose` for the VJP. */
export function ropeInterleavedRef(
  x: ArrayLike<number>,
  pe: ArrayLike<number>,
  [B, H, L, D]: readonly number[],
  tableBatch: number,
  transpose = false,
): Float64Array {
  const y = new Float64Array(B! * H! * L! * D!);
  for (let b = 0; b < B!; b++) {
    for (let hh = 0; hh < H!; hh++) {
      for (let l = 0; l < L!; l++) {
        const xo = ((b * H! + hh) * L! + l) * D!;
        const to = ((tableBatch === 1 ? 0 : b) * L! + l) * D! * 2;
        for (let j = 0; j < D! / 2; j++) {
          const a = x[xo + 2 * j]!, o = x[xo + 2 * j + 1]!;
          const m = [0, 1, 2, 3].map((i) => pe[to + 4 * j + i]!);
          const [m00, m01, m10, m11] = transpose ? [m[0]!, m[2]!, m[1]!, m[3]!] : m;
          y[xo + 2 * j] = m00! * a + m01! * o;
          y[xo + 2 * j + 1] = m10! * a + m11! * o;
        }
      }
    }
  }
  return y;
}

/** Gathers a strided view into a row-major array (for building references of views). */
export function gatherStrided(
  data: ArrayLike<number>,
  shape: readonly number[],
  strides: readonly number[],
  offset = 0,
): Float64Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let o = offset;
    for (let d = 0; d < shape.length; d++) o += idx[d]! * strides[d]!;
    out[i] = data[o]!;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}
