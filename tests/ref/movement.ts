/**
 * Plain float64 CPU references for concat / gather / scatter-add / strided views / MSE / timestep
 * embedding. Arrays are flat, row-major.
 */

/** Number of elements of a shape. */
export function numelRef(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Row-major strides. */
export function stridesRef(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Calls `fn` with every multi-index of `shape` in row-major order. */
export function forEachIndex(shape: readonly number[], fn: (idx: number[], flat: number) => void) {
  const n = numelRef(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let f = 0; f < n; f++) {
    fn(idx, f);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
}

/** Dense copy of `x` (shape `shape`) with its axes permuted (`out axis i = in axis perm[i]`). */
export function permuteRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  perm: readonly number[],
) {
  const st = stridesRef(shape);
  const outShape = perm.map((p) => shape[p]!);
  const out = new Float64Array(numelRef(outShape));
  forEachIndex(outShape, (idx, f) => {
    let src = 0;
    idx.forEach((c, i) => src += c * st[perm[i]!]!);
    out[f] = x[src]!;
  });
  return { data: out, shape: outShape };
}

/** Dense copy of the block `starts ≤ index < ends`. */
export function sliceRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  starts: readonly number[],
  ends: readonly number[],
) {
  const st = stridesRef(shape);
  const outShape = shape.map((_, i) => ends[i]! - starts[i]!);
  const out = new Float64Array(numelRef(outShape));
  forEachIndex(outShape, (idx, f) => {
    let src = 0;
    idx.forEach((c, i) => src += (c + starts[i]!) * st[i]!);
    out[f] = x[src]!;
  });
  return { data: out, shape: outShape };
}

/** Concatenation along `axis`. */
export function concatRef(
  parts: { data: ArrayLike<number>; shape: readonly number[] }[],
  axis: number,
) {
  const shape = [...parts[0]!.shape];
  shape[axis] = parts.reduce((a, p) => a + p.shape[axis]!, 0);
  const out = new Float64Array(numelRef(shape));
  const ost = stridesRef(shape);
  let start = 0;
  for (const p of parts) {
    forEachIndex(p.shape, (idx, f) => {
      let dst = 0;
      idx.forEach((c, i) => dst += (i === axis ? c + start : c) * ost[i]!);
      out[dst] = p.data[f]!;
    });
    start += p.shape[axis]!;
  }
  return { data: out, shape };
}

function clampIndex(v: number, n: number): number {
  return Math.min(Math.max(v, 0), n - 1);
}

/** index_select along `axis` with indices clamped into range. */
export function gatherRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  idx: ArrayLike<number>,
  axis: number,
): Float64Array {
  const outer = numelRef(shape.slice(0, axis));
  const n = shape[axis]!;
  const inner = numelRef(shape.slice(axis + 1));
  const out = new Float64Array(outer * idx.length * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < idx.length; j++) {
      const r = clampIndex(idx[j]!, n);
      for (let i = 0; i < inner; i++) {
        out[(o * idx.length + j) * inner + i] = x[(o * n + r) * inner + i]!;
      }
    }
  }
  return out;
}

/** Gradient of {@linkcode gatherRef} w.r.t. x: scatter-add of `g` into `xShape`. */
export function scatterAddRef(
  g: ArrayLike<number>,
  xShape: readonly number[],
  idx: ArrayLike<number>,
  axis: number,
): Float64Array {
  const outer = numelRef(xShape.slice(0, axis));
  const n = xShape[axis]!;
  const inner = numelRef(xShape.slice(axis + 1));
  const out = new Float64Array(numelRef(xShape));
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < idx.length; j++) {
      const r = clampIndex(idx[j]!, n);
      for (let i = 0; i < inner; i++) {
        out[(o * n + r) * inner + i]! += g[(o * idx.length + j) * inner + i]!;
      }
    }
  }
  return out;
}

/** Mean squared error with a reduction. */
export function mseRef(
  p: ArrayLike<number>,
  t: ArrayLike<number>,
  reduction: "mean" | "sum" | "none",
): Float64Array {
  const se = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) se[i] = (p[i]! - t[i]!) ** 2;
  if (reduction === "none") return se;
  const s = se.reduce((a, b) => a + b, 0);
  return Float64Array.of(reduction === "sum" ? s : s / p.length);
}

/** Sinusoidal timestep embedding in float64 (cos first, zero column for odd dims). */
export function timestepEmbeddingRef(
  t: ArrayLike<number>,
  dim: number,
  maxPeriod = 10000,
  timeFactor = 1000,
): Float64Array {
  const half = Math.floor(dim / 2);
  const out = new Float64Array(t.length * dim);
  for (let r = 0; r < t.length; r++) {
    for (let i = 0; i < half; i++) {
      const a = timeFactor * t[r]! * Math.exp((-Math.log(maxPeriod) * i) / half);
      out[r * dim + i] = Math.cos(a);
      out[r * dim + half + i] = Math.sin(a);
    }
  }
  return out;
}
