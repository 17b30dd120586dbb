/**
 * Configuration of the Video DC-AE (deep-compression autoencoder, Open-Sora 2.0).
 *
 * Mirrors `DCAEConfig` / `EncoderConfig` / `DecoderConfig` of the reference
 * (`opensora/models/dc_ae/models/dc_ae.py`) restricted to what the video model uses: 3-D
 * convolutions (`is_video=True`), `Conv` down-sampling with the `averaging` shortcut,
 * `InterpolateConv` up-sampling with the `duplicating` shortcut, RMSNorm3d. Spec:
 * `shared/spec/dc-ae.md` §5-§6.
 *
 * Presets: {@linkcode F32T4C128} (the released `dc-ae-f32t4c128`, 459,462,147 parameters) and
 * {@linkcode TINY} (the `dc_ae_tiny` fixture, 723,571 parameters). Any reference config object
 * (a case's `case.json["config"]`) converts with {@linkcode fromReferenceConfig}.
 *
 * @module
 */

/** Block types of a stage (`build_block`): a residual conv block or an EfficientViT block. */
export type DcAeBlockType = "ResBlock" | "EViT_GLU" | "EViTS5_GLU";
/** Normalisation layers (only the channel RMS norm of 5-D tensors exists for the video model). */
export type DcAeNorm = "rms3d";
/** Activations (`nn/act.py`; `gelu` is the tanh approximation). */
export type DcAeAct = "silu" | "relu" | "gelu";

/** Encoder settings (`EncoderConfig`), one entry per stage in the arrays. */
export interface DcAeEncoderConfig {
  /** Channels of each stage. */
  widths: number[];
  /** Number of blocks in each stage. */
  depths: number[];
  /** Block type of each stage. */
  blockTypes: DcAeBlockType[];
  /** Norm of each stage's blocks. */
  norms: DcAeNorm[];
  /** Activation of each stage's blocks. */
  acts: DcAeAct[];
  /** Whether the down-sampling block after stage s also halves time (stride (2,2,2)). */
  temporalDownsample: boolean[];
  /** Shortcut of the down-sampling blocks (space-to-channel averaging) or none. */
  downsampleShortcut: "averaging" | null;
  /** Optional norm / activation before `project_out` (none in the released model). */
  outNorm: DcAeNorm | null;
  /** Optional activation before `project_out` (none in the released model). */
  outAct: DcAeAct | null;
  /** Shortcut of `project_out` (channel averaging) or none. */
  outShortcut: "averaging" | null;
}

/** Decoder settings (`DecoderConfig`), one entry per stage (stage 0 = full resolution). */
export interface DcAeDecoderConfig {
  /** Channels of each stage (stage 0 = full resolution). */
  widths: number[];
  /** Number of blocks in each stage. */
  depths: number[];
  /** Block type of each stage. */
  blockTypes: DcAeBlockType[];
  /** Norm of each stage's blocks. */
  norms: DcAeNorm[];
  /** Activation of each stage's blocks. */
  acts: DcAeAct[];
  /** Whether the up-sampling block that starts stage s also doubles time. */
  temporalUpsample: boolean[];
  /** Shortcut of `project_in` (channel duplication) or none. */
  inShortcut: "duplicating" | null;
  /** Shortcut of the up-sampling blocks (channel-to-space duplication) or none. */
  upsampleShortcut: "duplicating" | null;
  /** Norm / activation of `project_out` before its conv (rms3d, relu in the released model). */
  outNorm: DcAeNorm | null;
  /** Activation of `project_out` before its conv (relu in the released model). */
  outAct: DcAeAct | null;
}

/** EfficientViT block settings (`EfficientViTBlock` defaults as `build_block` uses them). */
export interface DcAeEViTConfig {
  /** LiteMLA head dimension (`dim`, 32). */
  headDim: number;
  /** `heads = floor(C / headDim) · headsRatio` (1). */
  headsRatio: number;
  /** GLUMBConv expansion: mid channels = round(C · expandRatio) (4). */
  expandRatio: number;
  /** LiteMLA numerical guard added to the normaliser (1e-15). */
  eps: number;
}

