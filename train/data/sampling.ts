/**
 * Frame-rate mapping, caption suffixes and temporal sampling (`data.md` §3 and §5).
 *
 * @module
 */
import type { Rng } from "./rng.ts";

/** The frame-rate cap of the training config (`fps_max = 24`). */
export const FPS_MAX = 24;

/** Result of {@linkcode mapTargetFps}. */
export interface FpsMapping {
  /** Frame rate after subsampling; 0 when the source rate is unknown (NaN). */
  fps: number;
  /** Take every `interval`-th frame. */
  interval: number;
}

/**
 * `map_target_fps(fps, fps_max)`: NaN → (0, 1); below the cap → (fps, 1); otherwise
 * `interval = ceil(fps / cap)`, `fps' = floor(fps / interval)`.
 * Examples (cap 24): 24 → (24, 1), 25 → (12, 2), 29.97 → (14, 2), 30 → (15, 2), 60 → (20, 3).
 */
export function mapTargetFps(fps: number, fpsMax = FPS_MAX): FpsMapping {
  if (Number.isNaN(fps)) return { fps: 0, interval: 1 };
  if (fps < fpsMax) return { fps, interval: 1 };
  const interval = Math.ceil(fps / fpsMax);
  return { fps: Math.floor(fps / interval), interval };
}

/** Python's `str(float)` for the values that occur here (integers print as `15.0`). */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? `${x}.0` : String(x);
}

/** Inputs of {@linkcode captionWithSuffix}. */
export interface CaptionInfo {
  text: string;
  /** The CSV `fps` (NaN when unknown). */
  fps: number;
  /**
   * Whether pandas would read the `fps` column as float (any value with a decimal point or
   * exponent, or any missing value): then a rate below the cap prints as `15.0`, as in the
   * reference. Rates at or above the cap are floored to an int and print without `.0`.
   */
  fpsIsFloat: boolean;
  /** `score_vmafmotion`, NaN or undefined when absent. */
  motionScore?: number;
}

/**
 * The training caption: `text + " " + ", ".join(parts) + "."` with parts
 * `"{fps'} FPS"` (if fps' ≠ 0) and `"{int(score + 0.5)} motion score"` (if `vmaf` and the score
 * is known); the text alone when there are no parts (`data.md` §3).
 */
export function captionWithSuffix(info: CaptionInfo, fpsMax = FPS_MAX, vmaf = true): string {
  const parts: string[] = [];
  const m = mapTargetFps(info.fps, fpsMax);
  if (m.fps !== 0) {
    // Below the cap the value is the column's own (float or int); at or above it, math.floor's
    // int.
    const below = info.fps < fpsMax;
    const s = below && info.fpsIsFloat ? pyFloat(m.fps) : String(m.fps);
    parts.push(`${s} FPS`);
  }
  if (vmaf && info.motionScore !== undefined && !Number.isNaN(info.motionScore)) {
    parts.push(`${Math.trunc(info.motionScore + 0.5)} motion score`);
  }
  return parts.length ? `${info.text} ${parts.join(", ")}.` : info.text;
}

/**
 * `np.linspace(start, stop, num, dtype=int)`: float64 points `i·step + start` (the last one set
 * to `stop` exactly), truncated to integers.
 */
export function linspaceInt(start: number, stop: number, num: number): number[] {
  if (!Number.isInteger(num) || num < 1) {
    throw new RangeError(`linspaceInt: num must be a positive integer, got ${num}`);
  }
  if (num === 1) return [Math.trunc(start)];
  const div = num - 1;
  const delta = stop - start;
  const step = delta / div;
  const out = new Array<number>(num);
  for (let i = 0; i < num; i++) {
    const y = (step === 0 ? (i / div) * delta : i * step) + start;
    out[i] = Math.trunc(y);
  }
  out[num - 1] = Math.trunc(stop);
  return out;
}

/** Thrown when a clip has fewer frames than the sampling needs. */
export class TooShortError extends Error {
  override name = "TooShortError";
}

/**
 * Frame indices of `temporal_random_crop` for a given window start (`data.md` §5):
 * window `w = n·interval`, `end = min(start + w, total)`, indices
 * `linspace(start, end − 1, n)` truncated. Throws {@linkcode TooShortError} when
 * `end − start < n`.
 */
export function temporalIndices(
  total: number,
  n: number,
  interval: number,
  start: number,
): number[] {
  const end = Math.min(start + n * interval, total);
  if (end - start < n) {
    throw new TooShortError(
      `not enough frames: ${total} frames, window [${start}, ${end}) holds ${
        end - start
      } < ${n} needed (${n} frames at interval ${interval})`,
    );
  }
  return linspaceInt(start, end - 1, n);
}

/** The highest window start `temporal_random_crop` may draw: `max(0, total − n·interval − 1)`. */
export function maxCropStart(total: number, n: number, interval: number): number {
  return Math.max(0, total - n * interval - 1);
}

/**
 * `temporal_random_crop`: `start = randint(0, max(0, total − n·interval − 1))` (inclusive), then
 * {@linkcode temporalIndices}. The draw comes from `rng` (one per sample, epoch and seed).
 */
export function temporalRandomCrop(
  total: number,
  n: number,
  interval: number,
  rng: Rng,
): { start: number; indices: number[] } {
  if (!(Number.isInteger(total) && total >= 0 && Number.isInteger(n) && n >= 1)) {
    throw new RangeError(`temporalRandomCrop: bad sizes total=${total}, n=${n}`);
  }
  if (!(Number.isInteger(interval) && interval >= 1)) {
    throw new RangeError(
      `temporalRandomCrop: interval must be a positive integer, got ${interval}`,
    );
  }
  const start = rng.randint(0, maxCropStart(total, n, interval));
  return { start, indices: temporalIndices(total, n, interval, start) };
}
