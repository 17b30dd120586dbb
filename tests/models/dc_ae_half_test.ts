/**
 * The DC-AE with weights kept in bf16 / f16 (as released checkpoints are): the kernels read the
 * 16-bit weights in place, parameters take half the memory, and the latent stays close to the f32
 * model's (the only difference is the rounding of the weights: bf16 keeps 8 bits of mantissa).
 */
import { fixtureTest } from "../_gpu.ts";
import { loadSafetensors } from "../../engine/safetensors.ts";
import { fromData } from "../../engine/graph.ts";
import { read } from "../../engine/ops/movement.ts";
import { noGrad, tidy } from "../../engine/tensor.ts";
import { fromReferenceConfig } from "../../models/dc_ae/config.ts";
import { DcAe } from "../../models/dc_ae/model.ts";

fixtureTest("DcAe with bf16 and f16 weights encodes close to the f32 reference", async (fx) => {
  const dir = `${fx}tiny/dc_ae_tiny`;
  const kase = JSON.parse(await Deno.readTextFile(`${dir}/case.json`));
  const stored = await loadSafetensors(`${dir}/tensors.safetensors`);
  const video = stored.get("video")!;
  const want = stored.get("latent")!.data;
  const scale = Math.max(...want.map(Math.abs));
  // relative to the latent's range: bf16 weights (2^-8 relative rounding) vs f16 (2^-11)
  const bounds = { bf16: 2e-2, f16: 4e-3 } as const;
  for (const storage of ["bf16", "f16"] as const) {
    const ae = new DcAe(fromReferenceConfig(kase.config, kase.case), { storage });
    await ae.params.load(`${dir}/weights.safetensors`);
    // matrices and kernels are stored compact; vectors (biases, norm weights) stay f32
    if (ae.params.tensors().some((t) => t.dtype !== (t.rank >= 2 ? storage : "f32"))) {
      throw new Error("weights widened or vectors narrowed");
    }
    if (ae.params.bytes() * 2 !== ae.params.bytes("f32")) throw new Error("not half the bytes");
    const x = fromData(video.data, video.shape, "f32");
    const got = await read(noGrad(() => tidy(() => ae.encode(x))));
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
    if (!(err / scale < bounds[storage])) {
      throw new Error(
        `${storage}: max error ${err} is ${err / scale} of the range, over ${bounds[storage]}`,
      );
    }
    if (!(err > 0)) throw new Error(`${storage}: identical to f32, weights were not rounded`);
    x.dispose();
    ae.params.dispose();
  }
});
