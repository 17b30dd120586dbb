/**
 * Flag parsing shared by the command-line tools: the usage error (exit 2, "run with --help") and
 * the number flags, so that every tool words a bad value the same way.
 *
 * @module
 */

/** A mistake in the command line; the tools print it and exit 2. */
export class UsageError extends Error {}

/** Bounds and kind of a number flag. */
export interface NumberFlagOptions {
  /** Whole numbers only. */
  integer?: boolean;
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Values must be greater than this (exclusive). */
  above?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
}

/**
 * The value of `--name` as a number, or undefined when the flag was not given.
 *
 * @throws {UsageError} for text that is not a finite number, a fraction where an integer is
 *   needed, or a value out of bounds, e.g. `--steps must be an integer >= 1, got "ten"`.
 *
 * @example
 * ```ts ignore
 * numberFlag("steps", "30", { integer: true, min: 1 }); // 30
 * numberFlag("shift", "0", { above: 0 });                // throws: must be a number > 0
 * ```
 */
export function numberFlag(
  name: string,
  v: string | undefined,
  opts: NumberFlagOptions = {},
): number | undefined {
  if (v === undefined) return undefined;
  const n = v.trim() === "" ? NaN : Number(v);
  const ok = Number.isFinite(n) && (!opts.integer || Number.isSafeInteger(n)) &&
    (opts.min === undefined || n >= opts.min) && (opts.above === undefined || n > opts.above) &&
    (opts.max === undefined || n <= opts.max);
  if (!ok) {
    const lower = opts.above !== undefined
      ? ` > ${opts.above}`
      : opts.min !== undefined
      ? ` >= ${opts.min}`
      : "";
    const bound = opts.max === undefined
      ? lower
      : lower
      ? `${lower} and <= ${opts.max}`
      : ` <= ${opts.max}`;
    throw new UsageError(
      `--${name} must be ${opts.integer ? "an integer" : "a number"}${bound}, got "${v}"`,
    );
  }
  return n;
}
