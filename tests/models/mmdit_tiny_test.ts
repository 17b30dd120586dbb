/**
 * The MMDiT against the PyTorch fixtures `mmdit_tiny` (the real model's flags: separate q/k/v,
 * rotate-half RoPE) and `mmdit_tiny_fused` (fused qkv, Flux RoPE): forward output and every
 * stored intermediate, the MSE loss, every parameter's gradient and the input gradients, all at
 * 1e-4 abs + 1e-4 rel (the cases' float64 reruns differ from the stored values by ≤ 2.1e-6).
 * The same runner backs `deno task golden`; a perturbed copy must fail it.
 */
import { fixtureTest } from "../_gpu.ts";
import { runMMDiTCase } from "../../cli/golden_mmdit.ts";

for (const name of ["mmdit_tiny", "mmdit_tiny_fused"]) {
  fixtureTest(
    `MMDiT ${name}: forward, intermediates, loss and all gradients match PyTorch`,
    async (fx) => {
      const dir = `${fx}tiny/${name}`;
      const kase = JSON.parse(await Deno.readTextFile(`${dir}/case.json`));
      const rows = await runMMDiTCase(dir, kase, { atol: 1e-4, rtol: 1e-4 });
      const nParams = Object.keys(kase.weight_shapes).length;
      const grads = rows.filter((r) => r.name.startsWith("grad("));
      if (grads.length !== nParams) {
        throw new Error(`${grads.length} gradients compared, ${nParams} parameters`);
      }
      if (!rows.some((r) => r.name === "loss") || !rows.some((r) => r.name === "out")) {
        throw new Error("loss or out not compared");
      }
      const bad = rows.filter((r) => !r.ok);
      if (bad.length) {
        throw new Error(
          `${bad.length} tensors off: ${
            bad.slice(0, 5).map((r) => `${r.name} abs ${r.abs}`).join("; ")
          }`,
        );
      }
    },
  );
}
