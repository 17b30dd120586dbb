/**
 * Training checkpoints: everything needed to resume a run exactly, written so that a crash at
 * any moment leaves the previous checkpoint usable (`training.md` §10, §12).
 *
 * Layout under a run's output folder:
 *
 * ```
 * <out>/checkpoints/step_00000250/model.safetensors   MMDiT weights, f32, checkpoint keys
 *                                                     (loadable by the inference loader as is);
 *                                                     __metadata__.kino_model_config = JSON
 * <out>/checkpoints/step_00000250/state.safetensors   optimizer.<param>.exp_avg / .exp_avg_sq,
 *                                                     optimizer.step, ema.<param> (if EMA);
 *                                                     __metadata__.kino_trainer = JSON TrainerState
 *                                                     (step, RNG seed/stream, lr position, data
 *                                                     cursor, trainer options, model config)
 * <out>/checkpoints/latest                            "step_00000250": written last, atomically
 * ```
 *
 * Each file is written atomically by `saveSafetensors` (temporary file, fsync, rename), the model
 * first and the state second; a step folder counts as complete only when both files exist and
 * parse, and `latest` is replaced (temporary file, fsync, rename) only after that. A crash while
 * writing therefore leaves `latest` on the previous complete checkpoint, and
 * {@linkcode resolveResume} also falls back to the newest complete folder if `latest` is missing
 * or points to an incomplete one.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import { SafeTensorsFile, saveSafetensors, type TensorToWrite } from "../engine/safetensors.ts";
import { CheckpointMismatchError, type ParamSet } from "../models/params.ts";
import type { MMDiTConfig } from "../models/mmdit/config.ts";

/** Weights file of a step folder. */
export const MODEL_FILE = "model.safetensors";
/** Optimizer/EMA/trainer-state file of a step folder (written second). */
export const STATE_FILE = "state.safetensors";
/** Pointer file naming the newest complete step folder. */
export const LATEST_FILE = "latest";
/** Metadata key of the trainer state JSON in {@linkcode STATE_FILE}. */
export const STATE_KEY = "kino_trainer";
/** Metadata key of the model configuration JSON in {@linkcode MODEL_FILE}. */
export const MODEL_CONFIG_KEY = "kino_model_config";

/** A tensor on the CPU. */
export interface HostTensor {
  /** Dimensions. */
  shape: number[];
  /** Values, row-major. */
  data: Float32Array;
}

/** The trainer's scalar state (JSON in the state file's metadata). */
export interface TrainerState {
  /** Marks trainer checkpoints. */
  format: "kino-trainer";
  /** State format version. */
  version: 1;
  /** Optimiser updates completed. */
  step: number;
  /** Next RNG stream (global micro-step index) = step · gradAccumulation. */
  stream: number;
  /** Seed of the objective's random streams. */
  seed: number;
  /** Position of the learning-rate schedule (updates). */
  lrPosition: number;
  /** Opaque data-loader position given by the caller. */
  dataCursor: unknown;
  /** The resolved trainer options (lr, betas, eps, accumulation, objective, ...). */
  options: Record<string, unknown>;
  /** The MMDiT configuration trained. */
  modelConfig: MMDiTConfig;
  /** ISO time of the save. */
  savedAt: string;
}

/** Everything a checkpoint holds, on the CPU. */
export interface CheckpointData {
  /** Parameter name → weights. */
  model: Map<string, HostTensor>;
  /** `AdamW.stateDict()` keys (`<param>.exp_avg`, `<param>.exp_avg_sq`, `step`). */
  optimizer: Map<string, HostTensor>;
  /** Averaged weights by parameter name, or null without EMA. */
  ema: Map<string, HostTensor> | null;
  /** The trainer's scalar state. */
  state: TrainerState;
}

/** Name of the folder of step `step` (`step_00000250`). */
export function stepDirName(step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(`checkpoint: step ${step} must be an integer >= 0`);
  }
  return `step_${String(step).padStart(8, "0")}`;
}

/** `<out>/checkpoints`. */
export function checkpointsDir(outDir: string): string {
  return join(outDir, "checkpoints");
}

