/**
 * The Video DC-AE: encoder, decoder and the autoencoder that owns their parameters
 * (`opensora/models/dc_ae/models/dc_ae.py`: `Encoder`, `Decoder`, `DCAE`; spec
 * `shared/spec/dc-ae.md` §2, §5-§7, §10-§11).
 *
 * Shapes (released `f32t4c128`): video `[B, 3, T, H, W]` in [-1, 1] → latent
 * `[B, 128, T', H/32, W/32]` with T' = 1 if T = 1 else T/4 → decoded `[B, 3, T'', H, W]` with
 * T'' = 1 if T' = 1 else 4·T'. No clamp on the output.
 *
 * @module
 */
import { type ParamScope, ParamSet } from "../params.ts";
import type { DType } from "../../engine/dtype.ts";
import { fmtShape } from "../../engine/shape.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { add, div, mul } from "../../engine/ops/elementwise.ts";
import { channelGroupMean, repeatInterleaveChannels } from "../../engine/ops/shuffle.ts";
import {
  type DcAeBlockType,
  type DcAeConfig,
  evitHeads,
  evitScales,
  temporalStages,
  validateConfig,
} from "./config.ts";
import {
  activation,
  ConvLayer,
  DownsampleBlock,
  EfficientViTBlock,
  ResBlock,
  RMSNorm3d,
  UpsampleBlock,
} from "./layers.ts";
import type { DcAeAct, DcAeNorm } from "./config.ts";
import { resolveTiling, tiledDecode, tiledEncode, type TileOptions } from "./tiling.ts";

/** Receives named intermediate tensors (`enc.stages.3`, `dec.project_in`, ...). */
export type Tap = (name: string, t: Tensor) => void;

/** One op of a stage's `op_list`. */
export interface StageOp {
  /** Applies the op to a `[B, C, T, H, W]` tensor. */
  forward(x: Tensor): Tensor;
}

/** `build_block`: a ResBlock or an EfficientViT block of `channels` channels. */
function buildBlock(
  cfg: DcAeConfig,
  scope: ParamScope,
  type: DcAeBlockType,
  channels: number,
  norm: DcAeNorm,
  act: DcAeAct,
): StageOp {
  if (type === "ResBlock") return new ResBlock(scope, channels, norm, act);
  return new EfficientViTBlock(scope, channels, {
    heads: evitHeads(cfg, channels),
    dim: cfg.evit.headDim,
    scales: evitScales(type),
    expandRatio: cfg.evit.expandRatio,
    norm,
    act,
    eps: cfg.evit.eps,
  });
}

/** `OpSequential([norm?, act?, conv])`: the layers absent from the config take no index. */
export class NormActConv {
  /** The norm before the activation, or null. */
  readonly norm: RMSNorm3d | null;
  /** The 3×3×3 conv (with bias). */
  readonly conv: ConvLayer;
  /** Declares the layers under `scope`'s `op_list`, numbering only the ones present. */
  constructor(
    scope: ParamScope,
    inChannels: number,
    outChannels: number,
    norm: DcAeNorm | null,
    readonly act: DcAeAct | null,
  ) {
    const ops = scope.sub("op_list");
    let i = 0;
    this.norm = norm ? new RMSNorm3d(ops.sub(i++), inChannels) : null;
    if (act) i++;
    this.conv = new ConvLayer(ops.sub(i), inChannels, outChannels, 3, { bias: true });
  }
  /** norm → activation → conv on `[B, C_in, T, H, W]`. */
  forward(x: Tensor): Tensor {
    let h = x;
    if (this.norm) h = this.norm.forward(h);
    if (this.act) h = activation(this.act, h);
    return this.conv.forward(h);
  }
}

/**
 * `Encoder`: `project_in` (3×3×3 conv) → stages 0..n−1 (blocks, then for s < n−1 the
 * down-sampling block to the next width) → `project_out` (3×3×3 conv + channel-averaging
 * shortcut).
 */
