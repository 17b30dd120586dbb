/**
 * The AE trainer (`train/ae_trainer.ts`) and `deno task train-ae` (`cli/train_ae.ts`) on a few
 * synthetic 64x64 clips (`train/synthetic`), loaded at 32x32 x 8 frames to keep steps short:
 * - crops: `cropHost` against a direct index formula at odd sizes; windows are a pure function
 *   of (seed, step); the reconstructable-shape rule;
 * - overfitting a fixed 2-clip batch with the `small` preset (the reference's from-scratch
 *   init): the loss falls below 70 % of its start and PSNR rises by > 3 dB in 20 steps; the f32 export loads into a fresh `DcAe` and
 *   reproduces the trained model's reconstruction bit for bit (f16 within 2e-3);
 * - 2 steps + save + resume into a fresh model (other init) + 2 steps == 4 straight steps, bit
 *   for bit (losses and weights), with random 16x16 crops (host crop in one run, tensor slice in
 *   the other); an architecture mismatch is refused;
 * - the CLI: a 4-step run writes pruned checkpoints, metrics and an f16 export; a second run
 *   with `--resume latest` continues at step 5 and, on SIGINT, saves and exits 130; an unknown
 *   flag exits 2, an empty CSV 1.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { gpuTest } from "../_gpu.ts";
import { assertClose, maxErrors } from "../_assert_close.ts";
import { fromData } from "../../engine/graph.ts";
import { read, readAll } from "../../engine/ops/movement.ts";
import { SafeTensorsFile } from "../../engine/safetensors.ts";
import { noGrad, tidy } from "../../engine/tensor.ts";
import { dcAePreset } from "../../models/dc_ae/config.ts";
import { DcAe } from "../../models/dc_ae/model.ts";
import { writeDataset } from "../../train/synthetic/dataset.ts";
import {
  type AeBatch,
  AeTrainer,
  cropHost,
  cropWindow,
  EXPORT_STEP_KEY,
  FG_THRESHOLD,
  openAeDataset,
  reconstructionProblem,
} from "../../train/ae_trainer.ts";

// ---------------------------------------------------------------- CPU checks

Deno.test("ae_trainer: cropHost copies the window of every clip and channel", () => {
  const [B, C, T, H, W] = [2, 3, 5, 7, 9];
  const v = Float32Array.from({ length: B * C * T * H * W }, (_, i) => i * 0.5 - 3);
  const w = { t0: 1, y0: 2, x0: 3, frames: 3, height: 4, width: 5 };
  const got = cropHost(v, [B, C, T, H, W], w);
  assertEquals(got.length, B * C * 3 * 4 * 5);
  let k = 0;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < 3; t++) {
        for (let y = 0; y < 4; y++) {
          for (let x = 0; x < 5; x++) {
            const src = (((b * C + c) * T + t + 1) * H + y + 2) * W + x + 3;
            assert(got[k++] === v[src], `element ${k - 1}`);
          }
        }
      }
    }
  }
});

Deno.test("ae_trainer: crop windows are a pure function of (seed, step) and stay inside", () => {
  const shape = [2, 3, 16, 48, 64];
  const crop = { frames: 8, size: 16 };
  const seen = new Set<string>();
  for (let step = 0; step < 40; step++) {
    const w = cropWindow(shape, crop, 7, step);
    assertEquals(w, cropWindow(shape, crop, 7, step));
    assert(w.t0 >= 0 && w.t0 + 8 <= 16 && w.y0 + 16 <= 48 && w.x0 + 16 <= 64);
    assertEquals([w.frames, w.height, w.width], [8, 16, 16]);
    seen.add(`${w.t0},${w.y0},${w.x0}`);
  }
  assert(seen.size > 30, `only ${seen.size} distinct windows in 40 steps`);
  assert(
    JSON.stringify(cropWindow(shape, crop, 8, 0)) !== JSON.stringify(cropWindow(shape, crop, 7, 0)),
  );
  assertEquals(cropWindow(shape, null, 7, 3), {
    t0: 0,
    y0: 0,
    x0: 0,
    frames: 16,
    height: 48,
    width: 64,
  });
});

Deno.test("ae_trainer: the reconstructable-shape rule of the small preset", () => {
  const ae = new DcAe(dcAePreset("small")); // shape-only: allocates nothing
  assertEquals(reconstructionProblem(ae, 8, 32, 48), null);
  assertEquals(reconstructionProblem(ae, 1, 16, 16), null);
  assert(/4 frames give one latent frame/.test(reconstructionProblem(ae, 4, 32, 32)!));
  assert(/multiples of 8/.test(reconstructionProblem(ae, 8, 20, 32)!));
  assert(/6 frames/.test(reconstructionProblem(ae, 6, 32, 32)!));
});

// ---------------------------------------------------------------- shared data

const tmp = await Deno.makeTempDir({ prefix: "kino_ae_trainer_" });
let dataPromise: Promise<string> | null = null;
/** train.csv of 6 synthetic clips (64x64, 8 frames), written once. */
function data(): Promise<string> {
  dataPromise ??= writeDataset(join(tmp, "data"), { count: 6, size: 64, frames: 8, seed: 1 })
    .then((s) => s.trainCsv);
  return dataPromise;
}

