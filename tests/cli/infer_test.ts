/**
 * `deno task infer` end to end on a tiny bundle (the fixtures' MMDiT and DC-AE, random tiny text
 * encoders): writes a playable mp4 and its JSON sidecar; the same seed twice gives identical
 * files; a GIF and a PNG folder work too; `--dry-run` prints the real presets' memory; bad input
 * (unknown flag, impossible size or frame count, missing checkpoint, another model's checkpoint,
 * unreadable image) exits non-zero with a clear message and leaves no output behind.
 */
import { join } from "node:path";
import { fixtureTest } from "../_gpu.ts";
import { readVideo } from "../../io/video.ts";
import { loadSafetensors, saveSafetensors } from "../../engine/safetensors.ts";
import { writeTinyBundle } from "./_bundle.ts";
import { expect, runCli } from "../_cli.ts";
import { TextConditioner } from "../../models/text/conditioner.ts";
import { linspaceF32, timeShift } from "../../models/sampling/schedule.ts";

const infer = (args: string[]) => runCli("infer.ts", args);

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

fixtureTest(
  "infer: tiny bundle -> mp4 + sidecar, deterministic, gif/png, dry run, bad input",
  async (fx) => {
    const tmp = await Deno.makeTempDir();
    try {
      const ck = join(tmp, "ckpt");
      await writeTinyBundle(fx, ck);
      const base = [
        "--ckpt-dir",
        ck,
        "--prompt",
        "a red circle moving right",
        "--seed",
        "7",
        "--quiet",
      ];
      const a = join(tmp, "out", "a.mp4");
      const r1 = await infer([...base, "--output", a]);
      expect(r1.code === 0, `infer exited ${r1.code}`, r1.out);
      const v = await readVideo(a);
      expect(v.t === 8 && v.h === 64 && v.w === 96, `video is ${v.t}x${v.h}x${v.w}`, r1.out);
      const side = JSON.parse(await Deno.readTextFile(`${a}.json`));
      expect(
        side.seed === 7 && side.steps === 3 &&
          side.model_prompt === "a red circle moving right. 8 FPS. 4 motion score.",
        `sidecar ${JSON.stringify(side).slice(0, 300)}`,
        r1.out,
      );
      // same seed twice -> identical files; aliases map to the canonical flags
      const b = join(tmp, "out", "b.mp4");
      const r2 = await infer([
        "--ckpt_dir",
        ck,
        "--prompt",
        "a red circle moving right",
        "--seed=7",
        "--quiet",
        "--num_frames",
        "8",
        "--cfg-scale",
        "7.5",
        "-o",
        b,
      ]);
      expect(r2.code === 0, `second run exited ${r2.code}`, r2.out);
      const [fa, fb] = [await Deno.readFile(a), await Deno.readFile(b)];
      expect(
        fa.length === fb.length && fa.every((x, i) => x === fb[i]),
        "same seed gave different files",
        r2.out,
      );
      // another seed differs
      const c = join(tmp, "out", "c.gif");
      const r3 = await infer([...base.slice(0, -3), "--seed", "8", "--quiet", "--output", c]);
      expect(
        r3.code === 0 && (await Deno.readFile(c)).length > 100,
        `gif run exited ${r3.code}`,
        r3.out,
      );
      const pngDir = join(tmp, "out", "frames");
      const r4 = await infer([...base, "--output", pngDir]);
      expect(
        r4.code === 0 && await exists(join(pngDir, "frame_00007.png")) &&
          await exists(join(pngDir, "settings.json")),
        `png run exited ${r4.code}`,
        r4.out,
      );

      // cached text embeddings: a bundle without text encoders generates the same video
      const emb = join(tmp, "emb.safetensors");
      {
        const cond = await TextConditioner.fromFolders(join(ck, "t5"), join(ck, "clip"), {
          t5MaxLength: 12,
          clipMaxLength: 16,
        });
        await cond.saveEmbeddings(emb, ["a red circle moving right. 8 FPS. 4 motion score.", ""]);
        cond.dispose();
      }
      const noText = join(tmp, "notext");
      await writeTinyBundle(fx, noText);
      await Deno.remove(join(noText, "t5"), { recursive: true });
      await Deno.remove(join(noText, "clip"), { recursive: true });
      const e = join(tmp, "out", "e.mp4");
      const r7 = await infer([
        "--ckpt-dir",
        noText,
        "--embeddings",
        emb,
        ...base.slice(2),
        "--output",
        e,
      ]);
      expect(r7.code === 0, `embeddings run exited ${r7.code}`, r7.out);
      const fe = await Deno.readFile(e);
      expect(
        fe.length === fa.length && fe.every((x, i) => x === fa[i]),
        "embeddings gave another video",
        r7.out,
      );
      const r8 = await infer([
        "--ckpt-dir",
        noText,
        "--embeddings",
        emb,
        "--prompt",
        "unseen",
        "--output",
        join(tmp, "bad", "y.mp4"),
      ]);
      expect(
        r8.code === 1 && /not in .*emb\.safetensors/.test(r8.out),
        "unknown prompt without encoders",
        r8.out,
      );

      // dry run with the real presets (no weights there)
      const dry = await infer(["--prompt", "x", "--dry-run", "--ckpt-dir", join(tmp, "nowhere")]);
      expect(
        dry.code === 0 && /11,891,971,200 params/.test(dry.out) &&
          /mode: (resident|streamed)/.test(dry.out) && /MMDiT denoising/.test(dry.out),
        "dry run",
        dry.out,
      );

      // bad input: clear messages, non-zero exits, nothing written
      const bad = join(tmp, "bad", "x.mp4");
      const cases: [string[], number, RegExp][] = [
        [["--prompt", "x", "--frobnicate"], 2, /Unknown option '--frobnicate'/],
        [[...base, "--num-frames", "7", "--output", bad], 2, /frame/i],
        [[...base, "--num-frames", "4", "--output", bad], 2, /one latent frame/],
        [
          [...base, "--height", "100", "--width", "96", "--output", bad],
          2,
          /multiple of 32|multiples of 32/,
        ],
        [
          ["--ckpt-dir", join(tmp, "nowhere"), "--prompt", "x", "--output", bad],
          1,
          /does not exist/,
        ],
        [[...base, "--image", join(tmp, "nope.png"), "--output", bad], 2, /does not exist/],
        [[...base, "--shift", "0", "--output", bad], 2, /--shift must be a number > 0/],
      ];
      const garbage = join(tmp, "garbage.png");
      await Deno.writeFile(garbage, new Uint8Array(64).fill(7));
      cases.push([[...base, "--image", garbage, "--output", bad], 1, /cannot read the image/]);
      for (const [args, code, re] of cases) {
        const r = await infer(args);
        expect(
          r.code === code && re.test(r.out),
          `${args.join(" ")}: exit ${r.code}, want ${code} ${re}`,
          r.out,
        );
        expect(!(await exists(bad)), `${args.join(" ")} left ${bad} behind`, r.out);
      }
      // a checkpoint of another model (the fused tiny MMDiT) is refused by name and shape
      const other = join(tmp, "other");
      await writeTinyBundle(fx, other, `${fx}tiny/mmdit_tiny_fused/weights.safetensors`);
      const r5 = await infer(["--ckpt-dir", other, "--prompt", "x", "--output", bad]);
      expect(
        r5.code === 1 && /does not match the model/.test(r5.out) && !(await exists(bad)),
        "other model",
        r5.out,
      );
      // a corrupt checkpoint (truncated header) is named
      const corrupt = join(tmp, "corrupt");
      await writeTinyBundle(fx, corrupt);
      await Deno.writeFile(join(corrupt, "mmdit.safetensors"), new Uint8Array([1, 2, 3]));
      const r6 = await infer(["--ckpt-dir", corrupt, "--prompt", "x", "--output", bad]);
      expect(r6.code === 1 && /mmdit\.safetensors/.test(r6.out), "corrupt checkpoint", r6.out);
      // --shift: a fixed schedule shift α replaces the resolution rule
      const sh = join(tmp, "out", "shift.mp4");
      const r9 = await infer([...base, "--shift", "3", "--output", sh]);
      expect(r9.code === 0, `--shift run exited ${r9.code}`, r9.out);
      const sched = JSON.parse(await Deno.readTextFile(`${sh}.json`)).schedule as number[];
      const want = timeShift(3, linspaceF32(1, 0, 4));
      expect(
        sched.length === 4 && sched.every((x, i) => Math.abs(x - want[i]!) < 1e-6) &&
          Math.abs(sched[1]! - 6 / 7) < 1e-6,
        `--shift 3 schedule ${sched}, want ${want}`,
        r9.out,
      );
      void loadSafetensors;
      void saveSafetensors;
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

Deno.test("infer --dry-run: the release presets' plan per stage on given limits, no GPU", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await dryRunCases(join(tmp, "nowhere"));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

async function dryRunCases(none: string): Promise<void> {
  const limits = ["--gpu-memory", "24", "--max-binding", "128MiB", "--max-buffer", "2147483647"];
  // 768px 16:9, 128 frames: 3.25 GiB of single-block v_mlp output at batch 3 is over the 2 GiB
  // buffer limit, so the guidance branches run one at a time, and the MMDiT streams on 24 GiB
  const r = await infer(["--prompt", "x", "--dry-run", "--ckpt-dir", none, ...limits]);
  expect(
    r.code === 0 && /not asked \(the limits given on the command line\)/.test(r.out) &&
      /GPU memory 24\.00 GiB, storage binding 128\.0 MiB, buffer 2\.00 GiB/.test(r.out),
    "dry run on given limits",
    r.out,
  );
  expect(
    /MMDiT denoising .*mode: streamed, chunked, segmented/.test(r.out) &&
      /chunked: guidance branches one at a time/.test(r.out) &&
      /single-block v_mlp output \[1, 18944, 15360\] f32 = 1\.08 GiB/.test(r.out),
    "MMDiT mode",
    r.out,
  );
  expect(
    /DC-AE decoding .*mode: resident, chunked, segmented/.test(r.out) &&
      /temporal tiles of 16 frames/.test(r.out) && /text encoders .*mode: resident/.test(r.out),
    "DC-AE and text modes",
    r.out,
  );
  // 256px 1:1, one frame, on 80 GiB with a 4 GiB binding: all resident, nothing split
  const s = await infer([
    "--prompt",
    "x",
    "--dry-run",
    "--ckpt-dir",
    none,
    "--resolution",
    "256px",
    "--aspect-ratio",
    "1:1",
    "--num-frames",
    "1",
    "--gpu-memory",
    "80",
    "--max-binding",
    "4GiB",
    "--max-buffer",
    "16GiB",
  ]);
  expect(
    s.code === 0 && (s.out.match(/mode: resident\n/g) ?? []).length === 3 &&
      !/chunked|segmented|streamed/.test(s.out),
    "256px image: resident",
    s.out,
  );
  // precomputed embeddings: no text stage
  const e = await infer([
    "--prompt",
    "x",
    "--dry-run",
    "--ckpt-dir",
    none,
    "--embeddings",
    "emb.safetensors",
    ...limits,
  ]);
  expect(
    e.code === 0 && /text encoders not needed/.test(e.out) && !/text encoders +weights/.test(e.out),
    "--embeddings",
    e.out,
  );
  // a tensor over maxBufferSize that no split avoids: exit 1 naming it, its bytes and the limit
  const b = await infer([
    "--prompt",
    "x",
    "--dry-run",
    "--ckpt-dir",
    none,
    "--embeddings",
    "emb.safetensors",
    "--gpu-memory",
    "80",
    "--max-binding",
    "16MiB",
    "--max-buffer",
    "128MiB",
  ]);
  expect(
    b.code === 1 &&
      /MMDiT denoising: joint q\/k\/v and attention output \[1, 18944, 3072\] f32 is 232783872 bytes/
        .test(b.out) &&
      /maxBufferSize of 134217728 bytes/.test(b.out),
    `over maxBufferSize: exit ${b.code}`,
    b.out,
  );
  // a bad byte count is a usage error
  const u = await infer(["--prompt", "x", "--dry-run", "--max-binding", "lots"]);
  expect(
    u.code === 2 && /--max-binding must be a byte count/.test(u.out),
    `bad --max-binding: exit ${u.code}`,
    u.out,
  );
}

Deno.test({
  name:
    "infer --synthetic-weights: the bundle's architecture with random weights, labelled as such",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "kino-synthetic-" });
    try {
      const out = join(dir, "noise.mp4");
      const ckpt = new URL("../../weights/default/", import.meta.url).pathname;
      const r = await infer([
        "--synthetic-weights",
        "--ckpt-dir",
        ckpt,
        "--prompt",
        "a red circle moving right",
        "--steps",
        "1",
        "--output",
        out,
      ]);
      expect(r.code === 0, `exit ${r.code}`, r.out);
      expect(/synthetic weights: noise/.test(r.out), "the run says its video is noise", r.out);
      const meta = JSON.parse(await Deno.readTextFile(`${out}.json`));
      expect(meta.synthetic_weights === true, "sidecar synthetic_weights", JSON.stringify(meta));
      expect(/^synthetic \(seeded random/.test(meta.model.weights), "sidecar weights label");
      // --preset belongs to synthetic runs without --ckpt-dir
      const bad = await infer(["--prompt", "x", "--preset", "hcae", "--ckpt-dir", ckpt]);
      expect(bad.code === 2 && /--preset only picks/.test(bad.out), "bad --preset", bad.out);
      const unknown = await infer(["--synthetic-weights", "--prompt", "x", "--preset", "nope"]);
      expect(unknown.code === 2 && /nope/.test(unknown.out), "unknown preset", unknown.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
