/**
 * `assertClose`: shape first, then |actual - expected| ≤ atol + rtol·|expected| per element; on
 * failure prints the first five mismatches with their indices and the max abs/rel errors.
 */
export interface CloseOptions {
  atol?: number;
  rtol?: number;
  /** Shape of both arrays, for messages and the shape check. */
  shape?: readonly number[];
  label?: string;
}

function unravel(i: number, shape: readonly number[] | undefined): string {
  if (!shape || shape.length === 0) return `${i}`;
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]!);
    i = Math.floor(i / shape[d]!);
  }
  return `[${idx.join(", ")}]`;
}

/** Largest absolute and relative differences. */
export function maxErrors(actual: ArrayLike<number>, expected: ArrayLike<number>) {
  let abs = 0;
  let rel = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    abs = Math.max(abs, d);
    rel = Math.max(rel, d / Math.max(Math.abs(expected[i]!), 1e-12));
  }
  return { abs, rel };
}

/** Throws with the first mismatches unless every element is within tolerance. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: CloseOptions = {},
): void {
  const { atol = 1e-5, rtol = 1e-5, shape, label = "" } = opts;
  if (actual.length !== expected.length) {
    throw new Error(
      `${label}: length ${actual.length} != expected ${expected.length}${
        shape ? ` (shape [${shape}])` : ""
      }`,
    );
  }
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const ok = Math.abs(a - e) <= atol + rtol * Math.abs(e) || (Number.isNaN(a) && Number.isNaN(e));
    if (!ok) {
      count++;
      if (bad.length < 5) bad.push(`  at ${unravel(i, shape)}: got ${a}, expected ${e}`);
    }
  }
  if (count) {
    const m = maxErrors(actual, expected);
    throw new Error(
      `${label}: ${count}/${expected.length} elements differ (atol ${atol}, rtol ${rtol}); ` +
        `max abs ${m.abs.toExponential(3)}, max rel ${m.rel.toExponential(3)}\n${bad.join("\n")}`,
    );
  }
}

/** Throws unless `fn` throws an error whose message contains every fragment. */
export async function assertThrows(
  fn: () => unknown | Promise<unknown>,
  ...fragments: string[]
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    const msg = (e as Error).message;
    for (const f of fragments) {
      if (!msg.includes(f)) throw new Error(`error message lacks "${f}": ${msg}`);
    }
    return e as Error;
  }
  throw new Error(`expected an error containing ${fragments.map((f) => `"${f}"`).join(", ")}`);
}

/** Deterministic pseudo-random values in [lo, hi) for test inputs (mulberry32). */
export function randomArray(n: number, seed = 1, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}
