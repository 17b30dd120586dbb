/**
 * Layers and blocks of the Video DC-AE, one class per reference module
 * (`opensora/models/dc_ae/models/nn/ops.py`; spec `shared/spec/dc-ae.md` §3-§4).
 *
 * Every class declares its parameters at construction under the reference's module path (the
 * {@linkcode ParamScope} it receives), so the parameter names are the checkpoint keys
 * (`...main.conv1.conv.weight`); construction allocates nothing. `forward` records ops on NCTHW
 * tensors `[B, C, T, H, W]`.
 *
 * @module
 */
import type { ParamScope } from "../params.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { add, div, gelu, mul, relu, silu } from "../../engine/ops/elementwise.ts";
import { narrow, pad, reshape, transpose } from "../../engine/ops/movement.ts";
import { chunk, concat } from "../../engine/ops/concat.ts";
import { matmul } from "../../engine/ops/matmul.ts";
import { rmsNormChannels } from "../../engine/ops/norm.ts";
import { conv3d } from "../../engine/ops/conv3d.ts";
import {
  channelDuplicatingPixelShuffleUpsample,
  pixelUnshuffleChannelAveragingDownsample,
  upsampleNearest,
} from "../../engine/ops/shuffle.ts";
import type { DcAeAct, DcAeNorm } from "./config.ts";

/** `build_act`: the activation by name. */
export function activation(name: DcAeAct, x: Tensor): Tensor {
  switch (name) {
    case "silu":
      return silu(x);
    case "relu":
      return relu(x);
    case "gelu":
      return gelu(x, "tanh");
  }
}

/** A 3-element stride / kernel triple. */
export type Triple = [number, number, number];

/**
 * RMSNorm3d (`nn/norm.py`): per position, over channels,
 * `y_c = x_c / sqrt(mean_c'(x_c'²) + 1e-5) · weight_c + bias_c`.
 */
export class RMSNorm3d {
  /** Checkpoint key of the per-channel scale `[channels]`. */
  readonly weight: string;
  /** Checkpoint key of the per-channel shift `[channels]`. */
  readonly bias: string;
  /** Declares `weight` (ones) and `bias` (zeros) of `channels` channels under `scope`. */
  constructor(private readonly scope: ParamScope, readonly channels: number) {
    this.weight = scope.declare("weight", [channels], "ones");
    this.bias = scope.declare("bias", [channels], "zeros");
  }
  /** Normalises `[B, C, T, H, W]` over C at every position. */
  forward(x: Tensor): Tensor {
    return rmsNormChannels(x, this.scope.get(this.weight), this.scope.get(this.bias), 1e-5);
  }
}

/** Options of {@linkcode ConvLayer}. */
export interface ConvLayerOptions {
  stride?: number | Triple;
  groups?: number;
  bias?: boolean;
  norm?: DcAeNorm | null;
  act?: DcAeAct | null;
}

/**
 * `ConvLayer(is_video=True)`: `k//2` zeros on both sides of T, H and W, a `k×k×k` Conv3d, then
 * the optional norm and activation. Keys: `conv.weight`, `conv.bias`, `norm.{weight,bias}`.
 * (The explicit `F.pad` of the reference and the convolution's own zero padding are the same
 * operation; the padding is passed to the convolution.)
 */
export class ConvLayer {
  /** Checkpoint key of the conv weight `[out, in/groups, k, k, k]`. */
  readonly weight: string;
  /** Checkpoint key of the conv bias `[out]`, or null without bias. */
  readonly bias: string | null;
  /** Norm applied after the conv, or null. */
  readonly norm: RMSNorm3d | null;
  /** Stride along T, H and W. */
  readonly stride: Triple;
  /** Number of channel groups of the conv. */
  readonly groups: number;
  /** Activation applied after the norm, or null. */
  readonly act: DcAeAct | null;
  /**
   * Declares a `kernel`³ conv (odd `kernel`) from `inChannels` to `outChannels` under `scope`, with
   * the optional bias, norm and activation of `o`.
   */
  constructor(
    private readonly scope: ParamScope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    o: ConvLayerOptions = {},
  ) {
    if (kernel % 2 !== 1) throw new RangeError(`ConvLayer: kernel ${kernel} must be odd`);
    this.groups = o.groups ?? 1;
    const s = o.stride ?? 1;
    this.stride = typeof s === "number" ? [s, s, s] : s;
    const conv = scope.sub("conv");
    this.weight = conv.declare("weight", [
      outChannels,
      inChannels / this.groups,
      kernel,
      kernel,
      kernel,
    ]);
    this.bias = o.bias ? conv.declare("bias", [outChannels], "zeros") : null;
    this.norm = o.norm ? new RMSNorm3d(scope.sub("norm"), outChannels) : null;
    this.act = o.act ?? null;
  }
  /** `[B, C_in, T, H, W]` → conv (zero padding `k//2`, `stride`) → norm → activation. */
  forward(x: Tensor): Tensor {
    const p = Math.floor(this.kernel / 2);
    let y = conv3d(x, this.scope.get(this.weight), {
      ...(this.bias ? { bias: this.scope.get(this.bias) } : {}),
      stride: this.stride,
      padding: [p, p, p],
      groups: this.groups,
    });
    if (this.norm) y = this.norm.forward(y);
    if (this.act) y = activation(this.act, y);
    return y;
  }
}

