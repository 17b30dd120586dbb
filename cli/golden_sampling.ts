/**
 * The `sampling*` kind of `deno task golden`: replays a reference sampling call (the fixtures'
 * `sampling_t2v` / `sampling_i2v`) through Kino's sampler driving Kino's MMDiT with the case's
 * weights, embeddings and noise; for i2v the reference images are encoded by Kino's DC-AE with the
 * case's encoder weights. Compares the condition tensors, the reference latents, the model output
 * of every step, the latent after the first step, the final latent and the output latent.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fromData } from "../engine/graph.ts";
import { concat } from "../engine/ops/concat.ts";
import { read, readAll } from "../engine/ops/movement.ts";
import { keep, noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { loadSafetensors } from "../engine/safetensors.ts";
import { MMDiT } from "../models/mmdit/model.ts";
import { mmditFromReferenceConfig } from "../models/mmdit/config.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import { fromReferenceConfig } from "../models/dc_ae/config.ts";
import {
  applyReferenceOverwrite,
  type CondType,
  prepareCondition,
  sample,
  unpack,
} from "../models/sampling/mod.ts";
import { compare, type Row } from "./_compare.ts";

interface SamplingCase {
  case: string;
  mmdit: { weights: string; model_args: Record<string, unknown> };
  ref_encoder?: { weights: string };
  api_fn_call: { cond_type: CondType };
  sampling_option: {
    guidance: number;
    guidance_img: number;
    text_osci: boolean;
    image_osci: boolean;
    scale_temporal_osci: boolean;
  };
  schedule: number[];
}

/** Runs one sampling case directory; returns one row per compared tensor. */
export async function runSamplingCase(
  dir: string,
  kase: SamplingCase,
  tol: { atol: number; rtol: number },
): Promise<Row[]> {
  const stored = await loadSafetensors(join(dir, "tensors.safetensors"));
  const get = (k: string) => {
    const v = stored.get(k);
    if (!v) throw new Error(`${dir}: tensors.safetensors lacks ${k}`);
    return v;
  };
  const gpu = (k: string) => fromData(get(k).data, get(k).shape, "f32");
  const cfg = mmditFromReferenceConfig(kase.mmdit.model_args, "mmdit");
  const dit = new MMDiT(cfg);
  await dit.params.load(join(dir, kase.mmdit.weights));
  console.log(
    `model: MMDiT ${dit.params.count().toLocaleString()} parameters (${kase.mmdit.weights})`,
  );
  const rows: Row[] = [];
  const owned: Tensor[] = [];
  const condType = kase.api_fn_call.cond_type;
  // reference latents: Kino's DC-AE on the stored reference images
  let refs: Tensor[][] = [];
  if (condType !== "t2v") {
    const caseDir = dirname(join(dir, kase.ref_encoder!.weights));
    const aeCase = JSON.parse(await Deno.readTextFile(join(caseDir, "case.json")));
    const ae = new DcAe(fromReferenceConfig(aeCase.config, "ref_encoder"));
    await ae.params.load(join(dir, kase.ref_encoder!.weights));
    const images = get("ref_image");
    const N = images.shape[0]!;
    const per = images.data.length / N;
    refs = [];
    for (let n = 0; n < N; n++) {
      const img = fromData(
        images.data.slice(n * per, (n + 1) * per),
        [1, ...images.shape.slice(1)],
        "f32",
      );
      const lat = noGrad(() => tidy(() => keep(ae.encode(img, { tiled: false }))));
      img.dispose();
      owned.push(lat);
      refs.push([lat]);
    }
    ae.params.dispose();
    const all = tidy(() => concat(refs.map((r) => r[0]!), 0));
    rows.push(
      compare(
        "ref_latent",
        await read(all),
        get("ref_latent").data,
        get("ref_latent").shape,
        tol.atol,
        tol.rtol,
      ),
    );
    all.dispose();
  }
  const noise = gpu("noise");
  const condition = prepareCondition(noise.shape, condType, refs);
  const condVals = await readAll([condition.masks, condition.maskedRef, condition.cond]);
  for (const [i, k] of (["masks", "masked_ref", "cond"] as const).entries()) {
    rows.push(compare(k, condVals[i]!, get(k).data, get(k).shape, tol.atol, tol.rtol));
  }
  const txt = tidy(() => concat([gpu("txt.prompt"), gpu("txt.neg"), gpu("txt.neg")], 0));
  const yVec = tidy(() => concat([gpu("y_vec.prompt"), gpu("y_vec.neg"), gpu("y_vec.neg")], 0));
  owned.push(noise, txt, yVec);
  const [N, C, T, h, w] = noise.shape as [number, number, number, number, number];
  const preds: Float32Array[] = [];
  const pending: Tensor[] = [];
  let step1: Float32Array | null = null;
  const o = kase.sampling_option;
  const t0 = performance.now();
  const final = await sample((inputs) => {
    const out = dit.forward(inputs);
    // keep each step's raw model output for comparison (read after the step)
    pending.push(keep(out));
    return out;
  }, {
    noise,
    txt,
    yVec,
    timesteps: kase.schedule,
    condition,
    guidance: o.guidance,
    guidanceImg: o.guidance_img,
    textOsci: o.text_osci,
    imageOsci: o.image_osci,
    scaleTemporalOsci: o.scale_temporal_osci,
    onStep: async (i, _n, _t, x) => {
      for (const p of pending.splice(0)) {
        preds.push(await read(p));
        p.dispose();
      }
      if (i === 0) {
        const u = tidy(() => unpack(x, T, h, w, C, 1));
        step1 = await read(u);
        u.dispose();
      }
    },
  });
  console.log(`${kase.schedule.length - 1} steps: ${(performance.now() - t0).toFixed(0)} ms`);
  const output = tidy(() => applyReferenceOverwrite(final, condition.condType, refs));
  const [finalV, outV] = await readAll([final, output]);
  const predWant = get("pred_steps");
  const per = predWant.data.length / predWant.shape[0]!;
  preds.forEach((p, i) =>
    rows.push(
      compare(
        `pred_steps[${i}]`,
        p,
        predWant.data.subarray(i * per, (i + 1) * per),
        predWant.shape.slice(1),
        tol.atol,
        tol.rtol,
      ),
    )
  );
  if (preds.length !== predWant.shape[0]) {
    rows.push({
      name: "pred_steps (count)",
      shape: [preds.length],
      abs: Infinity,
      rel: Infinity,
      ok: false,
    });
  }
  rows.push(
    compare(
      "step1_latent",
      step1!,
      get("step1_latent").data,
      get("step1_latent").shape,
      tol.atol,
      tol.rtol,
    ),
  );
  rows.push(
    compare(
      "final_latent",
      finalV!,
      get("final_latent").data,
      get("final_latent").shape,
      tol.atol,
      tol.rtol,
    ),
  );
  rows.push(
    compare(
      "output_latent",
      outV!,
      get("output_latent").data,
      get("output_latent").shape,
      tol.atol,
      tol.rtol,
    ),
  );
  for (const t of [...owned, final, output, condition.masks, condition.maskedRef, condition.cond]) {
    t.dispose();
  }
  dit.params.dispose();
  if (N < 1) throw new Error("empty batch");
  return rows;
}
