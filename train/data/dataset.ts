/**
 * The training dataset: a CSV of videos/images and captions → batches of clips in the shape of
 * their bucket (`data.md`, `training.md` §7).
 *
 * ```ts
 * const ds = await openDataset("data.csv", { buckets: "hcae" });
 * for await (const b of ds.batches(savedCursor)) {
 *   // b.video: Float32Array [B, 3, T, H, W] in [-1, 1]; b.captions: string[]
 *   // ...train...; save cursorToJSON(b.cursor) with the checkpoint
 * }
 * ```
 *
 * Opening reads the CSV, checks every row's file and fills missing metadata with ffprobe; rows
 * that cannot be used are reported with a reason and left out. Batches follow the reference's
 * bucket sampler; a sample that fails to load is logged and dropped from its batch (the batch
 * gets smaller, as the reference's collate does), never a crash.
 *
 * @module
 */
import { readVideo } from "../../io/video.ts";
import { type Cursor, type EpochPlan, planEpoch } from "./batches.ts";
import {
  type BucketConfig,
  type BucketId,
  type BucketInfo,
  Buckets,
  HCAE_BUCKETS,
  loadBucketConfig,
  withResolution,
} from "./buckets.ts";
import { type CsvRow, readDatasetCsv } from "./csv.ts";
import { CorruptMediaError, decodeSelectedFrames, isImagePath, probeMedia } from "./media.ts";
import { Rng, STREAM } from "./rng.ts";
import {
  captionWithSuffix,
  FPS_MAX,
  mapTargetFps,
  temporalRandomCrop,
  TooShortError,
} from "./sampling.ts";
import {
  bilinearResizeCrop,
  normalizeInto,
  pilBicubicResizeCrop,
  resizeCropPlan,
} from "./transform.ts";

/** Why a row is not used. */
export type SkipReason =
  | "malformed"
  | "missing-file"
  | "unreadable"
  | "corrupt"
  | "too-short"
  | "wrong-size"
  | "no-bucket";

/** Every skip reason, in report order. */
export const SKIP_REASONS: readonly SkipReason[] = [
  "malformed",
  "missing-file",
  "unreadable",
  "corrupt",
  "too-short",
  "wrong-size",
  "no-bucket",
];

/** A row ready for training: its media exists and its metadata is complete. */
export interface DatasetRow {
  /** 0-based data-row number: keys the row's random streams. */
  index: number;
  /** 1-based line of the row in the CSV. */
  line: number;
  /** Media path, resolved against the CSV's folder. */
  path: string;
  /** The `path` cell as written. */
  rawPath: string;
  /** The CSV caption. */
  text: string;
  /** The training caption: text + FPS / motion-score suffix (`data.md` §3). */
  caption: string;
  /** Frame count of the media. */
  numFrames: number;
  /** Height in pixels. */
  height: number;
  /** Width in pixels. */
  width: number;
  /** NaN when unknown. */
  fps: number;
  /** Motion score of the clip (the CSV `score_vmafmotion`), when given. */
  motionScore?: number;
  /** The CSV `neg` cell (negative prompt), passed through. */
  neg?: string;
  /** Whether the media is a still image. */
  isImage: boolean;
  /** Whether some metadata came from ffprobe. */
  probed: boolean;
}

/** The verdict on one CSV row. */
export interface RowStatus {
  /** 1-based line of the row in the CSV. */
  line: number;
  /** 0-based data-row number, when the row was parsed. */
  index?: number;
  /** The media path, when known. */
  path?: string;
  /** Whether the row is used. */
  used: boolean;
  /** Why the row is not used. */
  reason?: SkipReason;
  /** Details of the problem. */
  detail?: string;
  /** The bucket of the report epoch, for used rows. */
  bucket?: BucketInfo;
}

/** Per-bucket counts of the report epoch. */
export interface BucketCount {
  /** The bucket. */
  bucket: BucketInfo;
  /** Samples assigned to it. */
  samples: number;
  /** Micro-batches formed (after drop_last). */
  batches: number;
}

