/**
 * Batch forming (`VariableVideoBatchSampler`, `training.md` §7.4) and the resumable cursor.
 *
 * @module
 */
import { type BucketId, type BucketInfo, bucketKey, type Buckets } from "./buckets.ts";
import { Rng, STREAM } from "./rng.ts";

/** One micro-batch: the rows it holds and their bucket. */
export interface MicroBatch {
  /** The bucket of every row in the batch. */
  bucket: BucketInfo;
  /** Row indices (CSV data-row numbers), in batch order. */
  indices: number[];
}

/** The batches of one epoch, in access order. */
export interface EpochPlan {
  /** The epoch planned. */
  epoch: number;
  /** All accesses of the epoch (every rank's); rank r of w takes entries k·w + r. */
  microBatches: MicroBatch[];
  /** Samples per bucket key after the assignment, before drop_last. */
  assigned: Map<string, number>;
  /** Rows assigned to no bucket this epoch. */
  unassigned: number[];
}

/** Options of {@linkcode planEpoch}. */
export interface PlanOptions {
  seed: number;
  epoch: number;
  /** Data-parallel world size (default 1). */
  worldSize?: number;
  /** Drop each bucket's remainder (default true, as in training) instead of padding it. */
  dropLast?: boolean;
  /** Shuffle within buckets and the bucket order (default true). */
  shuffle?: boolean;
}

/**
 * Forms an epoch's micro-batches from per-row bucket assignments (rows in index order):
 * group by bucket (buckets in order of first appearance); per bucket drop the remainder modulo
 * its batch size (or pad by repeating its first rows), then shuffle; list each bucket once per
 * micro-batch, shuffle that list, cut it to a multiple of the world size (pad when not
 * `dropLast`); finally hand each access the next `batchSize` unused rows of its bucket. All
 * shuffles draw from the stream `(order, seed, epoch)`.
 */
export function planEpoch(
  assignments: ReadonlyArray<{ index: number; bucket: BucketId | null }>,
  buckets: Buckets,
  opts: PlanOptions,
): EpochPlan {
  const worldSize = opts.worldSize ?? 1;
  const dropLast = opts.dropLast ?? true;
  const shuffle = opts.shuffle ?? true;
  if (!(Number.isInteger(worldSize) && worldSize >= 1)) {
    throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  }
  const groups = new Map<string, { info: BucketInfo; rows: number[] }>();
  const unassigned: number[] = [];
  for (const a of assignments) {
    if (!a.bucket) {
      unassigned.push(a.index);
      continue;
    }
    const key = bucketKey(a.bucket);
    let g = groups.get(key);
    if (!g) groups.set(key, g = { info: buckets.info(a.bucket), rows: [] });
    g.rows.push(a.index);
  }
  const assigned = new Map([...groups].map(([k, g]) => [k, g.rows.length]));
  const g = Rng.of(STREAM.order, opts.seed, opts.epoch);
  const counts: [string, number][] = [];
  for (const [key, grp] of groups) {
    const bs = grp.info.batchSize;
    let list = grp.rows;
    const rem = list.length % bs;
    if (rem > 0) {
      list = dropLast ? list.slice(0, list.length - rem) : [...list, ...list.slice(0, bs - rem)];
    }
    if (shuffle) {
      const perm = g.permutation(list.length);
      list = perm.map((i) => list[i]!);
    }
    grp.rows = list;
    counts.push([key, list.length / bs]);
  }
  let order: string[] = counts.flatMap(([key, n]) => Array<string>(n).fill(key));
  if (shuffle) {
    const perm = g.permutation(order.length);
    order = perm.map((i) => order[i]!);
  }
  const rem = order.length % worldSize;
  if (rem > 0) {
    order = dropLast
      ? order.slice(0, order.length - rem)
      : [...order, ...order.slice(0, worldSize - rem)];
  }
  const consumed = new Map<string, number>();
  const microBatches = order.map((key) => {
    const grp = groups.get(key)!;
    const at = consumed.get(key) ?? 0;
    const bs = grp.info.batchSize;
    consumed.set(key, at + bs);
    // Padding the access list (not dropLast) can revisit a bucket: wrap around its rows.
    const indices = Array.from({ length: bs }, (_, i) => grp.rows[(at + i) % grp.rows.length]!);
    return { bucket: grp.info, indices };
  });
  return { epoch: opts.epoch, microBatches, assigned, unassigned };
}

/**
 * Where a data stream stands: `position` micro-batch accesses of `epoch` are consumed (the
 * reference's `last_micro_batch_access_index = steps · world_size`). Plain JSON: save it with a
 * checkpoint and pass it back to resume with exactly the batches that would have followed.
 */
export interface Cursor {
  /** Global seed of the stream. */
  seed: number;
  /** Current epoch. */
  epoch: number;
  /** Micro-batch accesses of `epoch` already consumed. */
  position: number;
}

/** The cursor as JSON text. */
export function cursorToJSON(c: Cursor): string {
  return JSON.stringify({ seed: c.seed, epoch: c.epoch, position: c.position });
}

/** Parses and validates a saved cursor (an object or its JSON text). */
export function cursorFromJSON(v: string | unknown): Cursor {
  let o: unknown = v;
  if (typeof v === "string") {
    try {
      o = JSON.parse(v);
    } catch (e) {
      throw new Error(`cursor is not valid JSON: ${(e as Error).message}`);
    }
  }
  const c = o as Partial<Cursor> | null;
  for (const k of ["seed", "epoch", "position"] as const) {
    const x = c?.[k];
    if (!(typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
      throw new Error(
        `cursor.${k} must be a non-negative integer, got ${JSON.stringify(x)} ` +
          `(expected {"seed": 42, "epoch": 0, "position": 0})`,
      );
    }
  }
  return { seed: c!.seed!, epoch: c!.epoch!, position: c!.position! };
}
