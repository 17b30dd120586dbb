/**
 * `deno task infer`: text (and optionally a first-frame image) to video with Kino's pipeline
 * ({@linkcode generate}); writes the video (mp4, gif or a folder of PNGs) and a JSON sidecar with
 * every setting and the seed. `--dry-run` prints the plan and the memory it needs.
 */
import { parseArgs } from "node:util";
import { numberFlag, UsageError } from "./_args.ts";
import { basename, dirname, extname, join } from "node:path";
import { init } from "../engine/runtime.ts";
import { GpuUnavailableError } from "../engine/device.ts";
import { writeVideo } from "../io/video.ts";
import { MMDiT } from "../models/mmdit/model.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import {
  modelSizes,
  PlanError,
  planMemory,
  RELEASE_TEXT_ENCODERS,
  type TextEncoderSize,
} from "../models/plan.ts";
import {
  BundleError,
  type BundleInfo,
  DEFAULT_SETTINGS,
  generate,
  type GenerationSettings,
  inspectBundle,
  loadBundle,
  RELEASE_LAYOUT,
  releaseBundleInfo,
  type ResolvedSettings,
  resolveSettings,
  syntheticBundle,
} from "../models/pipeline.ts";
import { ProgressBar } from "./_progress.ts";

/** Where the shipped default model lives (used when no --ckpt-dir is given). */
export const DEFAULT_MODEL_DIR = new URL("../weights/default/", import.meta.url).pathname;

const HELP = `Usage: deno task infer --prompt "TEXT" [options]

Generates a video from a text prompt (and optionally a first-frame image) with the Open-Sora 2.0
high-compression pipeline (T5 + CLIP, MMDiT, Video DC-AE) on the GPU.

Prompt
  --prompt TEXT            the prompt (repeat the flag for several videos)
  --prompts FILE           one prompt per line (or a CSV with a "text" column)
  --negative-prompt TEXT   negative prompt for guidance (default "")
  --image FILE             first frame for image-to-video (png/jpg/any ffmpeg input)
Size and length
  --resolution R           256px or 768px (default from the model; reference 768px)
  --aspect-ratio R         16:9, 9:16, 1:1, 4:3, 3:2, 2:1, 2.39:1 (default 16:9)
  --height H --width W     explicit size, multiples of 32 (overrides the two above)
  --num-frames N           1 or a multiple of 4, at most 128 (default from the model)
Sampling
  --steps N                Euler steps (default 50)
  --guidance G             text guidance scale (default 7.5)
  --guidance-image G       image guidance scale (default 3.0)
  --no-oscillation         keep both guidance scales on every step
  --shift ALPHA            fixed timestep shift (the model's training --shift; default from the
                           model, else the resolution rule)
  --seed N                 noise seed; sample k uses seed + k (default 42)
  --fps N                  frame rate of the file and of the prompt suffix (default 24)
  --motion-score S         appended as "S motion score." (default 4; "none" to omit)
Files
  --output PATH            .mp4, .gif, or a folder for PNG frames
                           (default samples/<prompt>_<seed>.mp4)
  --ckpt-dir DIR           weights folder: the Open-Sora v2 release layout
                           (${RELEASE_LAYOUT.mmdit.weights}, ${RELEASE_LAYOUT.dc_ae.weights},
                           ${RELEASE_LAYOUT.t5}/, ${RELEASE_LAYOUT.clip}/) or a folder
                           with a kino.json; default: the small model shipped with Kino
  --dtype T                weight storage bf16 (default), f16 or f32
  --stream-weights         keep MMDiT weights in host memory, upload block by block
  --synthetic-weights      seeded random weights made on the GPU instead of files: the
                           architecture of --ckpt-dir's bundle, or with no --ckpt-dir the release
                           model (--preset hcae|baseline-768, T5-XXL, CLIP-L, DC-AE f32t4c128);
                           for measuring time and memory only: the video is noise, and its
                           sidecar says "synthetic_weights": true
  --preset NAME            the MMDiT of a --synthetic-weights run without --ckpt-dir (hcae)
  --embeddings FILE        precomputed text embeddings (TextConditioner.saveEmbeddings; prompt
                           text with its suffixes); the text encoders are then optional
Other
  --dry-run                print the plan and the memory it needs, then exit
  --gpu-memory GB          GPU memory to plan for (default: half the RAM on a CPU adapter, else 16)
  --max-binding BYTES      storage-binding limit to plan for (e.g. 1GiB; default: the adapter's)
  --max-buffer BYTES       buffer limit to plan for (e.g. 4GiB; default: the adapter's)
  --quiet                  no progress bar
  -h, --help               this text

Aliases: --num_frames, --num-steps/--num_steps/--sampling-steps, --cfg-scale/--cfg_scale/
--guidance-scale, --guidance_img/--image-guidance, --aspect_ratio, --negative_prompt/--neg,
--save-dir/--save_dir/--output-dir (a folder; files named from the prompt), --ref (= --image),
--ckpt_dir/--ckpt-path/--ckpt_path, -o (= --output).`;

