/**
 * DC-AE data movers on NCTHW tensors: 3-D and per-frame 2-D pixel (un)shuffle, channel
 * repeat-interleave, channel group-mean, nearest up-sampling, and the two parameter-free DC-AE
 * shortcut layers built from them.
 *
 * Every op is composed from views (reshape, permute, expand) plus dense copies and the mean
 * reduction, so the backward rules come from those ops (nearest up-sampling has its own
 * broadcast view whose backward adds slices, cheaper than the generic reduction). Each copy is arranged so that its
 * strided source coalesces to at most 6 axes (the fused copy kernel's limit): the 3-D shuffles
 * are done as a per-frame 2-D shuffle and a temporal shuffle (two copies).
 *
 * Channel conventions (factor r, see `spec/dc-ae.md` §3.4):
 * - 3-D: input channel `c·r³ + dt·r² + dh·r + dw` ↔ output `(c, r·t+dt, r·h+dh, r·w+dw)`;
 * - 2-D (per frame): channel `c·r² + dh·r + dw` ↔ `(c, t, r·h+dh, r·w+dw)`.
 *
 * @module
 */
import { applyView } from "../graph.ts";
import { fmtShape, numel, type Shape } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor } from "../tensor.ts";
import { add, copy } from "./elementwise.ts";
import { expand, narrow, permute, reshape } from "./movement.ts";
import { mean, sum } from "./reduce.ts";

/** Dense (row-major) `x`: a copy only when `x` is a strided view. */
function dense(x: Tensor): Tensor {
  return x.contiguous ? x : copy(x);
}

function check5d(op: string, x: Tensor): [number, number, number, number, number] {
  checkAlive(op, x);
  if (x.rank !== 5) {
    throw new RangeError(`${op}: expected an NCTHW tensor (rank 5), got ${fmtShape(x.shape)}`);
  }
  return x.shape as unknown as [number, number, number, number, number];
}

function checkFactor(op: string, f: number): void {
  if (!Number.isInteger(f) || f < 1) {
    throw new RangeError(`${op}: factor must be an integer >= 1, got ${f}`);
  }
}

function checkDivisible(op: string, x: Tensor, what: string, n: number, by: number): void {
  if (n % by !== 0) {
    throw new RangeError(`${op}: ${what} ${n} of ${fmtShape(x.shape)} is not divisible by ${by}`);
  }
}

// ---------------------------------------------------------------- 2-D (per frame)

/**
 * Per-frame 2-D pixel shuffle: `[B, C·r², T, H, W]` → `[B, C, T, r·H, r·W]`, input channel
 * `c·r² + dh·r + dw` goes to `(c, t, r·h+dh, r·w+dw)` (PyTorch `pixel_shuffle` on every frame).
 */
export function pixelShuffle2d(x: Tensor, factor = 2): Tensor {
  const op = "pixelShuffle2d";
  const [b, cr, t, h, w] = check5d(op, x);
  checkFactor(op, factor);
  const r = factor;
  checkDivisible(op, x, "channel count", cr, r * r);
  if (r === 1) return x;
  const c = cr / (r * r);
  const v = reshape(dense(x), [b, c, r, r, t, h, w]);
  return reshape(permute(v, [0, 1, 4, 5, 2, 6, 3]), [b, c, t, h * r, w * r]);
}

/**
 * Per-frame 2-D pixel unshuffle: `[B, C, T, r·H, r·W]` → `[B, C·r², T, H, W]`, output channel
 * `c·r² + dh·r + dw` holds `(c, t, r·h+dh, r·w+dw)` (PyTorch `pixel_unshuffle` on every frame).
 */
export function pixelUnshuffle2d(x: Tensor, factor = 2): Tensor {
  const op = "pixelUnshuffle2d";
  const [b, c, t, hr, wr] = check5d(op, x);
  checkFactor(op, factor);
  const r = factor;
  checkDivisible(op, x, "height", hr, r);
  checkDivisible(op, x, "width", wr, r);
  if (r === 1) return x;
  const h = hr / r;
  const w = wr / r;
  const v = reshape(dense(x), [b, c, t, h, r, w, r]);
  return reshape(permute(v, [0, 1, 4, 6, 2, 3, 5]), [b, c * r * r, t, h, w]);
}

// ---------------------------------------------------------------- time only

/** `[B, C·r, T, H, W]` → `[B, C, r·T, H, W]`: channel `c·r + dt` goes to frame `r·t + dt`. */
function timeShuffle(x: Tensor, r: number): Tensor {
  const [b, cr, t, h, w] = x.shape as unknown as number[];
  const c = cr! / r;
  const v = reshape(dense(x), [b!, c, r, t!, h! * w!]);
  return reshape(permute(v, [0, 1, 3, 2, 4]), [b!, c, t! * r, h!, w!]);
}

