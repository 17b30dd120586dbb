/**
 * Movement ops. Views (reshape, permute, transpose, slice, expand) change only the layout and never
 * copy; `contiguous` copies when a kernel needs dense input; `pad` and `read` complete the set.
 *
 * @module
 */
import { apply1, applyView, realize, viewOf } from "../graph.ts";
import { runtime } from "../runtime.ts";
import {
  checkShape,
  contiguousStrides,
  fmtShape,
  inferReshape,
  normAxis,
  numel,
  reshapeStrides,
  type Shape,
} from "../shape.ts";
import { checkAlive, type OpDef, type Tensor } from "../tensor.ts";
import { copy } from "./elementwise.ts";
import { sum } from "./reduce.ts";
import { gridFor, type KernelSpec, paramsWGSL } from "../kernel.ts";
import { boxes, type BoxOperand, boxSpan, windowOf } from "../window.ts";

const RESHAPE: OpDef<{ from: Shape }> = {
  name: "reshape",
  kind: "view",
  backward: ({ grads, attrs }) => [reshape(grads[0]!, attrs.from)],
};

/**
 * Reshapes without copying when the layout allows it (else copies first). One axis may be -1.
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  checkAlive("reshape", x);
  const to = inferReshape("reshape", x.shape, shape);
  const st = reshapeStrides(x.shape, x.strides, to);
  if (st) return applyView(RESHAPE, x, { from: x.shape }, to, st, x.offset);
  const c = copy(x);
  return applyView(RESHAPE, c, { from: x.shape }, to, contiguousStrides(to), 0);
}

const PERMUTE: OpDef<{ perm: number[] }> = {
  name: "permute",
  kind: "view",
  backward: ({ grads, attrs }) => {
    const inv = new Array<number>(attrs.perm.length);
    attrs.perm.forEach((p, i) => inv[p] = i);
    return [permute(grads[0]!, inv)];
  },
};

/** Reorders axes (a view): output axis i is input axis `perm[i]`. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  checkAlive("permute", x);
  const p = perm.map((a) => normAxis("permute", a, x.rank));
  if (p.length !== x.rank || new Set(p).size !== p.length) {
    throw new RangeError(`permute: [${perm.join(", ")}] is not a permutation of ${x.rank} axes`);
  }
  return applyView(
    PERMUTE,
    x,
    { perm: p },
    p.map((a) => x.shape[a]!),
    p.map((a) => x.strides[a]!),
    x.offset,
  );
}

/** Swaps two axes (a view). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const p = [...Array(x.rank).keys()];
  const i = normAxis("transpose", a, x.rank);
  const j = normAxis("transpose", b, x.rank);
  [p[i], p[j]] = [p[j]!, p[i]!];
  return permute(x, p);
}

const SLICE: OpDef<{ starts: number[]; from: Shape }> = {
  name: "slice",
  kind: "view",
  backward: ({ grads, attrs, outputs }) => [
    pad(
      grads[0]!,
      attrs.starts.map((s, i) =>
        [s, attrs.from[i]! - s - outputs[0]!.shape[i]!] as [number, number]
      ),
    ),
  ],
};

/**
 * A sub-block (a view): `starts[i]` ≤ index < `ends[i]` on each axis (negative values count from
 * the end; missing axes are taken whole).
 */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  checkAlive("slice", x);
  const s: number[] = [];
  const shape: number[] = [];
  let off = x.offset;
  for (let d = 0; d < x.rank; d++) {
    const n = x.shape[d]!;
    let a = starts[d] ?? 0;
    let b = ends[d] ?? n;
    if (a < 0) a += n;
    if (b < 0) b += n;
    if (!(a >= 0 && b <= n && a <= b)) {
      throw new RangeError(
        `slice: range ${starts[d]}:${ends[d]} is out of bounds for axis ${d} of ${
          fmtShape(x.shape)
        }`,
      );
    }
    s.push(a);
    shape.push(b - a);
    off += a * x.strides[d]!;
  }
  return applyView(SLICE, x, { starts: s, from: x.shape }, shape, x.strides, off);
}