/** Inference tiling settings of the reference (used by tiled encode/decode). */
export interface DcAeTilingConfig {
  /** Tile H and W when they exceed `spatialTileSize` (tiled encode/decode). */
  useSpatialTiling: boolean;
  /** Tile time when it exceeds `temporalTileSize` (tiled encode/decode). */
  useTemporalTiling: boolean;
  /** Pixels per spatial tile side (256). */
  spatialTileSize: number;
  /** Frames per temporal tile (32). */
  temporalTileSize: number;
  /** Fraction of a tile that overlaps its neighbour and is blended, in [0, 1) (0.25). */
  tileOverlapFactor: number;
}

/** A complete Video DC-AE configuration. */
export interface DcAeConfig {
  /** Preset or source name, for messages. */
  name: string;
  /** Image channels (3). */
  inChannels: number;
  /** Latent channels (128 for the released model). */
  latentChannels: number;
  /** 2^(number of temporal down-sampling stages): 4 for the released model. */
  timeCompression: number;
  /** 2^(number of down-sampling stages): 32 for the released model. */
  spatialCompression: number;
  /** Encoder stages and layers. */
  encoder: DcAeEncoderConfig;
  /** Decoder stages and layers. */
  decoder: DcAeDecoderConfig;
  /** EfficientViT block settings. */
  evit: DcAeEViTConfig;
  /** When set, `encode` divides the latent by it and `decode` multiplies (none in inference). */
  scalingFactor: number | null;
  /** Tiling settings for tiled encode/decode. */
  tiling: DcAeTilingConfig;
}

const BLOCK_TYPES: readonly string[] = ["ResBlock", "EViT_GLU", "EViTS5_GLU"];
const NORMS: readonly string[] = ["rms3d"];
const ACTS: readonly string[] = ["silu", "relu", "gelu"];
const EVIT_DEFAULT: DcAeEViTConfig = { headDim: 32, headsRatio: 1, expandRatio: 4, eps: 1e-15 };
const TILING_DEFAULT: DcAeTilingConfig = {
  useSpatialTiling: false,
  useTemporalTiling: false,
  spatialTileSize: 256,
  temporalTileSize: 32,
  tileOverlapFactor: 0.25,
};

function symmetric(
  name: string,
  o: {
    latent: number;
    widths: number[];
    encDepths: number[];
    decDepths: number[];
    blocks: DcAeBlockType[];
    temporal: boolean[];
  },
): DcAeConfig {
  const n = o.widths.length;
  const temporalStages = o.temporal.filter((t) => t).length;
  return validateConfig({
    name,
    inChannels: 3,
    latentChannels: o.latent,
    timeCompression: 2 ** temporalStages,
    spatialCompression: 2 ** (n - 1),
    encoder: {
      widths: [...o.widths],
      depths: [...o.encDepths],
      blockTypes: [...o.blocks],
      norms: Array(n).fill("rms3d"),
      acts: Array(n).fill("silu"),
      temporalDownsample: [...o.temporal],
      downsampleShortcut: "averaging",
      outNorm: null,
      outAct: null,
      outShortcut: "averaging",
    },
    decoder: {
      widths: [...o.widths],
      depths: [...o.decDepths],
      blockTypes: [...o.blocks],
      norms: Array(n).fill("rms3d"),
      acts: Array(n).fill("silu"),
      temporalUpsample: [...o.temporal],
      inShortcut: "duplicating",
      upsampleShortcut: "duplicating",
      outNorm: "rms3d",
      outAct: "relu",
    },
    evit: { ...EVIT_DEFAULT },
    scalingFactor: null,
    tiling: { ...TILING_DEFAULT },
  });
}

const BLOCKS: DcAeBlockType[] = [
  "ResBlock",
  "ResBlock",
  "ResBlock",
  "EViTS5_GLU",
  "EViTS5_GLU",
  "EViTS5_GLU",
];
const TEMPORAL = [false, false, false, true, true, false];

/**
 * The released `dc-ae-f32t4c128` (`ae_model_zoo.py` → `dc_ae_f32`): 32x spatial, 4x temporal
 * compression, 128 latent channels. The reference runs it with spatial and temporal tiling on.
 */
export const F32T4C128: DcAeConfig = {
  ...symmetric("f32t4c128", {
    latent: 128,
    widths: [128, 256, 512, 512, 1024, 1024],
    encDepths: [2, 2, 2, 3, 3, 3],
    decDepths: [3, 3, 3, 3, 3, 3],
    blocks: BLOCKS,
    temporal: TEMPORAL,
  }),
  tiling: { ...TILING_DEFAULT, useSpatialTiling: true, useTemporalTiling: true },
};

