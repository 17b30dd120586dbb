/**
 * The headline of the high-compression pipeline, reproduced in this engine: one MMDiT forward and
 * one training step at the token counts of the high-compression pipeline (Video DC-AE 4×32×32,
 * patch 1) versus the baseline pipeline (HunyuanVideo VAE 4×8×8, patch 2) for the same video, on
 * the same reduced model (the real architecture at a width and depth this machine can run), next
 * to the ratio the FLOP model of `shared/spec/speedup.md` §3 predicts for that model and for the
 * full-size one.
 *
 * Each video setting ({@linkcode SETTINGS}) adds four cases (forward and training step of both
 * pipelines) and two `speedup <key> fwd|train` records (kino = high-compression, peer = baseline,
 * ratio = baseline ms / high-compression ms, with the FLOP model's predictions).
 *
 * @module
 */
import { fromData, realize } from "../engine/graph.ts";
import { runtime } from "../engine/runtime.ts";
import { noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { MMDiT } from "../models/mmdit/model.ts";
import { type MMDiTConfig, mmditPreset } from "../models/mmdit/config.ts";
import { type BenchRecord, gflops, type RunTime, type Summarised, timeRun } from "./_report.ts";
import { Trainer } from "../train/trainer.ts";
import { type Case, rand } from "./_kino.ts";

/** A pipeline's latent for a video and how it becomes tokens. */
export interface Pipeline {
  /** `high-compression` or `baseline`. */
  name: string;
  /** Clip the autoencoder encodes, e.g. `576x1024, 32 frames`. */
  clip: string;
  /** Latent grid (T', h, w) before patching. */
  latent: [number, number, number];
  /** Token width entering `img_in` = latent channels × patch². */
  inChannels: number;
  /** Spatial patch size. */
  patch: number;
}

/** Token grid (T', h/p, w/p) of a pipeline. */
export function tokenGrid(p: Pipeline): [number, number, number] {
  const [t, h, w] = p.latent;
  if (h % p.patch || w % p.patch) {
    throw new RangeError(`${p.name}: latent ${h}x${w} is not divisible by patch ${p.patch}`);
  }
  return [t, h / p.patch, w / p.patch];
}

/** Image tokens of a pipeline. */
export function imageTokens(p: Pipeline): number {
  const [t, h, w] = tokenGrid(p);
  return t * h * w;
}

/** Untimed and timed runs of one case. */
export interface Timing {
  warmup: number;
  iters: number;
}

/** A video setting: both pipelines' token counts for one clip, and how long to time them. */
export interface VideoSetting {
  /** Short key used in the speed-up record names and by `--filter`, e.g. `768px`. */
  key: string;
  /** Human-readable setting, e.g. `768px 16:9, 32 frames`. */
  video: string;
  /** Appended to the per-pipeline case names. */
  suffix: string;
  /** High-compression first (its warm-up compiles the kernels both use), then baseline. */
  pipelines: readonly [Pipeline, Pipeline];
  /** Whether `--quick` runs this setting. */
  inQuick: boolean;
  /** Warm-ups and timed runs of a case. */
  timing: (p: Pipeline, kind: "fwd" | "train", quick: boolean) => Timing;
}

/** The video settings, latents per `shared/spec/speedup.md` §2 and `sampling.md` §2–3. */
export const SETTINGS: readonly VideoSetting[] = [
  {
    // HCAE 192×320, 32 frames → (8, 6, 10); baseline 192×336, 33 frames → (9, 24, 42) / 2.
    key: "256px",
    video: "256px 16:9, 32 frames",
    suffix: "",
    pipelines: [
      {
        name: "high-compression",
        clip: "192x320, 32 frames",
        latent: [8, 6, 10],
        inChannels: 128,
        patch: 1,
      },
      {
        name: "baseline",
        clip: "192x336, 33 frames",
        latent: [9, 24, 42],
        inChannels: 64,
        patch: 2,
      },
    ],
    inQuick: true,
    timing: (_p, kind, quick) =>
      kind === "fwd" ? { warmup: 1, iters: quick ? 1 : 2 } : { warmup: quick ? 0 : 1, iters: 1 },
  },
  {
    // HCAE 576×1024, 32 frames → (8, 18, 32); baseline 576×1024, 33 frames → (9, 72, 128) / 2.
    // A baseline forward takes minutes here (training step ~3x), so each case is timed once; the
    // high-compression case warms up once first (seconds), which compiles the kernels both
    // pipelines use, and the baseline is timed without a warm-up (would add minutes for < 1%).
    key: "768px",
    video: "768px 16:9, 32 frames",
    suffix: " 768px",
    pipelines: [
      {
        name: "high-compression",
        clip: "576x1024, 32 frames",
        latent: [8, 18, 32],
        inChannels: 128,
        patch: 1,
      },
      {
        name: "baseline",
        clip: "576x1024, 33 frames",
        latent: [9, 72, 128],
        inChannels: 64,
        patch: 2,
      },
    ],
    inQuick: false,
    timing: (p) => ({ warmup: p.name === "baseline" ? 0 : 1, iters: 1 }),
  },
];

const TEXT = 512;

/** Label of the baseline pipeline in the speed-up records' `peer` field. */
const BASELINE_PEER = "kino baseline (HunyuanVideo VAE 4x8x8, patch 2)";

/** FLOPs of one forward by the model of speedup.md §3, for any width/depth. */
export function mmditForwardFlops(c: MMDiTConfig, n: number, lt: number): number {
  const H = c.hiddenSize;
  const L = n + lt;
  const blocks = c.depth + c.depthSingleBlocks;
  const r = c.mlpRatio;
  // per token: double block stream 3H² + H² + 2rH²; single block 2H² + (1+r)H² + (1+r)H²
  const linear = 2 * L * H * H * (c.depth * (4 + 2 * r) + c.depthSingleBlocks * (4 + 2 * r));
  const attn = blocks * 4 * H * L * L;
  const io = 2 * n * H * (c.inChannels * 2 + c.patchSize ** 2 + c.inChannels) +
    2 * lt * c.contextInDim * H;
  return linear + attn + io;
}

/** Bench configuration: the real block structure at width 256 (4 heads of 64), 2 + 4 blocks. */
function benchConfig(p: Pipeline): MMDiTConfig {
  return {
    ...mmditPreset("small"),
    name: `bench-${p.name}`,
    inChannels: p.inChannels,
    patchSize: p.patch,
  };
}

/** The full-size 11.9B model of a pipeline (speedup.md §1). */
function fullConfig(p: Pipeline): MMDiTConfig {
  return { ...mmditPreset(p.patch === 1 ? "hcae" : "baseline-768"), inChannels: p.inChannels };
}

/** Forward FLOPs of both pipelines, bench model and full-size model, and their ratios. */
export interface FlopModel {
  hc: number;
  base: number;
  hcFull: number;
  baseFull: number;
  /** base / hc on the bench model. */
  predicted: number;
  /** baseFull / hcFull on the full-size model at the same token counts. */
  predictedFull: number;
}

/** The FLOP model's forward costs of a setting (speedup.md §3). */
export function flopModel(s: VideoSetting): FlopModel {
  const [hcP, baseP] = s.pipelines;
  const hc = mmditForwardFlops(benchConfig(hcP), imageTokens(hcP), TEXT);
  const base = mmditForwardFlops(benchConfig(baseP), imageTokens(baseP), TEXT);
  const hcFull = mmditForwardFlops(fullConfig(hcP), imageTokens(hcP), TEXT);
  const baseFull = mmditForwardFlops(fullConfig(baseP), imageTokens(baseP), TEXT);
  return { hc, base, hcFull, baseFull, predicted: base / hc, predictedFull: baseFull / hcFull };
}

/** The inputs of one sample of a pipeline (deterministic). */
function makeInputs(cfg: MMDiTConfig, p: Pipeline) {
  const [T, h, w] = tokenGrid(p);
  const n = T * h * w;
  const ids = new Float32Array(n * 3);
  for (let t = 0, k = 0; t < T; t++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, k++) ids.set([t, y, x], 3 * k);
    }
  }
  const img = fromData(rand(n * cfg.inChannels, 3), [1, n, cfg.inChannels], "f32");
  const txt = fromData(rand(TEXT * cfg.contextInDim, 5), [1, TEXT, cfg.contextInDim], "f32");
  const yVec = fromData(rand(cfg.vecInDim, 6), [1, cfg.vecInDim], "f32");
  const timesteps = fromData(new Float32Array([0.7]), [1], "f32");
  const tensors: Tensor[] = [img, txt, yVec, timesteps];
  return {
    inputs: { img, imgIds: ids, txt, txtIds: new Float32Array(TEXT * 3), timesteps, yVec },
    n,
    dispose: () => tensors.forEach((x) => x.dispose()),
  };
}

