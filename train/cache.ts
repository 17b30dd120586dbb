/**
 * The latent cache (`deno task cache`): every usable clip of a dataset CSV encoded once with the
 * frozen models of a bundle, so that training reads latents and text states instead of decoding
 * videos and running the DC-AE and the text encoders at every step (`training.md` §1, §3, §6).
 *
 * For each clip the cache holds what one training sample needs:
 *
 * - `latent [C, T', h, w]`: the DC-AE encoder's raw output of the clip (untiled, no scaling
 *   factor, as the reference trains; `training.md` §3);
 * - `ref [C, 1, h, w]` (videos only): the 1-frame encode of the clip's first frame, the `i2v_head`
 *   reference latent (§3: *not* the first latent frame of the clip encode);
 * - `txt [Lt, d_t5]`, `y_vec [d_clip]`: T5 states and the CLIP pooled vector of the training
 *   caption (the CSV text with the `" {fps} FPS, {motion} motion score."` suffix, §6).
 *
 * Layout of a cache folder:
 *
 * ```
 * CACHE/cache.json                 index: format, settings, the bundle it came from (folder,
 *                                  kino.json manifest, resolved MMDiT/DC-AE configs), text sizes,
 *                                  one entry per clip (file, row, caption, bucket, latent shape),
 *                                  skipped rows with their reason, complete: true when done
 * CACHE/null.safetensors           txt [Lt, d_t5] = T5(""), y_vec [d_clip] = CLIP("") (dropout)
 * CACHE/latents/000012.safetensors latent, ref, txt, y_vec (f16 by default);
 *                                  __metadata__.kino_entry = the entry's JSON
 * ```
 *
 * Every file is written atomically (temporary file, fsync, rename). An interrupted run resumes:
 * clip files already written (and readable) are kept, the others are encoded.
 *
 * **One crop per clip.** Training from videos draws a new temporal crop (and, with bucket
 * probabilities below 1, possibly a new bucket) every epoch; the cache fixes the draws of epoch 0
 * (stream `(crop, seed, 0, row)`), so every epoch sees the same frames of a clip. Clips the
 * bucket probabilities leave out of epoch 0 are skipped (`no-bucket`). Train from the CSV
 * (`deno task train --csv`) for the reference's per-epoch crops.
 *
 * **Caption variants share an encode.** Rows that name the same file and land in the same bucket
 * (`make-data --caption-variants`) get the first such row's `latent` and `ref` (its crop); only
 * their own captions are encoded, so a variant costs a text encode, not a video encode.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { fromData } from "../engine/graph.ts";
import { readAll } from "../engine/ops/movement.ts";
import { SafeTensorsFile, saveSafetensors, type TensorToWrite } from "../engine/safetensors.ts";
import { keep, noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import type { DType } from "../engine/dtype.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import type { DcAeConfig } from "../models/dc_ae/config.ts";
import type { MMDiTConfig } from "../models/mmdit/config.ts";
import { type BundleInfo, type BundleManifest, inspectBundle } from "../models/pipeline.ts";
import { TextConditioner } from "../models/text/conditioner.ts";
import { writeTextAtomic } from "./checkpoint.ts";
import {
  type BucketConfig,
  type BucketInfo,
  CorruptMediaError,
  type Dataset,
  HCAE_BUCKETS,
  loadBucketConfig,
  openDataset,
  type SkipReason,
  TooShortError,
  withResolution,
} from "./data/mod.ts";

/** `format` of `cache.json`. */
export const CACHE_FORMAT = "kino-latent-cache";
/** The index file of a cache folder. */
export const INDEX_FILE = "cache.json";
/** The null text embeddings file. */
export const NULL_FILE = "null.safetensors";
/** Folder of the per-clip files. */
export const LATENTS_DIR = "latents";
/** Metadata key of an entry's JSON in its clip file. */
export const ENTRY_KEY = "kino_entry";

/** Storage type of the cached tensors. */
export type CacheDType = "f16" | "f32";

/** What the cached tensors depend on; a cache is resumed only with the same settings. */
export interface CacheSettings {
  /** Absolute path of the dataset CSV. */
  csv: string;
  /** Absolute path of the bundle folder. */
  bundle: string;
  /** The bucket config used (after `--resolution`). */
  buckets: BucketConfig;
  /** Seed of the bucket assignment and temporal crop (epoch 0). */
  seed: number;
  /** Storage of the cached tensors. */
  dtype: CacheDType;
  /** Weight storage of the frozen encoders. */
  encoderDtype: DType;
}