/** The `dc_ae_tiny` fixture model: same topology, widths 8..64, one block per stage. */
export const TINY: DcAeConfig = symmetric("tiny", {
  latent: 16,
  widths: [8, 16, 16, 32, 32, 64],
  encDepths: [1, 1, 1, 1, 1, 1],
  decDepths: [1, 1, 1, 1, 1, 1],
  blocks: BLOCKS,
  temporal: TEMPORAL,
});

/** Named presets. */
/**
 * Kino's small default autoencoder: the same block types (ResBlock stages, then an EfficientViT
 * stage) and 4x temporal compression, four stages (8x spatial), 32 latent channels; a 16-frame
 * 64x64 clip becomes a 4x8x8 latent (the default MMDiT packs it with patch size 2 into 64 tokens).
 */
export const SMALL: DcAeConfig = symmetric("small", {
  latent: 32,
  widths: [8, 16, 32, 64],
  encDepths: [1, 1, 1, 1],
  decDepths: [1, 1, 1, 1],
  blocks: ["ResBlock", "ResBlock", "ResBlock", "EViTS5_GLU"],
  temporal: [false, true, true, false],
});

export const DC_AE_PRESETS: Readonly<Record<string, DcAeConfig>> = {
  f32t4c128: F32T4C128,
  tiny: TINY,
  small: SMALL,
};

/** A preset by name (a copy, safe to modify); throws listing the known names. */
export function dcAePreset(name: string): DcAeConfig {
  const c = DC_AE_PRESETS[name];
  if (!c) {
    throw new RangeError(
      `DC-AE preset "${name}" is unknown (known: ${Object.keys(DC_AE_PRESETS).join(", ")})`,
    );
  }
  return structuredClone(c);
}

/** LiteMLA heads of a C-channel EfficientViT block (`int(C // dim * heads_ratio)`). */
export function evitHeads(cfg: DcAeConfig, channels: number): number {
  return Math.trunc(Math.floor(channels / cfg.evit.headDim) * cfg.evit.headsRatio);
}

/** Extra aggregation kernel sizes of a block type (`scales`). */
export function evitScales(type: DcAeBlockType): number[] {
  return type === "EViTS5_GLU" ? [5] : [];
}

/** Number of temporal down-sampling stages of the encoder. */
export function temporalStages(cfg: DcAeConfig): number {
  return cfg.encoder.temporalDownsample.filter((t) => t).length;
}

// ---------------------------------------------------------------- validation

function fail(cfg: { name?: string }, msg: string): never {
  throw new RangeError(`DC-AE config ${cfg.name ?? "?"}: ${msg}`);
}

function positiveInt(cfg: DcAeConfig, what: string, v: unknown): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    fail(cfg, `${what} must be a positive integer, got ${JSON.stringify(v)}`);
  }
}

