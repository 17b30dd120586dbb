/**
 * The MMDiT training loop's core (`shared/spec/training.md` §1, §8, §11, §12): one optimiser update
 * from one or several micro-batches, with the reference's AdamW settings, optional linear warm-up,
 * EMA and per-block activation recomputation, exact checkpoint/resume, and one GPU read-back per
 * update.
 *
 * One update, written out (see {@linkcode Trainer.step}):
 *
 * ```
 * lr = lrAt(step)                                   # §8 warm-up, then constant
 * for micro m in 0..N-1:                            # gradient accumulation
 *   tidy: inputs, v = objective.prepare(batch_m, stream = step·N + m)
 *         pred = MMDiT(inputs);  loss_m = mean((pred − v)²)
 *         backward(loss_m / N)                      # grads accumulate in param.grad
 * AdamW step (global grad-norm clip 1.0, on the GPU); EMA update
 * read back [loss_0..N-1, per-sample losses, grad norm] together   # the only wait
 * ```
 *
 * Data loading, text/latent encoding and the command line live elsewhere; the trainer takes
 * ready latents and text states ({@linkcode TrainBatch}).
 *
 * @module
 */
import { backward } from "../engine/autograd.ts";
import { fromData, viewOf } from "../engine/graph.ts";
import { AdamW, EMA } from "../engine/optim.ts";
import { recompute } from "../engine/recompute.ts";
import { runtime } from "../engine/runtime.ts";
import { noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { mul, square, sub } from "../engine/ops/elementwise.ts";
import { readAll } from "../engine/ops/movement.ts";
import { mean } from "../engine/ops/reduce.ts";
import { fmtShape } from "../engine/shape.ts";
import type { MMDiT } from "../models/mmdit/model.ts";
import type { MMDiTInputs } from "../models/mmdit/inputs.ts";
import type { Rope } from "../models/mmdit/layers.ts";
import {
  FlowMatchingObjective,
  type NullEmbeddings,
  type ObjectiveOptions,
  type ResolvedObjectiveOptions,
  type TrainBatch,
} from "./objective.ts";
import {
  type CheckpointData,
  type HostTensor,
  readCheckpoint,
  resolveResume,
  type TrainerState,
  writeCheckpoint,
} from "./checkpoint.ts";
import { meanByRange, type MetricsWriter, type StepMetrics } from "./metrics.ts";

/** Options of {@linkcode Trainer}; defaults are the HCAE recipe (`training.md` §8). */
export interface TrainerOptions {
  /** Peak learning rate; default 3e-5. */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 1e-15. */
  eps?: number;
  /** Default 0. */
  weightDecay?: number;
  /** Global grad-norm clip; default 1.0; null disables clipping (the norm is still reported). */
  maxGradNorm?: number | null;
  /** Linear warm-up updates W; default 0 (constant lr). */
  warmupSteps?: number;
  /** Warm-up start `initial_lr`; default 1e-6. */
  warmupInitialLr?: number;
  /** EMA decay; default null (no EMA, as the HCAE recipe). */
  emaDecay?: number | null;
  /** Micro-batches per update N (the loss of each is scaled by 1/N); default 1. */
  gradAccumulation?: number;
  /**
   * Recompute every MMDiT block's activations in the backward instead of keeping them
   * (`grad_ckpt_settings = (100, 100)` of the recipe); default false.
   */
  recompute?: boolean;
  /** The flow-matching objective (seed, shift, condition mix, dropout). */
  objective?: ObjectiveOptions;
  /** `T5("")` and `CLIP("")`, needed when text dropout is on. */
  nullEmbeddings?: NullEmbeddings;
  /** Writes every update's {@linkcode StepMetrics} when given. */
  metrics?: MetricsWriter;
}

/** The options with defaults filled in (saved in checkpoints). */
export interface ResolvedTrainerOptions {
  /** Peak learning rate. */
  lr: number;
  /** AdamW `[β1, β2]`. */
  betas: [number, number];
  /** AdamW epsilon. */
  eps: number;
  /** Decoupled weight decay. */
  weightDecay: number;
  /** Global grad-norm clip, or null for none. */
  maxGradNorm: number | null;
  /** Linear warm-up updates. */
  warmupSteps: number;
  /** Learning rate at the start of the warm-up. */
  warmupInitialLr: number;
  /** EMA decay, or null without EMA. */
  emaDecay: number | null;
  /** Micro-batches per update. */
  gradAccumulation: number;
  /** Whether block activations are recomputed in the backward. */
  recompute: boolean;
  /** The resolved objective options. */
  objective: ResolvedObjectiveOptions;
}

/** What one update returns (also written to the metrics files). */
export interface StepResult extends StepMetrics {
  /** Loss of each micro-batch. */
  microLosses: number[];
  /** Per-sample loss (mean over tokens and channels), all micro-batches in order. */
  perSampleLoss: Float32Array;
  /** Timestep of each sample (NaN where unknown, e.g. {@linkcode Trainer.stepOnTarget}). */
  t: Float32Array;
}

/** What {@linkcode Trainer.restore} and {@linkcode Trainer.resume} report. */
export interface RestoreInfo {
  /** Updates completed at the checkpoint. */
  step: number;
  /** The data cursor saved with it. */
  dataCursor: unknown;
  /** Options that differ from the checkpoint's (resuming is exact only when this is empty). */
  differences: string[];
  /** The step folder (resume only). */
  dir?: string;
}

/** Options of {@linkcode Trainer.save}. */
export interface SaveOptions {
  /** Opaque JSON data-loader position, returned by resume. */
  dataCursor?: unknown;
  /** Keep only the newest K checkpoints. */
  keepLast?: number;
}

/**
 * Learning rate of update `k` (0-based) under `LinearWarmupLR` (§8): for `k < W`,
 * `initial + (k + 1)/(W + 1)·(lr − initial)`, then `lr`. The schedule advances once per update;
 * the reference steps its scheduler once per micro-step, which is the same for the recipe's
 * `accumulation_steps = 1` (with N > 1 the reference warms up N times faster per update).
 */
export function warmupLr(k: number, lr: number, warmupSteps: number, initial = 1e-6): number {
  if (k < warmupSteps) return initial + ((k + 1) / (warmupSteps + 1)) * (lr - initial);
  return lr;
}

function resolveOptions(o: TrainerOptions, objective: ResolvedObjectiveOptions) {
  const r: ResolvedTrainerOptions = {
    lr: o.lr ?? 3e-5,
    betas: o.betas ?? [0.9, 0.999],
    eps: o.eps ?? 1e-15,
    weightDecay: o.weightDecay ?? 0,
    maxGradNorm: o.maxGradNorm === undefined ? 1.0 : o.maxGradNorm,
    warmupSteps: o.warmupSteps ?? 0,
    warmupInitialLr: o.warmupInitialLr ?? 1e-6,
    emaDecay: o.emaDecay ?? null,
    gradAccumulation: o.gradAccumulation ?? 1,
    recompute: o.recompute ?? false,
    objective,
  };
  if (!(r.lr > 0)) throw new RangeError(`Trainer: lr ${r.lr} must be > 0`);
  if (!Number.isInteger(r.gradAccumulation) || r.gradAccumulation < 1) {
    throw new RangeError(`Trainer: gradAccumulation ${r.gradAccumulation} must be an integer >= 1`);
  }
  if (!Number.isInteger(r.warmupSteps) || r.warmupSteps < 0) {
    throw new RangeError(`Trainer: warmupSteps ${r.warmupSteps} must be an integer >= 0`);
  }
  if (r.maxGradNorm !== null && !(r.maxGradNorm > 0)) {
    throw new RangeError(`Trainer: maxGradNorm ${r.maxGradNorm} must be > 0 (or null: no clip)`);
  }
  return r;
}

/** The rope tables as a tensor list (recomputed blocks take tensors only) and back. */
function ropeTensors(r: Rope): Tensor[] {
  return r.kind === "half" ? [r.cos, r.sin] : [r.pe];
}
function ropeFrom(kind: Rope["kind"], ts: Tensor[]): Rope {
  return kind === "half" ? { kind, cos: ts[0]!, sin: ts[1]! } : { kind, pe: ts[0]! };
}

/** One micro-batch, ready: inputs, target and what the metrics need. */
interface Micro {
  inputs: MMDiTInputs;
  target: Tensor;
  t: Float32Array | null;
  tokens: number;
}

/**
 * Trains an {@linkcode MMDiT} with the flow-matching objective. The model's parameters must be
 * f32 and initialised (or loaded, e.g. with `initFrom`) before construction: the optimizer moves
 * them into its arena.
 *
 * @example
 * ```ts ignore
 * const dit = new MMDiT(mmditPreset("small"));
 * dit.params.initialize(0);
 * const trainer = new Trainer(dit, { nullEmbeddings: { txt: t5Null, yVec: clipNull } });
 * await trainer.resume("latest", "outputs/run1");
 * for (const batch of loader) {
 *   const r = await trainer.step(batch);
 *   if (trainer.steps % 250 === 0) await trainer.save("outputs/run1", { keepLast: 20 });
 * }
 * ```
 */
export class Trainer {
  /** The options with defaults filled in. */
  readonly options: ResolvedTrainerOptions;
  /** Builds the inputs and targets of each micro-batch. */
  readonly objective: FlowMatchingObjective;
  /** The optimizer; it holds the MMDiT's parameters in its arena. */
  readonly opt: AdamW;
  /** The exponential moving average of the weights, or null without EMA. */
  readonly ema: EMA | null;
  /** Optimiser updates completed. */
  steps = 0;
  private readonly metrics: MetricsWriter | null;
  private readonly restoreForward: (() => void)[] = [];
  private disposed = false;

  /**
   * Checks the model (f32, initialised), builds the objective, AdamW and optional EMA, and installs
   * recomputation when asked.
   */
  constructor(readonly dit: MMDiT, options: TrainerOptions = {}) {
    this.objective = new FlowMatchingObjective(
      dit.config,
      options.objective,
      options.nullEmbeddings,
    );
    this.options = resolveOptions(options, this.objective.options);
    const o = this.options;
    if (!dit.params.ready) {
      throw new Error(
        `Trainer: the MMDiT's parameters have no values; call dit.params.initialize(seed), ` +
          `load a checkpoint or use initFrom before building the trainer`,
      );
    }
    if (dit.params.storage !== "f32") {
      throw new TypeError(
        `Trainer: training needs f32 parameters (master weights); build the MMDiT with ` +
          `storage "f32", not "${dit.params.storage}"`,
      );
    }
    const params = dit.params.list().map((s) => dit.params.get(s.name));
    this.opt = new AdamW(params, {
      lr: o.lr,
      betas: o.betas,
      eps: o.eps,
      weightDecay: o.weightDecay,
      maxGradNorm: o.maxGradNorm ?? undefined,
      trackGradNorm: true,
    });
    this.ema = o.emaDecay === null ? null : new EMA(this.opt, { decay: o.emaDecay });
    this.metrics = options.metrics ?? null;
    if (o.recompute) this.installRecompute();
  }

  /** Wraps every block's forward in {@linkcode recompute} (undone by `dispose`). */
  private installRecompute(): void {
    this.dit.doubleBlocks.forEach((block, i) => {
      const plain = block.forward;
      const run = plain.bind(block);
      block.forward = (img, txt, vec, rope) =>
        recompute(
          (a, b, c, ...r) => run(a!, b!, c!, ropeFrom(rope.kind, r)),
          [img, txt, vec, ...ropeTensors(rope)],
          undefined,
          { label: `double_blocks.${i}` },
        ) as [Tensor, Tensor];
      this.restoreForward.push(() => (block.forward = plain));
    });
    this.dit.singleBlocks.forEach((block, i) => {
      const plain = block.forward;
      const run = plain.bind(block);
      block.forward = (x, vec, rope) =>
        recompute(
          (a, b, ...r) => run(a!, b!, ropeFrom(rope.kind, r)),
          [x, vec, ...ropeTensors(rope)],
          undefined,
          { label: `single_blocks.${i}` },
        ) as Tensor;
      this.restoreForward.push(() => (block.forward = plain));
    });
  }

  /** Learning rate of update `k` (0-based). */
  lrAt(k: number): number {
    const o = this.options;
    return warmupLr(k, o.lr, o.warmupSteps, o.warmupInitialLr);
  }

  /** RNG stream (global micro-step index) of micro-batch `m` of the next update. */
  streamOf(m: number): number {
    return this.steps * this.options.gradAccumulation + m;
  }

  /** Throws if the trainer was disposed. */
  private check(op: string): void {
    if (this.disposed) throw new Error(`Trainer.${op}: the trainer was disposed`);
  }

  /**
   * One optimiser update from `gradAccumulation` micro-batches (a single batch when it is 1):
   * objective, forward, backward, clip + AdamW, EMA; one read-back of the losses and grad norm.
   */
  step(batches: TrainBatch | readonly TrainBatch[]): Promise<StepResult> {
    this.check("step");
    const list = Array.isArray(batches) ? batches : [batches as TrainBatch];
    const n = this.options.gradAccumulation;
    if (list.length !== n) {
      throw new RangeError(
        `Trainer.step: ${list.length} micro-batches given, gradAccumulation is ${n}`,
      );
    }
    return this.update(n, (m) => {
      const p = this.objective.prepare(list[m]!, this.streamOf(m));
      return { inputs: p.inputs, target: p.target, t: p.draws.t, tokens: p.tokens };
    });
  }

  /**
   * One optimiser update on given MMDiT inputs and target (no objective, no randomness, loss not
   * scaled by the accumulation): for tests against reference gradients and custom objectives.
   * With `keepGrads` the gradients stay in `param.grad` until the next update.
   */
  stepOnTarget(
    inputs: MMDiTInputs,
    target: Tensor,
    options: { keepGrads?: boolean } = {},
  ): Promise<StepResult> {
    this.check("stepOnTarget");
    const B = inputs.img.shape[0]!;
    return this.update(
      1,
      () => ({ inputs, target, t: null, tokens: B * inputs.img.shape[1]! }),
      options.keepGrads,
    );
  }

  /**
   * Runs one update over `n` micro-batches from `prepare`: forward, backward, clip + AdamW, EMA,
   * one read-back; writes the metrics.
   */
  private async update(
    n: number,
    prepare: (m: number) => Micro,
    keepGrads = false,
  ): Promise<StepResult> {
    const rt = runtime();
    const start = performance.now();
    rt.pool.resetPeak();
    this.opt.zeroGrad();
    const lr = this.lrAt(this.steps);
    this.opt.lr = lr;
    const losses: Tensor[] = [];
    const perSample: Tensor[] = [];
    const ts: (Float32Array | null)[] = [];
    let samples = 0;
    let tokens = 0;
    let gn: Tensor | null = null;
    let vals: Float32Array[];
    try {
      for (let m = 0; m < n; m++) {
        const [loss, per] = tidy(() => {
          const mb = prepare(m);
          const pred = this.dit.forward(mb.inputs);
          if (pred.shape.join() !== mb.target.shape.join()) {
            throw new RangeError(
              `Trainer: target ${fmtShape(mb.target.shape)} does not match the prediction ` +
                `${fmtShape(pred.shape)}`,
            );
          }
          const se = square(sub(pred, mb.target));
          const loss = mean(se);
          backward(n > 1 ? mul(loss, 1 / n) : loss);
          ts.push(mb.t);
          samples += pred.shape[0]!;
          tokens += mb.tokens;
          return [loss, mean(se, [1, 2])];
        });
        losses.push(loss!);
        perSample.push(per!);
      }
      this.opt.step();
      this.ema?.update();
      gn = this.opt.lastGradNorm()!;
      vals = await readAll([...losses, ...perSample, gn]);
    } finally {
      for (const t of [...losses, ...perSample]) t.dispose();
      gn?.dispose();
      if (!keepGrads) this.opt.zeroGrad();
    }
    this.steps++;
    const microLosses = vals.slice(0, n).map((v) => v[0]!);
    const per = concatF32(vals.slice(n, 2 * n));
    const t = concatF32(ts.map((x, i) => x ?? new Float32Array(vals[n + i]!.length).fill(NaN)));
    const seconds = (performance.now() - start) / 1000;
    const mem = rt.pool.stats();
    const result: StepResult = {
      step: this.steps,
      loss: microLosses.reduce((a, b) => a + b, 0) / n,
      lossByT: meanByRange(per, t),
      gradNorm: vals[2 * n]![0]!,
      lr,
      samples,
      tokens,
      seconds,
      samplesPerSec: samples / seconds,
      tokensPerSec: tokens / seconds,
      memInUse: mem.inUse,
      memPeak: mem.peakInUse,
      microLosses,
      perSampleLoss: per,
      t,
    };
    if (this.metrics) await this.metrics.write(result);
    return result;
  }

  /**
   * The objective's loss on a batch without training (no gradients), with the draws of `stream`
   * (use streams the training never reaches, e.g. ≥ 2^31, for a fixed validation set).
   */
  async evalLoss(batch: TrainBatch, stream: number): Promise<number> {
    this.check("evalLoss");
    const loss = tidy(() =>
      noGrad(() => {
        const p = this.objective.prepare(batch, stream);
        return mean(square(sub(this.dit.forward(p.inputs), p.target)));
      })
    );
    const [v] = await readAll([loss]);
    loss.dispose();
    return v![0]!;
  }

  /** The scalar state saved in checkpoints. */
  state(dataCursor: unknown = null): TrainerState {
    const o = this.options;
    return {
      format: "kino-trainer",
      version: 1,
      step: this.steps,
      stream: this.streamOf(0),
      seed: o.objective.seed,
      lrPosition: this.steps,
      dataCursor,
      options: structuredClone(o) as unknown as Record<string, unknown>,
      modelConfig: structuredClone(this.dit.config),
      savedAt: new Date().toISOString(),
    };
  }

  /** Copies weights, optimizer moments, EMA and state to the CPU (reads in ≤ 64 MiB groups). */
  async snapshot(dataCursor: unknown = null): Promise<CheckpointData> {
    this.check("snapshot");
    const names = this.dit.params.list().map((s) => s.name);
    const model = await readMap(names.map((n) => [n, this.dit.params.get(n)]));
    const os = this.opt.stateDict();
    const es = this.ema?.stateDict() ?? null;
    try {
      const optimizer = await readMap(Object.entries(os));
      const ema = es ? await readMap(Object.entries(es)) : null;
      return { model, optimizer, ema, state: this.state(dataCursor) };
    } finally {
      for (const t of Object.values(os)) t.dispose();
      for (const t of Object.values(es ?? {})) t.dispose();
    }
  }

  /** Loads a snapshot (weights, moments, EMA, step); returns the data cursor and differences. */
  async restore(data: CheckpointData): Promise<RestoreInfo> {
    this.check("restore");
    const rt = runtime();
    const specs = this.dit.params.list();
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
        `Trainer.restore: the checkpoint does not match the model (${bad.slice(0, 5).join("; ")}` +
          `${bad.length > 5 ? `; ${bad.length - 5} more` : ""}); resume with the same model ` +
          `configuration, or use initFrom for weights only`,
      );
    }
    for (const s of specs) {
      const p = this.dit.params.get(s.name);
      const v = viewOf(p);
      rt.write(v.buffer, v.offset * 4, data.model.get(s.name)!.data);
    }
    const up = (m: Map<string, HostTensor>) => {
      const out: Record<string, Tensor> = {};
      for (const [k, h] of m) out[k] = fromData(h.data, h.shape, "f32");
      return out;
    };
    const os = up(data.optimizer);
    try {
      await this.opt.loadStateDict(os);
    } finally {
      for (const t of Object.values(os)) t.dispose();
    }
    if (this.ema) {
      const es = up(data.ema ?? data.model);
      try {
        this.ema.loadStateDict(es);
      } finally {
        for (const t of Object.values(es)) t.dispose();
      }
    }
    const st = data.state;
    if (this.opt.stepCount !== st.step) {
      throw new Error(
        `Trainer.restore: the optimizer state has step ${this.opt.stepCount}, the trainer state ` +
          `${st.step}; the checkpoint is inconsistent`,
      );
    }
    this.steps = st.step;
    const differences = diffOptions(
      st.options,
      this.options as unknown as Record<string, unknown>,
    );
    if (st.stream !== this.streamOf(0)) {
      differences.push(`RNG stream: saved ${st.stream}, now ${this.streamOf(0)}`);
    }
    return { step: st.step, dataCursor: st.dataCursor, differences };
  }

  /** Writes a checkpoint of the current state to `<outDir>/checkpoints/step_<N>/`. */
  async save(outDir: string, options: SaveOptions = {}): Promise<string> {
    const data = await this.snapshot(options.dataCursor ?? null);
    return await writeCheckpoint(outDir, data, { keepLast: options.keepLast });
  }

  /**
   * Resumes from `"latest"` (in `outDir`) or a checkpoint path; returns null (fresh start) when
   * `"latest"` finds none.
   */
  async resume(spec: string, outDir?: string): Promise<RestoreInfo | null> {
    const dir = await resolveResume(spec, outDir);
    if (!dir) return null;
    const info = await this.restore(await readCheckpoint(dir));
    return { ...info, dir };
  }

  /** Frees the optimizer, EMA and null embeddings and restores the blocks' plain forward. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const f of this.restoreForward) f();
    this.ema?.dispose();
    this.opt.dispose();
    this.objective.dispose();
  }
}

function concatF32(xs: Float32Array[]): Float32Array {
  const out = new Float32Array(xs.reduce((a, x) => a + x.length, 0));
  let o = 0;
  for (const x of xs) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

/** Reads named tensors in groups of at most 64 MiB (one wait per group). */
export async function readMap(items: [string, Tensor][]): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  const LIMIT = 64 * 1024 * 1024;
  let group: [string, Tensor][] = [];
  let bytes = 0;
  const flush = async () => {
    if (!group.length) return;
    const vals = await readAll(group.map((g) => g[1]));
    group.forEach(([k, t], i) => out.set(k, { shape: [...t.shape], data: vals[i]! }));
    group = [];
    bytes = 0;
  };
  for (const it of items) {
    if (bytes + it[1].size * 4 > LIMIT) await flush();
    group.push(it);
    bytes += it[1].size * 4;
  }
  await flush();
  return out;
}

function diffOptions(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = JSON.stringify(a[k]);
    const y = JSON.stringify(b[k]);
    if (x !== y) out.push(`${k}: saved ${x}, now ${y}`);
  }
  return out;
}
