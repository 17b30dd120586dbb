/**
 * Video sizes: the resolution / aspect-ratio tables, pixel-size and frame-count validation, latent
 * sizes, and the decoded-frame rule (`shared/spec/sampling.md` §2–3; `opensora/datasets/aspect.py`,
 * `sanitize_sampling_option`, `prepare_api`).
 *
 * @module
 */
import { fmtShape } from "../../engine/shape.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { narrow } from "../../engine/ops/movement.ts";

/** The ratio strings (`"width:height"`) of the reference's table, in its order. */
export const ASPECT_RATIO_LIST: readonly string[] = [
  "2.39:1",
  "2:1",
  "16:9",
  "1.85:1",
  "9:16",
  "5:8",
  "3:2",
  "4:3",
  "1:1",
];

/** Spatial compression of the high-compression DC-AE (`AE_SPATIAL_COMPRESSION`). */
export const HCAE_COMPRESSION = 32;

/** Python's float floor division `x // d` (positive operands). */
function floorDiv(x: number, d: number): number {
  const mod = x % d;
  let div = (x - mod) / d;
  const fl = Math.floor(div);
  if (div - fl > 0.5) div = fl + 1;
  else div = fl;
  return div;
}

/**
 * Pixels of a resolution name: `"{n}px"` → n², `"{n}p"` → ⌊n²·16/9⌋ (`get_num_pexels_from_name`;
 * a `"_setting"` suffix is ignored).
 *
 * @example
 * ```ts ignore
 * numPixels("768px");   // 589824
 * ```
 */
export function numPixels(resolution: string): number {
  const r = resolution.split("_")[0]!;
  const m = /^(\d+)(px|p)$/.exec(r);
  if (!m) {
    throw new RangeError(
      `resolution "${resolution}" is not "{n}px" (e.g. "256px", "768px") or "{n}p" (e.g. "720p")`,
    );
  }
  const n = Number(m[1]);
  return m[2] === "px" ? n * n : Math.trunc(n * n / 9 * 16);
}

/** Options of {@linkcode aspectRatios} and {@linkcode imageSize}. */
export interface AspectOptions {
  /** Spatial compression `D` of the autoencoder; default 32 (HCAE; 16 for the base pipeline). */
  compression?: number;
  /**
   * Training buckets (`true`: sizes adjusted towards the pixel budget, duplicates dropped) or the
   * inference table (`false`, the default: no adjustment, duplicates kept).
   */
  training?: boolean;
}

/**
 * The `{ratio: [height, width]}` table for a pixel budget (`get_aspect_ratios_dict`): for
 * `"w:h"`, `W = ⌊sqrt(P·w/h) / D⌋·D`, `H = ⌊(P/W) / D⌋·D`, and the mirrored key `"h:w"` gets
 * `[W, H]`; mirrored entries override direct ones (so `"16:9"` is the mirror of `"9:16"`).
 *
 * @example
 * ```ts ignore
 * aspectRatios(768 * 768).get("16:9");   // [576, 1024]
 * ```
 */
export function aspectRatios(
  totalPixels: number,
  opts: AspectOptions = {},
): Map<string, [number, number]> {
  const { compression: D = HCAE_COMPRESSION, training = false } = opts;
  if (!Number.isInteger(D) || D < 1) throw new RangeError(`aspectRatios: compression ${D} < 1`);
  const direct = new Map<string, [number, number]>();
  const vertical = new Map<string, [number, number]>();
  for (const ratio of ASPECT_RATIO_LIST) {
    const [wr, hr] = ratio.split(":").map(Number) as [number, number];
    let width = floorDiv(Math.sqrt(totalPixels * (wr / hr)), D) * D;
    let height = floorDiv(totalPixels / width, D) * D;
    if (training) {
      let diff = Math.abs(height * width - totalPixels);
      const candidates: [number, number][] = [
        [height - D, width],
        [height + D, width],
        [height, width - D],
        [height, width + D],
      ];
      for (const [h, w] of candidates) {
        if (Math.abs(h * w - totalPixels) < diff) {
          height = h;
          width = w;
          diff = Math.abs(h * w - totalPixels);
        }
      }
    }
    const dup = [...direct.values()].some(([h, w]) => h === height && w === width);
    if (!dup || !training) {
      direct.set(ratio, [height, width]);
      vertical.set(ratio.split(":").reverse().join(":"), [width, height]);
    }
  }
  for (const [k, v] of vertical) direct.set(k, v);
  return direct;
}

