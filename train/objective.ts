/**
 * The rectified-flow (flow-matching) training objective of Open-Sora 2.0's high-compression
 * MMDiT (`shared/spec/training.md` §1, §3-§6, §14): per-sample logit-normal timesteps with the
 * resolution/length shift, noisy latents `x_t`, the velocity target `v`, the `i2v_head` visual
 * condition and text dropout.
 *
 * For one micro-batch of clean latents `x0` (`[B, C, T', h, w]`):
 *
 * ```
 * α    = ((h·w)//4 / 1920 + 13/15)·sqrt(T')        (training shift, §5; see ShiftMode)
 * t    = α·t0 / (1 + (α − 1)·t0),  t0 = sigmoid(n), n ~ N(0, 1) per sample
 * ε    ~ N(0, I)  (tokens layout [B, N, C·p²])
 * x_t  = (1 − t)·x0 + (σ + (1 − σ)·t)·ε,   σ = 1e-5
 * v    = (1 − σ)·ε − x0
 * loss = mean((v̂ − v)²)  in f32, over B·N·C·p² elements
 * ```
 *
 * Condition (§3): for video batches (T' > 1) each sample is `t2v` (weight 1) or `i2v_head`
 * (weight 7); an `i2v_head` sample gets mask 1 on latent frame 0 and, there, the reference latent
 * (the 1-frame encode of the clip's first frame, given by the caller); `cond = [mask, mask·ref]`
 * packed to `[B, N, (C + 1)·p²]`. Image batches (T' = 1) and batches without `i2v_head` samples
 * have an all-zero condition, passed as "no condition" (the MMDiT then adds `cond_in`'s bias,
 * exactly what a zero condition gives). Text dropout (§6): with probability 0.31622777 each,
 * independently per sample, the T5 states and the CLIP vector are replaced by the given null
 * embeddings (`T5("")`, `CLIP("")`).
 *
 * Randomness (§14) is a pure function of `(seed, stream)`, where `stream` is the global
 * micro-step index (`update · accumulation + micro`), so resuming at any update reproduces the
 * same draws: the noise ε is the engine's counter-based Threefry normal on the GPU
 * (`randNormal`, key = seed, counter = (element, stream)); the per-sample draws (n, condition
 * type, the two dropouts) use the same Threefry on the CPU under a key derived from the seed,
 * counter = (4·sample + purpose, stream). The reference's Python/torch generators cannot be
 * reproduced bit for bit; the distributions are the same.
 *
 * Differences from the reference, on purpose: t, x_t and v stay f32 (the reference rounds them to
 * bf16, where `1 − σ` rounds to 1).
 *
 * @module
 */
import { fromData } from "../engine/graph.ts";
import { fmtShape } from "../engine/shape.ts";
import { checkAlive, keep, type Tensor } from "../engine/tensor.ts";
import { expand, pad } from "../engine/ops/movement.ts";
import { add, mul, sub, where } from "../engine/ops/elementwise.ts";
import { concat } from "../engine/ops/concat.ts";
import { randNormal, type Seed, seedWords, threefry2x32 } from "../engine/ops/random.ts";
import type { MMDiTConfig } from "../models/mmdit/config.ts";
import type { MMDiTInputs } from "../models/mmdit/inputs.ts";
import { pack, positionIds, textIds } from "../models/sampling/pack.ts";
import { resolutionShiftAlpha } from "../models/sampling/schedule.ts";

/** `sigma_min` of the reference's flow-matching interpolation. */
export const SIGMA_MIN = 1e-5;
/** Text dropout probability for both T5 and CLIP (`dropout_ratio`, §6). */
export const TEXT_DROPOUT = 0.31622777;
/** HCAE condition mix (`condition_config`, §3): P(i2v_head) = 7/8 for video batches. */
export const CONDITION_WEIGHTS: Readonly<Record<ConditionType, number>> = { t2v: 1, i2v_head: 7 };

/** Condition types of the HCAE recipe (the reference's v2v/loop/tail types are not enabled). */
export type ConditionType = "t2v" | "i2v_head";

