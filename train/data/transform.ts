/**
 * The spatial transform `resize_crop` and normalisation (`data.md` §6), in TypeScript.
 *
 * Frames are resized here rather than by ffmpeg's scaler because neither of the reference's
 * resamplers exists in ffmpeg:
 * - **videos**: `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` without
 *   antialiasing on the [0, 1] floats. swscale's "bilinear" widens its kernel when down-scaling
 *   (an antialiasing filter) and works in fixed point on uint8, so it differs by many levels at
 *   the 2–3× reductions typical here. {@linkcode bilinearResizeCrop} is the exact formula in
 *   float64 (torch computes in float32: differences ≤ ~1e-6 after normalisation).
 * - **images**: PIL's `Image.resize(BICUBIC)` (a = −0.5, kernel widened by the reduction factor,
 *   22-bit fixed-point weights, a horizontal then a vertical pass, each rounded to uint8).
 *   {@linkcode pilBicubicResizeCrop} ports that algorithm (Pillow's `Resample.c`) integer for
 *   integer.
 *
 * Output layout is channel-planar NCTHW: each frame is written into channel planes that are
 * `planeStride = T·H·W` apart, at offset `t·H·W`.
 *
 * @module
 */

/** Which reference path a frame follows. */
export type ResizeKind = "video" | "image";

/** The fill-then-centre-crop geometry of `resize_crop_to_fill`. */
export interface ResizePlan {
  /** Resized height and width (before cropping). */
  sh: number;
  sw: number;
  /** Crop offsets into the resized frame. */
  top: number;
  left: number;
  /** Target (crop) size. */
  th: number;
  tw: number;
}

/** Python 3 `round(x)` (half to even). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * `resize_crop_to_fill` geometry for a `h×w` source and a `th×tw` target: with `rh = th/h`,
 * `rw = tw/w`, if `rh > rw` resize to `(th, round(w·rh))` and crop columns, else to
 * `(round(h·rw), tw)` and crop rows. The crop offset is `floor(excess / 2)` for videos
 * (`int(round(x) / 2.0)`) and `round_half_even(excess / 2)` for images (`int(round(x / 2.0))`).
 */
export function resizeCropPlan(
  h: number,
  w: number,
  th: number,
  tw: number,
  kind: ResizeKind,
): ResizePlan {
  for (const [k, v] of [["h", h], ["w", w], ["th", th], ["tw", tw]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`resizeCropPlan: ${k} must be a positive integer, got ${v}`);
    }
  }
  const rh = th / h;
  const rw = tw / w;
  const off = (excess: number) =>
    kind === "video" ? Math.trunc(excess / 2) : roundHalfEven(excess / 2);
  if (rh > rw) {
    const sw = roundHalfEven(w * rh);
    return { sh: th, sw, top: 0, left: off(sw - tw), th, tw };
  }
  const sh = roundHalfEven(h * rw);
  return { sh, sw: tw, top: off(sh - th), left: 0, th, tw };
}

/** Source taps of one output coordinate of torch's bilinear resize (align_corners=False). */
interface Taps {
  i0: Int32Array;
  i1: Int32Array;
  l1: Float64Array;
}

/**
 * For output coordinates `offset .. offset+count-1` of a resize from `inSize` to `outSize`:
 * `src = max(0, (dst + 0.5)·in/out − 0.5)`, `i0 = floor(src)`, `i1 = min(i0 + 1, in − 1)`,
 * `λ1 = src − i0` (`area_pixel_compute_source_index` in ATen).
 */
function bilinearTaps(inSize: number, outSize: number, offset: number, count: number): Taps {
  const scale = inSize / outSize;
  const i0 = new Int32Array(count);
  const i1 = new Int32Array(count);
  const l1 = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    const src = Math.max(0, (offset + k + 0.5) * scale - 0.5);
    const a = Math.min(Math.floor(src), inSize - 1);
    i0[k] = a;
    i1[k] = Math.min(a + 1, inSize - 1);
    l1[k] = src - a;
  }
  return { i0, i1, l1 };
}

/** Where one frame goes in a channel-planar [3, T, H, W] array. */
export interface FrameTarget {
  out: Float32Array;
  /** Index of the frame's first value in channel 0 (`t·H·W`, plus any batch offset). */
  offset: number;
  /** Distance between channel planes (`T·H·W`). */
  planeStride: number;
}

/**
 * Video path: packed RGB uint8 `src` (h·w·3) → bilinear resize to `(sh, sw)` (no antialiasing,
 * align_corners=False), crop `(top, left, th, tw)`, `x = (v/255 − 0.5)/0.5`, written
 * channel-planar into `target`. Only the cropped pixels are computed.
 */
export function bilinearResizeCrop(
  src: Uint8Array,
  h: number,
  w: number,
  plan: ResizePlan,
  target: FrameTarget,
): void {
  if (src.length !== h * w * 3) {
    throw new RangeError(`bilinearResizeCrop: frame has ${src.length} bytes, not ${h}x${w}x3`);
  }
  const { th, tw } = plan;
  const ys = bilinearTaps(h, plan.sh, plan.top, th);
  const xs = bilinearTaps(w, plan.sw, plan.left, tw);
  const { out, offset, planeStride } = target;
  const x0 = new Int32Array(tw);
  const x1 = new Int32Array(tw);
  for (let x = 0; x < tw; x++) {
    x0[x] = xs.i0[x]! * 3;
    x1[x] = xs.i1[x]! * 3;
  }
  const lx = xs.l1;
  for (let y = 0; y < th; y++) {
    const r0 = ys.i0[y]! * w * 3;
    const r1 = ys.i1[y]! * w * 3;
    const ly1 = ys.l1[y]!;
    const ly0 = 1 - ly1;
    const rowOut = offset + y * tw;
    for (let x = 0; x < tw; x++) {
      const lx1 = lx[x]!;
      const lx0 = 1 - lx1;
      const a = r0 + x0[x]!;
      const b = r0 + x1[x]!;
      const c = r1 + x0[x]!;
      const d = r1 + x1[x]!;
      const o = rowOut + x;
      for (let ch = 0; ch < 3; ch++) {
        const v = ly0 * (lx0 * src[a + ch]! + lx1 * src[b + ch]!) +
          ly1 * (lx0 * src[c + ch]! + lx1 * src[d + ch]!);
        out[o + ch * planeStride] = (v / 255 - 0.5) / 0.5;
      }
    }
  }
}

