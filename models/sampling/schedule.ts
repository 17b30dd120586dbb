/**
 * The rectified-flow timestep schedule with the resolution/length-dependent shift
 * (`shared/spec/sampling.md` §5; `get_schedule`, `time_shift`, `get_res_lin_function`).
 *
 * The reference evaluates the schedule with float32 torch tensors on the CPU (the shift factor
 * `alpha` stays a Python double until it meets a tensor). This module reproduces those float32
 * roundings step by step, so its values equal the reference bit for bit, including the first value
 * `1 + 2^-23` of some small cases and `torch.linspace`'s own rounding pattern.
 *
 * @module
 */

const f32 = Math.fround;

/**
 * `a·b + c` rounded once to float32 (a fused multiply-add) for float32 inputs: the product is exact
 * in float64, the sum is computed exactly with TwoSum and rounded to the nearest float32.
 */
function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bv = s - p;
  const err = (p - (s - bv)) + (c - bv);
  const r = f32(s);
  if (err === 0 || r === s) return r;
  // s is not a float32: only a tie (s exactly halfway between r and its neighbour) can be decided
  // differently by the float64 rounding error `err`.
  const d = s - r;
  const other = r + 2 * d;
  if (f32(other) === other && other !== r && Math.sign(err) === Math.sign(d)) return other;
  return r;
}

/** Number of float32 lanes of the reference CPU's vector unit (AVX2), used by `torch.linspace`. */
const TORCH_CPU_LANES = 8;

/**
 * `torch.linspace(start, end, steps)` in float32 exactly as PyTorch's CPU kernel computes it
 * (`aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp`, AVX2 build): `step = (end − start)/(steps−1)`
 * in float32; element `i < steps/2` is `start + step·i`, the others `end − step·(steps−1−i)`
 * (fused multiply-adds, as compiled), except that full blocks of two 8-lane vectors are built as
 * `base + j·step` from the block's first element. Returned as JS numbers holding float32 values.
 *
 * @example
 * ```ts ignore
 * linspaceF32(1, 0, 13);   // the unshifted 12-step schedule: 1, 0.9166667, ..., 0
 * ```
 */
export function linspaceF32(start: number, end: number, steps: number): number[] {
  if (!Number.isInteger(steps) || steps < 0) {
    throw new RangeError(`linspaceF32: steps ${steps} must be an integer >= 0`);
  }
  if (steps === 0) return [];
  const st = f32(start);
  const en = f32(end);
  if (steps === 1) return [st];
  const step = f32(f32(en - st) / (steps - 1));
  const half = Math.floor(steps / 2);
  const scalar = (i: number) => i < half ? fmaF32(step, i, st) : fmaF32(-step, steps - 1 - i, en);
  const out: number[] = [];
  const v = TORCH_CPU_LANES;
  let i = 0;
  for (; i <= steps - 2 * v; i += 2 * v) {
    for (const i0 of [i, i + v]) {
      const base = scalar(i0);
      out.push(base);
      for (let j = 1; j < v; j++) out.push(f32(base + f32(j * step)));
    }
  }
  for (; i < steps; i++) out.push(scalar(i));
  return out;
}

/**
 * `time_shift`: `t' = α·t / (1 + (α − 1)·t)` elementwise, with the reference's float32 roundings
 * (`α` and `α − 1` rounded to float32 where they meet the float32 tensor, every operation rounded).
 *
 * @example
 * ```ts ignore
 * timeShift(6.599663291074444, [1, 0.5, 0]);   // [1, 0.8684152, 0]
 * ```
 */
export function timeShift(alpha: number, t: readonly number[]): number[] {
  const a = f32(alpha);
  const am1 = f32(alpha - 1);
  return t.map((x) => {
    const v = f32(x);
    return f32(f32(a * v) / f32(1 + f32(am1 * v)));
  });
}

/** Options of {@linkcode resolutionShiftAlpha}. */
export interface ShiftAlphaOptions {
  /** Shift at 256 tokens per frame; default 1. */
  baseShift?: number;
  /** Shift at 4096 tokens per frame; default 3. */
  maxShift?: number;
}

/**
 * The shift factor `α = (m·S + b)·sqrt(T)` for `S` image tokens per latent frame and `T` latent
 * frames, where `m·S + b` is the line through `(256, baseShift)` and `(4096, maxShift)`
 * (`get_res_lin_function`; `m = 1/1920`, `b = 13/15` by default). Computed in float64 as the
 * reference does.
 *
 * @example
 * ```ts ignore
 * resolutionShiftAlpha(576, 32);   // 6.599663291074444 (HCAE 768px, 128 frames)
 * ```
 */
export function resolutionShiftAlpha(S: number, T: number, opts: ShiftAlphaOptions = {}): number {
  const { baseShift = 1, maxShift = 3 } = opts;
  if (!(S > 0) || !(T > 0)) {
    throw new RangeError(
      `resolutionShiftAlpha: tokens per frame S = ${S} and frames T = ${T} must be > 0`,
    );
  }
  const m = (maxShift - baseShift) / (4096 - 256);
  const b = baseShift - m * 256;
  let alpha = m * S + b;
  alpha *= Math.sqrt(T);
  return alpha;
}

/** Options of {@linkcode getSchedule}. */
export interface ScheduleOptions extends ShiftAlphaOptions {
  /** Shift the schedule towards high noise levels; default true. */
  shift?: boolean;
  /** A fixed shift factor (the config's `flow_shift`); default: {@linkcode resolutionShiftAlpha}. */
  shiftAlpha?: number;
}

/**
 * The sampling timesteps `t_0 = 1 > … > t_n = 0` (`n + 1` float32 values): `linspace(1, 0, n + 1)`,
 * then {@linkcode timeShift} with `α` = `shiftAlpha` or {@linkcode resolutionShiftAlpha}`(S, T)`.
 *
 * @param numSteps number of denoising steps `n`
 * @param imageSeqLen image tokens per latent frame `S = h·w / p²`
 * @param latentFrames latent frames `T`
 *
 * @example
 * ```ts ignore
 * const ts = getSchedule(50, 18 * 32, 32);   // [1, 0.996917, 0.993726, ..., 0.118700, 0]
 * ```
 */
export function getSchedule(
  numSteps: number,
  imageSeqLen: number,
  latentFrames: number,
  opts: ScheduleOptions = {},
): number[] {
  if (!Number.isInteger(numSteps) || numSteps < 1) {
    throw new RangeError(`getSchedule: numSteps ${numSteps} must be an integer >= 1`);
  }
  const t = linspaceF32(1, 0, numSteps + 1);
  if (opts.shift === false) return t;
  const alpha = opts.shiftAlpha ?? resolutionShiftAlpha(imageSeqLen, latentFrames, opts);
  return timeShift(alpha, t);
}

/**
 * Rounds float32 values to bfloat16 (round to nearest even), e.g. the timesteps a bf16 model sees
 * (`timesteps_bf16` of `sampling_schedules.json`).
 *
 * @example
 * ```ts ignore
 * toBf16(0.993726);   // 0.9921875
 * ```
 */
export function toBf16(x: number): number {
  const b = new Float32Array([x]);
  const u = new Uint32Array(b.buffer);
  const v = u[0]!;
  if ((v & 0x7f800000) === 0x7f800000) {
    u[0] = v & 0xffff0000; // inf / nan: truncate (keeps nan a nan)
    if ((v & 0x7fffff) !== 0) u[0] = u[0]! | 0x400000;
    return b[0]!;
  }
  u[0] = ((v + 0x7fff + ((v >>> 16) & 1)) >>> 0) & 0xffff0000;
  return b[0]!;
}
