/**
 * The training core (`train/trainer.ts`):
 * - one update on the `mmdit_tiny` fixture gives the PyTorch loss and every parameter gradient
 *   (1e-4 abs + 1e-4 rel, as the golden runner), and the AdamW update (clip 1.0, eps 1e-15)
 *   equals a float64 Adam on those gradients;
 * - activation recomputation gives the same gradients (fixture tolerance; bit-identical except
 *   where a tensor feeds several blocks) with a lower peak of GPU memory;
 * - gradient accumulation equals a hand-written two-micro-batch average, with one read-back;
 * - 3 updates + save + resume into a fresh model + 2 updates == 5 straight updates, bit for bit;
 * - the tiny MMDiT's validation loss on a small synthetic latent set falls by > 30 % in 40
 *   updates, and the metrics files record every update.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { fixtureTest, gpuTest } from "../_gpu.ts";
import { assertClose, randomArray } from "../_assert_close.ts";
import { backward } from "../../engine/autograd.ts";
import { fromData } from "../../engine/graph.ts";
import { mul, square, sub } from "../../engine/ops/elementwise.ts";
import { readAll } from "../../engine/ops/movement.ts";
import { mean } from "../../engine/ops/reduce.ts";
import { loadSafetensors } from "../../engine/safetensors.ts";
import { runtime } from "../../engine/runtime.ts";
import { type Tensor, tidy } from "../../engine/tensor.ts";
import { mmditFromReferenceConfig, mmditPreset } from "../../models/mmdit/config.ts";
import type { MMDiTInputs } from "../../models/mmdit/inputs.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import { positionIds, textIds } from "../../models/sampling/pack.ts";
import { FlowMatchingObjective, type TrainBatch } from "../../train/objective.ts";
import { type StepResult, Trainer, type TrainerOptions } from "../../train/trainer.ts";
import type { CheckpointData } from "../../train/checkpoint.ts";
import { CSV_COLUMNS, MetricsWriter } from "../../train/metrics.ts";

type Host = Map<string, { shape: number[]; data: Float32Array }>;

async function fixtureCase(fx: string) {
  const dir = `${fx}tiny/mmdit_tiny`;
  const kase = JSON.parse(await Deno.readTextFile(`${dir}/case.json`));
  const st = await loadSafetensors(`${dir}/tensors.safetensors`);
  const grads = await loadSafetensors(`${dir}/grads.safetensors`);
  const weights = await loadSafetensors(`${dir}/weights.safetensors`);
  const model = async () => {
    const dit = new MMDiT(mmditFromReferenceConfig(kase.model_args, "mmdit_tiny"));
    await dit.params.load(`${dir}/weights.safetensors`);
    return dit;
  };
  const t = (k: string) => fromData(st.get(k)!.data, st.get(k)!.shape, "f32");
  const inputs = (): MMDiTInputs => ({
    img: t("img"),
    imgIds: st.get("img_ids")!.data,
    txt: t("txt"),
    txtIds: st.get("txt_ids")!.data,
    timesteps: t("timesteps"),
    yVec: t("y_vec"),
    cond: t("cond"),
  });
  return { kase, grads, weights, model, inputs, target: () => t("target") };
}

const NO_DROPOUT: TrainerOptions = { objective: { t5Dropout: 0, clipDropout: 0 } };

function disposeInputs(x: MMDiTInputs, target: Tensor): void {
  for (const t of [x.img, x.txt, x.timesteps, x.yVec, x.cond, target]) t?.dispose();
}

/** One fixture update; returns the result, the gradients and the parameters after it. */
async function fixtureUpdate(
  fx: string,
  recompute: boolean,
): Promise<{ r: StepResult; grads: Float32Array[]; after: Float32Array[]; names: string[] }> {
  const f = await fixtureCase(fx);
  const dit = await f.model();
  const tr = new Trainer(dit, { ...NO_DROPOUT, recompute });
  const x = f.inputs(), target = f.target();
  const r = await tr.stepOnTarget(x, target, { keepGrads: true });
  const names = dit.params.list().map((s) => s.name);
  const ps = names.map((n) => dit.params.get(n));
  const vals = await readAll([...ps.map((p) => p.grad!), ...ps]);
  tr.dispose();
  dit.params.dispose();
  disposeInputs(x, target);
  return { r, names, grads: vals.slice(0, ps.length), after: vals.slice(ps.length) };
}

