/**
 * Tiled inference of the Video DC-AE: the spatial and temporal tiling with linear overlap
 * blending of the reference (`DCAE.spatial_tiled_encode`, `temporal_tiled_encode`,
 * `spatial_tiled_decode`, `temporal_tiled_decode`, `blend_v/h/t`; spec `shared/spec/dc-ae.md` §8).
 *
 * Dispatch (§8.1): with temporal tiling on and more frames than a temporal tile (encode: T >
 * `temporalTileSize`, decode: T' > `temporalTileSize / 4`) the video is cut into temporal tiles,
 * each of which is spatially tiled when its H or W exceeds the spatial tile (encode:
 * `spatialTileSize` px; decode: `spatialTileSize / 32` latents); otherwise, with spatial tiling
 * on and H or W above the spatial tile, it is spatially tiled; otherwise it is coded directly.
 * Direct coding runs one batch sample at a time.
 *
 * Tiles are coded one at a time, each inside its own `tidy`, so the peak memory follows the tile,
 * not the video: only the cropped results, the tails of the previous tiles that the next tiles
 * blend with (at most `E` rows/columns/frames) and one tile's activations are alive at once.
 * Blending runs on the GPU with elementwise ops (no read-back).
 *
 * Note: the LiteMLA sums run over the positions of each tile, so tiled and untiled results differ
 * everywhere, not only in the blended bands (§8.7).
 *
 * @module
 */
import { add, copy, mul } from "../../engine/ops/elementwise.ts";
import { narrow, slice } from "../../engine/ops/movement.ts";
import { concat } from "../../engine/ops/concat.ts";
import { fromData } from "../../engine/graph.ts";
import { noGrad, type Tensor, tidy } from "../../engine/tensor.ts";
import type { DcAeConfig, DcAeTilingConfig } from "./config.ts";
import type { DcAe } from "./model.ts";

/** Overrides of the config's tiling settings for one encode/decode call. */
export interface TileOptions {
  /** Spatial tiling on (default true when options are given). */
  spatial?: boolean;
  /** Temporal tiling on (default true when options are given). */
  temporal?: boolean;
  /** Pixels per spatial tile side (default `config.tiling.spatialTileSize`, 256). */
  spatialTileSize?: number;
  /** Frames per temporal tile (default `config.tiling.temporalTileSize`, 32). */
  temporalTileSize?: number;
  /** Overlap factor (default `config.tiling.tileOverlapFactor`, 0.25). */
  overlapFactor?: number;
}

/**
 * The tiling settings of a call: `undefined` follows the config (`useSpatialTiling`,
 * `useTemporalTiling`), `false` turns tiling off, `true` turns both on with the config's sizes,
 * an object overrides fields (both kinds on unless it says otherwise). Throws a `RangeError` when
 * a tile size is not a positive multiple of the compression or the overlap is outside [0, 1).
 */
export function resolveTiling(
  cfg: DcAeConfig,
  tiled: boolean | TileOptions | undefined,
): DcAeTilingConfig {
  const t = cfg.tiling;
  let r: DcAeTilingConfig;
  if (tiled === undefined) r = { ...t };
  else if (tiled === false) r = { ...t, useSpatialTiling: false, useTemporalTiling: false };
  else if (tiled === true) r = { ...t, useSpatialTiling: true, useTemporalTiling: true };
  else {
    r = {
      useSpatialTiling: tiled.spatial ?? true,
      useTemporalTiling: tiled.temporal ?? true,
      spatialTileSize: tiled.spatialTileSize ?? t.spatialTileSize,
      temporalTileSize: tiled.temporalTileSize ?? t.temporalTileSize,
      tileOverlapFactor: tiled.overlapFactor ?? t.tileOverlapFactor,
    };
  }
  const s = cfg.spatialCompression;
  const f = cfg.timeCompression;
  const okSize = (v: number, m: number) => Number.isInteger(v) && v >= m && v % m === 0;
  if (
    !okSize(r.spatialTileSize, s) || !okSize(r.temporalTileSize, f) ||
    !(r.tileOverlapFactor >= 0 && r.tileOverlapFactor < 1)
  ) {
    throw new RangeError(
      `DC-AE tiling: spatial tile ${r.spatialTileSize} px must be a positive multiple of ${s}, ` +
        `temporal tile ${r.temporalTileSize} frames a positive multiple of ${f}, overlap ` +
        `${r.tileOverlapFactor} in [0, 1)`,
    );
  }
  return r;
}

/**
 * The blend weights of `blend(a, b, E)` (§8.2) for y = 0 … E−1: `wa[y] = 1 − y/E` on the tail of
 * the earlier tile `a`, `wb[y] = y/E` on the head of `b` (float64, as the reference computes them
 * in Python before multiplying). They sum to 1 at every y.
 */
export function blendWeights(extent: number): { wa: Float64Array; wb: Float64Array } {
  const wa = new Float64Array(extent);
  const wb = new Float64Array(extent);
  for (let y = 0; y < extent; y++) {
    wa[y] = 1 - y / extent;
    wb[y] = y / extent;
  }
  return { wa, wb };
}

