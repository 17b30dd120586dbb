/**
 * Float64 CPU references of the DC-AE data movers on row-major NCTHW arrays, written from the
 * index formulas of `spec/dc-ae.md` §3.4 (not from the engine's view composition), plus their
 * vector-Jacobian products (scatter-add of the output gradient through the same index map).
 */

function at5(shape: readonly number[]) {
  const [, c, t, h, w] = shape as [number, number, number, number, number];
  return (bi: number, ci: number, ti: number, hi: number, wi: number) =>
    (((bi * c + ci) * t + ti) * h + hi) * w + wi;
}

/**
 * A data mover as an index map: for each output element (row-major over `outShape`), the list of
 * input elements it averages (one element for pure moves).
 */
export interface IndexMap {
  outShape: number[];
  /** Input flat indices read by output element `o`, and their weight. */
  sources: (o: number) => [number, number][];
}

function map5(
  outShape: number[],
  src: (b: number, c: number, t: number, h: number, w: number) => [number, number][],
): IndexMap {
  const [, c, t, h, w] = outShape as [number, number, number, number, number];
  return {
    outShape,
    sources: (o) => {
      let r = o;
      const wi = r % w;
      r = (r - wi) / w;
      const hi = r % h;
      r = (r - hi) / h;
      const ti = r % t;
      r = (r - ti) / t;
      const ci = r % c;
      const bi = (r - ci) / c;
      return src(bi, ci, ti, hi, wi);
    },
  };
}

/** 3-D pixel shuffle: `y[c, r·t+a, r·h+i, r·w+j] = x[c·r³ + a·r² + i·r + j, t, h, w]`. */
export function pixelShuffle3dMap(s: readonly number[], r = 2): IndexMap {
  const [b, c, t, h, w] = s as [number, number, number, number, number];
  const ix = at5(s);
  return map5([b, c / r ** 3, t * r, h * r, w * r], (bi, ci, ti, hi, wi) => [[
    ix(
      bi,
      ci * r ** 3 + (ti % r) * r * r + (hi % r) * r + (wi % r),
      Math.floor(ti / r),
      Math.floor(hi / r),
      Math.floor(wi / r),
    ),
    1,
  ]]);
}

/** 3-D pixel unshuffle: `u[c·r³ + a·r² + i·r + j, t, h, w] = x[c, r·t+a, r·h+i, r·w+j]`. */
export function pixelUnshuffle3dMap(s: readonly number[], r = 2): IndexMap {
  const [b, c, t, h, w] = s as [number, number, number, number, number];
  const ix = at5(s);
  return map5([b, c * r ** 3, t / r, h / r, w / r], (bi, ci, ti, hi, wi) => {
    const cc = Math.floor(ci / r ** 3);
    const sub = ci % r ** 3;
    const a = Math.floor(sub / (r * r));
    const i = Math.floor(sub / r) % r;
    const j = sub % r;
    return [[ix(bi, cc, r * ti + a, r * hi + i, r * wi + j), 1]];
  });
}

/** 2-D pixel shuffle per frame: `y[c, t, r·h+i, r·w+j] = x[c·r² + i·r + j, t, h, w]`. */
export function pixelShuffle2dMap(s: readonly number[], r = 2): IndexMap {
  const [b, c, t, h, w] = s as [number, number, number, number, number];
  const ix = at5(s);
  return map5([b, c / (r * r), t, h * r, w * r], (bi, ci, ti, hi, wi) => [[
    ix(bi, ci * r * r + (hi % r) * r + (wi % r), ti, Math.floor(hi / r), Math.floor(wi / r)),
    1,
  ]]);
}

/** 2-D pixel unshuffle per frame: `u[c·r² + i·r + j, t, h, w] = x[c, t, r·h+i, r·w+j]`. */
export function pixelUnshuffle2dMap(s: readonly number[], r = 2): IndexMap {
  const [b, c, t, h, w] = s as [number, number, number, number, number];
  const ix = at5(s);
  return map5([b, c * r * r, t, h / r, w / r], (bi, ci, ti, hi, wi) => {
    const cc = Math.floor(ci / (r * r));
    const i = Math.floor(ci / r) % r;
    const j = ci % r;
    return [[ix(bi, cc, ti, r * hi + i, r * wi + j), 1]];
  });
}