/**
 * Which shift factor α to use:
 * - `"train"` (default): the training script's `((h·w)//4 / 1920 + 13/15)·sqrt(T')`, whose `//4`
 *   assumes 2×2 patches and is applied even with patch 1 (reproduces the training recipe);
 * - `"inference"`: the sampler's `((h·w)/p² / 1920 + 13/15)·sqrt(T')` (trains on the timestep
 *   distribution the released sampler uses; `training.md` §5 **[ambiguous]**);
 * - `"none"`: α = 1 (plain logit-normal);
 * - a number: that fixed α (> 0) at every size, like a config's `flow_shift`. Small latents get
 *   α ≈ 1.75 from the rules above, which puts under 5% of the draws at t > 0.9, where a sample's
 *   layout and motion are decided; a larger α trains that region more.
 */
export type ShiftMode = "train" | "inference" | "none" | number;

/**
 * α of the training script for latent `h × w` and `T'` latent frames (§5), in float64:
 * `((h·w)//4 / 1920 + 13/15)·sqrt(T')` (the line of `get_res_lin_function` at `(h·w)//4`, which
 * may be 0 for tiny latents).
 */
export function trainShiftAlpha(h: number, w: number, T: number): number {
  if (!(h >= 1 && w >= 1 && T >= 1)) {
    throw new RangeError(`trainShiftAlpha: latent ${T}×${h}×${w} must be at least 1×1×1`);
  }
  const m = 2 / 3840; // (max_shift − base_shift) / (4096 − 256)
  const b = 1 - 256 * m;
  return (m * Math.floor((h * w) / 4) + b) * Math.sqrt(T);
}

/** α of the sampler (`sampling.md` §5) for latent `h × w`, `T'` frames and patch size `p`. */
export function inferenceShiftAlpha(h: number, w: number, T: number, p = 1): number {
  return resolutionShiftAlpha((h * w) / (p * p), T);
}

/** α for a mode (see {@linkcode ShiftMode}). */
export function shiftAlpha(mode: ShiftMode, h: number, w: number, T: number, p = 1): number {
  if (mode === "train") return trainShiftAlpha(h, w, T);
  if (mode === "inference") return inferenceShiftAlpha(h, w, T, p);
  if (mode === "none") return 1;
  if (typeof mode === "number") {
    if (mode > 0 && Number.isFinite(mode)) return mode;
    throw new RangeError(`shiftAlpha: a fixed shift must be a finite number > 0, got ${mode}`);
  }
  throw new RangeError(`shiftAlpha: unknown mode "${mode}" (train, inference or none)`);
}

/** `time_shift` in float64: `α·t / (1 + (α − 1)·t)`. */
export function shiftTimestep(alpha: number, t: number): number {
  return (alpha * t) / (1 + (alpha - 1) * t);
}

// ---------------------------------------------------------------- per-sample draws (CPU)

/** Counter word 0 of a per-sample draw is `4·sample + purpose`. */
export const PURPOSE = { timestep: 0, condition: 1, dropT5: 2, dropClip: 3 } as const;

const keyCache = new Map<string, [number, number]>();

/** The CPU key: Threefry of the seed's words at a fixed counter (independent of the GPU noise). */
function cpuKey(seed: Seed): [number, number] {
  const id = String(seed);
  let k = keyCache.get(id);
  if (!k) {
    k = threefry2x32(seedWords("objective", seed), [0x6b696e6f, 0x7472616e]);
    keyCache.set(id, k);
  }
  return k;
}

function checkStream(stream: number): void {
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) {
    throw new RangeError(`objective: stream ${stream} must be an integer in [0, 2^32)`);
  }
}

/** Uniform in [0, 1) with 53 random bits for (sample, purpose) of a stream. */
export function drawUniform(seed: Seed, stream: number, sample: number, purpose: number): number {
  checkStream(stream);
  const [w0, w1] = threefry2x32(cpuKey(seed), [sample * 4 + purpose, stream]);
  return (w0 * 2 ** 21 + (w1 >>> 11)) / 2 ** 53;
}

/** Standard normal (Box–Muller, float64) for a sample's timestep draw. */
export function drawNormal(seed: Seed, stream: number, sample: number): number {
  checkStream(stream);
  const [w0, w1] = threefry2x32(cpuKey(seed), [sample * 4 + PURPOSE.timestep, stream]);
  const u1 = (w0 + 1) / 2 ** 32; // (0, 1]
  const u2 = w1 / 2 ** 32;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** What {@linkcode drawSamples} needs. */
export interface DrawOptions {
  seed: Seed;
  /** Global micro-step index. */
  stream: number;
  batch: number;
  /** Shift factor α. */
  alpha: number;
  /** Video batch (T' > 1): draw condition types; image batches are all `t2v`. */
  video: boolean;
  conditionWeights?: Readonly<Partial<Record<ConditionType, number>>>;
  t5Dropout?: number;
  clipDropout?: number;
}

/** Per-sample random choices of one micro-batch. */
export interface SampleDraws {
  /** Timesteps in (0, 1), rounded to f32 (what the model sees). */
  t: Float32Array;
  /** Condition type per sample. */
  condition: ConditionType[];
  /** T5 states replaced by the null embedding. */
  dropT5: boolean[];
  /** CLIP vector replaced by the null embedding. */
  dropClip: boolean[];
}

function checkProb(name: string, p: number): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`objective: ${name} ${p} must be in [0, 1]`);
  return p;
}

