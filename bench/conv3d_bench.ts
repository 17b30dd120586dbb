/**
 * conv3d cases: forward, and forward + gradients w.r.t. input and weight, at N1 C64→64 T8
 * 32×32 k3 pad 1 (the shape of the issue), with TF.js's `conv3d` / `conv3dFwdBwd` as the peer.
 */
import { fromData, realize } from "../engine/graph.ts";
import { backward, parameter, zeroGrad } from "../engine/autograd.ts";
import { conv3d } from "../engine/ops/conv3d.ts";
import { runtime } from "../engine/runtime.ts";
import { tidy } from "../engine/tensor.ts";
import { FLOPS, timeIt } from "./_report.ts";
import { type Case, kinoTime, rand } from "./_kino.ts";

/** The conv3d cases (`quick` runs fewer iterations). */
export function conv3dCases(quick: boolean): Case[] {
  const [n, cin, cout, t, h, w, k, pad] = [1, 64, 64, 8, 32, 32, 3, 1];
  const shape = `N${n} C${cin}→${cout} T${t} ${h}x${w} k${k} pad${pad}`;
  const iters = quick ? 2 : 5;
  const xShape = [n, cin, t, h, w];
  const wShape = [cout, cin, k, k, k];
  const yShape = [n, cout, t + 2 * pad - k + 1, h + 2 * pad - k + 1, w + 2 * pad - k + 1];
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  return [
    {
      name: "conv3d fwd",
      shape,
      flops: FLOPS.conv3dFwd(n, cin, cout, t, h, w, k, pad),
      iters,
      kino: () => {
        const x = fromData(rand(size(xShape), 11), xShape, "f32");
        const wt = fromData(rand(size(wShape), 12), wShape, "f32");
        return kinoTime(() => conv3d(x, wt, { padding: pad }), iters).finally(() => {
          x.dispose();
          wt.dispose();
        });
      },
      peer: (p) => p.conv3d(n, cin, cout, t, h, w, k, pad, { warmup: 1, iters }),
    },
    {
      name: "conv3d fwd+bwd",
      shape: `${shape}, grads x + weight`,
      flops: FLOPS.conv3dFwdBwd(n, cin, cout, t, h, w, k, pad),
      iters,
      kino: () => {
        const x = parameter("x", rand(size(xShape), 11), xShape);
        const wt = parameter("w", rand(size(wShape), 12), wShape);
        const dy = fromData(rand(size(yShape), 13), yShape, "f32");
        const step = () => {
          const y = tidy(() => {
            const out = conv3d(x, wt, { padding: pad });
            backward(out, dy);
            return out;
          });
          realize([y]);
          y.dispose();
          zeroGrad([x, wt]);
        };
        return timeIt(step, { warmup: 1, iters, sync: () => runtime().sync() }).finally(() => {
          for (const v of [x, wt, dy]) v.dispose();
        });
      },
      // TF.js takes ~20 s per step here (its filter gradient dominates): fewer runs
      peer: (p) =>
        p.conv3dFwdBwd(n, cin, cout, t, h, w, k, pad, { warmup: 1, iters: quick ? 1 : 2 }),
    },
  ];
}
