/**
 * Image/video conditioning of the i2v denoiser and the classifier-free-guidance batch
 * (`shared/spec/sampling.md` §6–8; `prepare_inference_condition`, `collect_references_batch`,
 * `I2VDenoiser.prepare_guidance`, the reference overwrite of `api_fn`).
 *
 * References are DC-AE latents, one list per batch row (`null` for a row without reference):
 * `i2v_head` / `i2v_tail` take one image latent `[C, 1, h, w]`, `i2v_loop` two (first and last
 * image), `v2v_*` one video latent. A leading batch axis of 1 (`[1, C, T', h, w]`, as
 * `DcAe.encode` returns it) is accepted too.
 *
 * @module
 */
import { fmtShape, type Shape } from "../../engine/shape.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { tensor } from "../../engine/ops/create.ts";
import { zeros } from "../../engine/ops/elementwise.ts";
import { concat } from "../../engine/ops/concat.ts";
import { narrow, reshape } from "../../engine/ops/movement.ts";
import { pack } from "./pack.ts";

/** The condition types of the reference (`cond_type`). */
export type CondType =
  | "t2v"
  | "i2v_head"
  | "i2v_tail"
  | "i2v_loop"
  | "v2v_head"
  | "v2v_tail"
  | "v2v_head_easy"
  | "v2v_tail_easy";

const COND_TYPES: readonly CondType[] = [
  "t2v",
  "i2v_head",
  "i2v_tail",
  "i2v_loop",
  "v2v_head",
  "v2v_tail",
  "v2v_head_easy",
  "v2v_tail_easy",
];

/** Reference latents of one batch row (`[C, T', h, w]` or `[1, C, T', h, w]` each), or null. */
export type RowReferences = readonly Tensor[] | null;

/** The prepared condition of a batch of `N` rows. */
export interface Condition {
  /**
   * The effective condition type: `t2v` when an i2v/v2v type was asked for without any
   * reference (the reference falls back the same way).
   */
  condType: CondType;
  /** `[N, 1, T, h, w]`: 1 on the conditioned latent frames. */
  masks: Tensor;
  /** `[N, C, T, h, w]`: the reference latents on the conditioned frames, 0 elsewhere. */
  maskedRef: Tensor;
  /** `pack(concat([masks, maskedRef], 1))`: `[N, L, (C + 1)·p²]`, channel 0 the mask (p = 1). */
  cond: Tensor;
}

/** Options of {@linkcode prepareCondition}. */
export interface ConditionOptions {
  /** `is_causal_vae` (adds one frame to the v2v frame counts); default true (HCAE config). */
  causal?: boolean;
  /** MMDiT patch size; default 1. */
  patchSize?: number;
}

function asFrames(ref: Tensor, C: number, h: number, w: number, what: string): Tensor {
  const r = ref.rank === 5 && ref.shape[0] === 1 ? reshape(ref, ref.shape.slice(1)) : ref;
  if (r.rank !== 4 || r.shape[0] !== C || r.shape[2] !== h || r.shape[3] !== w) {
    throw new RangeError(
      `${what}: reference latent ${fmtShape(ref.shape)} does not match [C=${C}, T', h=${h}, ` +
        `w=${w}] of the noise (encode the reference at the video's pixel size)`,
    );
  }
  return r;
}

/** Latent frames `[start, start + k)` of the row that carry `source` frames (in order). */
interface Placement {
  start: number;
  source: Tensor; // [C, k, h, w]
}

