/**
 * 3-D convolution over NCTHW tensors, PyTorch conventions (weight `[Cout, Cin/groups, kT, kH,
 * kW]`, per-axis stride / zero padding / dilation, groups), with its three gradients:
 * - forward and input gradient run the direct kernel of `kernels/conv3d.ts` (the input gradient
 *   as a transposed, strided convolution of dY);
 * - the weight gradient runs its own kernel, split into chunks of output rows that are summed
 *   after when there are few weight blocks to spread the work over;
 * - the bias gradient is `sum(dY, [0, 2, 3, 4])`.
 *
 * The kernels read the weight in a packed layout (output channels innermost, padded to the
 * tile): the packing is an ordinary `pad` of a permuted view, recorded without gradient; the
 * ops' backward rules return the gradient of the PyTorch-layout weight. A dense f16 / bf16 weight
 * is not packed: the kernels read it in its PyTorch layout and widen it on load (such weights
 * are frozen: requiresGrad on them is an error; the input gradient reads them the same way).
 * Depthwise convolutions
 * (`groups = Cin = Cout`, stride 1 and dilation 1 along W) run dedicated kernels that read the
 * weight as it is.
 *
 * Tiles are chosen from the channel counts and the row width (and the device: large register
 * blocks on CPU adapters, small ones on GPUs); a new shape compiles nothing new unless it changes
 * the tile, the vec4 eligibility (rows multiples of 4) or, for depthwise, the kernel width.
 *
 * ## Tensors over one storage binding
 *
 * When every operand's buffer fits one binding the three kernels run as one dispatch each, as
 * above. Otherwise the op cuts its dispatch into pieces and binds only the element range each
 * piece touches (`engine/window.ts`). Channels are outermost after the batch, so a frame slice of
 * all channels spans nearly the whole batch item: the cuts are, in order of preference,
 * 1. batch items (everything else whole), when one item fits;
 * 2. per batch item: frame slices of the kernel's output, each binding the input frames its taps
 *    read (the halo of kernel size, stride, dilation and padding; for the input gradient the dY
 *    frames landing on the slice, slices starting at multiples of the stride), as long as one
 *    output channel and one reduction channel fit; full time wherever that fits;
 * 3. per slice: all channels, else blocks of whole groups (depthwise), else per group blocks of
 *    output channels (multiples of the channel tile, else of 4, else single channels) times
 *    blocks of reduction channels (forward: input channels; input gradient: output channels).
 *    Reduction blocks after the first add to the output (a run-time flag of the kernel; the
 *    first carries the bias). Output blocks that do not start on a multiple of 4 or would read
 *    past the packed rows read the weight in its PyTorch layout (the `unpacked` kernel variant).
 * The weight gradient uses the same pieces with dY's channels as the output and x's as the
 * reduction blocks: channel blocks write disjoint parts of the weight, row pieces (batch items,
 * frame slices) after the first add to it, and the row-chunk partial sums get split by chunk
 * when they do not fit one window. When windows are needed at record time it takes enough row
 * chunks to fill the device per (smaller) dispatch, but no more partial sums than fit one
 * binding. Weights over one binding are cut the same way (output × reduction channel blocks).
 * One frame of one channel over the limit is a RangeError naming the op, the operands' shapes
 * and bytes and the limit, thrown when the op is recorded (and again at encode if the limit
 * was lowered in between). For the DC-AE's largest maps (a 256 px, 32-frame tile of 128
 * channels, 1 GiB in f32, 8 MiB per channel, limit 128 MiB) this gives full-time pieces of
 * 8 output (GPU tiles) or 12 (CPU tiles) channels × 15 input channels.
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { gridFor } from "../kernel.ts";
import { fmtShape, numel } from "../shape.ts";
import { checkAlive, noGrad, type OpDef, type Tensor, type TensorView } from "../tensor.ts";
import { type Binding, type Runtime, runtime } from "../runtime.ts";
import { chunks, fitsBinding, rangeFits, windowElems, windowOf } from "../window.ts";
import {
  type AxisParams,
  axisWords,
  CONV_PARAM_WORDS,
  convKernel,
  type ConvTile,
  type ConvWeightDType,
  CP,
  depthwiseGradWeightKernel,
  depthwiseKernel,
  GP,
  GRADW_PARAM_WORDS,
  gradWeightKernel,
  type GradWeightVariant,
} from "../../kernels/conv3d.ts";
import { add, copy } from "./elementwise.ts";
import { halfOrF32, matmul } from "./matmul.ts";
import { type DType, DTYPE_BYTES, isHalf } from "../dtype.ts";
import { contiguous, narrow, pad, permute, reshape } from "./movement.ts";
import { concat } from "./concat.ts";
import { sum } from "./reduce.ts";

type Triple = [number, number, number];

/** Options of {@linkcode conv3d}; scalars apply to all three axes (T, H, W). */
export interface Conv3dOptions {
  /** `[Cout]`, added to every output position. */
  bias?: Tensor;
  /** Step between output positions (default 1). */
  stride?: number | readonly number[];
  /** Zeros added on both sides of each axis (default 0). */
  padding?: number | readonly number[];
  /** Spacing of the kernel taps (default 1). */
  dilation?: number | readonly number[];
  /** Channel groups: `Cin` and `Cout` must be multiples (default 1; `Cin` = depthwise). */
  groups?: number;
}

/** Geometry of one convolution (everything the kernels need besides the tensors). */
export interface ConvGeom {
  n: number;
  cin: number;
  cout: number;
  groups: number;
  /** input sizes T, H, W */
  inSize: Triple;
  /** output sizes */
  outSize: Triple;
  k: Triple;
  stride: Triple;
  padding: Triple;
  dilation: Triple;
}

function triple(op: string, name: string, v: number | readonly number[], min: number): Triple {
  const t = typeof v === "number" ? [v, v, v] : [...v];
  if (t.length !== 3 || t.some((x) => !Number.isInteger(x) || x < min)) {
    throw new RangeError(
      `${op}: ${name} must be an integer >= ${min} or three of them (got ${JSON.stringify(v)})`,
    );
  }
  return t as Triple;
}

