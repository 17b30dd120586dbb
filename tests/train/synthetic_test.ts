/**
 * The synthetic shapes dataset (Kino issue #7 parts 1 and 5): deterministic rendering, the
 * caption grammar and its parser, held-out combinations, the pixel-level analyser (clean and
 * after noise + blur + an mp4 round trip) and `deno task make-data`.
 */
import { runCli } from "../_cli.ts";
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { parse } from "npm:csv-parse@5.6.0/sync";
import { readDatasetCsv } from "../../train/data/csv.ts";
import { readVideo, writeVideo } from "../../io/video.ts";
import { ffTest } from "../io/_helpers.ts";
import {
  canonicalCaption,
  DROPPABLE,
  makeCaption,
  parsePrompt,
  partialCaption,
} from "../../train/synthetic/captions.ts";
import { defaultVocabulary } from "../../train/synthetic/default_model.ts";
import {
  allCombos,
  chooseHoldout,
  type Combo,
  comboKey,
  heldoutPrompts,
  readHeldoutPrompts,
  toCsv,
  trainClip,
} from "../../train/synthetic/dataset.ts";
import {
  analyzeVideo,
  evaluateVideos,
  formatReport,
  scorePrompts,
  type VideoAnalysis,
} from "../../train/synthetic/eval.ts";
import {
  BACKGROUNDS,
  COLOURS,
  CROSS_BAND_FRACTION,
  DIRECTIONS,
  MARGIN_FRACTION,
  MAX_OBJECT_SCALE,
  type Motion,
  MOTIONS,
  packFrames,
  renderBackground,
  renderScene,
  Rng,
  sampleScene,
  type Scene,
  SHAPES,
  SIZE_FRACTION,
  SIZES,
  unpackFrames,
} from "../../train/synthetic/scene.ts";

const G = { width: 64, height: 64, frames: 16 };
const KEYS = ["colour", "shape", "direction"] as const;

/** One scene per combination × size, backgrounds cycling: 180 clips covering every value. */
function sweep(seed: number, geometry = G, motion: Motion = "drift", objectScale = 1): Scene[] {
  const out: Scene[] = [];
  for (const c of allCombos()) {
    for (const size of SIZES) {
      const background = BACKGROUNDS[out.length % BACKGROUNDS.length]!;
      const attrs = { ...c, size, background };
      out.push(sampleScene(new Rng(seed + out.length), geometry, attrs, motion, objectScale));
    }
  }
  return out;
}

function accuracy(scenes: Scene[], analyses: VideoAnalysis[]): Record<string, number> {
  const acc: Record<string, number> = {};
  for (const k of KEYS) {
    acc[k] = scenes.filter((s, i) => analyses[i]![k] === s[k]).length / scenes.length;
  }
  return acc;
}

/** Separable Gaussian blur (sigma) then additive Gaussian noise (std) on one RGB frame. */
function degrade(f: Uint8Array, w: number, h: number, sigma: number, std: number, rng: Rng) {
  const rad = Math.ceil(3 * sigma);
  const k = new Float32Array(2 * rad + 1).map((_, i) =>
    Math.exp(-((i - rad) ** 2) / (2 * sigma ** 2))
  );
  const ks = k.reduce((a, b) => a + b);
  k.forEach((v, i) => (k[i] = v / ks));
  const clamp = (v: number, n: number) => (v < 0 ? 0 : v >= n ? n - 1 : v);
  const tmp = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let r = 0, g = 0, b = 0;
      for (let i = -rad; i <= rad; i++) {
        const o = (y * w + clamp(x + i, w)) * 3;
        r += k[i + rad]! * f[o]!;
        g += k[i + rad]! * f[o + 1]!;
        b += k[i + rad]! * f[o + 2]!;
      }
      tmp.set([r, g, b], (y * w + x) * 3);
    }
  }
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let i = -rad; i <= rad; i++) {
          s += k[i + rad]! * tmp[(clamp(y + i, h) * w + x) * 3 + c]!;
        }
        out[(y * w + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(s + std * rng.normal())));
      }
    }
  }
  return out;
}

