/**
 * Float64 CPU references for softmax, log-softmax and the normalisation layers, forward and
 * vector-Jacobian products, on row-major arrays.
 */

/** Sizes before, along and after `axis`. */
export function split(shape: readonly number[], axis: number): [number, number, number] {
  const a = axis < 0 ? axis + shape.length : axis;
  const prod = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);
  return [prod(shape.slice(0, a)), shape[a]!, prod(shape.slice(a + 1))];
}

/** Softmax (or log-softmax) along `axis`. */
export function softmaxRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis = -1,
  log = false,
): Float64Array {
  const [outer, n, inner] = split(shape, axis);
  const y = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const at = (j: number) => (o * n + j) * inner + i;
      let m = -Infinity;
      for (let j = 0; j < n; j++) m = Math.max(m, x[at(j)]!);
      let s = 0;
      for (let j = 0; j < n; j++) s += Math.exp(x[at(j)]! - m);
      for (let j = 0; j < n; j++) {
        y[at(j)] = log ? x[at(j)]! - m - Math.log(s) : Math.exp(x[at(j)]! - m) / s;
      }
    }
  }
  return y;
}

/** dL/dx of softmax (or log-softmax) along `axis`, given x and dL/dy. */
export function softmaxVjpRef(
  x: ArrayLike<number>,
  gy: ArrayLike<number>,
  shape: readonly number[],
  axis = -1,
  log = false,
): Float64Array {
  const [outer, n, inner] = split(shape, axis);
  const y = softmaxRef(x, shape, axis, false);
  const dx = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const at = (j: number) => (o * n + j) * inner + i;
      let s = 0;
      for (let j = 0; j < n; j++) s += log ? gy[at(j)]! : gy[at(j)]! * y[at(j)]!;
      for (let j = 0; j < n; j++) {
        const k = at(j);
        dx[k] = log ? gy[k]! - y[k]! * s : y[k]! * (gy[k]! - s);
      }
    }
  }
  return dx;
}

/**
 * A normalisation over the middle axis of `[outer, n, inner]`: `layer` subtracts the mean,
 * `rms` does not; `channel(o, j)` gives the affine index of element j of outer slice o.
 */
export interface NormGeom {
  kind: "layer" | "rms";
  outer: number;
  n: number;
  inner: number;
  eps: number;
  channel: (o: number, j: number) => number;
}

function rowStats(x: ArrayLike<number>, g: NormGeom, o: number, i: number) {
  const at = (j: number) => (o * g.n + j) * g.inner + i;
  let mean = 0;
  if (g.kind === "layer") {
    for (let j = 0; j < g.n; j++) mean += x[at(j)]!;
    mean /= g.n;
  }
  let v = 0;
  for (let j = 0; j < g.n; j++) v += (x[at(j)]! - mean) ** 2;
  v /= g.n;
  return { at, mean, rstd: 1 / Math.sqrt(v + g.eps) };
}

/** Forward of a normalisation (weight/bias optional). */
export function normRef(
  x: ArrayLike<number>,
  g: NormGeom,
  w?: ArrayLike<number>,
  b?: ArrayLike<number>,
): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < g.outer; o++) {
    for (let i = 0; i < g.inner; i++) {
      const { at, mean, rstd } = rowStats(x, g, o, i);
      for (let j = 0; j < g.n; j++) {
        const c = g.channel(o, j);
        y[at(j)] = (x[at(j)]! - mean) * rstd * (w ? w[c]! : 1) + (b ? b[c]! : 0);
      }
    }
  }
  return y;
}

/** Gradients of a normalisation given dL/dy: dx, and dw/db over `channels` entries. */
export function normVjpRef(
  x: ArrayLike<number>,
  gy: ArrayLike<number>,
  g: NormGeom,
  channels: number,
  w?: ArrayLike<number>,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(channels);
  const db = new Float64Array(channels);
  for (let o = 0; o < g.outer; o++) {
    for (let i = 0; i < g.inner; i++) {
      const { at, mean, rstd } = rowStats(x, g, o, i);
      let sg = 0;
      let sgx = 0;
      for (let j = 0; j < g.n; j++) {
        const c = g.channel(o, j);
        const xh = (x[at(j)]! - mean) * rstd;
        const gj = gy[at(j)]! * (w ? w[c]! : 1);
        sg += gj;
        sgx += gj * xh;
        dw[c] = dw[c]! + gy[at(j)]! * xh;
        db[c] = db[c]! + gy[at(j)]!;
      }
      const c1 = g.kind === "layer" ? sg / g.n : 0;
      const c2 = sgx / g.n;
      for (let j = 0; j < g.n; j++) {
        const c = g.channel(o, j);
        const xh = (x[at(j)]! - mean) * rstd;
        const gj = gy[at(j)]! * (w ? w[c]! : 1);
        dx[at(j)] = rstd * (gj - c1 - xh * c2);
      }
    }
  }
  return { dx, dw, db };
}

/** Geometry of LayerNorm / RMSNorm over the last axis of `shape`. */
export function lastAxisGeom(
  kind: "layer" | "rms",
  shape: readonly number[],
  eps: number,
): NormGeom {
  const n = shape[shape.length - 1]!;
  const rows = shape.reduce((p, d) => p * d, 1) / n;
  return { kind, outer: rows, n, inner: 1, eps, channel: (_o, j) => j };
}

/** Geometry of RMSNorm over axis 1 of `N C ...`. */
export function channelsGeom(shape: readonly number[], eps: number): NormGeom {
  const [outer, n, inner] = split(shape, 1);
  return { kind: "rms", outer, n, inner, eps, channel: (_o, j) => j };
}

/** Geometry of GroupNorm of `N C ...` with `groups` groups. */
export function groupGeom(shape: readonly number[], groups: number, eps: number): NormGeom {
  const [N, C, S] = split(shape, 1);
  const cpg = C / groups;
  return {
    kind: "layer",
    outer: N * groups,
    n: cpg * S,
    inner: 1,
    eps,
    channel: (o, j) => (o % groups) * cpg + Math.floor(j / S),
  };
}