/** A pixel size. */
export interface ImageSize {
  /** Height in pixels. */
  height: number;
  /** Width in pixels. */
  width: number;
}

/**
 * `get_image_size(resolution, ratio, training)`: the pixel size of a resolution name and aspect
 * ratio (`"16:9"`, `"9:16"`, `"1:1"`, `"2.39:1"`, `"1:2.39"`, `"2:1"`, `"4:3"`, `"3:2"`, `"5:8"`,
 * `"1.85:1"` and their mirrors).
 *
 * @example
 * ```ts ignore
 * imageSize("768px", "16:9");                 // { height: 576, width: 1024 }
 * imageSize("256px", "16:9", { compression: 16 });   // { height: 192, width: 336 }
 * ```
 */
export function imageSize(
  resolution: string,
  ratio: string,
  opts: AspectOptions = {},
): ImageSize {
  const table = aspectRatios(numPixels(resolution), opts);
  const hw = table.get(ratio);
  if (!hw) {
    throw new RangeError(
      `aspect ratio "${ratio}" is not in the table for ${resolution}; use one of ` +
        [...table.keys()].map((k) => `"${k}"`).join(", "),
    );
  }
  return { height: hw[0], width: hw[1] };
}

/**
 * `sanitize_sampling_option`'s rounding: height and width rounded **up** to multiples of 16.
 *
 * @example
 * ```ts ignore
 * roundUpTo16({ height: 570, width: 1024 });   // { height: 576, width: 1024 }
 * ```
 */
export function roundUpTo16(size: ImageSize): ImageSize {
  return { height: Math.ceil(size.height / 16) * 16, width: Math.ceil(size.width / 16) * 16 };
}

/**
 * Checks an explicit pixel size for the DC-AE: height and width must be positive multiples of
 * `compression` (32). Throws naming the nearest valid sizes otherwise.
 *
 * @example
 * ```ts ignore
 * checkImageSize({ height: 576, width: 1024 });   // ok
 * checkImageSize({ height: 560, width: 1024 });   // throws: use 544 or 576
 * ```
 */
export function checkImageSize(size: ImageSize, compression = HCAE_COMPRESSION): void {
  for (const [name, v] of [["height", size.height], ["width", size.width]] as const) {
    if (!Number.isInteger(v) || v < compression || v % compression !== 0) {
      const lo = Math.max(compression, Math.floor(v / compression) * compression);
      const hi = Math.max(compression, Math.ceil(v / compression) * compression);
      throw new RangeError(
        `${name} ${v} is not a positive multiple of ${compression}: the DC-AE compresses by ` +
          `${compression} in space (use ${lo === hi ? lo : `${lo} or ${hi}`})`,
      );
    }
  }
}

/** Options of {@linkcode latentGrid}. */
export interface LatentGridOptions {
  /** Spatial compression; default 32. */
  compression?: number;
  /** MMDiT patch size; default 1. */
  patchSize?: number;
}

/**
 * The latent height/width of a pixel size (`get_noise`: `p·ceil(H/D)`, `p·ceil(W/D)`) and the token
 * grid `h/p`, `w/p`.
 *
 * @example
 * ```ts ignore
 * latentGrid({ height: 576, width: 1024 });   // { h: 18, w: 32, tokensPerFrame: 576 }
 * ```
 */
export function latentGrid(
  size: ImageSize,
  opts: LatentGridOptions = {},
): { h: number; w: number; tokensPerFrame: number } {
  const { compression = HCAE_COMPRESSION, patchSize: p = 1 } = opts;
  const h = p * Math.ceil(size.height / compression);
  const w = p * Math.ceil(size.width / compression);
  return { h, w, tokensPerFrame: (h * w) / (p * p) };
}

