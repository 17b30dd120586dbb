/**
 * 3-D convolution kernels (NCTHW, f32): one "direct" kernel that computes both the forward
 * convolution and the gradient w.r.t. the input (a transposed, strided convolution), and one
 * kernel for the gradient w.r.t. the weight. The bias gradient is a plain `sum`.
 *
 * ## Direct kernel ({@linkcode convKernel})
 *
 * Each invocation computes a register block of `co` output channels × `p` output positions along
 * W (one output row `(n, t, h)`), accumulated in `vec4`s over channels. The reduction runs over the
 * input channels of the group and the kernel taps. Weights are read from a packed copy
 * `[groups][reduction channels][kT·kH·kW][outPad]` (output channels innermost, padded to a
 * multiple of `co`), so one `vec4` load brings 4 output channels.
 *
 * Positions along each axis are written `o = r + os·q` (residue `r < os`, `q` = index within the
 * residue class) and the input index of tap `k` is `i = q·is + (c0 + rc·r + k·kd) / div`, valid
 * when the division is exact:
 * - forward: `os = 1, is = stride, c0 = -pad, rc = 0, kd = dilation, div = 1`;
 * - input gradient (the input is dY, the weight packed the other way round):
 *   `os = stride, is = 1, c0 = pad, rc = 1, kd = -dilation, div = stride`: within one residue
 *   class the valid taps are the same for every position, and consecutive positions read
 *   consecutive elements of dY, so a stride-2 backward costs no masked-out work.
 * The first valid tap and the tap step are found once per invocation; inside the loops the
 * input offset moves by a constant (`offStep`), so there is no integer division in the loops.
 *
 * With `vecX` (needs `is_w = 1`, input rows and offset multiples of 4) the input row is read as
 * aligned `vec4`s: `p/4 + 1` loads per tap, the window shifted by `off & 3` with selects; else
 * `p` scalar loads with per-position bounds checks.
 *
 * ## Weight-gradient kernel ({@linkcode gradWeightKernel})
 *
 * Each invocation computes a block of `co` output channels × `cr` input channels of one tap
 * `(kt, kh, kw)` and sums over a chunk of the output rows `(n, t, h)` (several chunks are summed
 * afterwards). With `vec` (stride 1 along W, rows of X and dY multiples of 4, aligned offsets)
 * each step covers 4 output positions: `co` `vec4` loads of dY and `2·cr` aligned `vec4` loads of
 * X (shifted by `(kw·dw - pw) & 3` with selects); else one position per step with scalar loads.
 *
 * ## Depthwise kernels ({@linkcode depthwiseKernel}, {@linkcode depthwiseGradWeightKernel})
 *
 * With one channel per group (`groups = Cin = Cout`) the general kernels would pad the channel
 * block to 4 and reuse nothing. The depthwise kernels (stride 1 and dilation 1 along W) compile
 * the kernel width in: the direct one loads each input row window once for all `kW` taps, the
 * weight-gradient one sums all `kW` taps of a `(channel, kt, kh)` while sliding along the row.
 *
 * Everything that depends on shapes (sizes, strides, paddings, dilations, groups, offsets) is a
 * run-time parameter; the tile (`co`, `p` / `cr`, workgroup size), the depthwise kernel width and
 * the flags (`vecX`, `bias`, `vec`) and the weight storage type are compiled in.
 *
 * ## 16-bit weights
 *
 * With `wType` f16 / bf16 the direct kernels read the weight as it is stored (PyTorch layout,
 * two halves per `u32` word) and widen each value to f32 on load; compute stays f32. The
 * weight-gradient kernels are f32 only (16-bit weights are frozen).
 *
 * ## Binding windows
 *
 * For tensors over one storage binding (`engine/ops/conv3d.ts` cuts the work into pieces) the
 * offsets may be shifted below the window's start (u32 wraparound: every index is the sum of
 * the offset and positive terms, and is taken `>> 2` for vec4 loads only after the sum); the T
 * axis may cover a slice of the frames (`CP.YT` keeps the written tensor's frame count), the
 * weight gradient a range of rows (`GP.R0`, `GP.R1`) and a block of input channels (`GP.CRS`
 * keeps the output's row stride). A run-time flag (`CP.ACC`, `GP.ACC`) adds to the output
 * instead of overwriting it (later reduction-channel blocks, later row pieces); the `unpacked`
 * variant reads an f32 weight in its PyTorch layout for channel blocks off the packed tiles.
 *
 * @module
 */
import { type KernelSpec, paramsWGSL } from "../engine/kernel.ts";

/** Compiled-in shape of the direct kernel. */
export interface ConvTile {
  /** Output channels per invocation (multiple of 4). */
  co: number;
  /** Output positions along W per invocation (multiple of 4). */
  p: number;
  /** Invocations per workgroup. */
  wg: number;
}

/** Storage type of a convolution weight: f32, or a 16-bit float widened to f32 on load. */
export type ConvWeightDType = "f32" | "f16" | "bf16";

/** A variant of the direct kernel. */
export interface ConvVariant extends ConvTile {
  /** Read the input rows as aligned vec4s. */
  vecX: boolean;
  /** Add a bias (forward only). */
  bias: boolean;
  /**
   * Weight storage (default f32: the packed layout). f16 / bf16: the weight is read in its
   * PyTorch layout `[Cout, Cin/groups, kT, kH, kW]` with the channel strides `CP.WSO` (output
   * channel of the kernel's mapping) and `CP.WSR` (reduction channel), one widened scalar load
   * per channel and tap.
   */
  wType?: ConvWeightDType;
  /**
   * Read an f32 weight in its PyTorch layout too (strides `CP.WSO` / `CP.WSR`, scalar loads)
   * instead of the packed copy: for blocks of output channels that do not start on a tile, when
   * a convolution is cut into binding windows (default false).
   */
  unpacked?: boolean;
}