/** Narrows one axis to `[start, start + length)` (a view). */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normAxis("narrow", axis, x.rank);
  const starts = x.shape.map(() => 0);
  const ends = [...x.shape];
  starts[a] = start;
  ends[a] = start + length;
  return slice(x, starts, ends);
}

const EXPAND: OpDef<{ from: Shape }> = {
  name: "expand",
  kind: "view",
  backward: ({ grads, attrs }) => [sumTo(grads[0]!, attrs.from)],
};

/** Broadcasts size-1 axes (and new leading axes) to `shape` with stride 0 (a view). */
export function expand(x: Tensor, shape: Shape): Tensor {
  checkAlive("expand", x);
  checkShape("expand", shape);
  const lead = shape.length - x.rank;
  if (lead < 0) {
    throw new RangeError(`expand: cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  }
  const strides = shape.map((n, i) => {
    if (i < lead) return 0;
    const d = x.shape[i - lead]!;
    if (d === n) return x.strides[i - lead]!;
    if (d === 1) return 0;
    throw new RangeError(`expand: cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  });
  return applyView(EXPAND, x, { from: x.shape }, shape, strides, x.offset);
}

/** Sums a broadcast gradient back to `shape` (inverse of broadcasting). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  return reshape(s, shape);
}

/** A dense copy if `x` is a strided view, else `x` itself. */
export function contiguous(x: Tensor): Tensor {
  return x.contiguous && x.offset % 4 === 0 ? x : copy(x);
}

/** Converts any dtype to f32 (a dense copy). */
export function toF32(x: Tensor): Tensor {
  return copy(x);
}

// ---------------------------------------------------------------- pad

const PAD_K: KernelSpec = {
  name: "pad_constant",
  inputs: 1,
  outputs: 1,
  code: paramsWGSL(36) + `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// one box of the output: words count, value, xOffset, yOffset, then per axis d (6, outermost
// first): boxSize, before (the padding before the box start, may be negative), inSize, inStride,
// outStride
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 64u + lid;
  if (i >= pu(0u)) { return; }
  var r = i;
  var src = pu(2u);
  var dst = pu(3u);
  var inside = true;
  for (var d = 5i; d >= 0i; d--) {
    let b = 4u + u32(d) * 5u;
    let c = i32(r % pu(b));
    r = r / pu(b);
    let s = c - pi(b + 1u);
    if (s < 0i || s >= pi(b + 2u)) { inside = false; }
    src += u32(max(s, 0i)) * pu(b + 3u);
    dst += u32(c) * pu(b + 4u);
  }
  y[dst] = select(pf(1u), x[src], inside);
}`,
};

