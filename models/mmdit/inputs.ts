/**
 * The contract between the MMDiT and whatever drives it (the sampler, the trainer, the golden
 * runner): one forward call's inputs, as the reference `MMDiTModel.forward` receives them
 * (`shared/spec/mmdit.md` §2).
 *
 * @module
 */
import type { Tensor } from "../../engine/tensor.ts";

/** Inputs of one MMDiT forward call. */
export interface MMDiTInputs {
  /** Noisy latent tokens `[B, N, inChannels]` (patchified, {@linkcode pack}). */
  img: Tensor;
  /** Position ids of the image tokens, row-major `[B, N, 3]` floats `(t, h, w)`. */
  imgIds: Float32Array;
  /** Text encoder states `[B, Lt, contextInDim]` (T5 last hidden state). */
  txt: Tensor;
  /** Position ids of the text tokens, row-major `[B, Lt, 3]` (all zeros in the reference). */
  txtIds: Float32Array;
  /** Timesteps `[B]` in [0, 1] (1 = pure noise). */
  timesteps: Tensor;
  /** Pooled text vector `[B, vecInDim]` (CLIP pooled output). */
  yVec: Tensor;
  /** Condition tokens `[B, N, inChannels + p²]` (`[mask, masked reference]`); zeros when absent. */
  cond?: Tensor;
  /** Distilled guidance value `[B]` (only for models with `guidanceEmbed`, e.g. FLUX.1-dev). */
  guidance?: Tensor;
}

/** Anything that maps {@linkcode MMDiTInputs} to a velocity `[B, N, inChannels]`. */
export type VelocityModel = (inputs: MMDiTInputs) => Tensor;
