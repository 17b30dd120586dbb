/**
 * The rectified-flow sampling loop of the i2v denoiser (`shared/spec/sampling.md` §6;
 * `I2VDenoiser.denoise` and the part of `api_fn` around it), driven by any
 * {@linkcode VelocityModel} (the MMDiT forward, or a stand-in in tests).
 *
 * @module
 */
import { fmtShape } from "../../engine/shape.ts";
import { noGrad, type Tensor, tidy } from "../../engine/tensor.ts";
import { runtime } from "../../engine/runtime.ts";
import { tensor } from "../../engine/ops/create.ts";
import { copy, zeros } from "../../engine/ops/elementwise.ts";
import { slice } from "../../engine/ops/movement.ts";
import { concat } from "../../engine/ops/concat.ts";
import type { MMDiTInputs, VelocityModel } from "../mmdit/inputs.ts";
import { pack, positionIds, textIds, unpack } from "./pack.ts";
import { toBf16 } from "./schedule.ts";
import { eulerStep, type GuidanceOptions, guidedVelocity, stepGuidance } from "./guidance.ts";
import { cfgCondition, type Condition, type CondType } from "./condition.ts";

/** Inputs of {@linkcode denoise}: the packed latent and the fixed model inputs of every step. */
export interface DenoiseInputs {
  /** Packed noise `[N, L, C·p²]` (the first N rows; the loop feeds `[x; x; x]`). */
  x: Tensor;
  /** Position ids of the 3N image rows `[3N, L, 3]` ({@linkcode positionIds}). */
  imgIds: Float32Array;
  /** Text states of the 3N CFG rows `[3N, Lt, ctx]` (`[prompt; neg; neg]`). */
  txt: Tensor;
  /** Text position ids `[3N, Lt, 3]` (zeros). */
  txtIds: Float32Array;
  /** Pooled text vectors of the 3N rows `[3N, V]`. */
  yVec: Tensor;
  /** Condition of the 3N rows `[3N, L, (C + 1)·p²]` (`[cond; cond; 0]`, {@linkcode cfgCondition}). */
  cond: Tensor;
}

/** Options of the loop. */
export interface LoopOptions extends GuidanceOptions {
  /** The schedule `t_0 … t_n` (n + 1 values, {@linkcode getSchedule}). */
  timesteps: readonly number[];
  /** Latent frames `T` (for the temporal image-guidance ramp). */
  latentFrames: number;
  /** Condition type (only `"i2v"` types get the temporal ramp); default `"t2v"`. */
  condType?: CondType;
  /**
   * Precision of the timestep the model receives: `"f32"` (default, the fixtures) or `"bf16"`
   * (the reference's bf16 pipeline rounds `t` to bfloat16; the Euler step always uses the float32
   * schedule).
   */
  modelTimestep?: "f32" | "bf16";
  /**
   * Called after each step with `(step index, number of steps, t of that step, x)`, where `x` is
   * the packed latent after the step (valid during the call only).
   */
  onStep?: (i: number, total: number, t: number, x: Tensor) => void | Promise<void>;
  /** Wait for the GPU after every step (accurate progress, bounded queue); default true. */
  sync?: boolean;
  /**
   * Run the three guidance branches (`[prompt; negative; negative]`) as three forwards of N rows
   * each instead of one of 3N (the same velocities, a third of the activations: the memory plan's
   * split for long videos); default false.
   */
  branchesOneAtATime?: boolean;
}

/** The model inputs of guidance branch `b` (rows `[b·n, (b+1)·n)` of the 3n CFG rows). */
function branchRows(x: MMDiTInputs, b: number, n: number, img: Tensor): MMDiTInputs {
  const rows = (t: Tensor) =>
    slice(t, t.shape.map((_, i) => (i === 0 ? b * n : 0)), [(b + 1) * n, ...t.shape.slice(1)]);
  const ids = (a: Float32Array) => {
    const per = a.length / (3 * n);
    return a.subarray(b * n * per, (b + 1) * n * per);
  };
  return {
    img,
    imgIds: ids(x.imgIds),
    txt: rows(x.txt),
    txtIds: ids(x.txtIds),
    timesteps: rows(x.timesteps),
    yVec: rows(x.yVec),
    cond: x.cond ? rows(x.cond) : undefined,
  };
}

