/**
 * The Video DC-AE built shape-only (no GPU: the runtime is never initialised here, so any GPU
 * use during construction would throw) against the parameter manifest of the released
 * `dc-ae-f32t4c128` and the key list of the `dc_ae_tiny` fixture checkpoint; config validation
 * and the frame/size rules.
 */
import { assertThrows } from "../_assert_close.ts";
import { SafeTensorsFile } from "../../engine/safetensors.ts";
import { numel } from "../../engine/shape.ts";
import {
  type DcAeConfig,
  dcAePreset,
  fromReferenceConfig,
  validateConfig,
} from "../../models/dc_ae/config.ts";
import { DcAe } from "../../models/dc_ae/model.ts";

interface Manifest {
  config: Record<string, unknown>;
  total_parameters: number;
  encoder_parameters: number;
  decoder_parameters: number;
  num_tensors: number;
  state_dict_keys_in_order: string[];
  parameters: Record<string, { shape: number[] }>;
  parameters_by_module: Record<string, number>;
}

// Not imported from ../_gpu.ts, which initialises the GPU on import.
const FIXTURES: string | null = (() => {
  const p = new URL("../../../shared/fixtures/", import.meta.url).pathname;
  try {
    Deno.statSync(p);
    return p;
  } catch {
    return null;
  }
})();

/** A CPU-only test on the fixtures; visibly ignored when they are absent. */
function fixtureCpuTest(name: string, fn: (dir: string) => void | Promise<void>): void {
  Deno.test({
    name: FIXTURES ? name : `${name} (skipped: ../shared/fixtures not found)`,
    ignore: !FIXTURES,
    fn: () => fn(FIXTURES!),
  });
}

/** Compares declared (name, shape) lists exactly, in order; reports the first differences. */
function assertSameParams(
  label: string,
  got: { name: string; shape: number[] }[],
  want: { name: string; shape: number[] }[],
): void {
  const bad: string[] = [];
  const n = Math.max(got.length, want.length);
  for (let i = 0; i < n && bad.length < 5; i++) {
    const g = got[i];
    const w = want[i];
    if (g?.name !== w?.name || g?.shape.join() !== w?.shape.join()) {
      bad.push(
        `  #${i}: got ${g?.name} [${g?.shape}], expected ${w?.name} [${w?.shape}]`,
      );
    }
  }
  if (bad.length) {
    throw new Error(
      `${label}: ${got.length} declared vs ${want.length} expected parameters\n${bad.join("\n")}`,
    );
  }
}

function sumWhere(ps: { name: string; shape: number[] }[], prefix: string): number {
  return ps.filter((p) => p.name.startsWith(prefix)).reduce((a, p) => a + numel(p.shape), 0);
}

fixtureCpuTest(
  "DcAe(f32t4c128) declares exactly the manifest's parameters, in state_dict order",
  async (dir) => {
    const m: Manifest = JSON.parse(
      await Deno.readTextFile(`${dir}manifests/dc_ae_f32t4c128.json`),
    );
    // the manifest's `parameters` object is in state_dict order
    if (Object.keys(m.parameters).join() !== m.state_dict_keys_in_order.join()) {
      throw new Error("manifest parameters are not in state_dict order");
    }
    const want = m.state_dict_keys_in_order.map((name) => ({
      name,
      shape: m.parameters[name]!.shape,
    }));
    const ae = new DcAe(dcAePreset("f32t4c128"));
    const got = ae.params.list();
    assertSameParams("f32t4c128", got, want);
    if (got.length !== 339 || m.num_tensors !== 339) throw new Error(`${got.length} tensors`);
    const total = ae.params.count();
    if (total !== 459_462_147 || total !== m.total_parameters) throw new Error(`total ${total}`);
    const enc = sumWhere(got, "encoder.");
    const dec = sumWhere(got, "decoder.");
    if (enc !== 220_439_936 || enc !== m.encoder_parameters) throw new Error(`encoder ${enc}`);
    if (dec !== 239_022_211 || dec !== m.decoder_parameters) throw new Error(`decoder ${dec}`);
    for (const [mod, count] of Object.entries(m.parameters_by_module)) {
      const c = sumWhere(got, `${mod}.`);
      if (c !== count) throw new Error(`${mod}: ${c} parameters, manifest says ${count}`);
    }
    if (ae.params.bytes("bf16") !== 2 * 459_462_147) throw new Error("bf16 bytes");
    // built from the manifest's reference config, the same list comes out
    const fromJson = new DcAe(fromReferenceConfig(m.config, "manifest"));
    assertSameParams("fromReferenceConfig(manifest)", fromJson.params.list(), want);
    // shape-only: nothing has a value
    if (ae.params.ready) throw new Error("shape-only model claims to be ready");
    await assertThrows(
      () => ae.params.get("decoder.project_out.op_list.2.conv.weight"),
      "shape-only",
    );
  },
);

