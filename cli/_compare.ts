/** Comparison rows of `deno task golden` (shared by every case kind). */

/** One compared tensor. */
export interface Row {
  name: string;
  shape: number[];
  abs: number;
  rel: number;
  ok: boolean;
}

/** Max abs/rel error of `got` vs `want`; ok when every element is within atol + rtol·|want|. */
export function compare(
  name: string,
  got: Float32Array,
  want: Float32Array,
  shape: number[],
  atol: number,
  rtol: number,
): Row {
  let abs = 0;
  let rel = 0;
  let ok = got.length === want.length;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    abs = Math.max(abs, d);
    rel = Math.max(rel, d / Math.max(Math.abs(want[i]!), 1e-12));
    if (!(d <= atol + rtol * Math.abs(want[i]!))) ok = false;
  }
  return { name, shape, abs, rel, ok };
}