/** Checks the operands and computes the geometry (PyTorch's output-size rule). */
export function conv3dGeometry(
  xShape: readonly number[],
  wShape: readonly number[],
  options: Conv3dOptions = {},
): ConvGeom {
  const op = "conv3d";
  if (xShape.length !== 5) {
    throw new RangeError(`${op}: input ${fmtShape(xShape)} must be [N, Cin, T, H, W]`);
  }
  if (wShape.length !== 5) {
    throw new RangeError(
      `${op}: weight ${fmtShape(wShape)} must be [Cout, Cin/groups, kT, kH, kW]`,
    );
  }
  const groups = options.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) {
    throw new RangeError(`${op}: groups must be a positive integer (got ${groups})`);
  }
  const [n, cin] = xShape as [number, number];
  const cout = wShape[0]!;
  if (cin % groups !== 0 || cout % groups !== 0) {
    throw new RangeError(
      `${op}: input ${fmtShape(xShape)} and weight ${
        fmtShape(wShape)
      }: Cin ${cin} and Cout ${cout} ` +
        `must be multiples of groups ${groups}`,
    );
  }
  if (wShape[1] !== cin / groups) {
    throw new RangeError(
      `${op}: weight ${fmtShape(wShape)} does not match input ${fmtShape(xShape)}: weight axis 1 ` +
        `must be Cin/groups = ${cin / groups}`,
    );
  }
  const stride = triple(op, "stride", options.stride ?? 1, 1);
  const padding = triple(op, "padding", options.padding ?? 0, 0);
  const dilation = triple(op, "dilation", options.dilation ?? 1, 1);
  const k = wShape.slice(2) as Triple;
  const inSize = xShape.slice(2) as Triple;
  const outSize = inSize.map((s, a) =>
    Math.floor((s + 2 * padding[a]! - dilation[a]! * (k[a]! - 1) - 1) / stride[a]!) + 1
  ) as Triple;
  if (outSize.some((o) => o < 1) || n < 1 || cout < 1 || k.some((x) => x < 1)) {
    throw new RangeError(
      `${op}: input ${fmtShape(xShape)} with weight ${fmtShape(wShape)} (padding ` +
        `[${padding}], dilation [${dilation}]) gives an empty output [${outSize}]`,
    );
  }
  return { n, cin, cout, groups, inSize, outSize, k, stride, padding, dilation };
}

// ---------------------------------------------------------------- tiles

/**
 * Tile of the direct kernel for `chans` output channels per group and `qw` output positions per
 * W residue class. On CPU adapters (llvmpipe) every storage load costs a loop over the 8 SIMD
 * lanes, so the tile is large: 16 channels × 16 positions loads 36 values per 256 FMAs per tap
 * (~1 s to compile; 32 × 16 is ~20% faster but takes ~2.5 s). Narrow rows and few channels take
 * smaller tiles so that little work is masked out. GPUs get small tiles and 64 invocations.
 */
export function pickConvTile(chans: number, qw: number, isFallback: boolean): ConvTile {
  if (!isFallback) return { co: chans > 4 ? 8 : 4, p: 4, wg: 64 };
  return { co: chans > 8 ? 16 : chans > 4 ? 8 : 4, p: qw > 8 ? 16 : 8, wg: 8 };
}

/**
 * Tile of the weight-gradient kernel (the vec flag is decided at encode time): 16 output × 8
 * input channels on CPU adapters (~0.7 s to compile), 4 × 4 on GPUs; fewer for narrow groups.
 */
export function pickGradWeightTile(
  cog: number,
  crg: number,
  isFallback: boolean,
): Omit<GradWeightVariant, "vec"> {
  const fit = (c: number, max: number) => (c >= max ? max : c > 4 ? 8 : c > 1 ? 4 : 1);
  if (!isFallback) return { co: fit(cog, 4), cr: fit(crg, 4), wg: 64 };
  return { co: fit(cog, 16), cr: fit(crg, 8), wg: 8 };
}

/** Largest kernel width of the depthwise kernels (compiled in per width). */
export const DEPTHWISE_MAX_KW = 7;

/**
 * Whether the depthwise kernels apply: one input and one output channel per group, stride 1
 * and dilation 1 along W, kW ≤ {@linkcode DEPTHWISE_MAX_KW} (else the general kernels run).
 */
export function isDepthwise(g: ConvGeom): boolean {
  return g.cin === g.groups && g.cout === g.groups && g.stride[2] === 1 && g.dilation[2] === 1 &&
    g.k[2] <= DEPTHWISE_MAX_KW;
}

/**
 * Tile of the depthwise kernels for `qw` positions per row. Their invocations are cheap, so on
 * CPU adapters workgroups of 32 (llvmpipe pays a fixed cost per workgroup: 32 is ~1.8x faster
 * than 8 here).
 */
function depthwiseTile(qw: number, fb: boolean): ConvTile {
  return fb ? { co: 1, p: qw > 8 ? 16 : 8, wg: 32 } : { co: 1, p: 4, wg: 64 };
}

let tileMode: "cpu" | "gpu" | null = null;

/**
 * Forces the CPU-adapter (`"cpu"`) or GPU (`"gpu"`) tiles regardless of the device, or restores
 * the automatic choice (`null`). For tests and tuning: both tile sets run on any device.
 */
export function forceConv3dTiles(mode: "cpu" | "gpu" | null): void {
  tileMode = mode;
}

/** Whether to use the CPU-adapter (llvmpipe) tiles. */
function isFallback(): boolean {
  return tileMode ? tileMode === "cpu" : runtime().info.isFallback;
}

// ---------------------------------------------------------------- weight packing

/**
 * The weight as the direct kernel reads it: `[groups, reduction channels, kT·kH·kW, outPad]`.
 * `forward`: reduction = Cin/groups, out = Cout/groups; else the other way round (input grad).
 */