/** Times MMDiT forwards (no gradients): ms per forward and peak pool bytes. */
async function timeForward(cfg: MMDiTConfig, p: Pipeline, timing: Timing) {
  const dit = new MMDiT(cfg);
  dit.params.initialize(7);
  const { inputs, dispose } = makeInputs(cfg, p);
  const rt = runtime();
  rt.pool.resetPeak();
  const time = await timeRun(() => {
    const y = noGrad(() => tidy(() => dit.forward(inputs)));
    realize([y]);
    y.dispose();
  }, { ...timing, sync: () => rt.sync() });
  const peak = rt.pool.stats().peakInUse;
  dispose();
  dit.params.dispose();
  return { ...time, peak };
}

/** Times training steps (forward, backward, AdamW; no recomputation): ms per step, peak bytes. */
async function timeTrainStep(cfg: MMDiTConfig, p: Pipeline, timing: Timing) {
  const dit = new MMDiT(cfg);
  dit.params.initialize(7);
  const trainer = new Trainer(dit, { lr: 1e-4, objective: { t5Dropout: 0, clipDropout: 0 } });
  const { inputs, n, dispose } = makeInputs(cfg, p);
  const target = fromData(rand(n * cfg.inChannels, 4), [1, n, cfg.inChannels], "f32");
  let peak = 0;
  const time = await timeRun(async () => {
    const r = await trainer.stepOnTarget(inputs, target);
    peak = Math.max(peak, r.memPeak);
  }, { ...timing, sync: () => runtime().sync() });
  target.dispose();
  dispose();
  trainer.dispose();
  dit.params.dispose();
  return { ...time, peak };
}