export class Encoder {
  /** `project_in`: 3×3×3 conv from the image channels to the first stage's width. */
  readonly projectIn: ConvLayer;
  /** Ops of each stage: its blocks, then (all but the last stage) the down-sampling block. */
  readonly stages: StageOp[][];
  /** `project_out`: the conv to the latent channels (before the shortcut). */
  readonly projectOut: NormActConv;
  /** Declares every encoder parameter of `cfg` under `scope` (allocates nothing). */
  constructor(readonly cfg: DcAeConfig, scope: ParamScope) {
    const e = cfg.encoder;
    const n = e.widths.length;
    this.projectIn = new ConvLayer(scope.sub("project_in"), cfg.inChannels, e.widths[0]!, 3, {
      bias: true,
    });
    this.stages = e.widths.map((width, s) => {
      const ops = scope.sub("stages").sub(s).sub("op_list");
      const stage: StageOp[] = [];
      for (let d = 0; d < e.depths[s]!; d++) {
        stage.push(buildBlock(cfg, ops.sub(d), e.blockTypes[s]!, width, e.norms[s]!, e.acts[s]!));
      }
      if (s < n - 1) {
        stage.push(
          new DownsampleBlock(
            ops.sub(e.depths[s]!),
            width,
            e.widths[s + 1]!,
            e.temporalDownsample[s]!,
            e.downsampleShortcut !== null,
          ),
        );
      }
      return stage;
    });
    const out = scope.sub("project_out");
    this.projectOut = new NormActConv(
      e.outShortcut ? out.sub("main") : out,
      e.widths[n - 1]!,
      cfg.latentChannels,
      e.outNorm,
      e.outAct,
    );
  }

  /** `[B, C_in, T, H, W]` → `[B, latent, T', H/2^(n−1), W/2^(n−1)]` (no scaling factor). */
  forward(x: Tensor, tap?: Tap): Tensor {
    let h = this.projectIn.forward(x); // [B, w0, T, H, W]
    tap?.("enc.project_in", h);
    this.stages.forEach((stage, s) => {
      for (const op of stage) h = op.forward(h);
      tap?.(`enc.stages.${s}`, h);
    });
    const y = this.projectOut.forward(h); // [B, latent, T', h, w]
    if (!this.cfg.encoder.outShortcut) return y;
    const w = this.cfg.encoder.widths.at(-1)!;
    return add(y, channelGroupMean(h, w / this.cfg.latentChannels));
  }
}

/**
 * `Decoder`: `project_in` (3×3×3 conv + channel-duplicating shortcut) → stages n−1..0 (for
 * s < n−1 an up-sampling block from width s+1 first, then the blocks) → `project_out`
 * (RMSNorm3d → ReLU → 3×3×3 conv).
 */
export class Decoder {
  /** `project_in`: 3×3×3 conv from the latent channels to the last stage's width. */
  readonly projectIn: ConvLayer;
  /**
   * Ops of each stage (index 0 = full resolution): the up-sampling block (all but the last), then
   * its blocks.
   */
  readonly stages: StageOp[][];
  /** `project_out`: RMSNorm3d → ReLU → 3×3×3 conv to the image channels. */
  readonly projectOut: NormActConv;
  /** Declares every decoder parameter of `cfg` under `scope` (allocates nothing). */
  constructor(readonly cfg: DcAeConfig, scope: ParamScope) {
    const d = cfg.decoder;
    const n = d.widths.length;
    const pin = scope.sub("project_in");
    this.projectIn = new ConvLayer(
      d.inShortcut ? pin.sub("main") : pin,
      cfg.latentChannels,
      d.widths[n - 1]!,
      3,
      { bias: true },
    );
    // Declared in module order (stages 0..n−1) so the names follow the state_dict order.
    this.stages = d.widths.map((width, s) => {
      const ops = scope.sub("stages").sub(s).sub("op_list");
      const stage: StageOp[] = [];
      if (s < n - 1) {
        stage.push(
          new UpsampleBlock(
            ops.sub(0),
            d.widths[s + 1]!,
            width,
            d.temporalUpsample[s]!,
            d.upsampleShortcut !== null,
          ),
        );
      }
      const first = stage.length;
      for (let i = 0; i < d.depths[s]!; i++) {
        stage.push(
          buildBlock(cfg, ops.sub(first + i), d.blockTypes[s]!, width, d.norms[s]!, d.acts[s]!),
        );
      }
      return stage;
    });
    this.projectOut = new NormActConv(
      scope.sub("project_out"),
      d.widths[0]!,
      cfg.inChannels,
      d.outNorm,
      d.outAct,
    );
  }