function packWeight(w: Tensor, groups: number, forward: boolean, outPad: number): Tensor {
  return noGrad(() => {
    const [cout, crg, kt, kh, kw] = w.shape as number[] as [number, number, number, number, number];
    const cog = cout / groups;
    const r = reshape(w, [groups, cog, crg, kt * kh * kw]);
    const p = permute(r, forward ? [0, 2, 3, 1] : [0, 1, 3, 2]);
    const outC = forward ? cog : crg;
    return pad(p, [[0, 0], [0, 0], [0, 0], [0, outPad - outC]]);
  });
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

// ---------------------------------------------------------------- binding windows

/** An element range `[first, end)`. */
type Range = [number, number];

/**
 * One dispatch of a convolution cut into binding windows: batch items `[n0, n1)`, frames
 * `[t0, t1)` of the kernel's output (the output-gradient frames summed over, for the weight
 * gradient), groups `[ga, gb)`, and within the group output channels `[oa, ob)` and reduction
 * channels `[ra, rb)` (the weight gradient's input channels). A piece of several groups has all
 * their channels.
 */
interface Piece {
  n0: number;
  n1: number;
  t0: number;
  t1: number;
  ga: number;
  gb: number;
  oa: number;
  ob: number;
  ra: number;
  rb: number;
}

/** The sizes a convolution is cut along, and the quanta of the cuts. */
interface Cut {
  n: number;
  /** frames of the kernel's output and the quantum of frame slices */
  t: number;
  tq: number;
  groups: number;
  /** output channels per group and the preferred quantum of their blocks (the channel tile) */
  co: number;
  cq: number;
  /** reduction channels per group and the preferred quantum of their blocks */
  cr: number;
  rq: number;
}

/**
 * Cuts a convolution into pieces whose windows each fit (`fits`, monotone in every range):
 * 1. batch items with everything else whole, when one item fits;
 * 2. else per batch item, frame slices (as long as one output and one reduction channel allow:
 *    each slice binds its halo), and per slice: all channels when they fit, else whole groups
 *    when one fits, else per group blocks of output channels × blocks of reduction channels
 *    (innermost, so the blocks of one output block follow each other, the first at `ra = 0`),
 *    in multiples of the preferred quanta when one quantum fits, else of 4 or single channels.
 * Throws a RangeError starting with `what` when one frame of one channel does not fit.
 */
function planPieces(c: Cut, fits: (q: Piece) => boolean, what: string): Piece[] {
  const all = (n0: number, n1: number, t0: number, t1: number, ga = 0, gb = c.groups): Piece => ({
    n0,
    n1,
    t0,
    t1,
    ga,
    gb,
    oa: 0,
    ob: c.co,
    ra: 0,
    rb: c.cr,
  });
  if (fits(all(0, 1, 0, c.t))) {
    return chunks(c.n, (a, b) => fits(all(a, b, 0, c.t)), what).map(([a, b]) => all(a, b, 0, c.t));
  }
  const block =
    (n: number, t0: number, t1: number, g: number, oa: number, ob: number) =>
    (ra: number, rb: number): Piece => ({
      n0: n,
      n1: n + 1,
      t0,
      t1,
      ga: g,
      gb: g + 1,
      oa,
      ob,
      ra,
      rb,
    });
  const slices = chunks(
    c.t,
    (a, b) => fits(block(0, a, b, 0, 0, 1)(0, 1)),
    `${what}; frames of one output and one reduction channel`,
    c.tq,
  );
  const out: Piece[] = [];
  for (let n = 0; n < c.n; n++) {
    for (const [t0, t1] of slices) {
      const groups = (ga: number, gb: number) => all(n, n + 1, t0, t1, ga, gb);
      if (fits(groups(0, 1))) {
        for (const [ga, gb] of chunks(c.groups, (a, b) => fits(groups(a, b)), what)) {
          out.push(groups(ga, gb));
        }
        continue;
      }
      for (let g = 0; g < c.groups; g++) {
        const outFits = (a: number, b: number) => fits(block(n, t0, t1, g, a, b)(0, 1));
        const cq = [c.cq, 4, 1].find((q) => outFits(0, Math.min(q, c.co)))!;
        for (const [oa, ob] of chunks(c.co, outFits, what, cq)) {
          const red = block(n, t0, t1, g, oa, ob);
          const redFits = (a: number, b: number) => fits(red(a, b));
          const rq = redFits(0, Math.min(c.rq, c.cr)) ? c.rq : 1;
          for (const [ra, rb] of chunks(c.cr, redFits, what, rq)) out.push(red(ra, rb));
        }
      }
    }
  }
  return out;
}

/** The start of the error when a convolution cannot be cut: op, operands, their bytes, limit. */
function limitWhat(rt: Runtime, op: string, parts: [string, readonly number[], number][]): string {
  const ops = parts.map(([name, shape, eb]) =>
    `${name} ${fmtShape(shape)} (${shape.reduce((a, b) => a * b, eb)} bytes)`
  );
  return `${op}: ${ops.join(", ")}: over the storage-binding limit of ${rt.maxBinding} bytes`;
}

/** Runs `plan` (which throws when the op cannot be cut) when some operand is over one binding. */
function precheck(bytes: number[], plan: () => unknown): void {
  if (bytes.some((b) => b > runtime().maxBinding)) plan();
}

// ---------------------------------------------------------------- direct ops

interface DirectAttrs {
  geom: ConvGeom;
  tile: ConvTile;
  /** padded output channels per group in the packed weight */
  outPad: number;
  bias: boolean;
  /** depthwise kernel (reads the weight in its PyTorch layout) */
  depthwise: boolean;
}

/** A tensor operand as a kernel binds it: the binding and the element offset of its start. */
interface Bound {
  binding: Binding;
  /** element offset of the tensor's first element in the binding (negative: before it) */
  offset: number;
}

/** A tensor bound whole (its buffer fits one binding). */
function whole(t: { buffer: GPUBuffer; offset: number }): Bound {
  return { binding: t.buffer, offset: t.offset };
}

/** The window of elements `[r[0], r[1])` of tensor `t` (relative to its offset). */
function windowed(
  rt: Runtime,
  t: { buffer: GPUBuffer; offset: number },
  dtype: DType,
  r: Range,
  what: string,
): Bound {
  const w = windowOf(rt, t.buffer, dtype, t.offset + r[0], t.offset + r[1], what);
  return { binding: w.binding, offset: t.offset - w.shift };
}

/** Kernel-terms sizes of a direct convolution (the forward, or the input gradient). */
interface DirectDims {
  fwd: boolean;
  n: number;
  groups: number;
  /** reduction channels per group (of the tensor read) and output channels (of the written) */
  cr: number;
  co: number;
  /** frames and elements per frame of the tensor read (x or dY) and of the tensor written */
  inT: number;
  inF: number;
  outT: number;
  outF: number;
  k3: number;
  /**
   * f32 weight with a packed copy (read for blocks of whole channel tiles); else, and for other
   * blocks, the weight is read in its PyTorch layout with the channel strides wso / wsr
   */
  packed: boolean;
  wso: number;
  wsr: number;
  wDtype: DType;
  bias: boolean;
}

function directDims(a: DirectAttrs, fwd: boolean, wDtype: DType): DirectDims {
  const g = a.geom;
  const crg = g.cin / g.groups, cog = g.cout / g.groups;
  const k3 = g.k[0] * g.k[1] * g.k[2];
  const [rd, wr] = fwd ? [g.inSize, g.outSize] : [g.outSize, g.inSize];
  return {
    fwd,
    n: g.n,
    groups: g.groups,
    cr: fwd ? crg : cog,
    co: fwd ? cog : crg,
    inT: rd[0],
    inF: rd[1] * rd[2],
    outT: wr[0],
    outF: wr[1] * wr[2],
    k3,
    packed: !a.depthwise && !isHalf(wDtype),
    wso: fwd ? crg * k3 : k3,
    wsr: fwd ? k3 : crg * k3,
    wDtype: isHalf(wDtype) ? wDtype : "f32",
    bias: a.bias && fwd,
  };
}

/**
 * Frames `[lo, hi)` of the tensor read that frames `[t0, t1)` of the tensor written touch
 * (clamped to the tensor; at least one): the forward's halo `t·s - p + k·d`, or for the input
 * gradient the dY frames `(t + p - k·d) / s` that land on them.
 */
function readFrames(g: ConvGeom, fwd: boolean, t0: number, t1: number): Range {
  const [s, p, d, k] = [g.stride[0], g.padding[0], g.dilation[0], g.k[0]];
  const inT = fwd ? g.inSize[0] : g.outSize[0];
  let lo = fwd ? t0 * s - p : Math.ceil((t0 + p - (k - 1) * d) / s);
  let hi = fwd ? (t1 - 1) * s - p + (k - 1) * d : Math.floor((t1 - 1 + p) / s);
  lo = Math.min(Math.max(lo, 0), inT - 1);
  hi = Math.min(Math.max(hi, lo), inT - 1);
  return [lo, hi + 1];
}

/**
 * Whether a piece reads the packed weight: its tiles of output channels start at a multiple of 4
 * (vec4 loads) and end within the packed rows.
 */
function readsPacked(a: DirectAttrs, d: DirectDims, q: Piece): boolean {
  return d.packed && q.oa % 4 === 0 && q.oa + roundUp(q.ob - q.oa, a.tile.co) <= a.outPad;
}

/** Element ranges (relative to each tensor's offset) that a piece of a direct dispatch binds. */
function directRanges(a: DirectAttrs, d: DirectDims, q: Piece) {
  const cin = d.groups * d.cr, cout = d.groups * d.co;
  const packed = readsPacked(a, d, q);
  const [f0, f1] = readFrames(a.geom, d.fwd, q.t0, q.t1);
  const xr: Range = [
    ((q.n0 * cin + q.ga * d.cr + q.ra) * d.inT + f0) * d.inF,
    (((q.n1 - 1) * cin + (q.gb - 1) * d.cr + q.rb - 1) * d.inT + f1) * d.inF,
  ];
  const yr: Range = [
    ((q.n0 * cout + q.ga * d.co + q.oa) * d.outT + q.t0) * d.outF,
    (((q.n1 - 1) * cout + (q.gb - 1) * d.co + q.ob - 1) * d.outT + q.t1) * d.outF,
  ];
  // the packed weight is read in whole tiles of output channels
  const wr: Range = packed
    ? [
      (q.ga * d.cr + q.ra) * d.k3 * a.outPad + q.oa,
      (((q.gb - 1) * d.cr + q.rb - 1) * d.k3 + d.k3 - 1) * a.outPad + q.oa +
      roundUp(q.ob - q.oa, a.tile.co),
    ]
    : [
      q.ga * d.cr * d.co * d.k3 + q.ra * d.wsr + q.oa * d.wso,
      (q.gb - 1) * d.cr * d.co * d.k3 + (q.rb - 1) * d.wsr + (q.ob - 1) * d.wso + d.k3,
    ];
  const br: Range | null = d.bias ? [q.ga * d.co + q.oa, (q.gb - 1) * d.co + q.ob] : null;
  return { xr, wr, br, yr, packed };
}

/** The pieces of a direct convolution whose operands do not all fit one binding (or throws). */
function planDirect(rt: Runtime, a: DirectAttrs, fwd: boolean, wDtype: DType): Piece[] {
  const d = directDims(a, fwd, wDtype);
  const g = a.geom;
  const fits = (q: Piece) => {
    const r = directRanges(a, d, q);
    return rangeFits(rt, "f32", ...r.xr) && rangeFits(rt, d.wDtype, ...r.wr) &&
      rangeFits(rt, "f32", ...r.yr) && (!r.br || rangeFits(rt, "f32", ...r.br));
  };
  const wShape = [g.cout, g.cin / g.groups, ...g.k];
  const xs = [g.n, g.cin, ...g.inSize], ys = [g.n, g.cout, ...g.outSize];
  const what = fwd
    ? limitWhat(rt, "conv3d", [["input", xs, 4], ["weight", wShape, DTYPE_BYTES[d.wDtype]], [
      "output",
      ys,
      4,
    ]])
    : limitWhat(rt, "conv3d_grad_input", [["dy", ys, 4], [
      "weight",
      wShape,
      DTYPE_BYTES[d.wDtype],
    ], ["dx", xs, 4]]);
  return planPieces(
    {
      n: d.n,
      t: d.outT,
      tq: fwd ? 1 : g.stride[0],
      groups: d.groups,
      co: d.co,
      cq: a.tile.co,
      cr: d.cr,
      rq: 1,
    },
    fits,
    what,
  );
}

/**
 * Encodes the direct kernel; `fwd` selects the forward or the input-gradient mapping. `wk` is the
 * weight the kernel reads (packed, or `wt` itself), `wt` the weight in its PyTorch layout. When
 * some operand does not fit one binding the work is cut into pieces (see the module doc), each
 * bound as windows.
 */
function encodeDirect(
  rt: Runtime,
  fwd: boolean,
  a: DirectAttrs,
  x: { buffer: GPUBuffer; offset: number },
  wt: { buffer: GPUBuffer; offset: number; dtype: DType },
  wk: { buffer: GPUBuffer; offset: number; dtype: DType },
  b: { buffer: GPUBuffer; offset: number } | null,
  y: { buffer: GPUBuffer; offset: number },
): void {
  const d = directDims(a, fwd, wk.dtype);
  const bb = d.bias ? b : null;
  if ([x, wk, y, ...(bb ? [bb] : [])].every((t) => fitsBinding(rt, t.buffer))) {
    const all = { n0: 0, n1: d.n, t0: 0, t1: d.outT, ga: 0, gb: d.groups };
    const q = { ...all, oa: 0, ob: d.co, ra: 0, rb: d.cr };
    dispatchDirect(rt, a, d, q, d.packed, whole(x), whole(wk), bb && whole(bb), whole(y));
    return;
  }
  const op = fwd ? "conv3d" : "conv3d_grad_input";
  for (const q of planDirect(rt, a, fwd, wk.dtype)) {
    const r = directRanges(a, d, q);
    dispatchDirect(
      rt,
      a,
      d,
      q,
      r.packed,
      windowed(rt, x, "f32", r.xr, op),
      windowed(rt, r.packed ? wk : wt, d.wDtype, r.wr, op),
      bb && windowed(rt, bb, "f32", r.br!, op),
      windowed(rt, y, "f32", r.yr, op),
    );
  }
}

/**
 * One dispatch of the direct kernel over piece `q` (the whole convolution, or a window of it);
 * `packed`: `w` is the packed weight, else the PyTorch layout.
 */
function dispatchDirect(
  rt: Runtime,
  a: DirectAttrs,
  d: DirectDims,
  q: Piece,
  packed: boolean,
  x: Bound,
  w: Bound,
  b: Bound | null,
  y: Bound,
): void {
  const g = a.geom;
  const fwd = d.fwd;
  const words = new Array<number>(CONV_PARAM_WORDS).fill(0);
  const co = q.ob - q.oa;
  const cin = d.groups * d.cr, cout = d.groups * d.co;
  const inSize = fwd ? g.inSize : g.outSize; // size of the tensor read (x, or dY)
  const outSize = fwd ? g.outSize : g.inSize;
  words[CP.N] = q.n1 - q.n0;
  words[CP.G] = q.gb - q.ga;
  words[CP.CR] = q.rb - q.ra;
  words[CP.CO] = co;
  words[CP.COP] = a.outPad;
  words[CP.COB] = Math.ceil(co / a.tile.co);
  words[CP.CIN] = cin;
  words[CP.COUT] = cout;
  words[CP.XOFF] = x.offset + (q.n0 * cin + q.ga * d.cr + q.ra) * d.inT * d.inF;
  words[CP.WOFF] = w.offset +
    (packed
      ? (q.ga * d.cr + q.ra) * d.k3 * a.outPad + q.oa
      : q.ga * d.cr * d.co * d.k3 + q.ra * d.wsr + q.oa * d.wso);
  words[CP.BOFF] = b ? b.offset + q.ga * d.co + q.oa : 0;
  words[CP.YOFF] = y.offset + ((q.n0 * cout + q.ga * d.co + q.oa) * d.outT + q.t0) * d.outF;
  words[CP.RC] = fwd ? 0 : 1;
  words[CP.YT] = d.outT;
  if (!packed && (d.wDtype !== "f32" || !a.depthwise)) {
    // 16-bit weights (and f32 ones for blocks off the packed tiles) are read in their PyTorch
    // layout [Cout, Cin/groups, kT·kH·kW]
    words[CP.WSO] = d.wso;
    words[CP.WSR] = d.wsr;
  }
  const axes = [0, 1, 2].map((ax) => {
    const p: AxisParams = fwd
      ? {
        inSize: inSize[ax]!,
        outSize: outSize[ax]!,
        os: 1,
        is: g.stride[ax]!,
        c0: -g.padding[ax]!,
        kd: g.dilation[ax]!,
        div: 1,
        k: g.k[ax]!,
      }
      : {
        inSize: inSize[ax]!,
        outSize: outSize[ax]!,
        os: g.stride[ax]!,
        is: 1,
        c0: g.padding[ax]!,
        kd: -g.dilation[ax]!,
        div: g.stride[ax]!,
        k: g.k[ax]!,
      };
    if (ax === 0 && (q.t0 > 0 || q.t1 < p.outSize)) {
      // frames [t0, t1) (t0 a multiple of os): q counts from t0 / os
      p.outSize = q.t1 - q.t0;
      p.c0 += (q.t0 / p.os) * p.is * p.div;
    }
    return axisWords(p);
  });
  axes.forEach((aw, ax) => aw.forEach((v, i) => words[CP.AXES + aw.length * ax + i] = v));
  const qs = axes.map((aw) => aw[2]!); // positions per residue class
  const os = fwd ? [1, 1, 1] : g.stride;
  const qwb = Math.ceil(qs[2]! / a.tile.p);
  words[CP.QWB] = qwb;
  // aligned vec4 reads of the input rows: unit input step along W, rows and offset multiples of 4
  const isW = fwd ? g.stride[2] : 1;
  const vecX = isW === 1 && inSize[2] % 4 === 0 && (words[CP.XOFF]! >>> 0) % 4 === 0;
  if (packed && (words[CP.WOFF]! % 4 !== 0 || words[CP.WOFF]! < 0)) {
    throw new Error(`internal: conv3d packed weight offset ${words[CP.WOFF]}`);
  }
  const total = (q.n1 - q.n0) * (q.gb - q.ga) * words[CP.COB]! * os[0]! * qs[0]! * os[1]! *
    qs[1]! * os[2]! * qwb;
  // later reduction-channel blocks add to the first one's sums (which carry the bias)
  const acc = q.ra > 0;
  words[CP.ACC] = acc ? 1 : 0;
  const bias = !!b && !acc;
  const wType = d.wDtype as ConvWeightDType;
  const spec = a.depthwise
    ? depthwiseKernel({ kw: g.k[2], p: a.tile.p, wg: a.tile.wg, vecX, bias, wType })
    : convKernel({ ...a.tile, vecX, bias, wType, unpacked: !packed });
  const bind = [x.binding, w.binding, ...(bias ? [b!.binding] : []), y.binding];
  // signed words (negative paddings / dilations, offsets below a window) as two's complement u32
  const u = words.map((v) => v >>> 0);
  rt.dispatch(
    spec,
    bind,
    u,
    gridFor(total, a.tile.wg, rt.info.limits.maxComputeWorkgroupsPerDimension),
  );
}

const CONV3D: OpDef<DirectAttrs> = {
  name: "conv3d",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [x, w, wf, b] = inputs;
    encodeDirect(rt, true, attrs, x!, w!, wf!, attrs.bias ? b! : null, outputs[0]!);
  },
  backward: ({ inputs, grads, attrs }) => {
    const [x, w, , b] = inputs as [Tensor, Tensor, Tensor, Tensor | undefined];
    const g = contiguous(grads[0]!);
    const gx = x.requiresGrad ? conv3dInputGrad(g, w, attrs.geom) : null;
    const gw = w.requiresGrad ? conv3dWeightGrad(x, g, attrs.geom) : null;
    const out: (Tensor | null)[] = [gx, gw, null];
    if (attrs.bias) out.push(b!.requiresGrad ? sum(g, [0, 2, 3, 4]) : null);
    return out;
  },
};