/** The first batch of 2 clips at 32x32 x 8 frames. */
async function fixedBatch(): Promise<AeBatch> {
  const ds = await openAeDataset(await data(), { frames: 8, size: 32, batchSize: 2, seed: 3 });
  const it = ds.batches(null, { epochs: 1 });
  const b = (await it.next()).value!;
  await it.return();
  assertEquals(b.shape, [2, 3, 8, 32, 32]);
  let lo = Infinity, hi = -Infinity;
  for (const x of b.video) [lo, hi] = [Math.min(lo, x), Math.max(hi, x)];
  assert(lo >= -1 && hi <= 1 && hi - lo > 0.5, `batch values in [${lo}, ${hi}]`);
  return b;
}

function smallAe(seed: number): DcAe {
  const ae = new DcAe(dcAePreset("small"));
  ae.params.initialize(seed);
  return ae;
}

/** Reconstruction of a host batch, read back. */
async function reconstruct(ae: DcAe, b: AeBatch): Promise<Float32Array> {
  const y = tidy(() =>
    noGrad(() =>
      ae.decode(ae.encode(fromData(b.video, b.shape, "f32"), { tiled: false }), { tiled: false })
    )
  );
  const out = await read(y);
  y.dispose();
  return out;
}

// ---------------------------------------------------------------- overfit + export

