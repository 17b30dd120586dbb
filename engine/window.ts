/**
 * Binding windows: how a kernel op reads and writes tensors larger than one storage binding.
 *
 * A tensor may use a whole buffer (up to `maxBufferSize`, 2 GiB and more), but one storage binding
 * covers at most `maxStorageBufferBindingSize` bytes (128 MiB on many adapters and in browsers;
 * lowered for tests with `KINO_MAX_BINDING`). An op whose operands do not fit splits its dispatch
 * along an outer axis (rows of a matmul, flat ranges of an elementwise chain, outer rows of a norm)
 * into pieces whose touched element ranges each fit, and binds for every piece only the byte range
 * `[start, end)` that piece touches. The kernel is the same: its offsets are shifted by the
 * window's start ({@linkcode Window.shift}), so WGSL indices stay in the window.
 *
 * - {@linkcode windowOf}: the binding of an element range, with its shift;
 * - {@linkcode spanOf}: the element range a flat range of a strided view touches;
 * - {@linkcode chunks}: cuts `[0, n)` into pieces for which a predicate (every window fits) holds.
 *
 * @module
 */
import { type DType, DTYPE_BYTES } from "./dtype.ts";
import type { Binding, Runtime } from "./runtime.ts";

/** A storage binding of an element range of a buffer. */
export interface Window {
  /** The binding (a whole buffer, or a byte range of it). */
  binding: Binding;
  /** Elements before the window's first byte: subtract it from every element index. */
  shift: number;
}

/** The binding limit in bytes minus the slack an unaligned window start may need. */
function budgetBytes(rt: Runtime): number {
  return rt.maxBinding - rt.bindAlign - 16;
}

/** Largest element range of `dtype` that {@linkcode windowOf} can always bind. */
export function windowElems(rt: Runtime, dtype: DType): number {
  return Math.floor(budgetBytes(rt) / DTYPE_BYTES[dtype]);
}

/** True when the whole buffer fits one binding (then ops bind it whole, as before). */
export function fitsBinding(rt: Runtime, buffer: GPUBuffer): boolean {
  return buffer.size <= rt.maxBinding;
}

/** True when `[first, end)` of `dtype` elements can be bound as one window. */
export function rangeFits(rt: Runtime, dtype: DType, first: number, end: number): boolean {
  return end - first <= windowElems(rt, dtype);
}

/**
 * The binding of elements `[first, end)` of `buffer` (element type `dtype`): the whole buffer when
 * it fits one binding, else the byte range from `first` (aligned down to the device's offset
 * alignment) to `end` (rounded up to 16 bytes, so `vec4` arrays see every element). Throws a
 * RangeError naming `what` when the range is over the binding limit.
 */
export function windowOf(
  rt: Runtime,
  buffer: GPUBuffer,
  dtype: DType,
  first: number,
  end: number,
  what = "tensor",
): Window {
  if (fitsBinding(rt, buffer)) return { binding: buffer, shift: 0 };
  const eb = DTYPE_BYTES[dtype];
  const align = rt.bindAlign;
  const start = Math.floor((first * eb) / align) * align;
  const stop = Math.min(buffer.size, Math.max(start + 16, Math.ceil((end * eb) / 16) * 16));
  if (stop - start > rt.maxBinding) {
    throw new RangeError(
      `${what}: elements ${first}..${end} (${stop - start} bytes) do not fit one storage binding ` +
        `(limit ${rt.maxBinding} bytes)`,
    );
  }
  return { binding: { buffer, offset: start, size: stop - start }, shift: start / eb };
}

/**
 * The element range `[min, max + 1)` that output positions `[a, b)` (row-major over `shape`) read
 * through `strides` (all ≥ 0), relative to the view's offset. `b > a`.
 */
export function spanOf(
  shape: readonly number[],
  strides: readonly number[],
  a: number,
  b: number,
): [number, number] {
  const [lo, hi] = span(shape, strides, 0, a, b - 1);
  return [lo, hi + 1];
}

function fullMax(shape: readonly number[], strides: readonly number[], d: number): number {
  let m = 0;
  for (let i = d; i < shape.length; i++) m += (shape[i]! - 1) * strides[i]!;
  return m;
}

/** min/max address over flat positions [a, last] (inclusive) of the axes from `d` on. */
function span(
  shape: readonly number[],
  strides: readonly number[],
  d: number,
  a: number,
  last: number,
): [number, number] {
  if (d >= shape.length) return [0, 0];
  let inner = 1;
  for (let i = d + 1; i < shape.length; i++) inner *= shape[i]!;
  const s = strides[d]!;
  const i0 = Math.floor(a / inner), i1 = Math.floor(last / inner);
  if (i0 === i1) {
    const [lo, hi] = span(shape, strides, d + 1, a - i0 * inner, last - i0 * inner);
    return [lo + i0 * s, hi + i0 * s];
  }
  // a partial first row, full rows between, a partial last row
  const [flo, fhi] = span(shape, strides, d + 1, a - i0 * inner, inner - 1);
  const [llo, lhi] = span(shape, strides, d + 1, 0, last - i1 * inner);
  let lo = Math.min(flo + i0 * s, llo + i1 * s);
  let hi = Math.max(fhi + i0 * s, lhi + i1 * s);
  if (i1 > i0 + 1) {
    lo = Math.min(lo, (i0 + 1) * s);
    hi = Math.max(hi, (i1 - 1) * s + fullMax(shape, strides, d + 1));
  }
  return [lo, hi];
}

