/**
 * The bucket system (`training.md` §7): bucket configs, the training aspect-ratio table and the
 * assignment of a sample to a bucket (`opensora/datasets/{aspect,bucket}.py`).
 *
 * @module
 */
import { ASPECT_RATIO_LIST, aspectRatios } from "../../models/sampling/sizes.ts";
import { Rng, STREAM } from "./rng.ts";
import { FPS_MAX, mapTargetFps } from "./sampling.ts";

/**
 * Probability of a frame key: `p` (keep the sample in this bucket with probability p) or
 * `[pKeep, pSkipToNext]` (first skip to the next shorter length with probability pSkipToNext).
 */
export type BucketProb = number | readonly [number, number];

/**
 * `bucket_config`: resolution name (`"768px"`, `"720p"`, optionally `_ar16:9` or `_max`) →
 * frame count (1 = images) → `[probability, batch size per GPU]`.
 */
export type BucketConfig = Readonly<
  Record<string, Readonly<Record<number, readonly [BucketProb, number]>>>
>;

function hcaeFrames(): Record<number, readonly [BucketProb, number]> {
  const f: Record<number, readonly [BucketProb, number]> = { 1: [1.0, 20] };
  for (let t = 16; t <= 128; t += 4) f[t] = [1.0, t <= 32 ? 8 : t <= 64 ? 4 : t <= 96 ? 3 : 2];
  return f;
}

/**
 * `configs/diffusion/train/high_compression.py`: 768px only; 1 frame bs 20; 16–32 frames bs 8;
 * 36–64 bs 4; 68–96 bs 3; 100–128 bs 2 (steps of 4, all probability 1.0).
 */
export const HCAE_BUCKETS: BucketConfig = { "768px": hcaeFrames() };

/** Named bucket presets for `--buckets`. */
export const BUCKET_PRESETS: Readonly<Record<string, BucketConfig>> = {
  hcae: HCAE_BUCKETS,
  high_compression: HCAE_BUCKETS,
};

/** The training config's DC-AE spatial compression (`AE_SPATIAL_COMPRESSION = 32`). */
export const AE_SPATIAL_COMPRESSION = 32;

/** `ASPECT_RATIO_LD_LIST` (width:height), in the reference's order (shared with inference). */
export { ASPECT_RATIO_LIST };

/** `get_ratio`: height/width of a `"w:h"` name. */
export function ratioOf(name: string): number {
  const [w, h] = name.split(":").map(Number);
  if (!(w! > 0 && h! > 0)) throw new Error(`bad aspect ratio name '${name}' (expected "w:h")`);
  return h! / w!;
}

/** An ordered ratio name → [height, width] table (insertion order matters for ties). */
export type AspectTable = ReadonlyMap<string, readonly [number, number]>;

/**
 * `get_aspect_ratios_dict(total_pixels, training)`: for each ratio `w:h` of the list,
 * `W = floor(sqrt(P·w/h) / D)·D`, `H = floor((P/W) / D)·D`; in training the four neighbours
 * `(H∓D, W)`, `(H, W∓D)` of the floored size replace it when strictly closer to P in area, and a
 * size already produced by an earlier ratio is skipped; mirrored `h:w` keys follow.
 */
export function aspectRatioTable(
  totalPixels: number,
  training = true,
  d = AE_SPATIAL_COMPRESSION,
): AspectTable {
  // one implementation of the reference's table, shared with inference (models/sampling/sizes.ts)
  return aspectRatios(totalPixels, { compression: d, training });
}

/** `get_num_pexels_from_name`: `"{n}px"` → n², `"{n}p"` → int(n²/9·16) (suffixes ignored). */
export function pixelsOfResolution(name: string): number {
  const base = name.split("_")[0]!;
  let m = base.match(/^(\d+)px$/);
  if (m) return Number(m[1]) ** 2;
  m = base.match(/^(\d+)p$/);
  if (m) return Math.trunc((Number(m[1]) ** 2 / 9) * 16);
  throw new Error(
    `invalid resolution name '${name}': use "{n}px" (area n², e.g. 768px) or "{n}p" ` +
      `(area n²·16/9, e.g. 720p), optionally with "_ar16:9" or "_max"`,
  );
}