fixtureTest(
  "trainer: an update on mmdit_tiny gives the fixture loss, gradients and AdamW step",
  async (fx) => {
    const f = await fixtureCase(fx);
    const { r, names, grads, after } = await fixtureUpdate(fx, false);
    const want = f.kase.loss_value as number;
    assert(Math.abs(r.loss - want) <= 2e-6 * want, `loss ${r.loss} vs ${want}`);
    assertEquals(names.length, Object.keys(f.kase.weight_shapes).length);
    names.forEach((n, i) => {
      const g = f.grads.get(n)!;
      assertClose(grads[i]!, g.data, {
        atol: 1e-4,
        rtol: 1e-4,
        shape: g.shape,
        label: `grad ${n}`,
      });
    });
    // float64 Adam (β 0.9/0.999, eps 1e-15, wd 0, clip 1.0) on the trainer's own gradients
    let sq = 0;
    for (const g of grads) for (const v of g) sq += v * v;
    const norm = Math.sqrt(sq);
    assert(Math.abs(r.gradNorm - norm) <= 1e-5 * norm, `grad norm ${r.gradNorm} vs ${norm}`);
    assert(norm > 1, `the fixture's grad norm ${norm} should exercise clipping`);
    const coef = Math.min(1, 1 / (norm + 1e-6));
    const lr = 3e-5;
    assertEquals(r.lr, lr);
    let moved = 0;
    names.forEach((n, i) => {
      const p0 = f.weights.get(n)!.data;
      const ref = new Float64Array(p0.length);
      for (let k = 0; k < p0.length; k++) {
        const g = grads[i]![k]! * coef;
        const m = (1 - 0.9) * g, v = (1 - 0.999) * g * g;
        const mh = m / (1 - 0.9), vh = v / (1 - 0.999);
        ref[k] = p0[k]! - (lr * mh) / (Math.sqrt(vh) + 1e-15);
        moved = Math.max(moved, Math.abs(after[i]![k]! - p0[k]!));
      }
      assertClose(after[i]!, ref, { atol: 2e-7, rtol: 2e-7, label: `param ${n} after the update` });
    });
    assert(Math.abs(moved - lr) < 1e-6, `largest parameter change ${moved}, expected ≈ lr`);
  },
);