  /** `[B, latent, T', h, w]` → `[B, C_in, T'', h·2^(n−1), w·2^(n−1)]`. */
  forward(z: Tensor, tap?: Tap): Tensor {
    const d = this.cfg.decoder;
    let h = this.projectIn.forward(z); // [B, w_{n−1}, T', h, w]
    if (d.inShortcut) {
      h = add(h, repeatInterleaveChannels(z, d.widths.at(-1)! / this.cfg.latentChannels));
    }
    tap?.("dec.project_in", h);
    for (let s = this.stages.length - 1; s >= 0; s--) {
      for (const op of this.stages[s]!) h = op.forward(h);
      tap?.(`dec.stages.${s}`, h);
    }
    return this.projectOut.forward(h); // [B, C_in, T'', H, W]
  }
}

/** Options of {@linkcode DcAe}. */
export interface DcAeOptions {
  /** Storage dtype of loaded weights (f32 by default). */
  storage?: DType;
}

/** Options of {@linkcode DcAe.encode} / {@linkcode DcAe.decode}. */
export interface CodecOptions {
  /** Receives intermediates: `enc.project_in`, `enc.stages.i`, `dec.project_in`, `dec.stages.i`. */
  tap?: Tap;
  /**
   * Tiling (`tiling.ts`, spec §8): omitted follows `config.tiling`, `false` codes the whole
   * tensor, `true` tiles with the config's sizes, an object overrides them. Taps are not called
   * when tiling applies.
   */
  tiled?: boolean | TileOptions;
}

/**
 * The Video DC-AE autoencoder (`DCAE`). Parameters are declared at construction under the
 * checkpoint keys (`encoder.…`, `decoder.…`) without touching the GPU; load them with
 * `model.params.load(path)` or `model.params.initialize(seed)`.
 *
 * Frame and size rules (n = number of stages, k = number of temporal down-sampling stages;
 * `f32t4c128`: n = 6, k = 2):
 * - H and W must be multiples of 2^(n−1) (32): every down-sampling shortcut halves an even size;
 * - T must be 1 (an image: the 2-D paths everywhere) or a multiple of 2^k (4); T = 2 runs in
 *   the reference but gives one latent frame that decodes to one frame, so it is refused too;
 * - a latent with T' = 1 decodes to 1 frame, T' > 1 to 2^k·T' frames.
 *
 * This increment encodes and decodes whole tensors (no tiling); the LiteMLA sums run over all
 * positions of the input.
 *
 * @example
 * ```ts ignore
 * const ae = new DcAe(dcAePreset("tiny"));
 * await ae.params.load("weights.safetensors");
 * const z = ae.encode(video);   // [1, 16, 2, 2, 3] for a [1, 3, 8, 64, 96] video
 * const x = ae.decode(z);       // [1, 3, 8, 64, 96]
 * ```
 */
export class DcAe {
  /** The validated configuration. */
  readonly config: DcAeConfig;
  /** All parameters under their checkpoint keys. */
  readonly params: ParamSet;
  /** The encoder (`encoder.*` keys). */
  readonly encoder: Encoder;
  /** The decoder (`decoder.*` keys). */
  readonly decoder: Decoder;

  /** Validates `config` and declares every parameter (no GPU work). */
  constructor(config: DcAeConfig, options: DcAeOptions = {}) {
    this.config = validateConfig(config);
    this.params = new ParamSet(options.storage ?? "f32");
    const root = this.params.root;
    this.encoder = new Encoder(this.config, root.sub("encoder"));
    this.decoder = new Decoder(this.config, root.sub("decoder"));
    // from-scratch initialisation as the reference's init_modules (spec dc-ae.md §14): every
    // conv weight and every RMSNorm weight ~ truncated normal, std 0.02; every bias 0
    this.params.reinit((p) => (p.name.endsWith(".bias") ? "zeros" : { truncNormal: 0.02 }));
  }