/**
 * `blend(a, b, E, axis)` of the reference (§8.2) as a new tensor: the first `E' = min(len_a,
 * len_b, E)` entries of `b` along `axis` become `a[len_a − E' + y]·(1 − y/E') + b[y]·(y/E')`, the
 * rest of `b` is unchanged. `a` may be just the tail of the earlier tile (any length ≥ E' that
 * ends where the tile ends), but `lenA` must then give the full length of that tile.
 */
export function blend(a: Tensor, b: Tensor, extent: number, axis: number, lenA?: number): Tensor {
  const la = lenA ?? a.shape[axis]!;
  const lb = b.shape[axis]!;
  const e = Math.min(la, lb, extent);
  if (e <= 0) return b;
  const have = a.shape[axis]!;
  if (have < e) {
    throw new RangeError(`DC-AE blend: tail of ${have} entries along axis ${axis}, need ${e}`);
  }
  const { wa, wb } = blendWeights(e);
  const wshape = b.shape.map((_, d) => (d === axis ? e : 1));
  const tA = fromData(Float32Array.from(wa), wshape, "f32");
  const tB = fromData(Float32Array.from(wb), wshape, "f32");
  const mixed = add(mul(narrow(a, axis, have - e, e), tA), mul(narrow(b, axis, 0, e), tB));
  return e === lb ? mixed : concat([mixed, narrow(b, axis, e, lb - e)], axis);
}

/** Tile starts `0, stride, 2·stride, …` below `n` (the reference's `range(0, n, stride)`). */
export function tileStarts(n: number, stride: number): number[] {
  if (!(stride >= 1)) throw new RangeError(`DC-AE tiling: stride ${stride} must be >= 1`);
  const out: number[] = [];
  for (let i = 0; i < n; i += stride) out.push(i);
  return out;
}

/** Block of a 5-D tensor: `[starts, ends)` on axes 2..4 (batch and channels whole). */
interface Region {
  t: [number, number];
  h: [number, number];
  w: [number, number];
}

type Coder = (x: Tensor) => Tensor;

function sliceRegion(x: Tensor, r: Region, b?: number): Tensor {
  const b0 = b ?? 0;
  const b1 = b === undefined ? x.shape[0]! : b + 1;
  return slice(
    x,
    [b0, 0, r.t[0], r.h[0], r.w[0]],
    [b1, x.shape[1]!, r.t[1], r.h[1], r.w[1]],
  );
}

/** Direct coding of a region, one batch sample at a time (`_encode` / `_decode`). */
function direct(code: Coder, x: Tensor, r: Region): Tensor {
  const n = x.shape[0]!;
  if (n === 1) return tidy(() => code(sliceRegion(x, r)));
  const parts: Tensor[] = [];
  for (let b = 0; b < n; b++) parts.push(tidy(() => code(sliceRegion(x, r, b))));
  const out = tidy(() => concat(parts, 0));
  for (const p of parts) p.dispose();
  return out;
}

/** Sizes of one tiling pass: input tile, stride and the output blend extent / kept length. */
interface Pass {
  tile: number;
  stride: number;
  extent: number;
  keep: number;
}

function tailOf(t: Tensor, axis: number, extent: number): Tensor {
  const n = t.shape[axis]!;
  const e = Math.min(n, extent);
  return copy(narrow(t, axis, n - e, e));
}

/**
 * Spatial tiling of one region (§8.3, §8.4): tiles in raster order, each blended with the already
 * blended tile above (axis H) then to the left (axis W) before cropping to `keep`×`keep`.
 */
function spatialTiled(code: Coder, x: Tensor, r: Region, p: Pass): Tensor {
  const h0 = r.h[0];
  const w0 = r.w[0];
  const is = tileStarts(r.h[1] - h0, p.stride);
  const js = tileStarts(r.w[1] - w0, p.stride);
  const rows: Tensor[] = [];
  let above: { tail: Tensor; len: number }[] = [];
  for (const [i, di] of is.entries()) {
    const parts: Tensor[] = [];
    const below: { tail: Tensor; len: number }[] = [];
    let left: { tail: Tensor; len: number } | null = null;
    for (const [j, dj] of js.entries()) {
      const region: Region = {
        t: r.t,
        h: [h0 + di, Math.min(h0 + di + p.tile, r.h[1])],
        w: [w0 + dj, Math.min(w0 + dj + p.tile, r.w[1])],
      };
      const tile = direct(code, x, region);
      const blended = tidy(() => {
        let b = tile;
        if (i > 0) b = blend(above[j]!.tail, b, p.extent, 3, above[j]!.len);
        if (j > 0) b = blend(left!.tail, b, p.extent, 4, left!.len);
        const [nb, nc, nt, lh, lw] = b.shape as number[];
        const crop = copy(
          slice(b, [0, 0, 0, 0, 0], [nb!, nc!, nt!, Math.min(p.keep, lh!), Math.min(p.keep, lw!)]),
        );
        return {
          crop,
          tailV: tailOf(b, 3, p.extent),
          tailH: tailOf(b, 4, p.extent),
          lh: lh!,
          lw: lw!,
        };
      });
      tile.dispose();
      if (i > 0) above[j]!.tail.dispose();
      left?.tail.dispose();
      parts.push(blended.crop);
      below.push({ tail: blended.tailV, len: blended.lh });
      left = { tail: blended.tailH, len: blended.lw };
    }
    left?.tail.dispose();
    above = below;
    rows.push(parts.length === 1 ? parts[0]! : tidy(() => concat(parts, 4)));
    if (parts.length > 1) { for (const t of parts) t.dispose(); }
  }
  for (const a of above) a.tail.dispose();
  const out = rows.length === 1 ? rows[0]! : tidy(() => concat(rows, 3));
  if (rows.length > 1) { for (const t of rows) t.dispose(); }
  return out;
}