const CONV3D_DX: OpDef<DirectAttrs> = {
  name: "conv3d_grad_input",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [dy, wb, w] = inputs;
    encodeDirect(rt, false, attrs, dy!, w!, wb!, null, outputs[0]!);
  },
};

function f32Dense(t: Tensor): Tensor {
  return t.dtype === "f32" ? contiguous(t) : copy(t);
}

/**
 * The weight as the direct kernels read it: a dense f16 / bf16 weight as it is (widened in the
 * kernel), anything else as dense f32.
 */
function denseWeight(t: Tensor): Tensor {
  return isHalf(t.dtype) && t.contiguous ? t : f32Dense(t);
}

/**
 * 3-D convolution, as PyTorch's `F.conv3d`: `x` `[N, Cin, T, H, W]`, `weight`
 * `[Cout, Cin/groups, kT, kH, kW]` → `[N, Cout, To, Ho, Wo]` with
 * `To = floor((T + 2·padT - dilT·(kT - 1) - 1) / strideT) + 1` (same for H, W).
 *
 * @example
 * ```ts ignore
 * const y = conv3d(x, w, { bias: b, padding: 1 });            // k3 "same" convolution
 * const d = conv3d(x, w, { stride: [1, 2, 2], padding: 1 });  // spatial downsample
 * const dw = conv3d(x, wd, { groups: C, padding: 2 });        // 5x5x5 depthwise
 * ```
 */
