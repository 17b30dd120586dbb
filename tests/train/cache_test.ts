/**
 * `deno task cache` and `CachedDataset` on a tiny bundle (the fixtures' DC-AE, random tiny T5 /
 * CLIP) and six CSV rows (four 8-frame H.264 clips of two shapes, one missing, one corrupt):
 * - the cache holds, per clip, exactly the direct DC-AE encode of the sample the dataset loads
 *   (epoch-0 crop), the 1-frame encode of its first frame, and the caption's T5 / CLIP states,
 *   stored as f16 (within f16 rounding); null.safetensors holds T5("") / CLIP("");
 * - bad rows are skipped with their reason; a rerun reuses every file; a deleted clip file is
 *   re-encoded to the same bytes; other settings in the same folder are refused;
 * - CachedDataset forms one-shape batches covering each clip once per epoch, reshuffles per
 *   epoch, resumes from a JSON cursor to the same batches, honours --batch-size;
 * - an all-bad CSV exits 1 with the reason, an unknown flag exits 2.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { fixtureTest } from "../_gpu.ts";
import { assertClose } from "../_assert_close.ts";
import { fromData } from "../../engine/graph.ts";
import { readAll } from "../../engine/ops/movement.ts";
import { SafeTensorsFile } from "../../engine/safetensors.ts";
import { noGrad, tidy } from "../../engine/tensor.ts";
import { DcAe } from "../../models/dc_ae/model.ts";
import { inspectBundle } from "../../models/pipeline.ts";
import { TextConditioner } from "../../models/text/conditioner.ts";
import { type CacheIndex, firstFrames } from "../../train/cache.ts";
import { CachedDataset } from "../../train/cached_dataset.ts";
import { cursorFromJSON, cursorToJSON, openDataset } from "../../train/data/mod.ts";
import { writeTinyBundle } from "../cli/_bundle.ts";
import { FFMPEG, writeGarbage, writeMp4 } from "./_synthetic.ts";
import { expect, runCli } from "../_cli.ts";

const run = (args: string[]) => runCli("cache.ts", args);

/** Four good clips (two 64x128, two 64x64; 8 frames at 8 fps), one missing, one corrupt. */
async function writeTinyData(dir: string): Promise<{ csv: string; buckets: string }> {
  await writeMp4(join(dir, "w0.mp4"), 8, 64, 128, 8);
  await writeMp4(join(dir, "w1.mp4"), 8, 64, 128, 8);
  await writeMp4(join(dir, "s0.mp4"), 8, 64, 64, 8);
  await writeMp4(join(dir, "s1.mp4"), 8, 64, 64, 8);
  await writeGarbage(join(dir, "bad.mp4"));
  const csv = join(dir, "data.csv");
  await Deno.writeTextFile(
    csv,
    "path,text\nw0.mp4,a wide red clip\nw1.mp4,a wide blue clip\ns0.mp4,a square clip\n" +
      "missing.mp4,gone\ns1.mp4,another square clip\nbad.mp4,garbage\n",
  );
  // 64x128 clips fit 96px (16:9 -> 64x128); 64x64 ones only 64px (16:9 -> 32x128)
  const buckets = join(dir, "buckets.json");
  await Deno.writeTextFile(
    buckets,
    JSON.stringify({ "96px": { "8": [1.0, 2] }, "64px": { "8": [1.0, 2] } }),
  );
  return { csv, buckets };
}

async function readClip(path: string) {
  using f = await SafeTensorsFile.open(path);
  const out: Record<string, { shape: number[]; dtype: string; data: Float32Array }> = {};
  for (const n of f.names()) {
    out[n] = { shape: [...f.info(n).shape], dtype: f.info(n).dtype, data: await f.readF32(n) };
  }
  return out;
}