/**
 * Cuts `[0, n)` into consecutive pieces `[a, b)`, each as long as `fits(a, b)` allows (binary
 * search; `fits` must hold for every sub-range of a range it holds for), with lengths a multiple of
 * `quantum` except the last. Throws, naming `what`, when not even one quantum fits.
 */
export function chunks(
  n: number,
  fits: (a: number, b: number) => boolean,
  what: string,
  quantum = 1,
): [number, number][] {
  const out: [number, number][] = [];
  let a = 0;
  while (a < n) {
    const max = n - a;
    // the longest piece that fits from here (a short piece at a boundary does not shorten the rest)
    let len = max;
    if (!fits(a, a + len)) {
      // largest fitting length: binary search over multiples of the quantum
      let lo = 0, hi = Math.ceil(len / quantum);
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        if (fits(a, Math.min(n, a + mid * quantum))) lo = mid;
        else hi = mid - 1;
      }
      if (lo === 0) {
        throw new RangeError(
          `${what}: even ${Math.min(quantum, max)} unit(s) at ${a} do not fit one storage binding`,
        );
      }
      len = lo * quantum;
    }
    const b = Math.min(n, a + len);
    out.push([a, b]);
    a = b;
  }
  return out;
}

/**
 * An operand of a dispatch over a box-shaped index space (a strided copy, a padding): at
 * coordinates `c` it touches element `offset + Σ c_a·strides[a]` (strides ≥ 0), only where every
 * `c_a` lies in `clip[a]` (default: everywhere).
 */
export interface BoxOperand {
  /** Its buffer. */
  buffer: GPUBuffer;
  /** Its element type. */
  dtype: DType;
  /** Element at coordinates 0. */
  offset: number;
  /** Element stride per axis. */
  strides: readonly number[];
  /** Per axis, the coordinates `[lo, hi)` at which it is touched (default: all). */
  clip?: readonly (readonly [number, number])[];
}

/** A sub-box of an index space: its first coordinate and size per axis. */
export interface Box {
  /** First coordinate per axis. */
  start: number[];
  /** Size per axis. */
  size: number[];
}

/** Per axis, the coordinates `[lo, hi)` of `box` at which `op` is touched (may be empty). */
function touched(op: BoxOperand, box: Box): [number, number][] {
  return box.size.map((n, a) => {
    const [lo, hi] = op.clip?.[a] ?? [-Infinity, Infinity];
    return [Math.max(box.start[a]!, lo), Math.min(box.start[a]! + n, hi)];
  });
}

/** The element range `[first, end)` `op` touches over `box`, or null when it touches none. */
export function boxSpan(op: BoxOperand, box: Box): [number, number] | null {
  let first = op.offset, last = op.offset;
  for (const [a, [lo, hi]] of touched(op, box).entries()) {
    if (hi <= lo) return null;
    first += lo * op.strides[a]!;
    last += (hi - 1) * op.strides[a]!;
  }
  return [first, last + 1];
}

/**
 * Cuts the index space `shape` into boxes over which every operand whose buffer does not fit one
 * binding touches a range that does (one box, the whole shape, when all fit). A box too wide for
 * an operand is cut along the axis adding most to that operand's span, into the longest pieces
 * that fit (the last axis only into multiples of `quantum`, e.g. a vec4 run), so a transposed
 * view is tiled rather than cut into single rows. A single element always fits.
 */
export function boxes(
  rt: Runtime,
  shape: readonly number[],
  ops: readonly BoxOperand[],
  quantum = 1,
): Box[] {
  const whole = { start: shape.map(() => 0), size: [...shape] };
  const windowed = ops.filter((o) => !fitsBinding(rt, o.buffer));
  if (windowed.length === 0) return [whole];
  const last = shape.length - 1;
  const out: Box[] = [];
  const todo = [whole];
  while (todo.length) {
    const box = todo.pop()!;
    // the operand whose span exceeds its window the most
    let worst: BoxOperand | null = null;
    let excess = 1;
    for (const o of windowed) {
      const s = boxSpan(o, box);
      const r = s ? (s[1] - s[0]) / windowElems(rt, o.dtype) : 0;
      if (r > excess) [worst, excess] = [o, r];
    }
    if (!worst) {
      out.push(box);
      continue;
    }
    const t = touched(worst, box);
    const grow = (a: number) => (t[a]![1] - t[a]![0] - 1) * worst.strides[a]!;
    let axis = 0;
    for (let a = 1; a < shape.length; a++) if (grow(a) > grow(axis)) axis = a;
    const [first, end] = boxSpan(worst, box)!;
    const room = windowElems(rt, worst.dtype) - (end - first - grow(axis));
    let len = room >= 0 ? Math.floor(room / worst.strides[axis]!) + 1 : 1;
    if (axis === last && quantum > 1) len = Math.max(quantum, len - (len % quantum));
    const n = box.size[axis]!;
    if (len >= n) throw new Error("internal: boxes made no progress");
    // pushed last piece first, so that boxes come out in order
    for (let s = Math.floor((n - 1) / len) * len; s >= 0; s -= len) {
      const start = [...box.start];
      const size = [...box.size];
      start[axis] = box.start[axis]! + s;
      size[axis] = Math.min(len, n - s);
      todo.push({ start, size });
    }
  }
  return out;
}