/** Checks condition weights: known types, non-negative, not all zero. */
export function checkConditionWeights(
  w: Readonly<Partial<Record<string, number>>>,
): [ConditionType, number][] {
  const out: [ConditionType, number][] = [];
  for (const [k, v] of Object.entries(w)) {
    if (k !== "t2v" && k !== "i2v_head") {
      throw new RangeError(
        `objective: condition type "${k}" is not supported (t2v, i2v_head; the HCAE recipe ` +
          `enables only these)`,
      );
    }
    if (!(typeof v === "number" && v >= 0)) {
      throw new RangeError(`objective: condition weight ${k} = ${v} must be >= 0`);
    }
    out.push([k, v]);
  }
  if (!out.some(([, v]) => v > 0)) {
    throw new RangeError("objective: condition weights must not all be zero");
  }
  return out;
}

/**
 * The per-sample draws of one micro-batch: timesteps (logit-normal, shifted), condition types
 * and text dropouts, a pure function of `(seed, stream)`.
 */
export function drawSamples(o: DrawOptions): SampleDraws {
  const weights = checkConditionWeights(o.conditionWeights ?? CONDITION_WEIGHTS);
  const total = weights.reduce((a, [, v]) => a + v, 0);
  const pT5 = checkProb("t5Dropout", o.t5Dropout ?? TEXT_DROPOUT);
  const pClip = checkProb("clipDropout", o.clipDropout ?? TEXT_DROPOUT);
  if (!(o.alpha > 0)) throw new RangeError(`objective: shift α = ${o.alpha} must be > 0`);
  const B = o.batch;
  const out: SampleDraws = { t: new Float32Array(B), condition: [], dropT5: [], dropClip: [] };
  for (let b = 0; b < B; b++) {
    const n = drawNormal(o.seed, o.stream, b);
    const t0 = 1 / (1 + Math.exp(-n));
    out.t[b] = shiftTimestep(o.alpha, t0);
    let type: ConditionType = "t2v";
    if (o.video) {
      // random.choices: the first type whose cumulative weight exceeds u·total
      const u = drawUniform(o.seed, o.stream, b, PURPOSE.condition) * total;
      let acc = 0;
      for (const [k, v] of weights) {
        acc += v;
        if (u < acc) {
          type = k;
          break;
        }
      }
    }
    out.condition.push(type);
    out.dropT5.push(drawUniform(o.seed, o.stream, b, PURPOSE.dropT5) < pT5);
    out.dropClip.push(drawUniform(o.seed, o.stream, b, PURPOSE.dropClip) < pClip);
  }
  return out;
}

// ---------------------------------------------------------------- flow matching (GPU)

/**
 * `x_t = (1 − t)·x0 + (σ + (1 − σ)·t)·ε` and `v = (1 − σ)·ε − x0` for token tensors
 * `[B, N, D]` and per-sample `t` (the coefficients are computed in float64, rounded to f32).
 */
export function flowMatching(
  x0: Tensor,
  eps: Tensor,
  t: Float32Array,
  sigmaMin = SIGMA_MIN,
): { xt: Tensor; v: Tensor } {
  checkAlive("flowMatching", x0);
  checkAlive("flowMatching", eps);
  if (x0.rank !== 3 || x0.shape.join() !== eps.shape.join()) {
    throw new RangeError(
      `flowMatching: x0 ${fmtShape(x0.shape)} and ε ${fmtShape(eps.shape)} must be the same ` +
        `[B, N, D]`,
    );
  }
  const B = x0.shape[0]!;
  if (t.length !== B) throw new RangeError(`flowMatching: ${t.length} timesteps for batch ${B}`);
  const a = new Float32Array(B);
  const c = new Float32Array(B);
  for (let b = 0; b < B; b++) {
    a[b] = 1 - t[b]!;
    c[b] = sigmaMin + (1 - sigmaMin) * t[b]!;
  }
  const xt = add(mul(x0, fromData(a, [B, 1, 1], "f32")), mul(eps, fromData(c, [B, 1, 1], "f32")));
  const v = sub(mul(eps, 1 - sigmaMin), x0);
  return { xt, v };
}