/** `get_resolution_with_aspect_ratio`: pixel count and the ratio table of a resolution name. */
export function resolutionTable(
  name: string,
  d = AE_SPATIAL_COMPRESSION,
): { pixels: number; ratios: AspectTable } {
  const parts = name.split("_");
  if (parts.length > 2) throw new Error(`invalid resolution name '${name}'`);
  const pixels = pixelsOfResolution(parts[0]!);
  const table = aspectRatioTable(pixels, true, d);
  const setting = parts[1] ?? "";
  if (setting === "") return { pixels, ratios: table };
  if (setting === "max") {
    let best = "";
    let area = -1;
    for (const [k, [h, w]] of table) {
      if (h * w > area) [best, area] = [k, h * w];
    }
    return { pixels, ratios: new Map([[best, table.get(best)!]]) };
  }
  if (setting.startsWith("ar")) {
    const ar = setting.slice(2);
    const hw = table.get(ar);
    if (!hw) {
      throw new Error(
        `aspect ratio '${ar}' of '${name}' is not in the table (${[...table.keys()].join(", ")})`,
      );
    }
    return { pixels, ratios: new Map([[ar, hw]]) };
  }
  throw new Error(`invalid resolution setting '${setting}' in '${name}' (use _max or _ar{w:h})`);
}

/** `get_closest_ratio`: the name minimising |height/width − ratio| (first one on ties). */
export function closestRatio(height: number, width: number, ratios: Iterable<string>): string {
  const ar = height / width;
  let best = "";
  let bestD = Infinity;
  for (const r of ratios) {
    const d = Math.abs(ar - ratioOf(r));
    if (d < bestD) [best, bestD] = [r, d];
  }
  return best;
}

/** A bucket: resolution, frame count and aspect ratio, with its clip shape and batch size. */
export interface BucketId {
  /** Resolution name, e.g. `256px`. */
  resolution: string;
  /** Frame count of the bucket's clips. */
  frames: number;
  /** Aspect ratio, e.g. `16:9`. */
  ratio: string;
}

/** A bucket with everything needed to form batches. */
export interface BucketInfo extends BucketId {
  /** `resolution/frames/ratio`, unique. */
  key: string;
  /** Clip height in pixels. */
  height: number;
  /** Clip width in pixels. */
  width: number;
  /** Samples per micro-batch. */
  batchSize: number;
}

/** The bucket key string of an id. */
export function bucketKey(b: BucketId): string {
  return `${b.resolution}/${b.frames}/${b.ratio}`;
}

/** What bucket assignment needs to know about a sample (CSV `num_frames, height, width, fps`). */
export interface BucketInput {
  /** Frames of the sample. */
  numFrames: number;
  /** Height in pixels. */
  height: number;
  /** Width in pixels. */
  width: number;
  /** NaN when unknown. */
  fps: number;
}

/** Why a sample got no bucket. */
export interface NoBucket {
  /** The kind of failure. */
  reason: "wrong-size" | "too-short" | "no-bucket";
  /** A readable explanation. */
  detail: string;
}

/**
 * The `Bucket` class: resolutions by decreasing area, frame keys by decreasing length, and
 * `get_bucket_id` with a per-(seed, epoch, row) random stream.
 */
export class Buckets {
  /** Resolution names, largest area first (stable for equal areas). */
  readonly resolutions: readonly string[];
  /** Total number of buckets (frame keys × aspect ratios, summed over resolutions). */
  readonly numBuckets: number;
  /** Frame-rate cap: faster clips are subsampled by a frame interval before bucketing. */
  readonly fpsMax: number;
  readonly #pixels = new Map<string, number>();
  readonly #ratios = new Map<string, AspectTable>();
  /** Frame keys per resolution, decreasing, with [prob, batch size]. */
  readonly #frames = new Map<string, [number, BucketProb, number][]>();