function placements(
  condType: CondType,
  refs: readonly Tensor[],
  T: number,
  causal: boolean,
): Placement[] {
  const first = refs[0]!;
  const last = refs[refs.length - 1]!;
  const frames = (r: Tensor, start: number, k: number, what: string) => {
    const tr = r.shape[1]!;
    if (k > T || k > tr || start < 0 || start + k > tr) {
      throw new RangeError(
        `${condType}: needs ${k} latent frames of the reference (${what}) and ${k} of the video; ` +
          `the reference has ${tr}, the video ${T}`,
      );
    }
    return narrow(r, 1, start, k);
  };
  const tr = (r: Tensor) => r.shape[1]!;
  switch (condType) {
    case "t2v":
      return [];
    case "i2v_head":
      return [{ start: 0, source: frames(first, 0, 1, "its first frame") }];
    case "i2v_tail":
      return [{ start: T - 1, source: frames(last, tr(last) - 1, 1, "its last frame") }];
    case "i2v_loop":
      return [
        { start: 0, source: frames(first, 0, 1, "first frame of the first") },
        { start: T - 1, source: frames(last, tr(last) - 1, 1, "last frame of the last") },
      ];
    case "v2v_head":
    case "v2v_head_easy": {
      const k = (condType === "v2v_head" ? 8 : 16) + (causal ? 1 : 0);
      return [{ start: 0, source: frames(first, 0, k, "head") }];
    }
    case "v2v_tail":
    case "v2v_tail_easy": {
      const k = (condType === "v2v_tail" ? 8 : 16) + (causal ? 1 : 0);
      return [{ start: T - k, source: frames(first, tr(first) - k, k, "tail") }];
    }
  }
}

/**
 * Builds `masks`, `masked_ref` and `cond` for the noise shape `[N, C, T, h, w]`
 * (`prepare_inference_condition`): per row with references and `T > 1`, the conditioned latent
 * frames get mask 1 and the reference latent — `i2v_head`: frame 0 ← first frame of `refs[0]`;
 * `i2v_tail`: frame T−1 ← last frame of the last ref; `i2v_loop`: both; `v2v_head`/`_tail`:
 * the first/last `8 (+1 if causal)` frames (`_easy`: 16 (+1)) of `refs[0]`. Rows without
 * references, `t2v`, and single-frame latents get zeros.
 *
 * @example
 * ```ts ignore
 * const ref = ae.encode(image);                       // [1, 128, 1, 18, 32]
 * const c = prepareCondition([1, 128, 32, 18, 32], "i2v_head", [[ref]]);
 * ```
 */
export function prepareCondition(
  noiseShape: Shape,
  condType: CondType,
  references: readonly RowReferences[] = [],
  opts: ConditionOptions = {},
): Condition {
  const { causal = true, patchSize = 1 } = opts;
  if (!COND_TYPES.includes(condType)) {
    throw new RangeError(
      `condition type "${condType}" is unknown; use one of ${COND_TYPES.join(", ")}`,
    );
  }
  if (noiseShape.length !== 5) {
    throw new RangeError(
      `prepareCondition: expected the noise shape [N, C, T, h, w], got ${fmtShape(noiseShape)}`,
    );
  }
  const [N, C, T, h, w] = noiseShape as [number, number, number, number, number];
  if (references.length > N) {
    throw new RangeError(`prepareCondition: ${references.length} reference rows for ${N} rows`);
  }
  const hasAny = references.some((r) => r && r.length > 0);
  const type: CondType = condType !== "t2v" && !hasAny ? "t2v" : condType;
  const maskData = new Float32Array(N * T * h * w);
  const rows: Tensor[] = [];
  let conditioned = false;
  for (let i = 0; i < N; i++) {
    const refs = references[i];
    let place: Placement[] = [];
    if (type !== "t2v" && refs && refs.length > 0 && T > 1) {
      const frames = refs.map((r, k) => asFrames(r, C, h, w, `row ${i} reference ${k}`));
      place = placements(type, frames, T, causal);
    }
    if (place.length === 0) {
      rows.push(zeros([1, C, T, h, w]));
      continue;
    }
    conditioned = true;
    // zeros between the conditioned frame ranges (which never overlap for T > 1)
    const parts: Tensor[] = [];
    let f = 0;
    for (const p of [...place].sort((a, b) => a.start - b.start)) {
      const k = p.source.shape[1]!;
      if (p.start > f) parts.push(zeros([C, p.start - f, h, w]));
      parts.push(p.source);
      maskData.fill(1, (i * T + p.start) * h * w, (i * T + p.start + k) * h * w);
      f = p.start + k;
    }
    if (f < T) parts.push(zeros([C, T - f, h, w]));
    rows.push(reshape(concat(parts, 1), [1, C, T, h, w]));
  }
  const masks = tensor(maskData, [N, 1, T, h, w]);
  const maskedRef = conditioned ? (N === 1 ? rows[0]! : concat(rows, 0)) : zeros([N, C, T, h, w]);
  const cond = pack(concat([masks, maskedRef], 1), patchSize);
  return { condType: type, masks, maskedRef, cond };
}

