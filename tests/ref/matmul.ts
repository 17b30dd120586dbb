/** Float64 reference of a batched matmul on dense row-major arrays. */

/** `[batch, m, k] · [batch, k, n] (+ bias[n])` in float64; batch strides of 0 broadcast. */
export function matmulRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dims: { batch: number; m: number; n: number; k: number; aBatch: boolean; bBatch: boolean },
  bias?: ArrayLike<number>,
): Float64Array {
  const { batch, m, n, k } = dims;
  const out = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const ao = dims.aBatch ? z * m * k : 0;
    const bo = dims.bBatch ? z * k * n : 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = bias ? bias[j]! : 0;
        for (let p = 0; p < k; p++) s += a[ao + i * k + p]! * b[bo + p * n + j]!;
        out[(z * m + i) * n + j] = s;
      }
    }
  }
  return out;
}

/** Dense transpose of an `[r, c]` matrix. */
export function transposeRef(x: ArrayLike<number>, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = x[i * c + j]!;
  return out;
}