/** What {@linkcode openDataset} found. */
export interface DatasetReport {
  /** Path of the CSV. */
  csvPath: string;
  /** Columns of the CSV header. */
  columns: string[];
  /** Header columns Kino does not know (ignored). */
  unknownColumns: string[];
  /** Data records in the CSV. */
  records: number;
  /** One entry per record, by line. */
  rows: RowStatus[];
  /** Rows used in the report epoch. */
  used: number;
  /** Rows skipped, per reason. */
  counts: Partial<Record<SkipReason, number>>;
  /** The epoch the bucket verdicts are for (assignment is random per epoch). */
  epoch: number;
  /** Per-bucket counts of the report epoch. */
  buckets: BucketCount[];
  /** Micro-batches of the report epoch (all ranks). */
  batches: number;
  /** Remarks about the data (reported once). */
  warnings: string[];
}

/** Options of {@linkcode openDataset}. */
export interface OpenDatasetOptions {
  /** A bucket config, or a preset name (`hcae`) or JSON file; default the HCAE config. */
  buckets?: BucketConfig | string;
  /** Move the (single-resolution) bucket config to this resolution, e.g. `256px`. */
  resolution?: string;
  /** Aspect-table quantum D (default 32, the DC-AE's). */
  spatialCompression?: number;
  /** Global seed (default 42). */
  seed?: number;
  /** FPS cap (default 24). */
  fpsMax?: number;
  /** Add the motion-score caption suffix (default true). */
  vmaf?: boolean;
  /** Probe every file with ffprobe, not only rows missing metadata (finds corrupt files). */
  verify?: boolean;
  /** Count frames by decoding whenever probing (exact, slow). */
  countFrames?: boolean;
  /** Parallel ffprobe/ffmpeg processes (default 4). */
  concurrency?: number;
  /** Data-parallel world size (default 1). */
  worldSize?: number;
  /** This process's rank, in [0, worldSize) (default 0). */
  rank?: number;
  /** Drop incomplete batches (default true, as in training). */
  dropLast?: boolean;
  /** Epoch whose bucket assignment the report shows (default 0). */
  reportEpoch?: number;
  /** Return even when no row is usable (for checks); otherwise that throws. */
  allowEmpty?: boolean;
  /** Where skip messages go (default console.warn). */
  log?: (message: string) => void;
}

/** A batch of clips from one bucket. */
export interface Batch {
  /** [B, 3, T, H, W] float32 in [-1, 1] (NCTHW per sample). */
  video: Float32Array;
  /** `[B, 3, T, H, W]`. */
  shape: [number, number, number, number, number];
  /** Training captions of the clips. */
  captions: string[];
  /** Where the batch came from. */
  meta: {
    epoch: number;
    /** Position of this micro-batch access in the epoch (steps · world size). */
    position: number;
    bucket: BucketInfo;
    indices: number[];
    paths: string[];
    /** Samples of this micro-batch that failed to load (dropped). */
    failed: { index: number; path: string; reason: SkipReason; detail: string }[];
  };
  /** Resume here to continue after this batch. */
  cursor: Cursor;
}

/** One micro-batch access to load. */
interface Job {
  epoch: number;
  position: number;
  mb: EpochPlan["microBatches"][number];
  cursor: Cursor;
}

/** A dataset that cannot be used (no usable row, bad cursor, no batch). */
export class DatasetError extends Error {
  override name = "DatasetError";
}

async function mapPool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

function classify(e: unknown): { reason: SkipReason; detail: string } {
  const detail = (e as Error).message ?? String(e);
  if (e instanceof TooShortError) return { reason: "too-short", detail };
  if (e instanceof CorruptMediaError) return { reason: "corrupt", detail };
  if (e instanceof Deno.errors.NotFound) return { reason: "missing-file", detail };
  return { reason: "unreadable", detail };
}

