/**
 * The rectified-flow sampler of the high-compression pipeline, separate from the model: sizes and
 * frame rules, prompt suffixes, noise, the shifted timestep schedule, i2v/v2v conditioning,
 * three-branch classifier-free guidance with oscillation and the temporal image-guidance ramp, and
 * the Euler loop over any {@linkcode VelocityModel}. Spec: `shared/spec/sampling.md`.
 *
 * @example
 * ```ts ignore
 * import * as S from "./models/sampling/mod.ts";
 * const { height, width } = S.imageSize("768px", "16:9");            // 576 x 1024
 * const T = S.latentFrames(128);                                     // 32
 * const { h, w } = S.latentGrid({ height, width });                  // 18 x 32
 * const noise = S.makeNoise([1, 128, T, h, w], S.sampleSeed(42, 0));
 * const condition = S.prepareCondition(noise.shape, "i2v_head", [[refLatent]]);
 * const latent = await S.sample(mmdit, {
 *   noise, condition, txt, yVec,                                     // txt/yVec: 3 CFG rows
 *   timesteps: S.getSchedule(50, h * w, T),
 * });
 * const out = S.applyReferenceOverwrite(latent, condition.condType, [[refLatent]]);
 * ```
 *
 * @module
 */
export type { MMDiTInputs, VelocityModel } from "../mmdit/inputs.ts";
export { pack, positionIds, textIds, unpack } from "./pack.ts";
export {
  getSchedule,
  linspaceF32,
  resolutionShiftAlpha,
  type ScheduleOptions,
  type ShiftAlphaOptions,
  timeShift,
  toBf16,
} from "./schedule.ts";
export {
  ASPECT_RATIO_LIST,
  type AspectOptions,
  aspectRatios,
  checkFrameCount,
  checkImageSize,
  decodedFrames,
  type FrameCountOptions,
  type FrameOptions,
  HCAE_COMPRESSION,
  type ImageSize,
  imageSize,
  keepFrames,
  latentFrames,
  latentGrid,
  type LatentGridOptions,
  numPixels,
  roundUpTo16,
} from "./sizes.ts";
export { addFpsInfo, addMotionScore } from "./prompt.ts";
export { makeNoise, randomSeed, sampleSeed } from "./noise.ts";
export {
  eulerStep,
  type GuidanceOptions,
  guidedVelocity,
  OSCILLATION_FORCE_NUM,
  oscillationScale,
  type StepGuidance,
  stepGuidance,
  temporalImageRamp,
} from "./guidance.ts";
export {
  applyReferenceOverwrite,
  cfgCondition,
  cfgRows,
  cfgTexts,
  type Condition,
  type ConditionOptions,
  type CondType,
  prepareCondition,
  type RowReferences,
} from "./condition.ts";
export {
  denoise,
  type DenoiseInputs,
  type LoopOptions,
  sample,
  type SampleOptions,
} from "./sampler.ts";
