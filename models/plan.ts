/**
 * The memory plan of a generation (what `deno task infer --dry-run` prints), for a device given
 * by three numbers: its GPU memory, its storage-binding limit (`maxStorageBufferBindingSize`) and
 * its buffer limit (`maxBufferSize`). For every stage (text encoders, MMDiT denoising, DC-AE
 * decoding) it estimates the weights (in their storage dtype), the live activations and the
 * largest single tensor, and chooses how the stage runs:
 *
 * - **resident**: the stage's weights and activations fit GPU memory together;
 * - **streamed**: the MMDiT's weights stay in host memory and one block at a time is uploaded
 *   ({@linkcode WeightStreamer}); only the MMDiT can stream;
 * - **segmented**: some tensor is over the binding limit but fits one buffer: ops bind it as
 *   several windows (`engine/window.ts`); it runs, a little slower;
 * - **chunked**: some tensor would be over the buffer limit (or the stage would not fit memory
 *   even streamed), so the stage must be split: the MMDiT runs the three guidance branches one
 *   at a time (batch 1 instead of 3), then also cuts its widest projections into token chunks; the
 *   DC-AE decodes shorter temporal tiles, then smaller spatial tiles. The plan names the split and
 *   the largest tensor after it.
 *
 * A stage is resident or streamed and, independently, segmented and/or chunked. Resident is
 * preferred to streamed (streaming re-uploads every weight on every forward), then the least split
 * that fits (a split costs time); when even the finest split leaves a tensor over
 * `maxBufferSize`, {@linkcode planMemory} throws a {@linkcode PlanError} naming the tensor, its
 * bytes and the limit, before any GPU work. When no split fits the GPU memory, the stage is marked
 * as not fitting (`fits: false`) and the plan says so.
 *
 * The stages run one after the other and free their models in between, so the peak is the largest
 * stage, not the sum. Activation figures are estimates (the live tensors at the widest point of a
 * block, f32); tensor sizes are exact for the shapes the models build.
 *
 * @module
 */
import type { MMDiTConfig } from "./mmdit/config.ts";
import type { DcAeConfig } from "./dc_ae/config.ts";
import { sizeClass } from "../engine/runtime.ts";
import { mmditGroup } from "./streaming.ts";

/** Sizes of the text encoders (T5 + CLIP) the plan needs. */
export interface TextEncoderSize {
  /** Parameters of both encoders, token tables included. */
  params: number;
  /** Parameters kept in host memory (the token-embedding tables). */
  hostParams: number;
  /** Hidden width of the T5 encoder (4096). */
  width: number;
  /** Feed-forward width of the T5 encoder (10240). */
  ff: number;
  /** Attention heads of the T5 encoder (64). */
  heads: number;
  /** Text tokens per prompt (512). */
  length: number;
}

/**
 * The public T5-v1.1-XXL encoder and CLIP ViT-L/14 text tower of the release (`text-encoders.md`):
 * parameters, token tables (T5 32128 × 4096, CLIP 49408 × 768) and T5's widths.
 */
export const RELEASE_TEXT_ENCODERS: Readonly<TextEncoderSize> = {
  params: 4_762_310_656 + 123_060_480,
  hostParams: 32128 * 4096 + 49408 * 768,
  width: 4096,
  ff: 10240,
  heads: 64,
  length: 512,
};

/** A declared parameter (name and shape), as `ParamSet.list()` gives them. */
export interface ParamLike {
  /** Checkpoint key. */
  name: string;
  /** Shape. */
  shape: readonly number[];
}

/** The parameter counts {@linkcode PlanInput} needs, from the models' declared parameters. */
export interface ModelSizes {
  /** Parameters of the MMDiT. */
  ditParams: number;
  /** Parameters of the MMDiT's largest streaming group (one block). */
  ditLargestGroup: number;
  /** The MMDiT's largest weight (name and shape). */
  ditLargestWeight: ParamLike;
  /** Parameters of the DC-AE. */
  aeParams: number;
  /** The DC-AE's largest weight (name and shape). */
  aeLargestWeight: ParamLike;
}

