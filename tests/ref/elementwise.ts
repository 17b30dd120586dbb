/**
 * Float64 CPU references for the engine-core tests: elementwise functions (incl. a precise `erf`
 * for GELU), strided/broadcast index helpers, and the layout/reduction references the movement,
 * reduce and autograd tests check against. Everything here is written independently of the engine
 * (no imports from `engine/`), so a bug there cannot hide in the reference.
 *
 * Arrays are row-major; a "view" is `(data, shape, strides, offset)` with strides/offset in
 * elements, exactly as a tensor's layout.
 *
 * @module
 */

/** A shape (outermost axis first). */
export type RefShape = readonly number[];

/** Number of elements of a shape (1 for `[]`). */
export function numelRef(shape: RefShape): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Row-major strides of a dense array of `shape`. */
export function denseStrides(shape: RefShape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Coordinates of flat row-major index `i` in `shape`. */
export function unravelRef(i: number, shape: RefShape): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return c;
}

/**
 * The strided index helper: maps the flat row-major index of an element of a view of `shape` to
 * its position in storage (`offset + Σ coord_d · stride_d`). Stride 0 means a broadcast axis.
 */
export function stridedIndex(
  shape: RefShape,
  strides: readonly number[],
  offset = 0,
): (i: number) => number {
  return (i) => {
    const c = unravelRef(i, shape);
    let k = offset;
    for (let d = 0; d < c.length; d++) k += c[d]! * strides[d]!;
    return k;
  };
}

/** Dense float64 copy of a strided view of `data`. */
export function gatherView(
  data: ArrayLike<number>,
  shape: RefShape,
  strides: readonly number[],
  offset = 0,
): Float64Array {
  const n = numelRef(shape);
  const idx = stridedIndex(shape, strides, offset);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = data[idx(i)]!;
  return out;
}

/** Numpy broadcast of two shapes (throws on mismatch). */
export function broadcastShapeRef(a: RefShape, b: RefShape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`ref: cannot broadcast ${a} ${b}`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides that read a dense array of shape `from` as if broadcast to `to` (0 on broadcast axes). */
export function broadcastStrides(from: RefShape, to: RefShape): number[] {
  const ds = denseStrides(from);
  const lead = to.length - from.length;
  return to.map((n, i) => {
    if (i < lead) return 0;
    const d = from[i - lead]!;
    if (d === n) return ds[i - lead]!;
    if (d === 1) return 0;
    throw new Error(`ref: cannot broadcast ${from} to ${to}`);
  });
}

/** Dense float64 array of shape `to` broadcast from a dense array of shape `from`. */
export function broadcastTo(data: ArrayLike<number>, from: RefShape, to: RefShape): Float64Array {
  return gatherView(data, to, broadcastStrides(from, to));
}

/** Applies `f` to every element. */
export function map1(x: ArrayLike<number>, f: (v: number) => number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]!);
  return out;
}

/** Broadcasting binary map; returns the flat result and its shape. */
export function map2(
  a: ArrayLike<number>,
  aShape: RefShape,
  b: ArrayLike<number>,
  bShape: RefShape,
  f: (x: number, y: number) => number,
): { data: Float64Array; shape: number[] } {
  const shape = broadcastShapeRef(aShape, bShape);
  const A = broadcastTo(a, aShape, shape);
  const B = broadcastTo(b, bShape, shape);
  const out = new Float64Array(A.length);
  for (let i = 0; i < out.length; i++) out[i] = f(A[i]!, B[i]!);
  return { data: out, shape };
}

/** Broadcasting `cond ? a : b` (cond nonzero = true). */
export function whereRef(
  c: ArrayLike<number>,
  cShape: RefShape,
  a: ArrayLike<number>,
  aShape: RefShape,
  b: ArrayLike<number>,
  bShape: RefShape,
): { data: Float64Array; shape: number[] } {
  const shape = broadcastShapeRef(broadcastShapeRef(cShape, aShape), bShape);
  const C = broadcastTo(c, cShape, shape);
  const A = broadcastTo(a, aShape, shape);
  const B = broadcastTo(b, bShape, shape);
  const out = new Float64Array(C.length);
  for (let i = 0; i < out.length; i++) out[i] = C[i] !== 0 ? A[i]! : B[i]!;
  return { data: out, shape };
}

// ---------------------------------------------------------------- functions

/** erf in float64 (series for |x| ≤ 3, continued fraction of erfc beyond; error < 1e-14). */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a <= 3) {
    // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= -a * a / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
  }
  // erfc(a) = e^{-a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))) evaluated bottom-up
  let f = a;
  for (let k = 60; k >= 1; k--) f = a + (k / 2) / f;
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