/** Checks a row's file and completes its metadata; a status when it cannot be used. */
async function prepareRow(
  r: CsvRow,
  fpsIsFloat: boolean,
  o: Required<Pick<OpenDatasetOptions, "verify" | "countFrames" | "fpsMax" | "vmaf">>,
  warnings: string[],
): Promise<DatasetRow | RowStatus> {
  const skip = (reason: SkipReason, detail: string): RowStatus => ({
    line: r.line,
    index: r.index,
    path: r.path,
    used: false,
    reason,
    detail,
  });
  try {
    const st = await Deno.stat(r.path);
    if (!st.isFile) return skip("unreadable", `not a file: ${r.path}`);
    (await Deno.open(r.path, { read: true })).close();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return skip("missing-file", `no such file: ${r.path}`);
    return skip("unreadable", `cannot open ${r.path}: ${(e as Error).message}`);
  }
  const isImage = isImagePath(r.path);
  let { numFrames, height, width, fps } = r;
  let fpsFloat = fpsIsFloat;
  if (isImage) {
    // An image is one frame without a rate: nothing to probe for those.
    numFrames ??= 1;
    if (fps === undefined) [fps, fpsFloat] = [NaN, true];
  }
  const needProbe = o.verify || numFrames === undefined || height === undefined ||
    width === undefined || fps === undefined;
  let probed = false;
  if (needProbe) {
    let m;
    try {
      m = await probeMedia(r.path, { countFrames: o.countFrames, image: isImage });
    } catch (e) {
      if (e instanceof CorruptMediaError) {
        return skip("corrupt", `${isImage ? "image" : "video"} ${r.path}: ${e.message}`);
      }
      throw e;
    }
    const differs: string[] = [];
    if (height !== undefined && width !== undefined && (height !== m.height || width !== m.width)) {
      differs.push(`size ${width}x${height} (file: ${m.width}x${m.height})`);
    }
    if (!isImage && numFrames !== undefined && m.counted && numFrames !== m.numFrames) {
      differs.push(`num_frames ${numFrames} (decoded: ${m.numFrames})`);
    }
    if (differs.length) {
      warnings.push(`line ${r.line}: the CSV says ${differs.join(", ")}; the CSV values are used`);
    }
    if (numFrames === undefined) [numFrames, probed] = [m.numFrames, true];
    if (height === undefined || width === undefined) {
      [height, width, probed] = [m.height, m.width, true];
    }
    if (fps === undefined) [fps, fpsFloat, probed] = [m.fps, true, true];
  }
  if (isImage && numFrames !== 1) {
    warnings.push(`line ${r.line}: image with num_frames ${numFrames}; an image is one frame`);
    numFrames = 1;
  }
  const row: DatasetRow = {
    index: r.index,
    line: r.line,
    path: r.path,
    rawPath: r.rawPath,
    text: r.text,
    caption: captionWithSuffix(
      { text: r.text, fps: fps!, fpsIsFloat: fpsFloat, motionScore: r.motionScore },
      o.fpsMax,
      o.vmaf,
    ),
    numFrames: numFrames!,
    height: height!,
    width: width!,
    fps: fps!,
    isImage,
    probed,
  };
  if (r.motionScore !== undefined) row.motionScore = r.motionScore;
  if (r.neg !== undefined) row.neg = r.neg;
  return row;
}

/**
 * Opens a dataset CSV: parses it, checks each row's file (and, with `verify`, that it is readable
 * media), fills missing metadata with ffprobe and assigns buckets for the report epoch. Throws a
 * {@linkcode DatasetCsvError} for an unreadable/empty CSV or missing columns, and a
 * {@linkcode DatasetError} when no row is usable (unless `allowEmpty`).
 */