// ---------------------------------------------------------------- one micro-batch

/** A tensor, or its values on the CPU (uploaded when used). */
export type TensorLike = Tensor | Float32Array;

/** One micro-batch of training data (what the data loader and the frozen encoders give). */
export interface TrainBatch {
  /** Clean latents `x0` `[B, C, T', h, w]` (raw DC-AE encoder output). */
  latents: TensorLike;
  /** Shape of `latents` when given as a Float32Array. */
  latentShape?: readonly number[];
  /**
   * Reference latents `[B, C, 1, h, w]`: the 1-frame encode of each clip's first frame (for
   * `i2v_head` samples of video batches; unused for images).
   */
  refLatents?: TensorLike;
  /** T5 states `[B, Lt, contextInDim]`. */
  txt: TensorLike;
  /** CLIP pooled vector `[B, vecInDim]`. */
  yVec: TensorLike;
}

/** Options of {@linkcode FlowMatchingObjective}. */
export interface ObjectiveOptions {
  /** Seed of every random draw; default 42 (the reference's global seed). */
  seed?: number;
  /** Default {@linkcode SIGMA_MIN}. */
  sigmaMin?: number;
  /** Default `"train"`. */
  shift?: ShiftMode;
  /** Default {@linkcode CONDITION_WEIGHTS} (`{t2v: 1, i2v_head: 7}`). */
  conditionWeights?: Partial<Record<ConditionType, number>>;
  /** Default {@linkcode TEXT_DROPOUT}. */
  t5Dropout?: number;
  /** Default {@linkcode TEXT_DROPOUT}. */
  clipDropout?: number;
}

/** The null text embeddings used by dropout (computed once at start-up). */
export interface NullEmbeddings {
  /** `T5("")` `[1, Lt, contextInDim]` (Lt as in the batches). */
  txt?: TensorLike;
  /** `CLIP("")` `[1, vecInDim]`. */
  yVec?: TensorLike;
}

/** One prepared micro-batch: the MMDiT inputs, the target and the draws behind them. */
export interface PreparedBatch {
  /** The MMDiT inputs (noisy latents as tokens, text, timesteps, condition). */
  inputs: MMDiTInputs;
  /** Velocity target `v` `[B, N, inChannels]`. */
  target: Tensor;
  /** The per-sample random choices. */
  draws: SampleDraws;
  /** Timestep shift factor α used for the draws. */
  alpha: number;
  /** Image tokens `B·N`. */
  tokens: number;
}

/** The options with their defaults filled in (stored in checkpoints). */
export type ResolvedObjectiveOptions = Required<ObjectiveOptions>;

/** Fills defaults and validates objective options. */
export function resolveObjectiveOptions(o: ObjectiveOptions = {}): ResolvedObjectiveOptions {
  const r: ResolvedObjectiveOptions = {
    seed: o.seed ?? 42,
    sigmaMin: o.sigmaMin ?? SIGMA_MIN,
    shift: o.shift ?? "train",
    conditionWeights: { ...(o.conditionWeights ?? CONDITION_WEIGHTS) },
    t5Dropout: checkProb("t5Dropout", o.t5Dropout ?? TEXT_DROPOUT),
    clipDropout: checkProb("clipDropout", o.clipDropout ?? TEXT_DROPOUT),
  };
  seedWords("objective seed", r.seed);
  checkConditionWeights(r.conditionWeights);
  shiftAlpha(r.shift, 2, 2, 1);
  if (!(r.sigmaMin >= 0 && r.sigmaMin < 1)) {
    throw new RangeError(`objective: sigmaMin ${r.sigmaMin} must be in [0, 1)`);
  }
  return r;
}

/**
 * Builds the MMDiT inputs and the velocity target of a micro-batch (see the module doc). Holds
 * the uploaded null embeddings; {@linkcode FlowMatchingObjective.dispose} frees them.
 *
 * @example
 * ```ts ignore
 * const obj = new FlowMatchingObjective(dit.config, { seed: 42 }, { txt: t5Null, yVec: clipNull });
 * tidy(() => {
 *   const p = obj.prepare(batch, stream);
 *   backward(mseLoss(dit.forward(p.inputs), p.target));
 * });
 * ```
 */
