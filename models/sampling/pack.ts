/**
 * Patchify / unpatchify between latent videos and MMDiT tokens, and the position ids of the tokens
 * (`shared/spec/mmdit.md` §3; `pack`, `unpack`, `prepare` in `opensora/utils/sampling.py`).
 *
 * Latent `[B, C, T, H·p, W·p]` ↔ tokens `[B, T·H·W, C·p²]`: token `n = (t·H + h)·W + w`
 * (time-major, then rows, then columns), feature `f = c·p² + i·p + j` for the latent pixel
 * `(h·p + i, w·p + j)`. Both directions are a reshape + permute on the GPU (one copy), no CPU work.
 *
 * @module
 */
import { fmtShape } from "../../engine/shape.ts";
import { checkAlive, type Tensor } from "../../engine/tensor.ts";
import { permute, reshape } from "../../engine/ops/movement.ts";

function checkPatch(op: string, p: number): void {
  if (!Number.isInteger(p) || p < 1) {
    throw new RangeError(`${op}: patch size ${p} must be an integer >= 1`);
  }
}

/**
 * Latent video `[B, C, T, H·p, W·p]` → tokens `[B, T·H·W, C·p²]`
 * (`b c t (h ph) (w pw) -> b (t h w) (c ph pw)`).
 *
 * @example
 * ```ts ignore
 * const tokens = pack(noise, 1);   // [1, 128, 32, 18, 32] -> [1, 18432, 128]
 * ```
 */
export function pack(latent: Tensor, p = 1): Tensor {
  checkAlive("pack", latent);
  checkPatch("pack", p);
  if (latent.rank !== 5) {
    throw new RangeError(
      `pack: expected a latent [B, C, T, H·p, W·p], got ${fmtShape(latent.shape)}`,
    );
  }
  const [b, c, t, hp, wp] = latent.shape as [number, number, number, number, number];
  if (hp % p !== 0 || wp % p !== 0) {
    throw new RangeError(
      `pack: latent height ${hp} and width ${wp} must be multiples of the patch size ${p}`,
    );
  }
  const h = hp / p;
  const w = wp / p;
  // [B, C, T·H, p, W, p] -> [B, T·H, W, C, p, p]  (T and H merged: rank 6 for the copy kernel)
  const v = reshape(latent, [b, c, t * h, p, w, p]);
  return reshape(permute(v, [0, 2, 4, 1, 3, 5]), [b, t * h * w, c * p * p]);
}

/**
 * Tokens `[B, T·H·W, C·p²]` → latent video `[B, C, T, H·p, W·p]`, the inverse of
 * {@linkcode pack}. `H`, `W` are the token grid (`ceil(height / 32)` for the HCAE).
 *
 * @example
 * ```ts ignore
 * const latent = unpack(x, 32, 18, 32, 128, 1);   // [1, 18432, 128] -> [1, 128, 32, 18, 32]
 * ```
 */
export function unpack(
  tokens: Tensor,
  T: number,
  H: number,
  W: number,
  C: number,
  p = 1,
): Tensor {
  checkAlive("unpack", tokens);
  checkPatch("unpack", p);
  const want = [T * H * W, C * p * p];
  if (tokens.rank !== 3 || tokens.shape[1] !== want[0] || tokens.shape[2] !== want[1]) {
    throw new RangeError(
      `unpack: tokens ${fmtShape(tokens.shape)} do not match [B, T·H·W = ${want[0]}, ` +
        `C·p² = ${want[1]}] for T=${T}, H=${H}, W=${W}, C=${C}, p=${p}`,
    );
  }
  const b = tokens.shape[0]!;
  const v = reshape(tokens, [b, T * H, W, C, p, p]);
  return reshape(permute(v, [0, 3, 1, 4, 2, 5]), [b, C, T, H * p, W * p]);
}

/**
 * Position ids `(t, h, w)` of every image token as floats, row-major `[B, T·h·w, 3]`, the same for
 * every row (`prepare`; `h`, `w` are the token grid, i.e. latent size / patch size).
 *
 * @example
 * ```ts ignore
 * const ids = positionIds(3, 4, 2, 3);   // Float32Array of 3·24·3; token 7 = (1, 0, 1)
 * ```
 */
export function positionIds(B: number, T: number, h: number, w: number): Float32Array {
  for (const [k, v] of Object.entries({ B, T, h, w })) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`positionIds: ${k} = ${v} must be >= 1`);
    }
  }
  const n = T * h * w;
  const out = new Float32Array(B * n * 3);
  for (let t = 0; t < T; t++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = ((t * h + y) * w + x) * 3;
        out[i] = t;
        out[i + 1] = y;
        out[i + 2] = x;
      }
    }
  }
  for (let b = 1; b < B; b++) out.copyWithin(b * n * 3, 0, n * 3);
  return out;
}

/**
 * Position ids of the text tokens: all zeros, `[B, Lt, 3]` (text positions are encoded by T5).
 *
 * @example
 * ```ts ignore
 * const txtIds = textIds(3, 512);
 * ```
 */
export function textIds(B: number, Lt: number): Float32Array {
  return new Float32Array(B * Lt * 3);
}