Deno.test("scene: same seed gives the same bytes, another seed other bytes", () => {
  const render = (seed: number) =>
    packFrames(renderScene(sampleScene(new Rng(seed), G, { background: "textured" }), G));
  const a = render(42);
  assertEquals(a, render(42));
  assert(a.some((v, i) => v !== render(43)[i]), "seeds 42 and 43 rendered the same clip");
  assertEquals(a.length, 16 * 64 * 64 * 3);
  // odd, non-square geometry works and is deterministic too
  const g = { width: 80, height: 48, frames: 9 };
  const s = sampleScene(new Rng(5), g, { direction: "up" });
  assertEquals(packFrames(renderScene(s, g)), packFrames(renderScene(s, g)));
  assertEquals(renderScene(s, g).length, 9);
});

Deno.test("scene: the shape stays inside the frame, away from the border, and moves 1.5-3 px/frame", () => {
  for (const geometry of [G, { width: 48, height: 80, frames: 24 }]) {
    for (const s of sweep(900, geometry)) {
      const { width: w, height: h } = geometry;
      const bg = renderBackground(s, w, h);
      const frames = renderScene(s, geometry);
      for (const f of [frames[0]!, frames.at(-1)!]) {
        let touching = false, covered = 0;
        for (let p = 0; p < w * h; p++) {
          if (
            f[p * 3] === bg[p * 3] && f[p * 3 + 1] === bg[p * 3 + 1] &&
            f[p * 3 + 2] === bg[p * 3 + 2]
          ) continue;
          covered++;
          const x = p % w, y = Math.floor(p / w);
          if (x === 0 || y === 0 || x === w - 1 || y === h - 1) touching = true;
        }
        assert(!touching, `${comboKey(s)} ${s.size} touches the border`);
        assert(covered > 50, `${comboKey(s)} covers only ${covered} px`);
      }
      const speed = Math.hypot(...s.velocity);
      const max = (geometry.height === 80 ? 48 : 64) / 64 * 3;
      assert(speed <= max + 1e-9 && speed > 0.5, `speed ${speed}`);
      if (geometry === G) assert(speed >= 1.5, `speed ${speed} at 64 px`);
    }
  }
});

Deno.test("scene: cross motion goes edge to edge through the middle band, inside the frame", () => {
  const cases = [[G, 1], [{ width: 48, height: 80, frames: 24 }, 1], [
    G,
    MAX_OBJECT_SCALE,
  ]] as const;
  for (const [geometry, scale] of cases) {
    const { width: w, height: h, frames: T } = geometry;
    const band = Math.min(w, h) * CROSS_BAND_FRACTION;
    for (const s of sweep(77, geometry, "cross", scale)) {
      const horizontal = s.direction === "left" || s.direction === "right";
      const along = horizontal ? 0 : 1, across = 1 - along;
      const side = horizontal ? w : h;
      const lo = s.radius + Math.min(w, h) * MARGIN_FRACTION;
      const end = s.start[along]! + (T - 1) * s.velocity[along]!;
      const sign = s.direction === "right" || s.direction === "down" ? 1 : -1;
      const [first, last] = sign > 0 ? [lo, side - lo] : [side - lo, lo];
      assert(Math.abs(s.start[along]! - first) < 1e-9, `${comboKey(s)} starts at ${s.start}`);
      assert(Math.abs(end - last) < 1e-9, `${comboKey(s)} ends at ${end}, want ${last}`);
      assert(s.velocity[across] === 0, `${comboKey(s)} drifts across: ${s.velocity}`);
      const mid = (horizontal ? h : w) / 2;
      assert(Math.abs(s.start[across]! - mid) <= band + 1e-9, `${comboKey(s)} off the band`);
      const bg = renderBackground(s, w, h);
      for (const f of [renderScene(s, geometry)[0]!, renderScene(s, geometry).at(-1)!]) {
        for (let p = 0; p < w * h; p++) {
          const x = p % w, y = Math.floor(p / w);
          if (x !== 0 && y !== 0 && x !== w - 1 && y !== h - 1) continue;
          const same = f[p * 3] === bg[p * 3] && f[p * 3 + 1] === bg[p * 3 + 1] &&
            f[p * 3 + 2] === bg[p * 3 + 2];
          assert(same, `${comboKey(s)} ${s.size} touches the border`);
        }
      }
    }
  }
});