/** One cached clip. */
export interface CacheEntry {
  /** Path of the clip file, relative to the cache folder. */
  file: string;
  /** 0-based CSV data-row number. */
  index: number;
  /** 1-based line of the row in the CSV. */
  line: number;
  /** The media file. */
  path: string;
  /** The CSV text (the prompt as a user would write it). */
  text: string;
  /** The training caption (text + FPS / motion suffix) that was encoded. */
  caption: string;
  /** Bucket key (`resolution/frames/ratio`). */
  bucket: string;
  /** Frames of the bucket's clips. */
  frames: number;
  /** Height of the bucket's clips in pixels. */
  height: number;
  /** Width of the bucket's clips in pixels. */
  width: number;
  /** Batch size of the bucket. */
  batchSize: number;
  /** `[C, T', h, w]`. */
  latentShape: number[];
  /** Whether the file holds `ref` (videos; images have no i2v reference). */
  hasRef: boolean;
}

/** A row the cache left out. */
export interface CacheSkip {
  /** 1-based line of the row in the CSV. */
  line: number;
  /** 0-based data-row number, when the row was parsed. */
  index?: number;
  /** The media file, when known. */
  path?: string;
  /** Why the row was left out. */
  reason: SkipReason | "encode-failed";
  /** Details of the problem, for the report. */
  detail: string;
}

/** `cache.json`. */
export interface CacheIndex {
  /** Must be {@linkcode CACHE_FORMAT}. */
  format: typeof CACHE_FORMAT;
  /** Index format version. */
  version: 1;
  /** True once every usable clip is encoded (training refuses an incomplete cache). */
  complete: boolean;
  /** The settings the cache was built with. */
  settings: CacheSettings;
  /** The bundle the latents and text states came from. */
  bundle: {
    dir: string;
    manifest: BundleManifest;
    /** Its MMDiT configuration (the default model of `deno task train --cache`). */
    dit: MMDiTConfig;
    ae: {
      name: string;
      latentChannels: number;
      spatialCompression: number;
      timeCompression: number;
    };
  };
  /** Text sizes: T5 length and width, CLIP width. */
  text: { t5Length: number; t5Dim: number; clipDim: number };
  /** The cached clips. */
  entries: CacheEntry[];
  /** Rows left out, with reasons. */
  skipped: CacheSkip[];
  /** ISO time of the last write. */
  updatedAt: string;
}

/** An error that makes the cache unusable or impossible to build (exit code 1 in the CLIs). */
export class CacheError extends Error {
  override name = "CacheError";
}

// ---------------------------------------------------------------- frozen encoders

/** The frozen models of a bundle that training needs: the DC-AE and the text encoders. */
export interface FrozenEncoders {
  info: BundleInfo;
  dcAe: DcAe;
  text: TextConditioner;
  dispose(): void;
}

/**
 * Loads a bundle's DC-AE and text encoders (not its MMDiT). `dtype` is the weight storage
 * (default bf16, as `loadBundle`); compute is f32.
 */
export async function loadFrozenEncoders(
  dir: string,
  options: { dtype?: DType; textCacheSize?: number } = {},
): Promise<FrozenEncoders> {
  const info = await inspectBundle(dir);
  const storage = options.dtype ?? "bf16";
  const m = info.manifest;
  const dcAe = new DcAe(info.ae, { storage });
  await dcAe.params.load(join(dir, m.dc_ae.weights));
  const text = await TextConditioner.fromFolders(join(dir, m.t5), join(dir, m.clip), {
    t5MaxLength: m.t5_max_length,
    clipMaxLength: m.clip_max_length,
    storage: storage === "f32" ? "f32" : "auto",
    cacheSize: options.textCacheSize ?? 64,
  });
  return {
    info,
    dcAe,
    text,
    dispose() {
      dcAe.params.dispose();
      text.dispose();
    },
  };
}

/** Encoded training inputs of a batch of clips (GPU tensors the caller owns). */
export interface EncodedClips {
  /** `[B, C, T', h, w]`. */
  latents: Tensor;
  /** `[B, C, 1, h, w]` for videos (T' > 1), null for images. */
  refLatents: Tensor | null;
  /** `[B, Lt, d_t5]`. */
  txt: Tensor;
  /** `[B, d_clip]`. */
  yVec: Tensor;
  /** Frees the four tensors. */
  dispose(): void;
}