export class FlowMatchingObjective {
  /** The options with defaults filled in. */
  readonly options: ResolvedObjectiveOptions;
  private readonly nullTxt: Tensor | null;
  private readonly nullY: Tensor | null;
  private readonly ownsNull: Tensor[] = [];

  /**
   * Resolves `options` for the model `config` and uploads the null embeddings `nulls` (needed with
   * text dropout).
   */
  constructor(
    readonly config: MMDiTConfig,
    options: ObjectiveOptions = {},
    nulls?: NullEmbeddings,
  ) {
    this.options = resolveObjectiveOptions(options);
    const up = (x: TensorLike | undefined, tail: number, what: string): Tensor | null => {
      if (!x) return null;
      if (x instanceof Float32Array) {
        if (x.length % tail !== 0) {
          throw new RangeError(`objective: null ${what} has ${x.length} values, not k·${tail}`);
        }
        const t = keep(fromData(x, what === "txt" ? [1, x.length / tail, tail] : [1, tail], "f32"));
        this.ownsNull.push(t);
        return t;
      }
      return x;
    };
    this.nullTxt = up(nulls?.txt, config.contextInDim, "txt");
    this.nullY = up(nulls?.yVec, config.vecInDim, "yVec");
    if (
      this.nullTxt && (this.nullTxt.rank !== 3 || this.nullTxt.shape[0] !== 1 ||
        this.nullTxt.shape[2] !== config.contextInDim)
    ) {
      throw new RangeError(
        `objective: null T5 embedding must be [1, Lt, ${config.contextInDim}], got ${
          fmtShape(this.nullTxt.shape)
        }`,
      );
    }
    if (this.nullY && this.nullY.shape.join() !== [1, config.vecInDim].join()) {
      throw new RangeError(
        `objective: null CLIP embedding must be [1, ${config.vecInDim}], got ${
          fmtShape(this.nullY.shape)
        }`,
      );
    }
    const o = this.options;
    if (o.t5Dropout > 0 && !this.nullTxt) {
      throw new RangeError(
        `objective: T5 dropout ${o.t5Dropout} needs the null T5 embedding T5("") (pass ` +
          `nulls.txt), or set t5Dropout to 0`,
      );
    }
    if (o.clipDropout > 0 && !this.nullY) {
      throw new RangeError(
        `objective: CLIP dropout ${o.clipDropout} needs the null CLIP embedding CLIP("") (pass ` +
          `nulls.yVec), or set clipDropout to 0`,
      );
    }
  }

  /** The shift factor for a latent of `T'` frames and `h × w`. */
  alpha(T: number, h: number, w: number): number {
    return shiftAlpha(this.options.shift, h, w, T, this.config.patchSize);
  }