Deno.test("scene: objectScale scales the half-extent and keeps every draw", () => {
  for (const motion of MOTIONS) {
    for (let i = 0; i < 30; i++) {
      const a = sampleScene(new Rng(900 + i), G, {}, motion);
      const b = sampleScene(new Rng(900 + i), G, {}, motion, 1.4);
      assert(Math.abs(b.radius - 1.4 * a.radius) < 1e-9, `radius ${b.radius} vs ${a.radius}`);
      const same = ({ radius: _r, start: _s, velocity: _v, ...rest }: Scene) => rest;
      assertEquals(same(b), same(a));
      const base = SIZE_FRACTION[b.size] * 1.4 * 64;
      assert(b.radius >= base * 0.95 - 1e-9 && b.radius <= base * 1.05 + 1e-9, `${b.radius}`);
    }
  }
  for (const bad of [0, -1, MAX_OBJECT_SCALE + 0.01, NaN]) {
    throws(
      () => sampleScene(new Rng(1), G, {}, "cross", bad),
      /RangeError: sampleScene: objectScale/,
    );
  }
});

Deno.test("captions: every generated caption parses back to its attributes", () => {
  const train = allCombos();
  let n = 0;
  for (let i = 0; i < 3000; i++) {
    const { rng, attrs } = trainClip(i, 7, train);
    const s = sampleScene(rng, G, attrs);
    const text = makeCaption(s, rng);
    const p = parsePrompt(text);
    assert(p, `'${text}' did not parse`);
    for (const k of KEYS) assertEquals(p[k], s[k], `'${text}': ${k}`);
    if (p.size) assertEquals(p.size, s.size, `'${text}': size`);
    if (p.background) assertEquals(p.background, s.background, `'${text}': background`);
    n++;
  }
  assertEquals(n, 3000);
  for (const c of allCombos()) assertEquals(parsePrompt(canonicalCaption(c)), c);
  // synonyms, case, punctuation
  assertEquals(parsePrompt("A big Yellow BALL rolling leftwards!"), {
    colour: "yellow",
    shape: "circle",
    direction: "left",
    size: "large",
  });
  assertEquals(parsePrompt("green box falls towards the bottom on a grey background"), {
    colour: "green",
    shape: "square",
    direction: "down",
    background: "gray",
  });
  // background words never count as the colour
  assertEquals(parsePrompt("a white triangle moving upward on a blue background")?.colour, "white");
  // missing or conflicting attributes
  for (
    const bad of [
      "a red circle",
      "a circle moving left",
      "a red blue circle moving up",
      "red square moving left then right",
      "",
    ]
  ) {
    assertEquals(parsePrompt(bad), null, bad);
  }
});

