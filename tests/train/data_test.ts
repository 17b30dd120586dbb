/**
 * Training data (issue #6 part 1): CSV reading, frame sampling, resize-crop, buckets, batches,
 * cursor resume, and `deno task dataset:check`. Media are tiny clips written with ffmpeg.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { assertClose, assertThrows } from "../_assert_close.ts";
import {
  aspectRatioTable,
  bilinearResizeCrop,
  type BucketConfig,
  Buckets,
  captionWithSuffix,
  closestRatio,
  cursorFromJSON,
  cursorToJSON,
  DatasetCsvError,
  DatasetError,
  HCAE_BUCKETS,
  linspaceInt,
  mapTargetFps,
  maxCropStart,
  openDataset,
  parseDatasetCsv,
  pilBicubicResizeCrop,
  planEpoch,
  resizeCropPlan,
  Rng,
  STREAM,
  temporalIndices,
  temporalRandomCrop,
  TooShortError,
} from "../../train/data/mod.ts";
import {
  mediaTest,
  synthClip,
  synthFrame,
  synthImage,
  writeGarbage,
  writeLossless,
  writeMp4,
  writePng,
} from "./_synthetic.ts";

/** A small bucket table for 64px clips (aspect table with D = 16). */
const SMALL: BucketConfig = { "64px": { 1: [1.0, 2], 16: [1.0, 2], 20: [1.0, 2] } };
const SMALL_OPTS = { buckets: SMALL, spatialCompression: 16, log: () => {} };

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kino_data_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------- CSV

Deno.test("CSV: malformed rows are reported by line, unknown columns once, paths resolved", () => {
  const text = [
    "path,text,num_frames,height,width,fps,mood,score_vmafmotion",
    'clips/a.mp4,"A dog, running",120,1080,1920,30,calm,3.6', // 2: good
    "clips/b.mp4,too,many,fields,1,2,3,4,5", // 3: 9 fields
    ",no path,1,1,1,24,x,", // 4: empty path
    "clips/c.mp4,bad size,12,tall,100,24,x,", // 5: non-numeric height
    "",
    "/abs/d.png,an image,,,,,x,", // 7: good, metadata to probe, fps NaN
    "clips/e.mp4,,10,10,10,24,x,", // 8: empty text
    "clips/f.mp4,zero frames,0,10,10,24,x,", // 9: non-positive
    "clips/g.mp4,bad fps,10,10,10,fast,x,", // 10
    "clips/h.mp4,unknown rate,10,10,10,nan,x,", // 11: good, fps NaN
  ].join("\n");
  const t = parseDatasetCsv(text, "/data/set/train.csv");
  assertEquals(t.unknownColumns, ["mood"]);
  assertEquals(t.rows.map((r) => [r.line, r.index]), [[2, 0], [7, 4], [11, 8]]);
  const [a, d, hh] = t.rows;
  assert(Number.isNaN(hh!.fps!), "a literal nan is an unknown rate");
  assertEquals(a!.path, "/data/set/clips/a.mp4");
  assertEquals(a!.rawPath, "clips/a.mp4");
  assertEquals([a!.text, a!.numFrames, a!.height, a!.width, a!.fps, a!.motionScore], [
    "A dog, running",
    120,
    1080,
    1920,
    30,
    3.6,
  ]);
  assertEquals(d!.path, "/abs/d.png");
  // Empty cells are metadata to probe.
  assert(d!.fps === undefined && d!.numFrames === undefined && d!.height === undefined);
  assertEquals(t.fpsIsFloat, true, "a missing fps makes the pandas column float");
  const probs = t.problems.map((p) => [p.line, p.detail]);
  assertEquals(probs.map((p) => p[0]), [3, 4, 5, 8, 9, 10]);
  assert(/9 fields, the header has 8/.test(probs[0]![1] as string));
  assert(/empty 'path'/.test(probs[1]![1] as string));
  assert(/'height' must be a positive integer, got 'tall'/.test(probs[2]![1] as string));
  assert(/empty 'text'/.test(probs[3]![1] as string));
  assert(/'num_frames' must be a positive integer, got '0'/.test(probs[4]![1] as string));
  assert(/'fps' must be a positive number/.test(probs[5]![1] as string));
  // An unclosed quote swallows the rest of the file: reported, earlier rows kept.
  const q = parseDatasetCsv('path,text\na.mp4,fine\nb.mp4,"never closed\nc.mp4,x\n', "/d/x.csv");
  assertEquals(q.rows.map((r) => r.rawPath), ["a.mp4"]);
  assertEquals(q.problems.length, 1);
  assert(/Quote Not Closed/i.test(q.problems[0]!.detail), q.problems[0]!.detail);
  assert(/starts after line 2/.test(q.problems[0]!.detail), q.problems[0]!.detail);
});

