/**
 * Training learns, from videos the test makes itself: a small synthetic dataset (8 captioned
 * shape clips written with ffmpeg by `train/synthetic`, plus a malformed CSV row, a missing file,
 * a corrupt video and an unknown column) is cached by `deno task cache` with the tiny bundle's
 * frozen DC-AE and text encoders — the bad rows are reported and skipped, the good ones used —
 * then the tiny MMDiT is trained on the cached latents. The rectified-flow loss on a fixed
 * validation batch and fixed draws must fall below 60% of its initial value within 60 updates.
 */
import { join } from "node:path";
import { fixtureTest } from "../_gpu.ts";
import { writeDataset } from "../../train/synthetic/dataset.ts";
import { CachedDataset } from "../../train/cached_dataset.ts";
import { Trainer } from "../../train/trainer.ts";
import type { TrainBatch } from "../../train/objective.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import { mmditFromReferenceConfig } from "../../models/mmdit/config.ts";
import { writeTinyBundle } from "../cli/_bundle.ts";

const CACHE_CLI = new URL("../../cli/cache.ts", import.meta.url).pathname;

fixtureTest("training on self-made videos: bad rows reported, loss falls below 60%", async (fx) => {
  const tmp = await Deno.makeTempDir();
  try {
    const data = join(tmp, "data");
    await writeDataset(data, { count: 8, size: 64, frames: 8, fps: 8, seed: 3, concurrency: 2 });
    // an unknown column, a malformed row, a missing file and a corrupt video
    const lines = (await Deno.readTextFile(join(data, "train.csv"))).trim().split("\n");
    const rows = [`${lines[0]},notes`, ...lines.slice(1).map((l) => `${l},ok`)];
    rows.push(`"videos/broken.mp4,unterminated quote`);
    await Deno.writeFile(join(data, "videos", "corrupt.mp4"), new Uint8Array(2048).fill(9));
    const csv = join(data, "bad.csv");
    await Deno.writeTextFile(
      csv,
      [
        ...rows.slice(0, 3),
        "videos/missing.mp4,a red circle moving left,8,64,64,1:1,64px,8,x",
        "videos/corrupt.mp4,a blue square moving up,8,64,64,1:1,64px,8,x",
        ...rows.slice(3),
      ].join("\n") + "\n",
    );
    const bundle = join(tmp, "bundle");
    await writeTinyBundle(fx, bundle);
    const buckets = join(tmp, "buckets.json");
    await Deno.writeTextFile(buckets, JSON.stringify({ "64px": { "8": [1.0, 4] } }));
    const cache = join(tmp, "cache");
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        CACHE_CLI,
        "--csv",
        csv,
        "--ckpt-dir",
        bundle,
        "--out",
        cache,
        "--buckets",
        buckets,
        "--dtype",
        "f32",
        "--quiet",
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    if (r.code !== 0) throw new Error(`cache exited ${r.code}:\n${out}`);
    for (const re of [/missing-file/, /corrupt/, /notes/, /cached 8 clips/]) {
      if (!re.test(out)) throw new Error(`cache output lacks ${re}:\n${out}`);
    }
    if (!/malformed|line 1[0-9]/i.test(out)) throw new Error(`malformed row not reported:\n${out}`);

    const ds = await CachedDataset.open(cache, { batchSize: 4, seed: 0 });
    const nul = await ds.nullEmbeddings();
    const mm = JSON.parse(await Deno.readTextFile(`${fx}tiny/mmdit_tiny/case.json`));
    const dit = new MMDiT(mmditFromReferenceConfig(mm.model_args, "tiny"));
    dit.params.initialize(0);
    const trainer = new Trainer(dit, {
      lr: 2e-3,
      objective: { seed: 0, conditionWeights: { t2v: 1 }, t5Dropout: 0, clipDropout: 0 },
      nullEmbeddings: { txt: nul.txt, yVec: nul.yVec },
    });
    try {
      const batches: TrainBatch[] = [];
      for await (const b of ds.batches(undefined, { epochs: 1 })) batches.push(b.batch);
      if (batches.length !== 2) throw new Error(`${batches.length} batches of 4 from 8 clips`);
      const val = async () => {
        let s = 0;
        for (const [i, b] of batches.entries()) {
          for (const stream of [1001, 1002, 1003]) s += await trainer.evalLoss(b, stream + 10 * i);
        }
        return s / (3 * batches.length);
      };
      const before = await val();
      for (let k = 0; k < 60; k++) await trainer.step(batches[k % batches.length]!);
      const after = await val();
      console.log(`validation loss ${before.toFixed(4)} -> ${after.toFixed(4)} in 60 updates`);
      if (!(after < 0.6 * before)) {
        throw new Error(`loss ${before} -> ${after}: not below 60% of the start`);
      }
    } finally {
      trainer.dispose();
      dit.params.dispose();
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
