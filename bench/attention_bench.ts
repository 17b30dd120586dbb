/**
 * Attention cases: the fused forward and forward+backward at B1 H8 L1024 D64 against TF.js
 * (`softmax(q kᵀ / sqrt(d)) v` with its L×L intermediates), plus a memory note: the peak bytes
 * of a forward at L 1024, 2048, 4096 (linear in L: only the output and a per-row log-sum-exp).
 */
import { fromData, realize } from "../engine/graph.ts";
import { backward, parameter, zeroGrad } from "../engine/autograd.ts";
import { attention } from "../engine/ops/attention.ts";
import { runtime } from "../engine/runtime.ts";
import { type Tensor, tidy } from "../engine/tensor.ts";
import { FLOPS, timeIt } from "./_report.ts";
import { type Case, kinoTime, rand } from "./_kino.ts";

/** Peak pool bytes in use while one forward at `[b, h, l, d]` runs (inputs excluded). */
export async function attentionPeakBytes(b: number, h: number, l: number, d: number) {
  const rt = runtime();
  const n = b * h * l * d;
  const [q, k, v] = [1, 2, 3].map((s) => fromData(rand(n, s), [b, h, l, d], "f32"));
  await rt.sync();
  const before = rt.pool.stats().inUse;
  rt.pool.resetPeak();
  const y = attention(q!, k!, v!);
  realize([y]);
  await rt.sync();
  const peak = rt.pool.stats().peakInUse - before;
  for (const t of [y, q!, k!, v!]) t.dispose();
  return peak;
}

const MiB = (x: number) => `${(x / 2 ** 20).toFixed(2)} MiB`;

/** The attention cases (`quick` only shortens the runs). */
export function attentionCases(quick: boolean): Case[] {
  const [B, H, L, D] = [1, 8, 1024, 64];
  const n = B * H * L * D;
  const iters = quick ? 2 : 4;
  const memNotes: string[] = [];
  const fwd: Case = {
    name: "attention fwd",
    shape: `B${B} H${H} L${L} D${D}`,
    flops: FLOPS.attentionFwd(B, H, L, D),
    iters,
    notes: memNotes,
    kino: async () => {
      const [q, k, v] = [1, 2, 3].map((s) => fromData(rand(n, s), [B, H, L, D], "f32"));
      const ms = await kinoTime(() => attention(q!, k!, v!), iters).finally(() => {
        for (const t of [q!, k!, v!]) t.dispose();
      });
      memNotes.length = 0;
      const figures: string[] = [];
      for (const l of [1024, 2048, 4096]) {
        const peak = await attentionPeakBytes(1, H, l, D);
        figures.push(
          `L ${l}: ${MiB(peak)} (${(peak / l / 1024).toFixed(2)} KiB per token; the H·L² ` +
            `score matrix alone would be ${MiB(4 * H * l * l)})`,
        );
      }
      memNotes.push(`forward peak memory (H${H} D${D}, inputs excluded): ${figures.join("; ")}`);
      return ms;
    },
    peer: (p) => p.attention(B, H, L, D, { warmup: 1, iters }),
  };
  const fwdBwd: Case = {
    name: "attention fwd+bwd",
    shape: `B${B} H${H} L${L} D${D}`,
    flops: FLOPS.attentionFwdBwd(B, H, L, D),
    iters,
    kino: async () => {
      const ps = ["q", "k", "v"].map((name, i) =>
        parameter(name, rand(n, i + 1), [B, H, L, D])
      ) as [Tensor, Tensor, Tensor];
      const g = fromData(rand(n, 4), [B, H, L, D], "f32");
      const rt = runtime();
      const ms = await timeIt(() => {
        const grads = tidy(() => {
          const y = attention(ps[0], ps[1], ps[2]);
          backward(y, g);
          return ps.map((p) => p.grad!);
        });
        realize(grads);
        zeroGrad(ps);
      }, { warmup: 1, iters, sync: () => rt.sync() }).finally(() => {
        for (const t of [...ps, g]) t.dispose();
      });
      return ms;
    },
    peer: (p) => p.attentionFwdBwd(B, H, L, D, { warmup: 1, iters }),
  };
  return [fwd, fwdBwd];
}
