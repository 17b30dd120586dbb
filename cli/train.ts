/**
 * `deno task train`: trains the MMDiT with the rectified-flow objective (`train/trainer.ts`) on a
 * latent cache (`deno task cache`) or directly on a dataset CSV (clips encoded on the fly by the
 * bundle's frozen DC-AE and text encoders). Writes resumable checkpoints, metrics, validation
 * samples and an inference-ready bundle (`OUT/bundle/`, for `deno task infer --ckpt-dir`).
 * Exit codes: 0 done, 1 failure (no usable data, missing cache, model/data mismatch, NaN loss),
 * 2 bad arguments, 130 interrupted (after saving a checkpoint).
 */
import { parseArgs } from "node:util";
import { numberFlag, UsageError } from "./_args.ts";
import { basename, join, resolve } from "node:path";
import { init } from "../engine/runtime.ts";
import { saveSafetensors, type TensorToWrite } from "../engine/safetensors.ts";
import { writeVideo } from "../io/video.ts";
import { MMDiT } from "../models/mmdit/model.ts";
import {
  type MMDiTConfig,
  mmditFromReferenceConfig,
  mmditPreset,
  mmditToReferenceConfig,
  validateMMDiTConfig,
} from "../models/mmdit/config.ts";
import {
  type Bundle,
  BundleError,
  type BundleInfo,
  type BundleManifest,
  generate,
  inspectBundle,
} from "../models/pipeline.ts";
import {
  CacheError,
  encodeClips,
  encodeNull,
  type FrozenEncoders,
  loadFrozenEncoders,
  readCacheIndex,
  resolveBuckets,
  withBatchSize,
} from "../train/cache.ts";
import { CachedDataset } from "../train/cached_dataset.ts";
import {
  type Cursor,
  cursorFromJSON,
  DatasetCsvError,
  DatasetError,
  openDataset,
} from "../train/data/mod.ts";
import type { NullEmbeddings, ShiftMode, TrainBatch } from "../train/objective.ts";
import { Trainer } from "../train/trainer.ts";
import {
  type HostTensor,
  initFrom,
  resolveResume,
  stepDirName,
  writeCheckpoint,
  writeTextAtomic,
} from "../train/checkpoint.ts";
import { MetricsWriter } from "../train/metrics.ts";
import { ProgressBar } from "./_progress.ts";