/** The first frame of each clip of a `[B, 3, T, H, W]` array, as `[B, 3, 1, H, W]`. */
export function firstFrames(video: Float32Array, shape: readonly number[]): Float32Array {
  const [B, C, T, H, W] = shape as [number, number, number, number, number];
  const hw = H * W;
  const out = new Float32Array(B * C * hw);
  for (let bc = 0; bc < B * C; bc++) {
    out.set(video.subarray(bc * T * hw, bc * T * hw + hw), bc * hw);
  }
  return out;
}

/**
 * Encodes clips and captions with the frozen models exactly as the training step does
 * (`training.md` §1, §3): the whole clip through the DC-AE encoder (untiled), the first frame
 * alone for the i2v reference (videos), the captions through T5 and CLIP. No gradients.
 */
export function encodeClips(
  enc: FrozenEncoders,
  video: Float32Array,
  shape: readonly number[],
  captions: readonly string[],
): EncodedClips {
  if (shape.length !== 5 || shape[0] !== captions.length) {
    throw new RangeError(
      `encodeClips: video [${shape}] must be [B, 3, T, H, W] with B = ${captions.length} captions`,
    );
  }
  const [B, C, T, H, W] = shape as [number, number, number, number, number];
  const encode = (data: Float32Array, s: number[]) =>
    noGrad(() => tidy(() => keep(enc.dcAe.encode(fromData(data, s, "f32"), { tiled: false }))));
  const latents = encode(video, [B, C, T, H, W]);
  const owned: Tensor[] = [latents];
  try {
    const refLatents = latents.shape[2]! > 1
      ? encode(firstFrames(video, shape), [B, C, 1, H, W])
      : null;
    if (refLatents) owned.push(refLatents);
    const { txt, yVec } = noGrad(() => enc.text.encode(captions));
    return {
      latents,
      refLatents,
      txt,
      yVec,
      dispose() {
        for (const t of [latents, refLatents, txt, yVec]) t?.dispose();
      },
    };
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}

/** `T5("")` and `CLIP("")` on the CPU: `txt [1, Lt, d]` and `yVec [1, d]` values. */
export async function encodeNull(
  enc: FrozenEncoders,
): Promise<{ txt: Float32Array; txtShape: number[]; yVec: Float32Array }> {
  const { txt, yVec } = noGrad(() => enc.text.encode([""]));
  try {
    const [t, y] = await readAll([txt, yVec]);
    return { txt: t!, txtShape: [...txt.shape], yVec: y! };
  } finally {
    txt.dispose();
    yVec.dispose();
  }
}

// ---------------------------------------------------------------- helpers

/** A bucket config with every batch size replaced by `batchSize` (`--batch-size`). */
export function withBatchSize(config: BucketConfig, batchSize: number): BucketConfig {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  }
  const out: Record<string, Record<number, readonly [unknown, number]>> = {};
  for (const [res, frames] of Object.entries(config)) {
    out[res] = {};
    for (const [k, v] of Object.entries(frames)) out[res]![Number(k)] = [v[0], batchSize];
  }
  return out as unknown as BucketConfig;
}

/** Resolves `--buckets` / `--resolution` into a bucket config (default: the HCAE preset). */
export async function resolveBuckets(
  buckets: string | BucketConfig | undefined,
  resolution?: string,
): Promise<BucketConfig> {
  let config = typeof buckets === "string"
    ? await loadBucketConfig(buckets)
    : buckets ?? HCAE_BUCKETS;
  if (resolution) config = withResolution(config, resolution);
  return config;
}

/** Why loading a sample failed, as a skip reason (as the dataset's loader classifies it). */
export function classifyLoadError(e: unknown): { reason: SkipReason; detail: string } {
  const detail = (e as Error).message ?? String(e);
  if (e instanceof TooShortError) return { reason: "too-short", detail };
  if (e instanceof CorruptMediaError) return { reason: "corrupt", detail };
  if (e instanceof Deno.errors.NotFound) return { reason: "missing-file", detail };
  return { reason: "unreadable", detail };
}