export function conv3d(x: Tensor, weight: Tensor, options: Conv3dOptions = {}): Tensor {
  checkAlive("conv3d", x);
  checkAlive("conv3d", weight);
  const geom = conv3dGeometry(x.shape, weight.shape, options);
  const bias = options.bias;
  if (bias) {
    checkAlive("conv3d", bias);
    if (bias.rank !== 1 || bias.shape[0] !== geom.cout) {
      throw new RangeError(
        `conv3d: bias ${fmtShape(bias.shape)} must be [${geom.cout}] for weight ${
          fmtShape(weight.shape)
        }`,
      );
    }
  }
  halfOrF32("conv3d", "weight", weight); // 16-bit weights are frozen: clear error on requiresGrad
  if (isPointwise(geom)) return pointwise(x, weight, bias, geom);
  const cog = geom.cout / geom.groups;
  const depthwise = isDepthwise(geom);
  const tile = depthwise
    ? depthwiseTile(geom.outSize[2], isFallback())
    : pickConvTile(cog, geom.outSize[2], isFallback());
  const outPad = depthwise ? 1 : roundUp(cog, tile.co);
  const w = denseWeight(weight);
  // the depthwise kernel and 16-bit weights read w as it is (passed twice: as the weight and as
  // the kernel operand)
  const wf = depthwise || isHalf(w.dtype) ? w : packWeight(w, geom.groups, true, outPad);
  const ins = [f32Dense(x), w, wf];
  if (bias) ins.push(f32Dense(bias));
  const attrs: DirectAttrs = { geom, tile, outPad, bias: !!bias, depthwise };
  const shape = [geom.n, geom.cout, ...geom.outSize];
  precheck(
    [x.size * 4, wf.size * DTYPE_BYTES[wf.dtype], numel(shape) * 4],
    () => planDirect(runtime(), attrs, true, wf.dtype),
  );
  return apply1(CONV3D, ins, attrs, { shape, dtype: "f32" });
}

