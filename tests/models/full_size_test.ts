/**
 * `--synthetic-weights` machinery at small widths: weights made on the GPU are deterministic per
 * name and seed, follow the declared init and storage dtype, a synthetic streamer keeps at most one
 * group resident and gives the same output as the same weights made resident, and the full-size
 * measurement (`bench/full_size.ts`) runs its three stages end to end with small models of the
 * same classes (the release sizes run with `deno task bench --synthetic-weights`).
 */
import { ok as assert } from "node:assert/strict";
import { read } from "../../engine/ops/movement.ts";
import { fromData } from "../../engine/graph.ts";
import { keep, noGrad, tidy } from "../../engine/tensor.ts";
import { ParamSet } from "../../models/params.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import { mmditPreset } from "../../models/mmdit/config.ts";
import { dcAePreset } from "../../models/dc_ae/config.ts";
import { t5ConfigFromHf } from "../../models/text/t5.ts";
import { clipTextConfigFromHf } from "../../models/text/clip.ts";
import { WeightStreamer } from "../../models/streaming.ts";
import { positionIds, textIds } from "../../models/sampling/pack.ts";
import { fullSizeRun } from "../../bench/full_size.ts";
import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, randomArray } from "../_assert_close.ts";

gpuTest("synthesize: seeded per name, the declared init's range, the storage dtype", async () => {
  const ps = new ParamSet("bf16");
  ps.declare("a.weight", [40, 30]); // fan_in 30: bound 1/sqrt(10)
  ps.declare("a.bias", [40], "zeros");
  ps.declare("n.weight", [30], "ones");
  ps.declare("u.weight", [20, 10], { uniform: 0.5 });
  for (const s of ps.list()) ps.synthesize(s.name, 7);
  const w = ps.get("a.weight");
  assert(w.dtype === "bf16" && ps.get("a.bias").dtype === "f32", "storage dtypes");
  const wv = await read(w); // widened from bf16
  const bound = Math.sqrt(3 / 30);
  assert(wv.every((x) => Math.abs(x) <= bound * 1.01), "within the fan-in bound");
  const mean = wv.reduce((a, b) => a + Math.abs(b), 0) / wv.length;
  assert(Math.abs(mean - bound / 2) < bound * 0.1, `mean |w| ${mean} vs ${bound / 2}`);
  assert((await read(ps.get("a.bias"))).every((x) => x === 0));
  assert((await read(ps.get("n.weight"))).every((x) => x === 1));
  const u = await read(ps.get("u.weight"));
  assert(u.every((x) => Math.abs(x) <= 0.5) && u.some((x) => Math.abs(x) > 0.4));
  // the same name and seed again: the same values; another seed: others
  ps.synthesize("u.weight", 7);
  assertClose(await read(ps.get("u.weight")), u, { atol: 0, rtol: 0 });
  ps.synthesize("u.weight", 8);
  assert((await read(ps.get("u.weight"))).some((x, i) => x !== u[i]));
  ps.dispose();
});

gpuTest("synthetic streamer: one group at a time, the same output as resident", async () => {
  const cfg = mmditPreset("tiny");
  const N = 12, LT = 5;
  const f = (shape: number[], s: number) =>
    fromData(randomArray(shape.reduce((a, b) => a * b), s), shape, "f32");
  const x = {
    img: f([1, N, cfg.inChannels], 1),
    imgIds: positionIds(1, 1, 3, 4),
    txt: f([1, LT, cfg.contextInDim], 2),
    txtIds: textIds(1, LT),
    timesteps: fromData(new Float32Array([0.5]), [1], "f32"),
    yVec: f([1, cfg.vecInDim], 3),
    cond: f([1, N, cfg.inChannels + 1], 4),
  };
  const run = async (dit: MMDiT) => {
    const y = noGrad(() => tidy(() => keep(dit.forward(x))));
    const v = await read(y);
    y.dispose();
    return v;
  };
  const resident = new MMDiT(cfg, { storage: "bf16" });
  for (const s of resident.params.list()) resident.params.synthesize(s.name, 3);
  const want = await run(resident);
  resident.params.dispose();
  const streamed = new MMDiT(cfg, { storage: "bf16" });
  const s = WeightStreamer.synthetic(streamed.params, 3);
  s.attach(streamed);
  const pool = gpu().pool;
  const inUse0 = pool.stats().inUse;
  pool.resetPeak();
  const got = await run(streamed);
  // the GPU really holds one group at a time: the views of a group's weights die with the group
  const gpuPeak = pool.stats().peakInUse - inUse0;
  assertClose(got, want, { atol: 0, rtol: 0, label: "synthetic streamed vs resident" });
  assert(streamed.params.tensors().length === 0, "weights left on the GPU");
  assert(s.hostBytes === 0, "synthetic weights hold no host copy");
  const total = streamed.params.list().reduce(
    (a, p) => a + p.shape.reduce((m, n) => m * n, 1) * (p.shape.length >= 2 ? 2 : 4),
    0,
  );
  assert(s.uploaded === total && s.peakResident < total / 2, `${s.peakResident} of ${total}`);
  assert(gpuPeak < 0.75 * total, `GPU peak ${gpuPeak} B while streaming ${total} B of weights`);
  for (const t of Object.values(x)) if (t && typeof t === "object" && "dispose" in t) t.dispose();
});

gpuTest("full-size measurement: the three stages run with small models", async () => {
  const t5 = t5ConfigFromHf(
    JSON.parse(
      await Deno.readTextFile(new URL("../../weights/default/t5/config.json", import.meta.url)),
    ),
  );
  const clip = clipTextConfigFromHf(
    JSON.parse(
      await Deno.readTextFile(new URL("../../weights/default/clip/config.json", import.meta.url)),
    ),
  );
  const ae = dcAePreset("small");
  const dit = {
    ...mmditPreset("tiny"),
    inChannels: ae.latentChannels,
    contextInDim: t5.dModel,
    vecInDim: clip.hiddenSize,
  };
  const figs = await fullSizeRun({ height: 64, width: 64, models: { dit, ae, t5, clip } });
  assert(
    figs.map((f) => f.stage).join() === "text encoders,MMDiT denoising,DC-AE decoding",
    figs.map((f) => f.stage).join(),
  );
  for (const f of figs) {
    assert(f.ms > 0 && f.peakDevice > 0 && f.peakHost > 0, JSON.stringify(f));
    assert(Number.isFinite(f.predicted) || f.stage === "text encoders", JSON.stringify(f));
  }
});