const ALIASES: Record<string, string> = {
  "num_frames": "num-frames",
  "frames": "num-frames",
  "num-steps": "steps",
  "num_steps": "steps",
  "sampling-steps": "steps",
  "cfg-scale": "guidance",
  "cfg_scale": "guidance",
  "guidance-scale": "guidance",
  "guidance_scale": "guidance",
  "guidance_img": "guidance-image",
  "guidance-img": "guidance-image",
  "image-guidance": "guidance-image",
  "aspect_ratio": "aspect-ratio",
  "negative_prompt": "negative-prompt",
  "neg": "negative-prompt",
  "save_dir": "save-dir",
  "output-dir": "save-dir",
  "output_dir": "save-dir",
  "ref": "image",
  "ckpt_dir": "ckpt-dir",
  "ckpt-path": "ckpt-dir",
  "ckpt_path": "ckpt-dir",
  "motion_score": "motion-score",
};

/** Rewrites alias flags (`--cfg-scale 7`, `--num_frames=16`) to the canonical names. */
export function canonicalArgs(args: string[]): string[] {
  return args.map((a) => {
    const m = /^--([^=]+)(=.*)?$/.exec(a);
    if (!m) return a;
    const name = ALIASES[m[1]!];
    return name ? `--${name}${m[2] ?? ""}` : a;
  });
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "").slice(0, 48) || "video";
}

async function readPrompts(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`cannot read --prompts ${path}: ${(e as Error).message}`);
  }
  if (path.endsWith(".csv")) {
    const { parse } = await import("npm:csv-parse@5.6.0/sync");
    const rows = parse(text, { columns: true, skip_empty_lines: true }) as Record<string, string>[];
    if (!rows.length || !("text" in rows[0]!)) {
      throw new UsageError(`${path}: a prompts CSV needs a "text" column`);
    }
    return rows.map((r) => r.text!);
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  if (!lines.length) throw new UsageError(`${path} holds no prompts`);
  return lines;
}

function formatBytes(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

/** Sizes of the text encoders from their HF configs (T5 encoder + CLIP text tower). */
async function textSize(info: BundleInfo): Promise<TextEncoderSize> {
  const cfg = async (p: string) => {
    try {
      const j = JSON.parse(await Deno.readTextFile(join(info.dir, p, "config.json")));
      return (j.text_config ?? j) as Record<string, number>;
    } catch {
      return null;
    }
  };
  const t5 = await cfg(info.manifest.t5);
  const clip = await cfg(info.manifest.clip);
  const length = info.manifest.t5_max_length ?? 512;
  // defaults: the public T5-v1.1-XXL encoder and CLIP ViT-L/14 text tower (text-encoders.md)
  if (!t5 || !clip) return { ...RELEASE_TEXT_ENCODERS, length };
  const d = t5.d_model!, inner = t5.num_heads! * t5.d_kv!, ff = t5.d_ff!, L = t5.num_layers!;
  const t5n = t5.vocab_size! * d + L * (4 * d * inner + 3 * d * ff + 2 * d) + d +
    32 * t5.num_heads!;
  const h = clip.hidden_size!, m = clip.intermediate_size!, Lc = clip.num_hidden_layers!;
  const clipn = clip.vocab_size! * h + clip.max_position_embeddings! * h +
    Lc * (4 * h * h + 4 * h + 2 * h * m + m + h + 4 * h) + 2 * h;
  return {
    params: t5n + clipn,
    hostParams: t5.vocab_size! * d + clip.vocab_size! * h,
    width: d,
    ff,
    heads: t5.num_heads!,
    length,
  };
}

/** Byte counts for `--max-binding` / `--max-buffer`: `134217728`, `128MiB`, `1GiB`, `2G`. */
export function bytesFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])i?b?|b)?\s*$/i.exec(v);
  const n = m ? Math.round(Number(m[1]) * 1024 ** " kmgt".indexOf((m[2] ?? " ").toLowerCase())) : 0;
  if (!m || !(n >= 1) || !Number.isSafeInteger(n)) {
    throw new UsageError(
      `--${name} must be a byte count such as 134217728, 128MiB or 2GiB, got "${v}"`,
    );
  }
  return n;
}