const HELP =
  `Usage: deno task train (--cache CACHE | --csv DATA.csv --ckpt-dir BUNDLE) --output-dir OUT [options]

Trains the MMDiT with Open-Sora 2.0's rectified-flow objective (logit-normal timesteps with the
resolution shift, t2v / i2v_head condition mix 1:7, T5/CLIP dropout 0.316, AdamW eps 1e-15, grad
clip 1.0). Writes OUT/checkpoints/step_N/ (resumable), OUT/metrics.jsonl and .csv, validation
samples in OUT/samples/step_N/, and OUT/bundle/ (kino.json + the trained MMDiT + links to the
DC-AE and text encoders) for \`deno task infer --ckpt-dir OUT/bundle\`.

Data
  --cache DIR            latent cache from \`deno task cache\` (fast; one crop per clip)
  --csv FILE             dataset CSV, encoded on the fly with the frozen models of --ckpt-dir
  --ckpt-dir DIR         bundle: frozen DC-AE and text encoders (needed with --csv; with --cache
                         default the bundle the cache was made from), default model config
  --buckets NAME|FILE    bucket config for --csv (preset hcae, default, or .json)
  --resolution RES       move the bucket config to this resolution (--csv), e.g. 256px
  --batch-size N         batch size of every bucket (default: the bucket config's)
  --encoder-dtype T      weight storage of the frozen encoders: bf16 (default), f16, f32
Model
  --config FILE.json     MMDiT config (reference model_args in snake_case, or Kino's MMDiTConfig)
  --preset NAME          MMDiT preset (small, tiny, hcae, ...); default: the bundle's MMDiT
  --init CKPT|bundle     initial weights (weights only; img_in/cond_in/final_layer may differ
                         in shape and are re-initialised, or carried over from a coarser patch
                         size, e.g. 2 to 1); "bundle": the bundle's MMDiT.
                         Default: random initialisation from --seed
Optimisation
  --max-steps N          optimiser updates in total, counting resumed ones (default 1000)
  --lr X                 peak learning rate (default 3e-5)
  --warmup-steps N       linear warm-up updates (default 0)
  --grad-accum N         micro-batches per update (default 1)
  --ema-decay D          keep an EMA of the weights (default off); the bundle gets the EMA
  --recompute            recompute block activations in the backward (less memory)
  --seed N               seed of initialisation, data order and objective draws (default 42)
  --conditions SPEC      condition mix per sample, e.g. t2v:1 (text-to-video only) or the
                         reference's t2v:1,i2v_head:7 (the default)
  --text-dropout P       probability of replacing a caption's T5 states (and, independently,
                         its CLIP vector) by the empty prompt's (default 0.31622777 = √0.1)
  --shift train|inference|none|ALPHA
                         timestep shift α of the logit-normal draws: the training script's
                         size rule (default), the sampler's, none (α = 1), or a fixed α > 0
Checkpoints and logs
  --output-dir DIR       run folder (required)
  --resume latest|PATH   continue from the newest checkpoint of --output-dir, or a step folder
  --ckpt-every N         checkpoint (and bundle) every N updates (default 250) and at the end
  --keep-last K          keep the newest K checkpoints (default 20)
  --log-every N          print mean loss / grad norm / lr every N updates (default 10)
  --no-bundle            do not write OUT/bundle/
  --bundle-dtype T       storage of the bundle's MMDiT weights: bf16 (default) or f32
Validation
  --validate-every N     every N updates, sample the validation prompts (fixed seed) with the
                         current weights into OUT/samples/step_N/ (default off)
  --val-prompts P        a file (one prompt per line) or prompts separated by ";"
                         (default: the first two captions of the data)
  --val-steps N          sampling steps (default: the bundle's default, else 30)
  --val-num-frames N     default: the frames of the most common training bucket
  --val-height H --val-width W   default: the most common training bucket's size
Other
  --quiet                no progress bar
  -h, --help             this text

Ctrl-C (SIGINT) or SIGTERM: the current update finishes, a checkpoint is saved, exit code 130.`;

/** One micro-batch from a data source, ready for the trainer. */
interface SourceBatch {
  batch: TrainBatch;
  cursor: Cursor;
  dispose(): void;
}

/** Where the training data comes from. */
interface Source {
  kind: "cache" | "csv";
  /** Latent channels C and text widths (for the model check). */
  latentChannels: number;
  t5Dim: number;
  clipDim: number;
  /** Latent shapes `[C, T', h, w]` that batches can have. */
  latentShapes: number[][];
  /** The most common training clip shape (validation defaults). */
  clip: { frames: number; height: number; width: number };
  /** CSV texts (validation prompt defaults). */
  texts: string[];
  summary: string;
  nulls: NullEmbeddings;
  batches(from?: Cursor): AsyncGenerator<SourceBatch, void, undefined>;
}

function intArg(name: string, v: string | undefined, def: number, min = 1): number {
  return numberFlag(name, v, { integer: true, min }) ?? def;
}

/** `--shift`: a mode name or a fixed α > 0. */
function parseShift(v: string): ShiftMode {
  if (v === "train" || v === "inference" || v === "none") return v;
  const a = Number(v);
  if (!(Number.isFinite(a) && a > 0)) {
    throw new UsageError(`--shift must be train, inference, none or a number > 0, got "${v}"`);
  }
  return a;
}

function mostCommon<T>(items: readonly T[], key: (t: T) => string): T | undefined {
  const n = new Map<string, [T, number]>();
  for (const it of items) {
    const k = key(it);
    const c = n.get(k);
    n.set(k, [it, (c?.[1] ?? 0) + 1]);
  }
  return [...n.values()].sort((a, b) => b[1] - a[1])[0]?.[0];
}

/** Reads `--config`: reference `model_args` (snake_case, optionally under `model_args`) or Kino's. */
async function readModelConfig(path: string): Promise<MMDiTConfig> {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new UsageError(`cannot read --config ${path}: ${(e as Error).message}`);
  }
  const args = (j.model_args ?? j) as Record<string, unknown>;
  const name = basename(path).replace(/\.json$/, "");
  if ("in_channels" in args) return mmditFromReferenceConfig(args, name);
  if ("inChannels" in args) {
    const c = { name, ...args } as unknown as MMDiTConfig;
    validateMMDiTConfig(c);
    return c;
  }
  throw new UsageError(
    `--config ${path}: expected an MMDiT config with "in_channels" (reference model_args) or ` +
      `"inChannels" (Kino MMDiTConfig)`,
  );
}

