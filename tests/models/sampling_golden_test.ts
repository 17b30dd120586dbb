/**
 * The fixtures' sampling cases replayed end to end (the `sampling` kind of `deno task golden`):
 * Kino's sampler driving Kino's MMDiT with the case's weights, embeddings and noise (and, for
 * i2v, Kino's DC-AE encoding the reference images) reproduces the condition tensors, the model
 * output of every step, the latent after the first step, the final and the output latent within
 * 1e-4 abs + 1e-4 rel (the cases' float64 reruns differ by ≤ 6.7e-6 from the stored values).
 */
import { fixtureTest } from "../_gpu.ts";
import { runSamplingCase } from "../../cli/golden_sampling.ts";

for (const name of ["sampling_t2v", "sampling_i2v"]) {
  fixtureTest(
    `sampler + MMDiT replay ${name}: every step, step-1 and final latents match`,
    async (fx) => {
      const dir = `${fx}tiny/${name}`;
      const kase = JSON.parse(await Deno.readTextFile(`${dir}/case.json`));
      const rows = await runSamplingCase(dir, kase, { atol: 1e-4, rtol: 1e-4 });
      for (const k of ["step1_latent", "final_latent", "output_latent", "pred_steps[11]"]) {
        if (!rows.some((r) => r.name === k)) throw new Error(`${k} was not compared`);
      }
      const bad = rows.filter((r) => !r.ok);
      if (bad.length) {
        throw new Error(`off: ${bad.map((r) => `${r.name} abs ${r.abs}`).join("; ")}`);
      }
    },
  );
}