/** Limits of `--dry-run`: each given one replaces the adapter's. */
interface DryRunLimits {
  gpuGb?: number;
  maxBinding?: number;
  maxBuffer?: number;
  embeddings?: boolean;
}

async function dryRun(
  info: BundleInfo,
  s: GenerationSettings,
  found: boolean,
  o: DryRunLimits,
): Promise<number> {
  const r = resolveSettings(info, s);
  const sizes = modelSizes(new MMDiT(info.dit).params.list(), new DcAe(info.ae).params.list());
  const text = await textSize(info);
  let maxBinding = 128 * 2 ** 20;
  let maxBuffer = 2 * 2 ** 30;
  let gpuBytes = (o.gpuGb ?? 16) * 2 ** 30;
  let adapter = "no GPU adapter (planned for a 128 MiB binding and a 2 GiB buffer limit)";
  if (o.gpuGb !== undefined && o.maxBinding !== undefined && o.maxBuffer !== undefined) {
    adapter = "not asked (the limits given on the command line)";
  } else {
    try {
      const rt = await init();
      maxBinding = rt.maxBinding;
      maxBuffer = rt.maxBufferSize;
      adapter = `${rt.info.name}${rt.info.isFallback ? " (software)" : ""}`;
      if (o.gpuGb === undefined && /llvmpipe|lavapipe|swiftshader/i.test(rt.info.name)) {
        gpuBytes = Deno.systemMemoryInfo().total / 2;
      }
    } catch (e) {
      if (!(e instanceof GpuUnavailableError)) throw e;
    }
  }
  maxBinding = o.maxBinding ?? maxBinding;
  maxBuffer = o.maxBuffer ?? maxBuffer;
  const [C, T, hp, wp] = r.latent;
  const tokens = T * (hp / info.dit.patchSize) * (wp / info.dit.patchSize); // latent grid / p²
  const bytesPer = dtypeBytes(currentDtype);
  console.log(`Plan (dry run, nothing generated)
  weights       ${found ? info.dir : `(not found: planned from the release presets)`}
  models        MMDiT ${info.dit.name} ${sizes.ditParams.toLocaleString()} params, DC-AE ${info.ae.name} ${sizes.aeParams.toLocaleString()} params, text encoders ${
    o.embeddings ? "not needed (--embeddings)" : `~${text.params.toLocaleString()} params`
  }; weights stored as ${currentDtype}
  video         ${r.numFrames} frames ${r.height}x${r.width} at ${r.fps} fps
  latent        [${C}, ${T}, ${hp}, ${wp}] -> ${tokens} image tokens + ${text.length} text tokens, CFG batch 3
  sampling      ${r.steps} Euler steps, shift alpha from ${
    r.schedule.slice(0, 3).map((x) => x.toFixed(4)).join(", ")
  }...; guidance ${r.guidance} / image ${r.guidanceImg}
  device        ${adapter}
Memory`);
  let plan;
  try {
    plan = planMemory({
      dit: info.dit,
      ...sizes,
      ae: info.ae,
      text: o.embeddings ? null : text,
      textLength: text.length,
      weightBytes: bytesPer,
      batch: 3,
      video: { frames: r.numFrames, height: r.height, width: r.width },
      latent: r.latent,
      gpuBytes,
      maxBinding,
      maxBuffer,
    });
  } catch (e) {
    if (!(e instanceof PlanError)) throw e;
    console.error(`infer: ${e.message}`);
    return 1;
  }
  for (const l of plan.lines) console.log(l);
  console.log(
    `  weights in total: ${
      formatBytes(
        (sizes.ditParams + sizes.aeParams + (o.embeddings ? 0 : text.params)) * bytesPer,
      )
    }`,
  );
  return 0;
}

