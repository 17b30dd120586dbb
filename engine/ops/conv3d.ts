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
 * @module
 */
import { apply1 } from "../graph.ts";
import { gridFor } from "../kernel.ts";
import { fmtShape } from "../shape.ts";
import { checkAlive, noGrad, type OpDef, type Tensor, type TensorView } from "../tensor.ts";
import { type Runtime, runtime } from "../runtime.ts";
import {
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
import { type DType, isHalf } from "../dtype.ts";
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

/** Encodes the direct kernel; `fwd` selects the forward or the input-gradient mapping. */
function encodeDirect(
  rt: Runtime,
  fwd: boolean,
  a: DirectAttrs,
  x: { buffer: GPUBuffer; offset: number },
  w: { buffer: GPUBuffer; offset: number; dtype: DType },
  b: { buffer: GPUBuffer; offset: number } | null,
  y: { buffer: GPUBuffer; offset: number },
): void {
  const g = a.geom;
  const words = new Array<number>(CONV_PARAM_WORDS).fill(0);
  const crg = g.cin / g.groups, cog = g.cout / g.groups;
  const inSize = fwd ? g.inSize : g.outSize; // size of the tensor read (x, or dY)
  const outSize = fwd ? g.outSize : g.inSize;
  words[CP.N] = g.n;
  words[CP.G] = g.groups;
  words[CP.CR] = fwd ? crg : cog;
  words[CP.CO] = fwd ? cog : crg;
  words[CP.COP] = a.outPad;
  words[CP.COB] = a.outPad / a.tile.co;
  words[CP.CIN] = fwd ? g.cin : g.cout;
  words[CP.COUT] = fwd ? g.cout : g.cin;
  words[CP.XOFF] = x.offset;
  words[CP.WOFF] = w.offset;
  words[CP.BOFF] = b ? b.offset : 0;
  words[CP.YOFF] = y.offset;
  words[CP.RC] = fwd ? 0 : 1;
  const wType: ConvWeightDType = isHalf(w.dtype) ? w.dtype as ConvWeightDType : "f32";
  if (wType !== "f32") {
    // 16-bit weights are read in their PyTorch layout [Cout, Cin/groups, kT·kH·kW]
    const k3 = g.k[0] * g.k[1] * g.k[2];
    words[CP.WSO] = fwd ? crg * k3 : k3;
    words[CP.WSR] = fwd ? k3 : crg * k3;
  }
  const axes = [0, 1, 2].map((ax) =>
    axisWords(
      fwd
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
        },
    )
  );
  axes.forEach((aw, ax) => aw.forEach((v, i) => words[CP.AXES + aw.length * ax + i] = v));
  const q = axes.map((aw) => aw[2]!); // positions per residue class
  const os = fwd ? [1, 1, 1] : g.stride;
  const qwb = Math.ceil(q[2]! / a.tile.p);
  words[CP.QWB] = qwb;
  // aligned vec4 reads of the input rows: unit input step along W, rows and offset multiples of 4
  const isW = fwd ? g.stride[2] : 1;
  const vecX = isW === 1 && inSize[2] % 4 === 0 && x.offset % 4 === 0;
  if (!a.depthwise && wType === "f32" && w.offset % 4 !== 0) {
    throw new Error(`internal: conv3d packed weight offset ${w.offset}`);
  }
  const total = g.n * g.groups * (a.outPad / a.tile.co) * os[0]! * q[0]! * os[1]! * q[1]! *
    os[2]! * qwb;
  const bias = a.bias && fwd;
  const spec = a.depthwise
    ? depthwiseKernel({ kw: g.k[2], p: a.tile.p, wg: a.tile.wg, vecX, bias, wType })
    : convKernel({ ...a.tile, vecX, bias, wType });
  const bind = [x.buffer, w.buffer, ...(b && fwd ? [b.buffer] : []), y.buffer];
  // signed words (negative paddings / dilations) as two's complement u32
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
    const [x, , wf, b] = inputs;
    encodeDirect(rt, true, attrs, x!, wf!, attrs.bias ? b! : null, outputs[0]!);
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
    const [dy, wb] = inputs;
    encodeDirect(rt, false, attrs, dy!, wb!, null, outputs[0]!);
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
  return apply1(CONV3D, ins, { geom, tile, outPad, bias: !!bias, depthwise }, {
    shape: [geom.n, geom.cout, ...geom.outSize],
    dtype: "f32",
  });
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
  return apply1(CONV3D_DX, [f32Dense(dy), wb], { geom, tile, outPad, bias: false, depthwise }, {
    shape: [geom.n, geom.cin, ...geom.inSize],
    dtype: "f32",
  });
}

// ---------------------------------------------------------------- weight gradient

interface GradWAttrs {
  geom: ConvGeom;
  depthwise: boolean;
  tile: Omit<GradWeightVariant, "vec">;
  chunks: number;
  rows: number;
}

const CONV3D_DW: OpDef<GradWAttrs> = {
  name: "conv3d_grad_weight",
  kind: "kernel",
  encode: ({ rt, inputs, outputs, attrs }) => {
    const [x, dy] = inputs as [TensorView, TensorView];
    const out = outputs[0]!;
    const g = attrs.geom;
    const crg = g.cin / g.groups, cog = g.cout / g.groups;
    const t = attrs.tile;
    const words = new Array<number>(GRADW_PARAM_WORDS).fill(0);
    const cob = Math.ceil(cog / t.co), crb = Math.ceil(crg / t.cr);
    words[GP.N] = g.n;
    words[GP.G] = g.groups;
    words[GP.CR] = crg;
    words[GP.CO] = cog;
    words[GP.CIN] = g.cin;
    words[GP.COUT] = g.cout;
    words[GP.XOFF] = x.offset;
    words[GP.DYOFF] = dy.offset;
    words[GP.OOFF] = out.offset;
    words[GP.COB] = cob;
    words[GP.CRB] = crb;
    words[GP.CHUNKS] = attrs.chunks;
    words[GP.ROWS] = attrs.rows;
    for (let a = 0; a < 3; a++) {
      const b = GP.AXES + 6 * a;
      words[b] = g.inSize[a]!;
      words[b + 1] = g.outSize[a]!;
      words[b + 2] = g.stride[a]!;
      words[b + 3] = g.padding[a]!;
      words[b + 4] = g.dilation[a]!;
      words[b + 5] = g.k[a]!;
    }
    const vec = g.stride[2] === 1 && g.inSize[2] % 4 === 0 && g.outSize[2] % 4 === 0 &&
      x.offset % 4 === 0 && dy.offset % 4 === 0;
    const total = attrs.depthwise
      ? g.groups * g.k[0] * g.k[1] * attrs.chunks
      : crb * cob * g.groups * g.k[0] * g.k[1] * g.k[2] * attrs.chunks;
    rt.dispatch(
      attrs.depthwise
        ? depthwiseGradWeightKernel({ kw: g.k[2], wg: t.wg, vec })
        : gradWeightKernel({ ...t, vec }),
      [x.buffer, dy.buffer, out.buffer],
      words,
      gridFor(total, t.wg, rt.info.limits.maxComputeWorkgroupsPerDimension),
    );
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
  const rows = Math.ceil(nRows / chunks);
  chunks = Math.ceil(nRows / rows);
  const wShape = [g.cout, crg, ...g.k];
  const part = apply1(
    CONV3D_DW,
    [f32Dense(x), f32Dense(dy)],
    { geom, depthwise, tile, chunks, rows },
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
