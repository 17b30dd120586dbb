/**
 * The golden runner is not tuned to the shipped case: a case directory of the same format with
 * another DC-AE config (4 stages, other widths, depths and latent size) is built from its own
 * case.json and checked. The stored outputs here come from Kino itself (no PyTorch on this
 * machine), so this tests the runner's generality, not the model's correctness (the fixtures do
 * that); a case whose weights do not fit its config is refused.
 */
import { runCli } from "../_cli.ts";
import { fixtureTest } from "../_gpu.ts";
import { fromData } from "../../engine/graph.ts";
import { readAll } from "../../engine/ops/movement.ts";
import { noGrad, tidy } from "../../engine/tensor.ts";
import { saveSafetensors, type TensorToWrite } from "../../engine/safetensors.ts";
import { fromReferenceConfig } from "../../models/dc_ae/config.ts";
import { DcAe } from "../../models/dc_ae/model.ts";
import { randomArray } from "../_assert_close.ts";

const golden = (dir: string) => runCli("golden.ts", [dir]);

fixtureTest("deno task golden builds another DC-AE config from its case.json", async (fx) => {
  const base = JSON.parse(await Deno.readTextFile(`${fx}tiny/dc_ae_tiny/case.json`));
  const cfg = structuredClone(base.config);
  cfg.latent_channels = 8;
  cfg.spatial_compression_ratio = 8;
  for (const part of [cfg.encoder, cfg.decoder]) {
    part.latent_channels = 8;
    part.width_list = [8, 16, 32, 32];
    part.depth_list = [2, 1, 1, 1];
    part.block_type = ["ResBlock", "ResBlock", "EViTS5_GLU", "EViTS5_GLU"];
  }
  cfg.encoder.temporal_downsample = [false, true, true, false];
  cfg.decoder.temporal_upsample = [false, true, true, false];
  const ae = new DcAe(fromReferenceConfig(cfg, "dc_ae_variant"));
  ae.params.initialize(5);
  const dir = await Deno.makeTempDir();
  try {
    const video = fromData(randomArray(3 * 8 * 32 * 48, 9), [1, 3, 8, 32, 48], "f32");
    const latent = noGrad(() => tidy(() => ae.encode(video, { tiled: false })));
    const decoded = noGrad(() => tidy(() => ae.decode(latent, { tiled: false })));
    const [v, l, d] = await readAll([video, latent, decoded]);
    if (latent.shape.join() !== "1,8,2,4,6") throw new Error(`latent shape ${latent.shape}`);
    const w: Record<string, TensorToWrite> = {};
    const names = ae.params.list().map((s) => s.name);
    const values = await readAll(names.map((n) => ae.params.get(n)));
    names.forEach((n, i) =>
      w[n] = { dtype: "F32", shape: ae.params.list()[i]!.shape, data: values[i]! }
    );
    await saveSafetensors(`${dir}/weights.safetensors`, w);
    await saveSafetensors(`${dir}/tensors.safetensors`, {
      video: { dtype: "F32", shape: [...video.shape], data: v! },
      latent: { dtype: "F32", shape: [...latent.shape], data: l! },
      decoded: { dtype: "F32", shape: [...decoded.shape], data: d! },
    });
    const kase = {
      case: "dc_ae_variant",
      config: cfg,
      calls: { latent: "model.encode(video)", decoded: "model.decode(latent)" },
    };
    await Deno.writeTextFile(`${dir}/case.json`, JSON.stringify(kase));
    const ok = await golden(dir);
    if (ok.code !== 0 || !/2 passed, 0 failed/.test(ok.out)) {
      throw new Error(`golden on the variant case exited ${ok.code}:\n${ok.out}`);
    }
    // the same weights under the shipped tiny config: refused with the mismatch report
    await Deno.writeTextFile(`${dir}/case.json`, JSON.stringify({ ...kase, config: base.config }));
    const bad = await golden(dir);
    if (bad.code !== 1 || !bad.out.includes("does not match the model")) {
      throw new Error(`mismatched case: exit ${bad.code}\n${bad.out}`);
    }
    for (const t of [video, latent, decoded]) t.dispose();
  } finally {
    ae.params.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