// ---- PIL bicubic (Pillow src/libImaging/Resample.c) ----

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;

function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** `precompute_coeffs` + `normalize_coeffs_8bpc` for output coordinates 0..outSize-1. */
function pilCoeffs(inSize: number, outSize: number) {
  const support0 = 2; // bicubic support
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const xmins = new Int32Array(outSize);
  const counts = new Int32Array(outSize);
  const kk = new Int32Array(outSize * ksize);
  const pre = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const wgt = bicubicFilter((x + xmin - center + 0.5) * ss);
      pre[x] = wgt;
      ww += wgt;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? pre[x]! / ww : pre[x]!;
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    xmins[xx] = xmin;
    counts[xx] = xmax;
  }
  return { ksize, xmins, counts, kk };
}

function clip8(v: number): number {
  const q = Math.floor(v / ONE);
  return q < 0 ? 0 : q > 255 ? 255 : q;
}

/**
 * Image path: packed RGB uint8 `src` (h·w·3) → PIL `resize((sw, sh), BICUBIC)` → crop
 * `(top, left, th, tw)` → uint8 packed RGB (th·tw·3), bit-exact with Pillow for 8-bit RGB.
 * Like Pillow, a side whose size does not change skips its pass.
 */
export function pilBicubicResizeCrop(
  src: Uint8Array,
  h: number,
  w: number,
  plan: ResizePlan,
): Uint8Array {
  if (src.length !== h * w * 3) {
    throw new RangeError(`pilBicubicResizeCrop: frame has ${src.length} bytes, not ${h}x${w}x3`);
  }
  const { sh, sw, top, left, th, tw } = plan;
  if (top + th > sh || left + tw > sw) {
    throw new RangeError(`pilBicubicResizeCrop: crop exceeds the ${sh}x${sw} resized frame`);
  }
  // Horizontal pass (only the output columns we keep), on every source row.
  let mid: Uint8Array;
  if (sw !== w) {
    const c = pilCoeffs(w, sw);
    mid = new Uint8Array(h * tw * 3);
    for (let y = 0; y < h; y++) {
      const row = y * w * 3;
      for (let x = 0; x < tw; x++) {
        const xx = left + x;
        const xmin = c.xmins[xx]!;
        const n = c.counts[xx]!;
        const kb = xx * c.ksize;
        let s0 = ONE / 2, s1 = ONE / 2, s2 = ONE / 2;
        for (let k = 0; k < n; k++) {
          const wgt = c.kk[kb + k]!;
          const p = row + (xmin + k) * 3;
          s0 += src[p]! * wgt;
          s1 += src[p + 1]! * wgt;
          s2 += src[p + 2]! * wgt;
        }
        const o = (y * tw + x) * 3;
        mid[o] = clip8(s0);
        mid[o + 1] = clip8(s1);
        mid[o + 2] = clip8(s2);
      }
    }
  } else {
    mid = new Uint8Array(h * tw * 3);
    for (let y = 0; y < h; y++) {
      mid.set(src.subarray((y * w + left) * 3, (y * w + left + tw) * 3), y * tw * 3);
    }
  }
  // Vertical pass (only the output rows we keep).
  const out = new Uint8Array(th * tw * 3);
  if (sh !== h) {
    const c = pilCoeffs(h, sh);
    for (let y = 0; y < th; y++) {
      const yy = top + y;
      const ymin = c.xmins[yy]!;
      const n = c.counts[yy]!;
      const kb = yy * c.ksize;
      for (let x = 0; x < tw; x++) {
        let s0 = ONE / 2, s1 = ONE / 2, s2 = ONE / 2;
        for (let k = 0; k < n; k++) {
          const wgt = c.kk[kb + k]!;
          const p = ((ymin + k) * tw + x) * 3;
          s0 += mid[p]! * wgt;
          s1 += mid[p + 1]! * wgt;
          s2 += mid[p + 2]! * wgt;
        }
        const o = (y * tw + x) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
  } else {
    out.set(mid.subarray(top * tw * 3, (top + th) * tw * 3));
  }
  return out;
}

/**
 * Packed RGB uint8 (th·tw·3) → channel-planar floats `(v/255 − 0.5)/0.5` (`ToTensor` +
 * `Normalize(0.5, 0.5)`), written into `target`.
 */
export function normalizeInto(rgb: Uint8Array, th: number, tw: number, target: FrameTarget): void {
  const { out, offset, planeStride } = target;
  const n = th * tw;
  if (rgb.length !== n * 3) {
    throw new RangeError(`normalizeInto: ${rgb.length} bytes, expected ${th}x${tw}x3`);
  }
  for (let p = 0; p < n; p++) {
    for (let ch = 0; ch < 3; ch++) {
      out[offset + p + ch * planeStride] = (rgb[p * 3 + ch]! / 255 - 0.5) / 0.5;
    }
  }
}
