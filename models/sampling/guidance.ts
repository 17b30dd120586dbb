/**
 * Three-branch classifier-free guidance of the i2v denoiser and the Euler step
 * (`shared/spec/sampling.md` §6; `I2VDenoiser.denoise`, `get_oscillation_gs`).
 *
 * The model runs on `3N` rows: block 0 = prompt + image condition (`cond`), block 1 = negative
 * prompt + image condition (`uncond`), block 2 = negative prompt without condition (`uncond_2`).
 * The guided velocity is `v = uncond_2 + g_img·(uncond − uncond_2) + g_txt·(cond − uncond)` and the
 * update `x ← x + (t_next − t)·v`.
 *
 * **Bit-exact float32.** The ops run in the reference's order with float32 scalars
 * (`a = u − u2; b = g_img·a; c = u2 + b; d = c_ − u; e = g_txt·d; v = c + e; x + f32(t_next − t)·v`).
 * GPU compilers may contract a multiply followed by an add into one fused multiply-add, which
 * rounds once instead of twice; each product that feeds an addition is therefore realized into
 * its own buffer first (see {@linkcode guidedVelocity}), so every result is the correctly rounded
 * float32 of the reference and the updates match it bit for bit.
 *
 * @module
 */
import { realize } from "../../engine/graph.ts";
import { fmtShape } from "../../engine/shape.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { tensor } from "../../engine/ops/create.ts";
import { add, mul, sub } from "../../engine/ops/elementwise.ts";
import { narrow, reshape } from "../../engine/ops/movement.ts";
import { linspaceF32 } from "./schedule.ts";

/** Steps before which the oscillation never applies (`force_num`). */
export const OSCILLATION_FORCE_NUM = 10;

/**
 * `get_oscillation_gs`: the scale at step `i` is `scale` for `i < forceNum` or even `i`, else 1.
 *
 * @example
 * ```ts ignore
 * oscillationScale(7.5, 11);   // 1
 * oscillationScale(7.5, 12);   // 7.5
 * ```
 */
export function oscillationScale(scale: number, step: number, forceNum = OSCILLATION_FORCE_NUM) {
  return step < forceNum || step % 2 === 0 ? scale : 1.0;
}

/** Guidance settings (defaults: the high-compression inference config). */
export interface GuidanceOptions {
  /** Text guidance scale; default 7.5. */
  guidance?: number;
  /** Image-condition guidance scale; default 3.0. */
  guidanceImg?: number;
  /** Oscillate the text scale (1 at odd steps ≥ 10); default true. */
  textOsci?: boolean;
  /** Oscillate the image scale; default true. */
  imageOsci?: boolean;
  /** Temporal image-guidance ramp (only for condition types containing "i2v"); default true. */
  scaleTemporalOsci?: boolean;
}

/** The guidance of one step. */
export interface StepGuidance {
  /** Text scale `g_txt`. */
  text: number;
  /** Scalar image scale `g_img` (after oscillation). */
  image: number;
  /**
   * Per-latent-frame image scales (float32 values) when the temporal ramp applies, else null
   * (then the scalar `image` is used for every frame).
   */
  imageRamp: number[] | null;
}

/**
 * The per-frame image scales of the temporal ramp at step `i`: `upper = linspace(g_img, 1, n+1)[i]`,
 * `g[f] = linspace(1, upper, T)[f]` (float32, as `torch.linspace`). Frame 0 (the conditioned frame)
 * gets 1, the last frame `upper`, which decays with the step.
 *
 * @example
 * ```ts ignore
 * temporalImageRamp(3, 0, 12, 4);   // [1, 1.6666667, 2.3333333, 3]
 * ```
 */
export function temporalImageRamp(
  imageScale: number,
  step: number,
  numSteps: number,
  frames: number,
): number[] {
  const upper = linspaceF32(imageScale, 1.0, numSteps + 1)[step]!;
  return linspaceF32(1.0, upper, frames);
}