/**
 * Counts parameters of a shape-only MMDiT and DC-AE (`new MMDiT(cfg).params.list()`,
 * `new DcAe(cfg).params.list()`): totals, the largest streaming group, the largest tensors.
 */
export function modelSizes(dit: readonly ParamLike[], ae: readonly ParamLike[]): ModelSizes {
  const groups = new Map<string, number>();
  let ditParams = 0, aeParams = 0;
  let ditLargestWeight: ParamLike = { name: "", shape: [0] };
  let aeLargestWeight: ParamLike = { name: "", shape: [0] };
  for (const p of dit) {
    const n = prod([...p.shape]);
    const g = mmditGroup(p.name);
    groups.set(g, (groups.get(g) ?? 0) + n);
    ditParams += n;
    if (n > prod([...ditLargestWeight.shape])) ditLargestWeight = p;
  }
  for (const p of ae) {
    const n = prod([...p.shape]);
    aeParams += n;
    if (n > prod([...aeLargestWeight.shape])) aeLargestWeight = p;
  }
  return {
    ditParams,
    ditLargestGroup: Math.max(0, ...groups.values()),
    ditLargestWeight: { name: ditLargestWeight.name, shape: [...ditLargestWeight.shape] },
    aeParams,
    aeLargestWeight: { name: aeLargestWeight.name, shape: [...aeLargestWeight.shape] },
  };
}

/** Inputs of {@linkcode planMemory}. */
export interface PlanInput {
  /** The MMDiT's configuration. */
  dit: MMDiTConfig;
  /** Parameters of the MMDiT (from a shape-only build). */
  ditParams: number;
  /** Largest streaming group of the MMDiT (one double block), parameters. */
  ditLargestGroup: number;
  /** The MMDiT's largest weight; omitted: weights are not considered. */
  ditLargestWeight?: ParamLike;
  /** The DC-AE's configuration (decoder widths, tiling). */
  ae: DcAeConfig;
  /** Parameters of the DC-AE (from a shape-only build). */
  aeParams: number;
  /** The DC-AE's largest weight; omitted: weights are not considered. */
  aeLargestWeight?: ParamLike;
  /** The text encoders, or null when the embeddings are precomputed (no text stage). */
  text: TextEncoderSize | null;
  /** Text tokens per prompt when `text` is null (default 512). */
  textLength?: number;
  /** Bytes per stored weight (2 for bf16/f16, 4 for f32). */
  weightBytes: number;
  /** Model rows per step (3 × prompts with CFG): the three guidance branches. */
  batch: number;
  /** The video: frames kept, height and width in pixels. */
  video: { frames: number; height: number; width: number };
  /** The latent of one sample: `[C, T', h, w]`. */
  latent: [number, number, number, number];
  /** GPU memory budget in bytes. */
  gpuBytes: number;
  /** The device's storage-binding limit in bytes (`maxStorageBufferBindingSize`). */
  maxBinding: number;
  /** The device's buffer limit in bytes (`maxBufferSize`): the largest possible tensor. */
  maxBuffer: number;
}

/** One tensor of the plan. */
export interface TensorPlan {
  /** What it is (`single-block v_mlp output`, ...). */
  what: string;
  /** Its shape. */
  shape: number[];
  /** Its element type (`f32`, or the weights' storage type). */
  dtype: string;
  /** Its size in bytes. */
  bytes: number;
}

/** How a stage runs; see the module doc. */
export type StageMode = "resident" | "streamed" | "segmented" | "chunked";