/**
 * Whether a convolution is a plain channel mix (1×1×1 kernel, stride 1, no padding) with enough
 * channels per group for a matrix multiply: such convolutions run as `matmul` (whose register
 * tiles suit a GEMM better than the direct kernel, which has a single tap to amortise its row
 * setup over), with matmul's backward.
 */
export function isPointwise(g: ConvGeom): boolean {
  const one = (t: Triple, v: number) => t.every((x) => x === v);
  const crg = g.cin / g.groups, cog = g.cout / g.groups;
  return one(g.k, 1) && one(g.stride, 1) && one(g.padding, 0) &&
    (g.groups === 1 || (crg >= 4 && cog >= 4));
}

/** `W · X` over the channels of each group, per sample: `[N, g, Cout/g, THW]`. */
function pointwise(x: Tensor, weight: Tensor, bias: Tensor | undefined, g: ConvGeom): Tensor {
  const p = g.inSize[0] * g.inSize[1] * g.inSize[2];
  const crg = g.cin / g.groups, cog = g.cout / g.groups;
  const y = g.groups === 1
    ? matmul(reshape(weight, [g.cout, g.cin]), reshape(x, [g.n, g.cin, p]))
    : matmul(reshape(weight, [g.groups, cog, crg]), reshape(x, [g.n, g.groups, crg, p]));
  const y5 = reshape(y, [g.n, g.cout, ...g.outSize]);
  return bias ? add(y5, reshape(bias, [g.cout, 1, 1, 1])) : y5;
}

/**
 * Gradient of {@linkcode conv3d} w.r.t. its input: `dy` `[N, Cout, To, Ho, Wo]`, `weight` as in
 * the forward → `[N, Cin, T, H, W]` (a transposed convolution; not differentiable itself).
 */
export function conv3dInputGrad(dy: Tensor, weight: Tensor, geom: ConvGeom): Tensor {
  checkAlive("conv3d_grad_input", dy);
  const want = [geom.n, geom.cout, ...geom.outSize];
  if (dy.shape.join() !== want.join()) {
    throw new RangeError(
      `conv3d_grad_input: dy ${fmtShape(dy.shape)} does not match the output ${fmtShape(want)}`,
    );
  }
  const crg = geom.cin / geom.groups;
  const qw = Math.ceil(geom.inSize[2] / geom.stride[2]);
  const depthwise = isDepthwise(geom);
  const tile = depthwise ? depthwiseTile(qw, isFallback()) : pickConvTile(crg, qw, isFallback());
  const outPad = depthwise ? 1 : roundUp(crg, tile.co);
  const w = denseWeight(weight);
  const wb = depthwise || isHalf(w.dtype) ? w : packWeight(w, geom.groups, false, outPad);
  const attrs: DirectAttrs = { geom, tile, outPad, bias: false, depthwise };
  const shape = [geom.n, geom.cin, ...geom.inSize];
  precheck(
    [dy.size * 4, wb.size * DTYPE_BYTES[wb.dtype], numel(shape) * 4],
    () => planDirect(runtime(), attrs, false, wb.dtype),
  );
  // w: the PyTorch layout, for windows whose channel blocks are off the packed tiles
  return apply1(CONV3D_DX, [f32Dense(dy), wb, w], attrs, { shape, dtype: "f32" });
}

