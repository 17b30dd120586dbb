/**
 * Text (and optionally an image) in, video frames out: the whole high-compression pipeline of
 * `shared/spec/README.md` §1 — prompt assembly, T5 + CLIP conditioning of the CFG rows, the
 * reference image through the DC-AE encoder (i2v), seeded noise, the rectified-flow sampler
 * driving the MMDiT, the i2v overwrite, the DC-AE decode and the uint8 frames.
 *
 * A *bundle* is a folder of weights: the release layout of Open-Sora v2
 * (`Open_Sora_v2_Video_DC_AE.safetensors`, `F32T4C128_AE.safetensors`, `google/t5-v1_1-xxl/`,
 * `openai/clip-vit-large-patch14/`), or any folder with a `kino.json` that names its files and
 * model configurations (small models, Kino's default model).
 *
 * @example
 * ```ts ignore
 * const bundle = await loadBundle("ckpts");
 * const [video] = await generate(bundle, { prompt: "a red fox in the snow", numFrames: 32,
 *   resolution: "256px", aspectRatio: "16:9", seed: 42 }, (e) => console.log(e));
 * await writeVideo("fox.mp4", video.frames, { t: video.t, h: video.height, w: video.width, fps: 24 });
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { fromData } from "../engine/graph.ts";
import { clamp } from "../engine/ops/elementwise.ts";
import { read, slice } from "../engine/ops/movement.ts";
import { keep, noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import type { DType } from "../engine/dtype.ts";
import { readVideo, tensorDataToFrames } from "../io/video.ts";
import { MMDiT } from "./mmdit/model.ts";
import { type MMDiTConfig, mmditFromReferenceConfig, mmditPreset } from "./mmdit/config.ts";
import { DcAe } from "./dc_ae/model.ts";
import { type DcAeConfig, dcAePreset, fromReferenceConfig } from "./dc_ae/config.ts";
import { TextConditioner } from "./text/conditioner.ts";
import { T5_V1_1_XXL, t5ConfigFromHf, T5EncoderModel } from "./text/t5.ts";
import { CLIP_VIT_L14_TEXT, clipTextConfigFromHf, CLIPTextModel } from "./text/clip.ts";
import { TextTokenizer } from "./text/tokenizer.ts";
import { readHfConfig } from "./text/hf.ts";
import { WeightStreamer } from "./streaming.ts";
import { type Chunks, modelSizes, planMemory } from "./plan.ts";
import { runtime } from "../engine/runtime.ts";
import {
  addFpsInfo,
  addMotionScore,
  applyReferenceOverwrite,
  checkFrameCount,
  checkImageSize,
  type CondType,
  getSchedule,
  imageSize,
  latentFrames,
  makeNoise,
  prepareCondition,
  sample,
  sampleSeed,
} from "./sampling/mod.ts";
import { pilBicubicResizeCrop, resizeCropPlan } from "../train/data/transform.ts";

/** `kino.json`: what a weights folder holds (paths relative to the folder). */
export interface BundleManifest {
  /** Manifest tag; must be `"kino-bundle"`. */
  format: "kino-bundle";
  /** Manifest format version. */
  version: 1;
  /** Informative name and description (model card). */
  name?: string;
  /** MMDiT weights file, with a preset name (default `hcae`) or a reference `model_args` config. */
  mmdit: { weights: string; preset?: string; config?: Record<string, unknown> };
  /** DC-AE weights file, with a preset name (default `f32t4c128`) or a reference config. */
  dc_ae: {
    weights: string;
    preset?: string;
    config?: Record<string, unknown>;
    /** Latent scaling: `encode` divides by it, `decode` multiplies (unit-variance latents). */
    scaling_factor?: number;
  };
  /** Hugging Face folders of the text encoders. */
  t5: string;
  /** Hugging Face folder of the CLIP text encoder. */
  clip: string;
  /** T5 padded token length (default 512). */
  t5_max_length?: number;
  /** CLIP padded token length (default 77). */
  clip_max_length?: number;
  /** Default generation settings of this model. */
  defaults?: Partial<GenerationSettings>;
}

