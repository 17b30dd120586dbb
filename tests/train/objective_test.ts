/**
 * The flow-matching objective (`train/objective.ts`) against the spec (`training.md` §3-§6):
 * shift factors of the spec's table, the logit-normal + shift timestep distribution, the
 * condition mix (7/8 i2v_head) and the text dropout rates over many draws (CPU, no GPU), then on
 * the GPU: x_t and v vs a float64 reference, and a whole prepared micro-batch (tokens, noise,
 * condition layout for patch 1 and 2, dropout replacement, ids) vs a CPU reference.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray as data } from "../_assert_close.ts";
import { fromData } from "../../engine/graph.ts";
import { readAll } from "../../engine/ops/movement.ts";
import { normalCpu } from "../../engine/ops/random.ts";
import { tidy } from "../../engine/tensor.ts";
import { type MMDiTConfig, mmditPreset } from "../../models/mmdit/config.ts";
import {
  drawNormal,
  drawSamples,
  flowMatching,
  FlowMatchingObjective,
  inferenceShiftAlpha,
  resolveObjectiveOptions,
  shiftAlpha,
  SIGMA_MIN,
  TEXT_DROPOUT,
  trainShiftAlpha,
} from "../../train/objective.ts";

/** Float64 reference of `pack`: `[B, C, T, H·p, W·p]` → `[B, T·H·W, C·p²]`. */
function packRef(x: Float32Array, [B, C, T, Hp, Wp]: number[], p: number): Float64Array {
  const H = Hp! / p, W = Wp! / p;
  const N = T! * H * W, D = C! * p * p;
  const out = new Float64Array(B! * N * D);
  for (let b = 0; b < B!; b++) {
    for (let c = 0; c < C!; c++) {
      for (let t = 0; t < T!; t++) {
        for (let y = 0; y < Hp!; y++) {
          for (let z = 0; z < Wp!; z++) {
            const n = (t * H + Math.floor(y / p)) * W + Math.floor(z / p);
            const f = c * p * p + (y % p) * p + (z % p);
            out[(b * N + n) * D + f] = x[(((b * C! + c) * T! + t) * Hp! + y) * Wp! + z]!;
          }
        }
      }
    }
  }
  return out;
}

Deno.test("objective: shift factors of the spec table (training //4 formula and inference)", () => {
  // training.md §5: 768px 16:9 latent 18x32; T' = 32, 4, 1
  const close = (a: number, b: number, what: string) =>
    assert(Math.abs(a - b) < 5e-6, `${what}: ${a} vs ${b}`);
  close(trainShiftAlpha(18, 32, 32), 5.32687, "α_train 128 frames");
  close(trainShiftAlpha(18, 32, 4), 1.88333, "α_train 16 frames");
  close(trainShiftAlpha(18, 32, 1), 0.94167, "α_train image");
  close(inferenceShiftAlpha(18, 32, 32, 1), 6.59966, "α_infer 128 frames");
  // the //4 floors: 15x38 = 570 tokens -> 142
  close(trainShiftAlpha(15, 38, 1), 142 / 1920 + 13 / 15, "α_train 2.39:1 image");
});

Deno.test("objective: a fixed shift α overrides the size rules; bad ones are refused", async () => {
  assertEquals(shiftAlpha(3, 8, 8, 4, 2), 3);
  assertEquals(shiftAlpha("none", 8, 8, 4, 2), 1);
  // the default model's 4x8x8 latent: the training rule gives 1.75
  assert(Math.abs(shiftAlpha("train", 8, 8, 4, 2) - 1.75) < 1e-4);
  assertEquals(resolveObjectiveOptions({ shift: 2.5 }).shift, 2.5);
  for (const bad of [0, -1, Infinity, NaN]) {
    await assertThrows(() => resolveObjectiveOptions({ shift: bad }), "fixed shift must be");
  }
});