async function readValPrompts(spec: string): Promise<string[]> {
  let text: string | null = null;
  try {
    if ((await Deno.stat(spec)).isFile) text = await Deno.readTextFile(spec);
  } catch {
    text = null;
  }
  const list = text !== null
    ? text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
    : spec.split(";").map((s) => s.trim()).filter((s) => s);
  if (!list.length) throw new UsageError(`--val-prompts ${spec} gives no prompts`);
  return list;
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "").slice(0, 40) || "sample";
}

// ---------------------------------------------------------------- sources

async function cacheSource(
  dir: string,
  batchSize: number | undefined,
  seed: number,
): Promise<{ source: Source; ds: CachedDataset }> {
  const ds = await CachedDataset.open(dir, { batchSize, seed });
  for (const w of ds.warnings) console.warn(`warning: ${w}`);
  const nul = await ds.nullEmbeddings();
  const t = ds.index.text;
  const clip = mostCommon(ds.entries, (e) => `${e.frames}/${e.height}/${e.width}`)!;
  const source: Source = {
    kind: "cache",
    latentChannels: ds.index.bundle.ae.latentChannels,
    t5Dim: t.t5Dim,
    clipDim: t.clipDim,
    latentShapes: ds.groups.filter((g) => g.batches > 0).map((g) => g.latentShape),
    clip: { frames: clip.frames, height: clip.height, width: clip.width },
    texts: ds.entries.map((e) => e.text),
    summary: `cache ${dir}: ${ds.entries.length} clips, ${ds.batchesPerEpoch} batches per epoch (${
      ds.groups.map((g) => `[${g.latentShape}] x${g.members.length} batch ${g.batchSize}`).join(
        ", ",
      )
    })`,
    nulls: { txt: nul.txt, yVec: nul.yVec },
    async *batches(from) {
      for await (const b of ds.batches(from)) {
        yield { batch: b.batch, cursor: b.cursor, dispose() {} };
      }
    },
  };
  return { source, ds };
}

async function csvSource(
  csv: string,
  enc: FrozenEncoders,
  opts: { buckets?: string; resolution?: string; batchSize?: number; seed: number },
): Promise<Source> {
  let buckets = await resolveBuckets(opts.buckets, opts.resolution);
  if (opts.batchSize !== undefined) buckets = withBatchSize(buckets, opts.batchSize);
  const ae = enc.info.ae;
  const ds = await openDataset(csv, {
    buckets,
    seed: opts.seed,
    spatialCompression: ae.spatialCompression,
    log: (m) => console.warn(m),
  });
  for (const s of ds.report.rows) {
    if (!s.used && s.reason !== "no-bucket") {
      console.warn(`skipped line ${s.line}: ${s.reason}: ${s.detail}`);
    }
  }
  const all = ds.buckets.all();
  const latent = (b: { frames: number; height: number; width: number }) => [
    ae.latentChannels,
    b.frames === 1 ? 1 : b.frames / ae.timeCompression,
    b.height / ae.spatialCompression,
    b.width / ae.spatialCompression,
  ];
  const used = ds.report.buckets.length ? ds.report.buckets.map((c) => c.bucket) : all;
  for (const b of used) {
    if (b.frames !== 1 && b.frames % ae.timeCompression !== 0) {
      throw new DatasetError(
        `bucket ${b.key} has ${b.frames} frames; the DC-AE ${ae.name} encodes 1 or a multiple of ` +
          `${ae.timeCompression} frames; fix the bucket config`,
      );
    }
  }
  const nul = await encodeNull(enc);
  const clip = mostCommon(
    ds.report.buckets.flatMap((c) => Array<typeof c.bucket>(c.samples).fill(c.bucket)),
    (b) => b.key,
  );
  return {
    kind: "csv",
    latentChannels: ae.latentChannels,
    t5Dim: nul.txtShape[2]!,
    clipDim: nul.yVec.length,
    latentShapes: used.map(latent),
    clip: clip ?? used[0]!,
    texts: ds.rows.map((r) => r.text),
    summary: `csv ${csv}: ${ds.report.used} usable rows of ${ds.report.records}, ` +
      `${ds.report.batches} batches in epoch 0 (encoded on the fly)`,
    nulls: { txt: nul.txt, yVec: nul.yVec },
    async *batches(from) {
      for await (const b of ds.batches(from, { prefetch: true })) {
        if (b.shape[0] === 0) continue; // every sample failed to load (logged)
        const e = encodeClips(enc, b.video, b.shape, b.captions);
        yield {
          batch: {
            latents: e.latents,
            refLatents: e.refLatents ?? undefined,
            txt: e.txt,
            yVec: e.yVec,
          },
          cursor: b.cursor,
          dispose: () => e.dispose(),
        };
      }
    },
  };
}