Deno.test("captions: variants leave out the colour or the direction, keep the rest, use known words", () => {
  const vocab = new Set(defaultVocabulary().map(([p]) => p.replace(/^\u2581/, "")));
  const train = allCombos();
  const seen = { colour: 0, direction: 0 };
  for (let i = 0; i < 2000; i++) {
    const { rng, attrs } = trainClip(i, 5, train);
    const s = sampleScene(rng, G, attrs);
    const drop = DROPPABLE[i % 2]!;
    const text = partialCaption(s, drop, rng);
    // the dropped attribute is missing, so the evaluator's parser refuses it ...
    assertEquals(parsePrompt(text), null, `'${text}' names all three attributes`);
    // ... and adding it back gives the scene's attributes
    const full = drop === "colour" ? `${s.colour} ${text}` : `${text} moving ${s.direction}`;
    const p = parsePrompt(full);
    assert(p, `'${full}' did not parse`);
    for (const k of KEYS) assertEquals(p[k], s[k], `'${text}' (${drop} dropped): ${k}`);
    for (const w of text.split(/[^a-z]+/).filter((w) => w)) {
      assert(vocab.has(w), `'${text}': "${w}" is not in the default tokenizer's vocabulary`);
    }
    seen[drop]++;
  }
  assertEquals(seen, { colour: 1000, direction: 1000 });
});

Deno.test("holdout: held-out combinations never train, every value and pair still does", () => {
  for (const [n, seed] of [[12, 0], [16, 3], [20, 1]] as const) {
    const held = chooseHoldout(n, seed);
    assertEquals(held.length, n);
    assertEquals(chooseHoldout(n, seed), held, "not deterministic");
    const heldKeys = new Set(held.map(comboKey));
    assertEquals(heldKeys.size, n);
    const train = allCombos().filter((c) => !heldKeys.has(comboKey(c)));
    for (
      const [a, b] of [["colour", "shape"], ["colour", "direction"], [
        "shape",
        "direction",
      ]] as const
    ) {
      const values = { colour: COLOURS, shape: SHAPES, direction: DIRECTIONS };
      for (const va of values[a]) {
        for (const vb of values[b]) {
          const k = train.filter((c) => c[a] === va && c[b] === vb).length;
          assert(k >= 2, `${a}=${va} ${b}=${vb} has ${k} training combinations`);
        }
      }
    }
    // 3000 training clips: balanced over the training combinations, none held out
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const key = comboKey(trainClip(i, seed, train).combo);
      assert(!heldKeys.has(key), `clip ${i} uses held-out ${key}`);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    assertEquals(counts.size, 60 - n);
    const c = [...counts.values()];
    assert(
      Math.max(...c) - Math.min(...c) <= 1,
      `unbalanced: ${Math.min(...c)}..${Math.max(...c)}`,
    );
    const prompts = heldoutPrompts(held, seed, 2);
    assertEquals(prompts.length, 2 * n);
    for (const p of prompts) {
      const q = parsePrompt(p.text)!;
      assert(heldKeys.has(comboKey(q)), `'${p.text}' is not a held-out combination`);
    }
  }
  assert(
    (() => {
      try {
        chooseHoldout(21, 0);
        return false;
      } catch (e) {
        return /cannot hold out 21/.test((e as Error).message);
      }
    })(),
    "holding out 21 combinations should be refused",
  );
});

Deno.test("csv: fields with commas and quotes are quoted and parse back", () => {
  const rows = [["videos/0.mp4", 'a red circle, "fast", moving left', 16], ["b", "plain", 1]];
  const text = toCsv(["path", "text", "n"], rows);
  const back = parse(text, { columns: true }) as Record<string, string>[];
  assertEquals(back, [
    { path: "videos/0.mp4", text: 'a red circle, "fast", moving left', n: "16" },
    { path: "b", text: "plain", n: "1" },
  ]);
});