function toWrite(m: Map<string, HostTensor>, prefix = ""): Map<string, TensorToWrite> {
  const out = new Map<string, TensorToWrite>();
  for (const [k, t] of m) out.set(prefix + k, { dtype: "F32", shape: t.shape, data: t.data });
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Best-effort fsync of a folder (makes a rename inside it durable; not supported everywhere). */
async function syncDir(dir: string): Promise<void> {
  try {
    const f = await Deno.open(dir, { read: true });
    try {
      await f.sync();
    } finally {
      f.close();
    }
  } catch {
    // some platforms cannot open or sync folders; the renames are still atomic
  }
}

/** Writes a small text file atomically (temporary file, fsync, rename). */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  const rand = crypto.getRandomValues(new Uint32Array(2));
  const tmp = `${path}.tmp-${rand[0]!.toString(16)}${rand[1]!.toString(16)}`;
  const f = await Deno.open(tmp, { write: true, createNew: true });
  try {
    await f.write(new TextEncoder().encode(text));
    await f.sync();
  } finally {
    f.close();
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Options of {@linkcode writeCheckpoint}. */
export interface WriteOptions {
  /** After writing, keep only the newest K complete checkpoints (`keep_n_latest`). */
  keepLast?: number;
}

/**
 * Writes a checkpoint into `<out>/checkpoints/step_<N>/` (N = `data.state.step`), then points
 * `latest` at it, then applies `keepLast`. Returns the step folder.
 */
export async function writeCheckpoint(
  outDir: string,
  data: CheckpointData,
  options: WriteOptions = {},
): Promise<string> {
  const root = checkpointsDir(outDir);
  const name = stepDirName(data.state.step);
  const dir = join(root, name);
  await Deno.mkdir(dir, { recursive: true });
  // leftovers of an interrupted write of the same step; an older complete copy becomes
  // incomplete first, so a crash below can never pair new weights with an old state
  for await (const e of Deno.readDir(dir)) {
    if (e.name.includes(".tmp-")) await Deno.remove(join(dir, e.name)).catch(() => {});
  }
  await Deno.remove(join(dir, STATE_FILE)).catch(() => {});
  await saveSafetensors(join(dir, MODEL_FILE), toWrite(data.model), {
    format: "pt",
    [MODEL_CONFIG_KEY]: JSON.stringify(data.state.modelConfig),
  });
  const state = toWrite(data.optimizer, "optimizer.");
  if (data.ema) { for (const [k, v] of toWrite(data.ema, "ema.")) state.set(k, v); }
  await saveSafetensors(join(dir, STATE_FILE), state, {
    format: "kino",
    [STATE_KEY]: JSON.stringify(data.state),
  });
  await syncDir(dir);
  await writeTextAtomic(join(root, LATEST_FILE), name + "\n");
  await syncDir(root);
  if (options.keepLast !== undefined) await pruneCheckpoints(outDir, options.keepLast);
  return dir;
}

/** The trainer state of a complete step folder, or null when it is incomplete or unreadable. */
export async function checkpointState(dir: string): Promise<TrainerState | null> {
  if (!(await exists(join(dir, MODEL_FILE))) || !(await exists(join(dir, STATE_FILE)))) {
    return null;
  }
  try {
    using m = await SafeTensorsFile.open(join(dir, MODEL_FILE));
    using s = await SafeTensorsFile.open(join(dir, STATE_FILE));
    void m;
    const json = s.metadata[STATE_KEY];
    if (!json) return null;
    const st = JSON.parse(json) as TrainerState;
    return st.format === "kino-trainer" ? st : null;
  } catch {
    return null;
  }
}

/** One step folder found by {@linkcode listCheckpoints}. */
export interface CheckpointEntry {
  step: number;
  dir: string;
  complete: boolean;
}

/** Every `step_<N>` folder of a run, oldest first, with its completeness. */
export async function listCheckpoints(outDir: string): Promise<CheckpointEntry[]> {
  const root = checkpointsDir(outDir);
  const out: CheckpointEntry[] = [];
  try {
    for await (const e of Deno.readDir(root)) {
      const m = /^step_(\d+)$/.exec(e.name);
      if (!e.isDirectory || !m) continue;
      const dir = join(root, e.name);
      out.push({ step: Number(m[1]), dir, complete: (await checkpointState(dir)) !== null });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.step - b.step);
}

async function latestOf(outDir: string): Promise<string | null> {
  const root = checkpointsDir(outDir);
  let name: string | null = null;
  try {
    name = (await Deno.readTextFile(join(root, LATEST_FILE))).trim();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (name && /^step_\d+$/.test(name) && (await checkpointState(join(root, name)))) {
    return join(root, name);
  }
  // no pointer, or it names an incomplete folder: the newest complete one
  const all = (await listCheckpoints(outDir)).filter((c) => c.complete);
  return all.at(-1)?.dir ?? null;
}

/**
 * The step folder to resume from: `"latest"` (the newest complete checkpoint of `outDir`, or
 * null when there is none: a fresh start), a step folder, a run folder or its `checkpoints`
 * folder (their latest). Throws when an explicit path holds no complete checkpoint.
 */
export async function resolveResume(spec: string, outDir?: string): Promise<string | null> {
  if (spec === "latest") {
    if (!outDir) throw new Error(`resolveResume: "latest" needs the run's output folder`);
    return await latestOf(outDir);
  }
  const p = resolve(spec);
  if (await checkpointState(p)) return p;
  const run = basename(p) === "checkpoints" ? dirname(p) : p;
  if (await exists(checkpointsDir(run))) {
    const d = await latestOf(run);
    if (d) return d;
  }
  throw new Error(
    `resolveResume: ${spec} is not a complete checkpoint (a step folder with ${MODEL_FILE} and ` +
      `${STATE_FILE}), nor a run folder containing one; pass "latest" with the run folder, or a ` +
      `step folder`,
  );
}

async function readAllF32(path: string, prefix = ""): Promise<Map<string, HostTensor>> {
  using f = await SafeTensorsFile.open(path);
  const out = new Map<string, HostTensor>();
  for (const n of f.names()) {
    if (!n.startsWith(prefix)) continue;
    out.set(n.slice(prefix.length), { shape: [...f.info(n).shape], data: await f.readF32(n) });
  }
  return out;
}

/** Reads a complete step folder into memory. */
export async function readCheckpoint(dir: string): Promise<CheckpointData> {
  const state = await checkpointState(dir);
  if (!state) {
    throw new Error(
      `readCheckpoint: ${dir} is not a complete checkpoint (needs ${MODEL_FILE} and ${STATE_FILE} ` +
        `with trainer metadata); use resolveResume to find the newest complete one`,
    );
  }
  const model = await readAllF32(join(dir, MODEL_FILE));
  const optimizer = await readAllF32(join(dir, STATE_FILE), "optimizer.");
  const ema = await readAllF32(join(dir, STATE_FILE), "ema.");
  return { model, optimizer, ema: ema.size ? ema : null, state };
}

/**
 * Keeps the newest `keepLast` complete checkpoints (and whatever `latest` names) and deletes the
 * other step folders up to the latest step (folders beyond it may be in progress). Returns the
 * removed folders.
 */
export async function pruneCheckpoints(outDir: string, keepLast: number): Promise<string[]> {
  if (!Number.isInteger(keepLast) || keepLast < 1) {
    throw new RangeError(`pruneCheckpoints: keepLast ${keepLast} must be an integer >= 1`);
  }
  const all = await listCheckpoints(outDir);
  const latest = await latestOf(outDir);
  const latestStep = all.find((c) => c.dir === latest)?.step ?? -1;
  const keep = new Set(all.filter((c) => c.complete).slice(-keepLast).map((c) => c.dir));
  if (latest) keep.add(latest);
  const removed: string[] = [];
  for (const c of all) {
    if (keep.has(c.dir) || c.step > latestStep) continue;
    await Deno.remove(c.dir, { recursive: true });
    removed.push(c.dir);
  }
  return removed;
}

// ---------------------------------------------------------------- weights-only init

/** Parameters re-initialised when a released checkpoint has another shape (`training.md` §10). */
export const REINIT_ON_MISMATCH: readonly string[] = ["img_in.", "cond_in.", "final_layer.linear."];

/** Result of {@linkcode initFrom}. */
export interface InitReport {
  /** Tensors loaded from the checkpoint. */
  loaded: number;
  /** Model parameters the checkpoint lacks (initialised from the seed). */
  missing: string[];
  /** Checkpoint tensors the model does not have (ignored). */
  unexpected: string[];
  /** Parameters whose checkpoint shape differs, re-initialised from the seed. */
  reinitialized: { name: string; expected: number[]; found: number[] }[];
  /** Patch layers carried over from a coarser patch size ({@linkcode repatchWeight}). */
  repatched: { name: string; expected: number[]; found: number[] }[];
}

/** Options of {@linkcode initFrom}. */
export interface InitOptions {
  /** Seed of the initialiser for missing and re-initialised parameters; default 0. */
  seed?: number;
  /** Name prefixes allowed to mismatch in shape; default {@linkcode REINIT_ON_MISMATCH}. */
  reinitPrefixes?: readonly string[];
  /**
   * The model's patch size. With it, `img_in`, `cond_in` and `final_layer.linear` of a checkpoint
   * trained at a coarser patch size (a multiple of it) are carried over by
   * {@linkcode repatchWeight} instead of re-initialised.
   */
  patchSize?: number;
}

/**
 * Carries a patch layer from patch size `pSrc` to a finer `pDst` (`pSrc = r·pDst`), the sizes
 * read from the shapes: token features are `c·p² + i·p + j` (see `pack`). The input projections
 * (`img_in.weight`, `cond_in.weight`, `[hidden, C·p²]`) sum the `r²` source columns that fall on
 * one destination sub-pixel, so a latent that is constant over each `r×r` block embeds exactly as
 * before; the output projection (`final_layer.linear`, `[C·p², hidden]` and its bias) averages the
 * `r²` source rows, so each fine pixel predicts the mean of its block. Returns null when the
 * shapes are not such a pair (the caller re-initialises).
 *
 * @example
 * ```ts
 * import { repatchWeight } from "./checkpoint.ts";
 * // patch 2 → 1 with one channel: the 4 sub-pixel columns of each row are summed
 * const w = repatchWeight("img_in.weight", new Float32Array([1, 2, 3, 4]), [1, 4], [1, 1], 1);
 * console.log(w); // Float32Array [ 10 ]
 * ```
 */
export function repatchWeight(
  name: string,
  data: Float32Array,
  found: readonly number[],
  expected: readonly number[],
  pDst: number,
): Float32Array | null {
  const input = /^(img_in|cond_in)\.weight$/.test(name);
  const output = /^final_layer\.linear\.(weight|bias)$/.test(name);
  if (!input && !output) return null;
  const rank = name.endsWith("bias") ? 1 : 2;
  if (found.length !== rank || expected.length !== rank) return null;
  const kAxis = input ? 1 : 0;
  const kS = found[kAxis]!, kD = expected[kAxis]!;
  if (rank === 2 && found[1 - kAxis] !== expected[1 - kAxis]) return null;
  const r = Math.round(Math.sqrt(kS / kD));
  const channels = kD / (pDst * pDst);
  if (r < 2 || r * r * kD !== kS || !Number.isInteger(channels)) return null;
  const pSrc = r * pDst;
  const other = rank === 2 ? found[1 - kAxis]! : 1;
  const out = new Float32Array(kD * other);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < pDst; i++) {
      for (let j = 0; j < pDst; j++) {
        const d = (c * pDst + i) * pDst + j;
        for (let bi = 0; bi < r; bi++) {
          for (let bj = 0; bj < r; bj++) {
            const s = (c * pSrc + bi * pDst + i) * pSrc + bj * pDst + j;
            if (input) {
              for (let o = 0; o < other; o++) out[o * kD + d] += data[o * kS + s]!;
            } else {
              for (let o = 0; o < other; o++) out[d * other + o] += data[s * other + o]! / (r * r);
            }
          }
        }
      }
    }
  }
  return out;
}

/**
 * Weights-only initialisation from a released checkpoint (a safetensors file, shards, or a step
 * folder): non-strict on names (reported), tolerant of shape mismatches for `img_in`, `cond_in`
 * and `final_layer.linear` (the HCAE's 128-channel layers vs Open-Sora 2.0's 64-channel ones):
 * those are re-initialised and listed. Any other shape mismatch throws a
 * `CheckpointMismatchError`. With `options.patchSize`, those layers of a checkpoint trained at a
 * coarser patch size are carried over instead ({@linkcode repatchWeight}). Call it before building
 * the `Trainer` (the optimizer takes the parameters over when it is built).
 */
export async function initFrom(
  params: ParamSet,
  path: string | string[],
  options: InitOptions = {},
): Promise<InitReport> {
  let paths = Array.isArray(path) ? path : [path];
  if (paths.length === 1 && (await Deno.stat(paths[0]!)).isDirectory) {
    paths = [join(paths[0]!, MODEL_FILE)];
  }
  const prefixes = options.reinitPrefixes ?? REINIT_ON_MISMATCH;
  const r = await params.load(paths, { strict: false });
  const bad = r.wrongShape.filter((w) => !prefixes.some((p) => w.name.startsWith(p)));
  if (bad.length) {
    throw new CheckpointMismatchError(
      `initFrom: ${paths.join(", ")} has other shapes for ${
        bad.slice(0, 5).map((w) => `${w.name} ([${w.found}] vs [${w.expected}])`).join(", ")
      }${bad.length > 5 ? ` and ${bad.length - 5} more` : ""}; only ${
        prefixes.join(", ")
      } may differ (check that the checkpoint is the same architecture)`,
    );
  }
  const repatched: InitReport["repatched"] = [];
  if (options.patchSize !== undefined && r.wrongShape.length) {
    const files = await Promise.all(paths.map((p) => SafeTensorsFile.open(p)));
    try {
      for (const w of r.wrongShape) {
        const f = files.find((f) => f.has(w.name))!;
        const data = repatchWeight(
          w.name,
          await f.readF32(w.name),
          w.found,
          w.expected,
          options.patchSize,
        );
        if (!data) continue;
        params.set(w.name, data);
        repatched.push(w);
      }
    } finally {
      for (const f of files) f.close();
    }
  }
  const reinitialized = r.wrongShape.filter((w) => !repatched.includes(w));
  for (const n of [...r.missing, ...reinitialized.map((w) => w.name)]) params.release(n);
  params.initialize(options.seed ?? 0);
  return {
    loaded: r.loaded + repatched.length,
    missing: r.missing,
    unexpected: r.unexpected,
    reinitialized,
    repatched,
  };
}
