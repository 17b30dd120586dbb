/**
 * Training batches from a latent cache (`train/cache.ts`): {@linkcode TrainBatch}es of cached
 * latents, i2v reference latents and text states, each batch from clips of one latent shape
 * (one bucket), shuffled per epoch with a seeded generator, with a resumable cursor.
 *
 * Epoch plan (the structure of the video loader's `planEpoch`, `training.md` §7.4): group the
 * clips by latent shape (groups in order of first appearance); per group shuffle, drop the
 * remainder modulo its batch size (`drop_last`), cut into batches; list the batches and shuffle
 * that list. All draws come from the stream `(cache order, seed, epoch)`, so a plan is a pure
 * function of (cache, batch size, seed, epoch) and a resumed run sees exactly the batches an
 * uninterrupted one would have seen.
 *
 * ```ts ignore
 * const ds = await CachedDataset.open("cache/", { seed: 42 });
 * for await (const b of ds.batches(savedCursor)) {
 *   await trainer.step(b.batch);   // save cursorToJSON(b.cursor) with the checkpoint
 * }
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { SafeTensorsFile } from "../engine/safetensors.ts";
import {
  type CacheEntry,
  CacheError,
  type CacheIndex,
  NULL_FILE,
  readCacheIndex,
} from "./cache.ts";
import type { Cursor } from "./data/batches.ts";
import { Rng } from "./data/rng.ts";
import type { TrainBatch } from "./objective.ts";

/** Stream tag of the cache's epoch shuffles (after the video loader's tags 1–3). */
export const CACHE_ORDER_STREAM = 4;

/** Options of {@linkcode CachedDataset.open}. */
export interface CachedDatasetOptions {
  /** Batch size of every group; default each bucket's batch size from the bucket config. */
  batchSize?: number;
  /** Shuffle seed; default 42. */
  seed?: number;
  /** Drop incomplete batches (default true, as in training). */
  dropLast?: boolean;
}

/** The clips of one latent shape. */
export interface ShapeGroup {
  /** `C×T'×h×w`. */
  key: string;
  /** `[C, T', h, w]`. */
  latentShape: number[];
  /** Bucket keys of its clips. */
  buckets: string[];
  /** Positions in {@linkcode CachedDataset.entries}. */
  members: number[];
  /** Clips per batch of this group. */
  batchSize: number;
  /** Batches per epoch (after drop_last). */
  batches: number;
}

/** One planned batch: a group and the entries it holds. */
export interface PlannedBatch {
  /** The group the batch is drawn from. */
  group: ShapeGroup;
  /** Positions in {@linkcode CachedDataset.entries}. */
  members: number[];
}

/** A batch ready for {@linkcode Trainer.step}. */
export interface CachedBatch {
  /** Latents, reference latents and text states of the batch. */
  batch: TrainBatch;
  /** `[B, C, T', h, w]`. */
  shape: number[];
  /** Training captions of the clips. */
  captions: string[];
  /** CSV data-row numbers of the clips. */
  indices: number[];
  /** Bucket key of the batch's first clip. */
  bucket: string;
  /** Epoch the batch belongs to. */
  epoch: number;
  /** Batch number within the epoch. */
  position: number;
  /** Resume here to continue after this batch. */
  cursor: Cursor;
}

/** A latent cache opened for training. */
export class CachedDataset {
  /** The groups by latent shape. */
  readonly groups: ShapeGroup[];
  /** Groups too small for one batch (left out with drop_last). */
  readonly warnings: string[] = [];
  /** Shuffle seed. */
  readonly seed: number;
  /** Whether incomplete batches are dropped. */
  readonly dropLast: boolean;
  #plan: { epoch: number; batches: PlannedBatch[] } | null = null;

