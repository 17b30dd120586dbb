/**
 * Training checkpoints (`train/checkpoint.ts`): round trip of every part, the `latest` pointer and
 * its fallbacks, retention, a checkpoint write killed with SIGKILL (the previous checkpoint stays
 * usable and a fresh trainer resumes from it), and weights-only `initFrom` with the HCAE's
 * re-initialised layers.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { gpuTest } from "../_gpu.ts";
import { assertThrows, randomArray } from "../_assert_close.ts";
import { readAll } from "../../engine/ops/movement.ts";
import { SafeTensorsFile, saveSafetensors, type TensorToWrite } from "../../engine/safetensors.ts";
import { mmditPreset } from "../../models/mmdit/config.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import {
  type CheckpointData,
  checkpointsDir,
  initFrom,
  LATEST_FILE,
  listCheckpoints,
  MODEL_CONFIG_KEY,
  MODEL_FILE,
  pruneCheckpoints,
  readCheckpoint,
  repatchWeight,
  resolveResume,
  STATE_FILE,
  type TrainerState,
  writeCheckpoint,
} from "../../train/checkpoint.ts";
import { Trainer } from "../../train/trainer.ts";

function state(step: number, cursor: unknown = { next: step }): TrainerState {
  return {
    format: "kino-trainer",
    version: 1,
    step,
    stream: step,
    seed: 42,
    lrPosition: step,
    dataCursor: cursor,
    options: { lr: 3e-5 },
    modelConfig: mmditPreset("tiny"),
    savedAt: new Date(0).toISOString(),
  };
}

function fakeData(step: number, ema = true): CheckpointData {
  const t = (n: number, s: number) => ({ shape: [n], data: randomArray(n, s) });
  return {
    model: new Map([["a.weight", t(7, step)], ["b.bias", t(3, step + 1)]]),
    optimizer: new Map([
      ["a.weight.exp_avg", t(7, step + 2)],
      ["a.weight.exp_avg_sq", t(7, step + 3)],
      ["step", { shape: [], data: new Float32Array([step]) }],
    ]),
    ema: ema ? new Map([["a.weight", t(7, step + 4)], ["b.bias", t(3, step + 5)]]) : null,
    state: state(step),
  };
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kino_ckpt_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("checkpoint: every part round-trips; the weights file has plain keys and the config", async () => {
  await withTemp(async (out) => {
    const d = fakeData(250);
    const dir = await writeCheckpoint(out, d);
    assertEquals(dir, join(checkpointsDir(out), "step_00000250"));
    assertEquals(
      await Deno.readTextFile(join(checkpointsDir(out), LATEST_FILE)),
      "step_00000250\n",
    );
    const back = await readCheckpoint(dir);
    assertEquals(back.model, d.model);
    assertEquals(back.optimizer, d.optimizer);
    assertEquals(back.ema, d.ema);
    assertEquals(back.state, d.state);
    using f = await SafeTensorsFile.open(join(dir, MODEL_FILE));
    assertEquals(f.names().sort(), ["a.weight", "b.bias"]);
    assertEquals(JSON.parse(f.metadata[MODEL_CONFIG_KEY]!), mmditPreset("tiny"));
    const noEma = await readCheckpoint(await writeCheckpoint(out, fakeData(251, false)));
    assertEquals(noEma.ema, null);
  });
});

Deno.test("checkpoint: latest falls back to the newest complete folder; resolveResume paths", async () => {
  await withTemp(async (out) => {
    assertEquals(await resolveResume("latest", out), null); // fresh run
    const d1 = await writeCheckpoint(out, fakeData(1));
    const d2 = await writeCheckpoint(out, fakeData(2));
    assertEquals(await resolveResume("latest", out), d2);
    assertEquals(await resolveResume(out), d2);
    assertEquals(await resolveResume(checkpointsDir(out)), d2);
    assertEquals(await resolveResume(d1), d1);
    // a folder without its state file is incomplete: latest falls back
    await Deno.remove(join(d2, STATE_FILE));
    assertEquals(await resolveResume("latest", out), d1);
    assertEquals((await listCheckpoints(out)).map((c) => [c.step, c.complete]), [[1, true], [
      2,
      false,
    ]]);
    await assertThrows(() => resolveResume(d2), "not a complete checkpoint");
    // a pointer to a folder that is gone
    await Deno.remove(d1, { recursive: true });
    assertEquals(await resolveResume("latest", out), null);
    await assertThrows(() => resolveResume(join(out, "nowhere")), "not a complete checkpoint");
    // rewriting a step replaces it whole
    const again = await writeCheckpoint(out, fakeData(2));
    assertEquals((await readCheckpoint(again)).model, fakeData(2).model);
  });
});

Deno.test("checkpoint: keepLast retention keeps the newest complete checkpoints", async () => {
  await withTemp(async (out) => {
    for (const s of [1, 2, 3, 4]) await writeCheckpoint(out, fakeData(s));
    assertEquals(
      await pruneCheckpoints(out, 2),
      [1, 2].map((s) => join(checkpointsDir(out), `step_0000000${s}`)),
    );
    await writeCheckpoint(out, fakeData(5), { keepLast: 1 });
    assertEquals((await listCheckpoints(out)).map((c) => c.step), [5]);
    await assertThrows(() => pruneCheckpoints(out, 0), "keepLast");
  });
});

gpuTest("checkpoint: SIGKILL while writing leaves the previous checkpoint usable", async () => {
  await withTemp(async (out) => {
    const opts = { lr: 1e-3, objective: { t5Dropout: 0, clipDropout: 0 } };
    const B = 2, C = 16, T = 2, h = 2, w = 3, Lt = 3;
    const batch = (k: number) => ({
      latents: randomArray(B * C * T * h * w, 10 + k),
      latentShape: [B, C, T, h, w],
      refLatents: randomArray(B * C * h * w, 20 + k),
      txt: randomArray(B * Lt * 32, 30 + k),
      yVec: randomArray(B * 24, 40 + k),
    });
    const dit = new MMDiT(mmditPreset("tiny"));
    dit.params.initialize(1);
    const tr = new Trainer(dit, opts);
    await tr.step(batch(0));
    const saved = await tr.save(out, { dataCursor: { next: 1 } });
    const want = await tr.snapshot();
    tr.dispose();
    dit.params.dispose();

    // a child process writes a 512 MiB checkpoint of step 2 and is killed mid-write
    const mod = new URL("../../train/checkpoint.ts", import.meta.url).href;
    const st2 = JSON.stringify({ ...state(2), modelConfig: mmditPreset("tiny") });
    const code = `
      import { writeCheckpoint } from ${JSON.stringify(mod)};
      const big = new Float32Array(16 * 1024 * 1024);
      const model = new Map();
      for (let i = 0; i < 8; i++) model.set("w" + i, { shape: [big.length], data: big });
      await writeCheckpoint(${JSON.stringify(out)}, {
        model, optimizer: new Map(), ema: null, state: ${st2},
      });
      console.log("completed");`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const dir2 = join(checkpointsDir(out), "step_00000002");
    let killedAt = "";
    for (let i = 0; i < 20000 && !killedAt; i++) {
      try {
        for (const e of Deno.readDirSync(dir2)) {
          if (e.name.includes(".tmp-") && Deno.statSync(join(dir2, e.name)).size > 0) {
            child.kill("SIGKILL");
            killedAt = `${e.name} at ${Deno.statSync(join(dir2, e.name)).size} bytes`;
          }
        }
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (!killedAt) await new Promise((r) => setTimeout(r, 1));
    }
    const res = await child.output();
    const said = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
    assert(killedAt, `never saw the write start: ${said}`);
    assert(!said.includes("completed"), `the child finished before the kill (${killedAt})`);
    assertEquals(res.signal, "SIGKILL");
    console.log(`  killed while writing ${killedAt}`);

    assertEquals(
      await Deno.readTextFile(join(checkpointsDir(out), LATEST_FILE)),
      "step_00000001\n",
    );
    assertEquals((await listCheckpoints(out)).map((c) => [c.step, c.complete]), [[1, true], [
      2,
      false,
    ]]);
    assertEquals(await resolveResume("latest", out), saved);

    // a fresh trainer resumes from step 1 exactly and can save step 2 over the debris
    const dit2 = new MMDiT(mmditPreset("tiny"));
    dit2.params.initialize(5);
    const tr2 = new Trainer(dit2, opts);
    const info = await tr2.resume("latest", out);
    assertEquals(info?.step, 1);
    assertEquals(info?.dataCursor, { next: 1 });
    const got = await tr2.snapshot();
    assertEquals(got.model, want.model);
    assertEquals(got.optimizer, want.optimizer);
    await tr2.step(batch(1));
    const d2 = await tr2.save(out, { dataCursor: { next: 2 } });
    assertEquals(d2, dir2);
    assertEquals([...Deno.readDirSync(dir2)].map((e) => e.name).sort(), [MODEL_FILE, STATE_FILE]);
    assertEquals(await resolveResume("latest", out), dir2);
    tr2.dispose();
    dit2.params.dispose();
  });
});

gpuTest(
  "checkpoint: initFrom loads by name, re-initialises img_in/cond_in/final_layer.linear",
  async () => {
    await withTemp(async (dir) => {
      // a "released" model with 8 input channels where ours has 16, one missing and one extra key
      const src = new MMDiT({ ...mmditPreset("tiny"), inChannels: 8 });
      const file: Record<string, TensorToWrite> = {};
      src.params.list().forEach((s, i) => {
        if (s.name === "txt_in.bias") return;
        const n = s.shape.reduce((a, b) => a * b, 1);
        file[s.name] = { dtype: "BF16", shape: s.shape, data: randomArray(n, i + 1) };
      });
      file["extra.weight"] = { dtype: "F32", shape: [2], data: new Float32Array(2) };
      await saveSafetensors(join(dir, "released.safetensors"), file);

      const dit = new MMDiT(mmditPreset("tiny"));
      const rep = await initFrom(dit.params, join(dir, "released.safetensors"), { seed: 3 });
      assertEquals(rep.missing, ["txt_in.bias"]);
      assertEquals(rep.unexpected, ["extra.weight"]);
      assertEquals(rep.reinitialized.map((r) => r.name).sort(), [
        "cond_in.weight",
        "final_layer.linear.bias",
        "final_layer.linear.weight",
        "img_in.weight",
      ]);
      assertEquals(rep.loaded, dit.params.list().length - 5);
      assert(dit.params.ready);
      const names = ["double_blocks.1.img_attn.q_proj.weight", "img_in.weight", "cond_in.weight"];
      const [q, img, cond] = await readAll(names.map((n) => dit.params.get(n)));
      // loaded tensors are the file's (bf16-rounded) values
      const want = new Float32Array(
        randomArray(q!.length, 1 + src.params.list().findIndex((s) => s.name === names[0])),
      );
      assert(
        q!.every((v, i) => Math.abs(v - want[i]!) <= Math.abs(want[i]!) * 2 ** -8),
        "q_proj not loaded",
      );
      // re-initialised ones have our shapes and the model's init (cond_in zero, img_in uniform)
      assertEquals(dit.params.get("img_in.weight").shape, [64, 16]);
      assert(img!.some((v) => v !== 0) && img!.every((v) => Math.abs(v) <= 1 / 4));
      assert(cond!.every((v) => v === 0));
      dit.params.dispose();

      // any other shape difference is an error
      const other = new MMDiT({ ...mmditPreset("tiny"), contextInDim: 20 });
      await assertThrows(
        () => initFrom(other.params, join(dir, "released.safetensors")),
        "txt_in.weight",
        "same architecture",
      );
      other.params.dispose();
      src.params.dispose();
    });
  },
);

Deno.test("checkpoint: repatchWeight carries patch layers to a finer patch size", () => {
  const C = 3, hid = 5;
  for (const [ps, pd] of [[2, 1], [4, 2], [3, 1]] as const) {
    const r = ps / pd, kS = C * ps * ps, kD = C * pd * pd;
    // input side: a source token made of r×r copies of one destination token embeds the same
    const wIn = randomArray(hid * kS, ps * 10 + pd);
    const wInD = repatchWeight("img_in.weight", wIn, [hid, kS], [hid, kD], pd)!;
    assertEquals(wInD.length, hid * kD);
    const fine = randomArray(kD, 7); // one destination token: features c·pd² + i·pd + j
    const coarse = new Float32Array(kS);
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < ps; y++) {
        for (let x = 0; x < ps; x++) {
          coarse[(c * ps + y) * ps + x] = fine[(c * pd + (y % pd)) * pd + (x % pd)]!;
        }
      }
    }
    for (let o = 0; o < hid; o++) {
      let a = 0, b = 0;
      for (let k = 0; k < kS; k++) a += wIn[o * kS + k]! * coarse[k]!;
      for (let k = 0; k < kD; k++) b += wInD[o * kD + k]! * fine[k]!;
      assert(Math.abs(a - b) < 1e-5, `patch ${ps}→${pd}: embedding ${b} vs ${a}`);
    }
    // output side: each fine sub-pixel predicts the mean of the r×r coarse ones it stands for
    const wOut = randomArray(kS * hid, 3), bOut = randomArray(kS, 4), h = randomArray(hid, 5);
    const wOutD = repatchWeight("final_layer.linear.weight", wOut, [kS, hid], [kD, hid], pd)!;
    const bOutD = repatchWeight("final_layer.linear.bias", bOut, [kS], [kD], pd)!;
    const head = (w: Float32Array, b: Float32Array, k: number) =>
      Array.from({ length: k }, (_, q) => {
        let v = b[q]!;
        for (let i = 0; i < hid; i++) v += w[q * hid + i]! * h[i]!;
        return v;
      });
    const ys = head(wOut, bOut, kS), yd = head(wOutD, bOutD, kD);
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < pd; i++) {
        for (let j = 0; j < pd; j++) {
          let m = 0;
          for (let bi = 0; bi < r; bi++) {
            for (let bj = 0; bj < r; bj++) m += ys[(c * ps + bi * pd + i) * ps + bj * pd + j]!;
          }
          const got = yd[(c * pd + i) * pd + j]!;
          assert(Math.abs(got - m / (r * r)) < 1e-5, `patch ${ps}→${pd}: output ${got}`);
        }
      }
    }
  }
  // not a patch pair: another channel count, a coarser target, other layers
  assertEquals(repatchWeight("img_in.weight", new Float32Array(16), [2, 8], [2, 4], 1), null);
  assertEquals(repatchWeight("img_in.weight", new Float32Array(8), [2, 4], [2, 16], 2), null);
  assertEquals(repatchWeight("txt_in.weight", new Float32Array(16), [2, 8], [2, 2], 1), null);
  assertEquals(repatchWeight("img_in.weight", new Float32Array(24), [3, 8], [2, 2], 1), null);
});

gpuTest(
  "checkpoint: initFrom with patchSize carries a patch-2 checkpoint over to patch 1",
  async () => {
    await withTemp(async (dir) => {
      const tiny = mmditPreset("tiny");
      const src = new MMDiT({ ...tiny, inChannels: tiny.inChannels * 4, patchSize: 2 });
      const file: Record<string, TensorToWrite> = {};
      src.params.list().forEach((s, i) => {
        const n = s.shape.reduce((a, b) => a * b, 1);
        file[s.name] = { dtype: "F32", shape: s.shape, data: randomArray(n, i + 1) };
      });
      await saveSafetensors(join(dir, "p2.safetensors"), file);
      const dit = new MMDiT(tiny);
      const rep = await initFrom(dit.params, join(dir, "p2.safetensors"), { patchSize: 1 });
      assertEquals(rep.reinitialized, []);
      assertEquals(rep.repatched.map((w) => w.name).sort(), [
        "cond_in.weight",
        "final_layer.linear.bias",
        "final_layer.linear.weight",
        "img_in.weight",
      ]);
      assertEquals(rep.loaded, dit.params.list().length);
      const [img] = await readAll([dit.params.get("img_in.weight")]);
      const f = file["img_in.weight"]!;
      const want = repatchWeight("img_in.weight", f.data as Float32Array, f.shape, [64, 16], 1)!;
      assert(img!.every((v, i) => Math.abs(v - want[i]!) < 1e-6), "img_in not carried over");
      dit.params.dispose();
      // without patchSize the same layers are re-initialised
      const plain = new MMDiT(tiny);
      const rep2 = await initFrom(plain.params, join(dir, "p2.safetensors"));
      assertEquals(rep2.repatched, []);
      assertEquals(rep2.reinitialized.length, 4);
      plain.params.dispose();
      src.params.dispose();
    });
  },
);