/** One stage of the plan. */
export interface StagePlan {
  /** Stage name (`text encoders`, `MMDiT denoising`, `DC-AE decoding`). */
  stage: string;
  /** Bytes of the stage's weights in their storage dtype (on the GPU when resident). */
  weights: number;
  /** Estimated bytes of the stage's live activations, in the chosen split. */
  activations: number;
  /** Estimated peak GPU bytes of the stage in its chosen mode. */
  total: number;
  /** The largest tensor in the chosen split. */
  largest: TensorPlan;
  /** The largest tensor without any split (the same as `largest` when not chunked). */
  unsplit: TensorPlan;
  /** The split chosen (`guidance branches one at a time`, ...), or null. */
  split: string | null;
  /** The same split for the code that runs the stage. */
  chunks: Chunks;
  /** The modes: `resident` or `streamed`, then `chunked` and/or `segmented` when they apply. */
  modes: StageMode[];
  /** Whether the stage fits the GPU memory in its chosen mode. */
  fits: boolean;
}

/** The plan. */
export interface MemoryPlan {
  /** The stages, in execution order. */
  stages: StagePlan[];
  /** Estimated peak GPU bytes in the chosen modes (the largest stage). */
  peak: number;
  /** How the MMDiT's weights run, or `does-not-fit` when some stage does not fit memory. */
  mode: "resident" | "streamed" | "does-not-fit";
  /** The largest single tensor of all stages, in their chosen splits. */
  largestTensor: TensorPlan;
  /** Whether every tensor fits one storage binding (no stage is segmented). */
  fitsBinding: boolean;
  /** The plan as indented text lines, for printing. */
  lines: string[];
}

/**
 * A tensor over `maxBufferSize` that no split can avoid: thrown by {@linkcode planMemory} before
 * any GPU work; the message names the stage, the tensor, its bytes and the limit.
 */
export class PlanError extends RangeError {
  /** Builds the message from the stage, the tensor and the limit. */
  constructor(
    readonly stage: string,
    readonly tensor: TensorPlan,
    readonly limit: number,
    readonly tried: string | null,
  ) {
    super(
      `${stage}: ${describe(tensor)} is ${tensor.bytes} bytes (${fmtBytes(tensor.bytes)}), over ` +
        `this device's maxBufferSize of ${limit} bytes (${fmtBytes(limit)})` +
        (tried ? ` even ${tried}` : " and no split of this stage makes it smaller") +
        (tensor.what.includes("weight")
          ? "; weights are not split: use a GPU with a larger buffer limit"
          : "; lower the resolution or the frame count, or use a GPU with a larger buffer limit"),
    );
    this.name = "PlanError";
  }
}

const GiB = 2 ** 30;