export async function openDataset(
  csvPath: string,
  options: OpenDatasetOptions = {},
): Promise<Dataset> {
  let config = typeof options.buckets === "string"
    ? await loadBucketConfig(options.buckets)
    : options.buckets ?? HCAE_BUCKETS;
  if (options.resolution) config = withResolution(config, options.resolution);
  const fpsMax = options.fpsMax ?? FPS_MAX;
  const buckets = new Buckets(config, { spatialCompression: options.spatialCompression, fpsMax });
  const table = await readDatasetCsv(csvPath);
  const warnings: string[] = [];
  const statuses: RowStatus[] = table.problems.map((p) => ({
    line: p.line,
    index: p.index,
    used: false,
    reason: "malformed" as const,
    detail: p.detail,
  }));
  const prepared = await mapPool(
    table.rows,
    options.concurrency ?? 4,
    (r) =>
      prepareRow(r, table.fpsIsFloat, {
        verify: options.verify ?? false,
        countFrames: options.countFrames ?? false,
        fpsMax,
        vmaf: options.vmaf ?? true,
      }, warnings),
  );
  const ready: DatasetRow[] = [];
  for (const p of prepared) {
    if ("caption" in p) ready.push(p);
    else statuses.push(p);
  }
  const ds = new Dataset(csvPath, ready, buckets, options);
  const epoch = options.reportEpoch ?? 0;
  const rows: DatasetRow[] = [];
  for (const row of ready) {
    const b = buckets.assignRow(row, ds.seed, epoch, row.index);
    const base = { line: row.line, index: row.index, path: row.path };
    if (b) {
      statuses.push({ ...base, used: true, bucket: buckets.info(b) });
      rows.push(row);
      continue;
    }
    const why = buckets.explain(row);
    statuses.push({ ...base, used: false, reason: why.reason, detail: why.detail });
    if (why.reason === "no-bucket") rows.push(row); // another epoch may take it
  }
  ds.rows = rows;
  statuses.sort((a, b) => a.line - b.line);
  const plan = ds.plan(epoch);
  const perBucket = new Map<string, BucketCount>();
  for (const s of statuses) {
    if (!s.bucket) continue;
    const c = perBucket.get(s.bucket.key) ?? { bucket: s.bucket, samples: 0, batches: 0 };
    c.samples++;
    perBucket.set(s.bucket.key, c);
  }
  for (const mb of plan.microBatches) perBucket.get(mb.bucket.key)!.batches++;
  const counts: Partial<Record<SkipReason, number>> = {};
  for (const s of statuses) if (s.reason) counts[s.reason] = (counts[s.reason] ?? 0) + 1;
  const used = statuses.filter((s) => s.used).length;
  ds.report = {
    csvPath,
    columns: table.columns,
    unknownColumns: table.unknownColumns,
    records: statuses.length,
    rows: statuses,
    used,
    counts,
    epoch,
    buckets: [...perBucket.values()],
    batches: plan.microBatches.length,
    warnings,
  };
  if (table.unknownColumns.length) {
    ds.log(`${csvPath}: ignoring unknown column(s): ${table.unknownColumns.join(", ")}`);
  }
  if (rows.length === 0 && !options.allowEmpty) {
    const why = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
    throw new DatasetError(
      `${csvPath}: no usable row among ${statuses.length} (${why || "no rows"}); ` +
        `run \`deno task dataset:check ${csvPath}\` for the reason of each row`,
    );
  }
  return ds;
}

/** A loaded dataset: usable rows, the open report, batch planning and loading. */
export class Dataset {
  /** Rows that can be assigned to a bucket (in CSV order). */
  rows: DatasetRow[];
  /** What opening found (set by {@linkcode openDataset}). */
  report!: DatasetReport;
  /** Global seed. */
  readonly seed: number;
  /** Frame-rate cap. */
  readonly fpsMax: number;
  /** Data-parallel world size. */
  readonly worldSize: number;
  /** This process's rank. */
  readonly rank: number;
  /** Whether incomplete batches are dropped. */
  readonly dropLast: boolean;
  /** Parallel ffprobe/ffmpeg processes. */
  readonly concurrency: number;
  /** Samples that failed to load so far (each also logged). */
  readonly loadFailures: { epoch: number; index: number; reason: SkipReason; detail: string }[] =
    [];
  readonly #log: (m: string) => void;
  #plan: EpochPlan | null = null;
  #byIndex: { rows: DatasetRow[]; map: Map<number, DatasetRow> } | null = null;

  /**
   * A dataset of `rows` read from `csvPath`, bucketed by `buckets`; use {@linkcode openDataset} to
   * build one.
   */
  constructor(
    readonly csvPath: string,
    rows: DatasetRow[],
    readonly buckets: Buckets,
    options: OpenDatasetOptions = {},
  ) {
    this.rows = rows;
    this.seed = options.seed ?? 42;
    this.fpsMax = buckets.fpsMax;
    this.worldSize = options.worldSize ?? 1;
    this.rank = options.rank ?? 0;
    this.dropLast = options.dropLast ?? true;
    this.concurrency = options.concurrency ?? 4;
    if (!(Number.isSafeInteger(this.seed) && this.seed >= 0)) {
      throw new RangeError(`seed must be a non-negative integer, got ${this.seed}`);
    }
    if (!(Number.isInteger(this.rank) && this.rank >= 0 && this.rank < this.worldSize)) {
      throw new RangeError(`rank ${this.rank} is not in [0, worldSize ${this.worldSize})`);
    }
    this.#log = options.log ?? ((m) => console.warn(m));
  }