/**
 * The two cases (high-compression, baseline) of one setting and kind; the second one carries the
 * notes (per-pipeline figures, measured vs predicted ratio) and the `speedup <key> <kind>` record.
 */
function speedupCases(
  s: VideoSetting,
  kind: "fwd" | "train",
  quick: boolean,
): (Case & Summarised)[] {
  const runs = new Map<string, RunTime>();
  const notes: string[] = [];
  const model = flopModel(s);
  // Training = forward + backward (2x forward) for both pipelines: the FLOP ratio is the forward's.
  const mult = kind === "fwd" ? 1 : 3;
  const [hcP, baseP] = s.pipelines;
  const blocks = (c: MMDiTConfig) => c.depth + c.depthSingleBlocks;
  const describe = (c: MMDiTConfig, tokens: string) =>
    `${s.video}: ${tokens} img + ${TEXT} txt tokens, hidden ${c.hiddenSize}, ${blocks(c)} blocks` +
    (kind === "train" ? ", batch 1" : "");
  const record = (): BenchRecord | null => {
    const hc = runs.get(hcP.name), base = runs.get(baseP.name);
    if (hc === undefined || base === undefined) return null;
    const cfg = benchConfig(hcP);
    const hcMs = hc.ms, baseMs = base.ms;
    return {
      name: `speedup ${s.key} ${kind}`,
      shape: describe(cfg, `${imageTokens(hcP)} vs ${imageTokens(baseP)}`),
      kino_ms: hcMs,
      kino_gflops: gflops(mult * model.hc, hcMs),
      kino_gbs: null,
      peer: BASELINE_PEER,
      peer_ms: baseMs,
      ratio: baseMs / hcMs,
      flops: mult * model.hc,
      bytes: null,
      peer_flops: mult * model.base,
      predicted: model.predicted,
      predicted_full: model.predictedFull,
      flops_full: mult * model.hcFull,
      peer_flops_full: mult * model.baseFull,
      kino_cpu_ms: hc.cpuMs,
      peer_cpu_ms: base.cpuMs,
      cpu_ratio: base.cpuMs / hc.cpuMs,
    };
  };
  return s.pipelines.map((p, idx) => {
    const cfg = benchConfig(p);
    const n = imageTokens(p);
    const flops = mult * mmditForwardFlops(cfg, n, TEXT);
    const timing = s.timing(p, kind, quick);
    const last = idx === s.pipelines.length - 1;
    return {
      name: `${kind === "fwd" ? "mmdit fwd" : "mmdit train step"} ${p.name}${s.suffix}`,
      shape: describe(cfg, `${n}`),
      flops,
      iters: timing.iters,
      notes: last ? notes : undefined,
      summary: last ? record : undefined,
      kino: async () => {
        const r = await (kind === "fwd" ? timeForward : timeTrainStep)(cfg, p, timing);
        runs.set(p.name, r);
        const [t, h, w] = tokenGrid(p);
        notes.push(
          `${p.name} (${p.clip} → latent ${p.latent.join("x")}, patch ${p.patch} → ` +
            `${t}x${h}x${w} = ${n} image tokens): ${r.ms.toFixed(0)} ms per ` +
            `${kind === "fwd" ? "forward" : "step"} (${timing.warmup} warm-up, ${timing.iters} ` +
            `timed), ${(flops / 1e9).toFixed(1)} GFLOP, peak ${
              (r.peak / 2 ** 20).toFixed(0)
            } MiB; ` +
            `${r.cpuMs.toFixed(0)} ms of process CPU (${(r.cpuMs / r.ms).toFixed(2)} cores busy)`,
        );
        const rec = record();
        if (rec) {
          notes.push(
            `speed-up baseline/high-compression (${s.video}, ${
              kind === "fwd" ? "forward" : "training step"
            }): ` +
              `measured ${rec.ratio!.toFixed(2)}x (CPU time ${rec.cpu_ratio!.toFixed(2)}x); ` +
              `FLOP model (speedup.md §3) ` +
              `${model.predicted.toFixed(2)}x for this model (measured = ` +
              `${(100 * rec.ratio! / model.predicted).toFixed(0)}% of it), ` +
              `${
                model.predictedFull.toFixed(2)
              }x for the full-size 11.9B model at these token counts` +
              (kind === "train"
                ? " (transformer only, batch 1; the reference reports 5.2x for its whole training loop)"
                : ""),
          );
        }
        return r.ms;
      },
    };
  });
}

/** One forward per pipeline and setting (768px only without `--quick`). */
export function mmditCases(quick: boolean): (Case & Summarised)[] {
  return SETTINGS.filter((s) => !quick || s.inQuick).flatMap((s) => speedupCases(s, "fwd", quick));
}

/**
 * One training step (forward, backward, AdamW; no recomputation) per pipeline and setting on the
 * same reduced model and token counts as {@linkcode mmditCases}: time, peak memory and the ratio
 * (the reference claims 5.2x in training throughput for the full pipeline, spec speedup.md §5).
 */
export function mmditTrainCases(quick: boolean): (Case & Summarised)[] {
  return SETTINGS.filter((s) => !quick || s.inQuick).flatMap((s) =>
    speedupCases(s, "train", quick)
  );
}
