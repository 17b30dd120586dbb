/**
 * Initial noise and seeds (`shared/spec/sampling.md` §4).
 *
 * The reference draws `torch.randn` from a device generator, so its noise depends on the device.
 * Kino draws from the engine's counter-based generator ({@linkcode randNormal}) instead, which is
 * the same on every device:
 *
 * **Seed → stream mapping.** Element `i` (row-major index into `[N, C, T, h, w]`) of the noise for
 * seed `s` is Box–Muller applied to the two output words of Threefry-2x32-20 with key
 * `(s mod 2^32, ⌊s / 2^32⌋)` and counter `(i, 0)`. Repetition `k` of a prompt batch uses seed
 * `s + k` ({@linkcode sampleSeed}), as the reference's `sampling_option.seed + k`. The noise of a
 * batch therefore depends on its shape only through the element order: the same seed and shape
 * give the same tensor everywhere (up to a few ulp of the device's `log`/`sqrt`).
 *
 * @module
 */
import { fmtShape, type Shape } from "../../engine/shape.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { randNormal, type Seed } from "../../engine/ops/random.ts";

/**
 * Standard normal noise `z ~ N(0, I)` of `shape` (`[N, C, T, h, w]`) for `seed` (lazy; fused into
 * its consumer).
 *
 * @example
 * ```ts ignore
 * const z = makeNoise([1, 128, 32, 18, 32], sampleSeed(42, 0));
 * ```
 */
export function makeNoise(shape: Shape, seed: Seed): Tensor {
  if (shape.length !== 5) {
    throw new RangeError(
      `makeNoise: expected a latent shape [N, C, T, h, w], got ${fmtShape(shape)}`,
    );
  }
  return randNormal(shape, { seed, offset: 0 });
}

/**
 * The noise seed of repetition `k` (`--num-sample`) of a batch: `seed + k`.
 *
 * @example
 * ```ts ignore
 * sampleSeed(42, 2);   // 44
 * ```
 */
export function sampleSeed(seed: number, k: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed ${seed} must be a non-negative integer`);
  }
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`sample index ${k} must be >= 0`);
  return seed + k;
}

/**
 * A random 32-bit seed, for when none is given (the reference draws
 * `random.randint(0, 2**32 − 1)`); log it to reproduce the sample.
 *
 * @example
 * ```ts ignore
 * const seed = opts.seed ?? randomSeed();
 * ```
 */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}