/**
 * WGSL: the weight binding `W` in its PyTorch layout and `ldW(i)` reading element `i` (16-bit
 * types as packed `u32` words, widened).
 */
function torchWeightWGSL(b: number, dt: ConvWeightDType): string {
  if (dt === "f32") {
    return `@group(0) @binding(${b}) var<storage, read> W: array<f32>;
fn ldW(i: u32) -> f32 { return W[i]; }`;
  }
  const one = dt === "f16"
    ? `unpack2x16float(W[i >> 1u])[i & 1u]`
    : `bitcast<f32>(((W[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu) << 16u)`;
  return `@group(0) @binding(${b}) var<storage, read> W: array<u32>;
fn ldW(i: u32) -> f32 { return ${one}; }`;
}

/** Compiled-in shape of the weight-gradient kernel. */
export interface GradWeightVariant {
  /** Output channels per invocation. */
  co: number;
  /** Input (reduction) channels per invocation. */
  cr: number;
  /** Invocations per workgroup. */
  wg: number;
  /** Vec4 path (stride 1 along W, aligned rows). */
  vec: boolean;
}

// ---------------------------------------------------------------- parameter layout

/** Word indices of the direct kernel's parameters. */
export const CP = {
  N: 0,
  G: 1,
  /** reduction channels per group */
  CR: 2,
  /** output channels per group (real) */
  CO: 3,
  /** output channels per group in the packed weight (multiple of the tile's co) */
  COP: 4,
  /** channel blocks per group = COP / co */
  COB: 5,
  /** channels of the input tensor */
  CIN: 6,
  /** channels of the output tensor */
  COUT: 7,
  XOFF: 8,
  WOFF: 9,
  BOFF: 10,
  YOFF: 11,
  /** blocks of p positions per W residue class */
  QWB: 12,
  /** residue coefficient rc (0 forward, 1 input gradient) */
  RC: 13,
  /** 16-bit weights (PyTorch layout): element stride of the kernel's output channel */
  WSO: 14,
  /** 16-bit weights: element stride of the kernel's reduction channel */
  WSR: 15,
  /** first word of the per-axis parameters (t, h, w; AXIS_WORDS each) */
  AXES: 16,
  /**
   * frames of the tensor written: its channel stride is `YT·Ho·Wo` (the T axis' OUT may be a
   * slice of them when the dispatch covers a window of frames)
   */
  YT: 49,
  /**
   * nonzero: add the sums to Y instead of overwriting it (the later reduction-channel blocks of a
   * convolution cut into binding windows; not the depthwise kernel, which has one channel)
   */
  ACC: 50,
} as const;

/** Per-axis words of the direct kernel, relative to `CP.AXES + 9·axis`. */
export const CA = {
  /** input size */
  IN: 0,
  /** output size */
  OUT: 1,
  /** positions per residue class: ceil(OUT / OS) */
  Q: 2,
  /** output step (number of residue classes) */
  OS: 3,
  /** input step per q */
  IS: 4,
  /** offset numerator constant c0 */
  C0: 5,
  /** numerator step per tap kd */
  KD: 6,
  /** divisor */
  DIV: 7,
  /** kernel size */
  K: 8,
  /** taps between valid taps */
  KSTEP: 9,
  /** offset change between valid taps: KSTEP·KD/DIV */
  OFFSTEP: 10,
} as const;
const AXIS_WORDS = 11;
const DIRECT_WORDS = CP.AXES + 3 * AXIS_WORDS + 2; // 51

/** Word indices of the weight-gradient kernel's parameters. */
export const GP = {
  N: 0,
  G: 1,
  CR: 2,
  CO: 3,
  CIN: 4,
  COUT: 5,
  XOFF: 6,
  DYOFF: 7,
  OOFF: 8,
  /** co blocks per group */
  COB: 9,
  /** cr blocks per group */
  CRB: 10,
  CHUNKS: 11,
  /** output rows (n, t, h) per chunk */
  ROWS: 12,
  /** first output row (of all N·To·Ho) summed: chunk c sums rows from `R0 + c·ROWS` */
  R0: 13,
  /** end of the output rows summed */
  R1: 14,
  /** input channels per group of the output (its row stride; CR may count a block of them) */
  CRS: 15,
  /** per axis (t, h, w) from word 16, 6 words each: IN, OUT, STRIDE, PAD, DIL, K */
  AXES: 16,
  /** nonzero: add to O instead of overwriting it (the later row pieces of a windowed gradient) */
  ACC: 34,
} as const;
const GRADW_WORDS = GP.AXES + 18 + 1;