// ---------------------------------------------------------------- weight gradient

interface GradWAttrs {
  geom: ConvGeom;
  depthwise: boolean;
  tile: Omit<GradWeightVariant, "vec">;
  chunks: number;
  rows: number;
}

/** Element ranges (relative to each tensor's offset) of a weight-gradient piece, slots [s0, s1). */
function gradWRanges(g: ConvGeom, q: Piece, s0: number, s1: number) {
  const crg = g.cin / g.groups, cog = g.cout / g.groups;
  const k3 = g.k[0] * g.k[1] * g.k[2];
  const [T, To] = [g.inSize[0], g.outSize[0]];
  const fi = g.inSize[1] * g.inSize[2], fo = g.outSize[1] * g.outSize[2];
  const [f0, f1] = readFrames(g, true, q.t0, q.t1);
  const xr: Range = [
    ((q.n0 * g.cin + q.ga * crg + q.ra) * T + f0) * fi,
    (((q.n1 - 1) * g.cin + (q.gb - 1) * crg + q.rb - 1) * T + f1) * fi,
  ];
  const dyr: Range = [
    ((q.n0 * g.cout + q.ga * cog + q.oa) * To + q.t0) * fo,
    (((q.n1 - 1) * g.cout + (q.gb - 1) * cog + q.ob - 1) * To + q.t1) * fo,
  ];
  const or: Range = [
    ((s0 * g.cout + q.ga * cog + q.oa) * crg + q.ra) * k3,
    ((((s1 - 1) * g.cout + (q.gb - 1) * cog + q.ob - 1) * crg + q.rb - 1) + 1) * k3,
  ];
  return { xr, dyr, or };
}

/** The pieces of a weight gradient whose operands do not all fit one binding (or throws). */
function planGradW(rt: Runtime, a: GradWAttrs): Piece[] {
  const g = a.geom;
  const fits = (q: Piece) => {
    const r = gradWRanges(g, q, 0, 1);
    return rangeFits(rt, "f32", ...r.xr) && rangeFits(rt, "f32", ...r.dyr) &&
      rangeFits(rt, "f32", ...r.or);
  };
  const what = limitWhat(rt, "conv3d_grad_weight", [
    ["x", [g.n, g.cin, ...g.inSize], 4],
    ["dy", [g.n, g.cout, ...g.outSize], 4],
    ["weight", [g.cout, g.cin / g.groups, ...g.k], 4],
  ]);
  return planPieces(
    {
      n: g.n,
      t: g.outSize[0],
      tq: 1,
      groups: g.groups,
      co: g.cout / g.groups,
      cq: a.tile.co,
      cr: g.cin / g.groups,
      rq: a.tile.cr,
    },
    fits,
    what,
  );
}

/** Invocations of one weight-gradient dispatch per row chunk (blocks of channels × taps). */
function gradWBlocks(a: GradWAttrs, q: Piece): number {
  const g = a.geom;
  const G = q.gb - q.ga;
  return a.depthwise
    ? G * g.k[0] * g.k[1]
    : Math.ceil((q.ob - q.oa) / a.tile.co) * Math.ceil((q.rb - q.ra) / a.tile.cr) * G * g.k[0] *
      g.k[1] * g.k[2];
}

/** Output rows `[first, end)` (of all `N·To·Ho`) that a weight-gradient piece sums. */
function gradWRows(g: ConvGeom, q: Piece): Range {
  const [To, Ho] = [g.outSize[0], g.outSize[1]];
  return [(q.n0 * To + q.t0) * Ho, ((q.n1 - 1) * To + q.t1) * Ho];
}

/**
 * One weight-gradient dispatch: piece `q`, partial-sum slots `[s0, s1)` of the output, rows
 * `[r0, r1)` with `rows` per slot from slot 0 on; `acc` adds to the output.
 */
function dispatchGradW(
  rt: Runtime,
  a: GradWAttrs,
  q: Piece,
  slots: Range,
  rowRange: Range,
  rows: number,
  acc: boolean,
  x: Bound,
  dy: Bound,
  out: Bound,
): void {
  const g = a.geom;
  const crg = g.cin / g.groups, cog = g.cout / g.groups;
  const k3 = g.k[0] * g.k[1] * g.k[2];
  const t = a.tile;
  const [s0, s1] = slots;
  const cr = q.rb - q.ra, co = q.ob - q.oa;
  const words = new Array<number>(GRADW_PARAM_WORDS).fill(0);
  words[GP.N] = g.n;
  words[GP.G] = q.gb - q.ga;
  words[GP.CR] = cr;
  words[GP.CO] = co;
  words[GP.CIN] = g.cin;
  words[GP.COUT] = g.cout;
  words[GP.XOFF] = x.offset + (q.ga * crg + q.ra) * g.inSize[0] * g.inSize[1] * g.inSize[2];
  words[GP.DYOFF] = dy.offset +
    (q.ga * cog + q.oa) * g.outSize[0] * g.outSize[1] * g.outSize[2];
  words[GP.OOFF] = out.offset + ((s0 * g.cout + q.ga * cog + q.oa) * crg + q.ra) * k3;
  words[GP.COB] = Math.ceil(co / t.co);
  words[GP.CRB] = Math.ceil(cr / t.cr);
  words[GP.CHUNKS] = s1 - s0;
  words[GP.ROWS] = rows;
  words[GP.R0] = rowRange[0] + s0 * rows;
  words[GP.R1] = rowRange[1];
  words[GP.CRS] = crg;
  words[GP.ACC] = acc ? 1 : 0;
  for (let ax = 0; ax < 3; ax++) {
    const b = GP.AXES + 6 * ax;
    words[b] = g.inSize[ax]!;
    words[b + 1] = g.outSize[ax]!;
    words[b + 2] = g.stride[ax]!;
    words[b + 3] = g.padding[ax]!;
    words[b + 4] = g.dilation[ax]!;
    words[b + 5] = g.k[ax]!;
  }
  const u = words.map((v) => v >>> 0); // offsets below a window wrap around
  const vec = g.stride[2] === 1 && g.inSize[2] % 4 === 0 && g.outSize[2] % 4 === 0 &&
    u[GP.XOFF]! % 4 === 0 && u[GP.DYOFF]! % 4 === 0;
  const total = gradWBlocks(a, q) * (s1 - s0);
  rt.dispatch(
    a.depthwise
      ? depthwiseGradWeightKernel({ kw: g.k[2], wg: t.wg, vec })
      : gradWeightKernel({ ...t, vec }),
    [x.binding, dy.binding, out.binding],
    u,
    gridFor(total, t.wg, rt.info.limits.maxComputeWorkgroupsPerDimension),
  );
}