/** Options of the frame rules. */
export interface FrameOptions {
  /** The latent-frame formula of a causal VAE (`(F − 1)//r + 1`); default true (HCAE config). */
  causal?: boolean;
  /** Temporal compression `r`; default 4. */
  temporalReduction?: number;
}

/**
 * Latent frames for `numFrames` video frames (`prepare_api`): 1 for a single frame, otherwise
 * `(F − 1)//r + 1` (causal) or `F//r`. For 128 frames both give 32.
 *
 * @example
 * ```ts ignore
 * latentFrames(128);   // 32
 * latentFrames(12);    // 3
 * ```
 */
export function latentFrames(numFrames: number, opts: FrameOptions = {}): number {
  const { causal = true, temporalReduction: r = 4 } = opts;
  if (!Number.isInteger(numFrames) || numFrames < 1) {
    throw new RangeError(`numFrames ${numFrames} must be an integer >= 1`);
  }
  if (numFrames === 1) return 1;
  return causal ? Math.floor((numFrames - 1) / r) + 1 : Math.floor(numFrames / r);
}

/** Options of {@linkcode checkFrameCount}. */
export interface FrameCountOptions {
  /** Temporal compression of the DC-AE; default 4. */
  temporalReduction?: number;
  /** Largest frame count (the HCAE training buckets end at 128); default 128. */
  maxFrames?: number;
}

/**
 * Checks a frame count for the high-compression pipeline: 1 (an image) or a multiple of 4 up to
 * 128. The non-causal DC-AE encodes and decodes groups of 4 frames (the repository README's
 * "4k+1" rule is for the causal HunyuanVideo VAE of the base model).
 *
 * @example
 * ```ts ignore
 * checkFrameCount(128);   // ok
 * checkFrameCount(129);   // throws: use 128
 * ```
 */
export function checkFrameCount(numFrames: number, opts: FrameCountOptions = {}): void {
  const { temporalReduction: r = 4, maxFrames = 128 } = opts;
  if (!Number.isInteger(numFrames) || numFrames < 1) {
    throw new RangeError(`numFrames ${numFrames} must be an integer >= 1`);
  }
  if (numFrames === 1) return;
  if (numFrames % r !== 0) {
    const lo = Math.max(r, Math.floor(numFrames / r) * r);
    throw new RangeError(
      `numFrames ${numFrames} is not 1 or a multiple of ${r}: the DC-AE is not causal and codes ` +
        `frames in groups of ${r} (use ${lo}${lo + r <= maxFrames ? ` or ${lo + r}` : ""}; ` +
        `"4k+1" counts are for the base model's causal VAE)`,
    );
  }
  if (numFrames > maxFrames) {
    throw new RangeError(
      `numFrames ${numFrames} is over ${maxFrames}, the longest clip the model was trained on ` +
        `(use at most ${maxFrames})`,
    );
  }
}

/**
 * Frames the DC-AE decodes from `T` latent frames: `r·T` (1 for `T = 1`).
 *
 * @example
 * ```ts ignore
 * decodedFrames(32);   // 128
 * ```
 */
export function decodedFrames(latentT: number, temporalReduction = 4): number {
  return latentT === 1 ? 1 : temporalReduction * latentT;
}

/**
 * Keeps the first `numFrames` frames of a decoded video `[N, 3, F, H, W]` (a view), as
 * `x[:, :, :num_frames]` in `api_fn`.
 *
 * @example
 * ```ts ignore
 * const clip = keepFrames(decoded, 13);   // [1, 3, 16, H, W] -> [1, 3, 13, H, W]
 * ```
 */
export function keepFrames(video: Tensor, numFrames: number): Tensor {
  if (video.rank !== 5) {
    throw new RangeError(
      `keepFrames: expected a video [N, 3, F, H, W], got ${fmtShape(video.shape)}`,
    );
  }
  const f = video.shape[2]!;
  if (!Number.isInteger(numFrames) || numFrames < 1 || numFrames > f) {
    throw new RangeError(
      `keepFrames: numFrames ${numFrames} must be in [1, ${f}] (decoded frames)`,
    );
  }
  return narrow(video, 2, 0, numFrames);
}