Deno.test("objective: timesteps are logit-normal then shifted (20 000 draws)", () => {
  const alpha = trainShiftAlpha(18, 32, 32);
  const ns: number[] = [];
  const ts: number[] = [];
  for (let s = 0; s < 4000; s++) {
    const d = drawSamples({ seed: 42, stream: s, batch: 5, alpha, video: true });
    for (const t of d.t) {
      assert(t > 0 && t < 1, `t = ${t} outside (0, 1)`);
      ts.push(t);
      const t0 = t / (alpha - (alpha - 1) * t); // inverse shift
      ns.push(Math.log(t0 / (1 - t0)));
    }
  }
  const mean = ns.reduce((a, b) => a + b, 0) / ns.length;
  const std = Math.sqrt(ns.reduce((a, b) => a + (b - mean) ** 2, 0) / ns.length);
  assert(Math.abs(mean) < 0.03, `logit(t0) mean ${mean}`);
  assert(Math.abs(std - 1) < 0.03, `logit(t0) std ${std}`);
  ts.sort((a, b) => a - b);
  const median = ts[ts.length >> 1]!;
  assert(Math.abs(median - alpha / (alpha + 1)) < 0.01, `median t ${median} vs α/(α+1)`);
  // the same keys give the same draws; another stream or seed others
  const a = drawSamples({ seed: 42, stream: 7, batch: 3, alpha, video: true });
  assertEquals(drawSamples({ seed: 42, stream: 7, batch: 3, alpha, video: true }), a);
  assert(drawSamples({ seed: 42, stream: 8, batch: 3, alpha, video: true }).t[0] !== a.t[0]);
  assert(drawNormal(43, 7, 0) !== drawNormal(42, 7, 0));
});

Deno.test("objective: condition mix 7/8 i2v_head on videos, t2v on images; dropout p independently", async () => {
  let i2v = 0, n = 0, dT5 = 0, dClip = 0, both = 0;
  for (let s = 0; s < 5000; s++) {
    const d = drawSamples({ seed: 3, stream: s, batch: 4, alpha: 1.5, video: true });
    d.condition.forEach((c, b) => {
      n++;
      if (c === "i2v_head") i2v++;
      if (d.dropT5[b]) dT5++;
      if (d.dropClip[b]) dClip++;
      if (d.dropT5[b] && d.dropClip[b]) both++;
    });
  }
  // 20 000 samples: standard errors 0.0023 (mix), 0.0033 (dropout), 0.0021 (both)
  assert(Math.abs(i2v / n - 7 / 8) < 0.01, `i2v_head fraction ${i2v / n}`);
  assert(Math.abs(dT5 / n - TEXT_DROPOUT) < 0.015, `T5 dropout ${dT5 / n}`);
  assert(Math.abs(dClip / n - TEXT_DROPOUT) < 0.015, `CLIP dropout ${dClip / n}`);
  assert(
    Math.abs(both / n - TEXT_DROPOUT ** 2) < 0.01,
    `both dropped ${both / n} (not independent)`,
  );
  for (let s = 0; s < 200; s++) {
    const img = drawSamples({ seed: 3, stream: s, batch: 4, alpha: 1, video: false });
    assert(img.condition.every((c) => c === "t2v"), "image batches must be t2v");
    const t2v = drawSamples({
      seed: 3,
      stream: s,
      batch: 4,
      alpha: 1,
      video: true,
      conditionWeights: { t2v: 1 },
      t5Dropout: 0,
      clipDropout: 0,
    });
    assert(t2v.condition.every((c) => c === "t2v") && !t2v.dropT5.some((x) => x));
  }
  await assertThrows(
    () =>
      drawSamples({ seed: 3, stream: 0, batch: 1, alpha: 1, video: true, conditionWeights: {} }),
    "must not all be zero",
  );
});

