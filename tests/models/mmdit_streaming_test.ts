/**
 * Weight streaming: the MMDiT run with its weights uploaded block by block from host memory (and
 * freed after each block) gives the same output as the resident model, bit for bit, while at most
 * one group's weights are on the GPU at once; bf16 storage streams too.
 */
import { fixtureTest } from "../_gpu.ts";
import { assertClose } from "../_assert_close.ts";
import { fromData } from "../../engine/graph.ts";
import { read } from "../../engine/ops/movement.ts";
import { loadSafetensors } from "../../engine/safetensors.ts";
import { keep, noGrad, tidy } from "../../engine/tensor.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import { mmditPreset } from "../../models/mmdit/config.ts";
import type { MMDiTInputs } from "../../models/mmdit/inputs.ts";
import { WeightStreamer } from "../../models/streaming.ts";

fixtureTest(
  "MMDiT weight streaming equals the resident model and bounds resident weights",
  async (fx) => {
    const dir = `${fx}tiny/mmdit_tiny`;
    const t = await loadSafetensors(`${dir}/tensors.safetensors`);
    const g = (k: string) => fromData(t.get(k)!.data, t.get(k)!.shape, "f32");
    const inputs = (): MMDiTInputs => ({
      img: g("img"),
      imgIds: t.get("img_ids")!.data,
      txt: g("txt"),
      txtIds: t.get("txt_ids")!.data,
      timesteps: g("timesteps"),
      yVec: g("y_vec"),
      cond: g("cond"),
    });
    const run = async (dit: MMDiT) => {
      const x = inputs();
      const out = noGrad(() => tidy(() => keep(dit.forward(x))));
      const v = await read(out);
      out.dispose();
      return v;
    };
    for (const storage of ["f32", "bf16"] as const) {
      const resident = new MMDiT(mmditPreset("tiny"), { storage });
      await resident.params.load(`${dir}/weights.safetensors`);
      const want = await run(resident);
      resident.params.dispose();

      const streamed = new MMDiT(mmditPreset("tiny"), { storage });
      const s = await WeightStreamer.fromFiles(streamed.params, [`${dir}/weights.safetensors`]);
      s.attach(streamed);
      const got = await run(streamed);
      assertClose(got, want, { atol: 0, rtol: 0, label: `streamed vs resident (${storage})` });
      if (streamed.params.tensors().length !== 0) throw new Error("weights left on the GPU");
      const total = s.hostBytes;
      // the largest group (a double block) is well under half of this 2+2-block model
      if (!(s.peakResident < total / 2)) {
        throw new Error(`peak resident ${s.peakResident} B of ${total} B`);
      }
      if (s.uploaded !== total) throw new Error(`uploaded ${s.uploaded} B, expected ${total} B`);
    }
  },
);