  /** Spatial down-sampling factor 2^(n−1) (32 for `f32t4c128`). */
  get spatialFactor(): number {
    return 2 ** (this.config.encoder.widths.length - 1);
  }

  /** Temporal down-sampling factor 2^k (4 for `f32t4c128`). */
  get temporalFactor(): number {
    return 2 ** temporalStages(this.config);
  }

  /** The sizes `encode` accepts, in words (for messages and docs). */
  describeInputRule(): string {
    const s = this.spatialFactor;
    const t = this.temporalFactor;
    const frames = t === 1
      ? "any T"
      : `T = 1 or a multiple of ${t} (${t}, ${2 * t}, ${3 * t}, ...)`;
    return `${frames}, H and W multiples of ${s}`;
  }

  /**
   * The latent shape of a video shape `[B, C, T, H, W]`; throws a `RangeError` naming the sizes
   * that work when the video cannot be encoded.
   */
  latentShape(shape: readonly number[]): number[] {
    const cfg = this.config;
    if (shape.length !== 5) {
      throw new RangeError(
        `DC-AE encode: expected a video [B, ${cfg.inChannels}, T, H, W], got ${fmtShape(shape)}`,
      );
    }
    const [b, c, t, h, w] = shape as [number, number, number, number, number];
    if (c !== cfg.inChannels) {
      throw new RangeError(
        `DC-AE encode: input ${fmtShape(shape)} has ${c} channels, the model takes ` +
          `${cfg.inChannels}`,
      );
    }
    const s = this.spatialFactor;
    const tf = this.temporalFactor;
    const badT = t < 1 || (t !== 1 && t % tf !== 0);
    const badHW = h < 1 || w < 1 || h % s !== 0 || w % s !== 0;
    if (badT || badHW) {
      const what = [badT ? `T = ${t}` : "", badHW ? `H x W = ${h} x ${w}` : ""]
        .filter((x) => x).join(" and ");
      throw new RangeError(
        `DC-AE encode: input ${fmtShape(shape)} cannot be encoded (${what}); the ` +
          `${cfg.name} model takes ${this.describeInputRule()}`,
      );
    }
    return [b, cfg.latentChannels, t === 1 ? 1 : t / tf, h / s, w / s];
  }

  /** The decoded shape of a latent shape `[B, latent, T', h, w]`. */
  videoShape(shape: readonly number[]): number[] {
    const cfg = this.config;
    if (shape.length !== 5 || shape[1] !== cfg.latentChannels || shape.some((d) => d < 1)) {
      throw new RangeError(
        `DC-AE decode: expected a latent [B, ${cfg.latentChannels}, T', h, w], got ` +
          fmtShape(shape),
      );
    }
    const [b, , t, h, w] = shape as [number, number, number, number, number];
    const s = this.spatialFactor;
    return [b, cfg.inChannels, t === 1 ? 1 : t * this.temporalFactor, h * s, w * s];
  }

  /** Encodes a video `[B, C, T, H, W]` (values in [-1, 1]) to its latent (see the class doc). */
  encode(video: Tensor, options: CodecOptions = {}): Tensor {
    this.latentShape(video.shape);
    const tiling = resolveTiling(this.config, options.tiled);
    if (tiling.useSpatialTiling || tiling.useTemporalTiling) {
      return tiledEncode(this, video, tiling);
    }
    const z = this.encoder.forward(video, options.tap);
    const f = this.config.scalingFactor;
    return f === null ? z : div(z, f);
  }

  /** Decodes a latent `[B, latent, T', h, w]` to a video (see the class doc). */
  decode(latent: Tensor, options: CodecOptions = {}): Tensor {
    this.videoShape(latent.shape);
    const tiling = resolveTiling(this.config, options.tiled);
    if (tiling.useSpatialTiling || tiling.useTemporalTiling) {
      return tiledDecode(this, latent, tiling);
    }
    const f = this.config.scalingFactor;
    return this.decoder.forward(f === null ? latent : mul(latent, f), options.tap);
  }
}