/** Reads `cache.json` (null when the folder has none). */
export async function readCacheIndex(dir: string): Promise<CacheIndex | null> {
  const p = join(dir, INDEX_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(p);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new CacheError(`cannot read ${p}: ${(e as Error).message}`);
  }
  let idx: CacheIndex;
  try {
    idx = JSON.parse(text);
  } catch (e) {
    throw new CacheError(
      `${p} is not valid JSON (${(e as Error).message}); delete the folder and rebuild it`,
    );
  }
  if (idx?.format !== CACHE_FORMAT || idx.version !== 1) {
    throw new CacheError(`${p} is not a Kino latent cache index (format "${CACHE_FORMAT}")`);
  }
  return idx;
}

/** The names of the settings that differ (empty: the same). */
function diffSettings(a: CacheSettings, b: CacheSettings): string[] {
  const keys = ["csv", "bundle", "buckets", "seed", "dtype", "encoderDtype"] as const;
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${k}: ${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])}`);
}

/** The entry of a finished clip file, or null when the file is missing or unreadable. */
async function readEntry(path: string): Promise<CacheEntry | null> {
  try {
    using f = await SafeTensorsFile.open(path);
    return entryOf(f);
  } catch {
    return null;
  }
}

/** The entry an open clip file holds, or null when it lacks one or one of its tensors. */
function entryOf(f: SafeTensorsFile): CacheEntry | null {
  const e = JSON.parse(f.metadata[ENTRY_KEY] ?? "null") as CacheEntry | null;
  if (!e || !f.has("latent") || !f.has("txt") || !f.has("y_vec")) return null;
  if (e.hasRef && !f.has("ref")) return null;
  return e;
}

// ---------------------------------------------------------------- building

/** Options of {@linkcode buildCache}. */
export interface BuildCacheOptions {
  csv: string;
  /** Bundle folder (kino.json or the release layout). */
  ckptDir: string;
  /** Output folder. */
  out: string;
  /** Bucket preset name, JSON file or config (default the HCAE preset). */
  buckets?: string | BucketConfig;
  /** Move the single-resolution bucket config to this resolution (e.g. `256px`). */
  resolution?: string;
  /** Default f16. */
  dtype?: CacheDType;
  /** Weight storage of the frozen encoders; default bf16. */
  encoderDtype?: DType;
  /** Seed of bucket assignment and temporal crop; default 42. */
  seed?: number;
  /** Encode at most this many clips (the first usable rows in CSV order). */
  limit?: number;
  /** Parallel ffprobe/ffmpeg processes (default 4). */
  concurrency?: number;
  /** Messages (skips, notes); default console.warn. */
  log?: (message: string) => void;
  /** Called once before encoding with the number of clips to go, then after each clip. */
  onProgress?: (
    e: { total: number; done: number; encoded: number; reused: number; skipped: number },
  ) => void;
}

/** What {@linkcode buildCache} did. */
export interface CacheReport {
  index: CacheIndex;
  /** Clips encoded by this run. */
  encoded: number;
  /** Clip files of an earlier run that were kept. */
  reused: number;
  /** Rows left out (CSV problems and load failures). */
  skipped: CacheSkip[];
  seconds: number;
}

function padIndex(i: number): string {
  return String(i).padStart(6, "0");
}

/**
 * Builds (or resumes) a latent cache; see the module doc. Throws a `DatasetError` when the CSV
 * has no usable row and a {@linkcode CacheError} when the folder holds a cache made with other
 * settings.
 */
export async function buildCache(o: BuildCacheOptions): Promise<CacheReport> {
  const t0 = performance.now();
  const log = o.log ?? ((m: string) => console.warn(m));
  const dtype = o.dtype ?? "f16";
  if (dtype !== "f16" && dtype !== "f32") {
    throw new RangeError(`cache dtype must be f16 or f32, got "${dtype}"`);
  }
  const info = await inspectBundle(o.ckptDir);
  const buckets = await resolveBuckets(o.buckets, o.resolution);
  const settings: CacheSettings = {
    csv: resolve(o.csv),
    bundle: resolve(o.ckptDir),
    buckets,
    seed: o.seed ?? 42,
    dtype,
    encoderDtype: o.encoderDtype ?? "bf16",
  };
  const old = await readCacheIndex(o.out);
  if (old) {
    const diff = diffSettings(old.settings, settings);
    if (diff.length) {
      throw new CacheError(
        `${o.out} holds a cache made with other settings (${diff.join("; ")}); use another ` +
          `--out folder, or delete ${o.out} to rebuild it`,
      );
    }
  }
  const ds: Dataset = await openDataset(o.csv, {
    buckets,
    seed: settings.seed,
    spatialCompression: info.ae.spatialCompression,
    concurrency: o.concurrency,
    log,
  });
  const skipped: CacheSkip[] = [];
  for (const s of ds.report.rows) {
    if (s.used) continue;
    skipped.push({
      line: s.line,
      index: s.index,
      path: s.path,
      reason: s.reason!,
      detail: s.reason === "no-bucket"
        ? `${s.detail} (the cache keeps the bucket draws of epoch 0)`
        : s.detail ?? "",
    });
  }
  for (const s of skipped) {
    log(`skipped line ${s.line}${s.path ? ` (${s.path})` : ""}: ${s.reason}: ${s.detail}`);
  }
  const assigned = ds.assignments(0).filter((a) => a.bucket !== null);
  const todo = o.limit !== undefined ? assigned.slice(0, o.limit) : assigned;

  await Deno.mkdir(join(o.out, LATENTS_DIR), { recursive: true });
  const enc = await loadFrozenEncoders(o.ckptDir, { dtype: settings.encoderDtype });
  try {
    const nul = await encodeNull(enc);
    const [, Lt, t5Dim] = nul.txtShape as [number, number, number];
    const index: CacheIndex = {
      format: CACHE_FORMAT,
      version: 1,
      complete: false,
      settings,
      bundle: {
        dir: settings.bundle,
        manifest: info.manifest,
        dit: info.dit,
        ae: aeSummary(info.ae),
      },
      text: { t5Length: Lt, t5Dim, clipDim: nul.yVec.length },
      entries: [],
      skipped,
      updatedAt: new Date().toISOString(),
    };
    const st = (data: Float32Array, shape: number[]): TensorToWrite => ({
      dtype: dtype === "f16" ? "F16" : "F32",
      shape,
      data,
    });
    await saveSafetensors(join(o.out, NULL_FILE), {
      txt: st(nul.txt, [Lt, t5Dim]),
      y_vec: st(nul.yVec, [nul.yVec.length]),
    }, { format: "kino-latent-cache-null" });
    await writeTextAtomic(join(o.out, INDEX_FILE), JSON.stringify(index, null, 1) + "\n");

    let encoded = 0, reused = 0, done = 0;
    const progress = () =>
      o.onProgress?.({ total: todo.length, done, encoded, reused, skipped: skipped.length });
    progress();
    // Rows that name the same video in the same bucket (caption variants) share the first
    // such row's latents: only their captions are encoded.
    const firstOf = new Map<string, string>();
    const video = async (a: typeof todo[number], bucket: BucketInfo) => {
      try {
        return { kind: "video" as const, video: await ds.loadSample(a.index, bucket, 0) };
      } catch (e) {
        return { kind: "failed" as const, ...classifyLoadError(e) };
      }
    };
    // decode the next clip while the current one is encoded
    const load = (k: number) => {
      const a = todo[k]!;
      const bucket = ds.buckets.info(a.bucket!);
      const file = join(LATENTS_DIR, `${padIndex(a.index)}.safetensors`);
      const key = `${ds.row(a.index).path}\n${bucket.key}`;
      const source = firstOf.get(key);
      if (source === undefined) firstOf.set(key, file);
      const p = (async () => {
        if (await readEntry(join(o.out, file))) return { kind: "reused" as const };
        if (source !== undefined) return { kind: "shared" as const, source };
        return await video(a, bucket);
      })();
      return { a, bucket, file, p };
    };
    let next = todo.length ? load(0) : null;
    for (let k = 0; k < todo.length; k++) {
      const cur = next!;
      let got = await cur.p;
      next = k + 1 < todo.length ? load(k + 1) : null;
      const row = ds.row(cur.a.index);
      if (got.kind === "shared") {
        const entry = await encodeShared(enc, join(o.out, got.source), row, cur.file, o.out, st);
        if (entry) {
          index.entries.push(entry);
          encoded++;
          done++;
          progress();
          continue;
        }
        got = await video(cur.a, cur.bucket); // the first row's clip failed: try this one's
      }
      if (got.kind === "reused") {
        index.entries.push((await readEntry(join(o.out, cur.file)))!);
        reused++;
      } else if (got.kind === "failed") {
        const s = { line: row.line, index: row.index, path: row.path, ...got };
        skipped.push(s);
        log(`skipped line ${s.line} (${s.path}): ${s.reason}: ${s.detail}`);
      } else {
        const entry = await encodeOne(enc, got.video, cur.bucket, row, cur.file, o.out, st);
        index.entries.push(entry);
        encoded++;
      }
      done++;
      progress();
    }
    if (index.entries.length === 0) {
      throw new CacheError(
        `${o.csv}: no clip could be encoded (${skipped.length} rows skipped; see the messages ` +
          `above, or run \`deno task dataset:check ${o.csv}\`)`,
      );
    }
    index.entries.sort((a, b) => a.index - b.index);
    index.complete = true;
    index.updatedAt = new Date().toISOString();
    await writeTextAtomic(join(o.out, INDEX_FILE), JSON.stringify(index, null, 1) + "\n");
    return { index, encoded, reused, skipped, seconds: (performance.now() - t0) / 1000 };
  } finally {
    enc.dispose();
  }
}