fixtureTest(
  "trainer: activation recomputation gives the same gradients with less memory",
  async (fx) => {
    const f = await fixtureCase(fx);
    const plain = await fixtureUpdate(fx, false);
    const rc = await fixtureUpdate(fx, true);
    assertEquals(rc.r.loss, plain.r.loss);
    let identical = 0;
    rc.names.forEach((n, i) => {
      const g = f.grads.get(n)!;
      assertClose(rc.grads[i]!, g.data, { atol: 1e-4, rtol: 1e-4, label: `recomputed grad ${n}` });
      assertClose(rc.grads[i]!, plain.grads[i]!, { atol: 1e-7, rtol: 1e-5, label: `grad ${n}` });
      if (rc.grads[i]!.every((v, k) => v === plain.grads[i]![k])) identical++;
      else {
        // only the conditioning-vector path (used by every block) may differ in rounding
        assert(/^(time_in|vector_in)\./.test(n), `${n} differs with recomputation`);
      }
    });
    console.log(`  bit-identical gradients: ${identical}/${rc.names.length}`);

    // peak memory of a longer sequence (2 × 256 tokens), same model and inputs
    const B = 2, T = 4, h = 8, w = 8, N = T * h * w, Lt = 8;
    const peak = async (recompute: boolean) => {
      const dit = new MMDiT(mmditPreset("tiny"));
      dit.params.initialize(3);
      const tr = new Trainer(dit, { ...NO_DROPOUT, recompute });
      const x: MMDiTInputs = {
        img: fromData(randomArray(B * N * 16, 1), [B, N, 16], "f32"),
        imgIds: positionIds(B, T, h, w),
        txt: fromData(randomArray(B * Lt * 32, 2), [B, Lt, 32], "f32"),
        txtIds: textIds(B, Lt),
        timesteps: fromData(new Float32Array([0.3, 0.7]), [B], "f32"),
        yVec: fromData(randomArray(B * 24, 3), [B, 24], "f32"),
        cond: fromData(randomArray(B * N * 17, 4), [B, N, 17], "f32"),
      };
      const target = fromData(randomArray(B * N * 16, 5), [B, N, 16], "f32");
      const r = await tr.stepOnTarget(x, target);
      tr.dispose();
      dit.params.dispose();
      disposeInputs(x, target);
      return r;
    };
    const a = await peak(false), b = await peak(true);
    console.log(
      `  peak GPU memory of an update: ${(a.memPeak / 2 ** 20).toFixed(2)} MiB plain, ` +
        `${(b.memPeak / 2 ** 20).toFixed(2)} MiB recomputed`,
    );
    assertEquals(b.loss, a.loss);
    assert(Math.abs(b.gradNorm - a.gradNorm) <= 1e-6 * a.gradNorm, "grad norms differ");
    assert(b.memPeak < 0.8 * a.memPeak, `recomputation peak ${b.memPeak} vs ${a.memPeak}`);
  },
);

// ---------------------------------------------------------------- synthetic data

const C = 16, Lt = 4;

/** A smooth latent pattern per sample id: sines over space, time and channel. */
function smoothLatent(id: number, T: number, h: number, w: number): Float32Array {
  const out = new Float32Array(C * T * h * w);
  let i = 0;
  for (let c = 0; c < C; c++) {
    for (let t = 0; t < T; t++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const a = 0.9 * (x + 1) * (1 + (id % 3)) / 2 + 0.7 * y * (1 + (id % 2)) + 0.5 * c +
            0.4 * t * (id + 1);
          out[i++] = Math.sin(a) + 0.3 * Math.cos(0.5 * c * (id + 1));
        }
      }
    }
  }
  return out;
}

/** Micro-batch of sample ids: latents, reference = their first frames, fixed text per id. */
function batchOf(ids: number[], T = 2, h = 4, w = 4): TrainBatch {
  const B = ids.length;
  const latents = new Float32Array(B * C * T * h * w);
  const ref = new Float32Array(B * C * h * w);
  const txt = new Float32Array(B * Lt * 32);
  const y = new Float32Array(B * 24);
  ids.forEach((id, b) => {
    const l = smoothLatent(id, T, h, w);
    latents.set(l, b * l.length);
    for (let c = 0; c < C; c++) {
      ref.set(l.subarray(c * T * h * w, c * T * h * w + h * w), (b * C + c) * h * w);
    }
    txt.set(randomArray(Lt * 32, 100 + id), b * Lt * 32);
    y.set(randomArray(24, 200 + id), b * 24);
  });
  return { latents, latentShape: [B, C, T, h, w], refLatents: ref, txt, yVec: y };
}

const NULLS = { txt: new Float32Array(Lt * 32), yVec: new Float32Array(24) };