Deno.test("eval: 100% on clean clips of every combination, size and background", () => {
  const scenes = sweep(100);
  const t0 = performance.now();
  const res = scenes.map((s) => analyzeVideo(renderScene(s, G), 64, 64));
  const ms = (performance.now() - t0) / scenes.length;
  const acc = accuracy(scenes, res);
  console.log(`clean (${scenes.length} clips, ${ms.toFixed(1)} ms/clip):`, acc);
  for (const k of KEYS) assertEquals(acc[k], 1, `${k} accuracy ${acc[k]}`);
  // a packed array reads the same as the frame list
  assertEquals(analyzeVideo(packFrames(renderScene(scenes[0]!, G)), 64, 64), res[0]);
  // odd geometry
  const g = { width: 80, height: 48, frames: 12 };
  const odd = sweep(300, g).filter((_, i) => i % 3 === 0);
  const oddAcc = accuracy(odd, odd.map((s) => analyzeVideo(renderScene(s, g), 80, 48)));
  for (const k of KEYS) assertEquals(oddAcc[k], 1, `80x48 ${k} accuracy ${oddAcc[k]}`);
  // the largest shapes (make-data --object-scale) crossing the frame
  const big = sweep(700, G, "cross", MAX_OBJECT_SCALE).filter((_, i) => i % 3 === 1);
  const bigAcc = accuracy(big, big.map((s) => analyzeVideo(renderScene(s, G), 64, 64)));
  for (const k of KEYS) assertEquals(bigAcc[k], 1, `scale ${MAX_OBJECT_SCALE} ${k} accuracy`);
  // an empty clip has no object
  const empty = analyzeVideo(
    Array.from({ length: 4 }, () => new Uint8Array(64 * 64 * 3).fill(40)),
    64,
    64,
  );
  assertEquals([empty.colour, empty.shape, empty.direction], [null, null, null]);
});

