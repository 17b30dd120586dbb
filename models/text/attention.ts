/**
 * Multi-head attention with an additive score bias, for the text encoders: T5's relative
 * position bias and CLIP's causal mask.
 *
 * The engine's fused {@linkcode attention} (flash style, linear memory) takes no bias or mask, so
 * this computes the scores explicitly: `softmax(q kᵀ · scale + bias) v` with two batched matmuls
 * and one softmax. The score tensor is `[B, H, Lq, Lk]` f32; when it would exceed the device's
 * binding limit (T5-XXL: 64 heads × 512² × 4 B = 64 MiB per prompt) the work is split by batch
 * item and head group so that each score block fits.
 *
 * @module
 */
import { concat } from "../../engine/ops/concat.ts";
import { add, mul } from "../../engine/ops/elementwise.ts";
import { matmul } from "../../engine/ops/matmul.ts";
import { permute, reshape, slice, transpose } from "../../engine/ops/movement.ts";
import { softmax } from "../../engine/ops/softmax.ts";
import { runtime } from "../../engine/runtime.ts";
import { fmtShape } from "../../engine/shape.ts";
import type { Tensor } from "../../engine/tensor.ts";

/** Options of {@linkcode biasedAttention}. */
export interface BiasedAttentionOptions {
  /** Multiplies `q kᵀ` before the bias is added; default 1 (T5 uses no scaling). */
  scale?: number;
  /** Largest score block in bytes; default the device's `maxStorageBufferBindingSize`. */
  maxScoreBytes?: number;
}

/**
 * `softmax(q kᵀ · scale + bias) v` per batch item and head. `q` is `[B, H, Lq, D]`, `k` and `v`
 * `[B, H, Lk, D]` (views are fine); `bias` is `[H, Lq, Lk]` or `[1, Lq, Lk]` (shared by the batch
 * and, for the second form, the heads). Returns `[B, H, Lq, D]`.
 *
 * @example
 * ```ts ignore
 * const o = biasedAttention(q, k, v, positionBias);                 // T5: no scaling
 * const c = biasedAttention(q, k, v, causalMask, { scale: 0.125 }); // CLIP
 * ```
 */
export function biasedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  bias: Tensor,
  options: BiasedAttentionOptions = {},
): Tensor {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4 || bias.rank !== 3) {
    throw new RangeError(
      `biasedAttention: expected q, k, v [B, H, L, D] and bias [H, Lq, Lk]; got q ` +
        `${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}, bias ${
          fmtShape(bias.shape)
        }`,
    );
  }
  const [B, H, Lq, D] = q.shape as [number, number, number, number];
  const Lk = k.shape[2]!;
  const hb = bias.shape[0]!;
  if (
    k.shape.join() !== [B, H, Lk, D].join() || v.shape.join() !== k.shape.join() ||
    (hb !== 1 && hb !== H) || bias.shape[1] !== Lq || bias.shape[2] !== Lk
  ) {
    throw new RangeError(
      `biasedAttention: shapes do not match: q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, ` +
        `v ${fmtShape(v.shape)}, bias ${
          fmtShape(bias.shape)
        } (bias must be [${H} or 1, ${Lq}, ${Lk}])`,
    );
  }
  const scale = options.scale ?? 1;
  const maxBytes = options.maxScoreBytes ?? runtime().maxBinding;
  const perHead = Lq * Lk * 4;
  if (perHead > maxBytes) {
    throw new RangeError(
      `biasedAttention: one head's scores (${Lq} × ${Lk} f32 = ${perHead} bytes) exceed the ` +
        `limit of ${maxBytes} bytes; use shorter sequences`,
    );
  }
  const block = (qs: Tensor, ks: Tensor, vs: Tensor, bs: Tensor): Tensor => {
    const s = matmul(qs, transpose(ks)); // [b, h, Lq, Lk]
    const z = add(scale === 1 ? s : mul(s, scale), bs);
    return matmul(softmax(z, -1), vs); // [b, h, Lq, D]
  };
  if (B * H * perHead <= maxBytes) return block(q, k, v, bias);
  const group = Math.min(H, Math.floor(maxBytes / perHead));
  const rows: Tensor[] = [];
  for (let b = 0; b < B; b++) {
    const heads: Tensor[] = [];
    for (let h0 = 0; h0 < H; h0 += group) {
      const h1 = Math.min(H, h0 + group);
      const part = (t: Tensor, L: number) => slice(t, [b, h0, 0, 0], [b + 1, h1, L, D]);
      const bs = hb === 1 ? bias : slice(bias, [h0, 0, 0], [h1, Lq, Lk]);
      heads.push(block(part(q, Lq), part(k, Lk), part(v, Lk), bs));
    }
    rows.push(heads.length === 1 ? heads[0]! : concat(heads, 1));
  }
  return rows.length === 1 ? rows[0]! : concat(rows, 0);
}

/** `[B, L, H·D]` → heads `[B, H, L, D]` (a view). */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [B, L, C] = x.shape as [number, number, number];
  return permute(reshape(x, [B, L, heads, C / heads]), [0, 2, 1, 3]);
}

/** Heads `[B, H, L, D]` → `[B, L, H·D]`. */
export function mergeHeads(x: Tensor): Tensor {
  const [B, H, L, D] = x.shape as [number, number, number, number];
  return reshape(permute(x, [0, 2, 1, 3]), [B, L, H * D]);
}