function checkStages(
  cfg: DcAeConfig,
  part: "encoder" | "decoder",
  p: DcAeEncoderConfig | DcAeDecoderConfig,
  flags: boolean[],
  flagName: string,
): void {
  const n = p.widths.length;
  if (n < 1) fail(cfg, `${part}.widths is empty`);
  const lists: [string, unknown[]][] = [
    ["depths", p.depths],
    ["blockTypes", p.blockTypes],
    ["norms", p.norms],
    ["acts", p.acts],
    [flagName, flags],
  ];
  for (const [k, v] of lists) {
    if (!Array.isArray(v) || v.length !== n) {
      fail(
        cfg,
        `${part}.${k} has ${Array.isArray(v) ? v.length : "no"} entries for ${n} stages ` +
          `(widths [${p.widths.join(", ")}])`,
      );
    }
  }
  p.widths.forEach((w, s) => positiveInt(cfg, `${part}.widths[${s}]`, w));
  p.depths.forEach((d, s) => {
    positiveInt(cfg, `${part}.depths[${s}]`, d);
  });
  p.blockTypes.forEach((b, s) => {
    if (!BLOCK_TYPES.includes(b)) {
      fail(cfg, `${part}.blockTypes[${s}] = ${b} is not one of ${BLOCK_TYPES.join(", ")}`);
    }
    if (b !== "ResBlock") {
      const heads = evitHeads(cfg, p.widths[s]!);
      if (heads < 1) {
        fail(
          cfg,
          `${part} stage ${s}: ${b} needs at least one head of ${cfg.evit.headDim} channels, ` +
            `width ${p.widths[s]} gives none`,
        );
      }
    }
  });
  for (const [k, v, ok] of [["norms", p.norms, NORMS], ["acts", p.acts, ACTS]] as const) {
    v.forEach((x, s) => {
      if (!ok.includes(x)) fail(cfg, `${part}.${k}[${s}] = ${x} is not one of ${ok.join(", ")}`);
    });
  }
  flags.forEach((f, s) => {
    if (typeof f !== "boolean") fail(cfg, `${part}.${flagName}[${s}] must be a boolean`);
  });
  if (flags[n - 1]) {
    fail(cfg, `${part}.${flagName}[${n - 1}] is set, but the last stage has no resampling block`);
  }
  if (p.outNorm !== null && !NORMS.includes(p.outNorm)) {
    fail(cfg, `${part}.outNorm = ${p.outNorm} is not one of ${NORMS.join(", ")} or null`);
  }
  if (p.outAct !== null && !ACTS.includes(p.outAct)) {
    fail(cfg, `${part}.outAct = ${p.outAct} is not one of ${ACTS.join(", ")} or null`);
  }
}

/**
 * Checks a configuration and returns it; throws a `RangeError` naming the first inconsistency
 * (list lengths, unknown block/norm/activation names, channel counts the space-to-channel
 * shortcuts cannot average or duplicate, compression ratios that disagree with the stages).
 */
export function validateConfig(cfg: DcAeConfig): DcAeConfig {
  positiveInt(cfg, "inChannels", cfg.inChannels);
  positiveInt(cfg, "latentChannels", cfg.latentChannels);
  positiveInt(cfg, "evit.headDim", cfg.evit.headDim);
  if (!(cfg.evit.expandRatio > 0) || !(cfg.evit.headsRatio > 0) || !(cfg.evit.eps >= 0)) {
    fail(cfg, `evit settings must be positive: ${JSON.stringify(cfg.evit)}`);
  }
  const e = cfg.encoder;
  const d = cfg.decoder;
  checkStages(cfg, "encoder", e, e.temporalDownsample, "temporalDownsample");
  checkStages(cfg, "decoder", d, d.temporalUpsample, "temporalUpsample");
  const n = e.widths.length;
  if (d.widths.length !== n) {
    fail(cfg, `encoder has ${n} stages but decoder ${d.widths.length}`);
  }
  // Encoder shortcuts: averaging groups of in·2^k/out channels must be whole.
  for (let s = 0; s + 1 < n; s++) {
    const cin = e.widths[s]!;
    const cout = e.widths[s + 1]!;
    const k = e.temporalDownsample[s] ? 3 : 2;
    if (e.downsampleShortcut && (cin * 2 ** k) % cout !== 0) {
      fail(
        cfg,
        `encoder down-sampling ${cin} -> ${cout} after stage ${s}: the averaging shortcut ` +
          `needs ${cin}·${2 ** k} divisible by ${cout}`,
      );
    }
  }
  if (e.outShortcut && e.widths[n - 1]! % cfg.latentChannels !== 0) {
    fail(
      cfg,
      `encoder project_out averages ${e.widths[n - 1]} channels into ${cfg.latentChannels}: ` +
        `not a whole group size`,
    );
  }
  // Decoder shortcuts: out·2^k/in repeats must be whole (the reference asserts out·4 % in).
  for (let s = 0; s + 1 < n; s++) {
    const cin = d.widths[s + 1]!;
    const cout = d.widths[s]!;
    const k = d.temporalUpsample[s] ? 3 : 2;
    if (d.upsampleShortcut && ((cout * 4) % cin !== 0 || (cout * 2 ** k) % cin !== 0)) {
      fail(
        cfg,
        `decoder up-sampling ${cin} -> ${cout} at stage ${s}: the duplicating shortcut needs ` +
          `${cout}·${2 ** k} divisible by ${cin}`,
      );
    }
  }
  if (d.inShortcut && d.widths[n - 1]! % cfg.latentChannels !== 0) {
    fail(
      cfg,
      `decoder project_in duplicates ${cfg.latentChannels} channels into ${d.widths[n - 1]}: ` +
        `not a whole repeat count`,
    );
  }
  const encT = e.temporalDownsample.filter((t) => t).length;
  const decT = d.temporalUpsample.filter((t) => t).length;
  if (encT !== decT) {
    fail(cfg, `encoder halves time ${encT} times but the decoder doubles it ${decT} times`);
  }
  if (cfg.spatialCompression !== 2 ** (n - 1)) {
    fail(
      cfg,
      `spatialCompression ${cfg.spatialCompression} disagrees with ${n - 1} down-sampling ` +
        `stages (2^${n - 1} = ${2 ** (n - 1)})`,
    );
  }
  if (cfg.timeCompression !== 2 ** encT) {
    fail(
      cfg,
      `timeCompression ${cfg.timeCompression} disagrees with ${encT} temporal down-sampling ` +
        `stages (2^${encT} = ${2 ** encT})`,
    );
  }
  if (cfg.scalingFactor !== null && !(cfg.scalingFactor > 0)) {
    fail(cfg, `scalingFactor must be positive or null, got ${cfg.scalingFactor}`);
  }
  const t = cfg.tiling;
  if (
    !(t.tileOverlapFactor >= 0 && t.tileOverlapFactor < 1) ||
    t.spatialTileSize % cfg.spatialCompression !== 0 ||
    t.temporalTileSize % cfg.timeCompression !== 0
  ) {
    fail(
      cfg,
      `tiling ${JSON.stringify(t)}: tile sizes must be multiples of the compression ` +
        `(${cfg.spatialCompression} px, ${cfg.timeCompression} frames), overlap in [0, 1)`,
    );
  }
  return cfg;
}