/** The release layout (no `kino.json`). */
export const RELEASE_LAYOUT: BundleManifest = {
  format: "kino-bundle",
  version: 1,
  name: "Open-Sora v2 high-compression (Video DC-AE + MMDiT)",
  mmdit: { weights: "Open_Sora_v2_Video_DC_AE.safetensors", preset: "hcae" },
  dc_ae: { weights: "F32T4C128_AE.safetensors", preset: "f32t4c128" },
  t5: "google/t5-v1_1-xxl",
  clip: "openai/clip-vit-large-patch14",
};

/** Settings of one generation (the CLI flags; defaults from the reference's HCAE config). */
export interface GenerationSettings {
  /** Resolution name, e.g. `256px`, `768px`. */
  resolution: string;
  /** Aspect ratio, e.g. `16:9`. */
  aspectRatio: string;
  /**
   * Explicit height in pixels (with `width`; overrides resolution and aspect ratio), a multiple of
   * the AE's compression (32).
   */
  height?: number;
  /** Explicit width in pixels (with `height`). */
  width?: number;
  /** Frames to generate (1 for an image). */
  numFrames: number;
  /** Denoising steps. */
  steps: number;
  /** Text guidance scale. */
  guidance: number;
  /** Image-condition guidance scale. */
  guidanceImg: number;
  /** Oscillate the text guidance scale (1 at odd steps ≥ 10). */
  textOsci: boolean;
  /** Oscillate the image guidance scale. */
  imageOsci: boolean;
  /** Temporal ramp of the image guidance (image-to-video only). */
  scaleTemporalOsci: boolean;
  /** Frame rate of the output, also written into the prompt. */
  fps: number;
  /** Appended as `" {score} motion score."`; null to omit. */
  motionScore: string | null;
  /** Negative prompt (the unconditional text branches). */
  negativePrompt: string;
  /**
   * A fixed timestep shift α (the config's `flow_shift`), e.g. the `--shift` a model was trained
   * with; null for the resolution/length rule (`resolutionShiftAlpha`).
   */
  flowShift: number | null;
  /** Base seed of the noise (sample k uses a seed derived from it and k). */
  seed: number;
}

/** Reference defaults (`configs/diffusion/inference/high_compression.py` chain, t2v). */
export const DEFAULT_SETTINGS: GenerationSettings = {
  resolution: "768px",
  aspectRatio: "16:9",
  numFrames: 128,
  steps: 50,
  guidance: 7.5,
  guidanceImg: 3.0,
  textOsci: true,
  imageOsci: true,
  scaleTemporalOsci: true,
  fps: 24,
  motionScore: "4",
  negativePrompt: "",
  flowShift: null,
  seed: 42,
};

/** A bundle's manifest and resolved configurations (no weights loaded). */
export interface BundleInfo {
  /** The bundle folder. */
  dir: string;
  /** Its manifest (`kino.json`, or the release layout). */
  manifest: BundleManifest;
  /** The MMDiT configuration. */
  dit: MMDiTConfig;
  /** The DC-AE configuration. */
  ae: DcAeConfig;
}