const PAD: OpDef<{ pads: [number, number][]; value: number }> = {
  name: "pad",
  kind: "kernel",
  // one dispatch; when the input or output is over one binding, one per box of the output over
  // which both touch a range that fits (the input only inside the padding)
  encode: ({ rt, inputs, outputs, attrs }) => {
    const x = inputs[0]!;
    const out = outputs[0]!;
    const rank = out.shape.length;
    if (rank > 6) throw new RangeError(`pad: rank ${rank} > 6 is not supported`);
    if (numel(out.shape) === 0) return;
    const lead = (n: number) => [...Array(6 - rank).fill(n)];
    const shape = [...lead(1), ...out.shape];
    const before = [...lead(0), ...attrs.pads.map((p) => p[0])];
    const inSize = [...lead(1), ...x.shape];
    const inStride = [...lead(0), ...x.strides];
    const outStride = contiguousStrides(shape);
    const src: BoxOperand = {
      buffer: x.buffer,
      dtype: x.dtype,
      offset: x.offset - before.reduce((a, b, d) => a + b * inStride[d]!, 0),
      strides: inStride,
      clip: before.map((b, d) => [b, b + inSize[d]!] as [number, number]),
    };
    const dst: BoxOperand = { buffer: out.buffer, dtype: out.dtype, offset: 0, strides: outStride };
    const value = new Uint32Array(new Float32Array([attrs.value]).buffer)[0]!;
    for (const box of boxes(rt, shape, [src, dst])) {
      const [s0, s1] = boxSpan(src, box) ?? [x.offset, x.offset + 1];
      const [d0, d1] = boxSpan(dst, box)!;
      const xw = windowOf(rt, x.buffer, x.dtype, s0, s1, "pad");
      const yw = windowOf(rt, out.buffer, out.dtype, out.offset + d0, out.offset + d1, "pad");
      const words = [numel(box.size), value, (x.offset - xw.shift) >>> 0];
      words.push(out.offset + d0 - yw.shift);
      for (let d = 0; d < 6; d++) {
        words.push(box.size[d]!, (before[d]! - box.start[d]!) >>> 0, inSize[d]!, inStride[d]!);
        words.push(outStride[d]!);
      }
      rt.dispatch(PAD_K, [xw.binding, yw.binding], words, gridFor(numel(box.size), 64));
    }
  },
  backward: ({ grads, attrs, inputs }) => [
    slice(
      grads[0]!,
      attrs.pads.map((p) => p[0]),
      attrs.pads.map((p, i) => p[0] + inputs[0]!.shape[i]!),
    ),
  ],
};

/**
 * Pads with a constant: `pads[i] = [before, after]` for each axis (missing axes unpadded). The
 * input may be a strided view.
 */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[], value = 0): Tensor {
  checkAlive("pad", x);
  const p = x.shape.map((_, i) => [pads[i]?.[0] ?? 0, pads[i]?.[1] ?? 0] as [number, number]);
  if (p.some(([a, b]) => a < 0 || b < 0 || !Number.isInteger(a) || !Number.isInteger(b))) {
    throw new RangeError(`pad: paddings must be integers >= 0 (use slice to crop)`);
  }
  const src = x.dtype === "f32" ? x : copy(x);
  return apply1(PAD, [src], { pads: p, value }, {
    shape: x.shape.map((n, i) => n + p[i]![0] + p[i]![1]),
    dtype: "f32",
  });
}

// ---------------------------------------------------------------- read-back

/**
 * Computes `x` and copies it to the CPU as f32 (f16/bf16/i32 are converted). This is the only
 * operation that waits for the GPU.
 *
 * @example
 * ```ts ignore
 * const values = await read(add(a, b));
 * ```
 */
export async function read(x: Tensor): Promise<Float32Array> {
  checkAlive("read", x);
  const c = x.dtype === "f32" && x.contiguous ? x : copy(x);
  realize([c]);
  const v = viewOf(c);
  const buf = await runtime().read(v.buffer, v.offset * 4, c.size * 4);
  if (c !== x) c.dispose();
  return new Float32Array(buf);
}

/**
 * Reads several tensors with a single GPU wait (each read-back costs a full CPU-GPU sync): the
 * values are copied into one staging buffer first. Non-f32 or strided tensors are densified.
 */
export async function readAll(xs: readonly Tensor[]): Promise<Float32Array[]> {
  for (const x of xs) checkAlive("readAll", x);
  const dense = xs.map((x) => (x.dtype === "f32" && x.contiguous ? x : copy(x)));
  realize(dense);
  const rt = runtime();
  const total = dense.reduce((a, t) => a + t.size * 4, 0);
  const buf = rt.pool.acquire(Math.max(total, 4));
  let off = 0;
  for (const t of dense) {
    const v = viewOf(t);
    if (t.size) rt.copy(v.buffer, v.offset * 4, buf, off, t.size * 4);
    off += t.size * 4;
  }
  const data = new Float32Array(await rt.read(buf, 0, total));
  rt.pool.release(buf);
  dense.forEach((d, i) => d !== xs[i] && d.dispose());
  off = 0;
  return dense.map((t) => data.slice(off, off += t.size));
}