function aeSummary(ae: DcAeConfig): CacheIndex["bundle"]["ae"] {
  return {
    name: ae.name,
    latentChannels: ae.latentChannels,
    spatialCompression: ae.spatialCompression,
    timeCompression: ae.timeCompression,
  };
}

/**
 * The entry of a row whose video another row already encoded (`source`, same bucket): that
 * row's latents with this row's caption encoded. Null when `source` is missing or unreadable.
 */
async function encodeShared(
  enc: FrozenEncoders,
  source: string,
  row: { index: number; line: number; text: string; caption: string },
  file: string,
  out: string,
  st: (data: Float32Array, shape: number[]) => TensorToWrite,
): Promise<CacheEntry | null> {
  const tensors: Record<string, TensorToWrite> = {};
  let first: CacheEntry | null;
  try {
    using f = await SafeTensorsFile.open(source);
    first = entryOf(f);
    if (!first) return null;
    for (const name of first.hasRef ? ["latent", "ref"] : ["latent"]) {
      tensors[name] = st(await f.readF32(name), [...f.tensors.get(name)!.shape]);
    }
  } catch {
    return null;
  }
  const { txt, yVec } = noGrad(() => enc.text.encode([row.caption]));
  try {
    const [t, y] = await readAll([txt, yVec]);
    tensors.txt = st(t!, txt.shape.slice(1));
    tensors.y_vec = st(y!, yVec.shape.slice(1));
  } finally {
    txt.dispose();
    yVec.dispose();
  }
  const entry: CacheEntry = {
    ...first,
    file,
    index: row.index,
    line: row.line,
    text: row.text,
    caption: row.caption,
  };
  await saveSafetensors(join(out, file), tensors, {
    format: "kino-latent-cache-clip",
    [ENTRY_KEY]: JSON.stringify(entry),
  });
  return entry;
}