/** Error for a folder that is not a usable bundle; the message says what is missing and the fix. */
export class BundleError extends Error {
  /** Error class name, shown in stack traces. */
  override name = "BundleError";
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Reads a bundle's manifest (`kino.json`, or the release layout) and checks its files exist. */
export async function inspectBundle(
  dir: string,
  options: { textEncoders?: boolean; weights?: boolean } = {},
): Promise<BundleInfo> {
  if (!(await exists(dir))) {
    throw new BundleError(
      `checkpoint folder ${dir} does not exist; pass --ckpt-dir with the weights`,
    );
  }
  const mf = join(dir, "kino.json");
  let manifest = RELEASE_LAYOUT;
  if (await exists(mf)) {
    try {
      manifest = JSON.parse(await Deno.readTextFile(mf));
    } catch (e) {
      throw new BundleError(`${mf} is not valid JSON: ${(e as Error).message}`);
    }
    if (manifest.format !== "kino-bundle") {
      throw new BundleError(`${mf} is not a Kino bundle manifest (format must be "kino-bundle")`);
    }
  }
  const missing: string[] = [];
  // weights: false (synthetic weights) needs only the manifest's configurations
  const needed = options.weights ?? true ? [manifest.mmdit.weights, manifest.dc_ae.weights] : [];
  if (options.textEncoders ?? true) needed.push(manifest.t5, manifest.clip);
  for (const p of needed) {
    if (!(await exists(join(dir, p)))) missing.push(p);
  }
  if (missing.length) {
    throw new BundleError(
      `checkpoint folder ${dir} lacks ${missing.join(", ")}. Expected the Open-Sora v2 release ` +
        `layout (${RELEASE_LAYOUT.mmdit.weights}, ${RELEASE_LAYOUT.dc_ae.weights}, ` +
        `${RELEASE_LAYOUT.t5}/, ${RELEASE_LAYOUT.clip}/) or a kino.json naming the files`,
    );
  }
  const dit = manifest.mmdit.config
    ? mmditFromReferenceConfig(manifest.mmdit.config, "mmdit")
    : mmditPreset(manifest.mmdit.preset ?? "hcae");
  const ae = manifest.dc_ae.config
    ? fromReferenceConfig(manifest.dc_ae.config, "dc_ae")
    : dcAePreset(manifest.dc_ae.preset ?? "f32t4c128");
  if (manifest.dc_ae.scaling_factor !== undefined) {
    const f = manifest.dc_ae.scaling_factor;
    if (!(typeof f === "number" && f > 0)) {
      throw new BundleError(`${mf}: dc_ae.scaling_factor must be a positive number, got ${f}`);
    }
    ae.scalingFactor = f;
  }
  const latentC = dit.inChannels / dit.patchSize ** 2;
  if (ae.latentChannels !== latentC) {
    throw new BundleError(
      `${dir}: the DC-AE has ${ae.latentChannels} latent channels but the MMDiT expects ` +
        `${latentC}; the two models do not belong together`,
    );
  }
  return { dir, manifest, dit, ae };
}

/** Loaded models. */
export interface Bundle extends BundleInfo {
  /** The denoiser. */
  mmdit: MMDiT;
  /** The video autoencoder. */
  dcAe: DcAe;
  /** The T5 and CLIP text encoders. */
  text: TextConditioner;
  /** Whether the MMDiT streams its weights block by block from host memory. */
  streamed: boolean;
  /** True for seeded random weights ({@linkcode syntheticBundle}): outputs are noise. */
  synthetic?: boolean;
  /** Frees the weights of every model. */
  dispose(): void;
}

/** Options of {@linkcode loadBundle}. */
export interface LoadOptions {
  /** Storage of weight matrices; default bf16 (as released). Compute is f32. */
  dtype?: DType;
  /** Stream the MMDiT's weights block by block from host memory; default false. */
  streamWeights?: boolean;
  /**
   * Precomputed text embeddings (a file from `TextConditioner.saveEmbeddings`), used before the
   * encoders; when the bundle has no text encoder folders, only these prompts can be generated.
   */
  embeddings?: string;
}

/**
 * The release model's architecture without its files (the release layout, an MMDiT preset, the
 * `f32t4c128` DC-AE): what `--dry-run` plans and `--synthetic-weights` runs when there are no
 * weights. Throws naming the known presets for an unknown `preset`.
 */
export function releaseBundleInfo(dir: string, preset = "hcae"): BundleInfo {
  return { dir, manifest: RELEASE_LAYOUT, dit: mmditPreset(preset), ae: dcAePreset("f32t4c128") };
}

/** Loads every model of a bundle (strict: a checkpoint of another model is refused). */
export async function loadBundle(dir: string, options: LoadOptions = {}): Promise<Bundle> {
  const info = await inspectBundle(dir, { textEncoders: !options.embeddings });
  const storage = options.dtype ?? "bf16";
  const m = info.manifest;
  const mmdit = new MMDiT(info.dit, { storage });
  const ditFile = join(dir, m.mmdit.weights);
  if (options.streamWeights) {
    (await WeightStreamer.fromFiles(mmdit.params, [ditFile])).attach(mmdit);
  } else await mmdit.params.load(ditFile);
  const dcAe = new DcAe(info.ae, { storage });
  await dcAe.params.load(join(dir, m.dc_ae.weights));
  const haveText = await exists(join(dir, m.t5)) && await exists(join(dir, m.clip));
  const text = haveText
    ? await TextConditioner.fromFolders(join(dir, m.t5), join(dir, m.clip), {
      t5MaxLength: m.t5_max_length,
      clipMaxLength: m.clip_max_length,
      storage: storage === "f32" ? "f32" : "auto",
      embeddings: options.embeddings,
    })
    : await TextConditioner.fromEmbeddings(options.embeddings!);
  return {
    ...info,
    mmdit,
    dcAe,
    text,
    streamed: !!options.streamWeights,
    dispose() {
      mmdit.params.dispose();
      dcAe.params.dispose();
      text.dispose();
    },
  };
}

/** Options of {@linkcode syntheticBundle}. */
export interface SyntheticOptions {
  /** Seed of the weights; default 0. */
  seed?: number;
  /** Storage of weight matrices; default bf16 (as released). */
  dtype?: DType;
  /**
   * A folder holding `t5/` and `clip/` tokenizer folders for a bundle that has none (the release
   * layout without its files): the shipped default model's small word vocabulary serves, since
   * every id it gives is a valid id of the real vocabularies.
   */
  tokenizers?: string;
}

/**
 * A bundle of the given architecture with seeded random weights made on the GPU instead of read
 * from files (`--synthetic-weights`): the MMDiT streamed group by group
 * ({@linkcode WeightStreamer.synthetic}), the DC-AE and the text encoders (T5-XXL and CLIP-L for
 * the release layout, the bundle's `t5/` and `clip/` configs otherwise) made resident, the token
 * tables in host memory. For measuring the full-size pipeline's time and memory on any GPU: its
 * videos are noise, and `synthetic` marks the bundle so that outputs say so.
 */
export async function syntheticBundle(
  info: BundleInfo,
  options: SyntheticOptions = {},
): Promise<Bundle> {
  const seed = options.seed ?? 0;
  const storage = options.dtype ?? "bf16";
  const mmdit = new MMDiT(info.dit, { storage });
  WeightStreamer.synthetic(mmdit.params, seed).attach(mmdit);
  const dcAe = new DcAe(info.ae, { storage });
  for (const p of dcAe.params.list()) dcAe.params.synthesize(p.name, seed + 1);
  const m = info.manifest;
  const release = m === RELEASE_LAYOUT;
  const own = async (sub: string) =>
    await exists(join(info.dir, sub, "tokenizer.json")) ||
    await exists(join(info.dir, sub, "spiece.model"));
  const tokDir = async (sub: string, kind: "t5" | "clip") => {
    if (await own(sub)) return join(info.dir, sub);
    if (!options.tokenizers) {
      throw new BundleError(
        `synthetic weights: ${join(info.dir, sub)} has no tokenizer; pass the tokenizers option ` +
          `(a folder with t5/ and clip/ tokenizer folders, e.g. the default model's)`,
      );
    }
    return join(options.tokenizers, kind);
  };
  const t5Dir = await tokDir(m.t5, "t5"), clipDir = await tokDir(m.clip, "clip");
  const textStorage = storage === "f32" ? "f32" : "bf16";
  const t5 = new T5EncoderModel(
    release ? T5_V1_1_XXL : t5ConfigFromHf(await readHfConfig(join(info.dir, m.t5))),
    { storage: textStorage },
  );
  const clip = new CLIPTextModel(
    release ? CLIP_VIT_L14_TEXT : clipTextConfigFromHf(await readHfConfig(join(info.dir, m.clip))),
    { storage: textStorage },
  );
  for (const p of t5.params.list()) t5.params.synthesize(p.name, seed + 2);
  for (const p of clip.params.list()) clip.params.synthesize(p.name, seed + 3);
  t5.shared.initialize(seed + 4);
  clip.tokenEmbedding.initialize(seed + 5);
  const t5Tokenizer = await TextTokenizer.fromFolder(t5Dir, "t5", {
    maxLength: m.t5_max_length ?? (release ? 512 : undefined),
  });
  const clipTokenizer = await TextTokenizer.fromFolder(clipDir, "clip", {
    maxLength: Math.min(m.clip_max_length ?? clip.config.maxPositions, clip.config.maxPositions),
  });
  const text = new TextConditioner({ t5, t5Tokenizer, clip, clipTokenizer });
  return {
    ...info,
    mmdit,
    dcAe,
    text,
    streamed: true,
    synthetic: true,
    dispose() {
      mmdit.params.dispose();
      dcAe.params.dispose();
      text.dispose();
    },
  };
}

/** Progress of {@linkcode generate}. */
export type GenerateEvent =
  | { kind: "stage"; stage: "text" | "image" | "denoise" | "decode"; sample: number }
  | { kind: "step"; sample: number; step: number; total: number; t: number };

/** One generated video. */
export interface GeneratedVideo {
  /** Packed RGB uint8 frames, `t·height·width·3`. */
  frames: Uint8Array;
  /** Number of frames. */
  t: number;
  /** Frame height in pixels. */
  height: number;
  /** Frame width in pixels. */
  width: number;
  /** Frame rate in frames per second. */
  fps: number;
  /** The text the model saw (with the FPS / motion suffixes). */
  prompt: string;
  /** The seed of this sample's noise. */
  seed: number;
  /** The condition used: `t2v`, or `i2v_head` with an image. */
  condType: CondType;
}

/** What {@linkcode resolveSettings} derives. */
export interface ResolvedSettings extends GenerationSettings {
  /** Video height in pixels. */
  height: number;
  /** Video width in pixels. */
  width: number;
  /** Latent shape `[C, T', h, w]` of one sample. */
  latent: [number, number, number, number];
  /** Denoising timesteps, `steps + 1` values from 1 to 0. */
  schedule: number[];
}

/** Sizes, frame counts and the schedule for a bundle; throws a clear error for impossible ones. */
export function resolveSettings(info: BundleInfo, s: GenerationSettings): ResolvedSettings {
  const D = info.ae.spatialCompression;
  const r = info.ae.timeCompression;
  const size = s.height !== undefined || s.width !== undefined
    ? { height: s.height ?? NaN, width: s.width ?? NaN }
    : imageSize(s.resolution, s.aspectRatio, { compression: D });
  if (!Number.isInteger(size.height) || !Number.isInteger(size.width)) {
    throw new RangeError(`give both --height and --width (got ${s.height} x ${s.width})`);
  }
  checkImageSize(size, D);
  checkFrameCount(s.numFrames, { temporalReduction: r });
  const T = latentFrames(s.numFrames, { temporalReduction: r });
  if (s.numFrames > 1 && T === 1) {
    throw new RangeError(
      `--num-frames ${s.numFrames} gives one latent frame, which the DC-AE decodes as a single ` +
        `image; use 1 for an image or 8 or more frames (a multiple of 4) for a video`,
    );
  }
  const p = info.dit.patchSize;
  const h = size.height / D, w = size.width / D; // latent grid; tokens are p×p patches of it
  if (h % p !== 0 || w % p !== 0) {
    throw new RangeError(
      `${size.height}x${size.width} gives a ${h}x${w} latent grid, not divisible by the MMDiT's ` +
        `patch size ${p}; use multiples of ${D * p} px`,
    );
  }
  if (!Number.isInteger(s.steps) || s.steps < 1) {
    throw new RangeError(`--steps must be a positive integer, got ${s.steps}`);
  }
  const flowShift = s.flowShift ?? null;
  if (flowShift !== null && !(Number.isFinite(flowShift) && flowShift > 0)) {
    throw new RangeError(`--shift must be a number > 0, got ${flowShift}`);
  }
  return {
    ...s,
    ...size,
    latent: [info.ae.latentChannels, T, h, w],
    schedule: getSchedule(
      s.steps,
      (h / p) * (w / p),
      T,
      flowShift !== null ? { shiftAlpha: flowShift } : {},
    ),
  };
}

/** Reads an image (or a video's first frame) resized and centre-cropped to `height × width`. */
export async function readReferenceImage(
  path: string,
  height: number,
  width: number,
): Promise<Float32Array> {
  let v;
  try {
    v = await readVideo(path, { maxFrames: 1 });
  } catch (e) {
    throw new Error(`cannot read the image ${path}: ${(e as Error).message}`);
  }
  if (v.t < 1) throw new Error(`cannot read the image ${path}: it has no frames`);
  const frame = v.frames.subarray(0, v.h * v.w * 3);
  const rgb = pilBicubicResizeCrop(
    frame,
    v.h,
    v.w,
    resizeCropPlan(v.h, v.w, height, width, "image"),
  );
  const out = new Float32Array(3 * height * width);
  const hw = height * width;
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < 3; c++) out[c * hw + i] = (rgb[3 * i + c]! / 255 - 0.5) / 0.5;
  }
  return out;
}