gpuTest("objective: x_t and v match a float64 reference", async () => {
  const [B, N, D] = [3, 7, 5];
  const x0 = data(B * N * D, 1), eps = data(B * N * D, 2);
  const t = new Float32Array([0.013, 0.5, 0.987]);
  const [xt, v] = await readAll(tidy(() => {
    const r = flowMatching(fromData(x0, [B, N, D], "f32"), fromData(eps, [B, N, D], "f32"), t);
    return [r.xt, r.v];
  }));
  const xr = new Float64Array(B * N * D), vr = new Float64Array(B * N * D);
  const s = SIGMA_MIN;
  for (let i = 0; i < xr.length; i++) {
    const tb = t[Math.floor(i / (N * D))]!;
    xr[i] = (1 - tb) * x0[i]! + (1 - (1 - s) * (1 - tb)) * eps[i]!;
    vr[i] = (1 - s) * eps[i]! - x0[i]!;
  }
  assertClose(xt!, xr, { atol: 1e-6, rtol: 1e-6, shape: [B, N, D], label: "x_t" });
  assertClose(v!, vr, { atol: 1e-6, rtol: 1e-6, shape: [B, N, D], label: "v" });
});

/** A stream whose draws have both condition types and both dropout outcomes for T5 and CLIP. */
function mixedStream(seed: number, B: number, alpha: number): number {
  for (let s = 0; s < 10000; s++) {
    const d = drawSamples({ seed, stream: s, batch: B, alpha, video: true });
    const has = (xs: unknown[], v: unknown) => xs.includes(v);
    if (
      has(d.condition, "t2v") && has(d.condition, "i2v_head") && has(d.dropT5, true) &&
      has(d.dropT5, false) && has(d.dropClip, true) && has(d.dropClip, false)
    ) return s;
  }
  throw new Error("no mixed stream found");
}

for (const p of [1, 2]) {
  gpuTest(
    `objective: a prepared video micro-batch matches the CPU reference (patch ${p})`,
    async () => {
      const C = 4, T = 3, h = 2 * p, w = 3 * p, B = 4, Lt = 5;
      const cfg: MMDiTConfig = { ...mmditPreset("tiny"), inChannels: C * p * p, patchSize: p };
      const ctx = cfg.contextInDim, vd = cfg.vecInDim;
      const shape = [B, C, T, h, w];
      const lat = data(B * C * T * h * w, 10), ref = data(B * C * h * w, 11);
      const txt = data(B * Lt * ctx, 12), y = data(B * vd, 13);
      const nullTxt = data(Lt * ctx, 14), nullY = data(vd, 15);
      const seed = 1234;
      const obj = new FlowMatchingObjective(cfg, { seed }, { txt: nullTxt, yVec: nullY });
      const alpha = trainShiftAlpha(h, w, T);
      const stream = mixedStream(seed, B, alpha);
      const H = h / p, W = w / p, N = T * H * W, D = C * p * p;
      const out = tidy(() => {
        const r = obj.prepare(
          { latents: lat, latentShape: shape, refLatents: ref, txt, yVec: y },
          stream,
        );
        return {
          img: r.inputs.img,
          v: r.target,
          cond: r.inputs.cond!,
          txt: r.inputs.txt,
          y: r.inputs.yVec,
          ts: r.inputs.timesteps,
          draws: r.draws,
          ids: r.inputs.imgIds,
          alpha: r.alpha,
          tokens: r.tokens,
        };
      });
      const [img, v, cond, tx, yy, ts] = await readAll([
        out.img,
        out.v,
        out.cond,
        out.txt,
        out.y,
        out.ts,
      ]);
      const d = drawSamples({ seed, stream, batch: B, alpha, video: true });
      assertEquals(out.draws, d);
      assertEquals(out.alpha, alpha);
      assertEquals(out.tokens, B * N);
      assertEquals([...ts!], [...d.t]);
      // x_t, v from the packed latents and the engine's counter-based noise (CPU twin)
      const x0 = packRef(lat, shape, p);
      const eps = normalCpu(B * N * D, { seed, offset: stream });
      const xr = new Float64Array(x0.length), vr = new Float64Array(x0.length);
      for (let i = 0; i < x0.length; i++) {
        const tb = d.t[Math.floor(i / (N * D))]!;
        xr[i] = (1 - tb) * x0[i]! + (SIGMA_MIN + (1 - SIGMA_MIN) * tb) * eps[i]!;
        vr[i] = (1 - SIGMA_MIN) * eps[i]! - x0[i]!;
      }
      assertClose(img!, xr, { atol: 2e-5, rtol: 1e-5, label: "x_t", shape: [B, N, D] });
      assertClose(v!, vr, { atol: 2e-5, rtol: 1e-5, label: "v", shape: [B, N, D] });
      // cond = pack([mask, mask·ref]) with the mask on frame 0 of i2v_head samples
      const cvol = new Float32Array(B * (C + 1) * T * h * w);
      for (let b = 0; b < B; b++) {
        if (d.condition[b] !== "i2v_head") continue;
        for (let c = 0; c <= C; c++) {
          for (let k = 0; k < h * w; k++) {
            cvol[((b * (C + 1) + c) * T + 0) * h * w + k] = c === 0
              ? 1
              : ref[(b * C + c - 1) * h * w + k]!;
          }
        }
      }
      assertClose(cond!, packRef(cvol, [B, C + 1, T, h, w], p), {
        atol: 0,
        rtol: 0,
        label: "cond",
        shape: [B, N, (C + 1) * p * p],
      });
      // dropout: whole rows replaced by the null embeddings
      const txtRef = new Float32Array(txt), yRef = new Float32Array(y);
      for (let b = 0; b < B; b++) {
        if (d.dropT5[b]) txtRef.set(nullTxt, b * Lt * ctx);
        if (d.dropClip[b]) yRef.set(nullY, b * vd);
      }
      assertClose(tx!, txtRef, { atol: 0, rtol: 0, label: "txt after dropout" });
      assertClose(yy!, yRef, { atol: 0, rtol: 0, label: "yVec after dropout" });
      // position ids (t, h, w) of token n
      const n = (1 * H + 1) * W + 2;
      assertEquals([...out.ids.subarray(n * 3, n * 3 + 3)], [1, 1, 2]);
      for (const t of [out.img, out.v, out.cond, out.txt, out.y, out.ts]) t.dispose();
      obj.dispose();
    },
  );
}