let currentDtype: "bf16" | "f16" | "f32" = "bf16";
function dtypeBytes(d: string): number {
  return d === "f32" ? 4 : 2;
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: canonicalArgs(argv),
      strict: true,
      options: {
        prompt: { type: "string", multiple: true },
        prompts: { type: "string" },
        "negative-prompt": { type: "string" },
        image: { type: "string" },
        resolution: { type: "string" },
        "aspect-ratio": { type: "string" },
        height: { type: "string" },
        width: { type: "string" },
        "num-frames": { type: "string" },
        steps: { type: "string" },
        guidance: { type: "string" },
        "guidance-image": { type: "string" },
        shift: { type: "string" },
        "no-oscillation": { type: "boolean" },
        seed: { type: "string" },
        fps: { type: "string" },
        "motion-score": { type: "string" },
        output: { type: "string", short: "o" },
        "save-dir": { type: "string" },
        "ckpt-dir": { type: "string" },
        dtype: { type: "string", default: "bf16" },
        "stream-weights": { type: "boolean" },
        "synthetic-weights": { type: "boolean" },
        preset: { type: "string" },
        embeddings: { type: "string" },
        "dry-run": { type: "boolean" },
        "gpu-memory": { type: "string" },
        "max-binding": { type: "string" },
        "max-buffer": { type: "string" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`infer: ${(e as Error).message}\nRun \`deno task infer --help\` for the flags.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  try {
    if (!["bf16", "f16", "f32"].includes(values.dtype!)) {
      throw new UsageError(`--dtype must be bf16, f16 or f32, got "${values.dtype}"`);
    }
    currentDtype = values.dtype as "bf16" | "f16" | "f32";
    const prompts = [...(values.prompt ?? [])];
    if (values.prompts) prompts.push(...(await readPrompts(values.prompts)));
    if (!prompts.length) throw new UsageError(`give a prompt: --prompt "a red fox in the snow"`);
    const ms = values["motion-score"];
    const settings: Partial<GenerationSettings> = {
      resolution: values.resolution,
      aspectRatio: values["aspect-ratio"],
      height: numberFlag("height", values.height, { integer: true }),
      width: numberFlag("width", values.width, { integer: true }),
      numFrames: numberFlag("num-frames", values["num-frames"], { integer: true }),
      steps: numberFlag("steps", values.steps, { integer: true }),
      guidance: numberFlag("guidance", values.guidance),
      guidanceImg: numberFlag("guidance-image", values["guidance-image"]),
      flowShift: numberFlag("shift", values.shift, { above: 0 }),
      seed: numberFlag("seed", values.seed, { integer: true }),
      fps: numberFlag("fps", values.fps),
      motionScore: ms === undefined ? undefined : ms === "none" ? null : ms,
      negativePrompt: values["negative-prompt"],
      ...(values["no-oscillation"]
        ? { textOsci: false, imageOsci: false, scaleTemporalOsci: false }
        : {}),
    };
    const clean = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
    const ckpt = values["ckpt-dir"] ?? DEFAULT_MODEL_DIR;
    if (values["dry-run"]) {
      let info: BundleInfo;
      let found = true;
      try {
        info = await inspectBundle(ckpt);
      } catch (e) {
        if (!(e instanceof BundleError)) throw e;
        found = false;
        info = releaseBundleInfo(ckpt);
        console.log(`note: ${e.message}`);
      }
      const s = { ...DEFAULT_SETTINGS, ...info.manifest.defaults, ...clean } as GenerationSettings;
      return await dryRun(info, s, found, {
        gpuGb: numberFlag("gpu-memory", values["gpu-memory"], { above: 0 }),
        maxBinding: bytesFlag("max-binding", values["max-binding"]),
        maxBuffer: bytesFlag("max-buffer", values["max-buffer"]),
        embeddings: values.embeddings !== undefined,
      });
    }
    if (values.image) {
      try {
        await Deno.stat(values.image);
      } catch {
        throw new UsageError(`--image ${values.image} does not exist`);
      }
    }
    const synthetic = values["synthetic-weights"] === true;
    if (values.preset !== undefined && !(synthetic && !values["ckpt-dir"])) {
      throw new UsageError(
        `--preset only picks the MMDiT of --synthetic-weights without --ckpt-dir`,
      );
    }
    if (!values["ckpt-dir"] && !synthetic) {
      try {
        await Deno.stat(join(DEFAULT_MODEL_DIR, "kino.json"));
      } catch {
        throw new BundleError(
          `no --ckpt-dir given and the default model (${DEFAULT_MODEL_DIR}) is not in this ` +
            `checkout yet; pass --ckpt-dir with the Open-Sora v2 weights or a bundle ` +
            `(deno task init-bundle makes an untrained one)`,
        );
      }
    }
    let info: BundleInfo;
    if (synthetic && !values["ckpt-dir"]) {
      try {
        info = releaseBundleInfo("(synthetic)", values.preset);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    } else {
      info = await inspectBundle(ckpt, {
        textEncoders: !values.embeddings && !synthetic,
        weights: !synthetic,
      });
    }
    let s: ResolvedSettings;
    try {
      s = resolveSettings(
        info,
        { ...DEFAULT_SETTINGS, ...info.manifest.defaults, ...clean } as GenerationSettings,
      );
    } catch (e) {
      // bad settings (frames, sizes, steps) are the user's input: exit 2; a RangeError raised
      // later, while generating, is an internal error (exit 1)
      if (e instanceof RangeError) throw new UsageError(e.message);
      throw e;
    }
    // output paths, decided before any work so that a bad path fails fast
    const outputs = prompts.map((p, k) => {
      const seed = s.seed + k;
      if (values.output) {
        if (prompts.length === 1) return values.output;
        const ext = extname(values.output);
        return ext
          ? join(dirname(values.output), `${basename(values.output, ext)}_${k}${ext}`)
          : join(values.output, `${k}`);
      }
      return join(values["save-dir"] ?? "samples", `${slug(p)}_${seed}.mp4`);
    });
    for (const o of outputs) {
      if (!/\.(mp4|m4v|mov|webm|gif)$/i.test(o) && extname(o) !== "") {
        throw new UsageError(`--output ${o}: use .mp4, .webm, .gif, or a folder for PNG frames`);
      }
      await Deno.mkdir(extname(o) ? dirname(o) : o, { recursive: true });
    }
    const t0 = performance.now();
    await init();
    if (synthetic) {
      console.error(
        "note: --synthetic-weights: seeded random weights, not a trained model; the video is " +
          "noise (this run measures time and memory)",
      );
    }
    const bundle = synthetic
      ? await syntheticBundle(info, {
        seed: s.seed,
        dtype: currentDtype,
        tokenizers: DEFAULT_MODEL_DIR,
      })
      : await loadBundle(ckpt, {
        dtype: currentDtype,
        streamWeights: values["stream-weights"],
        embeddings: values.embeddings,
      });
    const loadS = (performance.now() - t0) / 1000;
    let bar: ProgressBar | null = null;
    const results = await generate(
      bundle,
      { ...clean, prompt: prompts, image: values.image },
      (e) => {
        if (e.kind === "stage" && e.stage === "denoise") {
          bar = new ProgressBar(`sample ${e.sample + 1}/${prompts.length}`, s.steps, {
            quiet: values.quiet,
          });
        } else if (e.kind === "step") bar?.tick(1, `t ${e.t.toFixed(3)}`);
        else if (e.kind === "stage" && e.stage === "decode") bar?.finish();
      },
    );
    for (const [k, v] of results.entries()) {
      const out = outputs[k]!;
      const written = await writeVideo(out, v.frames, {
        t: v.t,
        h: v.height,
        w: v.width,
        fps: v.fps,
      });
      const sidecar = extname(out) ? `${out}.json` : join(out, "settings.json");
      const meta = {
        kino: "0.1.0",
        prompt: prompts[k],
        model_prompt: v.prompt,
        negative_prompt: s.negativePrompt,
        image: values.image ?? null,
        cond_type: v.condType,
        seed: v.seed,
        num_frames: v.t,
        height: v.height,
        width: v.width,
        fps: v.fps,
        steps: s.steps,
        guidance: s.guidance,
        guidance_image: s.guidanceImg,
        shift: s.flowShift,
        oscillation: { text: s.textOsci, image: s.imageOsci, temporal: s.scaleTemporalOsci },
        motion_score: s.motionScore,
        schedule: s.schedule,
        ckpt_dir: synthetic && !values["ckpt-dir"] ? null : ckpt,
        synthetic_weights: synthetic,
        model: {
          mmdit: info.dit,
          dc_ae: info.ae.name,
          weights: synthetic ? `synthetic (seeded random, seed ${s.seed})` : info.manifest.name ??
            null,
        },
        dtype: currentDtype,
        files: written,
        load_seconds: loadS,
        total_seconds: (performance.now() - t0) / 1000,
      };
      const tmp = `${sidecar}.tmp-${Deno.pid}`;
      await Deno.writeTextFile(tmp, JSON.stringify(meta, null, 2) + "\n");
      await Deno.rename(tmp, sidecar);
      console.log(
        `wrote ${out} (${v.t} frames ${v.height}x${v.width}${
          synthetic ? ", synthetic weights: noise" : ""
        }) and ${sidecar}`,
      );
    }
    console.log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    bundle.dispose();
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`infer: ${e.message}`);
      return 2;
    }
    console.error(
      `infer: ${Deno.env.get("KINO_DEBUG") ? (e as Error).stack : (e as Error).message}`,
    );
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