async function encodeOne(
  enc: FrozenEncoders,
  video: Float32Array,
  bucket: BucketInfo,
  row: { index: number; line: number; path: string; text: string; caption: string },
  file: string,
  out: string,
  st: (data: Float32Array, shape: number[]) => TensorToWrite,
): Promise<CacheEntry> {
  const shape = [1, 3, bucket.frames, bucket.height, bucket.width];
  const e = encodeClips(enc, video, shape, [row.caption]);
  try {
    const list = [e.latents, e.txt, e.yVec, ...(e.refLatents ? [e.refLatents] : [])];
    const [lat, txt, y, ref] = await readAll(list);
    const latentShape = e.latents.shape.slice(1);
    const entry: CacheEntry = {
      file,
      index: row.index,
      line: row.line,
      path: row.path,
      text: row.text,
      caption: row.caption,
      bucket: bucket.key,
      frames: bucket.frames,
      height: bucket.height,
      width: bucket.width,
      batchSize: bucket.batchSize,
      latentShape,
      hasRef: !!e.refLatents,
    };
    const tensors: Record<string, TensorToWrite> = {
      latent: st(lat!, latentShape),
      txt: st(txt!, e.txt.shape.slice(1)),
      y_vec: st(y!, e.yVec.shape.slice(1)),
    };
    if (ref) tensors.ref = st(ref, e.refLatents!.shape.slice(1));
    await saveSafetensors(join(out, file), tensors, {
      format: "kino-latent-cache-clip",
      [ENTRY_KEY]: JSON.stringify(entry),
    });
    return entry;
  } finally {
    e.dispose();
  }
}
