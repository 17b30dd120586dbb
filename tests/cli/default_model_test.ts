/**
 * The default model's tools end to end on a 4-clip synthetic dataset: `make-data`, `init-bundle`
 * (the default family: DC-AE `small`, patch-2 MMDiT, seeded T5/CLIP with the word tokenizer),
 * `latent-stats --write --reconstruct`, `infer` on that bundle (16 frames at 64x64 through the
 * patch-2 packing), and `eval-default` writing its JSON report. The bundle is untrained, so the
 * test checks the plumbing and the report's form, not the accuracies.
 */
import { join } from "node:path";
import { readVideo } from "../../io/video.ts";
import { expect, runCli } from "../_cli.ts";

Deno.test("default model family: make-data, init-bundle, latent-stats, infer, eval-default", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "kino_default_model_" });
  try {
    const data = join(tmp, "data");
    const b = join(tmp, "bundle");
    const mk = await runCli("make_data.ts", ["--out", data, "--count", "4", "--seed", "5"]);
    expect(mk.code === 0, `make-data exited ${mk.code}`, mk.out);
    const ib = await runCli("init_bundle.ts", ["--out", b]);
    expect(ib.code === 0, `init-bundle exited ${ib.code}`, ib.out);
    const manifest = JSON.parse(await Deno.readTextFile(join(b, "kino.json")));
    expect(manifest.mmdit.config.patch_size === 2, "the default MMDiT packs 2x2", ib.out);

    const ls = await runCli("latent_stats.ts", [
      ...["--ckpt-dir", b, "--csv", join(data, "train.csv"), "--count", "2"],
      ...["--write", "--reconstruct"],
    ]);
    expect(ls.code === 0, `latent-stats exited ${ls.code}`, ls.out);
    expect(/2 clips, 16384 latent values/.test(ls.out), "32 x 4 x 8 x 8 latents per clip", ls.out);
    expect(/reconstruction: mean PSNR \d+\.\d+ dB over 2 clips/.test(ls.out), "PSNR", ls.out);
    expect(
      /evaluator on the reconstructions \(2 clips\): colour/.test(ls.out),
      "read-back",
      ls.out,
    );
    const sf = JSON.parse(await Deno.readTextFile(join(b, "kino.json"))).dc_ae.scaling_factor;
    expect(typeof sf === "number" && sf > 0, `scaling_factor ${sf}`, ls.out);

    const out = join(tmp, "v.mp4");
    const inf = await runCli("infer.ts", [
      ...["--ckpt-dir", b, "--prompt", "a red circle moving right", "--steps", "2"],
      ...["--output", out, "--quiet"],
    ]);
    expect(inf.code === 0, `infer exited ${inf.code}`, inf.out);
    const v = await readVideo(out);
    expect(v.t === 16 && v.h === 64 && v.w === 64, `video ${v.t}x${v.h}x${v.w}`, inf.out);

    const report = join(tmp, "eval.json");
    const ev = await runCli("eval_default.ts", [
      ...["--ckpt-dir", b, "--prompts", join(data, "heldout.csv"), "--limit", "2"],
      ...["--steps", "2", "--guidance", "7", "--shift", "3", "--json", report],
    ]);
    expect(ev.code === 0, `eval-default exited ${ev.code}`, ev.out);
    const r = JSON.parse(await Deno.readTextFile(report));
    for (const k of ["colour", "shape", "direction"]) {
      const a = r.score[k].accuracy;
      expect(a >= 0 && a <= 1, `${k} accuracy ${a}`, ev.out);
    }
    // 2 prompts are fewer than the 20 the acceptance needs: the check must say it failed
    expect(r.acceptance.passed === false, "acceptance with 2 prompts", ev.out);
    // a bad number is the user's error, reported before any work
    const bad = await runCli("eval_default.ts", ["--ckpt-dir", b, "--guidance", "lots"]);
    expect(
      bad.code === 2 && /--guidance must be a number >= 0, got "lots"/.test(bad.out),
      "bad --guidance",
      bad.out,
    );
    const badShift = await runCli("eval_default.ts", ["--ckpt-dir", b, "--shift", "0"]);
    expect(
      badShift.code === 2 && /--shift must be a number > 0, got "0"/.test(badShift.out),
      "bad --shift",
      badShift.out,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