fixtureCpuTest(
  "DcAe(tiny) declares exactly the dc_ae_tiny checkpoint's keys and shapes",
  async (dir) => {
    const caseDir = `${dir}tiny/dc_ae_tiny/`;
    const kase = JSON.parse(await Deno.readTextFile(`${caseDir}case.json`));
    using st = await SafeTensorsFile.open(`${caseDir}weights.safetensors`);
    // case.json's weight_shapes are in state_dict order; the file must hold the same set
    const want = Object.entries(kase.weight_shapes as Record<string, number[]>).map((
      [name, shape],
    ) => ({ name, shape }));
    const fileKeys = st.names().sort();
    if (fileKeys.join() !== want.map((w) => w.name).sort().join()) {
      throw new Error("case.json weight_shapes and weights.safetensors disagree");
    }
    for (const w of want) {
      if (st.tensors.get(w.name)!.shape.join() !== w.shape.join()) {
        throw new Error(`${w.name}: file shape differs from case.json`);
      }
    }
    const ae = new DcAe(dcAePreset("tiny"));
    assertSameParams("tiny", ae.params.list(), want);
    if (ae.params.count() !== 723_571 || kase.num_parameters !== 723_571) {
      throw new Error(`tiny count ${ae.params.count()}`);
    }
    const fromCase = new DcAe(fromReferenceConfig(kase.config, "dc_ae_tiny"));
    assertSameParams("fromReferenceConfig(dc_ae_tiny)", fromCase.params.list(), want);
  },
);

Deno.test("fromReferenceConfig() follows the config, not a preset", () => {
  // a different topology in the reference format: 4 stages, one temporal stage, EViT_GLU
  // (no extra aggregation scale), string block type/norm/act, encoder out norm + act
  const cfg = fromReferenceConfig({
    in_channels: 3,
    latent_channels: 8,
    time_compression_ratio: 2,
    spatial_compression_ratio: 8,
    encoder: {
      width_list: [8, 16, 32, 64],
      depth_list: [1, 2, 1, 1],
      block_type: ["ResBlock", "ResBlock", "EViT_GLU", "EViTS5_GLU"],
      norm: "rms3d",
      act: "silu",
      downsample_block_type: "Conv",
      downsample_shortcut: "averaging",
      out_norm: "rms3d",
      out_act: "relu",
      out_shortcut: "averaging",
      is_video: true,
      temporal_downsample: [false, true, false, false],
    },
    decoder: {
      width_list: [8, 16, 32, 64],
      depth_list: [1, 1, 1, 2],
      block_type: "ResBlock",
      norm: "rms3d",
      act: ["relu", "silu", "silu", "silu"],
      upsample_block_type: "InterpolateConv",
      upsample_shortcut: "duplicating",
      in_shortcut: null,
      out_norm: "rms3d",
      out_act: "relu",
      is_video: true,
      temporal_upsample: [false, true, false, false],
    },
  }, "custom");
  const ae = new DcAe(cfg);
  const names = ae.params.list().map((p) => p.name);
  const expect = [
    "encoder.stages.1.op_list.1.main.conv2.norm.bias",
    "encoder.stages.1.op_list.2.main.conv.weight",
    "encoder.stages.2.op_list.0.context_module.main.qkv.conv.weight",
    "encoder.stages.3.op_list.0.context_module.main.aggreg.0.1.weight",
    "encoder.project_out.main.op_list.0.weight", // RMSNorm3d
    "encoder.project_out.main.op_list.2.conv.weight", // op 1 is the activation
    "decoder.project_in.conv.weight", // no shortcut: no `main`
    "decoder.stages.3.op_list.1.main.conv1.conv.weight",
  ];
  for (const e of expect) if (!names.includes(e)) throw new Error(`missing ${e}`);
  if (names.some((n) => n.startsWith("encoder.stages.2") && n.includes("aggreg"))) {
    throw new Error("EViT_GLU must have no aggregation branch");
  }
  const proj = ae.params.list().find((p) =>
    p.name === "encoder.stages.2.op_list.0.context_module.main.proj.conv.weight"
  )!;
  if (proj.shape.join() !== "32,32,1,1,1") throw new Error(`proj ${proj.shape}`);
  if (ae.spatialFactor !== 8 || ae.temporalFactor !== 2) throw new Error("factors");
});