/** Temporal tiling (§8.5, §8.6): each temporal tile coded by `inner`, blended along T, cropped. */
function temporalTiled(
  x: Tensor,
  p: Pass,
  inner: (r: Region) => Tensor,
): Tensor {
  const [, , t, h, w] = x.shape as number[];
  const parts: Tensor[] = [];
  let prev: { tail: Tensor; len: number } | null = null;
  for (const [k, s] of tileStarts(t!, p.stride).entries()) {
    const tile = inner({ t: [s, Math.min(s + p.tile, t!)], h: [0, h!], w: [0, w!] });
    const done = tidy(() => {
      const b = k > 0 ? blend(prev!.tail, tile, p.extent, 2, prev!.len) : tile;
      return {
        crop: copy(narrow(b, 2, 0, Math.min(p.keep, b.shape[2]!))),
        tail: tailOf(b, 2, p.extent),
        len: b.shape[2]!,
      };
    });
    tile.dispose();
    prev?.tail.dispose();
    parts.push(done.crop);
    prev = { tail: done.tail, len: done.len };
  }
  prev?.tail.dispose();
  const out = parts.length === 1 ? parts[0]! : tidy(() => concat(parts, 2));
  if (parts.length > 1) { for (const t of parts) t.dispose(); }
  return out;
}

/** The passes of encode or decode for a tiling setting (the reference's derived sizes). */
export function tilingPasses(
  cfg: DcAeConfig,
  t: DcAeTilingConfig,
  mode: "encode" | "decode",
): { spatial: Pass; temporal: Pass } {
  const f = t.tileOverlapFactor;
  const sLat = t.spatialTileSize / cfg.spatialCompression;
  const tLat = t.temporalTileSize / cfg.timeCompression;
  const pass = (inTile: number, outTile: number): Pass => {
    const extent = Math.trunc(outTile * f);
    return { tile: inTile, stride: Math.trunc(inTile * (1 - f)), extent, keep: outTile - extent };
  };
  return mode === "encode"
    ? { spatial: pass(t.spatialTileSize, sLat), temporal: pass(t.temporalTileSize, tLat) }
    : { spatial: pass(sLat, t.spatialTileSize), temporal: pass(tLat, t.temporalTileSize) };
}

function run(
  code: Coder,
  x: Tensor,
  t: DcAeTilingConfig,
  passes: { spatial: Pass; temporal: Pass },
): Tensor {
  const [, , nt, h, w] = x.shape as number[];
  const sp = passes.spatial;
  const needsSpatial = (r: Region) =>
    t.useSpatialTiling && (r.h[1] - r.h[0] > sp.tile || r.w[1] - r.w[0] > sp.tile);
  const spatialOrDirect = (r: Region) =>
    needsSpatial(r) ? spatialTiled(code, x, r, sp) : direct(code, x, r);
  return noGrad(() => {
    if (t.useTemporalTiling && nt! > passes.temporal.tile) {
      return temporalTiled(x, passes.temporal, spatialOrDirect);
    }
    return spatialOrDirect({ t: [0, nt!], h: [0, h!], w: [0, w!] });
  });
}

/**
 * Tiled encode of a realized video `[B, C, T, H, W]` (see the module doc); each tile is an
 * ordinary untiled `ae.encode` of a sub-video. Returns a realized latent.
 */
export function tiledEncode(ae: DcAe, video: Tensor, tiling: DcAeTilingConfig): Tensor {
  ae.latentShape(video.shape);
  const passes = tilingPasses(ae.config, tiling, "encode");
  return run((v) => ae.encode(v, { tiled: false }), video, tiling, passes);
}

/**
 * Tiled decode of a realized latent `[B, latent, T', h, w]` (see the module doc); each tile is
 * an ordinary untiled `ae.decode`. With temporal tiling a last temporal tile of one latent frame
 * decodes to one frame (§10), so the video is shorter than 4·T' then, as in the reference.
 */
export function tiledDecode(ae: DcAe, latent: Tensor, tiling: DcAeTilingConfig): Tensor {
  ae.videoShape(latent.shape);
  const passes = tilingPasses(ae.config, tiling, "decode");
  return run((z) => ae.decode(z, { tiled: false }), latent, tiling, passes);
}