function checkRows(what: string, t: Tensor, rows: number, rank: number): void {
  if (t.rank !== rank || t.shape[0] !== rows) {
    throw new RangeError(
      `${what} ${fmtShape(t.shape)} must have ${rows} rows (3N: [prompt; negative; negative]) ` +
        `and rank ${rank}`,
    );
  }
}

/**
 * `I2VDenoiser.denoise` on packed tokens: for each step `i`, the model sees `img = [x; x; x]`,
 * `timesteps = t_i` (3N copies) and the fixed inputs; its output is guided
 * ({@linkcode guidedVelocity}) and `x ← x + (t_{i+1} − t_i)·v` ({@linkcode eulerStep}). Each step
 * runs in its own `tidy` scope, so only the latent survives it. Returns the packed latent
 * `[N, L, C·p²]` (a new tensor; `inputs.x` is left alone).
 *
 * @example
 * ```ts ignore
 * const x = await denoise(mmdit, inputs, { timesteps, latentFrames: 32, condType: "i2v_head" });
 * ```
 */
export async function denoise(
  model: VelocityModel,
  inputs: DenoiseInputs,
  opts: LoopOptions,
): Promise<Tensor> {
  const { timesteps, latentFrames, condType = "t2v", modelTimestep = "f32", onStep } = opts;
  const { sync = true } = opts;
  if (inputs.x.rank !== 3) {
    throw new RangeError(`denoise: x ${fmtShape(inputs.x.shape)} must be packed [N, L, C·p²]`);
  }
  const [n, L] = inputs.x.shape as [number, number, number];
  const rows = 3 * n;
  checkRows("denoise: txt", inputs.txt, rows, 3);
  checkRows("denoise: yVec", inputs.yVec, rows, 2);
  checkRows("denoise: cond", inputs.cond, rows, 3);
  if (inputs.cond.shape[1] !== L) {
    throw new RangeError(`denoise: cond ${fmtShape(inputs.cond.shape)} must have ${L} tokens`);
  }
  if (inputs.imgIds.length !== rows * L * 3) {
    throw new RangeError(`denoise: imgIds holds ${inputs.imgIds.length} values, not 3N·L·3`);
  }
  if (timesteps.length < 2) {
    throw new RangeError(
      `denoise: the schedule needs at least 2 timesteps (got ${timesteps.length})`,
    );
  }
  const numSteps = timesteps.length - 1;
  let x: Tensor = tidy(() => concat([inputs.x], 0));
  try {
    for (let i = 0; i < numSteps; i++) {
      const t = timesteps[i]!;
      const tNext = timesteps[i + 1]!;
      const g = stepGuidance(i, numSteps, latentFrames, condType, opts);
      const prev = x;
      x = noGrad(() =>
        tidy(() => {
          const tm = modelTimestep === "bf16" ? toBf16(t) : t;
          const modelInputs: MMDiTInputs = {
            img: concat([prev, prev, prev], 0),
            imgIds: inputs.imgIds,
            txt: inputs.txt,
            txtIds: inputs.txtIds,
            timesteps: tensor(new Float32Array(rows).fill(tm), [rows]),
            yVec: inputs.yVec,
            cond: inputs.cond,
          };
          const pred = opts.branchesOneAtATime
            ? concat([0, 1, 2].map((b) => model(branchRows(modelInputs, b, n, prev))), 0)
            : model(modelInputs);
          if (pred.shape.join() !== [rows, ...prev.shape.slice(1)].join()) {
            throw new RangeError(
              `denoise: the model returned ${fmtShape(pred.shape)}, expected ` +
                `${fmtShape([rows, ...prev.shape.slice(1)])}`,
            );
          }
          return eulerStep(prev, guidedVelocity(pred, g), t, tNext);
        })
      );
      prev.dispose();
      if (sync) await runtime().sync();
      await onStep?.(i, numSteps, t, x);
    }
  } catch (e) {
    x.dispose();
    throw e;
  }
  return x;
}