/** `[B, C, r·T, H, W]` → `[B, C·r, T, H, W]`: frame `r·t + dt` goes to channel `c·r + dt`. */
function timeUnshuffle(x: Tensor, r: number): Tensor {
  const [b, c, tr, h, w] = x.shape as unknown as number[];
  const t = tr! / r;
  const v = reshape(dense(x), [b!, c!, t, r, h! * w!]);
  return reshape(permute(v, [0, 1, 3, 2, 4]), [b!, c! * r, t, h!, w!]);
}

// ---------------------------------------------------------------- 3-D

/**
 * 3-D pixel shuffle (`vo_ops.pixel_shuffle_3d`): `[B, C·r³, T, H, W]` → `[B, C, r·T, r·H, r·W]`,
 * input channel `c·r³ + dt·r² + dh·r + dw` goes to `(c, r·t+dt, r·h+dh, r·w+dw)`.
 *
 * @example
 * ```ts ignore
 * const y = pixelShuffle3d(x); // [1, 16, 2, 3, 4] -> [1, 2, 4, 6, 8]
 * ```
 */
export function pixelShuffle3d(x: Tensor, factor = 2): Tensor {
  const op = "pixelShuffle3d";
  const [, cr] = check5d(op, x);
  checkFactor(op, factor);
  const r = factor;
  checkDivisible(op, x, "channel count", cr, r * r * r);
  if (r === 1) return x;
  // channel c·r³ + dt·r² + (dh·r + dw) = (c·r + dt)·r² + (dh·r + dw): spatial, then time
  return timeShuffle(pixelShuffle2d(x, r), r);
}

/**
 * 3-D pixel unshuffle (`vo_ops.pixel_unshuffle_3d`): `[B, C, r·T, r·H, r·W]` →
 * `[B, C·r³, T, H, W]`, output channel `c·r³ + dt·r² + dh·r + dw` holds `(c, r·t+dt, r·h+dh,
 * r·w+dw)`.
 */
export function pixelUnshuffle3d(x: Tensor, factor = 2): Tensor {
  const op = "pixelUnshuffle3d";
  const [, , t, h, w] = check5d(op, x);
  checkFactor(op, factor);
  const r = factor;
  checkDivisible(op, x, "frame count", t, r);
  checkDivisible(op, x, "height", h, r);
  checkDivisible(op, x, "width", w, r);
  if (r === 1) return x;
  return pixelUnshuffle2d(timeUnshuffle(x, r), r);
}

// ---------------------------------------------------------------- channel ops

/**
 * Repeats every channel `r` times consecutively (`repeat_interleave(r, dim=1)`): output channel
 * `k` is input channel `floor(k / r)`. Works on any tensor of rank ≥ 2 (axis 1 = channels).
 */
export function repeatInterleaveChannels(x: Tensor, r: number): Tensor {
  const op = "repeatInterleaveChannels";
  checkAlive(op, x);
  if (x.rank < 2) throw new RangeError(`${op}: expected rank >= 2, got ${fmtShape(x.shape)}`);
  checkFactor(op, r);
  if (r === 1) return x;
  const [b, c] = x.shape as unknown as [number, number];
  const rest = x.shape.slice(2);
  const inner = numel(rest);
  const v = expand(reshape(dense(x), [b, c, 1, inner]), [b, c, r, inner]);
  return reshape(v, [b, c * r, ...rest]);
}

/**
 * Mean over groups of `groupSize` consecutive channels: output channel `o` is the mean of input
 * channels `o·g .. o·g + g − 1`. Works on any tensor of rank ≥ 2 (axis 1 = channels).
 */
export function channelGroupMean(x: Tensor, groupSize: number): Tensor {
  const op = "channelGroupMean";
  checkAlive(op, x);
  if (x.rank < 2) throw new RangeError(`${op}: expected rank >= 2, got ${fmtShape(x.shape)}`);
  checkFactor(op, groupSize);
  const [b, c] = x.shape as unknown as [number, number];
  checkDivisible(op, x, "channel count", c, groupSize);
  if (groupSize === 1) return x;
  const rest = x.shape.slice(2);
  const v = reshape(x, [b, c / groupSize, groupSize, numel(rest)]);
  return reshape(mean(v, 2), [b, c / groupSize, ...rest]);
}

/** Sum over size-`f` axes by adding `f` strided slices (fused elementwise), one axis at a time. */
function sumAxesBySlices(g: Tensor, axes: readonly number[]): Tensor {
  for (const a of axes) {
    const f = g.shape[a]!;
    if (f === 1) continue;
    if (f > 6) {
      g = sum(g, a, true);
      continue;
    }
    let acc = narrow(g, a, 0, 1);
    for (let k = 1; k < f; k++) acc = add(acc, narrow(g, a, k, 1));
    g = acc;
  }
  return g;
}