  /** Logs through the dataset's logger. */
  log(message: string): void {
    this.#log(message);
  }

  /** The row with data-row number `index`. */
  row(index: number): DatasetRow {
    if (this.#byIndex?.rows !== this.rows) {
      this.#byIndex = { rows: this.rows, map: new Map(this.rows.map((r) => [r.index, r])) };
    }
    const r = this.#byIndex.map.get(index);
    if (!r) throw new RangeError(`no usable row with index ${index}`);
    return r;
  }

  /** Bucket of every usable row in `epoch` (null: not used this epoch). */
  assignments(epoch: number): { index: number; bucket: BucketId | null }[] {
    return this.rows.map((r) => ({
      index: r.index,
      bucket: this.buckets.assignRow(r, this.seed, epoch, r.index),
    }));
  }

  /** The micro-batches of `epoch` (cached for the latest epoch asked). */
  plan(epoch: number): EpochPlan {
    if (this.#plan?.epoch !== epoch) {
      this.#plan = planEpoch(this.assignments(epoch), this.buckets, {
        seed: this.seed,
        epoch,
        worldSize: this.worldSize,
        dropLast: this.dropLast,
      });
    }
    return this.#plan;
  }

  /**
   * Loads one sample as `bucket` dictates into `out` at `offset` (channel-planar [3, T, H, W]):
   * images by PIL-bicubic fill-and-crop, videos by temporal random crop (stream
   * `(crop, seed, epoch, index)`) and bilinear fill-and-crop. Throws on failure.
   */
  async loadSampleInto(
    row: DatasetRow,
    bucket: BucketInfo,
    epoch: number,
    out: Float32Array,
    offset = 0,
  ): Promise<void> {
    const { frames: t, height: th, width: tw } = bucket;
    const planeStride = t * th * tw;
    if (out.length < offset + 3 * planeStride) {
      throw new RangeError(
        `loadSampleInto: output holds ${out.length - offset} < ${3 * planeStride} values`,
      );
    }
    await Deno.stat(row.path); // a file removed since opening: NotFound (missing-file)
    if (row.isImage) {
      if (t !== 1) throw new Error(`an image cannot fill a ${t}-frame bucket`);
      const img = await readVideo(row.path, { maxFrames: 1 }).catch((e) => {
        throw new CorruptMediaError(`image ${row.path}: ${(e as Error).message}`);
      });
      const plan = resizeCropPlan(img.h, img.w, th, tw, "image");
      const rgb = pilBicubicResizeCrop(
        img.frames.subarray(0, img.h * img.w * 3),
        img.h,
        img.w,
        plan,
      );
      normalizeInto(rgb, th, tw, { out, offset, planeStride });
      return;
    }
    const info = await probeMedia(row.path, { sizeOnly: true });
    const { interval } = mapTargetFps(row.fps, this.fpsMax);
    const rng = () => Rng.of(STREAM.crop, this.seed, epoch, row.index);
    const plan = resizeCropPlan(info.height, info.width, th, tw, "video");
    const decode = (indices: number[]) =>
      decodeSelectedFrames(
        row.path,
        info.width,
        info.height,
        indices,
        (k, frame) =>
          bilinearResizeCrop(frame, info.height, info.width, plan, {
            out,
            offset: offset + k * th * tw,
            planeStride,
          }),
      );
    const { indices } = temporalRandomCrop(row.numFrames, t, interval, rng());
    if (await decode(indices) === t) return;
    // The file holds fewer frames than num_frames says: count them and crop again (same draw
    // stream, so the result stays a function of seed, epoch and row).
    const real = (await probeMedia(row.path, { countFrames: true })).numFrames;
    this.log(
      `${row.path} (line ${row.line}): num_frames says ${row.numFrames}, the file decodes to ${real}`,
    );
    const again = temporalRandomCrop(real, t, interval, rng()).indices;
    const got = await decode(again);
    if (got !== t) {
      throw new TooShortError(`decoded ${got} of the ${t} frames needed (file has ${real} frames)`);
    }
  }

  /** One sample as a [3, T, H, W] array (see {@linkcode loadSampleInto}). */
  async loadSample(index: number, bucket: BucketInfo, epoch = 0): Promise<Float32Array> {
    const out = new Float32Array(3 * bucket.frames * bucket.height * bucket.width);
    await this.loadSampleInto(this.row(index), bucket, epoch, out);
    return out;
  }

  *#jobs(from: Cursor, epochs?: number): Generator<Job, void, undefined> {
    let { epoch, position } = from;
    const ws = this.worldSize;
    position = Math.floor(position / ws) * ws;
    for (;;) {
      if (epochs !== undefined && epoch >= epochs) return;
      const plan = this.plan(epoch);
      const n = plan.microBatches.length;
      if (n === 0) {
        throw new DatasetError(
          `${this.csvPath}: epoch ${epoch} forms no batch: ${this.rows.length} usable rows, ` +
            `but no bucket holds a full batch (drop_last); add rows or use smaller batch sizes`,
        );
      }
      if (position > n) {
        throw new DatasetError(
          `cursor position ${position} is past the ${n} micro-batches of epoch ${epoch} ` +
            `(was the CSV, bucket config or world size changed since it was saved?)`,
        );
      }
      for (; position < n; position += ws) {
        const next = position + ws;
        const cursor: Cursor = next >= n
          ? { seed: this.seed, epoch: epoch + 1, position: 0 }
          : { seed: this.seed, epoch, position: next };
        yield { epoch, position, mb: plan.microBatches[position + this.rank]!, cursor };
      }
      epoch++;
      position = 0;
    }
  }

  async #loadBatch(job: Job): Promise<Batch> {
    const { bucket, indices } = job.mb;
    const per = 3 * bucket.frames * bucket.height * bucket.width;
    const video = new Float32Array(indices.length * per);
    const failed: Batch["meta"]["failed"] = [];
    const ok = await mapPool(indices, this.concurrency, async (index, b) => {
      const row = this.row(index);
      try {
        await this.loadSampleInto(row, bucket, job.epoch, video, b * per);
        return true;
      } catch (e) {
        const { reason, detail } = classify(e);
        failed.push({ index, path: row.path, reason, detail });
        this.loadFailures.push({ epoch: job.epoch, index, reason, detail });
        this.log(
          `skipped ${row.path} (line ${row.line}) in epoch ${job.epoch}: ${reason}: ${detail}`,
        );
        return false;
      }
    });
    let n = 0;
    const kept: number[] = [];
    ok.forEach((good, b) => {
      if (!good) return;
      if (n !== b) video.copyWithin(n * per, b * per, (b + 1) * per);
      kept.push(indices[b]!);
      n++;
    });
    const rows = kept.map((i) => this.row(i));
    return {
      video: n === indices.length ? video : video.subarray(0, n * per),
      shape: [n, 3, bucket.frames, bucket.height, bucket.width],
      captions: rows.map((r) => r.caption),
      meta: {
        epoch: job.epoch,
        position: job.position,
        bucket,
        indices: kept,
        paths: rows.map((r) => r.path),
        failed,
      },
      cursor: job.cursor,
    };
  }

  /**
   * Batches from `from` (default: epoch 0, position 0) on, through `epochs` epochs (default:
   * forever). Each batch carries the cursor to resume after it. With `prefetch` the next batch
   * is decoded while the caller works on the current one (twice the batch memory).
   */
  async *batches(
    from?: Partial<Cursor>,
    opts: { epochs?: number; prefetch?: boolean } = {},
  ): AsyncGenerator<Batch, void, undefined> {
    if (from?.seed !== undefined && from.seed !== this.seed) {
      throw new DatasetError(
        `the cursor was saved with seed ${from.seed}, this dataset uses seed ${this.seed}`,
      );
    }
    const jobs = this.#jobs({
      seed: this.seed,
      epoch: from?.epoch ?? 0,
      position: from?.position ?? 0,
    }, opts.epochs);
    const start = (j: IteratorResult<Job, void>) => {
      if (j.done) return null;
      const p = this.#loadBatch(j.value);
      p.catch(() => {}); // awaited below; avoids an unhandled rejection while prefetching
      return p;
    };
    let pending = start(jobs.next());
    while (pending) {
      const batch = await pending;
      pending = opts.prefetch ? start(jobs.next()) : null;
      yield batch;
      if (!opts.prefetch) pending = start(jobs.next());
    }
  }
}