gpuTest(
  "ae_trainer: small preset overfits a fixed 2-clip batch; the export reproduces it",
  async () => {
    const b = await fixedBatch();
    const ae = smallAe(0);
    // lr 1e-3 rather than the recipe's 5e-5, so that 20 steps show learning
    const tr = new AeTrainer(ae, { lr: 1e-3 });
    const before = await tr.evaluate(b);
    const losses: number[] = [];
    let last = null;
    for (let i = 0; i < 20; i++) {
      last = await tr.step(b);
      losses.push(last.loss);
      assert(Number.isFinite(last.loss) && last.gradNorm > 0, `step ${i + 1}: ${last.loss}`);
    }
    assertClose([losses[0]!], [before.loss], { atol: 0, rtol: 1e-5, label: "first step loss" });
    const after = await tr.evaluate(b);
    console.log(
      `  loss ${before.loss.toFixed(4)} -> ${after.loss.toFixed(4)}, PSNR ` +
        `${before.psnr.toFixed(2)} -> ${after.psnr.toFixed(2)} dB, ` +
        `${last!.seconds.toFixed(2)} s/step (2 x 8 x 32x32)`,
    );
    // with the reference's from-scratch init (outputs start near 0): measured 0.353 -> 0.208 and
    // 13.3 -> 17.6 dB in 20 steps
    assert(after.loss < 0.7 * before.loss, `loss ${before.loss} -> ${after.loss}`);
    assert(after.psnr > before.psnr + 3, `PSNR ${before.psnr} -> ${after.psnr}`);
    assertEquals(last!.step, 20);
    assertEquals([last!.frames, last!.height, last!.width, last!.samples], [8, 32, 32, 2]);
    assertEquals(last!.lr, 1e-3);

    // f32 export: a fresh model loaded from it reconstructs bit for bit like the trained one
    const want = await reconstruct(ae, b);
    const f32 = join(tmp, "export_f32.safetensors");
    await tr.exportWeights(f32, "f32");
    {
      using f = await SafeTensorsFile.open(f32);
      assertEquals(f.names().sort(), ae.params.list().map((s) => s.name).sort());
      assertEquals(f.metadata[EXPORT_STEP_KEY], "20");
      assertEquals(JSON.parse(f.metadata.kino_model_config!).name, "small");
      assertEquals(f.info(f.names()[0]!).dtype, "F32");
    }
    const fresh = new DcAe(dcAePreset("small"));
    await fresh.params.load(f32);
    const got = await reconstruct(fresh, b);
    assert(got.every((v, i) => v === want[i]), "f32 export reconstruction differs");
    fresh.params.dispose();

    // f16 export: half the size, close reconstruction
    const f16 = join(tmp, "export_f16.safetensors");
    await tr.exportWeights(f16, "f16");
    const half = new DcAe(dcAePreset("small"));
    await half.params.load(f16);
    const halfRec = await reconstruct(half, b);
    console.log(`  f16 export: max |diff| ${maxErrors(halfRec, want).abs.toExponential(2)}`);
    assertClose(halfRec, want, { atol: 2e-3, rtol: 0, label: "f16 export" });
    assert((await Deno.stat(f16)).size < 0.55 * (await Deno.stat(f32)).size);
    half.params.dispose();
    tr.dispose();
    ae.params.dispose();
  },
);

gpuTest(
  "ae_trainer: fgWeight weighs foreground pixels in both loss terms (host reference)",
  async () => {
    const b = await fixedBatch();
    const ae = smallAe(1);
    const [l1w, fg] = [0.5, 9];
    const tr = new AeTrainer(ae, { lr: 1e-3, l1: l1w, fgWeight: fg });
    const got = await tr.evaluate(b);
    const y = await reconstruct(ae, b);
    const [B, C, T, H, W] = b.shape as [number, number, number, number, number];
    const hw = H * W;
    let s2 = 0, s1 = 0, plain = 0, fgPixels = 0;
    for (let n = 0; n < B; n++) {
      for (let t = 0; t < T; t++) {
        const at = (c: number, p: number) => ((n * C + c) * T + t) * hw + p;
        const m = [0, 1, 2].map((c) => {
          let a = 0;
          for (let p = 0; p < hw; p++) a += b.video[at(c, p)]!;
          return a / hw;
        });
        for (let p = 0; p < hw; p++) {
          let dev = 0;
          for (let c = 0; c < C; c++) dev += Math.abs(b.video[at(c, p)]! - m[c]!);
          const w = dev > FG_THRESHOLD ? 1 + fg : 1;
          if (w > 1) fgPixels++;
          for (let c = 0; c < C; c++) {
            const d = y[at(c, p)]! - b.video[at(c, p)]!;
            s2 += w * d * d;
            s1 += w * Math.abs(d);
            plain += d * d;
          }
        }
      }
    }
    const N = B * C * T * hw;
    const want = s2 / N + l1w * s1 / N;
    assert(fgPixels > 0 && fgPixels < 0.5 * B * T * hw, `${fgPixels} foreground pixels`);
    assertClose([got.loss], [want], { atol: 0, rtol: 1e-4, label: "weighted loss" });
    assertClose([got.mse], [plain / N], {
      atol: 0,
      rtol: 1e-4,
      label: "reported MSE (unweighted)",
    });
    assert(got.loss > got.mse + l1w * got.l1, "the weights raise the loss");
    tr.dispose();
    ae.params.dispose();
  },
);