gpuTest("objective: images get no condition; missing inputs give clear errors", async () => {
  const cfg = mmditPreset("tiny");
  const C = 16, h = 2, w = 3, B = 2, Lt = 3;
  const base = {
    latents: data(B * C * h * w, 1),
    latentShape: [B, C, 1, h, w],
    txt: data(B * Lt * cfg.contextInDim, 2),
    yVec: data(B * cfg.vecInDim, 3),
  };
  const obj = new FlowMatchingObjective(cfg, { t5Dropout: 0, clipDropout: 0 });
  const r = tidy(() => {
    const p = obj.prepare(base, 5);
    return { cond: p.inputs.cond ?? null, alpha: p.alpha, img: p.inputs.img };
  });
  assertEquals(r.cond, null);
  assertEquals(r.alpha, trainShiftAlpha(h, w, 1));
  r.img.dispose();
  // a video batch whose draws include i2v_head needs refLatents
  const vid = { ...base, latents: data(B * C * 2 * h * w, 1), latentShape: [B, C, 2, h, w] };
  const s = [...Array(100).keys()].find((k) =>
    drawSamples({ seed: 42, stream: k, batch: B, alpha: 1, video: true }).condition.includes(
      "i2v_head",
    )
  )!;
  await assertThrows(() => tidy(() => obj.prepare(vid, s)), "refLatents");
  await assertThrows(() => new FlowMatchingObjective(cfg, {}), "null T5 embedding");
  await assertThrows(
    () => tidy(() => obj.prepare({ ...base, latentShape: [B, 8, 2, h, w] }, 0)),
    "latents have 8 channels",
  );
  await assertThrows(
    () => tidy(() => obj.prepare({ ...base, latentShape: [B, C, 2, h, w] }, 0)),
    "values do not fit",
  );
  obj.dispose();
});