  private constructor(
    readonly dir: string,
    readonly index: CacheIndex,
    options: CachedDatasetOptions,
  ) {
    this.seed = options.seed ?? 42;
    this.dropLast = options.dropLast ?? true;
    if (!(Number.isSafeInteger(this.seed) && this.seed >= 0)) {
      throw new RangeError(`seed must be a non-negative integer, got ${this.seed}`);
    }
    const bs = options.batchSize;
    if (bs !== undefined && !(Number.isInteger(bs) && bs >= 1)) {
      throw new RangeError(`batch size must be a positive integer, got ${bs}`);
    }
    const byKey = new Map<string, ShapeGroup>();
    index.entries.forEach((e, i) => {
      const key = e.latentShape.join("×");
      let g = byKey.get(key);
      if (!g) {
        byKey.set(
          key,
          g = {
            key,
            latentShape: [...e.latentShape],
            buckets: [],
            members: [],
            batchSize: 0,
            batches: 0,
          },
        );
      }
      g.members.push(i);
      if (!g.buckets.includes(e.bucket)) g.buckets.push(e.bucket);
    });
    this.groups = [...byKey.values()];
    for (const g of this.groups) {
      g.batchSize = bs ?? Math.min(...g.members.map((i) => index.entries[i]!.batchSize));
      g.batches = this.dropLast
        ? Math.floor(g.members.length / g.batchSize)
        : Math.ceil(g.members.length / g.batchSize);
      if (g.batches === 0) {
        this.warnings.push(
          `latent shape [${g.latentShape}] (${g.buckets.join(", ")}) has ${g.members.length} ` +
            `clip(s), fewer than its batch size ${g.batchSize}: left out (drop_last)`,
        );
      }
    }
    if (this.batchesPerEpoch === 0) {
      throw new CacheError(
        `${dir}: no latent shape has a full batch (${
          this.groups.map((g) =>
            `[${g.latentShape}]: ${g.members.length} clips, batch ${g.batchSize}`
          )
            .join("; ")
        }); lower --batch-size or cache more clips`,
      );
    }
  }

  /**
   * Opens a finished cache folder. Throws a {@linkcode CacheError} when the folder holds no
   * cache, an unfinished one, or no full batch.
   */
  static async open(dir: string, options: CachedDatasetOptions = {}): Promise<CachedDataset> {
    const index = await readCacheIndex(dir);
    if (!index) {
      throw new CacheError(
        `no latent cache in ${dir} (${join(dir, "cache.json")} is missing); build one with ` +
          `\`deno task cache --csv data.csv --ckpt-dir BUNDLE --out ${dir}\``,
      );
    }
    if (!index.complete) {
      throw new CacheError(
        `the latent cache in ${dir} is unfinished; run \`deno task cache\` again with the same ` +
          `arguments (it resumes where it stopped)`,
      );
    }
    if (index.entries.length === 0) throw new CacheError(`the latent cache in ${dir} is empty`);
    return new CachedDataset(dir, index, options);
  }

  /** The cached clips. */
  get entries(): readonly CacheEntry[] {
    return this.index.entries;
  }

  /** Batches in every epoch. */
  get batchesPerEpoch(): number {
    return this.groups.reduce((a, g) => a + g.batches, 0);
  }

  /** `T5("")` `[Lt·d]` / `CLIP("")` `[d]` values of the cache (the trainer's null embeddings). */
  async nullEmbeddings(): Promise<{ txt: Float32Array; yVec: Float32Array }> {
    using f = await SafeTensorsFile.open(join(this.dir, NULL_FILE));
    return { txt: await f.readF32("txt"), yVec: await f.readF32("y_vec") };
  }