// ---------------------------------------------------------------- bundle output

async function lexists(p: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(p);
  } catch {
    return null;
  }
}

async function copyTree(src: string, dst: string): Promise<void> {
  const st = await Deno.stat(src);
  if (!st.isDirectory) {
    await Deno.copyFile(src, dst);
    return;
  }
  await Deno.mkdir(dst, { recursive: true });
  for await (const e of Deno.readDir(src)) await copyTree(join(src, e.name), join(dst, e.name));
}

/** Links `target` at `path` (a copy where links are not allowed); keeps an existing copy. */
async function linkOrCopy(target: string, path: string): Promise<void> {
  const cur = await lexists(path);
  if (cur?.isSymlink) {
    if ((await Deno.readLink(path)) === target) return;
    await Deno.remove(path); // removes the link only
  } else if (cur) return; // a copy made earlier
  try {
    await Deno.symlink(target, path);
  } catch {
    await copyTree(target, path);
  }
}

/**
 * Writes `OUT/bundle/`: kino.json, the trained MMDiT weights, and links to the source bundle's
 * DC-AE weights and text encoder folders.
 */
export async function writeTrainedBundle(
  out: string,
  src: BundleInfo,
  dit: MMDiTConfig,
  weights: Map<string, HostTensor>,
  step: number,
  dtype: "bf16" | "f32",
): Promise<string> {
  const dir = join(out, "bundle");
  await Deno.mkdir(dir, { recursive: true });
  const m = src.manifest;
  const real = async (p: string) => await Deno.realPath(resolve(src.dir, p));
  const aeTarget = await real(m.dc_ae.weights);
  const base = basename(aeTarget);
  const aeName = ["mmdit.safetensors", "kino.json", "t5", "clip"].includes(base)
    ? `dc_ae_${base}`
    : base;
  await linkOrCopy(aeTarget, join(dir, aeName));
  await linkOrCopy(await real(m.t5), join(dir, "t5"));
  await linkOrCopy(await real(m.clip), join(dir, "clip"));
  const tensors = new Map<string, TensorToWrite>();
  for (const [k, t] of weights) {
    tensors.set(k, { dtype: dtype === "bf16" ? "BF16" : "F32", shape: t.shape, data: t.data });
  }
  await saveSafetensors(join(dir, "mmdit.safetensors"), tensors, {
    format: "pt",
    kino_step: String(step),
  });
  const manifest: BundleManifest = {
    format: "kino-bundle",
    version: 1,
    name: `MMDiT ${dit.name} trained by kino train (step ${step}) with the DC-AE and text ` +
      `encoders of ${m.name ?? src.dir}`,
    mmdit: { weights: "mmdit.safetensors", config: mmditToReferenceConfig(dit) },
    dc_ae: { ...m.dc_ae, weights: aeName },
    t5: "t5",
    clip: "clip",
  };
  if (m.t5_max_length !== undefined) manifest.t5_max_length = m.t5_max_length;
  if (m.clip_max_length !== undefined) manifest.clip_max_length = m.clip_max_length;
  if (m.defaults) manifest.defaults = m.defaults;
  await writeTextAtomic(join(dir, "kino.json"), JSON.stringify(manifest, null, 2) + "\n");
  return dir;
}

// ---------------------------------------------------------------- main

