/** Video DC-AE: encode and decode time per frame, and peak memory, for the tiny preset. */
import { fromData } from "../engine/graph.ts";
import { runtime } from "../engine/runtime.ts";
import { noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { realize } from "../engine/graph.ts";
import { dcAePreset } from "../models/dc_ae/config.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import { timeIt } from "./_report.ts";
import { type Case, rand } from "./_kino.ts";

const FRAMES = 8;

function timeCoding(
  fn: () => Tensor,
  iters: number,
  notes: string[],
  label: string,
): Promise<number> {
  const rt = runtime();
  rt.pool.resetPeak();
  return timeIt(() => {
    const y = noGrad(() => tidy(fn));
    realize([y]);
    y.dispose();
  }, { warmup: 1, iters, sync: () => rt.sync() }).then((ms) => {
    const peak = rt.pool.stats().peakInUse;
    notes.push(
      `${label}: ${(ms / FRAMES).toFixed(1)} ms per frame, peak ${(peak / 2 ** 20).toFixed(1)} MiB`,
    );
    return ms;
  });
}

/** Encode and decode of an 8-frame clip at 64x64 and 128x128 (tiny preset, seeded weights). */
export function dcAeCases(quick: boolean): Case[] {
  const cases: Case[] = [];
  for (const side of quick ? [64] : [64, 128]) {
    const shape = `tiny ${FRAMES}x${side}x${side}`;
    for (const pass of ["encode", "decode"] as const) {
      const notes: string[] = [];
      cases.push({
        name: `dc-ae ${pass}`,
        shape,
        iters: 3,
        notes,
        kino: async () => {
          const ae = new DcAe(dcAePreset("tiny"));
          ae.params.initialize(1);
          const video = [1, 3, FRAMES, side, side];
          const latent = ae.latentShape(video);
          const inShape = pass === "encode" ? video : latent;
          const n = inShape.reduce((a, b) => a * b, 1);
          const x = fromData(rand(n, 11), inShape, "f32");
          const ms = await timeCoding(
            () =>
              pass === "encode" ? ae.encode(x, { tiled: false }) : ae.decode(x, { tiled: false }),
            3,
            notes,
            `${pass} ${shape}`,
          );
          x.dispose();
          ae.params.dispose();
          return ms;
        },
      });
    }
  }
  return cases;
}
