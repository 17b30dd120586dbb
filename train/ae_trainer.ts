/**
 * Training Kino's own Video DC-AE with a pixel reconstruction loss (`deno task train-ae`).
 *
 * One update, written out (see {@linkcode AeTrainer.step}):
 *
 * ```
 * x = crop(video, window drawn from stream (seed, step))      # optional random crop
 * y = decode(encode(x))                                       # whole tensors, no tiling
 * loss = mean((y − x)²) + l1 · mean(|y − x|)                  # l1 = 0 by default
 *        (both terms weighted per pixel by 1 + fgWeight on foreground pixels when fgWeight > 0)
 * backward(loss); AdamW (lr 5e-5, β (0.9, 0.98), eps 1e-8, wd 0, global grad-norm clip 1.0)
 * read back [loss, mse, l1, per-sample MSE of clamp(y, −1, 1), grad norm] together   # one wait
 * ```
 *
 * The optimizer constants are the reference's AE recipe (the `vae_dc_ae` AdamW case of the
 * fixtures). The reference also trains with a perceptual (LPIPS) and an adversarial loss; Kino
 * trains with pixel losses only (MSE, plus an optional L1 term), which gives a sharp-enough
 * autoencoder for small synthetic data but blurrier textures than the released model.
 *
 * Checkpoints reuse `train/checkpoint.ts` (atomic step folders, `latest`, pruning): the step
 * folder's `model.safetensors` holds the DC-AE weights under their checkpoint keys (loadable by
 * `DcAe.params.load` as is) and `state.safetensors` the AdamW moments and an
 * {@linkcode AeTrainerState} (a `TrainerState` whose `options.kind` is `"dc-ae"` and whose
 * `modelConfig` is the {@linkcode DcAeConfig}). Random crops draw from a stream keyed by
 * (seed, step), so the step count is the whole RNG state and a resumed run sees the same crops.
 *
 * This module also holds {@linkcode openAeDataset}, the fixed-size clip loader of the AE trainer
 * (every clip resized-and-cropped to `size x size`, `frames` frames), built on `train/data`.
 *
 * @module
 */
