/**
 * The memory plan of a generation (what `deno task infer --dry-run` prints): bytes of every
 * model's weights in their storage dtype, an estimate of the activations of each stage, the
 * largest single tensor (which must fit one storage binding), and the execution mode chosen for
 * the denoiser: resident weights, or weights streamed block by block from host memory
 * ({@linkcode WeightStreamer}) when the GPU cannot hold them next to the activations.
 *
 * The stages run one after the other and free their models in between (text encoders, then the
 * MMDiT, then the DC-AE decoder), so the peak is the largest stage, not the sum.
 *
 * @module
 */
import type { MMDiTConfig } from "./mmdit/config.ts";

/** Inputs of {@linkcode planMemory}. */
export interface PlanInput {
  /** The MMDiT's configuration. */
  dit: MMDiTConfig;
  /** Parameters of the MMDiT (from a shape-only build). */
  ditParams: number;
  /** Largest streaming group of the MMDiT (one double block), parameters. */
  ditLargestGroup: number;
  /** Parameters of the DC-AE (from a shape-only build). */
  aeParams: number;
  /** Decoder width (channels) of the first, full-resolution stage. */
  aeWidth0: number;
  /** Parameters of the text encoders (from a shape-only build). */
  textParams: number;
  /** Text encoder hidden width (T5: 4096). */
  textWidth: number;
  /** Text tokens per sample (T5: 512). */
  textLength: number;
  /** Bytes per stored weight (2 for bf16/f16, 4 for f32). */
  weightBytes: number;
  /** Model rows per step (3 × prompts with CFG). */
  batch: number;
  /** Image tokens per sample. */
  imageTokens: number;
  /** Decoder tile: frames × height × width at full resolution. */
  decodeTile: [number, number, number];
  /** GPU memory budget in bytes. */
  gpuBytes: number;
  /** The device's storage-binding limit in bytes (`maxStorageBufferBindingSize`). */
  maxBinding: number;
}

/** One stage of the plan. */
export interface StagePlan {
  /** Stage name (`text encoders`, `MMDiT denoising`, `DC-AE decoding`). */
  stage: string;
  /** Bytes of the stage's weights in their storage dtype. */
  weights: number;
  /** Estimated bytes of the stage's live activations. */
  activations: number;
  /** Weights plus activations, in bytes. */
  total: number;
}

/** The plan. */
export interface MemoryPlan {
  /** The stages, in execution order. */
  stages: StagePlan[];
  /** Estimated peak GPU bytes in the chosen mode (the largest stage). */
  peak: number;
  /** `resident`: all weights on the GPU; `streamed`: MMDiT blocks uploaded one at a time. */
  mode: "resident" | "streamed" | "does-not-fit";
  /** The largest single tensor (description and bytes); it must fit one storage binding. */
  largestTensor: { what: string; bytes: number };
  /** Whether the largest tensor fits the device's storage-binding limit. */
  fitsBinding: boolean;
  /** The plan as indented text lines, for printing. */
  lines: string[];
}

const GiB = 2 ** 30;
const fmt = (b: number) =>
  b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;

/** Computes the plan; see the module doc. */
export function planMemory(p: PlanInput): MemoryPlan {
  const f32 = 4;
  const H = p.dit.hiddenSize;
  const L = p.imageTokens + p.textLength;
  const mlp = H * p.dit.mlpRatio;
  // live f32 activations inside a block without gradients: the two streams / joint sequence,
  // the modulated input, q, k, v, attention output (6·L·H), and the MLP hidden twice (2·L·r·H)
  const ditAct = p.batch * L * f32 * (6 * H + 2 * mlp);
  const textAct = p.textLength * f32 * (8 * p.textWidth) + p.textLength ** 2 * f32 * 64;
  const [tt, th, tw] = p.decodeTile;
  const aeAct = 3 * p.aeWidth0 * tt * th * tw * f32;
  const stages: StagePlan[] = [
    {
      stage: "text encoders",
      weights: p.textParams * p.weightBytes,
      activations: textAct,
      total: 0,
    },
    {
      stage: "MMDiT denoising",
      weights: p.ditParams * p.weightBytes,
      activations: ditAct,
      total: 0,
    },
    { stage: "DC-AE decoding", weights: p.aeParams * p.weightBytes, activations: aeAct, total: 0 },
  ];
  for (const s of stages) s.total = s.weights + s.activations;
  const peakResident = Math.max(...stages.map((s) => s.total));
  const streamedDit = p.ditLargestGroup * p.weightBytes + ditAct;
  const others = Math.max(stages[0]!.total, stages[2]!.total);
  let mode: MemoryPlan["mode"] = "resident";
  let peak = peakResident;
  if (peakResident > p.gpuBytes) {
    peak = Math.max(streamedDit, others);
    mode = peak <= p.gpuBytes ? "streamed" : "does-not-fit";
  }
  const candidates = [
    { what: "MMDiT MLP hidden [B, L, 4H] f32", bytes: p.batch * L * mlp * f32 },
    { what: "MMDiT hidden state [B, L, H] f32", bytes: p.batch * L * H * f32 },
    { what: "DC-AE full-resolution activation (one tile)", bytes: p.aeWidth0 * tt * th * tw * f32 },
  ];
  const largestTensor = candidates.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const fitsBinding = largestTensor.bytes <= p.maxBinding;
  const lines = [
    ...stages.map((s) =>
      `  ${s.stage.padEnd(16)} weights ${fmt(s.weights).padStart(10)}  activations ~${
        fmt(s.activations).padStart(10)
      }  total ~${fmt(s.total)}`
    ),
    `  GPU budget ${fmt(p.gpuBytes)}; peak ~${fmt(peak)}; mode: ${
      mode === "resident"
        ? "resident (all weights of a stage on the GPU)"
        : mode === "streamed"
        ? `streamed (MMDiT weights kept in host memory, one block of ${
          fmt(p.ditLargestGroup * p.weightBytes)
        } on the GPU at a time)`
        : "does not fit even when streaming: lower the resolution, frames or batch"
    }`,
    `  largest single tensor: ${largestTensor.what} = ${fmt(largestTensor.bytes)} ` +
    (fitsBinding
      ? `(within the ${fmt(p.maxBinding)} storage-binding limit)`
      : `(over this device's ${fmt(p.maxBinding)} storage-binding limit: needs a GPU whose ` +
        `maxStorageBufferBindingSize is at least that, or a smaller video)`),
  ];
  return { stages, peak, mode, largestTensor, fitsBinding, lines };
}