/**
 * The guidance scales of step `i` of `numSteps` for a latent of `latentFrames` frames: oscillation
 * (when enabled), then the temporal ramp when `scaleTemporalOsci` is on, `condType` contains
 * `"i2v"` and the scalar image scale is above 1.
 *
 * @example
 * ```ts ignore
 * stepGuidance(11, 12, 4, "i2v_head");   // { text: 1, image: 1, imageRamp: null }
 * ```
 */
export function stepGuidance(
  step: number,
  numSteps: number,
  latentFrames: number,
  condType: string,
  opts: GuidanceOptions = {},
): StepGuidance {
  const {
    guidance = 7.5,
    guidanceImg = 3.0,
    textOsci = true,
    imageOsci = true,
    scaleTemporalOsci = true,
  } = opts;
  if (!Number.isInteger(step) || step < 0 || step >= numSteps) {
    throw new RangeError(`stepGuidance: step ${step} is outside [0, ${numSteps})`);
  }
  const text = textOsci ? oscillationScale(guidance, step) : guidance;
  const image = imageOsci ? oscillationScale(guidanceImg, step) : guidanceImg;
  const ramp = scaleTemporalOsci && condType.includes("i2v") && image > 1.0;
  return {
    text,
    image,
    imageRamp: ramp ? temporalImageRamp(image, step, numSteps, latentFrames) : null,
  };
}

/** Computes `t` now, into its own buffer: a multiply realized here cannot be fused into an add. */
function materialize(t: Tensor): Tensor {
  realize([t]);
  return t;
}

/**
 * The guided velocity `[N, L, C]` from the model output `pred` `[3N, L, C]` (blocks
 * `[cond; uncond; uncond_2]`), in the reference's float32 operation order (module doc). The tokens
 * must be packed time-major (`L = T·h·w`) when `g.imageRamp` is set.
 *
 * @example
 * ```ts ignore
 * const v = guidedVelocity(pred, stepGuidance(i, 50, 32, "i2v_head"));
 * ```
 */
export function guidedVelocity(pred: Tensor, g: StepGuidance): Tensor {
  if (pred.rank !== 3 || pred.shape[0]! % 3 !== 0) {
    throw new RangeError(
      `guidedVelocity: expected the model output [3N, L, C], got ${fmtShape(pred.shape)}`,
    );
  }
  const [b3, L, C] = pred.shape as [number, number, number];
  const n = b3 / 3;
  const cond = narrow(pred, 0, 0, n);
  const uncond = narrow(pred, 0, n, n);
  const uncond2 = narrow(pred, 0, 2 * n, n);
  const a = sub(uncond, uncond2);
  let b: Tensor;
  if (g.imageRamp) {
    const T = g.imageRamp.length;
    if (L % T !== 0) {
      throw new RangeError(`guidedVelocity: ${L} tokens cannot hold ${T} latent frames`);
    }
    const w = tensor(new Float32Array(g.imageRamp), [1, T, 1, 1]);
    b = reshape(mul(reshape(a, [n, T, L / T, C]), w), [n, L, C]);
  } else {
    b = mul(a, Math.fround(g.image));
  }
  materialize(b);
  const c = add(uncond2, b);
  const d = sub(cond, uncond);
  const e = materialize(mul(d, Math.fround(g.text)));
  return add(c, e);
}

/**
 * The Euler step `x + f32(tNext − t)·v` (the difference of the two float32 timesteps is taken in
 * float64 and rounded to float32, as the reference's Python scalar).
 *
 * @example
 * ```ts ignore
 * x = eulerStep(x, v, ts[i], ts[i + 1]);
 * ```
 */
export function eulerStep(x: Tensor, v: Tensor, t: number, tNext: number): Tensor {
  const w = materialize(mul(v, Math.fround(tNext - t)));
  return add(x, w);
}