import { backward } from "../engine/autograd.ts";
import { fromData, viewOf } from "../engine/graph.ts";
import { AdamW } from "../engine/optim.ts";
import { runtime } from "../engine/runtime.ts";
import { saveSafetensors, type TensorToWrite } from "../engine/safetensors.ts";
import { fmtShape } from "../engine/shape.ts";
import { noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { abs, add, clamp, gt, mul, square, sub } from "../engine/ops/elementwise.ts";
import { contiguous, readAll, slice } from "../engine/ops/movement.ts";
import { mean, sum } from "../engine/ops/reduce.ts";
import type { DcAeConfig } from "../models/dc_ae/config.ts";
import type { DcAe } from "../models/dc_ae/model.ts";
import type { MMDiTConfig } from "../models/mmdit/config.ts";
import {
  type CheckpointData,
  checkpointState,
  MODEL_CONFIG_KEY,
  readCheckpoint,
  resolveResume,
  type TrainerState,
  writeCheckpoint,
} from "./checkpoint.ts";
import type { Cursor } from "./data/batches.ts";
import type { BucketInfo } from "./data/buckets.ts";
import { type Dataset, type DatasetReport, type DatasetRow, openDataset } from "./data/dataset.ts";
import { CorruptMediaError } from "./data/media.ts";
import { readMap } from "./trainer.ts";
import { MetricsFiles } from "./metrics.ts";
import { Rng } from "./data/rng.ts";
import { TooShortError } from "./data/sampling.ts";

// ---------------------------------------------------------------- options

/**
 * Stream tags of the AE trainer's randomness (distinct from `train/data`'s 1-3): the per-step
 * crop window, keyed (seed, step), and the per-epoch clip order, keyed (seed, epoch).
 */
export const AE_STREAM = { crop: 11, order: 12, preloadCrop: 13 } as const;

/** A random crop applied to every batch (the AE is convolutional, so it trains on crops). */
export interface AeCrop {
  /**
   * Frames of the crop (default: all): 1, or a multiple of the temporal factor giving at least
   * two latent frames.
   */
  frames?: number;
  /**
   * Side of the square spatial crop in pixels (default: the whole frame), a multiple of the
   * spatial factor.
   */
  size?: number;
}

/** Options of {@linkcode AeTrainer}; defaults are the reference AE recipe's AdamW. */
export interface AeTrainerOptions {
  /** Learning rate; default 5e-5. */
  lr?: number;
  /** Default [0.9, 0.98]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay; default 0. */
  weightDecay?: number;
  /** Global grad-norm clip; default 1.0; null disables clipping (the norm is still reported). */
  maxGradNorm?: number | null;
  /** Weight of the L1 term added to the MSE; default 0 (MSE only). */
  l1?: number;
  /**
   * Extra weight of foreground pixels in both loss terms; default 0 (every pixel weighs 1). A
   * pixel is foreground when its colour differs from its frame's mean colour by more than
   * {@linkcode FG_THRESHOLD} (sum over RGB of |x − mean|, x in [−1, 1]); it then weighs
   * 1 + fgWeight. Useful when small objects on plain backgrounds carry what matters.
   */
  fgWeight?: number;
  /** Random crop of each batch (window drawn per step from the seeded stream); default none. */
  crop?: AeCrop | null;
  /** Seed of the crop stream; default 0. */
  seed?: number;
  /** Receives every update's {@linkcode AeStepMetrics} when given. */
  metrics?: AeMetricsWriter;
}

/** The options with defaults filled in (saved in checkpoints; `kind` marks AE checkpoints). */
export interface ResolvedAeTrainerOptions {
  /** Marks AE checkpoints. */
  kind: "dc-ae";
  /** Learning rate. */
  lr: number;
  /** AdamW `[β1, β2]`. */
  betas: [number, number];
  /** AdamW epsilon. */
  eps: number;
  /** Decoupled weight decay. */
  weightDecay: number;
  /** Global grad-norm clip, or null for none. */
  maxGradNorm: number | null;
  /** Weight of the L1 term added to the MSE. */
  l1: number;
  /** Extra weight of foreground pixels (0: none). Absent in checkpoints of older runs. */
  fgWeight?: number;
  /** Random crop of each batch, or null for none. */
  crop: AeCrop | null;
  /** Seed of the crop stream. */
  seed: number;
}

/** The checkpoint state of an AE run: `TrainerState` with the AE's options and model config. */
export interface AeTrainerState extends Omit<TrainerState, "options" | "modelConfig"> {
  /** The resolved AE trainer options. */
  options: ResolvedAeTrainerOptions;
  /** The DC-AE configuration trained. */
  modelConfig: DcAeConfig;
}

function resolveOptions(o: AeTrainerOptions): ResolvedAeTrainerOptions {
  const r: ResolvedAeTrainerOptions = {
    kind: "dc-ae",
    lr: o.lr ?? 5e-5,
    betas: o.betas ?? [0.9, 0.98],
    eps: o.eps ?? 1e-8,
    weightDecay: o.weightDecay ?? 0,
    maxGradNorm: o.maxGradNorm === undefined ? 1.0 : o.maxGradNorm,
    l1: o.l1 ?? 0,
    ...(o.fgWeight ? { fgWeight: o.fgWeight } : {}),
    crop: o.crop ? { ...o.crop } : null,
    seed: o.seed ?? 0,
  };
  if (!(r.lr > 0)) throw new RangeError(`AeTrainer: lr ${r.lr} must be > 0`);
  if (!(r.l1 >= 0)) throw new RangeError(`AeTrainer: l1 weight ${r.l1} must be >= 0`);
  if (!((r.fgWeight ?? 0) >= 0)) {
    throw new RangeError(`AeTrainer: foreground weight ${r.fgWeight} must be >= 0`);
  }
  if (!(r.weightDecay >= 0)) {
    throw new RangeError(`AeTrainer: weightDecay ${r.weightDecay} must be >= 0`);
  }
  if (r.maxGradNorm !== null && !(r.maxGradNorm > 0)) {
    throw new RangeError(`AeTrainer: maxGradNorm ${r.maxGradNorm} must be > 0 (or null: no clip)`);
  }
  if (!(Number.isSafeInteger(r.seed) && r.seed >= 0)) {
    throw new RangeError(`AeTrainer: seed ${r.seed} must be a non-negative integer`);
  }
  for (const k of ["frames", "size"] as const) {
    const v = r.crop?.[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) {
      throw new RangeError(`AeTrainer: crop.${k} ${v} must be a positive integer`);
    }
  }
  return r;
}

// ---------------------------------------------------------------- shapes and crops

/**
 * Why the AE cannot reconstruct clips of `frames` frames and `height x width` pixels at the same
 * size, or null when it can: frames must be 1 or a multiple of the temporal factor with at
 * least two latent frames (a single latent frame decodes to one frame), sides multiples of the
 * spatial factor.
 */
export function reconstructionProblem(
  ae: DcAe,
  frames: number,
  height: number,
  width: number,
): string | null {
  const tf = ae.temporalFactor;
  const s = ae.spatialFactor;
  const okT = frames === 1 || tf === 1 || (frames % tf === 0 && frames / tf >= 2);
  const okS = height >= s && width >= s && height % s === 0 && width % s === 0;
  if (okT && okS) return null;
  const what: string[] = [];
  if (!okT) {
    what.push(
      `${frames} frames (use 1${tf > 1 ? ` or ${2 * tf}, ${3 * tf}, ${4 * tf}, ...` : ""}` +
        `${frames === tf ? `; ${tf} frames give one latent frame, which decodes to 1 frame` : ""})`,
    );
  }
  if (!okS) what.push(`${height}x${width} pixels (sides must be multiples of ${s})`);
  return `the ${ae.config.name} DC-AE cannot reconstruct ${what.join(" and ")}`;
}

/** A crop window: start frame/row/column and extents. */
export interface CropWindow {
  t0: number;
  y0: number;
  x0: number;
  frames: number;
  height: number;
  width: number;
}

/**
 * The crop window of update `step` for a batch of shape `[B, C, T, H, W]`: one window for the
 * whole batch, starts uniform over the valid positions, drawn from the stream
 * `(AE_STREAM.crop, seed, step)`.
 */
export function cropWindow(
  shape: readonly number[],
  crop: AeCrop | null,
  seed: number,
  step: number,
): CropWindow {
  const [, , T, H, W] = shape as [number, number, number, number, number];
  const f = crop?.frames ?? T;
  const s = crop?.size;
  const h = s ?? H;
  const w = s ?? W;
  if (f > T || h > H || w > W) {
    throw new RangeError(
      `AeTrainer: crop ${f} frames x ${h}x${w} does not fit the batch ${fmtShape(shape)}; ` +
        `load larger clips or use a smaller crop`,
    );
  }
  if (!crop || (f === T && h === H && w === W)) {
    return { t0: 0, y0: 0, x0: 0, frames: T, height: H, width: W };
  }
  const g = Rng.of(AE_STREAM.crop, seed, step);
  const t0 = g.randint(0, T - f);
  const y0 = g.randint(0, H - h);
  const x0 = g.randint(0, W - w);
  return { t0, y0, x0, frames: f, height: h, width: w };
}

/** Copies window `w` out of a host video `[B, C, T, H, W]`. */
export function cropHost(
  video: Float32Array,
  shape: readonly number[],
  w: CropWindow,
): Float32Array {
  const [B, C, T, H, W] = shape as [number, number, number, number, number];
  const out = new Float32Array(B * C * w.frames * w.height * w.width);
  let o = 0;
  for (let bc = 0; bc < B * C; bc++) {
    for (let t = 0; t < w.frames; t++) {
      for (let y = 0; y < w.height; y++) {
        const src = ((bc * T + w.t0 + t) * H + w.y0 + y) * W + w.x0;
        out.set(video.subarray(src, src + w.width), o);
        o += w.width;
      }
    }
  }
  return out;
}

/** Colour distance from the frame's mean above which a pixel counts as foreground (fgWeight). */
export const FG_THRESHOLD = 0.3;

/** PSNR (dB) of an MSE between videos in [-1, 1] (peak-to-peak 2): `10·log10(4 / mse)`. */
export function psnrOfMse(mse: number): number {
  return mse > 0 ? 10 * Math.log10(4 / mse) : Infinity;
}

// ---------------------------------------------------------------- metrics

/** One AE update's record (also what {@linkcode AeTrainer.step} returns). */
export interface AeStepMetrics {
  /** Updates completed, counting this one. */
  step: number;
  /** The optimised loss: `mse + l1Weight·l1`. */
  loss: number;
  /** Mean squared error of the reconstruction (values in [-1, 1]). */
  mse: number;
  /** Mean absolute error of the reconstruction. */
  l1: number;
  /**
   * Mean over the batch of each clip's PSNR (dB, peak-to-peak 2) between the input and the
   * reconstruction clamped to [-1, 1].
   */
  psnr: number;
  /** Global L2 gradient norm before clipping. */
  gradNorm: number;
  /** Learning rate used by the update. */
  lr: number;
  /** Clips in the update. */
  samples: number;
  /** Frames of the trained clips (after cropping). */
  frames: number;
  /** Height of the trained clips in pixels (after cropping). */
  height: number;
  /** Width of the trained clips in pixels (after cropping). */
  width: number;
  /** Wall time of the update in seconds (recording + GPU + the one read-back). */
  seconds: number;
  /** Clips per second of wall time. */
  samplesPerSec: number;
  /** GPU bytes held by live tensors after the update. */
  memInUse: number;
  /** Highest GPU bytes in use during the update. */
  memPeak: number;
}

/** CSV columns of {@linkcode AeMetricsWriter}, in order. */
export const AE_CSV_COLUMNS: readonly string[] = [
  "step",
  "loss",
  "mse",
  "l1",
  "psnr",
  "grad_norm",
  "lr",
  "samples",
  "frames",
  "height",
  "width",
  "seconds",
  "samples_per_s",
  "mem_in_use_mb",
  "mem_peak_mb",
];

function flattenAe(m: AeStepMetrics): Record<string, number | null> {
  const num = (x: number) => (Number.isFinite(x) ? x : null);
  const MB = 1024 * 1024;
  return {
    step: m.step,
    loss: num(m.loss),
    mse: num(m.mse),
    l1: num(m.l1),
    psnr: num(m.psnr),
    grad_norm: num(m.gradNorm),
    lr: m.lr,
    samples: m.samples,
    frames: m.frames,
    height: m.height,
    width: m.width,
    seconds: num(m.seconds),
    samples_per_s: num(m.samplesPerSec),
    mem_in_use_mb: m.memInUse / MB,
    mem_peak_mb: m.memPeak / MB,
  };
}

/** Appends {@linkcode AeStepMetrics} to `<dir>/metrics.jsonl` and `<dir>/metrics.csv`. */
export class AeMetricsWriter {
  private constructor(private readonly files: MetricsFiles) {}

  /** Opens the two files in `dir`; resuming at `resumeStep` drops later records. */
  static async open(dir: string, options: { resumeStep?: number } = {}): Promise<AeMetricsWriter> {
    return new AeMetricsWriter(await MetricsFiles.open(dir, AE_CSV_COLUMNS, options));
  }

  /** Path of `metrics.jsonl`. */
  get jsonlPath(): string {
    return this.files.jsonlPath;
  }

  /** Path of `metrics.csv`. */
  get csvPath(): string {
    return this.files.csvPath;
  }

  /** Appends one record to both files. */
  write(m: AeStepMetrics): Promise<void> {
    return this.files.write(flattenAe(m));
  }
}

// ---------------------------------------------------------------- trainer

/** A video on the CPU: `[B, C, T, H, W]` values in [-1, 1] (a `train/data` batch fits). */
export interface HostVideo {
  /** Values `[B, C, T, H, W]`, row-major, in [-1, 1]. */
  video: Float32Array;
  /** The shape of `video`, `[B, C, T, H, W]`. */
  shape: readonly number[];
}

/** What {@linkcode AeTrainer.restore} and {@linkcode AeTrainer.resume} report. */
export interface AeRestoreInfo {
  /** Updates completed at the checkpoint. */
  step: number;
  /** The data cursor saved with it. */
  dataCursor: unknown;
  /** Options that differ from the checkpoint's (resuming is exact only when this is empty). */
  differences: string[];
  /** The step folder (resume only). */
  dir?: string;
}

/** Storage type of an exported weights file. */
export type ExportDType = "f32" | "f16" | "bf16";

/** Metadata key of the training step in exported weights. */
export const EXPORT_STEP_KEY = "kino_ae_step";

/** The architecture part of a config (what must match to load weights into a model). */
function architecture(c: DcAeConfig): string {
  return JSON.stringify({
    inChannels: c.inChannels,
    latentChannels: c.latentChannels,
    encoder: c.encoder,
    decoder: c.decoder,
    evit: c.evit,
    scalingFactor: c.scalingFactor,
  });
}

/**
 * Trains a {@linkcode DcAe} to reconstruct its input (see the module doc). The model's
 * parameters must be f32 and initialised (`ae.params.initialize(seed)`) or loaded before
 * construction: the optimizer moves them into its arena.
 *
 * @example
 * ```ts ignore
 * const ae = new DcAe(dcAePreset("small"));
 * ae.params.initialize(0);
 * const tr = new AeTrainer(ae, { crop: { size: 32 } });
 * await tr.resume("latest", "outputs/ae");
 * for await (const b of ds.batches()) {
 *   const r = await tr.step(b);               // {loss, psnr, gradNorm, lr, ...}
 *   if (tr.steps % 500 === 0) await tr.save("outputs/ae", { dataCursor: b.cursor });
 * }
 * await tr.exportWeights("dc_ae.safetensors", "f16");
 * ```
 */
export class AeTrainer {
  /** The options with defaults filled in. */
  readonly options: ResolvedAeTrainerOptions;
  /** The optimizer; it holds the DC-AE's parameters in its arena. */
  readonly opt: AdamW;
  /** Optimiser updates completed. */
  steps = 0;
  private readonly metrics: AeMetricsWriter | null;
  private disposed = false;

  /**
   * Checks the model (f32, initialised) and the crop, then moves the parameters into a new AdamW.
   */
  constructor(readonly ae: DcAe, options: AeTrainerOptions = {}) {
    this.options = resolveOptions(options);
    const o = this.options;
    if (!ae.params.ready) {
      throw new Error(
        `AeTrainer: the DC-AE's parameters have no values; call ae.params.initialize(seed) or ` +
          `load weights before building the trainer`,
      );
    }
    if (ae.params.storage !== "f32") {
      throw new TypeError(
        `AeTrainer: training needs f32 parameters (master weights); build the DcAe with ` +
          `storage "f32", not "${ae.params.storage}"`,
      );
    }
    const c = o.crop;
    if (c) {
      const s = ae.spatialFactor;
      if (c.size !== undefined && c.size % s !== 0) {
        throw new RangeError(
          `AeTrainer: crop.size ${c.size} must be a multiple of ${s} (the ${ae.config.name} ` +
            `model's spatial factor)`,
        );
      }
      if (c.frames !== undefined) {
        const why = reconstructionProblem(ae, c.frames, s, s);
        if (why) throw new RangeError(`AeTrainer: crop.frames: ${why}`);
      }
    }
    this.opt = new AdamW(ae.params.list().map((s) => ae.params.get(s.name)), {
      lr: o.lr,
      betas: o.betas,
      eps: o.eps,
      weightDecay: o.weightDecay,
      maxGradNorm: o.maxGradNorm ?? undefined,
      trackGradNorm: true,
    });
    this.metrics = options.metrics ?? null;
  }

  /** Throws if the trainer was disposed. */
  private check(op: string): void {
    if (this.disposed) throw new Error(`AeTrainer.${op}: the trainer was disposed`);
  }

  /** Checks a batch shape and returns the crop window of the next update. */
  private window(shape: readonly number[]): CropWindow {
    if (shape.length !== 5 || shape[1] !== this.ae.config.inChannels || shape.some((d) => d < 1)) {
      throw new RangeError(
        `AeTrainer: expected a video [B, ${this.ae.config.inChannels}, T, H, W], got ` +
          fmtShape(shape),
      );
    }
    const w = cropWindow(shape, this.options.crop, this.options.seed, this.steps);
    const why = reconstructionProblem(this.ae, w.frames, w.height, w.width);
    if (why) throw new RangeError(`AeTrainer: ${why}; crop or resize the clips`);
    return w;
  }

  /** The (cropped) input as a tensor owned by the current scope. */
  private input(video: Tensor | HostVideo, w: CropWindow): Tensor {
    if ("video" in video) {
      const [B, C] = video.shape as [number, number];
      const data = this.options.crop ? cropHost(video.video, video.shape, w) : video.video;
      if (data.length !== B * C * w.frames * w.height * w.width) {
        throw new RangeError(
          `AeTrainer: ${video.video.length} values for a video ${fmtShape(video.shape)}`,
        );
      }
      return fromData(data, [B, C, w.frames, w.height, w.width], "f32");
    }
    const [B, C] = video.shape as [number, number];
    return contiguous(
      slice(video, [0, 0, w.t0, w.y0, w.x0], [
        B,
        C,
        w.t0 + w.frames,
        w.y0 + w.height,
        w.x0 + w.width,
      ]),
    );
  }

  /**
   * One update on a batch `[B, 3, T, H, W]` in [-1, 1] (a tensor, or host data such as a
   * `train/data` batch): crop, encode, decode, loss, backward, clip + AdamW; one read-back.
   * The returned loss and PSNR are those of the weights before the update.
   */
  async step(video: Tensor | HostVideo): Promise<AeStepMetrics> {
    this.check("step");
    const rt = runtime();
    const start = performance.now();
    const w = this.window(video.shape);
    rt.pool.resetPeak();
    this.opt.zeroGrad();
    const lr = this.options.lr;
    this.opt.lr = lr;
    let outs: Tensor[] = [];
    let gn: Tensor | null = null;
    let vals: Float32Array[];
    try {
      outs = tidy(() => {
        const r = this.losses(this.input(video, w));
        backward(r[0]!);
        return r;
      });
      this.opt.step();
      gn = this.opt.lastGradNorm()!;
      vals = await readAll([...outs, gn]);
    } finally {
      for (const t of outs) t.dispose();
      gn?.dispose();
      this.opt.zeroGrad();
    }
    this.steps++;
    const seconds = (performance.now() - start) / 1000;
    const mem = rt.pool.stats();
    const samples = video.shape[0]!;
    const result: AeStepMetrics = {
      step: this.steps,
      ...this.summarise(vals),
      gradNorm: vals[4]![0]!,
      lr,
      samples,
      frames: w.frames,
      height: w.height,
      width: w.width,
      seconds,
      samplesPerSec: samples / seconds,
      memInUse: mem.inUse,
      memPeak: mem.peakInUse,
    };
    if (this.metrics) await this.metrics.write(result);
    return result;
  }

  /**
   * `[loss, mse, l1, per-sample clamped MSE]` of reconstructing `x` (recorded, not realized).
   * Only the loss carries gradient information.
   */
  private losses(x: Tensor): Tensor[] {
    const ae = this.ae;
    const y = ae.decode(ae.encode(x, { tiled: false }), { tiled: false });
    if (y.shape.join() !== x.shape.join()) {
      throw new RangeError(
        `AeTrainer: the reconstruction ${fmtShape(y.shape)} differs from the input ` +
          `${fmtShape(x.shape)}`,
      );
    }
    const d = sub(y, x);
    const mse = mean(square(d));
    const l1w = this.options.l1;
    const l1 = l1w > 0 ? mean(abs(d)) : noGrad(() => mean(abs(d)));
    const fg = this.options.fgWeight ?? 0;
    let loss: Tensor;
    if (fg > 0) {
      // per-pixel weight 1 + fg·[Σ_c |x − frame mean| > threshold], broadcast over channels
      const w = noGrad(() => {
        const dev = sum(abs(sub(x, mean(x, [3, 4], true))), 1, true);
        return add(mul(gt(dev, FG_THRESHOLD), fg), 1);
      });
      const wmse = mean(mul(square(d), w));
      loss = l1w > 0 ? add(wmse, mul(mean(mul(abs(d), w)), l1w)) : wmse;
    } else loss = l1w > 0 ? add(mse, mul(l1, l1w)) : mse;
    const per = noGrad(() => mean(square(sub(clamp(y, -1, 1), x)), [1, 2, 3, 4]));
    return [loss, mse, l1, per];
  }

  /** Loss, MSE, L1 and mean PSNR from the read-back of `[loss, mse, l1, per-clip mse]`. */
  private summarise(vals: Float32Array[]): Pick<AeStepMetrics, "loss" | "mse" | "l1" | "psnr"> {
    const per = vals[3]!;
    let psnr = 0;
    for (const m of per) psnr += psnrOfMse(m);
    return { loss: vals[0]![0]!, mse: vals[1]![0]!, l1: vals[2]![0]!, psnr: psnr / per.length };
  }

  /**
   * The loss and PSNR of reconstructing a whole batch with the current weights, without
   * training (no crop, no gradients); one read-back.
   */
  async evaluate(
    video: Tensor | HostVideo,
  ): Promise<Pick<AeStepMetrics, "loss" | "mse" | "l1" | "psnr">> {
    this.check("evaluate");
    const shape = video.shape;
    const why = reconstructionProblem(this.ae, shape[2]!, shape[3]!, shape[4]!);
    if (why) throw new RangeError(`AeTrainer.evaluate: ${why}`);
    const outs = tidy(() =>
      noGrad(() => this.losses("video" in video ? fromData(video.video, [...shape], "f32") : video))
    );
    try {
      return this.summarise(await readAll(outs));
    } finally {
      for (const t of outs) t.dispose();
    }
  }

  /** The scalar state saved in checkpoints. */
  state(dataCursor: unknown = null): AeTrainerState {
    return {
      format: "kino-trainer",
      version: 1,
      step: this.steps,
      stream: this.steps,
      seed: this.options.seed,
      lrPosition: this.steps,
      dataCursor,
      options: structuredClone(this.options),
      modelConfig: structuredClone(this.ae.config),
      savedAt: new Date().toISOString(),
    };
  }

  /** Copies weights, optimizer moments and state to the CPU. */
  async snapshot(dataCursor: unknown = null): Promise<CheckpointData> {
    this.check("snapshot");
    const names = this.ae.params.list().map((s) => s.name);
    const model = await readMap(names.map((n) => [n, this.ae.params.get(n)]));
    const os = this.opt.stateDict();
    try {
      const optimizer = await readMap(Object.entries(os));
      return { model, optimizer, ema: null, state: toTrainerState(this.state(dataCursor)) };
    } finally {
      for (const t of Object.values(os)) t.dispose();
    }
  }

  /** Loads a snapshot (weights, moments, step); returns the data cursor and differences. */
  async restore(data: CheckpointData): Promise<AeRestoreInfo> {
    this.check("restore");
    const st = data.state as unknown as AeTrainerState;
    if (st.options?.kind !== "dc-ae") {
      throw new Error(
        `AeTrainer.restore: the checkpoint was not written by the AE trainer (it holds ` +
          `${st.options?.kind ?? "MMDiT"} training state); resume from a train-ae output folder`,
      );
    }
    if (architecture(st.modelConfig) !== architecture(this.ae.config)) {
      throw new Error(
        `AeTrainer.restore: the checkpoint's DC-AE (${st.modelConfig.name}) is another ` +
          `architecture than this model (${this.ae.config.name}); resume with the same ` +
          `--preset/--config, or leave them out to use the checkpoint's`,
      );
    }
    const rt = runtime();
    const specs = this.ae.params.list();
    const bad: string[] = [];
    for (const s of specs) {
      const h = data.model.get(s.name);
      if (!h) bad.push(`${s.name} missing`);
      else if (h.shape.join() !== s.shape.join()) {
        bad.push(`${s.name} is [${h.shape}], the model has [${s.shape}]`);
      }
    }
    if (bad.length) {
      throw new Error(
        `AeTrainer.restore: the checkpoint does not match the model (${bad.slice(0, 5).join("; ")}${
          bad.length > 5 ? `; ${bad.length - 5} more` : ""
        })`,
      );
    }
    for (const s of specs) {
      const v = viewOf(this.ae.params.get(s.name));
      rt.write(v.buffer, v.offset * 4, data.model.get(s.name)!.data);
    }
    const os: Record<string, Tensor> = {};
    for (const [k, h] of data.optimizer) os[k] = fromData(h.data, h.shape, "f32");
    try {
      await this.opt.loadStateDict(os);
    } finally {
      for (const t of Object.values(os)) t.dispose();
    }
    if (this.opt.stepCount !== st.step) {
      throw new Error(
        `AeTrainer.restore: the optimizer state has step ${this.opt.stepCount}, the trainer ` +
          `state ${st.step}; the checkpoint is inconsistent`,
      );
    }
    this.steps = st.step;
    const differences: string[] = [];
    const now = this.options as unknown as Record<string, unknown>;
    const saved = st.options as unknown as Record<string, unknown>;
    for (const k of new Set([...Object.keys(saved), ...Object.keys(now)])) {
      const x = JSON.stringify(saved[k]);
      const y = JSON.stringify(now[k]);
      if (x !== y) differences.push(`${k}: saved ${x}, now ${y}`);
    }
    return { step: st.step, dataCursor: st.dataCursor, differences };
  }

  /** Writes a checkpoint of the current state to `<outDir>/checkpoints/step_<N>/`. */
  async save(
    outDir: string,
    options: { dataCursor?: unknown; keepLast?: number } = {},
  ): Promise<string> {
    const data = await this.snapshot(options.dataCursor ?? null);
    return await writeCheckpoint(outDir, data, { keepLast: options.keepLast });
  }

  /**
   * Resumes from `"latest"` (in `outDir`) or a checkpoint path; null (fresh start) when
   * `"latest"` finds none.
   */
  async resume(spec: string, outDir?: string): Promise<AeRestoreInfo | null> {
    const dir = await resolveResume(spec, outDir);
    if (!dir) return null;
    const info = await this.restore(await readCheckpoint(dir));
    return { ...info, dir };
  }

  /** Writes the current weights for inference (see {@linkcode saveAeWeights}). */
  async exportWeights(path: string, dtype: ExportDType = "f32"): Promise<void> {
    this.check("exportWeights");
    await saveAeWeights(this.ae, path, { dtype, step: this.steps });
  }

  /** Frees the optimizer (the model's parameters stay). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.opt.dispose();
  }
}

function toTrainerState(s: AeTrainerState): TrainerState {
  // checkpoint.ts types the state for the MMDiT; its fields are generic JSON
  return s as unknown as TrainerState & { modelConfig: MMDiTConfig };
}

/**
 * The DC-AE configuration saved in a checkpoint step folder by the AE trainer, or null when
 * the folder holds no complete AE checkpoint.
 */
export async function aeCheckpointConfig(dir: string): Promise<DcAeConfig | null> {
  const st = (await checkpointState(dir)) as unknown as AeTrainerState | null;
  return st?.options?.kind === "dc-ae" ? st.modelConfig : null;
}

/** The seed a train-ae checkpoint was trained with (its data order and crops), or null. */
export async function aeCheckpointSeed(dir: string): Promise<number | null> {
  const st = (await checkpointState(dir)) as unknown as AeTrainerState | null;
  return st?.options?.kind === "dc-ae" && typeof st.options.seed === "number"
    ? st.options.seed
    : null;
}

/**
 * Writes a DC-AE's weights as a plain safetensors file under the checkpoint keys
 * (`encoder.…`, `decoder.…`), in f32, f16 or bf16, with the model configuration in the
 * metadata (`kino_model_config`) and the training step (`kino_ae_step`). `DcAe.params.load`
 * reads it as is (f16/bf16 are widened on load; only f32 reproduces the weights exactly).
 */
export async function saveAeWeights(
  ae: DcAe,
  path: string,
  options: { dtype?: ExportDType; step?: number } = {},
): Promise<void> {
  const dtype = options.dtype ?? "f32";
  const code = ({ f32: "F32", f16: "F16", bf16: "BF16" } as const)[dtype];
  if (!code) throw new RangeError(`saveAeWeights: dtype must be f32, f16 or bf16, got ${dtype}`);
  const names = ae.params.list().map((s) => s.name);
  const host = await readMap(names.map((n) => [n, ae.params.get(n)]));
  const out = new Map<string, TensorToWrite>();
  for (const [k, t] of host) out.set(k, { dtype: code, shape: t.shape, data: t.data });
  const meta: Record<string, string> = {
    format: "pt",
    [MODEL_CONFIG_KEY]: JSON.stringify(ae.config),
  };
  if (options.step !== undefined) meta[EXPORT_STEP_KEY] = String(options.step);
  await saveSafetensors(path, out, meta);
}

// ---------------------------------------------------------------- fixed-size clip loader

/** Options of {@linkcode openAeDataset}. */
export interface AeDatasetOptions {
  /** Frames per clip (a temporal random crop of each video; 1 for images). */
  frames: number;
  /** Side of the square frames: each clip is resized to fill it and centre-cropped. */
  size: number;
  /** Clips per batch (the last incomplete batch of an epoch is dropped). */
  batchSize: number;
  /** Seed of the clip order and the temporal crops; default 42. */
  seed?: number;
  /** FPS cap: faster videos skip frames (default 24, as the reference). */
  fpsMax?: number;
  /** Parallel ffprobe/ffmpeg processes (default 4). */
  concurrency?: number;
  /** Probe every file with ffprobe at opening (finds corrupt files early). */
  verify?: boolean;
  /** Where skip messages go (default console.warn). */
  log?: (message: string) => void;
  /**
   * Decode every clip once into host memory (all its frames, resized and cropped) and take the
   * per-epoch temporal crops from there: no ffmpeg per step. Costs `rows·T·3·size²·4` bytes
   * (2000 clips of 16 frames at 64 px: 1.6 GB). Crops are drawn per (seed, epoch, row).
   */
  preload?: boolean;
}

/** A batch of the AE loader: `[B, 3, frames, size, size]` in [-1, 1]. */
export interface AeBatch extends HostVideo {
  shape: [number, number, number, number, number];
  /** Data-row numbers of the clips. */
  indices: number[];
  /** Clips of the batch that failed to load (dropped, each logged). */
  failed: { index: number; path: string; reason: string; detail: string }[];
  /** Resume here to continue after this batch. */
  cursor: Cursor;
}

/**
 * The AE trainer's data: the usable rows of a dataset CSV, all loaded at one fixed size. Row
 * checks and skip reasons come from `train/data`'s `openDataset` (malformed, missing-file,
 * corrupt, too-short: fewer than `frames` frames, wrong-size: less than 80 % of `size²`
 * pixels); samples are loaded by `Dataset.loadSampleInto` (temporal random crop keyed (seed,
 * epoch, row), bilinear fill-and-centre-crop). The epoch order is a permutation drawn from
 * `(AE_STREAM.order, seed, epoch)`; batches are consecutive runs of it.
 */
export class AeDataset {
  /** Decoded clips by row index (`[3, T, size, size]` in [-1, 1]), when preloaded. */
  readonly #clips = new Map<number, { t: number; data: Float32Array }>();

  /** Wraps an opened dataset (use {@linkcode openAeDataset}, which opens it for these sizes). */
  constructor(
    readonly dataset: Dataset,
    readonly frames: number,
    readonly size: number,
    readonly batchSize: number,
  ) {}

  /** Whether the clips are in host memory ({@linkcode AeDatasetOptions.preload}). */
  get preloaded(): boolean {
    return this.#clips.size > 0;
  }

  /**
   * Decodes every usable row once (all its frames, resized to fill `size` and centre-cropped);
   * rows that fail are logged and left to the streaming path (which skips them again).
   */
  async preload(onProgress?: (done: number, total: number) => void): Promise<void> {
    const rows = this.rows;
    let next = 0, done = 0;
    const worker = async () => {
      while (next < rows.length) {
        const row = rows[next++]!;
        const t = row.isImage ? 1 : row.numFrames;
        if (!(t >= this.frames)) continue;
        const bucket = { ...this.bucket(), frames: t, key: `${this.size}px/${t}/1:1` };
        const plane = t * this.size * this.size;
        const f32 = new Float32Array(3 * plane);
        try {
          await this.dataset.loadSampleInto(row, bucket, 0, f32, 0);
        } catch (e) {
          const { reason, detail } = classify(e);
          this.dataset.log(`not preloaded: ${row.path} (line ${row.line}): ${reason}: ${detail}`);
          continue;
        }
        this.#clips.set(row.index, { t, data: f32 });
        onProgress?.(++done, rows.length);
      }
    };
    const lanes = Math.max(1, Math.min(this.dataset.concurrency, rows.length));
    await Promise.all(Array.from({ length: lanes }, worker));
  }

  /** Writes a preloaded clip's temporal crop for `epoch` into `out` at `offset` ([3, T, H, W]). */
  #fromMemory(index: number, epoch: number, out: Float32Array, offset: number): boolean {
    const clip = this.#clips.get(index);
    if (!clip) return false;
    const start = Rng.of(AE_STREAM.preloadCrop, this.seed, epoch, index).randint(
      0,
      clip.t - this.frames,
    );
    const hw = this.size * this.size;
    const plane = this.frames * hw;
    for (let c = 0; c < 3; c++) {
      const from = c * clip.t * hw + start * hw;
      out.set(clip.data.subarray(from, from + plane), offset + c * plane);
    }
    return true;
  }

  /** What opening found: every row with its verdict (and skip reason). */
  get report(): DatasetReport {
    return this.dataset.report;
  }

  /** The usable rows. */
  get rows(): DatasetRow[] {
    return this.dataset.rows;
  }

  get seed(): number {
    return this.dataset.seed;
  }

  /** Full batches per epoch. */
  get batchesPerEpoch(): number {
    return Math.floor(this.rows.length / this.batchSize);
  }

  private bucket(): BucketInfo {
    const resolution = `${this.size}px`;
    return {
      resolution,
      frames: this.frames,
      ratio: "1:1",
      key: `${resolution}/${this.frames}/1:1`,
      height: this.size,
      width: this.size,
      batchSize: this.batchSize,
    };
  }

  /** Row positions of batch `position` of `epoch`. */
  private batchRows(epoch: number, position: number): DatasetRow[] {
    const perm = Rng.of(AE_STREAM.order, this.seed, epoch).permutation(this.rows.length);
    const b = this.batchSize;
    return perm.slice(position * b, (position + 1) * b).map((i) => this.rows[i]!);
  }

  private async load(epoch: number, position: number, cursor: Cursor): Promise<AeBatch> {
    const bucket = this.bucket();
    const rows = this.batchRows(epoch, position);
    const per = 3 * this.frames * this.size * this.size;
    const video = new Float32Array(rows.length * per);
    const failed: AeBatch["failed"] = [];
    const ok: boolean[] = new Array(rows.length).fill(false);
    let next = 0;
    const worker = async () => {
      while (next < rows.length) {
        const b = next++;
        const row = rows[b]!;
        if (this.#fromMemory(row.index, epoch, video, b * per)) {
          ok[b] = true;
          continue;
        }
        try {
          await this.dataset.loadSampleInto(row, bucket, epoch, video, b * per);
          ok[b] = true;
        } catch (e) {
          const { reason, detail } = classify(e);
          failed.push({ index: row.index, path: row.path, reason, detail });
          this.dataset.log(
            `skipped ${row.path} (line ${row.line}) in epoch ${epoch}: ${reason}: ${detail}`,
          );
        }
      }
    };
    const lanes = Math.max(1, Math.min(this.dataset.concurrency, rows.length));
    await Promise.all(Array.from({ length: lanes }, worker));
    let n = 0;
    const indices: number[] = [];
    ok.forEach((good, b) => {
      if (!good) return;
      if (n !== b) video.copyWithin(n * per, b * per, (b + 1) * per);
      indices.push(rows[b]!.index);
      n++;
    });
    return {
      video: n === rows.length ? video : video.subarray(0, n * per),
      shape: [n, 3, this.frames, this.size, this.size],
      indices,
      failed,
      cursor,
    };
  }

  /**
   * Batches from `from` (default: epoch 0, position 0) on, forever (or `epochs` epochs). Each
   * carries the cursor to resume after it; batches whose clips all failed are skipped. With
   * `prefetch` the next batch is decoded while the caller trains on the current one.
   */
  async *batches(
    from?: Partial<Cursor> | null,
    opts: { epochs?: number; prefetch?: boolean } = {},
  ): AsyncGenerator<AeBatch, void, undefined> {
    if (from?.seed !== undefined && from.seed !== this.seed) {
      throw new Error(
        `the data cursor was saved with seed ${from.seed}, this run uses seed ${this.seed}; ` +
          `resume with the same --seed`,
      );
    }
    const n = this.batchesPerEpoch;
    if (n === 0) {
      throw new Error(
        `${this.dataset.csvPath}: ${this.rows.length} usable clip(s), fewer than the batch ` +
          `size ${this.batchSize}; add clips or lower the batch size`,
      );
    }
    let epoch = from?.epoch ?? 0;
    let position = from?.position ?? 0;
    if (!(Number.isInteger(position) && position >= 0 && position <= n)) {
      throw new Error(
        `data cursor position ${position} is not in [0, ${n}] batches of an epoch (was the CSV ` +
          `or the batch size changed since the checkpoint?)`,
      );
    }
    const seed = this.seed;
    function* jobs(): Generator<[number, number, Cursor]> {
      for (;;) {
        if (opts.epochs !== undefined && epoch >= opts.epochs) return;
        for (; position < n; position++) {
          const next = position + 1;
          const cursor: Cursor = next >= n
            ? { seed: seed, epoch: epoch + 1, position: 0 }
            : { seed: seed, epoch, position: next };
          yield [epoch, position, cursor];
        }
        epoch++;
        position = 0;
      }
    }
    const it = jobs();
    const start = () => {
      const j = it.next();
      if (j.done) return null;
      const p = this.load(...j.value);
      p.catch(() => {}); // awaited below; avoids an unhandled rejection while prefetching
      return p;
    };
    let pending = start();
    let emptyRun = 0;
    while (pending) {
      const batch = await pending;
      pending = opts.prefetch ? start() : null;
      if (batch.shape[0] === 0) {
        if (++emptyRun >= n) {
          throw new Error(
            `${this.dataset.csvPath}: a whole epoch of batches failed to load; see the skip ` +
              `messages above`,
          );
        }
      } else {
        emptyRun = 0;
        yield batch;
      }
      if (!opts.prefetch) pending = start();
    }
  }
}

function classify(e: unknown): { reason: string; detail: string } {
  const detail = (e as Error).message ?? String(e);
  if (e instanceof TooShortError) return { reason: "too-short", detail };
  if (e instanceof CorruptMediaError) return { reason: "corrupt", detail };
  if (e instanceof Deno.errors.NotFound) return { reason: "missing-file", detail };
  return { reason: "unreadable", detail };
}

/**
 * Opens a dataset CSV for AE training (see {@linkcode AeDataset}). Throws `DatasetCsvError` for
 * an unreadable or empty CSV and `DatasetError` when no row is usable.
 */
export async function openAeDataset(csvPath: string, o: AeDatasetOptions): Promise<AeDataset> {
  for (const k of ["frames", "size", "batchSize"] as const) {
    if (!(Number.isInteger(o[k]) && o[k] >= 1)) {
      throw new RangeError(`openAeDataset: ${k} must be a positive integer, got ${o[k]}`);
    }
  }
  // One resolution and one frame count, always kept: the bucket rules only decide which rows
  // are usable (large enough, long enough); the loader below ignores the aspect buckets.
  const ds = await openDataset(csvPath, {
    buckets: { [`${o.size}px`]: { [o.frames]: [1.0, o.batchSize] } },
    spatialCompression: 1,
    seed: o.seed ?? 42,
    fpsMax: o.fpsMax,
    concurrency: o.concurrency,
    verify: o.verify,
    vmaf: false,
    log: o.log,
  });
  const ae = new AeDataset(ds, o.frames, o.size, o.batchSize);
  if (o.preload) await ae.preload();
  return ae;
}