Deno.test("CSV: empty file, missing required column, parquet: clear errors", async () => {
  await assertThrows(() => parseDatasetCsv("", "/d/e.csv"), "the CSV is empty", "path,text");
  await assertThrows(() => parseDatasetCsv("\n\n", "/d/e.csv"), "the CSV is empty");
  await assertThrows(
    () => parseDatasetCsv("path,caption\na.mp4,x\n", "/d/e.csv"),
    "required column 'text' is missing",
    "path, caption",
  );
  const e = await assertThrows(() => openDataset("/nonexistent/x.parquet"), "parquet");
  assert(e instanceof DatasetCsvError);
  // Header only: parses, but opening finds no usable row.
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/h.csv`, "path,text\n");
    const err = await assertThrows(() => openDataset(`${dir}/h.csv`, SMALL_OPTS), "no usable row");
    assert(err instanceof DatasetError);
    await Deno.writeTextFile(`${dir}/empty.csv`, "");
    assert(
      (await assertThrows(() => openDataset(`${dir}/empty.csv`), "empty")) instanceof
        DatasetCsvError,
    );
  });
});

// ---------------------------------------------------------------- fps, captions, sampling

Deno.test("fps mapping and caption suffixes follow data.md §3", () => {
  const cases: [number, number, number][] = [
    [24, 24, 1],
    [25, 12, 2],
    [29.97, 14, 2],
    [30, 15, 2],
    [50, 16, 3],
    [60, 20, 3],
    [15, 15, 1],
    [23.976, 23.976, 1],
  ];
  for (const [fps, nf, iv] of cases) assertEquals(mapTargetFps(fps), { fps: nf, interval: iv });
  assertEquals(mapTargetFps(NaN), { fps: 0, interval: 1 });
  const cap = (fps: number, fpsIsFloat: boolean, motionScore?: number, vmaf = true) =>
    captionWithSuffix({ text: "A dog runs on a beach", fps, fpsIsFloat, motionScore }, 24, vmaf);
  assertEquals(cap(30, false, 4.3), "A dog runs on a beach 15 FPS, 4 motion score.");
  assertEquals(cap(30, true, 3.5), "A dog runs on a beach 15 FPS, 4 motion score.");
  assertEquals(cap(15, true), "A dog runs on a beach 15.0 FPS.");
  assertEquals(cap(15, false), "A dog runs on a beach 15 FPS.");
  assertEquals(cap(24, true), "A dog runs on a beach 24 FPS."); // math.floor gives an int
  assertEquals(cap(23.0, true), "A dog runs on a beach 23.0 FPS.");
  assertEquals(cap(23.976, true, NaN), "A dog runs on a beach 23.976 FPS.");
  assertEquals(cap(NaN, true, 2.49), "A dog runs on a beach 2 motion score.");
  assertEquals(cap(NaN, true), "A dog runs on a beach");
  assertEquals(cap(24, false, 7, false), "A dog runs on a beach 24 FPS.");
});

Deno.test("temporal sampling: indices match hand-computed linspace truncations", () => {
  // total 20, n 8, interval 2, start 3: end 19, linspace(3, 18, 8) step 15/7.
  assertEquals(temporalIndices(20, 8, 2, 3), [3, 5, 7, 9, 11, 13, 15, 18]);
  // total 10 < window 16: end 10, linspace(0, 9, 8) step 9/7.
  assertEquals(temporalIndices(10, 8, 2, 0), [0, 1, 2, 3, 5, 6, 7, 9]);
  // data.md's example: total 300, n 128, interval 2 -> start in [0, 43], step 255/127.
  assertEquals(maxCropStart(300, 128, 2), 43);
  const big = temporalIndices(300, 128, 2, 43);
  assertEquals(big.slice(0, 5), [43, 45, 47, 49, 51]);
  assertEquals(big.slice(62, 66), [167, 169, 171, 173]); // 43 + trunc(k·255/127)
  assertEquals(big.at(-1), 298);
  assertEquals(linspaceInt(5, 5, 1), [5]);
  assertEquals(linspaceInt(0, 3, 4), [0, 1, 2, 3]);
  assertEquals(temporalIndices(16, 16, 1, 0), [...Array(16).keys()]);
  // Fewer frames than needed.
  assert(
    (() => {
      try {
        temporalIndices(12, 16, 1, 0);
      } catch (e) {
        return e instanceof TooShortError;
      }
      return false;
    })(),
  );
  // The random start stays in range, is a function of its stream keys, and varies across keys.
  const starts = new Set<number>();
  for (let row = 0; row < 200; row++) {
    const a = temporalRandomCrop(300, 128, 2, Rng.of(STREAM.crop, 42, 0, row));
    const b = temporalRandomCrop(300, 128, 2, Rng.of(STREAM.crop, 42, 0, row));
    assertEquals(a, b);
    assert(a.start >= 0 && a.start <= 43);
    assertEquals(a.indices, temporalIndices(300, 128, 2, a.start));
    starts.add(a.start);
  }
  assert(starts.size > 30 && starts.has(0) && starts.has(43), `starts ${[...starts]}`);
});

// ---------------------------------------------------------------- resize-crop

Deno.test("resize-crop geometry: fill then centre crop; video floor vs image half-even", () => {
  // 1080p -> 576x1024: exact fit.
  assertEquals(resizeCropPlan(1080, 1920, 576, 1024, "video"), {
    sh: 576,
    sw: 1024,
    top: 0,
    left: 0,
    th: 576,
    tw: 1024,
  });
  // 5x7 -> 12x10: rh 2.4 > rw: resize to 12 x round(16.8) = 17, excess 7.
  assertEquals(resizeCropPlan(5, 7, 12, 10, "video").left, 3); // int(7 / 2)
  assertEquals(resizeCropPlan(5, 7, 12, 10, "image").left, 4); // round(3.5) = 4 (even)
  // 8x18 -> 4x4: sw = 9, excess 5: floor 2; round(2.5) = 2 (half to even).
  assertEquals(resizeCropPlan(8, 18, 4, 4, "image").left, 2);
  // Tall source -> rows cropped: 100x50 -> 40x40: rh 0.4 < rw 0.8: sh = 80, top = 20.
  const p = resizeCropPlan(100, 50, 40, 40, "video");
  assertEquals([p.sh, p.sw, p.top, p.left], [80, 40, 20, 0]);
  // 3x5 -> 2x2: rh 2/3 > rw 0.4, so sw = round(5·2/3) = round(3.333) = 3.
  assertEquals(resizeCropPlan(3, 5, 2, 2, "video").sw, 3);
  // 2x5 -> 5x1: rh 2.5 > rw 0.2: sw = round(12.5) = 12 (half to even).
  assertEquals(resizeCropPlan(2, 5, 5, 1, "video").sw, 12);
});

/** torch bilinear (align_corners=False, no antialias) of a whole frame in float64, then crop. */
function refBilinear(src: Uint8Array, h: number, w: number, th: number, tw: number): Float64Array {
  const p = resizeCropPlan(h, w, th, tw, "video");
  const full = new Float64Array(p.sh * p.sw * 3);
  const coord = (d: number, inS: number, outS: number) => {
    const s = Math.max(0, ((d + 0.5) * inS) / outS - 0.5);
    const i0 = Math.min(Math.floor(s), inS - 1);
    return [i0, Math.min(i0 + 1, inS - 1), s - i0] as const;
  };
  for (let Y = 0; Y < p.sh; Y++) {
    const [y0, y1, ly] = coord(Y, h, p.sh);
    for (let X = 0; X < p.sw; X++) {
      const [x0, x1, lx] = coord(X, w, p.sw);
      for (let c = 0; c < 3; c++) {
        const at = (y: number, x: number) => src[(y * w + x) * 3 + c]! / 255;
        full[(Y * p.sw + X) * 3 + c] = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) +
          ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
      }
    }
  }
  const out = new Float64Array(3 * th * tw); // channel-planar
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      for (let c = 0; c < 3; c++) {
        const v = full[((y + p.top) * p.sw + x + p.left) * 3 + c]!;
        out[c * th * tw + y * tw + x] = (v - 0.5) / 0.5;
      }
    }
  }
  return out;
}

Deno.test("bilinear resize-crop matches a float64 reference of torch's formula", () => {
  // Tolerance: the implementation evaluates the same formula in float64 and stores float32
  // (<= 6e-8 here); 1e-6 is the size of torch's own float32 arithmetic differences. A wrong
  // tap, weight or crop offset moves values by ~1e-2 on this texture.
  for (
    const [h, w, th, tw] of [[37, 53, 16, 24], [7, 9, 20, 12], [48, 80, 33, 17], [31, 31, 31, 31]]
  ) {
    const src = synthImage(h!, w!);
    const plan = resizeCropPlan(h!, w!, th!, tw!, "video");
    const out = new Float32Array(3 * th! * tw! + 5).fill(NaN);
    bilinearResizeCrop(src, h!, w!, plan, { out, offset: 5, planeStride: th! * tw! });
    assertClose(out.subarray(5), refBilinear(src, h!, w!, th!, tw!), {
      atol: 1e-6,
      rtol: 0,
      shape: [3, th!, tw!],
      label: `bilinear ${h}x${w} -> ${th}x${tw}`,
    });
    assert(out.slice(0, 5).every(Number.isNaN), "wrote before its offset");
  }
});

Deno.test("PIL bicubic resize-crop is bit-exact with Pillow (reference image path)", async () => {
  // pil_bicubic_ref.json: gen_pil_reference.py runs the reference resize_crop_to_fill.
  const ref = JSON.parse(
    await Deno.readTextFile(new URL("./pil_bicubic_ref.json", import.meta.url)),
  ) as { cases: { h: number; w: number; th: number; tw: number; rgb: number[] }[] };
  assertEquals(ref.cases.length, 6);
  for (const c of ref.cases) {
    const plan = resizeCropPlan(c.h, c.w, c.th, c.tw, "image");
    const got = pilBicubicResizeCrop(synthImage(c.h, c.w), c.h, c.w, plan);
    assertClose(got, c.rgb, { atol: 0, rtol: 0, label: `PIL ${c.h}x${c.w} -> ${c.th}x${c.tw}` });
  }
});

// ---------------------------------------------------------------- buckets

Deno.test("aspect table (768px, D=32) and the HCAE bucket set match training.md §7", () => {
  const t = aspectRatioTable(768 * 768);
  assertEquals([...t.entries()], [
    ["2.39:1", [480, 1216]],
    ["2:1", [544, 1088]],
    ["16:9", [576, 1024]],
    ["9:16", [1024, 576]],
    ["3:2", [640, 928]],
    ["4:3", [672, 864]],
    ["1:1", [768, 768]],
    ["1:2.39", [1216, 480]],
    ["1:2", [1088, 544]],
    ["2:3", [928, 640]],
    ["3:4", [864, 672]],
  ]);
  // Inference (no area adjustment, duplicates kept) gives sampling.md §2's sizes.
  const inf = aspectRatioTable(768 * 768, false);
  assertEquals([inf.get("2.39:1"), inf.get("2:1"), inf.get("3:2")], [
    [480, 1184],
    [544, 1056],
    [608, 928],
  ]);
  const b = new Buckets(HCAE_BUCKETS);
  assertEquals(b.numBuckets, 330);
  assertEquals(b.all().length, 330);
  const sizes = new Map(b.all().map((x) => [x.frames, x.batchSize]));
  assertEquals([1, 16, 32, 36, 64, 68, 96, 100, 128].map((f) => sizes.get(f)), [
    20,
    8,
    8,
    4,
    4,
    3,
    3,
    2,
    2,
  ]);
  assertEquals(closestRatio(1080, 1920, t.keys()), "16:9");
  assertEquals(closestRatio(1920, 1080, t.keys()), "9:16");
  assertEquals(closestRatio(1000, 1000, t.keys()), "1:1");
  assertEquals(closestRatio(800, 1920, t.keys()), "2.39:1"); // 0.417 vs 0.418
  assertEquals(closestRatio(480, 640, t.keys()), "4:3");
});

Deno.test("bucket assignment follows §7.3 and is deterministic given the seed", () => {
  const b = new Buckets(HCAE_BUCKETS);
  const at = (numFrames: number, height: number, width: number, fps: number) =>
    b.assignRow({ numFrames, height, width, fps }, 42, 0, 7);
  assertEquals(at(300, 1080, 1920, 30), { resolution: "768px", frames: 128, ratio: "16:9" });
  assertEquals(at(60, 1080, 1920, 24), { resolution: "768px", frames: 60, ratio: "16:9" });
  assertEquals(at(61, 720, 720, 60), { resolution: "768px", frames: 20, ratio: "1:1" }); // 61//3
  assertEquals(at(1, 1024, 768, NaN), { resolution: "768px", frames: 1, ratio: "3:4" });
  assertEquals(at(15, 1080, 1920, 24), null);
  assertEquals(
    b.explain({ numFrames: 15, height: 1080, width: 1920, fps: 24 }).reason,
    "too-short",
  );
  assertEquals(at(300, 360, 640, 24), null); // 230400 < 0.8 * 589824
  assertEquals(
    b.explain({ numFrames: 300, height: 360, width: 640, fps: 24 }).reason,
    "wrong-size",
  );
  // 2 frames at 48 fps: T = 2 // 2 = 1 counts as an image and takes the image bucket...
  assertEquals(at(2, 1080, 1920, 48), { resolution: "768px", frames: 1, ratio: "16:9" });
  // ...which only exists if the config has key 1:
  const noImg = new Buckets({ "768px": { 16: [1.0, 8] } });
  assertEquals(
    noImg.assignRow({ numFrames: 1, height: 768, width: 768, fps: NaN }, 42, 0, 0),
    null,
  );
  assertEquals(
    noImg.explain({ numFrames: 1, height: 768, width: 768, fps: NaN }).reason,
    "too-short",
  );

  // Random keeps: same (seed, epoch, row) -> same answer; epochs and seeds vary it; the kept
  // fraction follows p; pairs [pKeep, pSkip] first skip to the next length.
  const p = new Buckets({ "768px": { 16: [0.5, 1], 32: [[1.0, 0.25], 1] } });
  const s = { numFrames: 40, height: 1080, width: 1920, fps: 24 };
  const key = (x: ReturnType<Buckets["assign"]>) => (x ? x.frames : 0);
  let kept32 = 0, kept16 = 0;
  const e0: number[] = [], e1: number[] = [];
  for (let row = 0; row < 4000; row++) {
    const a = key(p.assignRow(s, 42, 0, row));
    assertEquals(a, key(p.assignRow(s, 42, 0, row)));
    e0.push(a);
    e1.push(key(p.assignRow(s, 42, 1, row)));
    if (a === 32) kept32++;
    if (a === 16) kept16++;
  }
  assert(Math.abs(kept32 / 4000 - 0.75) < 0.03, `P(32) ${kept32 / 4000}`);
  assert(Math.abs(kept16 / 4000 - 0.125) < 0.02, `P(16) ${kept16 / 4000}`);
  assert(e0.some((v, i) => v !== e1[i]), "epoch 1 assignment equals epoch 0");
  const other = Array.from({ length: 100 }, (_, r) => key(p.assignRow(s, 43, 0, r)));
  assert(other.some((v, i) => v !== e0[i]), "seed does not matter");
});

Deno.test("epoch plan: drop_last, one bucket per batch, rows once, deterministic, world size", () => {
  const b = new Buckets(SMALL, { spatialCompression: 16 });
  const A = { resolution: "64px", frames: 20, ratio: "16:9" };
  const B = { resolution: "64px", frames: 16, ratio: "16:9" };
  const C = { resolution: "64px", frames: 1, ratio: "3:2" };
  const asg = [A, B, A, C, A, null, B, A, A, C, B].map((bucket, index) => ({ index, bucket }));
  const plan = planEpoch(asg, b, { seed: 42, epoch: 3 });
  // 20f: 5 rows -> 2 batches (1 dropped); 16f: 3 -> 1 (1 dropped); 1f: 2 -> 1.
  assertEquals(plan.microBatches.length, 4);
  assertEquals(plan.unassigned, [5]);
  assertEquals(plan.assigned.get("64px/20/16:9"), 5);
  const seen = new Set<number>();
  for (const mb of plan.microBatches) {
    assertEquals(mb.indices.length, 2);
    for (const i of mb.indices) {
      assert(!seen.has(i), `row ${i} twice`);
      seen.add(i);
      assertEquals(asg[i]!.bucket, {
        resolution: mb.bucket.resolution,
        frames: mb.bucket.frames,
        ratio: mb.bucket.ratio,
      });
    }
  }
  assertEquals(plan, planEpoch(asg, b, { seed: 42, epoch: 3 }));
  const orders = new Set(
    [0, 1, 2, 3, 4, 5].map((e) =>
      JSON.stringify(planEpoch(asg, b, { seed: 42, epoch: e }).microBatches.map((m) => m.indices))
    ),
  );
  assert(orders.size > 1, "every epoch has the same order");
  // World size 3: 4 accesses cut to 3; not dropping pads to 6 and keeps the remainders.
  assertEquals(planEpoch(asg, b, { seed: 42, epoch: 3, worldSize: 3 }).microBatches.length, 3);
  const padded = planEpoch(asg, b, { seed: 42, epoch: 3, worldSize: 3, dropLast: false });
  assertEquals(padded.microBatches.length, 6);
});

Deno.test("cursor JSON round trip and validation", async () => {
  const c = { seed: 42, epoch: 3, position: 17 };
  assertEquals(cursorFromJSON(cursorToJSON(c)), c);
  assertEquals(cursorFromJSON(JSON.parse(cursorToJSON(c))), c);
  await assertThrows(() => cursorFromJSON('{"seed":42,"epoch":-1,"position":0}'), "cursor.epoch");
  await assertThrows(() => cursorFromJSON("{oops"), "not valid JSON");
  await assertThrows(() => cursorFromJSON({ seed: 42, epoch: 0 }), "cursor.position");
});

// ---------------------------------------------------------------- with media

/** Writes the mixed test dataset; returns the CSV path. */
async function mixedDataset(dir: string): Promise<string> {
  await Deno.mkdir(`${dir}/media`);
  await writeMp4(`${dir}/media/a.mp4`, 20, 48, 80);
  await writeMp4(`${dir}/media/short.mp4`, 8, 48, 80);
  await writeMp4(`${dir}/media/tiny.mp4`, 20, 24, 32);
  await writePng(`${dir}/media/i.png`, 80, 96);
  await writeGarbage(`${dir}/media/bad.mp4`);
  const csv = `${dir}/data.csv`;
  await Deno.writeTextFile(
    csv,
    [
      "path,text,fps,mood",
      'media/a.mp4,"A red block, moving",24,happy', // 2 used (20f)
      "media/short.mp4,short one,24,x", // 3 too short
      "media/tiny.mp4,tiny,24,y", // 4 wrong size
      "media/i.png,an image,,z", // 5 used (image)
      "media/bad.mp4,corrupt,24,w", // 6 corrupt
      "media/nothere.mp4,missing,24,v", // 7 missing
      "media/a.mp4,too,many,fields,here", // 8 malformed
      "media/a.mp4,bad fps,abc,t", // 9 malformed
      "media,a folder,24,s", // 10 unreadable (a directory)
    ].join("\n") + "\n",
  );
  return csv;
}

mediaTest("openDataset reports every row's fate and probes missing metadata", async () => {
  await withDir(async (dir) => {
    const csv = await mixedDataset(dir);
    const logs: string[] = [];
    const ds = await openDataset(csv, { ...SMALL_OPTS, verify: true, log: (m) => logs.push(m) });
    const r = ds.report;
    assertEquals(r.unknownColumns, ["mood"]);
    assert(logs.some((l) => l.includes("unknown column(s): mood")));
    assertEquals(
      r.rows.map((s) => [s.line, s.used ? `used ${s.bucket!.frames}f` : s.reason]),
      [
        [2, "used 20f"],
        [3, "too-short"],
        [4, "wrong-size"],
        [5, "used 1f"],
        [6, "corrupt"],
        [7, "missing-file"],
        [8, "malformed"],
        [9, "malformed"],
        [10, "unreadable"],
      ],
    );
    assertEquals(r.counts, {
      "too-short": 1,
      "wrong-size": 1,
      corrupt: 1,
      "missing-file": 1,
      malformed: 2,
      unreadable: 1,
    });
    assertEquals(r.used, 2);
    assertEquals(ds.rows.map((x) => x.line), [2, 5]);
    const [vid, img] = ds.rows;
    assertEquals([vid!.numFrames, vid!.height, vid!.width, vid!.fps, vid!.probed], [
      20,
      48,
      80,
      24,
      true,
    ]);
    assertEquals(vid!.caption, "A red block, moving 24 FPS.");
    assertEquals([img!.isImage, img!.numFrames, img!.height, img!.width], [true, 1, 80, 96]);
    assertEquals(img!.caption, "an image");
    // Without verify, a row with full metadata is not opened: the corrupt file passes here
    // and fails (logged, skipped) only when loaded.
  });
});

mediaTest(
  "a loaded clip equals the float64 reference of its frames (crop, interval, resize)",
  async () => {
    await withDir(async (dir) => {
      // 90x70 lossless clips: bucket 64px/20f/3:2 = 64x64 -> resize to 64x82, crop columns 9..72.
      const [h, w] = [70, 90];
      await writeLossless(`${dir}/v24.mkv`, synthClip(24, h, w), 24, h, w, 24);
      await writeLossless(`${dir}/v48.mkv`, synthClip(48, h, w), 48, h, w, 48);
      await writePng(`${dir}/p.png`, 61, 83);
      await Deno.writeTextFile(
        `${dir}/d.csv`,
        "path,text,num_frames,height,width,fps\nv24.mkv,a,24,70,90,24\nv48.mkv,b,,,,\np.png,c,,,,\n",
      );
      const ds = await openDataset(`${dir}/d.csv`, SMALL_OPTS);
      const bucket = ds.buckets.info({ resolution: "64px", frames: 20, ratio: "3:2" });
      assertEquals([bucket.height, bucket.width], [64, 64]);
      assertEquals(ds.report.rows.map((s) => s.bucket?.key), [
        "64px/20/3:2",
        "64px/20/3:2",
        "64px/1/3:2",
      ]);
      for (const [index, total, interval] of [[0, 24, 1], [1, 48, 2]] as const) {
        for (const epoch of [0, 5]) {
          const got = await ds.loadSample(index, bucket, epoch);
          const { start, indices } = temporalRandomCrop(
            total,
            20,
            interval,
            Rng.of(STREAM.crop, 42, epoch, index),
          );
          assert(start <= total - 20 * interval - 1 || start === 0);
          assertEquals(indices, temporalIndices(total, 20, interval, start));
          const want = new Float64Array(3 * 20 * 64 * 64);
          indices.forEach((fi, k) => {
            const f = refBilinear(synthFrame(fi, h, w), h, w, 64, 64);
            for (let c = 0; c < 3; c++) {
              want.set(f.subarray(c * 4096, (c + 1) * 4096), c * 20 * 4096 + k * 4096);
            }
          });
          assertClose(got, want, { atol: 1e-6, rtol: 0, label: `row ${index} epoch ${epoch}` });
        }
      }
      // The image row: PIL bicubic fill-and-crop of the decoded PNG.
      // Up-scale to 64x87, crop columns from round(11.5) = 12.
      const ib = ds.buckets.info({ resolution: "64px", frames: 1, ratio: "3:2" });
      assertEquals(resizeCropPlan(61, 83, 64, 64, "image").left, 12);
      const img = await ds.loadSample(2, ib);
      const rgb = pilBicubicResizeCrop(
        synthImage(61, 83),
        61,
        83,
        resizeCropPlan(61, 83, ib.height, ib.width, "image"),
      );
      const n = ib.height * ib.width;
      const want = new Float64Array(3 * n);
      for (let p = 0; p < n; p++) {
        for (let c = 0; c < 3; c++) want[c * n + p] = (rgb[p * 3 + c]! / 255 - 0.5) / 0.5;
      }
      assertClose(img, want, { atol: 1e-7, rtol: 0, label: "image sample" });
    });
  },
);

/** Four 24-frame clips (bucket 20f), three 17-frame clips (16f), two images (1f). */
async function resumeDataset(dir: string): Promise<string> {
  const lines = ["path,text,num_frames,height,width,fps"];
  for (let i = 0; i < 4; i++) {
    await writeLossless(
      `${dir}/l${i}.mkv`,
      synthClip(24, 48, 80).map((v) => (v + 40 * i) & 255),
      24,
      48,
      80,
    );
    lines.push(`l${i}.mkv,long ${i},24,48,80,24`);
  }
  for (let i = 0; i < 3; i++) {
    await writeMp4(`${dir}/s${i}.mp4`, 17, 48, 80);
    lines.push(`s${i}.mp4,short ${i},17,48,80,24`);
  }
  for (let i = 0; i < 2; i++) {
    await writePng(`${dir}/p${i}.png`, 64, 64 + 8 * i); // both 3:2 (h/w 1 and 0.89)
    lines.push(`p${i}.png,image ${i},1,64,${64 + 8 * i},`);
  }
  await Deno.writeTextFile(`${dir}/r.csv`, lines.join("\n") + "\n");
  return `${dir}/r.csv`;
}

function digest(v: Float32Array): number {
  let h = 0;
  for (let i = 0; i < v.length; i += 7) h = (Math.imul(h, 31) + Math.round(v[i]! * 1e4)) | 0;
  return h;
}

mediaTest("cursor save/restore gives exactly the batches that would have followed", async () => {
  await withDir(async (dir) => {
    const csv = await resumeDataset(dir);
    const ds = await openDataset(csv, SMALL_OPTS);
    assertEquals(ds.report.batches, 4); // 20f: 2, 16f: 1 (one dropped), 1f: 1
    type Seen = { c: string; key: string; pos: number; idx: number[]; d: number; cap: string[] };
    const take = async (from: Parameters<typeof ds.batches>[0], n: number, prefetch = false) => {
      const out: Seen[] = [];
      for await (const b of ds.batches(from, { prefetch })) {
        assertEquals(b.shape.slice(1), [
          3,
          b.meta.bucket.frames,
          b.meta.bucket.height,
          b.meta.bucket.width,
        ]);
        assertEquals(b.video.length, b.shape.reduce((a, x) => a * x, 1));
        assert(b.video.every((x) => x >= -1 && x <= 1));
        assertEquals(b.meta.failed, []);
        out.push({
          c: cursorToJSON(b.cursor),
          key: `${b.meta.epoch}:${b.meta.bucket.key}`,
          pos: b.meta.position,
          idx: b.meta.indices,
          d: digest(b.video),
          cap: b.captions,
        });
        if (out.length === n) break;
      }
      return out;
    };
    // Epoch 0 and the start of epoch 1.
    const seen = await take(undefined, 6);
    assertEquals(seen.map((s) => s.pos), [0, 1, 2, 3, 0, 1]);
    assertEquals(seen[3]!.c, '{"seed":42,"epoch":1,"position":0}');
    assertEquals(seen[5]!.c, '{"seed":42,"epoch":1,"position":2}');
    // Epoch 1 differs from epoch 0 (order, crops).
    assert(JSON.stringify(seen.slice(0, 2)) !== JSON.stringify(seen.slice(4, 6)));
    // Resume from the cursor saved after batch 2 (JSON, as in a checkpoint), in a fresh dataset:
    // the same batches follow, across the epoch boundary, bit for bit.
    const again = await openDataset(csv, SMALL_OPTS);
    const rest: Seen[] = [];
    for await (const b of again.batches(cursorFromJSON(seen[2]!.c))) {
      rest.push({
        c: cursorToJSON(b.cursor),
        key: `${b.meta.epoch}:${b.meta.bucket.key}`,
        pos: b.meta.position,
        idx: b.meta.indices,
        d: digest(b.video),
        cap: b.captions,
      });
      if (rest.length === 3) break;
    }
    assertEquals(rest, seen.slice(3));
    // Prefetching yields the same stream.
    const pre = await take({ epoch: 0, position: 2 }, 2, true);
    assertEquals(pre, seen.slice(2, 4));
    await assertThrows(async () => {
      for await (const _ of again.batches({ seed: 7, epoch: 0, position: 0 })) break;
    }, "seed 7");
    await assertThrows(async () => {
      for await (const _ of again.batches({ epoch: 0, position: 99 })) break;
    }, "past the 4 micro-batches");
  });
});

mediaTest("samples that fail at load time are skipped and logged, never a crash", async () => {
  await withDir(async (dir) => {
    await writeLossless(`${dir}/ok.mkv`, synthClip(24, 48, 80), 24, 48, 80);
    await writeLossless(`${dir}/liar.mkv`, synthClip(24, 48, 80), 24, 48, 80);
    await writeLossless(`${dir}/short.mkv`, synthClip(8, 48, 80), 8, 48, 80);
    await writeMp4(`${dir}/gone.mp4`, 24, 48, 80);
    await writeGarbage(`${dir}/bad.mp4`);
    await Deno.writeTextFile(
      `${dir}/f.csv`,
      [
        "path,text,num_frames,height,width,fps",
        "ok.mkv,fine,24,48,80,24",
        "liar.mkv,claims 200 frames,200,48,80,24", // decodes 24: recropped, still fine
        "short.mkv,claims 40 frames,40,48,80,24", // decodes 8 < 20: too short
        "gone.mp4,deleted after open,24,48,80,24",
        "bad.mp4,corrupt but described,24,48,80,24",
      ].join("\n") + "\n",
    );
    const logs: string[] = [];
    const ds = await openDataset(`${dir}/f.csv`, {
      ...SMALL_OPTS,
      buckets: { "64px": { 20: [1.0, 5] } },
      log: (m) => logs.push(m),
    });
    assertEquals(ds.report.used, 5);
    // Precondition: the crop drawn from the claimed 200 frames lies past the real 24.
    assert(temporalRandomCrop(200, 20, 1, Rng.of(STREAM.crop, 42, 0, 1)).indices.at(-1)! >= 24);
    await Deno.remove(`${dir}/gone.mp4`);
    const batches = [];
    for await (const b of ds.batches(undefined, { epochs: 1 })) batches.push(b);
    assertEquals(batches.length, 1);
    const b = batches[0]!;
    assertEquals(b.shape, [2, 3, 20, 48, 80]);
    assertEquals([...b.meta.indices].sort(), [0, 1]);
    assertEquals(b.captions.length, 2);
    const failed = Object.fromEntries(b.meta.failed.map((f) => [f.index, f.reason]));
    assertEquals(failed, { 2: "too-short", 3: "missing-file", 4: "corrupt" });
    assertEquals(ds.loadFailures.length, 3);
    assert(
      logs.some((l) => /liar\.mkv.*num_frames says 200, the file decodes to 24/.test(l)),
      logs.join("\n"),
    );
    assert(logs.some((l) => /skipped .*short\.mkv.*too-short/.test(l)), logs.join("\n"));
    // The surviving samples were compacted to the front and are intact clips.
    const per = 3 * 20 * 48 * 80;
    for (let s = 0; s < 2; s++) {
      const got = b.video.subarray(s * per, (s + 1) * per);
      const idx = b.meta.indices[s]!;
      const total = 24;
      const { indices } = temporalRandomCrop(total, 20, 1, Rng.of(STREAM.crop, 42, 0, idx));
      // Frame k, channel 0, pixel 0 comes from source frame indices[k].
      for (let k = 0; k < 20; k++) {
        const src = synthFrame(indices[k]!, 48, 80);
        assertClose([got[k * 48 * 80]!], [(src[0]! / 255 - 0.5) / 0.5], {
          atol: 1e-6,
          label: `s${s} k${k}`,
        });
      }
    }
  });
});

// ---------------------------------------------------------------- CLI

const CLI = new URL("../../cli/dataset_check.ts", import.meta.url).pathname;

async function check(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

mediaTest("dataset:check prints each row's verdict and a summary; exit codes 0/1/2", async () => {
  await withDir(async (dir) => {
    const csv = await mixedDataset(dir);
    const ok = await check([csv, "--resolution", "64px", "--ae-compression", "16"]);
    assertEquals(ok.code, 0, ok.out + ok.err);
    for (
      const want of [
        /ignored unknown columns: mood/,
        /line +2 +used +64px 20f 16:9 \(48x80\) .*a\.mp4/,
        /line +3 +skipped +too-short: 8 frames at interval 1 give 8 < 16/,
        /line +4 +skipped +wrong-size: 32x24 = 768 px < 80% of 64px/,
        /line +5 +used +64px 1f/,
        /line +6 +skipped +corrupt: video .*bad\.mp4/,
        /line +7 +skipped +missing-file: no such file: .*nothere\.mp4/,
        /line +8 +skipped +malformed: has 5 fields, the header has 4/,
        /line +9 +skipped +malformed: 'fps' must be a positive number or empty, got 'abc'/,
        /line +10 +skipped +unreadable: not a file/,
        /summary: 2 used, 7 skipped of 9/,
        /malformed +2/,
        /64px 20f 16:9 \(48x80\): 1 samples, batch size 8 -> 0 batches \(1 dropped/,
      ]
    ) assert(want.test(ok.out), `output lacks ${want}:\n${ok.out}`);
    const js = await check([csv, "--resolution", "64px", "--ae-compression", "16", "--json"]);
    assertEquals(js.code, 0);
    assertEquals(JSON.parse(js.out).used, 2);
    // At 768px (the default preset) nothing is large enough: exit 1.
    const none = await check([csv]);
    assertEquals(none.code, 1, none.out);
    assert(/summary: 0 used/.test(none.out) && /no usable row/.test(none.out), none.out);
    await Deno.writeTextFile(`${dir}/empty.csv`, "");
    const empty = await check([`${dir}/empty.csv`]);
    assertEquals(empty.code, 1);
    assert(/the CSV is empty/.test(empty.err), empty.err);
    const flag = await check([csv, "--bogus"]);
    assertEquals(flag.code, 2);
    assert(/Unknown option '--bogus'/.test(flag.err) && /--help/.test(flag.err), flag.err);
    assertEquals((await check([csv, "--buckets", "nope"])).code, 2);
    assertEquals((await check([csv, "--seed", "x"])).code, 2);
    assertEquals((await check([])).code, 2);
    const help = await check(["--help"]);
    assertEquals(help.code, 0);
    assert(/Usage: deno task dataset:check/.test(help.out));
  });
});