/**
 * The texts of the `3N` CFG rows: `[prompts; negatives; negatives]` (negatives default to `""`),
 * as `I2VDenoiser.prepare_guidance` orders them for the text encoders.
 *
 * @example
 * ```ts ignore
 * cfgTexts(["a cat"]);   // ["a cat", "", ""]
 * ```
 */
export function cfgTexts(prompts: readonly string[], negatives?: readonly string[]): string[] {
  const neg = negatives ?? prompts.map(() => "");
  if (neg.length !== prompts.length) {
    throw new RangeError(`cfgTexts: ${neg.length} negative prompts for ${prompts.length} prompts`);
  }
  return [...prompts, ...neg, ...neg];
}

/**
 * Stacks per-row text states (or pooled vectors) of the prompts and negatives into the `3N` CFG
 * rows `[prompt; neg; neg]`.
 *
 * @example
 * ```ts ignore
 * const txt = cfgRows(t5Prompt, t5Neg);   // [N, 512, 4096] x2 -> [3N, 512, 4096]
 * ```
 */
export function cfgRows(prompt: Tensor, negative: Tensor): Tensor {
  if (prompt.shape.join() !== negative.shape.join()) {
    throw new RangeError(
      `cfgRows: prompt ${fmtShape(prompt.shape)} and negative ${fmtShape(negative.shape)} differ`,
    );
  }
  return concat([prompt, negative, negative], 0);
}

/**
 * The condition of the `3N` CFG rows: `[cond; cond; 0]` (the third block has no image condition,
 * mask channel included).
 *
 * @example
 * ```ts ignore
 * const cond3 = cfgCondition(condition.cond);   // [N, L, 129] -> [3N, L, 129]
 * ```
 */
export function cfgCondition(cond: Tensor): Tensor {
  return concat([cond, cond, zeros(cond.shape)], 0);
}

/**
 * `api_fn`'s overwrite after sampling: for `i2v_head` latent frame 0, for `i2v_tail` the last
 * frame, for `i2v_loop` both, of **batch row 0 only** (as the reference; other rows keep their
 * sampled frames), with the first frame of `references[0][0]` / the last frame of
 * `references[0][last]`. Other condition types return the latent unchanged (as a new tensor).
 *
 * @example
 * ```ts ignore
 * const out = applyReferenceOverwrite(latent, condition.condType, [[ref]]);
 * ```
 */
export function applyReferenceOverwrite(
  latent: Tensor,
  condType: CondType,
  references: readonly RowReferences[],
): Tensor {
  if (latent.rank !== 5) {
    throw new RangeError(
      `applyReferenceOverwrite: expected a latent [N, C, T, h, w], got ${fmtShape(latent.shape)}`,
    );
  }
  const [N, C, T, h, w] = latent.shape as [number, number, number, number, number];
  const head = condType === "i2v_head" || condType === "i2v_loop";
  const tail = condType === "i2v_tail" || condType === "i2v_loop";
  if (!head && !tail) return concat([latent], 0);
  const refs = references[0];
  if (!refs || refs.length === 0) {
    throw new RangeError(
      `applyReferenceOverwrite: ${condType} needs the reference latent of row 0 (got none)`,
    );
  }
  const frames = refs.map((r, k) => asFrames(r, C, h, w, `row 0 reference ${k}`));
  const row = narrow(latent, 0, 0, 1);
  const first = reshape(narrow(frames[0]!, 1, 0, 1), [1, C, 1, h, w]);
  const lastRef = frames[frames.length - 1]!;
  const last = reshape(narrow(lastRef, 1, lastRef.shape[1]! - 1, 1), [1, C, 1, h, w]);
  let slots: Tensor[];
  if (T === 1) slots = [tail ? last : first]; // frame 0 is also the last frame: tail written last
  else {
    slots = [head ? first : narrow(row, 2, 0, 1)];
    if (T > 2) slots.push(narrow(row, 2, 1, T - 2));
    slots.push(tail ? last : narrow(row, 2, T - 1, 1));
  }
  const row0 = concat(slots, 2);
  return N === 1 ? row0 : concat([row0, narrow(latent, 0, 1, N - 1)], 0);
}