/** Channel repeat-interleave: `d[k] = x[floor(k / r)]`. */
export function repeatInterleaveMap(s: readonly number[], r: number): IndexMap {
  const [b, c, t, h, w] = s as [number, number, number, number, number];
  const ix = at5(s);
  return map5(
    [b, c * r, t, h, w],
    (bi, ci, ti, hi, wi) => [[ix(bi, Math.floor(ci / r), ti, hi, wi), 1]],
  );
}

/** Channel group mean: `y[o] = (1/g)·Σ_{k<g} x[o·g + k]`. */
export function groupMeanMap(s: readonly number[], g: number): IndexMap {
  const [b, c, t, h, w] = s as [number, number, number, number, number];
  const ix = at5(s);
  return map5([b, c / g, t, h, w], (bi, ci, ti, hi, wi) => {
    const out: [number, number][] = [];
    for (let k = 0; k < g; k++) out.push([ix(bi, ci * g + k, ti, hi, wi), 1 / g]);
    return out;
  });
}

/** Nearest up-sampling: output index `o` reads input `floor(o / f)` on each axis. */
export function upsampleNearestMap(s: readonly number[], f: readonly number[]): IndexMap {
  const [b, c, t, h, w] = s as [number, number, number, number, number];
  const ix = at5(s);
  return map5([b, c, t * f[0]!, h * f[1]!, w * f[2]!], (bi, ci, ti, hi, wi) => [[
    ix(bi, ci, Math.floor(ti / f[0]!), Math.floor(hi / f[1]!), Math.floor(wi / f[2]!)),
    1,
  ]]);
}

/** Composition: apply `second` to the output of `first`. */
export function composeMaps(first: IndexMap, second: (s: number[]) => IndexMap): IndexMap {
  const m2 = second(first.outShape);
  return {
    outShape: m2.outShape,
    sources: (o) => {
      const out: [number, number][] = [];
      for (const [mid, w2] of m2.sources(o)) {
        for (const [src, w1] of first.sources(mid)) out.push([src, w1 * w2]);
      }
      return out;
    },
  };
}

/** `PixelUnshuffleChannelAveragingDownSampleLayer` (factor 2 or 1) with the T = 1 rule. */
export function avgDownMap(
  s: readonly number[],
  outChannels: number,
  temporal: boolean,
  factor = 2,
): IndexMap {
  const cin = s[1]!;
  if (factor === 1) return groupMeanMap(s, cin / outChannels);
  if (temporal && s[2] !== 1) {
    return composeMaps(
      pixelUnshuffle3dMap(s, factor),
      (m) => groupMeanMap(m, (cin * factor ** 3) / outChannels),
    );
  }
  return composeMaps(
    pixelUnshuffle2dMap(s, factor),
    (m) => groupMeanMap(m, (cin * factor ** 2) / outChannels),
  );
}

/** `ChannelDuplicatingPixelShuffleUpSampleLayer` (factor 2 or 1) with the T = 1 rule. */
export function dupUpMap(
  s: readonly number[],
  outChannels: number,
  temporal: boolean,
  factor = 2,
): IndexMap {
  const cin = s[1]!;
  if (factor === 1) return repeatInterleaveMap(s, outChannels / cin);
  if (temporal && s[2] !== 1) {
    return composeMaps(
      repeatInterleaveMap(s, (outChannels * factor ** 3) / cin),
      (m) => pixelShuffle3dMap(m, factor),
    );
  }
  return composeMaps(
    repeatInterleaveMap(s, (outChannels * factor ** 2) / cin),
    (m) => pixelShuffle2dMap(m, factor),
  );
}

/** Forward: `y[o] = Σ w·x[src]`. */
export function applyMap(m: IndexMap, x: ArrayLike<number>): Float64Array {
  const n = m.outShape.reduce((a, b) => a * b, 1);
  const y = new Float64Array(n);
  for (let o = 0; o < n; o++) {
    let acc = 0;
    for (const [src, w] of m.sources(o)) acc += w * x[src]!;
    y[o] = acc;
  }
  return y;
}

/** Vector-Jacobian product: `gx[src] += w·gy[o]`. */
export function applyMapVjp(m: IndexMap, inSize: number, gy: ArrayLike<number>): Float64Array {
  const gx = new Float64Array(inSize);
  const n = m.outShape.reduce((a, b) => a * b, 1);
  for (let o = 0; o < n; o++) {
    for (const [src, w] of m.sources(o)) gx[src] = gx[src]! + w * gy[o]!;
  }
  return gx;
}
