import { gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows } from "../_assert_close.ts";
import { CheckpointMismatchError, ParamSet } from "../../models/params.ts";
import { saveSafetensors } from "../../engine/safetensors.ts";
import { read } from "../../engine/ops/movement.ts";

function model(): ParamSet {
  const ps = new ParamSet();
  const blk = ps.root.sub("blocks").sub(0);
  blk.declare("proj.weight", [3, 2]);
  blk.declare("proj.bias", [3], "zeros");
  ps.root.declare("norm.scale", [2], "ones");
  return ps;
}

Deno.test("ParamSet declares checkpoint keys through nested scopes, shape-only", () => {
  const ps = model();
  const names = ps.list().map((s) => s.name);
  if (names.join() !== "blocks.0.proj.weight,blocks.0.proj.bias,norm.scale") {
    throw new Error(`${names}`);
  }
  if (ps.count() !== 11) throw new Error(`count ${ps.count()}`);
  if (ps.bytes("bf16") !== 22) throw new Error(`bytes ${ps.bytes("bf16")}`);
  let msg = "";
  try {
    ps.get("norm.scale");
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("shape-only")) throw new Error(`message: ${msg}`);
  try {
    ps.root.declare("norm.scale", [2]);
    throw new Error("duplicate accepted");
  } catch (e) {
    if (!(e as Error).message.includes("declared twice")) throw e;
  }
});

gpuTest("ParamSet.load() reads by name and reports mismatches", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = `${dir}/good.safetensors`;
    await saveSafetensors(good, {
      "blocks.0.proj.weight": {
        dtype: "F32",
        shape: [3, 2],
        data: new Float32Array([1, 2, 3, 4, 5, 6]),
      },
      "blocks.0.proj.bias": { dtype: "BF16", shape: [3], data: new Float32Array([0.5, -1, 2]) },
      "norm.scale": { dtype: "F16", shape: [2], data: new Float32Array([1.5, 2]) },
    });
    const ps = model();
    const rep = await ps.load(good);
    if (rep.loaded !== 3 || !ps.ready) throw new Error(`loaded ${rep.loaded}`);
    assertClose(await read(ps.get("blocks.0.proj.bias")), [0.5, -1, 2], { atol: 0, rtol: 0 });
    assertClose(await read(ps.get("norm.scale")), [1.5, 2], { atol: 0, rtol: 0 });
    ps.dispose();

    const bad = `${dir}/bad.safetensors`;
    await saveSafetensors(bad, {
      "blocks.0.proj.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array(6) },
      "extra.weight": { dtype: "F32", shape: [1], data: new Float32Array(1) },
    });
    const e = await assertThrows(
      () => model().load(bad),
      "missing keys (2)",
      "blocks.0.proj.bias",
      "unexpected keys (1): extra.weight",
      "blocks.0.proj.weight expected [3, 2] found [2, 3]",
    );
    if (!(e instanceof CheckpointMismatchError)) throw new Error(`class ${e.name}`);
    const lenient = model();
    const r2 = await lenient.load(bad, { strict: false });
    if (r2.loaded !== 0 || r2.missing.length !== 2) throw new Error(JSON.stringify(r2));
    await assertThrows(() => model().load(`${dir}/absent.safetensors`), "absent.safetensors");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("ParamSet.initialize() is deterministic and honours the init kinds", async () => {
  const a = model();
  const b = model();
  a.initialize(3);
  b.initialize(3);
  const wa = await read(a.get("blocks.0.proj.weight"));
  assertClose(await read(b.get("blocks.0.proj.weight")), wa, { atol: 0, rtol: 0 });
  assertClose(await read(a.get("blocks.0.proj.bias")), [0, 0, 0], { atol: 0, rtol: 0 });
  assertClose(await read(a.get("norm.scale")), [1, 1], { atol: 0, rtol: 0 });
  // fan_in uniform bound sqrt(3 / fan_in) with fan_in = 2
  if (wa.some((v) => Math.abs(v) > Math.sqrt(1.5))) throw new Error(`out of bound: ${wa}`);
  a.dispose();
  b.dispose();
});

gpuTest(
  "truncated-normal init has its std, and the DC-AE's from-scratch rule (spec §14)",
  async () => {
    const ps = new ParamSet();
    ps.declare("w", [4000, 5], { truncNormal: 0.02 });
    ps.declare("b", [7], "ones");
    ps.reinit((s) => (s.name === "b" ? "zeros" : undefined));
    ps.initialize(11);
    const w = await read(ps.get("w"));
    const mean = w.reduce((a, v) => a + v, 0) / w.length;
    const std = Math.sqrt(w.reduce((a, v) => a + (v - mean) ** 2, 0) / w.length);
    if (!(Math.abs(mean) < 1e-3 && Math.abs(std - 0.02) < 1e-3)) {
      throw new Error(`mean ${mean}, std ${std}`);
    }
    assertClose(await read(ps.get("b")), new Float32Array(7), { atol: 0, rtol: 0 });
    ps.dispose();
    // the DC-AE declares every conv/norm weight trunc-normal(0.02) and every bias zeros
    const { DcAe } = await import("../../models/dc_ae/model.ts");
    const { dcAePreset } = await import("../../models/dc_ae/config.ts");
    const ae = new DcAe(dcAePreset("tiny"));
    for (const s of ae.params.list()) {
      const want = s.name.endsWith(".bias") ? "zeros" : JSON.stringify({ truncNormal: 0.02 });
      const got = typeof s.init === "string" ? s.init : JSON.stringify(s.init);
      if (got !== want) throw new Error(`${s.name}: init ${got}, expected ${want}`);
    }
  },
);