/** Runs the command; returns the exit code. */
/** `t2v:1,i2v_head:7` → weights per condition type (a clear error for anything else). */
function parseConditions(spec: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of spec.split(",")) {
    const m = /^\s*(t2v|i2v_head)\s*:\s*([0-9.]+)\s*$/.exec(part);
    if (!m || !Number.isFinite(Number(m[2]))) {
      throw new RangeError(
        `--conditions "${spec}": expected entries like t2v:1,i2v_head:7 (types t2v, i2v_head)`,
      );
    }
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        cache: { type: "string" },
        csv: { type: "string" },
        "ckpt-dir": { type: "string" },
        buckets: { type: "string" },
        resolution: { type: "string" },
        "batch-size": { type: "string" },
        "encoder-dtype": { type: "string", default: "bf16" },
        config: { type: "string" },
        preset: { type: "string" },
        init: { type: "string" },
        "max-steps": { type: "string" },
        lr: { type: "string" },
        "warmup-steps": { type: "string" },
        "grad-accum": { type: "string" },
        "ema-decay": { type: "string" },
        recompute: { type: "boolean" },
        seed: { type: "string" },
        conditions: { type: "string" },
        "text-dropout": { type: "string" },
        shift: { type: "string" },
        "output-dir": { type: "string" },
        resume: { type: "string" },
        "ckpt-every": { type: "string" },
        "keep-last": { type: "string" },
        "log-every": { type: "string" },
        "no-bundle": { type: "boolean" },
        "bundle-dtype": { type: "string", default: "bf16" },
        "validate-every": { type: "string" },
        "val-prompts": { type: "string" },
        "val-steps": { type: "string" },
        "val-num-frames": { type: "string" },
        "val-height": { type: "string" },
        "val-width": { type: "string" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`train: ${(e as Error).message}\nRun \`deno task train --help\` for the flags.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const owned: (() => void)[] = [];
  let stop: "SIGINT" | "SIGTERM" | null = null;
  const onSignal = (sig: "SIGINT" | "SIGTERM") => () => {
    if (stop) {
      console.error(`\ntrain: second ${sig}: exiting without saving`);
      Deno.exit(130);
    }
    stop = sig;
    console.error(
      `\ntrain: ${sig}: finishing the current update, then saving a checkpoint ` +
        `(send it again to quit at once)`,
    );
  };
  const handlers = { SIGINT: onSignal("SIGINT"), SIGTERM: onSignal("SIGTERM") };
  try {
    // ---- arguments
    if (!values["output-dir"]) throw new UsageError(`--output-dir is required (see --help)`);
    if (!values.cache === !values.csv) {
      throw new UsageError(`give exactly one of --cache DIR or --csv FILE (see --help)`);
    }
    if (values.csv && !values["ckpt-dir"]) {
      throw new UsageError(`--csv needs --ckpt-dir BUNDLE (the frozen DC-AE and text encoders)`);
    }
    if (values.config && values.preset) throw new UsageError(`give --config or --preset, not both`);
    for (const k of ["buckets", "resolution"] as const) {
      if (values[k] && values.cache) {
        throw new UsageError(`--${k} applies to --csv; a cache keeps the buckets it was made with`);
      }
    }
    const ed = values["encoder-dtype"]!;
    if (!["bf16", "f16", "f32"].includes(ed)) {
      throw new UsageError(`--encoder-dtype must be bf16, f16 or f32, got "${ed}"`);
    }
    const bundleDtype = values["bundle-dtype"]!;
    if (bundleDtype !== "bf16" && bundleDtype !== "f32") {
      throw new UsageError(`--bundle-dtype must be bf16 or f32, got "${bundleDtype}"`);
    }
    const out = values["output-dir"]!;
    const seed = intArg("seed", values.seed, 42, 0);
    const maxSteps = intArg("max-steps", values["max-steps"], 1000);
    const batchSize = values["batch-size"] === undefined
      ? undefined
      : intArg("batch-size", values["batch-size"], 1);
    const gradAccum = intArg("grad-accum", values["grad-accum"], 1);
    const ckptEvery = intArg("ckpt-every", values["ckpt-every"], 250);
    const keepLast = intArg("keep-last", values["keep-last"], 20);
    const logEvery = intArg("log-every", values["log-every"], 10);
    const validateEvery = intArg("validate-every", values["validate-every"], 0, 0);
    const warmup = intArg("warmup-steps", values["warmup-steps"], 0, 0);
    const lr = numberFlag("lr", values.lr);
    if (lr !== undefined && !(lr > 0)) throw new UsageError(`--lr must be > 0, got ${lr}`);
    const shift = values.shift !== undefined ? parseShift(values.shift) : undefined;
    const ema = numberFlag("ema-decay", values["ema-decay"]);
    if (ema !== undefined && !(ema > 0 && ema < 1)) {
      throw new UsageError(`--ema-decay must be in (0, 1), got ${ema}`);
    }
    const valSteps = values["val-steps"] === undefined
      ? undefined
      : intArg("val-steps", values["val-steps"], 1);
    const valFrames = values["val-num-frames"] === undefined
      ? undefined
      : intArg("val-num-frames", values["val-num-frames"], 1);
    const valH = values["val-height"] === undefined
      ? undefined
      : intArg("val-height", values["val-height"], 1);
    const valW = values["val-width"] === undefined
      ? undefined
      : intArg("val-width", values["val-width"], 1);
    let valPrompts = values["val-prompts"] ? await readValPrompts(values["val-prompts"]) : null;

    // ---- data and frozen models
    await init();
    let srcInfo: BundleInfo | null = null;
    let cacheBundle: { dir: string; dit: MMDiTConfig } | null = null;
    if (values.cache) {
      const idx = await readCacheIndex(values.cache).catch(() => null);
      if (idx) cacheBundle = { dir: idx.bundle.dir, dit: idx.bundle.dit };
    }
    const bundleDir = values["ckpt-dir"] ?? cacheBundle?.dir;
    if (values["ckpt-dir"]) {
      srcInfo = await inspectBundle(values["ckpt-dir"]);
      if (cacheBundle && resolve(values["ckpt-dir"]) !== cacheBundle.dir) {
        console.warn(
          `warning: the cache was made with the bundle ${cacheBundle.dir}; --ckpt-dir ` +
            `${values["ckpt-dir"]} gives the DC-AE and text encoders of validation and ` +
            `OUT/bundle: they must be the same models`,
        );
      }
    } else if (bundleDir) {
      srcInfo = await inspectBundle(bundleDir).catch((e) => {
        console.warn(
          `warning: the cache's bundle ${bundleDir} cannot be opened (${(e as Error).message}); ` +
            `no validation samples and no OUT/bundle (pass --ckpt-dir to fix)`,
        );
        return null;
      });
    }
    let enc: FrozenEncoders | null = null;
    if (values.csv || (validateEvery > 0 && srcInfo)) {
      enc = await loadFrozenEncoders(srcInfo!.dir, { dtype: ed as "bf16" | "f16" | "f32" });
      owned.push(() => enc!.dispose());
    }
    if (validateEvery > 0 && !srcInfo) {
      throw new UsageError(
        `--validate-every needs the bundle's DC-AE and text encoders: pass --ckpt-dir`,
      );
    }
    const source = values.cache
      ? (await cacheSource(values.cache, batchSize, seed)).source
      : await csvSource(values.csv!, enc!, {
        buckets: values.buckets,
        resolution: values.resolution,
        batchSize,
        seed,
      });
    console.log(source.summary);

    // ---- model
    const cfg = values.config
      ? await readModelConfig(values.config)
      : values.preset
      ? mmditPreset(values.preset)
      : srcInfo?.dit ?? cacheBundle?.dit;
    if (!cfg) throw new UsageError(`no MMDiT config: pass --config or --preset`);
    const C = source.latentChannels, p = cfg.patchSize;
    const where = source.kind === "cache" ? `the cache ${values.cache}` : `the bundle's DC-AE`;
    const fix = `use the MMDiT config of the bundle the data was encoded with (drop ` +
      `--preset/--config), or re-encode the data with a matching bundle`;
    if (C * p * p !== cfg.inChannels) {
      throw new CacheError(
        `${where} has latents of ${C} channels (shapes ${
          source.latentShapes.map((s) => `[${s}]`).join(", ")
        }), but the MMDiT ${cfg.name} takes in_channels ${cfg.inChannels} = C·p² with patch ${p}; ${fix}`,
      );
    }
    const odd = source.latentShapes.find((s) => s[2]! % p !== 0 || s[3]! % p !== 0);
    if (odd) {
      throw new CacheError(
        `${where} has latents [${odd}] whose h×w is not a multiple of the MMDiT's patch ${p}; ${fix}`,
      );
    }
    if (cfg.contextInDim !== source.t5Dim || cfg.vecInDim !== source.clipDim) {
      throw new CacheError(
        `${where} has T5 states of width ${source.t5Dim} and CLIP vectors of width ` +
          `${source.clipDim}, but the MMDiT ${cfg.name} takes context_in_dim ${cfg.contextInDim} ` +
          `and vec_in_dim ${cfg.vecInDim}; ${fix}`,
      );
    }
    const dit = new MMDiT(cfg);
    owned.push(() => dit.params.dispose());
    const resumeDir = values.resume ? await resolveResume(values.resume, out) : null;
    if (values.resume === "latest" && !resumeDir) {
      console.log(`no checkpoint in ${out}: starting a new run`);
    }
    if (!resumeDir && values.init) {
      let path = values.init;
      if (path === "bundle") {
        if (!srcInfo) throw new UsageError(`--init bundle needs --ckpt-dir`);
        path = join(srcInfo.dir, srcInfo.manifest.mmdit.weights);
      }
      const r = await initFrom(dit.params, path, { seed, patchSize: cfg.patchSize });
      console.log(
        `initialised from ${path}: ${r.loaded} tensors loaded` +
          (r.repatched.length
            ? ` (${
              r.repatched.map((w) => w.name).join(", ")
            } carried over to patch ${cfg.patchSize})`
            : "") +
          (r.reinitialized.length
            ? `, re-initialised ${r.reinitialized.map((w) => w.name).join(", ")}`
            : "") +
          (r.missing.length ? `, ${r.missing.length} missing (random)` : "") +
          (r.unexpected.length ? `, ${r.unexpected.length} unexpected (ignored)` : ""),
      );
    } else dit.params.initialize(seed);
    const trainer = new Trainer(dit, {
      lr,
      warmupSteps: warmup,
      emaDecay: ema ?? null,
      gradAccumulation: gradAccum,
      recompute: values.recompute ?? false,
      objective: {
        seed,
        ...(values.conditions ? { conditionWeights: parseConditions(values.conditions) } : {}),
        ...(shift !== undefined ? { shift } : {}),
        ...(values["text-dropout"] !== undefined
          ? {
            t5Dropout: Number(values["text-dropout"]),
            clipDropout: Number(values["text-dropout"]),
          }
          : {}),
      },
      nullEmbeddings: source.nulls,
    });
    owned.push(() => trainer.dispose());
    let cursor: Cursor | undefined;
    if (resumeDir) {
      const r = await trainer.resume(resumeDir);
      const dc = r!.dataCursor as { source?: string; cursor?: unknown } | null;
      if (dc?.source === source.kind && dc.cursor) cursor = cursorFromJSON(dc.cursor);
      else {
        console.warn(
          `warning: the checkpoint's data position is for ${dc?.source ?? "no"} data; the ` +
            `${source.kind} data starts from its beginning`,
        );
      }
      console.log(
        `resumed from ${r!.dir} at step ${r!.step}` +
          (cursor ? ` (data epoch ${cursor.epoch}, batch ${cursor.position})` : ""),
      );
      if (r!.differences.length) {
        console.warn(
          `warning: settings differ from the checkpoint's: ${r!.differences.join("; ")}`,
        );
      }
    }
    const start = trainer.steps;
    if (start >= maxSteps) {
      console.log(`already at step ${start} >= --max-steps ${maxSteps}: nothing to do`);
      return 0;
    }
    await Deno.mkdir(out, { recursive: true });
    const metrics = await MetricsWriter.open(out, { resumeStep: start });
    await writeTextAtomic(
      join(out, "train_config.json"),
      JSON.stringify(
        { args: argv, model: cfg, trainer: trainer.options, data: source.summary },
        null,
        2,
      ) +
        "\n",
    );

    // ---- validation
    if (validateEvery > 0 && !valPrompts) {
      valPrompts = [...new Set(source.texts)].slice(0, 2);
    }
    const validate = async (step: number) => {
      const bundle: Bundle = {
        ...srcInfo!,
        dit: cfg,
        mmdit: dit,
        dcAe: enc!.dcAe,
        text: enc!.text,
        streamed: false,
        dispose() {},
      };
      const vids = await generate(bundle, {
        prompt: valPrompts!,
        seed,
        steps: valSteps ?? srcInfo!.manifest.defaults?.steps ?? 30,
        numFrames: valFrames ?? source.clip.frames,
        height: valH ?? source.clip.height,
        width: valW ?? source.clip.width,
      });
      const dir = join(out, "samples", stepDirName(step));
      await Deno.mkdir(dir, { recursive: true });
      for (const [k, v] of vids.entries()) {
        const file = join(dir, `${k}_${slug(valPrompts![k]!)}.mp4`);
        await writeVideo(file, v.frames, { t: v.t, h: v.height, w: v.width, fps: v.fps });
        await writeTextAtomic(
          `${file}.json`,
          JSON.stringify({ step, prompt: valPrompts![k], model_prompt: v.prompt, seed: v.seed }) +
            "\n",
        );
      }
      console.log(`step ${step}: wrote ${vids.length} validation sample(s) to ${dir}`);
    };

    // ---- checkpoints
    let lastCursor: Cursor | undefined = cursor;
    let savedAt = start;
    const checkpoint = async () => {
      const data = await trainer.snapshot({ source: source.kind, cursor: lastCursor ?? null });
      const dir = await writeCheckpoint(out, data, { keepLast });
      let extra = "";
      if (srcInfo && !values["no-bundle"]) {
        const b = await writeTrainedBundle(
          out,
          srcInfo,
          cfg,
          data.ema ?? data.model,
          trainer.steps,
          bundleDtype,
        );
        extra = ` and ${b}${data.ema ? " (EMA weights)" : ""}`;
      }
      savedAt = trainer.steps;
      console.log(`step ${trainer.steps}: saved ${dir}${extra}`);
    };

    // ---- loop
    Deno.addSignalListener("SIGINT", handlers.SIGINT);
    Deno.addSignalListener("SIGTERM", handlers.SIGTERM);
    const bar = new ProgressBar("train", maxSteps - start, { quiet: values.quiet });
    const it = source.batches(cursor);
    let win = { loss: 0, gn: 0, n: 0 };
    while (trainer.steps < maxSteps && !stop) {
      const micro: SourceBatch[] = [];
      let r: Awaited<ReturnType<Trainer["step"]>>;
      try {
        for (let m = 0; m < gradAccum; m++) {
          const n = await it.next();
          if (n.done) throw new DatasetError("the data ran out");
          micro.push(n.value);
        }
        r = await trainer.step(micro.map((x) => x.batch));
      } finally {
        for (const x of micro) x.dispose();
      }
      lastCursor = micro.at(-1)!.cursor;
      await metrics.write(r);
      const s = trainer.steps;
      if (!Number.isFinite(r.loss)) {
        throw new Error(
          `the loss is ${r.loss} at step ${s} (grad norm ${r.gradNorm}); lower --lr or resume ` +
            `from an earlier checkpoint`,
        );
      }
      win = { loss: win.loss + r.loss, gn: win.gn + r.gradNorm, n: win.n + 1 };
      bar.tick(1, `step ${s}/${maxSteps} loss ${r.loss.toFixed(4)}`);
      if (s % logEvery === 0 || s === maxSteps) {
        console.log(
          `step ${s}/${maxSteps} loss ${(win.loss / win.n).toFixed(5)} grad_norm ${
            (win.gn / win.n).toFixed(4)
          } lr ${r.lr.toExponential(3)} ${r.samplesPerSec.toFixed(2)} samples/s`,
        );
        win = { loss: 0, gn: 0, n: 0 };
      }
      if (s % ckptEvery === 0 || s === maxSteps) await checkpoint();
      if (validateEvery > 0 && s % validateEvery === 0) await validate(s);
    }
    bar.finish();
    if (stop) {
      if (savedAt !== trainer.steps) await checkpoint();
      console.log(`interrupted at step ${trainer.steps}; resume with --resume latest`);
      return 130;
    }
    console.log(`done: ${trainer.steps} steps in ${out}`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`train: ${e.message}`);
      return 2;
    }
    const known = e instanceof CacheError || e instanceof DatasetError ||
      e instanceof DatasetCsvError || e instanceof BundleError;
    console.error(
      `train: ${!known && Deno.env.get("KINO_DEBUG") ? (e as Error).stack : (e as Error).message}`,
    );
    return 1;
  } finally {
    try {
      Deno.removeSignalListener("SIGINT", handlers.SIGINT);
      Deno.removeSignalListener("SIGTERM", handlers.SIGTERM);
    } catch {
      // not added
    }
    for (const f of owned.reverse()) {
      try {
        f();
      } catch {
        // best effort at exit
      }
    }
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
