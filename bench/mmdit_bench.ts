/**
 * The headline of the high-compression pipeline, reproduced in this engine: one MMDiT forward at
 * the token counts of the high-compression pipeline (Video DC-AE 4×32×32, patch 1) versus the
 * baseline pipeline (HunyuanVideo VAE 4×8×8, patch 2) for the same video, on the same reduced
 * model (the real architecture at a width and depth this machine can run), next to the ratio the
 * FLOP model of `shared/spec/speedup.md` §3 predicts for that model and for the full-size one.
 */
import { fromData, realize } from "../engine/graph.ts";
import { runtime } from "../engine/runtime.ts";
import { noGrad, tidy } from "../engine/tensor.ts";
import { MMDiT } from "../models/mmdit/model.ts";
import { type MMDiTConfig, mmditPreset } from "../models/mmdit/config.ts";
import { timeIt } from "./_report.ts";
import { Trainer } from "../train/trainer.ts";
import { type Case, rand } from "./_kino.ts";

/** Latent grid (T', h/p, w/p) and token width of a pipeline for a video. */
interface Pipeline {
  name: string;
  inChannels: number;
  patch: number;
  grid: [number, number, number];
}

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

/** 256px 16:9, 32 frames: HCAE 192×320 → (8, 6, 10); baseline 192×336, 33 frames → (9, 12, 21). */
const VIDEO = "256px 16:9, 32 frames";
const PIPELINES: Pipeline[] = [
  { name: "high-compression", inChannels: 128, patch: 1, grid: [8, 6, 10] },
  { name: "baseline", inChannels: 64, patch: 2, grid: [9, 12, 21] },
];
const TEXT = 512;

/** Bench configuration: the real block structure at width 256 (4 heads of 64), 2 + 4 blocks. */
function benchConfig(p: Pipeline): MMDiTConfig {
  return {
    ...mmditPreset("small"),
    name: `bench-${p.name}`,
    inChannels: p.inChannels,
    patchSize: p.patch,
  };
}

/** One forward per pipeline, then the measured and predicted ratios as notes. */
export function mmditCases(quick: boolean): Case[] {
  const ms = new Map<string, number>();
  const notes: string[] = [];
  return PIPELINES.map((p, idx) => {
    const cfg = benchConfig(p);
    const [T, h, w] = p.grid;
    const n = T * h * w;
    const flops = mmditForwardFlops(cfg, n, TEXT);
    return {
      name: `mmdit fwd ${p.name}`,
      shape: `${VIDEO}: ${n} img + ${TEXT} txt tokens, hidden ${cfg.hiddenSize}, ${
        cfg.depth + cfg.depthSingleBlocks
      } blocks`,
      flops,
      iters: quick ? 1 : 2,
      notes: idx === PIPELINES.length - 1 ? notes : undefined,
      kino: async () => {
        const dit = new MMDiT(cfg);
        dit.params.initialize(7);
        const ids = new Float32Array(n * 3);
        for (let t = 0, k = 0; t < T; t++) {
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < w; x++, k++) ids.set([t, y, x], 3 * k);
          }
        }
        const img = fromData(rand(n * cfg.inChannels, 3), [1, n, cfg.inChannels], "f32");
        const txt = fromData(rand(TEXT * cfg.contextInDim, 5), [1, TEXT, cfg.contextInDim], "f32");
        const yVec = fromData(rand(cfg.vecInDim, 6), [1, cfg.vecInDim], "f32");
        const ts = fromData(new Float32Array([0.7]), [1], "f32");
        const rt = runtime();
        rt.pool.resetPeak();
        const t = await timeIt(() => {
          const y = noGrad(() =>
            tidy(() =>
              dit.forward({
                img,
                imgIds: ids,
                txt,
                txtIds: new Float32Array(TEXT * 3),
                timesteps: ts,
                yVec,
              })
            )
          );
          realize([y]);
          y.dispose();
        }, { warmup: 1, iters: quick ? 1 : 2, sync: () => rt.sync() });
        const peak = rt.pool.stats().peakInUse;
        for (const x of [img, txt, yVec, ts]) x.dispose();
        dit.params.dispose();
        ms.set(p.name, t);
        notes.push(
          `${p.name}: ${n} image tokens, ${t.toFixed(0)} ms per forward, ${
            (flops / 1e9).toFixed(1)
          } GFLOP, peak ${(peak / 2 ** 20).toFixed(0)} MiB`,
        );
        if (ms.size === PIPELINES.length) {
          const [hc, base] = PIPELINES;
          const measured = ms.get(base!.name)! / ms.get(hc!.name)!;
          const nOf = (q: Pipeline) => q.grid[0] * q.grid[1] * q.grid[2];
          const model = mmditForwardFlops(benchConfig(base!), nOf(base!), TEXT) /
            mmditForwardFlops(benchConfig(hc!), nOf(hc!), TEXT);
          const full = mmditForwardFlops(mmditPreset("baseline-768"), nOf(base!), TEXT) /
            mmditForwardFlops(mmditPreset("hcae"), nOf(hc!), TEXT);
          notes.push(
            `speed-up baseline/high-compression: measured ${measured.toFixed(2)}x; FLOP model ` +
              `(speedup.md §3) ${model.toFixed(2)}x for this model, ${full.toFixed(2)}x for the ` +
              `full-size 11.9B model at these token counts`,
          );
        }
        return t;
      },
    };
  });
}

