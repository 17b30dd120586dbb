/**
 * The MMDiT built shape-only (no GPU) against the parameter manifests of the released
 * high-compression model and the base 768px model (every name, shape and the order of
 * `state_dict()`), the totals of the spec, and config validation.
 */
import { assertThrows } from "../_assert_close.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import {
  mmditFromReferenceConfig,
  mmditPreset,
  validateMMDiTConfig,
} from "../../models/mmdit/config.ts";

const FIXTURES: string | null = (() => {
  const p = new URL("../../../shared/fixtures/", import.meta.url).pathname;
  try {
    Deno.statSync(p);
    return p;
  } catch {
    return null;
  }
})();

function fixtureCpuTest(name: string, fn: (dir: string) => void | Promise<void>): void {
  Deno.test({
    name: FIXTURES ? name : `${name} (skipped: ../shared/fixtures not found)`,
    ignore: !FIXTURES,
    fn: () => fn(FIXTURES!),
  });
}

interface Manifest {
  model_args: Record<string, unknown>;
  total_parameters: number;
  num_tensors: number;
  state_dict_keys_in_order: string[];
  parameters: Record<string, { shape: number[] }>;
}

async function checkManifest(file: string, preset: string, total: number): Promise<void> {
  const m: Manifest = JSON.parse(await Deno.readTextFile(file));
  const dit = new MMDiT(mmditPreset(preset));
  const got = dit.params.list();
  const bad: string[] = [];
  const keys = m.state_dict_keys_in_order;
  if (got.length !== keys.length) {
    bad.push(`${got.length} tensors declared, manifest has ${keys.length}`);
  }
  for (let i = 0; i < Math.max(got.length, keys.length) && bad.length < 5; i++) {
    const w = keys[i];
    const g = got[i];
    if (g?.name !== w || g?.shape.join() !== m.parameters[w!]?.shape.join()) {
      bad.push(
        `#${i}: declared ${g?.name} [${g?.shape}] vs manifest ${w} [${m.parameters[w!]?.shape}]`,
      );
    }
  }
  if (bad.length) throw new Error(`${preset} differs from ${file}:\n  ${bad.join("\n  ")}`);
  if (dit.params.count() !== total || m.total_parameters !== total) {
    throw new Error(
      `${preset}: ${dit.params.count()} parameters, manifest ${m.total_parameters}, spec ${total}`,
    );
  }
  // the preset equals the manifest's own model arguments
  const fromArgs = mmditFromReferenceConfig(m.model_args, preset);
  const { name: _a, ...x } = fromArgs;
  const { name: _b, ...y } = mmditPreset(preset);
  const canon = (o: object) => JSON.stringify(Object.entries(o).sort());
  if (canon(x) !== canon(y)) {
    throw new Error(
      `${preset} preset differs from the manifest args:\n${JSON.stringify(x)}\n${
        JSON.stringify(y)
      }`,
    );
  }
}

fixtureCpuTest(
  "MMDiT hcae preset equals the released model's manifest (11,891,971,200)",
  (fx) => checkManifest(`${fx}manifests/mmdit_hcae.json`, "hcae", 11_891_971_200),
);

fixtureCpuTest(
  "MMDiT baseline-768 preset equals the base model's manifest (11,891,390,528)",
  (fx) => checkManifest(`${fx}manifests/mmdit_baseline_768.json`, "baseline-768", 11_891_390_528),
);

Deno.test("MMDiT FLUX.1-dev layout has the spec's parameter count and fused names", () => {
  const dit = new MMDiT(mmditPreset("flux-dev"));
  if (dit.params.count() !== 11_901_408_320) {
    throw new Error(`flux-dev: ${dit.params.count()} parameters, spec 11,901,408,320`);
  }
  const names = new Set(dit.params.list().map((s) => s.name));
  for (
    const k of [
      "guidance_in.in_layer.weight",
      "double_blocks.0.img_attn.qkv.weight",
      "single_blocks.37.linear1.weight",
    ]
  ) {
    if (!names.has(k)) throw new Error(`flux-dev lacks ${k}`);
  }
  if ([...names].some((n) => n.startsWith("cond_in"))) throw new Error("flux-dev has cond_in");
});

Deno.test("MMDiT bf16 storage of the real model is 2 bytes per parameter", () => {
  const dit = new MMDiT(mmditPreset("hcae"), { storage: "bf16" });
  if (dit.params.bytes() !== 2 * 11_891_971_200) throw new Error(`${dit.params.bytes()} bytes`);
});

Deno.test("MMDiT config validation names the broken invariant", () => {
  const c = mmditPreset("tiny");
  assertThrows(
    () => validateMMDiTConfig({ ...c, axesDim: [4, 6, 8] }),
    "axes_dim [4,6,8] sums to 18, but the head dim is 16",
  );
  assertThrows(() => validateMMDiTConfig({ ...c, numHeads: 5 }), "not divisible by 5 heads");
  assertThrows(() => mmditPreset("huge"), 'unknown MMDiT preset "huge"; known: hcae');
});