/**
 * The broadcast view `[N, T, 1, H, 1, W, 1]` → `[N, T, ft, H, fh, W, fw]` (stride 0 on the factor
 * axes) of nearest up-sampling. Same layout as `expand`, but its backward sums the factor axes as
 * a few slices added together (small elementwise kernels), instead of a reduction over
 * non-adjacent axes (permuted copy + one workgroup per output element).
 */
const UPSAMPLE_VIEW: OpDef<{ from: Shape }> = {
  name: "upsample_nearest",
  kind: "view",
  backward: ({ grads, attrs }) => {
    const g = sumAxesBySlices(grads[0]!, [6, 4, 2]);
    return [g.shape.join() === attrs.from.join() ? g : reshape(g, attrs.from)];
  },
};

/**
 * Nearest up-sampling of NCTHW by integer factors `[ft, fh, fw]` (`interpolate(mode="nearest")`
 * with integer scale factors): output index `o` reads input index `floor(o / f)` on each axis.
 */
export function upsampleNearest(x: Tensor, factors: readonly [number, number, number]): Tensor {
  const op = "upsampleNearest";
  const [b, c, t, h, w] = check5d(op, x);
  if (factors.length !== 3) {
    throw new RangeError(`${op}: expected 3 factors [ft, fh, fw], got [${factors.join(", ")}]`);
  }
  const [ft, fh, fw] = factors;
  for (const f of factors) checkFactor(op, f);
  if (ft === 1 && fh === 1 && fw === 1) return x;
  const v = reshape(dense(x), [b * c, t, 1, h, 1, w, 1]);
  const shape = [b * c, t, ft, h, fh, w, fw];
  const strides = v.strides.map((st, i) => (i === 2 || i === 4 || i === 6 ? 0 : st));
  const e = applyView(UPSAMPLE_VIEW, v, { from: v.shape }, shape, strides, v.offset);
  return reshape(e, [b, c, t * ft, h * fh, w * fw]);
}

// ---------------------------------------------------------------- DC-AE shortcut layers

function ratio(op: string, x: Tensor, num: number, den: number, what: string): number {
  if (num % den !== 0) {
    throw new RangeError(
      `${op}: ${what} (${num} / ${den}) is not an integer for input ${fmtShape(x.shape)}`,
    );
  }
  return num / den;
}

/**
 * DC-AE `PixelUnshuffleChannelAveragingDownSampleLayer`: space(-time)-to-channel, then the mean
 * over groups of consecutive channels down to `outChannels`.
 * - `factor` 1: group mean only (group size `C_in / C_out`);
 * - `temporal` and T ≠ 1: 3-D unshuffle, group size `C_in·f³ / C_out` (T must be divisible by f);
 * - otherwise (spatial stage, or a single frame): per-frame 2-D unshuffle, group size
 *   `C_in·f² / C_out`.
 */
export function pixelUnshuffleChannelAveragingDownsample(
  x: Tensor,
  outChannels: number,
  temporal: boolean,
  factor = 2,
): Tensor {
  const op = "pixelUnshuffleChannelAveragingDownsample";
  const [, cin, t] = check5d(op, x);
  checkFactor(op, factor);
  if (factor === 1) return channelGroupMean(x, ratio(op, x, cin, outChannels, "group size"));
  if (temporal && t !== 1) {
    const g = ratio(op, x, cin * factor ** 3, outChannels, "group size C_in·f³/C_out");
    return channelGroupMean(pixelUnshuffle3d(x, factor), g);
  }
  const g = ratio(op, x, cin * factor * factor, outChannels, "group size C_in·f²/C_out");
  return channelGroupMean(pixelUnshuffle2d(x, factor), g);
}

/**
 * DC-AE `ChannelDuplicatingPixelShuffleUpSampleLayer`: repeat-interleave the channels, then
 * pixel-shuffle to `outChannels`.
 * - `factor` 1: repeat `C_out / C_in` times only;
 * - `temporal` and T ≠ 1: repeat `C_out·f³ / C_in` times, then 3-D shuffle;
 * - otherwise: repeat `C_out·f² / C_in` times, then per-frame 2-D shuffle.
 */
export function channelDuplicatingPixelShuffleUpsample(
  x: Tensor,
  outChannels: number,
  temporal: boolean,
  factor = 2,
): Tensor {
  const op = "channelDuplicatingPixelShuffleUpsample";
  const [, cin, t] = check5d(op, x);
  checkFactor(op, factor);
  if (factor === 1) {
    return repeatInterleaveChannels(x, ratio(op, x, outChannels, cin, "repeat C_out/C_in"));
  }
  if (temporal && t !== 1) {
    const r = ratio(op, x, outChannels * factor ** 3, cin, "repeat C_out·f³/C_in");
    return pixelShuffle3d(repeatInterleaveChannels(x, r), factor);
  }
  const r = ratio(op, x, outChannels * factor * factor, cin, "repeat C_out·f²/C_in");
  return pixelShuffle2d(repeatInterleaveChannels(x, r), factor);
}