/**
 * `ResidualBlock(ResBlock, Identity)` (`build_block("ResBlock")`, spec §4.1):
 * `y = x + RMSNorm3d(Conv3(SiLU(Conv3(x) + b1)))`, mid channels = C.
 */
export class ResBlock {
  readonly conv1: ConvLayer;
  readonly conv2: ConvLayer;
  constructor(scope: ParamScope, channels: number, norm: DcAeNorm, act: DcAeAct) {
    const main = scope.sub("main");
    this.conv1 = new ConvLayer(main.sub("conv1"), channels, channels, 3, { bias: true, act });
    this.conv2 = new ConvLayer(main.sub("conv2"), channels, channels, 3, { bias: false, norm });
  }
  forward(x: Tensor): Tensor {
    return add(x, this.conv2.forward(this.conv1.forward(x)));
  }
}

/**
 * ReLU linear attention of `LiteMLA.relu_linear_att` on a multi-scale `qkv` tensor
 * `[B, G·3d, T, H, W]` (G attention groups of `[q | k | v]`, d channels each), over all
 * N = T·H·W positions: `o_n = (Σ_m v_m k_mᵀ) q_n / ((Σ_m k_m)ᵀ q_n + eps)` with
 * `q = relu(q)`, `k = relu(k)`. As in the reference, v gets a row of ones so that one product
 * `[v; 1]·kᵀ` gives both numerator and denominator. Returns `[B, G·d, T, H, W]`.
 */
export function reluLinearAttention(qkv: Tensor, dim: number, eps: number): Tensor {
  const [b, c, t, h, w] = qkv.shape as [number, number, number, number, number];
  const n = t * h * w;
  const z = reshape(qkv, [b, c / (3 * dim), 3 * dim, n]); // [B, G, 3d, N], tokens t-major
  const q = relu(narrow(z, 2, 0, dim)); // [B, G, d, N]
  const k = relu(narrow(z, 2, dim, dim));
  const v = pad(narrow(z, 2, 2 * dim, dim), [[0, 0], [0, 0], [0, 1], [0, 0]], 1); // [B,G,d+1,N]
  const vk = matmul(v, transpose(k)); // [B, G, d+1, d]
  const out = matmul(vk, q); // [B, G, d+1, N]
  const o = div(narrow(out, 2, 0, dim), add(narrow(out, 2, dim, 1), eps)); // [B, G, d, N]
  return reshape(o, [b, (c / (3 * dim)) * dim, t, h, w]);
}

/**
 * `LiteMLA` (spec §4.3): multi-scale ReLU linear attention.
 * `P = W_qkv·x` (1×1×1, no bias); per extra scale k: `A = G(D_k(P))` with a depthwise k×k×k conv
 * (the conv's own zero padding k//2, no bias) and a 1×1×1 conv in `3·heads` groups (no bias);
 * attention over `concat(P, A...)`; then `RMSNorm3d(W_proj·o)`.
 */
export class LiteMLA {
  readonly heads: number;
  readonly totalDim: number;
  readonly qkv: ConvLayer;
  readonly aggreg: { depthwise: string; grouped: string; kernel: number }[];
  readonly proj: ConvLayer;
  private readonly dim: number;
  private readonly eps: number;
  constructor(
    private readonly scope: ParamScope,
    channels: number,
    o: { heads: number; dim: number; scales: number[]; norm: DcAeNorm; eps: number },
  ) {
    this.heads = o.heads;
    this.totalDim = o.heads * o.dim;
    const td3 = 3 * this.totalDim;
    this.qkv = new ConvLayer(scope.sub("qkv"), channels, td3, 1, { bias: false });
    this.aggreg = o.scales.map((kernel, i) => {
      const seq = scope.sub("aggreg").sub(i);
      return {
        kernel,
        depthwise: seq.sub(0).declare("weight", [td3, 1, kernel, kernel, kernel]),
        grouped: seq.sub(1).declare("weight", [td3, td3 / (3 * o.heads), 1, 1, 1]),
      };
    });
    this.proj = new ConvLayer(
      scope.sub("proj"),
      this.totalDim * (1 + o.scales.length),
      channels,
      1,
      { bias: false, norm: o.norm },
    );
    this.dim = o.dim;
    this.eps = o.eps;
  }

  forward(x: Tensor): Tensor {
    const td3 = 3 * this.totalDim;
    const p = this.qkv.forward(x); // [B, 3·total, T, H, W]
    const scales = [p];
    for (const a of this.aggreg) {
      const half = Math.floor(a.kernel / 2);
      const d = conv3d(p, this.scope.get(a.depthwise), {
        padding: [half, half, half],
        groups: td3,
      });
      scales.push(conv3d(d, this.scope.get(a.grouped), { groups: 3 * this.heads }));
    }
    const z = scales.length === 1 ? p : concat(scales, 1); // [B, 3·total·(1+S), T, H, W]
    return this.proj.forward(reluLinearAttention(z, this.dim, this.eps));
  }
}