// ---------------------------------------------------------------- reference config objects

/** A parsed JSON object (a reference config dictionary, snake_case keys). */
export type Json = Record<string, unknown>;

function perStage<T>(v: unknown, n: number, what: string, name: string): T[] {
  if (Array.isArray(v)) return v as T[];
  if (typeof v === "string") return Array(n).fill(v);
  throw new TypeError(`DC-AE config ${name}: ${what} must be a string or a list, got ${v}`);
}

/** Per-stage flags; `[]` means none. The last stage's flag is unused by the reference. */
function flagList(v: unknown, n: number): boolean[] {
  if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) {
    return Array(n).fill(false);
  }
  const f = [...(v as boolean[])];
  if (f.length === n) f[n - 1] = false;
  return f;
}

function nullable<T>(v: unknown): T | null {
  return v === undefined || v === null ? null : v as T;
}

/**
 * Builds a config from a reference `DCAEConfig` dictionary (the `"config"` object of a fixture
 * `case.json`, or the manifest's), with snake_case keys as in the reference. Settings the video
 * model does not support (image models, other down/up-sampling layers, double latents,
 * quantisation convs) are rejected with a message naming them.
 *
 * @example
 * ```ts ignore
 * const cfg = fromReferenceConfig(JSON.parse(await Deno.readTextFile("case.json")).config);
 * ```
 */
