/**
 * `deno task train` end to end on a tiny bundle (the fixtures' MMDiT config and DC-AE, random
 * tiny T5/CLIP) and a latent cache of four 8-frame clips of two shapes:
 * - 6 updates (checkpoints at 3 and 6) + `--resume latest` to 9 == 9 straight updates, bit for
 *   bit (weights and every logged loss / grad norm); metrics.jsonl / .csv hold one record a step;
 * - validation samples are written; OUT/bundle works with `deno task infer` and holds the trained
 *   weights (bf16);
 * - SIGINT saves a checkpoint and exits 130; `--csv` trains with on-the-fly encoding;
 * - clear failures: missing cache, a model whose latent shape differs from the cache's, a CSV
 *   without usable rows (exit 1), unknown flag or a bad --shift (exit 2).
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { fixtureTest } from "../_gpu.ts";
import { assertClose } from "../_assert_close.ts";
import { loadSafetensors } from "../../engine/safetensors.ts";
import { readVideo } from "../../io/video.ts";
import { CSV_COLUMNS } from "../../train/metrics.ts";
import { writeTinyBundle } from "./_bundle.ts";
import { FFMPEG, writeMp4 } from "../train/_synthetic.ts";
import { expect, runCli as run } from "../_cli.ts";

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

async function jsonl(path: string): Promise<Record<string, number>[]> {
  return (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
}

/** bf16 rounding (nearest even) of an f32 value. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16) << 16;
  return f[0]!;
}

fixtureTest(
  "train: cache -> train, resume == straight, bundle infers, SIGINT, errors",
  async (fx) => {
    expect(FFMPEG, "ffmpeg/ffprobe are required");
    const tmp = await Deno.makeTempDir();
    try {
      const bundle = join(tmp, "bundle");
      await writeTinyBundle(fx, bundle);
      await writeMp4(join(tmp, "w0.mp4"), 8, 64, 128, 8);
      await writeMp4(join(tmp, "w1.mp4"), 8, 64, 128, 8);
      await writeMp4(join(tmp, "s0.mp4"), 8, 64, 64, 8);
      await writeMp4(join(tmp, "s1.mp4"), 8, 64, 64, 8);
      const csv = join(tmp, "data.csv");
      await Deno.writeTextFile(
        csv,
        "path,text\nw0.mp4,a wide red clip\nw1.mp4,a wide blue clip\ns0.mp4,a square clip\n" +
          "s1.mp4,another square clip\n",
      );
      const buckets = join(tmp, "buckets.json");
      await Deno.writeTextFile(
        buckets,
        JSON.stringify({ "96px": { "8": [1.0, 2] }, "64px": { "8": [1.0, 2] } }),
      );
      const cache = join(tmp, "cache");
      const c = await run("cache.ts", [
        "--csv",
        csv,
        "--ckpt-dir",
        bundle,
        "--out",
        cache,
        "--buckets",
        buckets,
        "--quiet",
      ]);
      expect(c.code === 0, "cache", c.out);

      const base = [
        "--cache",
        cache,
        "--lr",
        "1e-3",
        "--seed",
        "3",
        "--ckpt-every",
        "3",
        "--quiet",
      ];
      const A = join(tmp, "A"), B = join(tmp, "B");
      const a1 = await run("train.ts", [...base, "--output-dir", A, "--max-steps", "6"]);
      expect(a1.code === 0 && /step 6: saved/.test(a1.out), "train 6 steps", a1.out);
      for (const s of ["step_00000003", "step_00000006"]) {
        expect(await exists(join(A, "checkpoints", s, "model.safetensors")), `${s} missing`);
      }
      const m6 = await jsonl(join(A, "metrics.jsonl"));
      assertEquals(m6.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
      assert(m6.every((r) => Number.isFinite(r.loss) && r.loss > 0 && r.samples === 2), "metrics");
      const a2 = await run("train.ts", [
        ...base,
        "--output-dir",
        A,
        "--max-steps",
        "9",
        "--resume",
        "latest",
      ]);
      expect(
        a2.code === 0 &&
          /resumed from .*step_00000006 at step 6 \(data epoch 3, batch 0\)/.test(a2.out),
        "resume",
        a2.out,
      );
      const b = await run("train.ts", [
        ...base,
        "--output-dir",
        B,
        "--max-steps",
        "9",
        "--validate-every",
        "9",
        "--val-prompts",
        "a wide red clip",
      ]);
      expect(b.code === 0, "straight 9 steps", b.out);
      const wa = await Deno.readFile(join(A, "checkpoints", "step_00000009", "model.safetensors"));
      const wb = await Deno.readFile(join(B, "checkpoints", "step_00000009", "model.safetensors"));
      assert(wa.length === wb.length && wa.every((x, i) => x === wb[i]), "resumed weights differ");
      const ma = await jsonl(join(A, "metrics.jsonl"));
      const mb = await jsonl(join(B, "metrics.jsonl"));
      assertEquals(
        ma.map((r) => [r.step, r.loss, r.grad_norm]),
        mb.map((r) => [r.step, r.loss, r.grad_norm]),
      );
      const csvLines = (await Deno.readTextFile(join(A, "metrics.csv"))).trim().split("\n");
      assertEquals(csvLines[0], CSV_COLUMNS.join(","));
      assertEquals(csvLines.length, 10);
      // each epoch is one batch of each shape: epoch 3's loss is below epoch 0's at lr 1e-3
      const ep = (k: number) => ma[2 * k]!.loss + ma[2 * k + 1]!.loss;
      assert(ep(3) < ep(0), `loss of epoch 3 ${ep(3)} >= epoch 0 ${ep(0)}`);
      // keep-last default keeps all three; the validation sample exists
      const sample = join(B, "samples", "step_00000009", "0_a_wide_red_clip.mp4");
      expect(await exists(sample), "validation sample", b.out);
      const sv = await readVideo(sample);
      assertEquals([sv.t, sv.h, sv.w], [8, 64, 128]);

      // the bundle: trained weights (bf16) + links, usable by infer
      const bw = await loadSafetensors(join(A, "bundle", "mmdit.safetensors"));
      const cw = await loadSafetensors(
        join(A, "checkpoints", "step_00000009", "model.safetensors"),
      );
      assertEquals([...bw.keys()].sort(), [...cw.keys()].sort());
      for (const [k, t] of cw) {
        assertClose(bw.get(k)!.data, Array.from(t.data, bf16), { atol: 0, rtol: 0, label: k });
      }
      const mp4 = join(tmp, "out.mp4");
      const inf = await run("infer.ts", [
        "--ckpt-dir",
        join(A, "bundle"),
        "--prompt",
        "a wide red clip",
        "--steps",
        "3",
        "--quiet",
        "--output",
        mp4,
      ]);
      expect(inf.code === 0, "infer with the trained bundle", inf.out);
      const v = await readVideo(mp4);
      assertEquals([v.t, v.h, v.w], [8, 64, 96]);

      // SIGINT: checkpoint, exit 130
      const S = join(tmp, "S");
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../../cli/train.ts", import.meta.url).pathname,
          ...base,
          "--output-dir",
          S,
          "--max-steps",
          "1000",
          "--log-every",
          "1",
        ],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      let log = "";
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      while (!/step 2\/1000/.test(log)) {
        const { value, done } = await reader.read();
        if (done) break;
        log += value;
      }
      child.kill("SIGINT");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        log += value;
      }
      const st = await child.status;
      const err = await new Response(child.stderr).text();
      expect(
        st.code === 130 && /interrupted at step \d+/.test(log),
        `SIGINT exit ${st.code}`,
        log + err,
      );
      const latest = (await Deno.readTextFile(join(S, "checkpoints", "latest"))).trim();
      const step = Number(/interrupted at step (\d+)/.exec(log)![1]);
      assert(
        step >= 2 && step < 1000 && latest === `step_${String(step).padStart(8, "0")}`,
        latest,
      );

      // --csv: on-the-fly encoding
      const C = join(tmp, "C");
      const r = await run("train.ts", [
        "--csv",
        csv,
        "--ckpt-dir",
        bundle,
        "--buckets",
        buckets,
        "--output-dir",
        C,
        "--max-steps",
        "1",
        "--no-bundle",
        "--quiet",
      ]);
      expect(r.code === 0 && /4 usable rows of 4/.test(r.out), "train --csv", r.out);
      const mc = await jsonl(join(C, "metrics.jsonl"));
      assert(
        mc.length === 1 && Number.isFinite(mc[0]!.loss) && mc[0]!.samples === 2,
        "csv metrics",
      );
      assert(!(await exists(join(C, "bundle"))), "--no-bundle");

      // failures
      const bad = join(tmp, "bad.csv");
      await Deno.writeTextFile(bad, "path,text\nnope.mp4,gone\n");
      const cases: [string[], number, RegExp][] = [
        [
          ["--cache", join(tmp, "nocache"), "--output-dir", join(tmp, "x")],
          1,
          /no latent cache in/,
        ],
        [
          ["--cache", cache, "--preset", "small", "--output-dir", join(tmp, "x")],
          1,
          /latents of 16 channels .* in_channels 128/,
        ],
        [
          ["--csv", bad, "--ckpt-dir", bundle, "--output-dir", join(tmp, "x")],
          1,
          /no usable row among 1 \(1 missing-file\)/,
        ],
        [["--cache", cache, "--output-dir", join(tmp, "x"), "--frobnicate"], 2, /Unknown option/],
        [["--cache", cache, "--csv", csv, "--output-dir", join(tmp, "x")], 2, /exactly one of/],
        [
          ["--cache", cache, "--output-dir", join(tmp, "x"), "--shift", "0"],
          2,
          /--shift must be train, inference, none or a number > 0/,
        ],
      ];
      for (const [args, code, re] of cases) {
        const x = await run("train.ts", args);
        expect(
          x.code === code && re.test(x.out),
          `${args.join(" ")}: exit ${x.code}, want ${code} ${re}`,
          x.out,
        );
      }
      assert(!(await exists(join(tmp, "x", "checkpoints"))), "a failed run left checkpoints");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);