gpuTest("trainer: gradient accumulation averages the micro-batch gradients", async () => {
  const opts: TrainerOptions = {
    gradAccumulation: 2,
    objective: { seed: 5 },
    nullEmbeddings: NULLS,
  };
  const micro = [batchOf([0, 1], 2, 2, 3), batchOf([2, 3], 2, 2, 3)];
  // by hand: loss_m / 2 backpropagated for both micro-batches on an identical model
  const ref = new MMDiT(mmditPreset("tiny"));
  ref.params.initialize(11);
  const obj = new FlowMatchingObjective(ref.config, opts.objective, NULLS);
  const losses = micro.map((b, m) =>
    tidy(() => {
      const p = obj.prepare(b, m);
      const l = mean(square(sub(ref.forward(p.inputs), p.target)));
      backward(mul(l, 0.5));
      return l;
    })
  );
  const ps = ref.params.list().map((s) => ref.params.get(s.name));
  const vals = await readAll([
    ...losses,
    ...ps.map((p) => p.grad ?? fromData(new Float32Array(p.size), p.shape, "f32")),
  ]);
  let sq = 0;
  for (const g of vals.slice(2)) for (const v of g) sq += v * v;

  const dit = new MMDiT(mmditPreset("tiny"));
  dit.params.initialize(11);
  const tr = new Trainer(dit, opts);
  const reads = runtime().counters.readbacks;
  const r = await tr.step(micro);
  assertEquals(runtime().counters.readbacks - reads, 1, "one read-back per update");
  assertEquals(r.microLosses, [vals[0]![0]!, vals[1]![0]!]);
  assertEquals(r.loss, (vals[0]![0]! + vals[1]![0]!) / 2);
  assert(
    Math.abs(r.gradNorm - Math.sqrt(sq)) <= 1e-5 * Math.sqrt(sq),
    `${r.gradNorm} vs ${Math.sqrt(sq)}`,
  );
  assertEquals(r.samples, 4);
  assertEquals(r.tokens, 4 * 12);
  tr.dispose();
  obj.dispose();
  for (const t of losses) t.dispose();
  dit.params.dispose();
  ref.params.dispose();
});

const RESUME_OPTS: TrainerOptions = {
  lr: 1e-3,
  warmupSteps: 2,
  emaDecay: 0.9,
  gradAccumulation: 2,
  objective: { seed: 7 },
  nullEmbeddings: NULLS,
};

function microsOf(update: number): TrainBatch[] {
  return [0, 1].map((m) => batchOf([(2 * update + m) % 4, (2 * update + m + 1) % 4], 2, 2, 3));
}

function assertSameHost(a: Host | null, b: Host | null, what: string): void {
  if (!a || !b) throw new Error(`${what} missing`);
  assertEquals([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, v] of a) {
    const w: { shape: number[]; data: Float32Array } = b.get(k)!;
    assertEquals(w.shape, v.shape);
    const same = v.data.every((x, i) => Object.is(x, w.data[i]));
    assert(same, `${what} ${k} differs after resume`);
  }
}