Deno.test("validateConfig() rejects inconsistent configs with clear messages", async () => {
  const base = () => dcAePreset("tiny");
  const cases: [string, (c: DcAeConfig) => void, string[]][] = [
    ["depth list length", (c) => c.encoder.depths.pop(), ["encoder.depths has 5 entries", "6"]],
    ["block type", (c) => (c.decoder.blockTypes[2] = "Foo" as never), ["Foo", "EViTS5_GLU"]],
    ["norm", (c) => (c.encoder.norms[0] = "bn2d" as never), ["bn2d", "rms3d"]],
    [
      "averaging groups",
      (c) => (c.encoder.widths[1] = 24),
      ["averaging shortcut", "divisible by 24"],
    ],
    [
      "spatial ratio",
      (c) => (c.spatialCompression = 16),
      ["spatialCompression 16", "2^5 = 32"],
    ],
    [
      "temporal mismatch",
      (c) => (c.decoder.temporalUpsample[2] = true),
      ["halves time 2 times", "doubles it 3 times"],
    ],
    ["heads", (c) => (c.evit.headDim = 128), ["needs at least one head"]],
    ["zero depth", (c) => (c.decoder.depths[1] = 0), ["decoder.depths[1]", "positive integer"]],
  ];
  for (const [what, edit, frags] of cases) {
    const c = base();
    edit(c);
    await assertThrows(() => validateConfig(c), ...frags).catch((e) => {
      throw new Error(`${what}: ${e.message}`);
    });
  }
  await assertThrows(
    () =>
      fromReferenceConfig({
        encoder: { width_list: [8], is_video: false },
        decoder: { width_list: [8] },
      }),
    "encoder.is_video = false",
  );
  await assertThrows(() => dcAePreset("f64"), "f64", "f32t4c128, tiny");
});

Deno.test("DcAe.latentShape() states the frame and size rules", async () => {
  const ae = new DcAe(dcAePreset("f32t4c128"));
  const eq = (a: number[], b: number[]) => {
    if (a.join() !== b.join()) throw new Error(`[${a}] != [${b}]`);
  };
  eq(ae.latentShape([1, 3, 128, 576, 1024]), [1, 128, 32, 18, 32]);
  eq(ae.latentShape([2, 3, 1, 64, 96]), [2, 128, 1, 2, 3]);
  eq(ae.latentShape([1, 3, 4, 32, 32]), [1, 128, 1, 1, 1]);
  eq(ae.videoShape([1, 128, 32, 18, 32]), [1, 3, 128, 576, 1024]);
  eq(ae.videoShape([1, 128, 1, 18, 32]), [1, 3, 1, 576, 1024]);
  for (const t of [2, 6, 7]) {
    await assertThrows(
      () => ae.latentShape([1, 3, t, 64, 64]),
      `T = ${t}`,
      "T = 1 or a multiple of 4",
      "multiples of 32",
    );
  }
  await assertThrows(() => ae.latentShape([1, 3, 8, 48, 64]), "H x W = 48 x 64", "multiples of 32");
  await assertThrows(() => ae.latentShape([1, 4, 8, 64, 64]), "4 channels", "takes 3");
  await assertThrows(() => ae.videoShape([1, 16, 2, 2, 3]), "latent [B, 128");
  const tiny = new DcAe(dcAePreset("tiny"));
  eq(tiny.latentShape([1, 3, 8, 64, 96]), [1, 16, 2, 2, 3]);
});

Deno.test("DcAe: a checkpoint of another model is refused before anything is allocated", async () => {
  const tiny =
    new URL("../../../shared/fixtures/tiny/dc_ae_tiny/weights.safetensors", import.meta.url)
      .pathname;
  try {
    await Deno.stat(tiny);
  } catch {
    console.log("skipped: ../shared/fixtures not found");
    return;
  }
  const { DcAe: Model } = await import("../../models/dc_ae/model.ts");
  const { dcAePreset: preset } = await import("../../models/dc_ae/config.ts");
  const ae = new Model(preset("f32t4c128"));
  let msg = "";
  try {
    await ae.params.load(tiny);
  } catch (e) {
    msg = (e as Error).message;
  }
  for (
    const want of ["does not match the model", "wrong shapes", "encoder.project_in.conv.weight"]
  ) {
    if (!msg.includes(want)) throw new Error(`message lacks "${want}": ${msg.slice(0, 400)}`);
  }
  if (ae.params.ready || ae.params.tensors().length !== 0) throw new Error("weights were loaded");
});