// ---------------------------------------------------------------- exact resume

gpuTest(
  "ae_trainer: 2 steps + save + resume + 2 steps == 4 straight steps, bit for bit",
  async () => {
    const b = await fixedBatch();
    const opts = { lr: 1e-3, crop: { size: 16 }, seed: 5 };
    const names = smallAe(0).params.list().map((s) => s.name); // shape-only listing

    const straight = smallAe(0);
    const t1 = new AeTrainer(straight, opts);
    const want: number[] = [];
    for (let i = 0; i < 4; i++) want.push((await t1.step(b)).loss);
    const wantW = await readAll(names.map((n) => straight.params.get(n)));
    t1.dispose();
    straight.params.dispose();

    const out = join(tmp, "resume_run");
    const first = smallAe(0);
    const t2 = new AeTrainer(first, opts);
    const got: number[] = [];
    for (let i = 0; i < 2; i++) got.push((await t2.step(b)).loss);
    const cursor = { seed: 3, epoch: 0, position: 2 };
    await t2.save(out, { dataCursor: cursor });
    t2.dispose();
    first.params.dispose();

    const second = smallAe(99); // other init: the weights must come from the checkpoint
    const t3 = new AeTrainer(second, opts);
    const info = await t3.resume("latest", out);
    assertEquals(info?.step, 2);
    assertEquals(info?.dataCursor, cursor);
    assertEquals(info?.differences, []);
    // the resumed run feeds a GPU tensor (cropped by a slice view) instead of host data
    const x = fromData(b.video, b.shape, "f32");
    for (let i = 0; i < 2; i++) got.push((await t3.step(x)).loss);
    x.dispose();
    assertEquals(got, want);
    const gotW = await readAll(names.map((n) => second.params.get(n)));
    names.forEach((n, i) => assert(gotW[i]!.every((v, k) => v === wantW[i]![k]), `weights ${n}`));
    console.log(`  losses ${want.map((l) => l.toFixed(5)).join(", ")} (resumed: identical)`);
    t3.dispose();
    second.params.dispose();

    // another architecture is refused with a clear message
    const tiny = new DcAe(dcAePreset("tiny"));
    tiny.params.initialize(0);
    const t4 = new AeTrainer(tiny, { lr: 1e-3 });
    await rejects(() => t4.resume("latest", out), /another architecture/);
    t4.dispose();
    tiny.params.dispose();
  },
);

// ---------------------------------------------------------------- CLI

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../cli/train_ae.ts", import.meta.url).pathname, ...args],
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

