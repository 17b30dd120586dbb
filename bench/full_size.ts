/**
 * The full-size pipeline without its 30 GB of weights (issue 18, `--synthetic-weights`): the real
 * architecture — T5-XXL and CLIP-L text encoders, the `hcae` (or `baseline-768`) MMDiT, the
 * `f32t4c128` Video DC-AE decoder — with seeded random weights made on the GPU
 * ({@linkcode ParamSet.synthesize}), stored in bf16 as released. The text encoders and the decoder
 * are made resident, the MMDiT block by block as its forward needs them
 * ({@linkcode WeightStreamer.synthetic}), so neither host nor GPU memory ever holds the whole model.
 *
 * One run: the T5 + CLIP encode of one prompt row (512 + 77 token ids), one MMDiT forward of one
 * guidance branch, the decode of its latent. Each stage reports its time, the peak of GPU memory in
 * use (the buffer pool), the process's peak resident host memory, and what the memory planner
 * (`models/plan.ts`, what `--dry-run` prints) predicted for the same stage. The values are random:
 * the output is noise, labelled as synthetic.
 *
 * @module
 */
import { runtime } from "../engine/runtime.ts";
import { fromData, realize } from "../engine/graph.ts";
import { keep, noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { contiguous, permute, reshape } from "../engine/ops/movement.ts";
import { MMDiT } from "../models/mmdit/model.ts";
import { type MMDiTConfig, mmditPreset } from "../models/mmdit/config.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import { type DcAeConfig, dcAePreset } from "../models/dc_ae/config.ts";
import { T5_V1_1_XXL, type T5Config, T5EncoderModel } from "../models/text/t5.ts";
import { CLIP_VIT_L14_TEXT, type ClipTextConfig, CLIPTextModel } from "../models/text/clip.ts";
import { WeightStreamer } from "../models/streaming.ts";
import { modelSizes, planMemory, RELEASE_TEXT_ENCODERS, type StagePlan } from "../models/plan.ts";
import type { ParamSet } from "../models/params.ts";
import { positionIds, textIds } from "../models/sampling/pack.ts";
import { rand } from "./_kino.ts";

/** Figures of one stage. */
export interface StageFigures {
  /** Stage name, as in the plan. */
  stage: string;
  /** Time to make the stage's synthetic weights on the GPU (resident stages), ms. */
  weightsMs: number;
  /** Time of the stage's computation (streamed weights included for the MMDiT), ms. */
  ms: number;
  /** Peak bytes of GPU memory in use during the stage (weights and activations). */
  peakDevice: number;
  /** Peak resident host memory of the process so far (VmHWM), bytes. */
  peakHost: number;
  /** The planner's estimate of the stage (weights or one streamed group, plus activations). */
  predicted: number;
}

/** Options of {@linkcode fullSizeRun}. */
export interface FullSizeOptions {
  /** MMDiT preset; default `hcae`. */
  preset?: string;
  /** Video height and width in pixels; default 256 × 256. */
  height?: number;
  width?: number;
  /** Seed of the synthetic weights and inputs; default 0. */
  seed?: number;
  /** Called with a line of progress. */
  log?: (line: string) => void;
  /** Smaller models of the same classes (tests); default the release sizes. */
  models?: { dit?: MMDiTConfig; ae?: DcAeConfig; t5?: T5Config; clip?: ClipTextConfig };
}

function peakHost(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : Deno.memoryUsage().rss;
  } catch {
    return Deno.memoryUsage().rss;
  }
}

function synthesizeAll(params: ParamSet, seed: number): void {
  for (const spec of params.list()) params.synthesize(spec.name, seed);
  realize(params.tensors());
}