/** Bytes as `1.23 GiB` or `45.6 MiB`. */
export function fmtBytes(b: number): string {
  return b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

function describe(t: TensorPlan): string {
  return `${t.what} [${t.shape.join(", ")}] ${t.dtype}`;
}

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

function tensorOf(what: string, shape: number[], dtype = "f32", bytesPer = 4): TensorPlan {
  return { what, shape, dtype, bytes: prod(shape) * bytesPer };
}

function weightTensor(w: ParamLike | undefined, dtype: string, bytes: number): TensorPlan[] {
  return w && prod([...w.shape]) > 0
    ? [tensorOf(`weight ${w.name}`, [...w.shape], dtype, bytes)]
    : [];
}

const largestOf = (ts: TensorPlan[]) => ts.reduce((a, b) => (b.bytes > a.bytes ? b : a));

/** Whether a tensor of `bytes` gets a buffer on this device (the pool's size classes included). */
export function fitsBuffer(bytes: number, maxBinding: number, maxBuffer: number): boolean {
  return bytes <= maxBinding ? bytes <= maxBuffer : sizeClass(bytes) <= maxBuffer;
}

/**
 * How a stage is split, for the code that runs it (`generate` applies these): the MMDiT's guidance
 * branches one at a time and token chunks of its wide projections, the DC-AE's decode tiles.
 */
export interface Chunks {
  /** Run the guidance branches as separate forwards. */
  branches?: boolean;
  /** Tokens per chunk of the MLPs and the single blocks' wide projection. */
  tokenChunk?: number;
  /** Frames per temporal decode tile. */
  tileFrames?: number;
  /** Pixels per spatial decode tile side. */
  tileSize?: number;
}

/** One way to run a stage: its split, its big tensors, its activations. */
interface Level {
  split: string | null;
  chunks: Chunks;
  tensors: TensorPlan[];
  activations: number;
}

function mmditLevels(p: PlanInput, wdt: string): Level[] {
  const f32 = 4;
  const c = p.dit;
  const H = c.hiddenSize;
  const mlp = H * c.mlpRatio;
  const N = imageTokens(p);
  const Lt = p.text?.length ?? p.textLength ?? 512;
  const L = N + Lt;
  // the widest projection: a single block's v_mlp (or fused linear1) output, also the width of
  // the concatenated [attention, MLP] input of linear2
  const W = (c.fusedQkv ? 3 * H : H) + mlp;
  const proj = c.fusedQkv ? "linear1" : "v_mlp";
  const weight = weightTensor(p.ditLargestWeight, wdt, p.weightBytes);
  const inputs = p.batch * (Lt * c.contextInDim + N * (2 * c.inChannels + 1)) * f32;
  // live f32 tensors of a single block at its widest point, per token row: the sequence, the
  // attention output and linear2's output (3H), the v_mlp output and the concatenated linear2
  // input (2W), the GELU of the MLP part (mlp)
  const perRow = f32 * (3 * H + 2 * W + mlp);
  const rows = (b: number): Level["tensors"] => [
    tensorOf(`single-block ${proj} output`, [b, L, W]),
    tensorOf("double-block MLP hidden", [b, N, mlp]),
    tensorOf("joint q/k/v", [b, L, H]),
    ...weight,
  ];
  const levels: Level[] = [
    {
      split: null,
      chunks: {},
      tensors: rows(p.batch),
      activations: p.batch * L * perRow + inputs,
    },
  ];
  if (p.batch > 1) {
    levels.push({
      split: `guidance branches one at a time (${p.batch} forwards of batch 1 per step)`,
      chunks: { branches: true },
      tensors: rows(1),
      activations: L * perRow + inputs,
    });
  }
  // token chunks of the widest projections: each chunk no larger than one [1, L, H] tensor, and
  // within one binding where a chunk of at least one token can be
  const Lc = Math.max(1, Math.min(Math.floor((L * H) / W), Math.floor(p.maxBinding / (f32 * W))));
  const k = Math.ceil(L / Lc);
  levels.push({
    split: `${p.batch > 1 ? "guidance branches one at a time, " : ""}the ${proj}/MLP/linear2 ` +
      `in ${k} token chunks`,
    chunks: { branches: p.batch > 1, tokenChunk: Lc },
    tensors: [
      tensorOf("joint q/k/v and attention output", [1, L, H]),
      tensorOf(`single-block ${proj} output (one token chunk)`, [1, Lc, W]),
      tensorOf("double-block MLP hidden (one token chunk)", [1, Math.min(N, Lc), mlp]),
      ...weight,
    ],
    // the sequence, q, k, v, the normalised q and k, the attention output (7H per row), plus one
    // chunk's projection, GELU and concatenation
    activations: f32 * L * 7 * H + f32 * Lc * (2 * W + mlp) + inputs,
  });
  return levels;
}

function imageTokens(p: PlanInput): number {
  const [, T, h, w] = p.latent;
  const ps = p.dit.patchSize;
  return T * Math.floor(h / ps) * Math.floor(w / ps);
}

/** The decoded frames of one tile and its pixel size, for temporal/spatial tile sizes. */
function decodeTile(
  p: PlanInput,
  tt: number,
  ts: number,
  forced: boolean,
): [number, number, number] {
  const [, T, h, w] = p.latent;
  const t = p.ae.tiling;
  const r = p.ae.timeCompression, D = p.ae.spatialCompression;
  const tl = forced || t.useTemporalTiling ? Math.min(T, tt / r) : T;
  const hl = forced || t.useSpatialTiling ? Math.min(h, ts / D) : h;
  const wl = forced || t.useSpatialTiling ? Math.min(w, ts / D) : w;
  return [T === 1 ? 1 : tl * r, hl * D, wl * D];
}

function dcAeLevels(p: PlanInput, wdt: string): Level[] {
  const f32 = 4;
  const d = p.ae.decoder;
  const n = d.widths.length;
  const [, T] = p.latent;
  const framesOut = T === 1 ? 1 : T * p.ae.timeCompression;
  const video = tensorOf("decoded video", [
    1,
    p.ae.inChannels,
    framesOut,
    p.video.height,
    p.video.width,
  ]);
  const weight = weightTensor(p.aeLargestWeight, wdt, p.weightBytes);
  const levelFor = (
    tile: [number, number, number],
    split: string | null,
    chunks: Chunks = {},
  ): Level => {
    const [tf, th, tw] = tile;
    const ts: TensorPlan[] = [video, ...weight];
    let peak = 0;
    for (let s = 0; s < n; s++) {
      // stage s runs at 1/2^s of the tile's size; its time is the tile's halved once for every
      // temporal up-sampling block between it and stage 0 (those that start stages 0..s−1)
      let t = tf;
      for (let j = 0; j < s; j++) if (d.temporalUpsample[j] && t > 1) t = Math.ceil(t / 2);
      const hs = Math.ceil(th / 2 ** s), ws = Math.ceil(tw / 2 ** s);
      const act = tensorOf(`decoder stage ${s} activation`, [1, d.widths[s]!, t, hs, ws]);
      ts.push(act);
      let here = 3 * act.bytes; // input, inner conv output, block output
      if (s < n - 1) {
        const up = tensorOf(`decoder stage ${s} up-sampled input (nearest)`, [
          1,
          d.widths[s + 1]!,
          t,
          hs,
          ws,
        ]);
        ts.push(up);
        // the lower stage's output, its nearest up-sampling, the conv output, the shortcut
        const doubled = d.temporalUpsample[s] && t > 1 ? 2 : 1;
        here = Math.max(here, up.bytes + 2 * act.bytes + up.bytes / 4 / doubled);
      }
      if (d.blockTypes[s] !== "ResBlock") {
        const mid = Math.round(d.widths[s]! * p.ae.evit.expandRatio);
        const glu = tensorOf(`decoder stage ${s} GLU hidden`, [1, 2 * mid, t, hs, ws]);
        ts.push(glu);
        here = Math.max(here, 2 * glu.bytes + act.bytes);
      }
      peak = Math.max(peak, here);
    }
    // the tiles decoded so far are kept, then joined into the video and clipped (two copies)
    return {
      split,
      chunks,
      tensors: ts,
      activations: Math.max(peak + video.bytes, 2 * video.bytes) + f32 * prod(p.latent),
    };
  };
  const t = p.ae.tiling;
  const levels: Level[] = [
    levelFor(decodeTile(p, t.temporalTileSize, t.spatialTileSize, false), null),
  ];
  const seen = new Set([levels[0]!.tensors.map((x) => x.bytes).join()]);
  const r = p.ae.timeCompression;
  const tries: [number, number][] = [];
  // shorter temporal tiles (at least 2 latent frames: one is decoded as a still image)
  for (let tt = t.temporalTileSize / 2; tt >= 2 * r; tt /= 2) tries.push([tt, t.spatialTileSize]);
  // then smaller spatial tiles (at least 2 latents a side) with the shortest temporal tiles
  for (let ts = t.spatialTileSize / 2; ts >= 2 * p.ae.spatialCompression; ts /= 2) {
    tries.push([Math.min(t.temporalTileSize, 2 * r), ts]);
  }
  for (const [tt, ts] of tries) {
    const tile = decodeTile(p, tt, ts, true);
    const parts = [
      tt !== t.temporalTileSize ? `temporal tiles of ${tt} frames` : null,
      ts !== t.spatialTileSize ? `spatial tiles of ${ts} px` : null,
    ].filter((x) => x);
    const lv = levelFor(tile, parts.join(" and "), { tileFrames: tt, tileSize: ts });
    const key = lv.tensors.map((x) => x.bytes).join();
    if (seen.has(key)) continue;
    seen.add(key);
    levels.push(lv);
  }
  return levels;
}

function textLevels(p: PlanInput, text: TextEncoderSize, wdt: string): Level[] {
  const f32 = 4;
  const B = p.batch;
  const Lt = text.length;
  // scores are computed whole when they fit one binding, else per prompt in head groups that do
  // (models/text/attention.ts)
  const perHead = Lt * Lt * f32;
  const group = B * text.heads * perHead <= p.maxBinding
    ? B * text.heads
    : Math.max(1, Math.min(text.heads, Math.floor(p.maxBinding / perHead)));
  return [{
    split: null,
    chunks: {},
    tensors: [
      tensorOf("T5 feed-forward hidden", [B, Lt, text.ff]),
      tensorOf("T5 hidden state", [B, Lt, text.width]),
      tensorOf("T5 attention scores (one head group)", [group, Lt, Lt]),
      tensorOf(
        "weight T5 DenseReluDense.wi_0 (every block)",
        [text.ff, text.width],
        wdt,
        p.weightBytes,
      ),
    ],
    // the residual stream, the attention q/k/v/output (5·width), the two gated FF hiddens and
    // their product (3·ff), one group of scores
    activations: B * Lt * f32 * (5 * text.width + 3 * text.ff) + group * perHead,
  }];
}

/**
 * Chooses a stage's split and weights mode: among the splits whose tensors all fit one buffer,
 * the least split that fits the memory resident, else (when `streamGroup` is given) the least
 * that fits streamed; else the finest split, marked as not fitting. Throws a {@linkcode PlanError} when no split brings every
 * tensor under `maxBufferSize`.
 */
function chooseStage(
  p: PlanInput,
  stage: string,
  weights: number,
  streamGroup: number | null,
  levels: Level[],
): StagePlan {
  const unsplit = largestOf(levels[0]!.tensors);
  const ok = levels.filter((l) =>
    l.tensors.every((t) => fitsBuffer(t.bytes, p.maxBinding, p.maxBuffer))
  );
  if (!ok.length) {
    const last = levels.at(-1)!;
    const over = largestOf(
      last.tensors.filter((t) => !fitsBuffer(t.bytes, p.maxBinding, p.maxBuffer)),
    );
    throw new PlanError(stage, over, p.maxBuffer, last.split ? `with ${last.split}` : null);
  }
  // resident beats streamed (streaming re-uploads every weight on every forward), then the
  // fewest splits
  let chosen: { level: Level; streamed: boolean; fits: boolean } | undefined;
  const resident = ok.find((l) => weights + l.activations <= p.gpuBytes);
  if (resident) chosen = { level: resident, streamed: false, fits: true };
  const byStreaming = streamGroup === null
    ? undefined
    : ok.find((l) => streamGroup + l.activations <= p.gpuBytes);
  if (!chosen && byStreaming) chosen = { level: byStreaming, streamed: true, fits: true };
  chosen ??= { level: ok.at(-1)!, streamed: streamGroup !== null, fits: false };
  const { level, streamed, fits } = chosen;
  const largest = largestOf(level.tensors);
  const modes: StageMode[] = [streamed ? "streamed" : "resident"];
  if (level.split) modes.push("chunked");
  if (level.tensors.some((t) => t.bytes > p.maxBinding)) modes.push("segmented");
  return {
    stage,
    weights,
    activations: level.activations,
    total: (streamed ? streamGroup! : weights) + level.activations,
    largest,
    unsplit,
    split: level.split,
    chunks: level.chunks,
    modes,
    fits,
  };
}

/** Computes the plan; see the module doc. Throws a {@linkcode PlanError} for an impossible one. */
export function planMemory(p: PlanInput): MemoryPlan {
  const wdt = p.weightBytes === 4 ? "f32" : "bf16";
  const stages: StagePlan[] = [];
  if (p.text) {
    const gpuParams = p.text.params - p.text.hostParams;
    stages.push(
      chooseStage(p, "text encoders", gpuParams * p.weightBytes, null, textLevels(p, p.text, wdt)),
    );
  }
  const group = p.ditLargestGroup * p.weightBytes;
  stages.push(
    chooseStage(p, "MMDiT denoising", p.ditParams * p.weightBytes, group, mmditLevels(p, wdt)),
  );
  stages.push(
    chooseStage(p, "DC-AE decoding", p.aeParams * p.weightBytes, null, dcAeLevels(p, wdt)),
  );
  const peak = Math.max(...stages.map((s) => s.total));
  const dit = stages.find((s) => s.stage === "MMDiT denoising")!;
  const mode: MemoryPlan["mode"] = stages.every((s) => s.fits)
    ? (dit.modes[0] as "resident" | "streamed")
    : "does-not-fit";
  const largestTensor = largestOf(stages.map((s) => s.largest));
  const fitsBinding = stages.every((s) => !s.modes.includes("segmented"));
  const lines: string[] = [
    `  device: GPU memory ${fmtBytes(p.gpuBytes)}, storage binding ${fmtBytes(p.maxBinding)}, ` +
    `buffer ${fmtBytes(p.maxBuffer)}`,
  ];
  const pad = " ".repeat(19);
  for (const s of stages) {
    lines.push(
      `  ${s.stage.padEnd(16)} weights ${fmtBytes(s.weights).padStart(10)}  activations ~${
        fmtBytes(s.activations).padStart(10)
      }  total ~${fmtBytes(s.total).padStart(10)}  mode: ${
        s.fits ? s.modes.join(", ") : `does not fit (${s.modes.join(", ")})`
      }`,
    );
    if (s.split) {
      const over = !fitsBuffer(s.unsplit.bytes, p.maxBinding, p.maxBuffer);
      lines.push(
        `${pad}chunked: ${s.split}; unsplit, ${describe(s.unsplit)} = ` +
          `${fmtBytes(s.unsplit.bytes)} ${
            over ? "would be over the buffer limit" : "fits a buffer but not the memory"
          }`,
      );
    }
    const windows = Math.ceil(s.largest.bytes / p.maxBinding);
    lines.push(
      `${pad}largest tensor: ${describe(s.largest)} = ${fmtBytes(s.largest.bytes)}` +
        (windows > 1 ? ` (over the binding limit: ops bind it as ${windows} or more windows)` : ""),
    );
    if (s.modes[0] === "streamed") {
      lines.push(
        `${pad}streamed: weights in host memory, one block of ${
          fmtBytes(group)
        } on the GPU at a time`,
      );
    }
    if (!s.fits) {
      lines.push(
        `${pad}does not fit ${fmtBytes(p.gpuBytes)} of GPU memory even ${
          s.split ? `with ${s.split}` : "alone"
        }${
          s.stage === "text encoders"
            ? ": precompute the embeddings elsewhere (--embeddings)"
            : ": lower the resolution or the frame count"
        }`,
      );
    }
  }
  lines.push(`  peak ~${fmtBytes(peak)} (the largest stage; stages run one after the other)`);
  return { stages, peak, mode, largestTensor, fitsBinding, lines };
}