/**
 * One training step (forward, backward, AdamW; no recomputation) per pipeline on the same
 * reduced model and token counts as {@linkcode mmditCases}: time, peak memory and the ratio
 * (the reference claims 5.2x in training throughput for the full pipeline, spec speedup.md §5).
 */
export function mmditTrainCases(quick: boolean): Case[] {
  const ms = new Map<string, number>();
  const notes: string[] = [];
  return PIPELINES.map((p, idx) => {
    const cfg = benchConfig(p);
    const [T, h, w] = p.grid;
    const n = T * h * w;
    return {
      name: `mmdit train step ${p.name}`,
      shape: `${VIDEO}: ${n} img + ${TEXT} txt tokens, hidden ${cfg.hiddenSize}, ${
        cfg.depth + cfg.depthSingleBlocks
      } blocks, batch 1`,
      flops: 3 * mmditForwardFlops(cfg, n, TEXT),
      iters: 1,
      notes: idx === PIPELINES.length - 1 ? notes : undefined,
      kino: async () => {
        const dit = new MMDiT(cfg);
        dit.params.initialize(7);
        const trainer = new Trainer(dit, { lr: 1e-4, objective: { t5Dropout: 0, clipDropout: 0 } });
        const ids = new Float32Array(n * 3);
        for (let t = 0, k = 0; t < T; t++) {
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < w; x++, k++) ids.set([t, y, x], 3 * k);
          }
        }
        const img = fromData(rand(n * cfg.inChannels, 3), [1, n, cfg.inChannels], "f32");
        const target = fromData(rand(n * cfg.inChannels, 4), [1, n, cfg.inChannels], "f32");
        const txt = fromData(rand(TEXT * cfg.contextInDim, 5), [1, TEXT, cfg.contextInDim], "f32");
        const yVec = fromData(rand(cfg.vecInDim, 6), [1, cfg.vecInDim], "f32");
        const ts = fromData(new Float32Array([0.7]), [1], "f32");
        const inputs = {
          img,
          imgIds: ids,
          txt,
          txtIds: new Float32Array(TEXT * 3),
          timesteps: ts,
          yVec,
        };
        let peak = 0;
        const t = await timeIt(async () => {
          const r = await trainer.stepOnTarget(inputs, target);
          peak = Math.max(peak, r.memPeak);
        }, { warmup: quick ? 0 : 1, iters: 1, sync: () => runtime().sync() });
        for (const x of [img, target, txt, yVec, ts]) x.dispose();
        trainer.dispose();
        dit.params.dispose();
        ms.set(p.name, t);
        notes.push(
          `${p.name}: ${n} image tokens, ${t.toFixed(0)} ms per step, peak ${
            (peak / 2 ** 20).toFixed(0)
          } MiB`,
        );
        if (ms.size === PIPELINES.length) {
          const [hc, base] = PIPELINES;
          notes.push(
            `training speed-up baseline/high-compression: measured ${
              (ms.get(base!.name)! / ms.get(hc!.name)!).toFixed(2)
            }x ` +
              `(transformer only, batch 1; the reference reports 5.2x for its whole training loop)`,
          );
        }
        return t;
      },
    };
  });
}