gpuTest(
  "train-ae CLI: 4 steps write checkpoints, metrics, export; resume; SIGINT saves",
  async () => {
    const csv = await data();
    const out = join(tmp, "cli_run");
    const exp = join(tmp, "cli_export.safetensors");
    const r = await cli([
      ...["--csv", csv, "--output-dir", out, "--size", "32", "--batch-size", "2"],
      ...["--max-steps", "4", "--ckpt-every", "2", "--keep-last", "1", "--lr", "1e-3"],
      ...["--export", exp, "--export-dtype", "f16", "--seed", "3"],
    ]);
    assertEquals(r.code, 0, `exit ${r.code}\n${r.out}\n${r.err}`);
    const ckpts = [...Deno.readDirSync(join(out, "checkpoints"))].map((e) => e.name).sort();
    assertEquals(ckpts, ["latest", "step_00000004"]); // keep-last 1 pruned step 2
    const jl = (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    assertEquals(jl.map((m) => m.step), [1, 2, 3, 4]);
    assert(jl.every((m) => m.loss > 0 && m.psnr > 0 && m.samples === 2), JSON.stringify(jl[0]));
    const csvLines = (await Deno.readTextFile(join(out, "metrics.csv"))).trim().split("\n");
    assertEquals(csvLines.length, 5);
    assert(csvLines[0]!.startsWith("step,loss,mse,l1,psnr,grad_norm,lr"));
    {
      using f = await SafeTensorsFile.open(exp);
      assertEquals(f.info(f.names()[0]!).dtype, "F16");
      assertEquals(f.metadata[EXPORT_STEP_KEY], "4");
    }
    const ae = new DcAe(dcAePreset("small"));
    const rep = await ae.params.load(exp);
    assertEquals(rep.loaded, ae.params.list().length);
    ae.params.dispose();
    assert(/PSNR/.test(r.err), "progress line with PSNR");

    // resume with another seed: refused before any data is read (the order would not continue)
    const other = await cli([
      ...["--csv", csv, "--output-dir", out, "--size", "32", "--batch-size", "2"],
      ...["--max-steps", "6", "--seed", "4", "--resume", "latest"],
    ]);
    assertEquals(other.code, 2, other.err);
    assert(/trained with --seed 3, not 4/.test(other.err), other.err);
    // resume the run (no --seed: the checkpoint's), interrupt it once it has taken a step: it
    // saves and exits 130
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        ...["run", "-A", new URL("../../cli/train_ae.ts", import.meta.url).pathname],
        ...["--csv", csv, "--output-dir", out, "--size", "32", "--batch-size", "2"],
        ...["--max-steps", "1000", "--lr", "1e-3", "--resume", "latest"],
        ...["--keep-last", "1", "--export", exp, "--quiet"],
      ],
      env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const steps = async () =>
      (await Deno.readTextFile(join(out, "metrics.jsonl"))).trim().split("\n")
        .map((l) => JSON.parse(l).step as number);
    const t0 = Date.now();
    while (!(await steps()).includes(5) && Date.now() - t0 < 120_000) {
      await new Promise((r) => setTimeout(r, 200));
    }
    child.kill("SIGINT");
    const done = await child.output();
    const msg = new TextDecoder().decode(done.stdout);
    assertEquals(done.code, 130, msg + new TextDecoder().decode(done.stderr));
    assert(/resumed from .*step_00000004 at step 4/.test(msg), msg);
    const n = (await steps()).length;
    assertEquals(await steps(), Array.from({ length: n }, (_, i) => i + 1));
    const latest = (await Deno.readTextFile(join(out, "checkpoints", "latest"))).trim();
    assertEquals(latest, `step_${String(n).padStart(8, "0")}`);

    const bad = await cli(["--csv", csv, "--output-dir", out, "--no-such-flag"]);
    assertEquals(bad.code, 2, bad.err);
    assert(/no-such-flag/.test(bad.err), bad.err);
    const empty = join(tmp, "empty.csv");
    await Deno.writeTextFile(empty, "");
    const e = await cli(["--csv", empty, "--output-dir", join(tmp, "cli_empty")]);
    assertEquals(e.code, 1, e.err);
    assert(/empty/.test(e.err), e.err);
  },
);

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch {
    // best effort
  }
});

Deno.test({
  name:
    "ae_trainer: preloaded clips give the same batches as decoding each step (full-length crops)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const opts = { frames: 8, size: 32, batchSize: 2, seed: 3 };
    const streamed = await openAeDataset(await data(), opts);
    const preloaded = await openAeDataset(await data(), { ...opts, preload: true });
    assert(preloaded.preloaded && !streamed.preloaded, "preload flag");
    const take = async (ds: typeof streamed) => {
      const out: AeBatch[] = [];
      for await (const b of ds.batches(null, { epochs: 2 })) out.push(b);
      return out;
    };
    const [a, b] = [await take(streamed), await take(preloaded)];
    assertEquals(a.length, 6);
    assertEquals(a.map((x) => x.indices), b.map((x) => x.indices));
    // 8-frame clips, 8-frame crops: no temporal randomness, so the pixels must agree exactly
    a.forEach((x, i) =>
      assertClose(b[i]!.video, x.video, { atol: 0, rtol: 0, label: `batch ${i}` })
    );
  },
});