const CONV3D_DW: OpDef<GradWAttrs> = {
  name: "conv3d_grad_weight",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs: a }) => {
    const [x, dy] = inputs as [TensorView, TensorView];
    const out = outputs[0]!;
    const g = a.geom;
    if ([x, dy, out].every((t) => fitsBinding(rt, t.buffer))) {
      const q: Piece = {
        n0: 0,
        n1: g.n,
        t0: 0,
        t1: g.outSize[0],
        ga: 0,
        gb: g.groups,
        oa: 0,
        ob: g.cout / g.groups,
        ra: 0,
        rb: g.cin / g.groups,
      };
      const rows = gradWRows(g, q);
      dispatchGradW(rt, a, q, [0, a.chunks], rows, a.rows, false, whole(x), whole(dy), whole(out));
      return;
    }
    const op = "conv3d_grad_weight";
    for (const q of planGradW(rt, a)) {
      const rows = gradWRows(g, q);
      const perSlot = Math.ceil((rows[1] - rows[0]) / a.chunks);
      // every piece covers all channel blocks and slots: the first row piece writes them all
      const acc = q.n0 > 0 || q.t0 > 0;
      const slotRanges = chunks(
        a.chunks,
        (s0, s1) => rangeFits(rt, "f32", ...gradWRanges(g, q, s0, s1).or),
        op,
      );
      for (const slots of slotRanges) {
        const r = gradWRanges(g, q, ...slots);
        dispatchGradW(
          rt,
          a,
          q,
          slots,
          rows,
          perSlot,
          acc,
          windowed(rt, x, "f32", r.xr, op),
          windowed(rt, dy, "f32", r.dyr, op),
          windowed(rt, out, "f32", r.or, op),
        );
      }
    }
  },
};

/**
 * Gradient of {@linkcode conv3d} w.r.t. its weight: `x` the forward input, `dy` the output
 * gradient → `[Cout, Cin/groups, kT, kH, kW]` (not differentiable itself).
 */
export function conv3dWeightGrad(x: Tensor, dy: Tensor, geom: ConvGeom): Tensor {
  checkAlive("conv3d_grad_weight", x);
  checkAlive("conv3d_grad_weight", dy);
  const g = geom;
  const wantX = [g.n, g.cin, ...g.inSize], wantY = [g.n, g.cout, ...g.outSize];
  if (x.shape.join() !== wantX.join() || dy.shape.join() !== wantY.join()) {
    throw new RangeError(
      `conv3d_grad_weight: x ${fmtShape(x.shape)} and dy ${fmtShape(dy.shape)} do not match ` +
        `${fmtShape(wantX)} and ${fmtShape(wantY)}`,
    );
  }
  const crg = g.cin / g.groups, cog = g.cout / g.groups;
  const fb = isFallback();
  const depthwise = isDepthwise(g);
  const tile = depthwise
    ? { co: 1, cr: 1, wg: depthwiseTile(1, fb).wg }
    : pickGradWeightTile(cog, crg, fb);
  const blocks = depthwise
    ? g.groups * g.k[0] * g.k[1]
    : Math.ceil(cog / tile.co) * Math.ceil(crg / tile.cr) * g.groups * g.k[0] * g.k[1] * g.k[2];
  // enough invocations to fill the device: CPU adapters run a few threads of 8-lane
  // workgroups; GPUs want tens of thousands of invocations
  const target = fb ? 64 * tile.wg : 16384;
  const nRows = g.n * g.outSize[0] * g.outSize[1];
  let chunks = Math.min(nRows, Math.max(1, Math.ceil(target / blocks)));
  const wShape = [g.cout, crg, ...g.k];
  const wSize = wShape.reduce((a, b) => a * b, 1);
  const rt = runtime();
  const attrs = (chunks: number): GradWAttrs => ({
    geom,
    depthwise,
    tile,
    chunks,
    rows: Math.ceil(nRows / chunks),
  });
  precheck([x.size * 4, dy.size * 4, chunks * wSize * 4], () => {
    // windowed: each dispatch covers one piece (fewer blocks, or fewer rows); partial sums for
    // enough row chunks to fill the device, as many as fit one binding
    let blocks = 1, rowsMax = 1;
    for (const q of planGradW(rt, attrs(1))) {
      blocks = Math.max(blocks, gradWBlocks(attrs(1), q));
      const r = gradWRows(g, q);
      rowsMax = Math.max(rowsMax, r[1] - r[0]);
    }
    const fit = Math.max(1, Math.floor(windowElems(rt, "f32") / wSize));
    chunks = Math.max(1, Math.min(Math.ceil(target / blocks), rowsMax, fit));
  });
  const a = attrs(chunks);
  chunks = Math.ceil(nRows / a.rows);
  const part = apply1(
    CONV3D_DW,
    [f32Dense(x), f32Dense(dy)],
    { ...a, chunks },
    { shape: [chunks, ...wShape], dtype: "f32" },
  );
  return chunks === 1 ? reshape(part, wShape) : sum(part, 0);
}

// ---------------------------------------------------------------- padding helper

/**
 * Replicate ("edge") padding of one axis: `before` copies of the first slice and `after` copies
 * of the last, joined with `concat` (differentiable), as `F.pad(mode="replicate")` on that axis.
 */
export function replicatePad(x: Tensor, axis: number, before: number, after: number): Tensor {
  checkAlive("replicatePad", x);
  const a = axis < 0 ? axis + x.rank : axis;
  const n = x.shape[a];
  if (n === undefined || a < 0) {
    throw new RangeError(`replicatePad: axis ${axis} out of range for ${fmtShape(x.shape)}`);
  }
  if (!(Number.isInteger(before) && Number.isInteger(after) && before >= 0 && after >= 0)) {
    throw new RangeError(`replicatePad: paddings must be integers >= 0`);
  }
  if (n === 0 && before + after > 0) {
    throw new RangeError(`replicatePad: cannot replicate an empty axis of ${fmtShape(x.shape)}`);
  }
  if (before + after === 0) return x;
  const first = narrow(x, a, 0, 1), last = narrow(x, a, n - 1, 1);
  return concat([...Array(before).fill(first), x, ...Array(after).fill(last)], a);
}
