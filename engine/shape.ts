/**
 * Shapes, strides and broadcasting: pure functions, tested on the CPU.
 *
 * @module
 */

/** A tensor shape: sizes per axis, outermost first. */
export type Shape = readonly number[];

/** Number of elements of a shape (1 for a scalar `[]`). */
export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a contiguous tensor of `shape`. */
export function contiguousStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** True when `strides` describe a dense row-major layout of `shape` (size-1 axes ignored). */
export function isContiguous(shape: Shape, strides: readonly number[]): boolean {
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== acc) return false;
    acc *= shape[i]!;
  }
  return true;
}

/** Formats a shape as `[2, 3, 4]` for messages. */
export function fmtShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

/** Checks that a shape has non-negative integer sizes. */
export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(`${op}: invalid shape ${fmtShape(shape)} (sizes must be integers >= 0)`);
    }
  }
}

/** Numpy-style broadcast of two shapes; throws naming the op and both shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new RangeError(
        `${op}: shapes ${fmtShape(a)} and ${
          fmtShape(b)
        } cannot be broadcast (axis ${i}: ${da} vs ${db})`,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Normalises a possibly negative axis for a tensor of `rank`. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= Math.max(rank, 1)) {
    throw new RangeError(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return a;
}

/** Normalises a list of axes (sorted, unique); `undefined` means all axes. */
export function normAxes(op: string, axes: number | readonly number[] | undefined, rank: number) {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = typeof axes === "number" ? [axes] : axes;
  const out = [...new Set(list.map((a) => normAxis(op, a, rank)))].sort((x, y) => x - y);
  return out;
}

/** Resolves one `-1` in a reshape target against the element count. */
export function inferReshape(op: string, from: Shape, to: readonly number[]): number[] {
  const n = numel(from);
  const out = [...to];
  const neg = out.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(out.filter((_, i) => i !== neg));
    if (rest === 0 || n % rest !== 0) {
      throw new RangeError(`${op}: cannot reshape ${fmtShape(from)} to ${fmtShape(to)}`);
    }
    out[neg] = n / rest;
  }
  checkShape(op, out);
  if (numel(out) !== n) {
    throw new RangeError(
      `${op}: cannot reshape ${fmtShape(from)} (${n} elements) to ${fmtShape(to)} (${
        numel(out)
      } elements)`,
    );
  }
  return out;
}

/**
 * Strides for viewing a strided tensor with a new shape without copying, or null when the layout
 * does not allow it (then a copy is needed). Same rule as PyTorch's `view`.
 */
export function reshapeStrides(
  shape: Shape,
  strides: readonly number[],
  to: Shape,
): number[] | null {
  if (isContiguous(shape, strides)) return contiguousStrides(to);
  // Merge old axes into contiguous chunks, then split chunks into new axes.
  const oldS = shape.filter((d) => d !== 1);
  const oldT = strides.filter((_, i) => shape[i] !== 1);
  const out = new Array<number>(to.length).fill(0);
  let oi = 0;
  let ni = 0;
  while (ni < to.length) {
    if (to[ni] === 1) {
      out[ni] = 1;
      ni++;
      continue;
    }
    if (oi >= oldS.length) return null;
    // take a chunk of old axes [oi, oj) that is contiguous, and new axes [ni, nj) with equal size
    let oldSize = oldS[oi]!;
    let newSize = to[ni]!;
    let oj = oi + 1;
    let nj = ni + 1;
    while (oldSize !== newSize) {
      if (oldSize < newSize) {
        if (oj >= oldS.length) return null;
        if (oldT[oj - 1] !== oldT[oj]! * oldS[oj]!) return null;
        oldSize *= oldS[oj]!;
        oj++;
      } else {
        if (nj >= to.length) return null;
        newSize *= to[nj]!;
        nj++;
      }
    }
    let st = oldT[oj - 1]!;
    for (let k = nj - 1; k >= ni; k--) {
      out[k] = st;
      st *= to[k]!;
    }
    oi = oj;
    ni = nj;
  }
  return oi === oldS.length ? out : null;
}
