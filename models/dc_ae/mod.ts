/**
 * The Video DC-AE (`dc-ae-f32t4c128`, Open-Sora 2.0): configuration and presets, layers, and
 * the encoder/decoder model. Spec: `shared/spec/dc-ae.md`.
 *
 * @example
 * ```ts ignore
 * import { DcAe, dcAePreset } from "./models/dc_ae/mod.ts";
 * const ae = new DcAe(dcAePreset("f32t4c128"));   // shape-only: nothing allocated yet
 * console.log(ae.params.count());                 // 459462147
 * ```
 *
 * @module
 */
export {
  DC_AE_PRESETS,
  type DcAeAct,
  type DcAeBlockType,
  type DcAeConfig,
  type DcAeDecoderConfig,
  type DcAeEncoderConfig,
  type DcAeEViTConfig,
  type DcAeNorm,
  dcAePreset,
  type DcAeTilingConfig,
  evitHeads,
  evitScales,
  F32T4C128,
  fromReferenceConfig,
  temporalStages,
  TINY,
  validateConfig,
} from "./config.ts";
export {
  activation,
  ConvLayer,
  type ConvLayerOptions,
  DownsampleBlock,
  EfficientViTBlock,
  GLUMBConv,
  LiteMLA,
  reluLinearAttention,
  ResBlock,
  RMSNorm3d,
  type Triple,
  UpsampleBlock,
} from "./layers.ts";
export { type CodecOptions, DcAe, type DcAeOptions, Decoder, Encoder, type Tap } from "./model.ts";