fixtureTest(
  "cache: CLI encodes clips as training would, resumes, CachedDataset batches",
  async (fx) => {
    expect(FFMPEG, "ffmpeg/ffprobe are required");
    const tmp = await Deno.makeTempDir();
    try {
      const bundle = join(tmp, "bundle");
      await writeTinyBundle(fx, bundle);
      const { csv, buckets } = await writeTinyData(tmp);
      const out = join(tmp, "cache");
      const r1 = await run([
        "--csv",
        csv,
        "--ckpt-dir",
        bundle,
        "--out",
        out,
        "--buckets",
        buckets,
      ]);
      expect(
        r1.code === 0 && /encoded 4, reused 0, skipped 2 rows/.test(r1.out),
        "cache run",
        r1.out,
      );
      expect(/missing-file/.test(r1.out) && /corrupt/.test(r1.out), "skip reasons logged", r1.out);
      expect(/ETA/.test(r1.out), "progress bar with ETA", r1.out);

      const idx = JSON.parse(await Deno.readTextFile(join(out, "cache.json"))) as CacheIndex;
      assert(idx.complete);
      assertEquals(idx.entries.map((e) => e.index), [0, 1, 2, 4]);
      assertEquals(idx.skipped.map((s) => [s.line, s.reason]), [[5, "missing-file"], [
        7,
        "corrupt",
      ]]);
      assertEquals(idx.entries.map((e) => e.latentShape), [
        [16, 2, 2, 4],
        [16, 2, 2, 4],
        [16, 2, 1, 4],
        [16, 2, 1, 4],
      ]);
      assertEquals(idx.text, { t5Length: 12, t5Dim: 32, clipDim: 24 });
      assertEquals(idx.bundle.manifest.mmdit.weights, "mmdit.safetensors");
      assert(idx.entries.every((e) => e.hasRef), "every video has a reference latent");
      // the training caption: text + the probed frame rate (a float, as the reference prints it)
      assertEquals(idx.entries[0]!.caption, "a wide red clip 8.0 FPS.");

      // the same samples, encoded directly
      const info = await inspectBundle(bundle);
      const ae = new DcAe(info.ae, { storage: "bf16" });
      await ae.params.load(join(bundle, "dc_ae.safetensors"));
      const text = await TextConditioner.fromFolders(join(bundle, "t5"), join(bundle, "clip"), {
        t5MaxLength: 12,
        clipMaxLength: 16,
      });
      const ds = await openDataset(csv, {
        buckets,
        seed: 42,
        spatialCompression: 32,
        log: () => {},
      });
      const f16 = { atol: 2e-3, rtol: 1e-3 };
      for (const e of idx.entries) {
        const got = await readClip(join(out, e.file));
        assertEquals(
          Object.fromEntries(Object.entries(got).map(([k, v]) => [k, [v.dtype, v.shape]])),
          {
            latent: ["F16", e.latentShape],
            ref: ["F16", [16, 1, ...e.latentShape.slice(2)]],
            txt: ["F16", [12, 32]],
            y_vec: ["F16", [24]],
          },
        );
        const bucket = ds.report.rows.find((s) => s.index === e.index)!.bucket!;
        assertEquals(bucket.key, e.bucket);
        const video = await ds.loadSample(e.index, bucket, 0);
        const shape = [1, 3, bucket.frames, bucket.height, bucket.width];
        const [lat, ref] = noGrad(() =>
          tidy(() => [
            ae.encode(fromData(video, shape, "f32")),
            ae.encode(fromData(firstFrames(video, shape), [1, 3, 1, shape[3]!, shape[4]!], "f32")),
          ])
        );
        const emb = text.encode([e.caption]);
        const [l, rf, t, y] = await readAll([lat!, ref!, emb.txt, emb.yVec]);
        for (const x of [lat!, ref!, emb.txt, emb.yVec]) x.dispose();
        const label = `clip ${e.index}`;
        assertClose(got.latent!.data, l!, { ...f16, label: `${label} latent` });
        assertClose(got.ref!.data, rf!, { ...f16, label: `${label} ref` });
        assertClose(got.txt!.data, t!, { ...f16, label: `${label} txt` });
        assertClose(got.y_vec!.data, y!, { ...f16, label: `${label} y_vec` });
        // the reference latent is a 1-frame encode, not the clip's first latent frame
        const hw = e.latentShape[2]! * e.latentShape[3]!;
        let d = 0;
        for (let c = 0; c < 16; c++) {
          for (let i = 0; i < hw; i++) {
            d = Math.max(d, Math.abs(rf![c * hw + i]! - l![c * 2 * hw + i]!));
          }
        }
        assert(d > 1e-2, `${label}: ref equals the first latent frame (max diff ${d})`);
      }
      const nul = await readClip(join(out, "null.safetensors"));
      const ne = text.encode([""]);
      const [nt, ny] = await readAll([ne.txt, ne.yVec]);
      ne.txt.dispose();
      ne.yVec.dispose();
      assertClose(nul.txt!.data, nt!, { ...f16, shape: [12, 32], label: "T5('')" });
      assertClose(nul.y_vec!.data, ny!, { ...f16, label: "CLIP('')" });
      ae.params.dispose();
      text.dispose();

      // rerun: everything reused; a deleted clip is re-encoded to the same bytes
      const files = idx.entries.map((e) => join(out, e.file));
      const before = await Promise.all(files.map((f) => Deno.readFile(f)));
      await Deno.remove(files[2]!);
      const r2 = await run([
        "--csv",
        csv,
        "--ckpt-dir",
        bundle,
        "--out",
        out,
        "--buckets",
        buckets,
      ]);
      expect(r2.code === 0 && /encoded 1, reused 3/.test(r2.out), "resumed cache run", r2.out);
      const after = await Promise.all(files.map((f) => Deno.readFile(f)));
      after.forEach((b, i) => assertEquals(b, before[i], `clip file ${files[i]} changed`));
      const r3 = await run([
        "--csv",
        csv,
        "--ckpt-dir",
        bundle,
        "--out",
        out,
        "--buckets",
        buckets,
        "--dtype",
        "f32",
      ]);
      expect(r3.code === 1 && /other settings \(dtype/.test(r3.out), "settings mismatch", r3.out);

      // CachedDataset
      const cd = await CachedDataset.open(out, { seed: 5 });
      assertEquals(cd.groups.map((g) => [g.latentShape, g.members.length, g.batchSize]), [
        [[16, 2, 2, 4], 2, 2],
        [[16, 2, 1, 4], 2, 2],
      ]);
      assertEquals(cd.batchesPerEpoch, 2);
      const all = [];
      for await (const b of cd.batches(undefined, { epochs: 8 })) all.push(b);
      assertEquals(all.length, 16);
      const byIndex = new Map(idx.entries.map((e) => [e.index, e]));
      for (const b of all) {
        const es = b.indices.map((i) => byIndex.get(i)!);
        assertEquals(b.shape, [2, ...es[0]!.latentShape]);
        assert(es.every((e) => e.latentShape.join() === es[0]!.latentShape.join()), "one shape");
        assertEquals(b.captions, es.map((e) => e.caption));
        // the batch holds the files' values, in batch order
        const per = es[0]!.latentShape.reduce((a, x) => a * x, 1);
        for (const [k, e] of es.entries()) {
          const f = await readClip(join(out, e.file));
          assertEquals(
            (b.batch.latents as Float32Array).subarray(k * per, (k + 1) * per),
            f.latent!.data,
          );
          assertEquals(
            (b.batch.refLatents as Float32Array).subarray(k * per / 2, (k + 1) * per / 2),
            f.ref!.data,
          );
          assertEquals((b.batch.txt as Float32Array).subarray(k * 384, (k + 1) * 384), f.txt!.data);
        }
      }
      const orders = new Set<string>();
      for (let ep = 0; ep < 8; ep++) {
        const e = all.slice(2 * ep, 2 * ep + 2);
        assertEquals(e.flatMap((b) => b.indices).sort(), [0, 1, 2, 4], `epoch ${ep} covers all`);
        orders.add(e.map((b) => b.indices.join(",")).join("|"));
      }
      assert(orders.size >= 3, `only ${orders.size} distinct epoch orders in 8 epochs`);
      // resume from a JSON cursor: the same batches follow
      const cur = cursorFromJSON(cursorToJSON(all[4]!.cursor));
      assertEquals(cur, { seed: 5, epoch: 2, position: 1 });
      const cd2 = await CachedDataset.open(out, { seed: 5 });
      const again = [];
      for await (const b of cd2.batches(cur, { epochs: 8 })) again.push(b);
      assertEquals(again.map((b) => b.indices), all.slice(5).map((b) => b.indices));
      assertEquals(again[0]!.batch.latents, all[5]!.batch.latents);
      // batch size override, and one that leaves no full batch
      const one = await CachedDataset.open(out, { batchSize: 1 });
      assertEquals(one.batchesPerEpoch, 4);
      await CachedDataset.open(out, { batchSize: 3 }).then(
        () => assert(false, "batch size 3 should leave no batch"),
        (e) => assert(/no latent shape has a full batch/.test(e.message), e.message),
      );
      await CachedDataset.open(join(tmp, "nowhere")).then(
        () => assert(false, "a missing cache should fail"),
        (e) => assert(/no latent cache in .*deno task cache/.test(e.message), e.message),
      );

      // bad input
      const bad = join(tmp, "bad.csv");
      await Deno.writeTextFile(bad, "path,text\nmissing.mp4,gone\nbad.mp4,garbage\n");
      const r4 = await run(["--csv", bad, "--ckpt-dir", bundle, "--out", join(tmp, "c2")]);
      expect(
        r4.code === 1 && /no usable row among 2 \(1 missing-file, 1 corrupt\)/.test(r4.out),
        "all bad",
        r4.out,
      );
      const r5 = await run(["--csv", csv, "--frobnicate"]);
      expect(r5.code === 2 && /Unknown option '--frobnicate'/.test(r5.out), "unknown flag", r5.out);
      const r6 = await run(["--csv", csv, "--out", join(tmp, "c3")]);
      expect(r6.code === 2 && /--ckpt-dir is required/.test(r6.out), "missing flag", r6.out);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

fixtureTest(
  "cache: rows naming the same clip share its latents, each with its own caption",
  async (fx) => {
    expect(FFMPEG, "ffmpeg/ffprobe are required");
    const tmp = await Deno.makeTempDir();
    try {
      const bundle = join(tmp, "bundle");
      await writeTinyBundle(fx, bundle);
      await writeMp4(join(tmp, "s0.mp4"), 8, 64, 64, 8);
      await writeMp4(join(tmp, "s1.mp4"), 8, 64, 64, 8);
      const csv = join(tmp, "data.csv");
      // s0 three times (caption variants, as make-data --caption-variants writes them), s1 once
      await Deno.writeTextFile(
        csv,
        "path,text\ns0.mp4,a red square moving left\ns1.mp4,a blue circle moving up\n" +
          "s0.mp4,a square moving left\ns0.mp4,a red square\n",
      );
      const buckets = join(tmp, "buckets.json");
      await Deno.writeTextFile(buckets, JSON.stringify({ "64px": { "8": [1.0, 2] } }));
      const out = join(tmp, "cache");
      const args = ["--csv", csv, "--ckpt-dir", bundle, "--out", out, "--buckets", buckets];
      const r = await run(args);
      expect(r.code === 0 && /encoded 4, reused 0, skipped 0 rows/.test(r.out), "cache run", r.out);
      const idx = JSON.parse(await Deno.readTextFile(join(out, "cache.json"))) as CacheIndex;
      assertEquals(idx.entries.map((e) => [e.index, e.path.endsWith("s0.mp4")]), [
        [0, true],
        [1, false],
        [2, true],
        [3, true],
      ]);
      const clips = await Promise.all(idx.entries.map((e) => readClip(join(out, e.file))));
      const [first, , v1, v2] = clips as [
        typeof clips[0],
        typeof clips[0],
        typeof clips[0],
        typeof clips[0],
      ];
      for (const v of [v1, v2]) {
        assertEquals(v.latent!.data, first.latent!.data, "shared latent");
        assertEquals(v.ref!.data, first.ref!.data, "shared reference latent");
        assertEquals(v.latent!.shape, first.latent!.shape);
      }
      // each row's own caption, encoded as training would
      const text = await TextConditioner.fromFolders(join(bundle, "t5"), join(bundle, "clip"), {
        t5MaxLength: 12,
        clipMaxLength: 16,
      });
      try {
        for (const [k, e] of idx.entries.entries()) {
          const emb = text.encode([e.caption]);
          const [t, y] = await readAll([emb.txt, emb.yVec]);
          emb.txt.dispose();
          emb.yVec.dispose();
          const f16 = { atol: 2e-3, rtol: 1e-3, label: `row ${e.index} (${e.caption})` };
          assertClose(clips[k]!.txt!.data, t!, f16);
          assertClose(clips[k]!.y_vec!.data, y!, f16);
        }
      } finally {
        text.dispose();
      }
      assert(v1.y_vec!.data.some((x, i) => x !== first.y_vec!.data[i]), "variant caption encoded");
      // the first row's file gone: a rerun re-encodes it, the variants' files are reused
      await Deno.remove(join(out, idx.entries[0]!.file));
      const r2 = await run(args);
      expect(r2.code === 0 && /encoded 1, reused 3/.test(r2.out), "resumed cache run", r2.out);
      assertEquals(
        (await readClip(join(out, idx.entries[0]!.file))).latent!.data,
        first.latent!.data,
      );
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);