/** Python's `round()`: halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d !== 0.5) return Math.round(v);
  return f % 2 === 0 ? f : f + 1;
}

/**
 * `GLUMBConv` (spec §4.4), mid = round(C·expand):
 * `u = act(W1·x + b1)` (C → 2·mid), `u = DW3(u) + b2`, `m = u[:mid] ⊙ act(u[mid:])`,
 * `y = RMSNorm3d(W3·m)`.
 */
export class GLUMBConv {
  readonly invertedConv: ConvLayer;
  readonly depthConv: ConvLayer;
  readonly pointConv: ConvLayer;
  private readonly act: DcAeAct;
  constructor(
    scope: ParamScope,
    channels: number,
    o: { expandRatio: number; norm: DcAeNorm; act: DcAeAct },
  ) {
    const mid = roundHalfEven(channels * o.expandRatio);
    this.invertedConv = new ConvLayer(scope.sub("inverted_conv"), channels, 2 * mid, 1, {
      bias: true,
      act: o.act,
    });
    this.depthConv = new ConvLayer(scope.sub("depth_conv"), 2 * mid, 2 * mid, 3, {
      bias: true,
      groups: 2 * mid,
    });
    this.pointConv = new ConvLayer(scope.sub("point_conv"), mid, channels, 1, {
      bias: false,
      norm: o.norm,
    });
    this.act = o.act;
  }
  forward(x: Tensor): Tensor {
    const u = this.depthConv.forward(this.invertedConv.forward(x));
    const [value, gate] = chunk(u, 2, 1) as [Tensor, Tensor];
    return this.pointConv.forward(mul(value, activation(this.act, gate)));
  }
}

/**
 * `EfficientViTBlock` with `LiteMLA` context and `GLUMBConv` local modules (spec §4.2):
 * `x ← x + LiteMLA(x)`, then `x ← x + GLUMBConv(x)`.
 */
export class EfficientViTBlock {
  readonly context: LiteMLA;
  readonly local: GLUMBConv;
  constructor(
    scope: ParamScope,
    channels: number,
    o: {
      heads: number;
      dim: number;
      scales: number[];
      expandRatio: number;
      norm: DcAeNorm;
      act: DcAeAct;
      eps: number;
    },
  ) {
    this.context = new LiteMLA(scope.sub("context_module").sub("main"), channels, o);
    this.local = new GLUMBConv(scope.sub("local_module").sub("main"), channels, o);
  }
  /** The block; `afterContext` receives `x + LiteMLA(x)` (for checks against the reference). */
  forward(x: Tensor, afterContext?: (t: Tensor) => void): Tensor {
    const h = add(x, this.context.forward(x));
    afterContext?.(h);
    return add(h, this.local.forward(h));
  }
}

/**
 * Encoder down-sampling block (`build_downsample_block("Conv", shortcut="averaging")`, §4.5):
 * `y = Conv3(x; stride (2,2,2) or (1,2,2)) + b + Avg(x)` where `Avg` is the space(-time)-to-
 * channel averaging shortcut (3-D when the stage halves time and T ≠ 1, else per frame).
 */
export class DownsampleBlock {
  readonly conv: ConvLayer;
  constructor(
    scope: ParamScope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly temporal: boolean,
    readonly shortcut: boolean,
  ) {
    const stride: Triple = temporal ? [2, 2, 2] : [1, 2, 2];
    const main = shortcut ? scope.sub("main") : scope;
    this.conv = new ConvLayer(main, inChannels, outChannels, 3, { stride, bias: true });
  }
  forward(x: Tensor): Tensor {
    const y = this.conv.forward(x);
    if (!this.shortcut) return y;
    return add(y, pixelUnshuffleChannelAveragingDownsample(x, this.outChannels, this.temporal));
  }
}

/**
 * Decoder up-sampling block (`build_upsample_block("InterpolateConv", shortcut="duplicating")`,
 * §4.6): `y = Conv3(NearestUp(x)) + b + Dup(x)`; time is doubled too when the stage up-samples
 * time and T ≠ 1. Keys `main.conv.conv.*` (the interpolation layer wraps a ConvLayer).
 */
export class UpsampleBlock {
  readonly conv: ConvLayer;
  constructor(
    scope: ParamScope,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly temporal: boolean,
    readonly shortcut: boolean,
  ) {
    const main = shortcut ? scope.sub("main") : scope;
    this.conv = new ConvLayer(main.sub("conv"), inChannels, outChannels, 3, { bias: true });
  }
  forward(x: Tensor): Tensor {
    const ft = this.temporal && x.shape[2] !== 1 ? 2 : 1;
    const y = this.conv.forward(upsampleNearest(x, [ft, 2, 2]));
    if (!this.shortcut) return y;
    return add(y, channelDuplicatingPixelShuffleUpsample(x, this.outChannels, this.temporal));
  }
}