/** Options of {@linkcode sample}. */
export interface SampleOptions extends GuidanceOptions {
  /** Initial noise `[N, C, T, h·p, w·p]` ({@linkcode makeNoise}, or stored noise). */
  noise: Tensor;
  /** Text states of the 3N CFG rows `[3N, Lt, ctx]` ({@linkcode cfgRows}). */
  txt: Tensor;
  /** Pooled text vectors of the 3N CFG rows `[3N, V]`. */
  yVec: Tensor;
  /** The schedule `t_0 … t_n` ({@linkcode getSchedule}). */
  timesteps: readonly number[];
  /** The condition from {@linkcode prepareCondition}; default: text-to-video (zeros). */
  condition?: Condition;
  /** MMDiT patch size; default 1. */
  patchSize?: number;
  /** See {@linkcode LoopOptions.modelTimestep}. */
  modelTimestep?: "f32" | "bf16";
  /** Called after each step with `(step index, number of steps, t of that step)`. */
  /**
   * Called after each step with `(step index, number of steps, t of that step, x)`, where `x` is
   * the packed latent after the step (valid during the call only).
   */
  onStep?: (i: number, total: number, t: number, x: Tensor) => void | Promise<void>;
  /** Wait for the GPU after every step; default true. */
  sync?: boolean;
  /** See {@linkcode LoopOptions.branchesOneAtATime}. */
  branchesOneAtATime?: boolean;
}

/**
 * Samples a latent video: packs the noise, builds the position ids and the `[cond; cond; 0]`
 * condition rows, runs {@linkcode denoise}, and unpacks the result to `[N, C, T, h·p, w·p]`
 * (`final_latent`). The i2v reference overwrite is separate ({@linkcode applyReferenceOverwrite}).
 * The temporal image-guidance ramp applies only when `condition.condType` contains `"i2v"`.
 *
 * @example
 * ```ts ignore
 * const noise = makeNoise([1, 128, 32, 18, 32], 42);
 * const condition = prepareCondition(noise.shape, "i2v_head", [[refLatent]]);
 * const latent = await sample((inp) => mmdit.forward(inp), {
 *   noise, condition,
 *   txt: cfgRows(t5Prompt, t5Neg), yVec: cfgRows(clipPrompt, clipNeg),
 *   timesteps: getSchedule(50, 18 * 32, 32),
 *   onStep: (i, n) => console.log(`step ${i + 1}/${n}`),
 * });
 * const out = applyReferenceOverwrite(latent, condition.condType, [[refLatent]]);
 * ```
 */
export async function sample(model: VelocityModel, opts: SampleOptions): Promise<Tensor> {
  const { noise, txt, yVec, condition, patchSize: p = 1 } = opts;
  if (noise.rank !== 5) {
    throw new RangeError(`sample: noise ${fmtShape(noise.shape)} must be [N, C, T, h·p, w·p]`);
  }
  const [n, c, T, hp, wp] = noise.shape as [number, number, number, number, number];
  if (!Number.isInteger(p) || p < 1 || hp % p !== 0 || wp % p !== 0) {
    throw new RangeError(`sample: noise ${fmtShape(noise.shape)} does not fit patch size ${p}`);
  }
  const h = hp / p;
  const w = wp / p;
  if (condition) {
    const want = [n, T * h * w, (c + 1) * p * p].join();
    if (condition.cond.shape.join() !== want) {
      throw new RangeError(
        `sample: condition.cond ${fmtShape(condition.cond.shape)} does not match the noise ` +
          `(expected [${want}]); build it with prepareCondition(noise.shape, ...)`,
      );
    }
  }
  const rows = 3 * n;
  checkRows("sample: txt", txt, rows, 3);
  const owned: Tensor[] = [];
  try {
    const setup = tidy(() => ({
      x: pack(noise, p),
      cond: condition ? cfgCondition(condition.cond) : zeros([rows, T * h * w, (c + 1) * p * p]),
    }));
    owned.push(setup.x, setup.cond);
    const x = await denoise(model, {
      x: setup.x,
      imgIds: positionIds(rows, T, h, w),
      txt,
      txtIds: textIds(rows, txt.shape[1]!),
      yVec,
      cond: setup.cond,
    }, {
      ...opts,
      latentFrames: T,
      condType: condition?.condType ?? "t2v",
    });
    owned.push(x);
    // a dense copy: unpack may be a pure view of x, which is disposed below
    return tidy(() => copy(unpack(x, T, h, w, c, p)));
  } finally {
    for (const t of owned) t.dispose();
  }
}