/** Repeats `f(i)` for i in [0, n) and joins the results. */
function rep(n: number, f: (i: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(sep);
}

function checkTile(name: string, v: Record<string, number>, mult4: string[]): void {
  for (const [k, x] of Object.entries(v)) {
    if (!(Number.isInteger(x) && x >= 1)) throw new RangeError(`${name}: bad ${k} = ${x}`);
    if (mult4.includes(k) && x % 4 !== 0) {
      throw new RangeError(`${name}: ${k} must be a multiple of 4 (got ${x})`);
    }
  }
}

const cache = new Map<string, KernelSpec>();

// ---------------------------------------------------------------- direct kernel

/** WGSL of one axis' tap setup: first valid tap `k0<a>` and its offset `off0<a>`. */
function axisSetup(a: "t" | "h" | "w", ax: number, r: string): string {
  const b = CP.AXES + AXIS_WORDS * ax;
  const w = (k: number) => `${b + k}u`;
  return `  let k${a} = pi(${w(CA.K)}); let ks${a} = pi(${w(CA.KSTEP)});
  let os${a} = pi(${w(CA.OFFSTEP)}); let is${a} = pi(${w(CA.IS)});
  var k0${a} = 0i; var off0${a} = 0i;
  {
    let c0 = pi(${w(CA.C0)}) + rc * i32(${r}); let kd = pi(${w(CA.KD)}); let dv = pi(${w(CA.DIV)});
    k0${a} = k${a};
    for (var k = 0i; k < min(ks${a}, k${a}); k++) {
      let num = c0 + k * kd;
      if (num % dv == 0) { k0${a} = k; off0${a} = num / dv; break; }
    }
  }`;
}

/**
 * WGSL of the direct kernels' entry up to the loops: decomposes the invocation into
 * `(n, channel block, output row, W block)`, returns past the output, finds the first valid tap
 * and its input offset along each axis.
 */
function directPrologue(co: number, p: number, wg: number): string {
  const A = (ax: number, w: number) => `${CP.AXES + AXIS_WORDS * ax + w}u`;
  return `
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let id = (wgid.y * nwg.x + wgid.x) * ${wg}u + lid;
  let G = pu(${CP.G}u); let COB = pu(${CP.COB}u); let qwb = pu(${CP.QWB}u);
  let Qt = pu(${A(0, CA.Q)}); let Qh = pu(${A(1, CA.Q)});
  let nwb = pu(${A(2, CA.OS)}) * qwb;
  let nh = pu(${A(1, CA.OS)}) * Qh;
  let nt = pu(${A(0, CA.OS)}) * Qt;
  let ncb = G * COB;
  if (id >= pu(${CP.N}u) * ncb * nt * nh * nwb) { return; }
  var i = id;
  let wb = i % nwb; i = i / nwb;
  let hq = i % nh; i = i / nh;
  let tq = i % nt; i = i / nt;
  let cb = i % ncb; let n = i / ncb;
  let g = cb / COB; let co0 = (cb % COB) * ${co}u;
  let rw = wb / qwb; let qw0 = (wb % qwb) * ${p}u;
  let rh = hq / Qh; let qh = hq % Qh;
  let rt = tq / Qt; let qt = tq % Qt;
  let To = pu(${A(0, CA.OUT)}); let Ho = pu(${A(1, CA.OUT)}); let Wo = pu(${A(2, CA.OUT)});
  let ot = rt + pu(${A(0, CA.OS)}) * qt; let oh = rh + pu(${A(1, CA.OS)}) * qh;
  if (ot >= To || oh >= Ho) { return; }
  let rc = pi(${CP.RC}u);
${axisSetup("t", 0, "rt")}
${axisSetup("h", 1, "rh")}
${axisSetup("w", 2, "rw")}
  let Ti = pi(${A(0, CA.IN)}); let Hi = pi(${A(1, CA.IN)}); let Wi = pi(${A(2, CA.IN)});
`;
}

/** The direct (forward / input-gradient) kernel of a variant. */
export function convKernel(v: ConvVariant): KernelSpec {
  checkTile("conv3d", { co: v.co, p: v.p, wg: v.wg }, ["co", "p"]);
  const wType = v.wType ?? "f32";
  const unpacked = wType === "f32" && (v.unpacked ?? false);
  const key = `conv/${v.co}/${v.p}/${v.wg}/${v.vecX}/${v.bias}/${wType}/${unpacked}`;
  let k = cache.get(key);
  if (k) return k;
  const { co, p, wg, vecX, bias } = v;
  const torch = wType !== "f32" || unpacked; // PyTorch layout, scalar loads
  const c4 = co / 4;
  const A = (ax: number, w: number) => `${CP.AXES + AXIS_WORDS * ax + w}u`;
  const L: string[] = [];
  L.push(paramsWGSL(Math.ceil(DIRECT_WORDS / 4) * 4));
  L.push(`@group(0) @binding(1) var<storage, read> X: array<${vecX ? "vec4<f32>" : "f32"}>;`);
  L.push(
    torch
      ? torchWeightWGSL(2, wType)
      : `@group(0) @binding(2) var<storage, read> W: array<vec4<f32>>;`,
  );
  if (bias) L.push(`@group(0) @binding(3) var<storage, read> B: array<f32>;`);
  L.push(`@group(0) @binding(${bias ? 4 : 3}) var<storage, read_write> Y: array<f32>;`);
  L.push(directPrologue(co, p, wg));
  L.push(`
  let Crg = pu(${CP.CR}u);
  let cop4 = pu(${CP.COP}u) >> 2u;
  let K3 = u32(kt * kh * kw);
  let thw = u32(Ti * Hi * Wi);
  let xc0 = pu(${CP.XOFF}u) + (n * pu(${CP.CIN}u) + g * Crg) * thw;
${
    torch
      ? `  let wc0 = pu(${CP.WOFF}u) + g * Crg * pu(${CP.CO}u) * K3;
  let wsr = pu(${CP.WSR}u);
${rep(co, (c) => `  let wch${c} = min(co0 + ${c}u, pu(${CP.CO}u) - 1u) * pu(${CP.WSO}u);`)}`
      : `  let wc0 = (pu(${CP.WOFF}u) >> 2u) + g * Crg * K3 * cop4 + (co0 >> 2u);`
  }
  let it0 = i32(qt) * ist + off0t;
  let ih0 = i32(qh) * ish + off0h;
${
    vecX
      ? `  let Wi4 = Wi >> 2u;
  let a0 = i32(qw0 >> 2u);`
      : `  let iw0 = i32(qw0) * isw;`
  }
${rep(p, (j) => rep(c4, (c) => `  var acc${j}_${c} = vec4<f32>(0.0);`))}
  for (var cr = 0u; cr < Crg; cr++) {
    let xcb = xc0 + cr * thw;
    let wcb = wc0 + cr * ${torch ? "wsr" : "K3 * cop4"};
    var it = it0;
    for (var ktap = k0t; ktap < kt; ktap += kst) {
      if (it >= 0i && it < Ti) {
        var ih = ih0;
        for (var khap = k0h; khap < kh; khap += ksh) {
          if (ih >= 0i && ih < Hi) {
            let row = xcb + (u32(it) * u32(Hi) + u32(ih)) * u32(Wi);
            let wr = wcb + u32(ktap * kh + khap) * u32(kw)${torch ? "" : " * cop4"};
            var off = off0w;
            for (var kwap = k0w; kwap < kw; kwap += ksw) {
              let wk = wr + u32(kwap)${torch ? "" : " * cop4"};
${
    rep(c4, (c) =>
      torch
        ? `              let w${c} = vec4<f32>(${
          rep(4, (i) =>
            `ldW(wk + wch${4 * c + i})`, ", ")
        });`
        : `              let w${c} = W[wk + ${c}u];`)
  }
${vecX ? vecLoads(p) : scalarLoads(p)}
${rep(p, (j) => rep(c4, (c) => `              acc${j}_${c} += x${j} * w${c};`))}
              off += osw;
            }
          }
          ih += osh;
        }
      }
      it += ost;
    }
  }
  let Cog = pu(${CP.CO}u);
  let YT = pu(${CP.YT}u);
  let ybase = pu(${CP.YOFF}u) + ((n * pu(${CP.COUT}u) + g * Cog) * YT + ot) * Ho * Wo + oh * Wo;
  let owStep = pu(${A(2, CA.OS)});
  let thwo = YT * Ho * Wo;
  let accum = pu(${CP.ACC}u) != 0u;
${
    rep(co, (c) => {
      const b = bias ? ` + B[pu(${CP.BOFF}u) + g * Cog + co0 + ${c}u]` : "";
      return `  if (co0 + ${c}u < Cog) {
    let yc = ybase + (co0 + ${c}u) * thwo;
    let bv = 0.0${b};
${
        rep(p, (j) =>
          `    { let ow = rw + owStep * (qw0 + ${j}u); if (ow < Wo) { var v = acc${j}_${c >> 2}[${
            c & 3
          }] + bv; if (accum) { v += Y[yc + ow]; } Y[yc + ow] = v; } }`)
      }
  }`;
    })
  }
}
`);
  k = {
    name: `conv3d_co${co}_p${p}_wg${wg}${vecX ? "_vx" : ""}${bias ? "_bias" : ""}${
      torch ? "_w" + wType : ""
    }`,
    code: L.join("\n"),
    inputs: bias ? 3 : 2,
    outputs: 1,
  };
  cache.set(key, k);
  return k;
}

/** Scalar input loads of one tap: `p` positions with bounds checks. */
function scalarLoads(p: number): string {
  return rep(p, (j) =>
    `              let xw${j} = iw0 + ${j}i * isw + off;
              let x${j} = select(0.0, X[row + u32(clamp(xw${j}, 0i, Wi - 1i))], xw${j} >= 0i && xw${j} < Wi);`);
}

/** Aligned vec4 input loads of one tap (`is_w = 1`): `p/4 + 1` loads, shifted by `off & 3`. */
function vecLoads(p: number): string {
  const m = p / 4 + 1;
  const L: string[] = [];
  L.push(`              let va = a0 + (off >> 2u);
              let sb = off & 3i;
              let b1 = sb == 1i; let b2 = sb >= 2i; let b3 = sb == 3i;
              let row4 = row >> 2u;`);
  for (let i = 0; i < m; i++) {
    L.push(`              let vi${i} = va + ${i}i;
              let v${i} = select(vec4<f32>(0.0), X[row4 + u32(clamp(vi${i}, 0i, i32(Wi4) - 1i))], vi${i} >= 0i && vi${i} < i32(Wi4));`);
  }
  const el = (e: number) => `v${e >> 2}[${e & 3}]`;
  for (let j = 0; j < p; j++) {
    L.push(
      `              let x${j} = select(select(${el(j)}, ${el(j + 1)}, b1), select(${el(j + 2)}, ${
        el(j + 3)
      }, b3), b2);`,
    );
  }
  return L.join("\n");
}

// ---------------------------------------------------------------- depthwise kernels

/** A variant of the depthwise direct kernel (one channel per group, unit step along W). */
export interface DepthwiseVariant {
  /** Kernel width (compiled in: the row window is loaded once for all `kw` taps). */
  kw: number;
  /** Output positions along W per invocation. */
  p: number;
  wg: number;
  vecX: boolean;
  bias: boolean;
  /** Weight storage (default f32; f16 / bf16 are widened on load). */
  wType?: ConvWeightDType;
}

/**
 * Depthwise direct kernel (forward and input gradient; `groups = Cin = Cout`): each invocation
 * computes `p` positions of one channel's row. Needs a unit input step and a unit tap offset
 * step along W (stride 1 and dilation 1 there); then for each `(kt, kh)` the `p + kw - 1` input
 * values are loaded once and shared by the `kw` taps. Reads the weight in its PyTorch layout
 * `[C, 1, kT, kH, kW]` (the input gradient walks the taps in reverse). Parameters as
 * {@linkcode convKernel} (`COB = 1`).
 */
export function depthwiseKernel(v: DepthwiseVariant): KernelSpec {
  checkTile("conv3d depthwise", { kw: v.kw, p: v.p, wg: v.wg }, ["p"]);
  const wType = v.wType ?? "f32";
  const key = `dw/${v.kw}/${v.p}/${v.wg}/${v.vecX}/${v.bias}/${wType}`;
  let k = cache.get(key);
  if (k) return k;
  const { kw: KW, p, wg, vecX, bias } = v;
  const ne = p + KW - 1; // window elements
  const L: string[] = [];
  L.push(paramsWGSL(Math.ceil(DIRECT_WORDS / 4) * 4));
  L.push(`@group(0) @binding(1) var<storage, read> X: array<${vecX ? "vec4<f32>" : "f32"}>;`);
  L.push(
    wType === "f32"
      ? `@group(0) @binding(2) var<storage, read> W: array<f32>;`
      : torchWeightWGSL(2, wType),
  );
  if (bias) L.push(`@group(0) @binding(3) var<storage, read> B: array<f32>;`);
  L.push(`@group(0) @binding(${bias ? 4 : 3}) var<storage, read_write> Y: array<f32>;`);
  L.push(directPrologue(1, p, wg));
  let window: string;
  if (vecX) {
    const m = Math.floor((ne - 1 + 3) / 4) + 1;
    const el = (e: number) => `v${e >> 2}[${e & 3}]`;
    window = `            let row4 = row >> 2u;
            let va = a0 + (offMin >> 2u);
${
      rep(m, (i) =>
        `            let vi${i} = va + ${i}i;
            let v${i} = select(vec4<f32>(0.0), X[row4 + u32(clamp(vi${i}, 0i, Wi4 - 1i))], vi${i} >= 0i && vi${i} < Wi4);`)
    }
${
      rep(ne, (i) =>
        `            let e${i} = select(select(${el(i)}, ${el(i + 1)}, b1), select(${el(i + 2)}, ${
          el(i + 3)
        }, b3), b2);`)
    }`;
  } else {
    window = rep(ne, (i) =>
      `            let xw${i} = iw0 + ${i}i;
            let e${i} = select(0.0, X[row + u32(clamp(xw${i}, 0i, Wi - 1i))], xw${i} >= 0i && xw${i} < Wi);`);
  }
  L.push(`
  let thw = u32(Ti * Hi * Wi);
  let xcb = pu(${CP.XOFF}u) + (n * pu(${CP.CIN}u) + g) * thw;
  let wcb = pu(${CP.WOFF}u) + g * u32(kt * kh) * ${KW}u;
  let it0 = i32(qt) * ist + off0t;
  let ih0 = i32(qh) * ish + off0h;
  let fwdDir = osw > 0i;
  let offMin = select(off0w + ${KW - 1}i * osw, off0w, fwdDir);
${
    vecX
      ? `  let Wi4 = Wi >> 2u;
  let a0 = i32(qw0 >> 2u);
  let sb = offMin & 3i;
  let b1 = sb == 1i; let b2 = sb >= 2i; let b3 = sb == 3i;`
      : `  let iw0 = i32(qw0) + offMin;`
  }
${rep(p, (j) => `  var acc${j} = 0.0;`)}
  var it = it0;
  for (var ktap = k0t; ktap < kt; ktap += kst) {
    if (it >= 0i && it < Ti) {
      var ih = ih0;
      for (var khap = k0h; khap < kh; khap += ksh) {
        if (ih >= 0i && ih < Hi) {
          let row = xcb + (u32(it) * u32(Hi) + u32(ih)) * u32(Wi);
          let wr = wcb + u32(ktap * kh + khap) * ${KW}u;
${
    rep(KW, (t) => {
      const idx = `wr + select(${KW - 1 - t}u, ${t}u, fwdDir)`;
      return `          let w${t} = ${wType === "f32" ? `W[${idx}]` : `ldW(${idx})`};`;
    })
  }
${window}
${rep(p, (j) => rep(KW, (t) => `          acc${j} += e${j + t} * w${t};`))}
        }
        ih += osh;
      }
    }
    it += ost;
  }
  let yc = pu(${CP.YOFF}u) + ((n * pu(${CP.COUT}u) + g) * pu(${CP.YT}u) + ot) * Ho * Wo + oh * Wo;
  let bv = 0.0${bias ? ` + B[pu(${CP.BOFF}u) + g]` : ""};
  let owStep = pu(${CP.AXES + AXIS_WORDS * 2 + CA.OS}u);
${
    rep(p, (j) =>
      `  { let ow = rw + owStep * (qw0 + ${j}u); if (ow < Wo) { Y[yc + ow] = acc${j} + bv; } }`)
  }
}
`);
  k = {
    name: `conv3d_dw_k${KW}_p${p}_wg${wg}${vecX ? "_vx" : ""}${bias ? "_bias" : ""}${
      wType === "f32" ? "" : "_w" + wType
    }`,
    code: L.join("\n"),
    inputs: bias ? 3 : 2,
    outputs: 1,
  };
  cache.set(key, k);
  return k;
}

/** A variant of the depthwise weight-gradient kernel. */
export interface DepthwiseGradWeightVariant {
  /** Kernel width (compiled in: one invocation sums all `kw` taps of a `(kt, kh)`). */
  kw: number;
  wg: number;
  /** Vec4 path (rows of X and dY multiples of 4, aligned offsets). */
  vec: boolean;
}

/**
 * Depthwise weight gradient (`groups = Cin = Cout`, stride 1 and dilation 1 along W): each
 * invocation sums the `kw` taps of one `(channel, kt, kh)` over a chunk of output rows, sliding
 * a window along the row so that each step loads one dY and one X value (or vec4). Parameters as
 * {@linkcode gradWeightKernel}; the output is `[chunks, C, 1, kT, kH, kW]`.
 */
export function depthwiseGradWeightKernel(v: DepthwiseGradWeightVariant): KernelSpec {
  checkTile("conv3d depthwise grad weight", { kw: v.kw, wg: v.wg }, []);
  const key = `dwgw/${v.kw}/${v.wg}/${v.vec}`;
  let k = cache.get(key);
  if (k) return k;
  const { kw: KW, wg, vec } = v;
  const A = (ax: number, w: number) => `${GP.AXES + 6 * ax + w}u`;
  let body: string;
  if (vec) {
    // elements 0 .. KW + 2 of the window starting at 4·o4 + wOff, from m vec4s
    const ne = KW + 3;
    const m = Math.floor((ne - 1 + 3) / 4) + 1;
    const el = (e: number) => `c${e >> 2}[${e & 3}]`;
    body = `    let xq = (xc + xo) >> 2u; let dq = (dc + dyo) >> 2u;
${
      rep(m - 1, (i) =>
        `    var c${i} = select(vec4<f32>(0.0), X[xq + u32(clamp(sa + ${i}i, 0i, Wi4 - 1i))], sa + ${i}i >= 0i && sa + ${i}i < Wi4);`)
    }
    for (var o4 = 0u; o4 < Wo4; o4++) {
      let vi = i32(o4) + sa + ${m - 1}i;
      let c${
      m - 1
    } = select(vec4<f32>(0.0), X[xq + u32(clamp(vi, 0i, Wi4 - 1i))], vi >= 0i && vi < Wi4);
      let d = DY[dq + o4];
${
      rep(ne, (i) =>
        `      let e${i} = select(select(${el(i)}, ${el(i + 1)}, b1), select(${el(i + 2)}, ${
          el(i + 3)
        }, b3), b2);`)
    }
${rep(KW, (t) => `      acc${t} += dot(d, vec4<f32>(e${t}, e${t + 1}, e${t + 2}, e${t + 3}));`)}
${rep(m - 1, (i) => `      c${i} = c${i + 1};`)}
    }`;
  } else {
    body = `    let xr = xc + xo; let dr = dc + dyo;
${
      rep(KW - 1, (t) =>
        `    var e${t} = select(0.0, X[xr + u32(clamp(wOff + ${t}i, 0i, Wi - 1i))], wOff + ${t}i >= 0i && wOff + ${t}i < Wi);`)
    }
    for (var ow = 0u; ow < Wo; ow++) {
      let iw = i32(ow) + wOff + ${KW - 1}i;
      let e${KW - 1} = select(0.0, X[xr + u32(clamp(iw, 0i, Wi - 1i))], iw >= 0i && iw < Wi);
      let d = DY[dr + ow];
${rep(KW, (t) => `      acc${t} += d * e${t};`)}
${rep(KW - 1, (t) => `      e${t} = e${t + 1};`)}
    }`;
  }
  const code = paramsWGSL(Math.ceil(GRADW_WORDS / 4) * 4) + `
@group(0) @binding(1) var<storage, read> X: array<${vec ? "vec4<f32>" : "f32"}>;
@group(0) @binding(2) var<storage, read> DY: array<${vec ? "vec4<f32>" : "f32"}>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let id = (wgid.y * nwg.x + wgid.x) * ${wg}u + lid;
  let G = pu(${GP.G}u);
  let kT = pu(${A(0, 5)}); let kH = pu(${A(1, 5)});
  let taps = kT * kH;
  let chunks = pu(${GP.CHUNKS}u);
  if (id >= G * taps * chunks) { return; }
  let g = id % G; let i = id / G;
  let tap = i % taps; let chunk = i / taps;
  let tkh = tap % kH; let tkt = tap / kH;
  let Ti = i32(pu(${A(0, 0)})); let Hi = i32(pu(${A(1, 0)})); let Wi = i32(pu(${A(2, 0)}));
  let To = pu(${A(0, 1)}); let Ho = pu(${A(1, 1)}); let Wo = pu(${A(2, 1)});
  let tOff = i32(tkt) * pi(${A(0, 4)}) - pi(${A(0, 3)}); let tS = pi(${A(0, 2)});
  let hOff = i32(tkh) * pi(${A(1, 4)}) - pi(${A(1, 3)}); let hS = pi(${A(1, 2)});
  let wOff = -pi(${A(2, 3)});
  let thwi = u32(Ti * Hi * Wi); let thwo = To * Ho * Wo;
  let r0 = pu(${GP.R0}u) + chunk * pu(${GP.ROWS}u);
  let r1 = min(pu(${GP.R1}u), r0 + pu(${GP.ROWS}u));
  let xc = pu(${GP.XOFF}u) + g * thwi;
  let dc = pu(${GP.DYOFF}u) + g * thwo;
  let cinT = pu(${GP.CIN}u) * thwi; let coutT = pu(${GP.COUT}u) * thwo;
${
    vec
      ? `  let Wo4 = Wo >> 2u; let Wi4 = Wi >> 2u;
  let sa = wOff >> 2u; let sb = wOff & 3i;
  let b1 = sb == 1i; let b2 = sb >= 2i; let b3 = sb == 3i;`
      : ""
  }
${rep(KW, (t) => `  var acc${t} = 0.0;`)}
  for (var row = r0; row < r1; row++) {
    let oh = row % Ho; let tmp = row / Ho; let ot = tmp % To; let n = tmp / To;
    let it = i32(ot) * tS + tOff; let ih = i32(oh) * hS + hOff;
    if (it < 0i || it >= Ti || ih < 0i || ih >= Hi) { continue; }
    let xo = n * cinT + (u32(it) * u32(Hi) + u32(ih)) * u32(Wi);
    let dyo = n * coutT + (ot * Ho + oh) * Wo;
${body}
  }
  let ob = pu(${GP.OOFF}u) + ((chunk * pu(${GP.COUT}u) + g) * taps + tap) * ${KW}u;
  let accum = pu(${GP.ACC}u) != 0u;
${rep(KW, (t) => `  { var v = acc${t}; if (accum) { v += O[ob + ${t}u]; } O[ob + ${t}u] = v; }`)}
}
`;
  k = {
    name: `conv3d_dw_gradw_k${KW}_wg${wg}${vec ? "_v" : ""}`,
    code,
    inputs: 2,
    outputs: 1,
  };
  cache.set(key, k);
  return k;
}

/** Direct-kernel parameters of one axis. */
export interface AxisParams {
  inSize: number;
  outSize: number;
  /** output step (residue classes) */
  os: number;
  /** input step per q */
  is: number;
  c0: number;
  kd: number;
  div: number;
  k: number;
}

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Packs the per-axis words of the direct kernel. */
export function axisWords(a: AxisParams): number[] {
  const q = Math.ceil(a.outSize / a.os);
  const kstep = a.div / gcd(a.kd, a.div);
  const offStep = (kstep * a.kd) / a.div;
  const w = [a.inSize, a.outSize, q, a.os, a.is, a.c0, a.kd, a.div, a.k, kstep, offStep];
  return w;
}

/** Total words of the direct kernel's parameter block. */
export const CONV_PARAM_WORDS = DIRECT_WORDS;
/** Words per axis in the direct kernel's parameter block. */
export const CONV_AXIS_WORDS = AXIS_WORDS;

// ---------------------------------------------------------------- weight-gradient kernel

/** The weight-gradient kernel of a variant. */
export function gradWeightKernel(v: GradWeightVariant): KernelSpec {
  checkTile("conv3d grad weight", { co: v.co, cr: v.cr, wg: v.wg }, []);
  const key = `gradw/${v.co}/${v.cr}/${v.wg}/${v.vec}`;
  let k = cache.get(key);
  if (k) return k;
  const { co, cr, wg, vec } = v;
  const A = (ax: number, w: number) => `${GP.AXES + 6 * ax + w}u`;
  const L: string[] = [];
  L.push(paramsWGSL(Math.ceil(GRADW_WORDS / 4) * 4));
  L.push(`@group(0) @binding(1) var<storage, read> X: array<${vec ? "vec4<f32>" : "f32"}>;`);
  L.push(`@group(0) @binding(2) var<storage, read> DY: array<${vec ? "vec4<f32>" : "f32"}>;`);
  L.push(`@group(0) @binding(3) var<storage, read_write> O: array<f32>;`);
  const acc = "0.0";
  L.push(`
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let id = (wgid.y * nwg.x + wgid.x) * ${wg}u + lid;
  let G = pu(${GP.G}u); let COB = pu(${GP.COB}u); let CRB = pu(${GP.CRB}u);
  let kT = pu(${A(0, 5)}); let kH = pu(${A(1, 5)}); let kW = pu(${A(2, 5)});
  let K3 = kT * kH * kW;
  let chunks = pu(${GP.CHUNKS}u);
  if (id >= CRB * COB * G * K3 * chunks) { return; }
  var i = id;
  let crb = i % CRB; i = i / CRB;
  let cob = i % COB; i = i / COB;
  let g = i % G; i = i / G;
  let tap = i % K3; let chunk = i / K3;
  let tkw = tap % kW; let tkh = (tap / kW) % kH; let tkt = tap / (kW * kH);
  let Crg = pu(${GP.CR}u); let Cog = pu(${GP.CO}u);
  let cr0 = crb * ${cr}u; let co0 = cob * ${co}u;
  let Ti = i32(pu(${A(0, 0)})); let Hi = i32(pu(${A(1, 0)})); let Wi = i32(pu(${A(2, 0)}));
  let To = pu(${A(0, 1)}); let Ho = pu(${A(1, 1)}); let Wo = pu(${A(2, 1)});
  let tOff = i32(tkt) * pi(${A(0, 4)}) - pi(${A(0, 3)}); let tS = pi(${A(0, 2)});
  let hOff = i32(tkh) * pi(${A(1, 4)}) - pi(${A(1, 3)}); let hS = pi(${A(1, 2)});
  let wOff = i32(tkw) * pi(${A(2, 4)}) - pi(${A(2, 3)}); let wS = pi(${A(2, 2)});
  let thwi = u32(Ti * Hi * Wi); let thwo = To * Ho * Wo;
  let r0 = pu(${GP.R0}u) + chunk * pu(${GP.ROWS}u);
  let r1 = min(pu(${GP.R1}u), r0 + pu(${GP.ROWS}u));
  let xc = pu(${GP.XOFF}u) + g * Crg * thwi;
  let dc = pu(${GP.DYOFF}u) + g * Cog * thwo;
  let cinT = pu(${GP.CIN}u) * thwi; let coutT = pu(${GP.COUT}u) * thwo;
${rep(cr, (r) => `  let xr${r} = xc + min(cr0 + ${r}u, Crg - 1u) * thwi;`)}
${rep(co, (c) => `  let dr${c} = dc + min(co0 + ${c}u, Cog - 1u) * thwo;`)}
${rep(co, (c) => rep(cr, (r) => `  var acc${c}_${r} = ${acc};`))}
${
    vec
      ? `  let Wo4 = Wo >> 2u; let Wi4 = Wi >> 2u;
  let sa = wOff >> 2u; let sb = wOff & 3i;
  let b1 = sb == 1i; let b2 = sb >= 2i; let b3 = sb == 3i;`
      : ""
  }
  for (var row = r0; row < r1; row++) {
    let oh = row % Ho; let tmp = row / Ho; let ot = tmp % To; let n = tmp / To;
    let it = i32(ot) * tS + tOff; let ih = i32(oh) * hS + hOff;
    if (it < 0i || it >= Ti || ih < 0i || ih >= Hi) { continue; }
    let xo = n * cinT + (u32(it) * u32(Hi) + u32(ih)) * u32(Wi);
    let dyo = n * coutT + (ot * Ho + oh) * Wo;
${vec ? gradWVecBody(co, cr) : gradWScalarBody(co, cr)}
  }
  let Crs = pu(${GP.CRS}u);
  let accum = pu(${GP.ACC}u) != 0u;
  let ob = pu(${GP.OOFF}u) + ((chunk * pu(${GP.COUT}u) + g * Cog) * Crs) * K3 + tap;
${
    rep(co, (c) =>
      rep(cr, (r) =>
        `  if (co0 + ${c}u < Cog && cr0 + ${r}u < Crg) { let oi = ob + ((co0 + ${c}u) * Crs + cr0 + ${r}u) * K3; var v = acc${c}_${r}; if (accum) { v += O[oi]; } O[oi] = v; }`))
  }
}
`);
  k = {
    name: `conv3d_gradw_co${co}_cr${cr}_wg${wg}${vec ? "_v" : ""}`,
    code: L.join("\n"),
    inputs: 2,
    outputs: 1,
  };
  cache.set(key, k);
  return k;
}

function gradWScalarBody(co: number, cr: number): string {
  return `    for (var ow = 0u; ow < Wo; ow++) {
      let iw = i32(ow) * wS + wOff;
      let inside = iw >= 0i && iw < Wi;
      let iwc = u32(clamp(iw, 0i, Wi - 1i));
${rep(cr, (r) => `      let x${r} = select(0.0, X[xr${r} + xo + iwc], inside);`)}
${rep(co, (c) => `      let d${c} = DY[dr${c} + dyo + ow];`)}
${rep(co, (c) => rep(cr, (r) => `      acc${c}_${r} += d${c} * x${r};`))}
    }`;
}

function gradWVecBody(co: number, cr: number): string {
  // X vec4 at o4 + sa and o4 + sa + 1, shifted by sb; the second is the next step's first
  const el = (r: number, e: number) => `${e < 4 ? "p" : "q"}${r}[${e & 3}]`;
  return `${rep(cr, (r) => `    let xq${r} = (xr${r} + xo) >> 2u;`)}
${rep(co, (c) => `    let dq${c} = (dr${c} + dyo) >> 2u;`)}
    let first = sa;
    let inF = first >= 0i && first < Wi4; let cF = u32(clamp(first, 0i, Wi4 - 1i));
${rep(cr, (r) => `    var p${r} = select(vec4<f32>(0.0), X[xq${r} + cF], inF);`)}
    for (var o4 = 0u; o4 < Wo4; o4++) {
      let vi = i32(o4) + sa + 1i;
      let inN = vi >= 0i && vi < Wi4; let cN = u32(clamp(vi, 0i, Wi4 - 1i));
${
    rep(cr, (r) =>
      `      let q${r} = select(vec4<f32>(0.0), X[xq${r} + cN], inN);
      let x${r} = vec4<f32>(${
        rep(4, (j) =>
          `select(select(${el(r, j)}, ${el(r, j + 1)}, b1), select(${el(r, j + 2)}, ${
            el(r, j + 3)
          }, b3), b2)`, ", ")
      });
      p${r} = q${r};`)
  }
${rep(co, (c) => `      let d${c} = DY[dq${c} + o4];`)}
${rep(co, (c) => rep(cr, (r) => `      acc${c}_${r} += dot(d${c}, x${r});`))}
    }`;
}

/** Total words of the weight-gradient kernel's parameter block. */
export const GRADW_PARAM_WORDS = GRADW_WORDS;