  /**
   * Builds the tables of `config`; `spatialCompression` (default 32) quantises the aspect tables,
   * `fpsMax` caps the frame rate (default 24).
   */
  constructor(
    readonly config: BucketConfig,
    opts: { spatialCompression?: number; fpsMax?: number } = {},
  ) {
    const d = opts.spatialCompression ?? AE_SPATIAL_COMPRESSION;
    if (!(Number.isInteger(d) && d > 0)) {
      throw new RangeError(`spatialCompression must be a positive integer, got ${d}`);
    }
    this.fpsMax = opts.fpsMax ?? FPS_MAX;
    const names = Object.keys(config);
    if (names.length === 0) throw new Error("bucket config is empty: give at least one resolution");
    let num = 0;
    for (const name of names) {
      const { pixels, ratios } = resolutionTable(name, d);
      this.#pixels.set(name, pixels);
      this.#ratios.set(name, ratios);
      const entries: [number, BucketProb, number][] = [];
      for (const [k, v] of Object.entries(config[name]!)) {
        const t = Number(k);
        const where = `bucket config ${name} / ${k}`;
        if (!(Number.isInteger(t) && t >= 1)) throw new Error(`${where}: frame count must be >= 1`);
        if (!Array.isArray(v) || v.length !== 2) {
          throw new Error(`${where}: expected [probability, batch size], got ${JSON.stringify(v)}`);
        }
        const [p, bs] = v;
        const ps = typeof p === "number" ? [p] : Array.isArray(p) && p.length === 2 ? p : null;
        if (!ps || !ps.every((x) => typeof x === "number" && x >= 0 && x <= 1)) {
          throw new Error(`${where}: probability must be in [0, 1] or a pair of them`);
        }
        if (!(Number.isInteger(bs) && bs >= 1)) {
          throw new Error(`${where}: batch size must be a positive integer, got ${bs}`);
        }
        entries.push([t, p, bs]);
      }
      entries.sort((a, b) => b[0] - a[0]);
      this.#frames.set(name, entries);
      num += entries.length * ratios.size;
    }
    // Python's sorted(..., reverse=True) is stable: equal areas keep config order.
    this.resolutions = names
      .map((n, i) => [n, i] as const)
      .sort((a, b) => this.#pixels.get(b[0])! - this.#pixels.get(a[0])! || a[1] - b[1])
      .map(([n]) => n);
    this.numBuckets = num;
  }

  /** Pixel count of a resolution name. */
  pixels(resolution: string): number {
    return this.#pixels.get(resolution)!;
  }

  /** The aspect-ratio table of a resolution. */
  ratios(resolution: string): AspectTable {
    return this.#ratios.get(resolution)!;
  }

  /** Every bucket, resolutions by area, frames decreasing, ratios in table order. */
  all(): BucketInfo[] {
    const out: BucketInfo[] = [];
    for (const r of this.resolutions) {
      for (const [t] of this.#frames.get(r)!) {
        for (const ratio of this.#ratios.get(r)!.keys()) {
          out.push(this.info({ resolution: r, frames: t, ratio }));
        }
      }
    }
    return out;
  }

  /** Shape and batch size of a bucket (`get_thw`, `get_batch_size`). */
  info(id: BucketId): BucketInfo {
    const frames = this.#frames.get(id.resolution)?.find(([t]) => t === id.frames);
    const hw = this.#ratios.get(id.resolution)?.get(id.ratio);
    if (!frames || !hw) throw new Error(`unknown bucket ${bucketKey(id)}`);
    const b = { resolution: id.resolution, frames: id.frames, ratio: id.ratio };
    return { ...b, key: bucketKey(b), height: hw[0], width: hw[1], batchSize: frames[2] };
  }

  /**
   * `Bucket.get_bucket_id` (`training.md` §7.3): `T = num_frames // interval`; for resolutions
   * by decreasing area with `H·W ≥ 0.8·area`: an image (T = 1) takes key 1 if
   * `random() < p`; a video takes the first key `k ≤ T` (k ≠ 1) if `p ≥ 1` or `random() ≤ p`
   * (a `[pKeep, pSkip]` pair first skips to the next key with probability pSkip), otherwise
   * the next resolution is tried. The draws come from `rng`; null when no bucket fits.
   */
  assign(s: BucketInput, rng: Rng): BucketId | null {
    const { interval } = mapTargetFps(s.fps, this.fpsMax);
    const t = Math.floor(s.numFrames / interval);
    const area = s.height * s.width;
    for (const res of this.resolutions) {
      if (area < this.#pixels.get(res)! * 0.8) continue;
      const keys = this.#frames.get(res)!;
      const ratios = this.#ratios.get(res)!.keys();
      if (t === 1) {
        const one = keys.find(([k]) => k === 1);
        if (one && rng.random() < (typeof one[1] === "number" ? one[1] : one[1][0])) {
          return { resolution: res, frames: 1, ratio: closestRatio(s.height, s.width, ratios) };
        }
        continue;
      }
      for (const [k, p] of keys) {
        if (k === 1 || t < k) continue;
        let pKeep: number;
        if (typeof p !== "number") {
          const [hw, next] = p;
          if (next >= 1 || rng.random() <= next) continue;
          pKeep = hw;
        } else pKeep = p;
        if (pKeep >= 1 || rng.random() <= pKeep) {
          return { resolution: res, frames: k, ratio: closestRatio(s.height, s.width, ratios) };
        }
        break;
      }
    }
    return null;
  }

  /** The assignment of row `index` in `epoch` (stream `(bucket, seed, epoch, index)`). */
  assignRow(s: BucketInput, seed: number, epoch: number, index: number): BucketId | null {
    return this.assign(s, Rng.of(STREAM.bucket, seed, epoch, index));
  }

  /**
   * Why a sample can never get a bucket, or `no-bucket` when only the random draws excluded
   * it (another epoch may take it). Call after {@linkcode assign} returned null.
   */
  explain(s: BucketInput): NoBucket {
    const { interval } = mapTargetFps(s.fps, this.fpsMax);
    const t = Math.floor(s.numFrames / interval);
    const area = s.height * s.width;
    const big = this.resolutions.filter((r) => area >= this.#pixels.get(r)! * 0.8);
    if (big.length === 0) {
      const r = this.resolutions[this.resolutions.length - 1]!;
      return {
        reason: "wrong-size",
        detail: `${s.width}x${s.height} = ${area} px < 80% of ${r} (${
          this.#pixels.get(r)! * 0.8
        } px)`,
      };
    }
    const fits = big.some((r) =>
      this.#frames.get(r)!.some(([k]) => (t === 1 ? k === 1 : k !== 1 && k <= t))
    );
    if (!fits) {
      const keys = big.flatMap((r) => this.#frames.get(r)!.map(([k]) => k));
      const minVideo = Math.min(...keys.filter((k) => k !== 1));
      const detail = t === 1
        ? `a single frame, and no image bucket (frames = 1) at ${big.join(", ")}`
        : `${s.numFrames} frames at interval ${interval} give ${t} < ${
          Number.isFinite(minVideo) ? minVideo : "any bucket's"
        } frames`;
      return { reason: "too-short", detail };
    }
    return { reason: "no-bucket", detail: "excluded by the bucket probabilities this epoch" };
  }
}

/**
 * `config` with its single resolution renamed to `resolution` (e.g. the HCAE frame table at
 * `256px` for a small experiment). Throws when the config has several resolutions.
 */
export function withResolution(config: BucketConfig, resolution: string): BucketConfig {
  const names = Object.keys(config);
  if (names.length !== 1) {
    throw new Error(
      `cannot move a bucket config with ${names.length} resolutions (${names.join(", ")}) to ` +
        `${resolution}: give a config file with the resolutions you want`,
    );
  }
  pixelsOfResolution(resolution);
  return { [resolution]: config[names[0]!]! };
}

/** A preset by name, or a JSON file path holding a bucket config. */
export async function loadBucketConfig(nameOrPath: string): Promise<BucketConfig> {
  const preset = BUCKET_PRESETS[nameOrPath];
  if (preset) return preset;
  if (!nameOrPath.endsWith(".json")) {
    throw new Error(
      `unknown bucket preset '${nameOrPath}': use one of ${
        Object.keys(BUCKET_PRESETS).join(", ")
      } or a .json file`,
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(nameOrPath);
  } catch (e) {
    throw new Error(`cannot read bucket config '${nameOrPath}': ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as BucketConfig;
  } catch (e) {
    throw new Error(`bucket config '${nameOrPath}' is not valid JSON: ${(e as Error).message}`);
  }
}