/** Runs the three stages once; see the module doc. */
export async function fullSizeRun(options: FullSizeOptions = {}): Promise<StageFigures[]> {
  const rt = runtime();
  const log = options.log ?? (() => {});
  const seed = options.seed ?? 0;
  const H = options.height ?? 256, W = options.width ?? 256;
  const ditCfg = options.models?.dit ?? mmditPreset(options.preset ?? "hcae");
  const aeCfg = options.models?.ae ?? dcAePreset("f32t4c128");
  const t5Cfg = options.models?.t5 ?? T5_V1_1_XXL;
  const clipCfg = options.models?.clip ?? CLIP_VIT_L14_TEXT;
  const D = aeCfg.spatialCompression;
  const latent: [number, number, number, number] = [aeCfg.latentChannels, 1, H / D, W / D];
  const dit = new MMDiT(ditCfg, { storage: "bf16" });
  const ae = new DcAe(aeCfg, { storage: "bf16" });
  const sizes = modelSizes(dit.params.list(), ae.params.list());
  const plan = planMemory({
    dit: ditCfg,
    ...sizes,
    ae: aeCfg,
    text: options.models?.t5 ? null : { ...RELEASE_TEXT_ENCODERS },
    weightBytes: 2,
    batch: 1,
    video: { frames: 1, height: H, width: W },
    latent,
    gpuBytes: 1, // nothing fits: the plan streams the MMDiT, as this run does
    maxBinding: rt.maxBinding,
    maxBuffer: rt.maxBufferSize,
  });
  const predicted = (name: string) =>
    plan.stages.find((s: StagePlan) => s.stage === name)?.total ?? NaN;
  const figures: StageFigures[] = [];
  const stage = async (
    name: string,
    make: () => void,
    run: () => void | Promise<void>,
  ): Promise<void> => {
    rt.pool.trim();
    rt.pool.resetPeak();
    let t0 = performance.now();
    make();
    await rt.sync();
    const weightsMs = performance.now() - t0;
    log(`${name}: weights made in ${(weightsMs / 1000).toFixed(1)} s`);
    t0 = performance.now();
    await run();
    await rt.sync();
    const ms = performance.now() - t0;
    const f: StageFigures = {
      stage: name,
      weightsMs,
      ms,
      peakDevice: rt.pool.stats().peakInUse,
      peakHost: peakHost(),
      predicted: predicted(name),
    };
    log(
      `${name}: ${(ms / 1000).toFixed(1)} s, GPU peak ${(f.peakDevice / 2 ** 30).toFixed(2)} GiB ` +
        `(planned ${(f.predicted / 2 ** 30).toFixed(2)} GiB), host peak ` +
        `${(f.peakHost / 2 ** 30).toFixed(2)} GiB`,
    );
    figures.push(f);
  };

  // 1. text encoders: T5-XXL (512 ids) and CLIP-L (77 ids), one prompt row
  let txt = null as Tensor | null;
  let yVec = null as Tensor | null;
  const t5 = new T5EncoderModel(t5Cfg, { storage: "bf16" });
  const clip = new CLIPTextModel(clipCfg, { storage: "bf16" });
  const ids = (n: number, vocab: number, s: number) =>
    Int32Array.from(rand(n, s), (x) => Math.floor((x + 0.5) * (vocab - 1)));
  await stage("text encoders", () => {
    synthesizeAll(t5.params, seed);
    synthesizeAll(clip.params, seed + 1);
    t5.shared.initialize(seed + 2);
    clip.tokenEmbedding.initialize(seed + 3);
  }, async () => {
    const T5L = 512, CL = clipCfg.maxPositions;
    txt = noGrad(() =>
      tidy(() => keep(t5.forward({ ids: ids(T5L, t5Cfg.vocabSize, 5), batch: 1, length: T5L })))
    );
    const tokens = ids(CL, clipCfg.vocabSize, 6);
    yVec = noGrad(() =>
      tidy(() => keep(clip.forward({ ids: tokens, batch: 1, length: CL }).pooled))
    );
    realize([txt!, yVec!]);
    await rt.sync();
  });
  t5.dispose();
  clip.dispose();

  // 2. one MMDiT forward of one guidance branch, weights made block by block
  const [C, T, h, w] = latent;
  const p = ditCfg.patchSize;
  const N = T * (h / p) * (w / p);
  let z = null as Tensor | null;
  await stage("MMDiT denoising", () => {
    WeightStreamer.synthetic(dit.params, seed + 4).attach(dit);
  }, () => {
    const img = fromData(rand(N * C * p * p, 7), [1, N, C * p * p], "f32");
    const cond = fromData(new Float32Array(N * (C + 1) * p * p), [1, N, (C + 1) * p * p], "f32");
    const ts = fromData(new Float32Array([0.9]), [1], "f32");
    const out = noGrad(() =>
      tidy(() =>
        keep(dit.forward({
          img,
          imgIds: positionIds(1, T, h / p, w / p),
          txt: txt!,
          txtIds: textIds(1, txt!.shape[1]!),
          timesteps: ts,
          yVec: yVec!,
          cond,
        }))
      )
    );
    realize([out]);
    for (const t of [img, cond, ts]) t.dispose();
    // the velocity as a latent [1, C, T, h, w] (patch 1: tokens are positions)
    z = noGrad(() => tidy(() => keep(tokensToLatent(out, [1, C, T, h, w]))));
    out.dispose();
  });
  txt!.dispose();
  yVec!.dispose();
  dit.params.dispose();

  // 3. the decoder, resident
  await stage("DC-AE decoding", () => {
    // the whole autoencoder, as a generation holds it (the encoder serves image conditions)
    synthesizeAll(ae.params, seed + 8);
  }, async () => {
    const x = noGrad(() => tidy(() => keep(ae.decode(z!))));
    realize([x]);
    await rt.sync();
    x.dispose();
  });
  z!.dispose();
  ae.params.dispose();
  return figures;
}

/** `[1, N, C]` tokens as a `[1, C, T, h, w]` latent (a permuted copy). */
function tokensToLatent(t: Tensor, shape: [number, number, number, number, number]): Tensor {
  const [, C, T, h, w] = shape;
  return contiguous(permute(reshape(t, [1, T, h, w, C]), [0, 4, 1, 2, 3]));
}