  /** The batches of `epoch`, in order (cached for the latest epoch asked). */
  plan(epoch: number): PlannedBatch[] {
    if (this.#plan?.epoch === epoch) return this.#plan.batches;
    const g = Rng.of(CACHE_ORDER_STREAM, this.seed, epoch);
    const all: PlannedBatch[] = [];
    for (const group of this.groups) {
      const perm = g.permutation(group.members.length).map((i) => group.members[i]!);
      for (let b = 0; b < group.batches; b++) {
        const members = Array.from(
          { length: group.batchSize },
          (_, i) => perm[(b * group.batchSize + i) % perm.length]!, // wraps only without drop_last
        );
        all.push({ group, members });
      }
    }
    const order = g.permutation(all.length).map((i) => all[i]!);
    this.#plan = { epoch, batches: order };
    return order;
  }

  /** Reads the tensors of one batch into a {@linkcode TrainBatch} (CPU arrays). */
  async load(members: readonly number[]): Promise<TrainBatch> {
    const es = members.map((i) => this.entries[i]!);
    const shape = es[0]!.latentShape;
    const B = es.length;
    const per = shape.reduce((a, d) => a * d, 1);
    const perRef = per / shape[1]!;
    const { t5Length: Lt, t5Dim, clipDim } = this.index.text;
    const latents = new Float32Array(B * per);
    const hasRef = es.every((e) => e.hasRef);
    const refLatents = hasRef ? new Float32Array(B * perRef) : undefined;
    const txt = new Float32Array(B * Lt * t5Dim);
    const yVec = new Float32Array(B * clipDim);
    await Promise.all(es.map(async (e, b) => {
      const path = join(this.dir, e.file);
      let f: SafeTensorsFile;
      try {
        f = await SafeTensorsFile.open(path);
      } catch (err) {
        throw new CacheError(
          `cannot read ${path} (${(err as Error).message}); run \`deno task cache\` again to ` +
            `re-encode missing clips`,
        );
      }
      try {
        const put = async (name: string, dst: Float32Array, n: number) => {
          const v = await f.readF32(name);
          if (v.length !== n) {
            throw new CacheError(`${path}: ${name} has ${v.length} values, the index says ${n}`);
          }
          dst.set(v, b * n);
        };
        await put("latent", latents, per);
        if (refLatents) await put("ref", refLatents, perRef);
        await put("txt", txt, Lt * t5Dim);
        await put("y_vec", yVec, clipDim);
      } finally {
        f[Symbol.dispose]();
      }
    }));
    return {
      latents,
      latentShape: [B, ...shape],
      ...(refLatents ? { refLatents } : {}),
      txt,
      yVec,
    };
  }

  /**
   * Batches from `from` (default: epoch 0, position 0) on, through `epochs` epochs (default:
   * forever). Each carries the cursor to resume after it; the next batch is read while the
   * caller works on the current one.
   */
  async *batches(
    from?: Partial<Cursor>,
    opts: { epochs?: number } = {},
  ): AsyncGenerator<CachedBatch, void, undefined> {
    if (from?.seed !== undefined && from.seed !== this.seed) {
      throw new CacheError(
        `the cursor was saved with seed ${from.seed}, this run uses seed ${this.seed}`,
      );
    }
    let epoch = from?.epoch ?? 0;
    let position = from?.position ?? 0;
    const n = this.batchesPerEpoch;
    if (position > n) {
      throw new CacheError(
        `cursor position ${position} is past the ${n} batches of an epoch (was the cache or the ` +
          `batch size changed since it was saved?)`,
      );
    }
    const jobs = function* (self: CachedDataset) {
      for (;;) {
        if (opts.epochs !== undefined && epoch >= opts.epochs) return;
        const plan = self.plan(epoch);
        for (; position < n; position++) {
          const next = position + 1;
          const cursor: Cursor = next >= n
            ? { seed: self.seed, epoch: epoch + 1, position: 0 }
            : { seed: self.seed, epoch, position: next };
          yield { epoch, position, pb: plan[position]!, cursor };
        }
        epoch++;
        position = 0;
      }
    };
    const it = jobs(this);
    const start = () => {
      const j = it.next();
      if (j.done) return null;
      const p = this.load(j.value.pb.members).then((batch) => ({ job: j.value, batch }));
      p.catch(() => {}); // awaited below
      return p;
    };
    let pending = start();
    while (pending) {
      const { job, batch } = await pending;
      pending = start();
      const es = job.pb.members.map((i) => this.entries[i]!);
      yield {
        batch,
        shape: [...batch.latentShape!],
        captions: es.map((e) => e.caption),
        indices: es.map((e) => e.index),
        bucket: es[0]!.bucket,
        epoch: job.epoch,
        position: job.position,
        cursor: job.cursor,
      };
    }
  }
}