/** Exact GELU: 0.5·x·(1 + erf(x/√2)). */
export function geluErfRef(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** Tanh-approximated GELU: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function geluTanhRef(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

const sigmoidRef = (x: number) => 1 / (1 + Math.exp(-x));

/** Float64 references of the unary elementwise ops, by engine function name. */
export const UNARY_REF: Readonly<Record<string, (x: number) => number>> = {
  copy: (x) => x,
  neg: (x) => -x,
  abs: Math.abs,
  sign: Math.sign,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  square: (x) => x * x,
  recip: (x) => 1 / x,
  sin: Math.sin,
  cos: Math.cos,
  tanh: Math.tanh,
  sigmoid: sigmoidRef,
  relu: (x) => Math.max(x, 0),
  silu: (x) => x * sigmoidRef(x),
  geluTanh: geluTanhRef,
  geluErf: geluErfRef,
};

/** Float64 references of the binary elementwise ops, by engine function name. */
export const BINARY_REF: Readonly<Record<string, (a: number, b: number) => number>> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: (a, b) => Math.pow(a, b),
  maximum: Math.max,
  minimum: Math.min,
  gt: (a, b) => (a > b ? 1 : 0),
  ge: (a, b) => (a >= b ? 1 : 0),
  lt: (a, b) => (a < b ? 1 : 0),
  le: (a, b) => (a <= b ? 1 : 0),
  eq: (a, b) => (a === b ? 1 : 0),
};

// ---------------------------------------------------------------- layout and reductions

/** Output axis i is input axis perm[i]. */
export function permuteRef(
  x: ArrayLike<number>,
  shape: RefShape,
  perm: readonly number[],
): { data: Float64Array; shape: number[] } {
  const ds = denseStrides(shape);
  const out = perm.map((p) => shape[p]!);
  return { data: gatherView(x, out, perm.map((p) => ds[p]!)), shape: out };
}

/** Sub-block `starts[d] ≤ i < ends[d]` (non-negative, already resolved bounds). */
export function sliceRef(
  x: ArrayLike<number>,
  shape: RefShape,
  starts: readonly number[],
  ends: readonly number[],
): { data: Float64Array; shape: number[] } {
  const ds = denseStrides(shape);
  const out = shape.map((_, d) => ends[d]! - starts[d]!);
  let off = 0;
  starts.forEach((s, d) => off += s * ds[d]!);
  return { data: gatherView(x, out, ds, off), shape: out };
}

/** Constant padding: `pads[d] = [before, after]`. */
export function padRef(
  x: ArrayLike<number>,
  shape: RefShape,
  pads: readonly (readonly [number, number])[],
  value = 0,
): { data: Float64Array; shape: number[] } {
  const out = shape.map((n, d) => n + pads[d]![0] + pads[d]![1]);
  const ds = denseStrides(shape);
  const data = new Float64Array(numelRef(out));
  for (let i = 0; i < data.length; i++) {
    const c = unravelRef(i, out);
    let k = 0;
    let inside = true;
    for (let d = 0; d < c.length; d++) {
      const s = c[d]! - pads[d]![0];
      if (s < 0 || s >= shape[d]!) inside = false;
      k += s * ds[d]!;
    }
    data[i] = inside ? x[k]! : value;
  }
  return { data, shape: out };
}

/** The reduce kinds of the reference. */
export type RefReduce = "sum" | "mean" | "max" | "min" | "variance";

/**
 * Reduces over `axes` (all when undefined; negative allowed). Variance is biased unless
 * `correction` is 1. Returns the result with `keepDims` shape semantics.
 */
export function reduceRef(
  kind: RefReduce,
  x: ArrayLike<number>,
  shape: RefShape,
  axes?: number | readonly number[],
  keepDims = false,
  correction = 0,
): { data: Float64Array; shape: number[] } {
  const rank = shape.length;
  const list = axes === undefined
    ? [...Array(rank).keys()]
    : (typeof axes === "number" ? [axes] : [...axes]).map((a) => (a < 0 ? a + rank : a));
  const kept = shape.map((d, i) => (list.includes(i) ? 1 : d));
  const n = numelRef(kept);
  const groups: number[][] = Array.from({ length: n }, () => []);
  const ks = denseStrides(kept);
  for (let i = 0; i < numelRef(shape); i++) {
    const c = unravelRef(i, shape);
    let o = 0;
    c.forEach((v, d) => o += (list.includes(d) ? 0 : v) * ks[d]!);
    groups[o]!.push(x[i]!);
  }
  const data = new Float64Array(n);
  groups.forEach((g, o) => {
    const s = g.reduce((a, b) => a + b, 0);
    switch (kind) {
      case "sum":
        data[o] = s;
        break;
      case "mean":
        data[o] = s / g.length;
        break;
      case "max":
        data[o] = Math.max(...g);
        break;
      case "min":
        data[o] = Math.min(...g);
        break;
      case "variance": {
        const m = s / g.length;
        data[o] = g.reduce((a, v) => a + (v - m) ** 2, 0) / (g.length - correction);
      }
    }
  });
  return { data, shape: keepDims ? kept : shape.filter((_, i) => !list.includes(i)) };
}
