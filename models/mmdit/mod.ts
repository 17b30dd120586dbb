/**
 * The MMDiT diffusion transformer: configurations, presets and the model.
 *
 * @module
 */
export { MMDiT } from "./model.ts";
export type { BlockHooks, MMDiTOptions, MMDiTTap } from "./model.ts";
export {
  MMDIT_PRESETS,
  mmditFromReferenceConfig,
  mmditPreset,
  validateMMDiTConfig,
} from "./config.ts";
export type { MMDiTConfig } from "./config.ts";
export type { MMDiTInputs, VelocityModel } from "./inputs.ts";