/** Options of {@linkcode generate}. */
export interface GenerateOptions extends Partial<GenerationSettings> {
  /** One prompt or several (each is one sample, seed + index). */
  prompt: string | string[];
  /** Path of the first-frame image (image-to-video, `i2v_head`). */
  image?: string;
}

/**
 * The splits the memory plan ({@linkcode planMemory}) chooses for a generation on this device:
 * driven by its binding and buffer limits (WebGPU does not tell the GPU's memory, so none is
 * assumed unless `gpuBytes` is given), e.g. the guidance branches one at a time and token chunks
 * when a tensor would exceed `maxBufferSize`. Throws the plan's {@linkcode PlanError}, naming the
 * tensor, when no split avoids such a tensor, before any GPU work.
 */
export function planSplits(
  bundle: Bundle,
  s: ResolvedSettings,
  gpuBytes = Number.MAX_SAFE_INTEGER,
): { mmdit: Chunks; decode: Chunks } {
  const rt = runtime();
  const sizes = modelSizes(bundle.mmdit.params.list(), bundle.dcAe.params.list());
  const plan = planMemory({
    dit: bundle.dit,
    ...sizes,
    ae: bundle.ae,
    text: null,
    weightBytes: bundle.mmdit.params.storage === "f32" ? 4 : 2,
    batch: 3,
    video: { frames: s.numFrames, height: s.height, width: s.width },
    latent: s.latent,
    gpuBytes,
    maxBinding: rt.maxBinding,
    maxBuffer: rt.maxBufferSize,
  });
  const of = (name: string) => plan.stages.find((x) => x.stage === name)?.chunks ?? {};
  return { mmdit: of("MMDiT denoising"), decode: of("DC-AE decoding") };
}