gpuTest("trainer: 3 updates + save + resume + 2 updates == 5 updates, bit for bit", async () => {
  const out = await Deno.makeTempDir({ prefix: "kino_resume_" });
  try {
    // straight
    const ditA = new MMDiT(mmditPreset("tiny"));
    ditA.params.initialize(1);
    const a = new Trainer(ditA, RESUME_OPTS);
    const straight: StepResult[] = [];
    for (let k = 0; k < 5; k++) straight.push(await a.step(microsOf(k)));
    const snapA: CheckpointData = await a.snapshot();
    a.dispose();
    ditA.params.dispose();
    assertEquals(straight.map((r) => r.lr), [
      1e-6 + (1 / 3) * (1e-3 - 1e-6),
      1e-6 + (2 / 3) * (1e-3 - 1e-6),
      1e-3,
      1e-3,
      1e-3,
    ]);

    // interrupted
    const ditB = new MMDiT(mmditPreset("tiny"));
    ditB.params.initialize(1);
    const b = new Trainer(ditB, RESUME_OPTS);
    for (let k = 0; k < 3; k++) {
      const r = await b.step(microsOf(k));
      assertEquals(r.loss, straight[k]!.loss);
    }
    const dir = await b.save(out, { dataCursor: { next: 3 } });
    assert(dir.endsWith("step_00000003"), dir);
    b.dispose();
    ditB.params.dispose();

    const ditC = new MMDiT(mmditPreset("tiny"));
    ditC.params.initialize(999); // other weights: the checkpoint must replace them all
    const c = new Trainer(ditC, RESUME_OPTS);
    const info = await c.resume("latest", out);
    assert(info);
    assertEquals(info.step, 3);
    assertEquals(info.dataCursor, { next: 3 });
    assertEquals(info.differences, []);
    const next = (info.dataCursor as { next: number }).next;
    for (let k = next; k < 5; k++) {
      const r = await c.step(microsOf(k));
      assertEquals(r.loss, straight[k]!.loss);
      assertEquals(r.gradNorm, straight[k]!.gradNorm);
      assertEquals(r.lr, straight[k]!.lr);
      assertEquals([...r.t], [...straight[k]!.t]);
    }
    const snapC = await c.snapshot();
    c.dispose();
    ditC.params.dispose();
    assertSameHost(snapC.model, snapA.model, "weights");
    assertSameHost(snapC.optimizer, snapA.optimizer, "optimizer state");
    assertSameHost(snapC.ema, snapA.ema, "EMA");
    assertEquals(snapC.state.step, 5);
    assertEquals(snapC.state.stream, 10);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

gpuTest(
  "trainer: the tiny MMDiT learns a small synthetic latent set (loss falls > 30 %)",
  async () => {
    const out = await Deno.makeTempDir({ prefix: "kino_train_" });
    try {
      const dit = new MMDiT(mmditPreset("tiny"));
      dit.params.initialize(0);
      const metrics = await MetricsWriter.open(out);
      const tr = new Trainer(dit, {
        lr: 2e-3,
        warmupSteps: 5,
        objective: { seed: 1 },
        nullEmbeddings: NULLS,
        metrics,
      });
      const data = batchOf([0, 1, 2, 3]);
      // validation: fixed draws from streams training never uses
      const evalLoss = async () => {
        let s = 0;
        for (let k = 0; k < 4; k++) s += await tr.evalLoss(data, 2 ** 31 + k);
        return s / 4;
      };
      const before = await evalLoss();
      const steps = 40;
      const t0 = performance.now();
      const losses: number[] = [];
      for (let k = 0; k < steps; k++) losses.push((await tr.step(data)).loss);
      const secs = (performance.now() - t0) / 1000;
      const after = await evalLoss();
      const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
      const last = losses.slice(-5).reduce((a, b) => a + b) / 5;
      console.log(
        `  validation loss ${before.toFixed(4)} -> ${
          after.toFixed(4)
        }; train loss (5-step means) ` +
          `${first.toFixed(4)} -> ${last.toFixed(4)}; ${steps} updates in ${secs.toFixed(1)} s`,
      );
      assert(after < 0.7 * before, `validation loss ${before} -> ${after}`);
      tr.dispose();
      dit.params.dispose();

      // metrics: one record per update, in both files
      const jl = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n");
      assertEquals(jl.length, steps);
      const rec = JSON.parse(jl[9]!);
      assertEquals(rec.step, 10);
      assert(Math.abs(rec.loss - losses[9]!) < 1e-12);
      assert(rec.grad_norm > 0 && rec.samples_per_s > 0 && rec.mem_peak_mb > 0);
      const csv = (await Deno.readTextFile(join(out, "metrics.csv"))).trim().split("\n");
      assertEquals(csv[0], CSV_COLUMNS.join(","));
      assertEquals(csv.length, steps + 1);
      assertEquals(csv[10]!.split(",").length, CSV_COLUMNS.length);
      // resuming at update 25 drops the records written after it
      await MetricsWriter.open(out, { resumeStep: 25 });
      assertEquals(
        (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n").length,
        25,
      );
      assertEquals(
        (await Deno.readTextFile(join(out, "metrics.csv"))).trim().split("\n").length,
        26,
      );
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);