for (const [sigma, std, crf] of [[1.2, 12, 18], [2, 20, 30]] as const) {
  ffTest(
    `eval: >= 90% after blur ${sigma} + noise ${std} + mp4 (crf ${crf}) round trip`,
    async () => {
      const scenes = allCombos().map((c, i) =>
        sampleScene(new Rng(500 + i), G, {
          ...c,
          size: SIZES[i % 3],
          background: BACKGROUNDS[Math.floor(i / 3) % 3],
        })
      );
      const rng = new Rng(11);
      const clips = scenes.map((s) =>
        packFrames(renderScene(s, G).map((f) => degrade(f, 64, 64, sigma, std, rng)))
      );
      const dir = await Deno.makeTempDir({ prefix: "kino_synth_" });
      try {
        // all 60 clips as one video: one ffmpeg encode and decode
        const path = `${dir}/all.mp4`;
        await writeVideo(path, packFrames(clips), {
          t: 16 * clips.length,
          h: 64,
          w: 64,
          fps: 8,
          crf,
        });
        const v = await readVideo(path);
        assertEquals([v.t, v.h, v.w], [16 * clips.length, 64, 64]);
        const frames = unpackFrames(v.frames, 64, 64);
        const res = scenes.map((_, i) => analyzeVideo(frames.slice(16 * i, 16 * i + 16), 64, 64));
        const acc = accuracy(scenes, res);
        console.log(`blur ${sigma}, noise ${std}, crf ${crf} (${scenes.length} clips):`, acc);
        for (const k of KEYS) assert(acc[k]! >= 0.9, `${k} accuracy ${acc[k]}`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}

Deno.test("eval: scorePrompts counts, confusion tables and the acceptance check", () => {
  const scenes = sweep(200).slice(0, 24);
  const samples = scenes.map((s) => ({
    prompt: canonicalCaption(s),
    frames: renderScene(s, G),
    width: 64,
    height: 64,
  }));
  const good = evaluateVideos(samples);
  assertEquals(good.score.n, 24);
  for (const k of KEYS) assertEquals(good.score[k].accuracy, 1);
  assert(good.acceptance.passed);
  // wrong colour in every prompt, wrong direction in half: scores and confusion follow
  const other = (c: string) => COLOURS[(COLOURS.indexOf(c as never) + 1) % COLOURS.length]!;
  const flip = { left: "right", right: "left", up: "down", down: "up" } as const;
  const prompts: Combo[] = scenes.map((s, i) => ({
    colour: other(s.colour),
    shape: s.shape,
    direction: i % 2 ? flip[s.direction] : s.direction,
  }));
  const score = scorePrompts(good.samples.map((r) => r.analysis), prompts);
  assertEquals([score.colour.accuracy, score.shape.accuracy, score.direction.accuracy], [
    0,
    1,
    0.5,
  ]);
  assertEquals(score.all.correct, 0);
  // colour confusion: truth (prompt) rows, prediction (the clip's real colour) columns
  const expected: Record<string, Record<string, number>> = {};
  prompts.forEach((p, i) => {
    expected[p.colour] ??= {};
    expected[p.colour]![scenes[i]!.colour] = (expected[p.colour]![scenes[i]!.colour] ?? 0) + 1;
  });
  assertEquals(score.colour.confusion, expected);
  const bad = evaluateVideos(
    samples.map((s, i) => ({ ...s, prompt: canonicalCaption(prompts[i]!) })),
  );
  assert(!bad.acceptance.passed);
  const text = formatReport(bad);
  for (
    const want of [
      /colour +0\.0%/,
      /shape +100\.0%/,
      /direction +50\.0%/,
      /FAILED/,
      /colour \\ pred/,
      /mistakes \(10 of 24\)/,
    ]
  ) {
    assert(want.test(text), `report lacks ${want}:\n${text}`);
  }
  assert(/PASSED/.test(formatReport(good)));
  assert(
    /acceptance: FAILED.*prompts 3 >= 20 NO/.test(
      formatReport(evaluateVideos(samples.slice(0, 3))),
    ),
  );
  let msg = "";
  try {
    scorePrompts([good.samples[0]!.analysis], ["a picture of a cat"]);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/does not name one colour, shape and direction/.test(msg), msg);
});

const makeData = (args: string[]) => runCli("make_data.ts", args);

ffTest("make-data: writes 12 clips whose CSV, files and captions agree", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kino_make_data_" });
  try {
    // a second run with the same seed (and fewer clips) runs alongside, for determinism below
    const dir2 = `${dir}_again`;
    const [r, again] = await Promise.all([
      makeData(["--out", dir, "--count", "12", "--seed", "3", "--frames", "12"]),
      makeData([
        ...["--out", dir2, "--count", "3", "--seed", "3", "--frames", "12", "--jobs", "1"],
        ...["--caption-variants", "2"],
      ]),
    ]);
    assertEquals(r.code, 0, r.out);
    assert(/wrote 12 clips/.test(r.out) && /12\/12 clips/.test(r.out), r.out);
    const rows = parse(await Deno.readTextFile(`${dir}/train.csv`), { columns: true }) as Record<
      string,
      string
    >[];
    assertEquals(rows.length, 12);
    assertEquals(Object.keys(rows[0]!), [
      "path",
      "text",
      "num_frames",
      "height",
      "width",
      "aspect_ratio",
      "resolution",
      "fps",
    ]);
    const meta = JSON.parse(await Deno.readTextFile(`${dir}/meta.json`));
    assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/buckets.json`)), {
      "64px": { "12": [1, 16] },
    });
    const held = new Set((meta.heldoutCombos as Combo[]).map(comboKey));
    assertEquals(held.size, 12);
    const heldRows = await readHeldoutPrompts(`${dir}/heldout.csv`);
    assertEquals(heldRows.length, 24);
    for (const h of heldRows) {
      assert(held.has(comboKey(h)), `${h.text}: not held out`);
      assertEquals(comboKey(parsePrompt(h.text)!), comboKey(h), h.text);
    }
    // the training data reader (train/data/csv.ts) accepts train.csv as written
    const table = await readDatasetCsv(`${dir}/train.csv`);
    assertEquals([table.rows.length, table.problems, table.unknownColumns], [12, [], []]);
    assertEquals(table.rows[0]!.path, `${dir}/${rows[0]!.path}`);
    assertEquals(
      [table.rows[0]!.numFrames, table.rows[0]!.height, table.rows[0]!.width, table.rows[0]!.fps],
      [12, 64, 64, 8],
    );
    const samples = await Promise.all(rows.map(async (row) => {
      assertEquals([row.num_frames, row.height, row.width, row.fps], ["12", "64", "64", "8"]);
      const p = parsePrompt(row.text!);
      assert(p, `caption '${row.text}' does not parse`);
      // ends with "." so that the training caption matches the inference prompt's "TEXT. 8 FPS."
      assert(row.text!.endsWith(".") && !row.text!.endsWith(".."), `caption '${row.text}'`);
      assert(!held.has(comboKey(p)), `train.csv uses held-out ${comboKey(p)}`);
      // ffprobe (size, rate) and ffmpeg (frames) read the declared geometry
      const v = await readVideo(`${dir}/${row.path}`);
      assertEquals([v.t, v.h, v.w, v.fps], [12, 64, 64, 8]);
      return { prompt: row.text!, frames: v.frames, width: v.w, height: v.h };
    }));
    // the clips show what their captions say
    const report = evaluateVideos(samples);
    for (const k of KEYS) assertEquals(report.score[k].accuracy, 1, formatReport(report));
    // same seed, same clips and captions (clip i depends only on the seed and i); caption
    // variants come after the full captions, two per clip, naming the same clips
    assertEquals(again.code, 0, again.out);
    const lines = (await Deno.readTextFile(`${dir}/train.csv`)).split("\n");
    const lines2 = (await Deno.readTextFile(`${dir2}/train.csv`)).trimEnd().split("\n");
    assertEquals(lines2.slice(0, 4), lines.slice(0, 4));
    const variants = parse(lines2.slice(4).join("\n"), {
      columns: Object.keys(rows[0]!),
    }) as Record<
      string,
      string
    >[];
    assertEquals(variants.map((v) => v.path), [0, 1, 2, 0, 1, 2].map((i) => rows[i]!.path));
    for (const [k, v] of variants.entries()) {
      assertEquals({ ...v, text: "" }, { ...rows[k % 3]!, text: "" }, v.text);
      assert(v.text!.endsWith(".") && parsePrompt(v.text!) === null, `variant '${v.text}'`);
      const p = parsePrompt(rows[k % 3]!.text!)!;
      assert(
        new RegExp(`\\b${p.shape}\\b`).test(v.text!),
        `'${v.text}' does not name the ${p.shape}`,
      );
    }
    assertEquals(JSON.parse(await Deno.readTextFile(`${dir2}/meta.json`)).captionVariants, 2);
    assertEquals(
      await Deno.readFile(`${dir2}/videos/00002.mp4`),
      await Deno.readFile(`${dir}/videos/00002.mp4`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(`${dir}_again`, { recursive: true }).catch(() => {});
  }
});

Deno.test("make-data: --help, unknown flags and bad values", async () => {
  const help = await makeData(["--help"]);
  assertEquals(help.code, 0);
  assert(/Usage: deno task make-data/.test(help.out), help.out);
  const unknown = await makeData(["--bogus", "1"]);
  assertEquals(unknown.code, 2);
  assert(/Unknown option '--bogus'/.test(unknown.out), unknown.out);
  const bad = await makeData(["--count", "ten"]);
  assertEquals(bad.code, 2);
  assert(/--count must be an integer >= 1, got "ten"/.test(bad.out), bad.out);
  const variants = await makeData(["--caption-variants=-1"]);
  assertEquals(variants.code, 2);
  assert(/--caption-variants must be an integer >= 0, got "-1"/.test(variants.out), variants.out);
  const scale = await makeData(["--object-scale", "2"]);
  assertEquals(scale.code, 2);
  assert(/--object-scale must be a number > 0 and <= 1.8, got "2"/.test(scale.out), scale.out);
  const motion = await makeData(["--motion", "zigzag"]);
  assertEquals(motion.code, 2);
  assert(/--motion must be drift or cross, got "zigzag"/.test(motion.out), motion.out);
});