/** Generates one video per prompt; see the module doc. */
export async function generate(
  bundle: Bundle,
  options: GenerateOptions,
  onEvent?: (e: GenerateEvent) => void,
): Promise<GeneratedVideo[]> {
  const s = resolveSettings(bundle, {
    ...DEFAULT_SETTINGS,
    ...bundle.manifest.defaults,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
  } as GenerationSettings);
  const prompts = Array.isArray(options.prompt) ? options.prompt : [options.prompt];
  const [C, T, hp, wp] = s.latent;
  const splits = planSplits(bundle, s);
  bundle.mmdit.tokenChunk = splits.mmdit.tokenChunk ?? null;
  const decodeTiles = splits.decode.tileFrames
    ? { temporalTileSize: splits.decode.tileFrames, spatialTileSize: splits.decode.tileSize }
    : undefined;
  const out: GeneratedVideo[] = [];
  let refImage: Float32Array | null = null;
  if (options.image) refImage = await readReferenceImage(options.image, s.height, s.width);
  for (let k = 0; k < prompts.length; k++) {
    let text = addFpsInfo(prompts[k]!, s.fps);
    if (s.motionScore !== null) text = addMotionScore(text, s.motionScore);
    onEvent?.({ kind: "stage", stage: "text", sample: k });
    const emb = noGrad(() => bundle.text.encode([text, s.negativePrompt, s.negativePrompt]));
    const owned: Tensor[] = [emb.txt, emb.yVec];
    try {
      let refs: Tensor[][] = [];
      if (refImage) {
        onEvent?.({ kind: "stage", stage: "image", sample: k });
        const x = fromData(refImage, [1, 3, 1, s.height, s.width], "f32");
        const lat = noGrad(() => tidy(() => keep(bundle.dcAe.encode(x))));
        x.dispose();
        owned.push(lat);
        refs = [[lat]];
      }
      const seed = sampleSeed(s.seed, k);
      const noise = makeNoise([1, C, T, hp, wp], seed);
      owned.push(noise);
      const condition = prepareCondition(noise.shape, refs.length ? "i2v_head" : "t2v", refs, {
        patchSize: bundle.dit.patchSize,
      });
      owned.push(condition.masks, condition.maskedRef, condition.cond);
      onEvent?.({ kind: "stage", stage: "denoise", sample: k });
      const latent = await sample((inp) => bundle.mmdit.forward(inp), {
        noise,
        txt: emb.txt,
        yVec: emb.yVec,
        timesteps: s.schedule,
        condition,
        patchSize: bundle.dit.patchSize,
        guidance: s.guidance,
        guidanceImg: s.guidanceImg,
        textOsci: s.textOsci,
        imageOsci: s.imageOsci,
        scaleTemporalOsci: s.scaleTemporalOsci,
        branchesOneAtATime: splits.mmdit.branches ?? false,
        onStep: (step, total, t) =>
          onEvent?.({ kind: "step", sample: k, step: step + 1, total, t }),
      });
      owned.push(latent);
      onEvent?.({ kind: "stage", stage: "decode", sample: k });
      const video = noGrad(() =>
        tidy(() => {
          const z = applyReferenceOverwrite(latent, condition.condType, refs);
          const x = bundle.dcAe.decode(z, decodeTiles ? { tiled: decodeTiles } : {});
          // decoding yields 4·T' frames; keep the first num_frames
          const [B, c3, tAll, H, W] = x.shape as [number, number, number, number, number];
          const keepT = Math.min(s.numFrames, tAll);
          return clamp(slice(x, [0, 0, 0, 0, 0], [B, c3, keepT, H, W]), -1, 1);
        })
      );
      const data = await read(video);
      const t = video.shape[2]!;
      video.dispose();
      out.push({
        frames: tensorDataToFrames(data, t, s.height, s.width),
        t,
        height: s.height,
        width: s.width,
        fps: s.fps,
        prompt: text,
        seed,
        condType: condition.condType,
      });
    } finally {
      for (const t of owned) t.dispose();
    }
  }
  return out;
}
