/**
 * The data pipeline's own seeded randomness.
 *
 * The reference draws its data randomness from several global generators (NumPy
 * `default_rng(seed + epoch + row·num_bucket)` for bucket assignment, Python `random` in the
 * loader workers for the temporal crop, a torch generator seeded `seed + epoch` for the batch
 * order; `training.md` §14). Those streams cannot be reproduced bit for bit outside Python, and
 * the worker one is not even reproducible there. Kino keeps the same structure (one stream per
 * purpose, keyed by seed, epoch and row) with a small generator of its own, so every draw is a
 * pure function of its keys: results are reproducible and a resumed run sees exactly the draws
 * an uninterrupted one would have seen.
 *
 * The stream key is a 32-bit hash of the integer keys (MurmurHash3's finaliser); the generator is
 * mulberry32 (period 2^32, ample for one stream of a few thousand draws).
 *
 * @module
 */

/** Stream tags: one independent family of streams per purpose. */
export const STREAM = {
  /** Sample → bucket assignment (`training.md` §7.3), keyed (seed, epoch, row index). */
  bucket: 1,
  /** Temporal random crop start (`data.md` §5), keyed (seed, epoch, row index). */
  crop: 2,
  /** Per-epoch in-bucket shuffles and bucket access order (§7.4), keyed (seed, epoch). */
  order: 3,
} as const;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A 32-bit seed from non-negative integer keys (each may use up to 53 bits). Different key lists
 * give unrelated seeds; the same list always gives the same one.
 */
export function seedFromKeys(keys: readonly number[]): number {
  let h = 0x9e3779b9;
  for (const k of keys) {
    if (!Number.isSafeInteger(k) || k < 0) {
      throw new RangeError(`seedFromKeys: keys must be non-negative safe integers, got ${k}`);
    }
    const lo = k >>> 0;
    const hi = Math.floor(k / 4294967296) >>> 0;
    h = fmix32((h ^ fmix32(lo + 0x6a09e667)) + 0x3c6ef372);
    h = fmix32((h ^ fmix32(hi + 0xbb67ae85)) + 0xa54ff53a);
  }
  return h;
}

/** A seeded generator (mulberry32) with the few draws the data pipeline needs. */
export class Rng {
  #s: number;

  /** A generator whose state starts at the 32-bit `seed`. */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  /** The generator of the stream with these keys, e.g. `Rng.of(STREAM.crop, seed, epoch, row)`. */
  static of(...keys: number[]): Rng {
    return new Rng(seedFromKeys(keys));
  }

  /** Next uniform 32-bit unsigned integer. */
  uint32(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform float in [0, 1) with 53 random bits (like NumPy's `random()`). */
  random(): number {
    const a = this.uint32() >>> 5;
    const b = this.uint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Uniform integer in [lo, hi], both inclusive (Python's `random.randint`); unbiased. */
  randint(lo: number, hi: number): number {
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || hi < lo) {
      throw new RangeError(`randint: need integers lo <= hi, got [${lo}, ${hi}]`);
    }
    const range = hi - lo + 1;
    if (range > 4294967296) throw new RangeError(`randint: range ${range} exceeds 2^32`);
    if (range === 1) return lo;
    const limit = Math.floor(4294967296 / range) * range;
    for (;;) {
      const u = this.uint32();
      if (u < limit) return lo + (u % range);
    }
  }

  /** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.randint(0, i);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p;
  }
}