  /**
   * Inputs and target of one micro-batch; `stream` is the global micro-step index. Record inside
   * the training step's `tidy` (uploads and intermediates are freed with it).
   */
  prepare(batch: TrainBatch, stream: number): PreparedBatch {
    const c = this.config;
    const p = c.patchSize;
    const o = this.options;
    const x0 = asTensor(batch.latents, batch.latentShape, "latents");
    if (x0.rank !== 5) {
      throw new RangeError(
        `objective: latents must be [B, C, T', h, w], got ${fmtShape(x0.shape)} (pass ` +
          `latentShape with a Float32Array)`,
      );
    }
    const [B, C, T, h, w] = x0.shape as [number, number, number, number, number];
    if (C * p * p !== c.inChannels) {
      throw new RangeError(
        `objective: latents have ${C} channels; the MMDiT ${c.name} takes ${c.inChannels} = C·p² ` +
          `with p = ${p}`,
      );
    }
    if (h % p || w % p) {
      throw new RangeError(`objective: latent ${h}×${w} is not a multiple of the patch ${p}`);
    }
    const txt = asTensor(batch.txt, null, "txt", [B, -1, c.contextInDim]);
    const yVec = asTensor(batch.yVec, null, "yVec", [B, c.vecInDim]);
    if (txt.rank !== 3 || txt.shape[0] !== B || txt.shape[2] !== c.contextInDim) {
      throw new RangeError(
        `objective: txt must be [${B}, Lt, ${c.contextInDim}], got ${fmtShape(txt.shape)}`,
      );
    }
    if (yVec.shape.join() !== [B, c.vecInDim].join()) {
      throw new RangeError(
        `objective: yVec must be [${B}, ${c.vecInDim}], got ${fmtShape(yVec.shape)}`,
      );
    }
    const Lt = txt.shape[1]!;
    const video = T > 1;
    const alpha = this.alpha(T, h, w);
    const draws = drawSamples({
      seed: o.seed,
      stream,
      batch: B,
      alpha,
      video,
      conditionWeights: o.conditionWeights,
      t5Dropout: o.t5Dropout,
      clipDropout: o.clipDropout,
    });

    // x_t and v on the tokens [B, N, C·p²]
    const tokens = pack(x0, p);
    const N = tokens.shape[1]!;
    const eps = randNormal(tokens.shape, { seed: o.seed, offset: stream });
    const { xt, v } = flowMatching(tokens, eps, draws.t, o.sigmaMin);

    // condition [mask, mask·ref] on frame 0 of i2v_head samples
    let cond: Tensor | undefined;
    if (c.condEmbed && video && draws.condition.includes("i2v_head")) {
      if (!batch.refLatents) {
        throw new RangeError(
          `objective: i2v_head samples need refLatents [B, C, 1, h, w] (the 1-frame encode of ` +
            `each clip's first frame); pass them, or set conditionWeights to {t2v: 1}`,
        );
      }
      const ref = asTensor(batch.refLatents, [B, C, 1, h, w], "refLatents");
      if (ref.shape.join() !== [B, C, 1, h, w].join()) {
        throw new RangeError(
          `objective: refLatents must be [${B}, ${C}, 1, ${h}, ${w}], got ${fmtShape(ref.shape)}`,
        );
      }
      const m = new Float32Array(B);
      draws.condition.forEach((k, b) => (m[b] = k === "i2v_head" ? 1 : 0));
      const mask = fromData(m, [B, 1, 1, 1, 1], "f32");
      const frame0 = concat([expand(mask, [B, 1, 1, h, w]), mul(ref, mask)], 1);
      cond = pack(pad(frame0, [[0, 0], [0, 0], [0, T - 1]]), p); // [B, N, (C + 1)·p²]
    }

    // text dropout
    const drop = (flags: boolean[], x: Tensor, nul: Tensor | null, what: string): Tensor => {
      if (!flags.some((f) => f)) return x;
      if (what === "txt" && nul!.shape[1] !== Lt) {
        throw new RangeError(
          `objective: the null T5 embedding has ${nul!.shape[1]} tokens, the batch ${Lt}; ` +
            `encode both with the same padded length`,
        );
      }
      const shape = x.rank === 3 ? [B, 1, 1] : [B, 1];
      const f = fromData(new Float32Array(flags.map((d) => (d ? 1 : 0))), shape, "f32");
      return where(expand(f, x.shape), expand(nul!, x.shape), x);
    };

    const inputs: MMDiTInputs = {
      img: xt,
      imgIds: positionIds(B, T, h / p, w / p),
      txt: drop(draws.dropT5, txt, this.nullTxt, "txt"),
      txtIds: textIds(B, Lt),
      timesteps: fromData(draws.t, [B], "f32"),
      yVec: drop(draws.dropClip, yVec, this.nullY, "yVec"),
      cond,
    };
    return { inputs, target: v, draws, alpha, tokens: B * N };
  }

  /** Frees the null embeddings it uploaded. */
  dispose(): void {
    for (const t of this.ownsNull) t.dispose();
    this.ownsNull.length = 0;
  }
}

/** A Tensor as is, or Float32Array data uploaded with a shape (`-1` = inferred). */
export function asTensor(
  x: TensorLike,
  shape: readonly number[] | null | undefined,
  what: string,
  infer?: readonly number[],
): Tensor {
  if (!(x instanceof Float32Array)) {
    checkAlive(what, x);
    return x;
  }
  let s = shape ? [...shape] : infer ? [...infer] : null;
  if (!s) {
    throw new RangeError(`${what}: a Float32Array needs its shape (e.g. latentShape)`);
  }
  const known = s.filter((d) => d !== -1).reduce((a, d) => a * d, 1);
  if (s.includes(-1)) s = s.map((d) => (d === -1 ? x.length / known : d));
  const n = s.reduce((a, d) => a * d, 1);
  if (n !== x.length || !s.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new RangeError(`${what}: ${x.length} values do not fit the shape [${s.join(", ")}]`);
  }
  return fromData(x, s, "f32");
}