export function fromReferenceConfig(json: Json, name = "reference"): DcAeConfig {
  const enc = json.encoder as Json | undefined;
  const dec = json.decoder as Json | undefined;
  if (!enc || !dec) throw new TypeError(`DC-AE config ${name}: needs "encoder" and "decoder"`);
  const unsupported = (what: string, v: unknown, want: unknown) => {
    if (v !== undefined && v !== want) {
      throw new RangeError(
        `DC-AE config ${name}: ${what} = ${JSON.stringify(v)} is not supported ` +
          `(the video DC-AE needs ${JSON.stringify(want)})`,
      );
    }
  };
  unsupported("encoder.is_video", enc.is_video, true);
  unsupported("decoder.is_video", dec.is_video, true);
  unsupported("is_image_model", json.is_image_model, false);
  unsupported("use_quant_conv", json.use_quant_conv, false);
  unsupported("encoder.double_latent", enc.double_latent, false);
  unsupported("encoder.downsample_block_type", enc.downsample_block_type, "Conv");
  unsupported("decoder.upsample_block_type", dec.upsample_block_type, "InterpolateConv");
  unsupported("encoder.downsample_match_channel", enc.downsample_match_channel, true);
  unsupported("decoder.upsample_match_channel", dec.upsample_match_channel, true);
  const latent = (json.latent_channels ?? enc.latent_channels) as number;
  const inCh = (json.in_channels ?? enc.in_channels ?? 3) as number;
  for (const [k, v] of [["encoder", enc], ["decoder", dec]] as const) {
    if (v.latent_channels !== undefined && v.latent_channels !== latent) {
      throw new RangeError(
        `DC-AE config ${name}: ${k}.latent_channels ${v.latent_channels} != ${latent}`,
      );
    }
    if (v.in_channels !== undefined && v.in_channels !== inCh) {
      throw new RangeError(`DC-AE config ${name}: ${k}.in_channels ${v.in_channels} != ${inCh}`);
    }
  }
  const ew = enc.width_list as number[];
  const dw = dec.width_list as number[];
  if (!Array.isArray(ew) || !Array.isArray(dw)) {
    throw new TypeError(`DC-AE config ${name}: encoder/decoder width_list missing`);
  }
  const cfg: DcAeConfig = {
    name,
    inChannels: inCh,
    latentChannels: latent,
    timeCompression: (json.time_compression_ratio ?? 1) as number,
    spatialCompression: (json.spatial_compression_ratio ?? 32) as number,
    encoder: {
      widths: [...ew],
      depths: [...(enc.depth_list as number[] ?? [])],
      blockTypes: perStage(enc.block_type ?? "ResBlock", ew.length, "encoder.block_type", name),
      norms: perStage(enc.norm ?? "rms3d", ew.length, "encoder.norm", name),
      acts: perStage(enc.act ?? "silu", ew.length, "encoder.act", name),
      temporalDownsample: flagList(enc.temporal_downsample, ew.length),
      downsampleShortcut: nullable(
        enc.downsample_shortcut === undefined ? "averaging" : enc.downsample_shortcut,
      ),
      outNorm: nullable(enc.out_norm),
      outAct: nullable(enc.out_act),
      outShortcut: nullable(enc.out_shortcut === undefined ? "averaging" : enc.out_shortcut),
    },
    decoder: {
      widths: [...dw],
      depths: [...(dec.depth_list as number[] ?? [])],
      blockTypes: perStage(dec.block_type ?? "ResBlock", dw.length, "decoder.block_type", name),
      norms: perStage(dec.norm ?? "rms3d", dw.length, "decoder.norm", name),
      acts: perStage(dec.act ?? "silu", dw.length, "decoder.act", name),
      temporalUpsample: flagList(dec.temporal_upsample, dw.length),
      inShortcut: nullable(dec.in_shortcut === undefined ? "duplicating" : dec.in_shortcut),
      upsampleShortcut: nullable(
        dec.upsample_shortcut === undefined ? "duplicating" : dec.upsample_shortcut,
      ),
      outNorm: nullable(dec.out_norm === undefined ? "rms3d" : dec.out_norm),
      outAct: nullable(dec.out_act === undefined ? "relu" : dec.out_act),
    },
    evit: { ...EVIT_DEFAULT },
    scalingFactor: nullable(json.scaling_factor),
    tiling: {
      useSpatialTiling: (json.use_spatial_tiling ?? false) as boolean,
      useTemporalTiling: (json.use_temporal_tiling ?? false) as boolean,
      spatialTileSize: (json.spatial_tile_size ?? 256) as number,
      temporalTileSize: (json.temporal_tile_size ?? 32) as number,
      tileOverlapFactor: (json.tile_overlap_factor ?? 0.25) as number,
    },
  };
  for (
    const [k, v, ok] of [
      ["encoder.downsample_shortcut", cfg.encoder.downsampleShortcut, "averaging"],
      ["encoder.out_shortcut", cfg.encoder.outShortcut, "averaging"],
      ["decoder.in_shortcut", cfg.decoder.inShortcut, "duplicating"],
      ["decoder.upsample_shortcut", cfg.decoder.upsampleShortcut, "duplicating"],
    ] as const
  ) {
    if (v !== null && v !== ok) {
      throw new RangeError(`DC-AE config ${name}: ${k} = ${v} is not supported (${ok} or null)`);
    }
  }
  return validateConfig(cfg);
}
