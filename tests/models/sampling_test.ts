/**
 * The rectified-flow sampler (`models/sampling`) against the reference fixtures
 * (`tiny/sampling_t2v`, `tiny/sampling_i2v`, `tiny/sampling_schedules.json`) and the tables of
 * `shared/spec/sampling.md`: schedules bit for bit, size tables, frame rules, prompt suffixes,
 * pack/unpack and ids, noise, masks/cond exact, teacher-forced guidance + Euler bit-exact at every
 * step, and the full loop driven by a stand-in model that replays the stored predictions.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { FIXTURES, fixtureTest, gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { loadSafetensors } from "../../engine/safetensors.ts";
import { keep, type Tensor, tidy } from "../../engine/tensor.ts";
import { tensor } from "../../engine/ops/create.ts";
import { copy } from "../../engine/ops/elementwise.ts";
import { narrow, read, readAll } from "../../engine/ops/movement.ts";
import { normalCpu } from "../../engine/ops/random.ts";
import type { MMDiTInputs, VelocityModel } from "../../models/mmdit/inputs.ts";
import {
  addFpsInfo,
  addMotionScore,
  applyReferenceOverwrite,
  aspectRatios,
  cfgCondition,
  cfgRows,
  cfgTexts,
  checkFrameCount,
  checkImageSize,
  type CondType,
  decodedFrames,
  eulerStep,
  getSchedule,
  guidedVelocity,
  imageSize,
  keepFrames,
  latentFrames,
  latentGrid,
  linspaceF32,
  makeNoise,
  numPixels,
  oscillationScale,
  pack,
  positionIds,
  prepareCondition,
  resolutionShiftAlpha,
  roundUpTo16,
  sample,
  sampleSeed,
  stepGuidance,
  temporalImageRamp,
  textIds,
  toBf16,
  unpack,
} from "../../models/sampling/mod.ts";

type Stored = Map<string, { shape: number[]; data: Float32Array }>;

/** Number of elements whose float32 bit patterns are equal. */
function bitEqualCount(a: Float32Array, b: Float32Array): number {
  assertEquals(a.length, b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let n = 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] === ub[i]) n++;
  return n;
}

function assertBitExact(a: Float32Array, b: Float32Array, label: string): void {
  const n = bitEqualCount(a, b);
  if (n !== b.length) {
    assertClose(a, b, { atol: 0, rtol: 0, label: `${label} (${n}/${b.length} bit-equal)` });
    throw new Error(`${label}: ${b.length - n} elements differ only in the sign of zero`);
  }
}

// ---------------------------------------------------------------- schedules (CPU)

interface ScheduleEntry {
  name: string;
  resolution: string;
  aspect_ratio: string;
  num_frames: number;
  num_steps: number;
  shift: boolean;
  patch_size: number;
  height: number;
  width: number;
  noise_shape: number[];
  latent_frames: number;
  image_seq_len: number;
  shift_alpha_float64: number | null;
  timesteps: number[];
  timesteps_bf16: number[];
}

/** The fields of a sampling case's `case.json` used here. */
interface CaseJson {
  api_fn_call: { cond_type: CondType; text: string[] };
  cfg_row_texts: string[];
  get_schedule_call: {
    num_steps: number;
    image_seq_len: number;
    num_frames: number;
    shift: boolean;
  };
  shift_alpha_float64: number;
  schedule: number[];
  latent_shape: number[];
  latent_frames: number;
  num_steps: number;
  txt_len: number;
  guidance_per_step: {
    step: number;
    t: number;
    t_next: number;
    dt_float32: number;
    text_gs: number;
    image_gs: number;
    temporal_ramp: boolean;
    ramp_upper?: number;
    image_gs_per_frame?: number[];
  }[];
}

function loadJson<T>(rel: string): T {
  return JSON.parse(Deno.readTextFileSync(`${FIXTURES}${rel}`)) as T;
}

Deno.test({
  name: "sampling: every schedule of sampling_schedules.json and both cases, bit for bit",
  ignore: !FIXTURES,
  fn() {
    const { entries } = loadJson<{ entries: ScheduleEntry[] }>("tiny/sampling_schedules.json");
    let exact = 0;
    let total = 0;
    const check = (name: string, got: number[], want: number[]) => {
      assertEquals(got.length, want.length, name);
      assertClose(got, want, { atol: 5e-7, rtol: 0, label: name });
      exact += got.filter((v, i) => Object.is(v, want[i])).length;
      total += want.length;
    };
    for (const e of entries) {
      // sizes as sanitize_sampling_option + get_noise derive them (the Flux stage: training table)
      const flux = e.name.startsWith("flux");
      const size = imageSize(e.resolution, e.aspect_ratio, { training: flux });
      assertEquals([size.height, size.width], [e.height, e.width], `${e.name} size`);
      const grid = latentGrid(size, { patchSize: e.patch_size });
      assertEquals([grid.h, grid.w], e.noise_shape.slice(3), `${e.name} latent grid`);
      assertEquals(grid.h * grid.w / e.patch_size ** 2, e.image_seq_len, `${e.name} S`);
      assertEquals(latentFrames(e.num_frames), e.latent_frames, `${e.name} T`);
      if (e.shift_alpha_float64 !== null) {
        assertEquals(resolutionShiftAlpha(e.image_seq_len, e.latent_frames), e.shift_alpha_float64);
      }
      const ts = getSchedule(e.num_steps, e.image_seq_len, e.latent_frames, { shift: e.shift });
      check(e.name, ts, e.timesteps);
      assertEquals(ts.map(toBf16), e.timesteps_bf16, `${e.name} bf16`);
    }
    for (const c of ["sampling_t2v", "sampling_i2v"]) {
      const k = loadJson<CaseJson>(`tiny/${c}/case.json`);
      const call = k.get_schedule_call;
      assertEquals(
        resolutionShiftAlpha(call.image_seq_len, call.num_frames),
        k.shift_alpha_float64,
      );
      const ts = getSchedule(call.num_steps, call.image_seq_len, call.num_frames, {
        shift: call.shift,
      });
      check(c, ts, k.schedule);
      assertEquals(ts[0], 1 + 2 ** -23, `${c}: the first value is 1 + 2^-23 as in float32 torch`);
    }
    console.log(`  schedules: ${exact}/${total} values bit-exact`);
    assertEquals(exact, total);
  },
});

Deno.test("sampling: spec §5 table, linspace and a fixed shift factor", async () => {
  const alphas: [number, number, number][] = [[576, 32, 6.599663], [64, 8, 2.545584], [
    2304,
    33,
    11.872096,
  ]];
  for (const [S, T, a] of alphas) assertClose([resolutionShiftAlpha(S, T)], [a], { atol: 1e-6 });
  const ts = getSchedule(50, 576, 32);
  assertClose([ts[1]!, ts[2]!, ts[3]!, ts[48]!, ts[49]!], [
    0.996917,
    0.993726,
    0.990421,
    0.215678,
    0.1187,
  ], { atol: 1e-6 });
  assertEquals(ts[0], 1);
  assertEquals(ts[50], 0);
  // a given flow shift replaces the computed one
  const fixed = getSchedule(10, 576, 32, { shiftAlpha: 3 });
  assertClose(fixed, linspaceF32(1, 0, 11).map((t) => 3 * t / (1 + 2 * t)), { atol: 2e-7 });
  assertEquals(linspaceF32(1, 5, 1), [1]);
  assertEquals(linspaceF32(2, 3, 0), []);
  // float64 check of linspace at an odd length through both code paths
  const l = linspaceF32(-1.5, 2.25, 37);
  assertClose(l, l.map((_, i) => -1.5 + 3.75 * i / 36), { atol: 5e-7, rtol: 0 });
  assertEquals(toBf16(0.993726), 0.9921875);
  await assertThrows(() => getSchedule(0, 1, 1), "numSteps");
  await assertThrows(() => resolutionShiftAlpha(0, 1), "S = 0");
});

// ---------------------------------------------------------------- sizes, frames, prompts (CPU)

Deno.test("sampling: resolution / aspect-ratio tables of spec §2", async () => {
  const hcae: [string, string, string][] = [
    ["16:9", "192x320", "576x1024"],
    ["9:16", "320x192", "1024x576"],
    ["1:1", "256x256", "768x768"],
    ["2.39:1", "160x384", "480x1184"],
    ["2:1", "160x352", "544x1056"],
    ["4:3", "224x288", "672x864"],
    ["3:2", "224x288", "608x928"],
  ];
  const hw = (r: string, a: string, o = {}) => {
    const s = imageSize(r, a, o);
    return `${s.height}x${s.width}`;
  };
  const latent = (r: string, a: string) => {
    const g = latentGrid(imageSize(r, a));
    return `${g.h}x${g.w}`;
  };
  const latents: Record<string, [string, string]> = {
    "16:9": ["6x10", "18x32"],
    "9:16": ["10x6", "32x18"],
    "1:1": ["8x8", "24x24"],
    "2.39:1": ["5x12", "15x37"],
    "2:1": ["5x11", "17x33"],
    "4:3": ["7x9", "21x27"],
    "3:2": ["7x9", "19x29"],
  };
  for (const [ratio, s256, s768] of hcae) {
    assertEquals(hw("256px", ratio), s256, `256px ${ratio}`);
    assertEquals(hw("768px", ratio), s768, `768px ${ratio}`);
    assertEquals(latent("256px", ratio), latents[ratio]![0], `256px ${ratio} latent`);
    assertEquals(latent("768px", ratio), latents[ratio]![1], `768px ${ratio} latent`);
  }
  const base: [string, string, string][] = [
    ["256px", "16:9", "192x336"],
    ["256px", "9:16", "336x192"],
    ["256px", "1:1", "256x256"],
    ["768px", "16:9", "576x1024"],
    ["768px", "9:16", "1024x576"],
    ["768px", "1:1", "768x768"],
  ];
  for (const [r, a, s] of base) assertEquals(hw(r, a, { compression: 16 }), s, `base ${r} ${a}`);
  // the t2i stage's training table (§9) and duplicate removal in training mode
  assertEquals(hw("768px", "16:9", { training: true }), "576x1024");
  // inference keeps duplicates (4:3 = 3:2 at 256px) and the 15 keys; training drops them
  const inf = aspectRatios(256 * 256);
  assertEquals(inf.size, 15);
  assertEquals(inf.get("4:3"), inf.get("3:2"));
  assertEquals(inf.get("3:4"), [288, 224]);
  const train = aspectRatios(256 * 256, { training: true });
  assert(!train.has("4:3") && train.has("3:2"), "training table drops the duplicate 4:3");
  assertEquals(numPixels("720p"), 921600);
  assertEquals(numPixels("768px_ar16:9"), 589824);
  assertEquals(roundUpTo16({ height: 570, width: 1000 }), { height: 576, width: 1008 });
  await assertThrows(() => imageSize("768px", "7:5"), `"7:5"`, `"16:9"`);
  await assertThrows(() => imageSize("768", "16:9"), `"768"`, "768px");
  checkImageSize({ height: 576, width: 1024 });
  await assertThrows(
    () => checkImageSize({ height: 560, width: 1024 }),
    "height 560",
    "544 or 576",
  );
  await assertThrows(
    () => checkImageSize({ height: 576, width: 1000 }),
    "width 1000",
    "992 or 1024",
  );
});

Deno.test("sampling: frame rules (latent frames, validation, decoded frames)", async () => {
  assertEquals(latentFrames(128), 32);
  assertEquals(latentFrames(128, { causal: false }), 32);
  assertEquals(latentFrames(12), 3);
  assertEquals(latentFrames(16), 4);
  assertEquals(latentFrames(1), 1);
  assertEquals(latentFrames(1, { causal: false }), 1);
  assertEquals(latentFrames(13), 4);
  assertEquals(latentFrames(13, { causal: false }), 3);
  assertEquals(latentFrames(129), 33);
  for (const f of [1, 4, 12, 16, 64, 128]) checkFrameCount(f);
  await assertThrows(() => checkFrameCount(129), "129", "multiple of 4", "use 128");
  await assertThrows(() => checkFrameCount(13), "13", "12 or 16");
  await assertThrows(() => checkFrameCount(132), "132", "over 128");
  await assertThrows(() => checkFrameCount(0), "numFrames 0");
  checkFrameCount(256, { maxFrames: 256 });
  assertEquals(decodedFrames(32), 128);
  assertEquals(decodedFrames(3), 12);
  assertEquals(decodedFrames(1), 1);
  await assertThrows(() => latentFrames(0), "numFrames 0");
});

Deno.test("sampling: prompt suffixes of spec §3 and the CFG texts of both cases", async () => {
  assertEquals(
    addMotionScore(addFpsInfo("a red car", 24), 4),
    "a red car. 24 FPS. 4 motion score.",
  );
  assertEquals(addFpsInfo("  a dog runs.  ", 24), "a dog runs. 24 FPS.");
  assertEquals(addFpsInfo("a dog runs. 16 FPS.", 24), "a dog runs. 16 FPS.");
  assertEquals(addFpsInfo("a dog runs. 16 FPS", 24), "a dog runs. 16 FPS.");
  assertEquals(addFpsInfo("", 24), ". 24 FPS.");
  assertEquals(addMotionScore("x.", "7"), "x. 7 motion score.");
  await assertThrows(() => addMotionScore("x", "dynamic"), "dynamic", "number");
  assertEquals(cfgTexts(["a", "b"]), ["a", "b", "", "", "", ""]);
  assertEquals(cfgTexts(["a"], ["bad"]), ["a", "bad", "bad"]);
  await assertThrows(() => cfgTexts(["a"], []), "negative prompts");
  if (!FIXTURES) return;
  const raw: Record<string, string[]> = {
    sampling_t2v: ["a red car drives along a coastal road at sunset"],
    sampling_i2v: ["a cat jumps onto a wooden table", "waves break on a rocky shore"],
  };
  for (const c of ["sampling_t2v", "sampling_i2v"]) {
    const k = loadJson<CaseJson>(`tiny/${c}/case.json`);
    const texts = raw[c]!.map((t) => addMotionScore(addFpsInfo(t, 24), 4));
    assertEquals(texts, k.api_fn_call.text);
    assertEquals(cfgTexts(texts), k.cfg_row_texts);
  }
});

Deno.test("sampling: guidance scales (oscillation, temporal ramp) of both cases", async () => {
  assertEquals([0, 9, 10, 11, 12, 13].map((i) => oscillationScale(7.5, i)), [
    7.5,
    7.5,
    7.5,
    1,
    7.5,
    1,
  ]);
  assertEquals(stepGuidance(11, 50, 4, "i2v_head", { textOsci: false }).text, 7.5);
  assertEquals(stepGuidance(0, 50, 1, "i2v_head").imageRamp, [1]);
  assertEquals(stepGuidance(0, 50, 8, "i2v_head", { scaleTemporalOsci: false }).imageRamp, null);
  assertEquals(stepGuidance(0, 50, 8, "v2v_head").imageRamp, null);
  await assertThrows(() => stepGuidance(12, 12, 4, "t2v"), "step 12");
  if (!FIXTURES) return;
  for (const c of ["sampling_t2v", "sampling_i2v"]) {
    const k = loadJson<CaseJson>(`tiny/${c}/case.json`);
    const T = k.latent_frames;
    for (const g of k.guidance_per_step) {
      const s = stepGuidance(g.step, k.num_steps, T, k.api_fn_call.cond_type);
      assertEquals(s.text, g.text_gs, `${c} step ${g.step} text`);
      assertEquals(s.image, g.image_gs, `${c} step ${g.step} image`);
      assertEquals(s.imageRamp !== null, g.temporal_ramp, `${c} step ${g.step} ramp`);
      if (g.temporal_ramp) {
        assertEquals(s.imageRamp, g.image_gs_per_frame, `${c} step ${g.step} ramp values`);
        assertEquals(temporalImageRamp(g.image_gs, g.step, k.num_steps, T).at(-1), g.ramp_upper);
      }
      assertEquals(Math.fround(g.t_next - g.t), g.dt_float32);
    }
  }
});

// ---------------------------------------------------------------- pack / unpack / ids (GPU)

/** float64-free index reference of pack: token (t·H + h)·W + w, feature c·p² + i·p + j. */
function packRef(x: Float32Array, [B, C, T, Hp, Wp]: number[], p: number): Float32Array {
  const H = Hp / p;
  const W = Wp / p;
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < T; t++) {
        for (let y = 0; y < Hp; y++) {
          for (let z = 0; z < Wp; z++) {
            const h = Math.floor(y / p);
            const i = y % p;
            const w = Math.floor(z / p);
            const j = z % p;
            const n = (t * H + h) * W + w;
            const f = c * p * p + i * p + j;
            out[(b * T * H * W + n) * C * p * p + f] =
              x[(((b * C + c) * T + t) * Hp + y) * Wp + z]!;
          }
        }
      }
    }
  }
  return out;
}

gpuTest(
  "sampling: pack / unpack at odd sizes (p = 1, 2, 3) and positionIds / textIds",
  async () => {
    gpu();
    for (
      const [shape, p] of [[[2, 3, 5, 3, 7], 1], [[1, 5, 3, 6, 4], 2], [[3, 2, 2, 3, 6], 3]] as [
        number[],
        number,
      ][]
    ) {
      const data = randomArray(shape.reduce((a, b) => a * b), 11 + p);
      const x = tensor(data, shape);
      const [B, C, T, Hp, Wp] = shape as [number, number, number, number, number];
      const [tok, back] = tidy(() => {
        const t = pack(x, p);
        return [t, unpack(t, T, Hp / p, Wp / p, C, p)];
      });
      assertEquals(tok.shape, [B, T * (Hp / p) * (Wp / p), C * p * p]);
      assertEquals(back.shape, shape);
      const [tv, bv] = await readAll([tok, back]);
      assertBitExact(tv!, packRef(data, shape, p), `pack p=${p}`);
      assertBitExact(bv!, data, `unpack(pack) p=${p}`);
      x.dispose();
      tok.dispose();
      back.dispose();
    }
    const ids = positionIds(2, 3, 2, 5);
    assertEquals(ids.length, 2 * 30 * 3);
    assertEquals([...ids.subarray(3 * 17, 3 * 18)], [1, 1, 2]); // token 17 = (t 1, h 1, w 2)
    assertEquals([...ids.subarray(90 + 3 * 17, 90 + 3 * 18)], [1, 1, 2]);
    assertEquals(textIds(3, 4), new Float32Array(36));
    const bad = tensor(new Float32Array(2 * 3 * 5), [1, 2, 1, 3, 5]);
    await assertThrows(() => pack(bad, 2), "multiples of the patch size 2");
    await assertThrows(
      () => unpack(tensor(new Float32Array(12), [1, 4, 3]), 1, 2, 2, 4, 1),
      "C·p²",
    );
    bad.dispose();
  },
);

gpuTest("sampling: makeNoise is the engine's counter-based normal stream; seed + k", async () => {
  gpu();
  const shape = [2, 3, 3, 5, 7];
  const a = makeNoise(shape, sampleSeed(42, 0));
  const b = makeNoise(shape, 42);
  const c = makeNoise(shape, sampleSeed(42, 1));
  const [av, bv, cv] = await readAll([a, b, c]);
  assertBitExact(av!, bv!, "same seed, same noise");
  assertClose(av!, normalCpu(shape, { seed: 42 }), { atol: 1e-5, rtol: 0, label: "seed 42" });
  assertClose(cv!, normalCpu(shape, { seed: 43 }), { atol: 1e-5, rtol: 0, label: "seed 43" });
  assert(bitEqualCount(av!, cv!) < av!.length / 10, "different seeds give different noise");
  let mean = 0;
  for (const v of av!) mean += v / av!.length;
  assert(Math.abs(mean) < 0.15, `mean ${mean}`);
  for (const t of [a, b, c]) t.dispose();
  assertEquals(sampleSeed(42, 3), 45);
  await assertThrows(() => sampleSeed(-1, 0), "seed -1");
  await assertThrows(() => makeNoise([2, 3], 1), "[N, C, T, h, w]");
});

// ---------------------------------------------------------------- conditioning (GPU)

/** CPU reference of prepare_inference_condition for image refs ([C, 1, h, w] per row). */
function conditionRef(
  [N, C, T, h, w]: number[],
  type: CondType,
  refs: (Float32Array[] | null)[],
): { masks: Float32Array; maskedRef: Float32Array } {
  const masks = new Float32Array(N * T * h * w);
  const masked = new Float32Array(N * C * T * h * w);
  const put = (i: number, f: number, r: Float32Array) => {
    masks.fill(1, (i * T + f) * h * w, (i * T + f + 1) * h * w);
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < h * w; k++) masked[((i * C + c) * T + f) * h * w + k] = r[c * h * w + k]!;
    }
  };
  refs.forEach((r, i) => {
    if (!r || T === 1) return;
    if (type === "i2v_head" || type === "i2v_loop") put(i, 0, r[0]!);
    if (type === "i2v_tail" || type === "i2v_loop") put(i, T - 1, r[r.length - 1]!);
  });
  return { masks, maskedRef: masked };
}

gpuTest("sampling: prepareCondition for i2v_head / tail / loop, fallbacks, T = 1", async () => {
  gpu();
  const shape = [3, 5, 4, 2, 3];
  const [N, C, T, h, w] = shape as [number, number, number, number, number];
  const img = (s: number) => randomArray(C * h * w, s);
  const refData: (Float32Array[] | null)[] = [[img(1), img(2)], null, [img(3), img(4)]];
  for (const type of ["i2v_head", "i2v_tail", "i2v_loop"] as CondType[]) {
    const refs = refData.map((r, i) =>
      r ? r.map((d, k) => tensor(d, i === 2 && k === 0 ? [1, C, 1, h, w] : [C, 1, h, w])) : null
    );
    const c = prepareCondition(shape, type, refs);
    assertEquals(c.condType, type);
    const [m, mr, cond] = await readAll([c.masks, c.maskedRef, c.cond]);
    const want = conditionRef(shape, type, refData);
    assertBitExact(m!, want.masks, `${type} masks`);
    assertBitExact(mr!, want.maskedRef, `${type} masked_ref`);
    const both = new Float32Array(N * (C + 1) * T * h * w);
    for (let i = 0; i < N; i++) {
      both.set(want.masks.subarray(i * T * h * w, (i + 1) * T * h * w), i * (C + 1) * T * h * w);
      both.set(
        want.maskedRef.subarray(i * C * T * h * w, (i + 1) * C * T * h * w),
        (i * (C + 1) + 1) * T * h * w,
      );
    }
    assertBitExact(cond!, packRef(both, [N, C + 1, T, h, w], 1), `${type} cond`);
    for (const t of [c.masks, c.maskedRef, c.cond]) t.dispose();
    for (const r of refs) r?.forEach((t) => t.dispose());
  }
  // no reference at all: falls back to t2v (zeros); T = 1: no masks
  const none = prepareCondition(shape, "i2v_head", [null, null]);
  assertEquals(none.condType, "t2v");
  const one = tensor(img(5), [C, 1, h, w]);
  const single = prepareCondition([1, C, 1, h, w], "i2v_head", [[one]]);
  assertEquals(single.condType, "i2v_head");
  const [nm, sm, sc] = await readAll([none.cond, single.masks, single.cond]);
  assert(nm!.every((v) => v === 0) && sm!.every((v) => v === 0) && sc!.every((v) => v === 0));
  // v2v_head takes the first 8 (+1 causal) latent frames of the video reference
  const video = randomArray(C * 12 * h * w, 9);
  const vref = tensor(video, [C, 12, h, w]);
  const v = prepareCondition([1, C, 12, h, w], "v2v_head", [[vref]], { causal: false });
  const [vm, vmr] = await readAll([v.masks, v.maskedRef]);
  assertEquals(vm!.reduce((a, b) => a + b, 0), 8 * h * w);
  for (let c = 0; c < C; c++) {
    for (let f = 0; f < 12; f++) {
      const got = vmr!.subarray((c * 12 + f) * h * w, (c * 12 + f + 1) * h * w);
      const exp = f < 8 ? video.subarray((c * 12 + f) * h * w, (c * 12 + f + 1) * h * w) : null;
      assert(
        exp ? got.every((x, k) => x === exp[k]) : got.every((x) => x === 0),
        `v2v c${c} f${f}`,
      );
    }
  }
  await assertThrows(
    () => prepareCondition([1, C, 12, h, w], "v2v_head", [[narrow(vref, 1, 0, 8)]]),
    "needs 9 latent frames",
    "has 8",
  );
  await assertThrows(
    () => prepareCondition(shape, "i2v_head", [[tensor(img(1), [C, 1, w, h])]]),
    "does not match",
  );
  await assertThrows(() => prepareCondition(shape, "x2v" as CondType), "unknown");
  for (const c of [none, single, v]) for (const t of [c.masks, c.maskedRef, c.cond]) t.dispose();
  one.dispose();
  vref.dispose();
});

gpuTest(
  "sampling: applyReferenceOverwrite writes row 0 only (head, tail, loop, T = 1)",
  async () => {
    gpu();
    const shape = [2, 3, 4, 2, 2];
    const [N, C, T, h, w] = shape as [number, number, number, number, number];
    const lat = randomArray(N * C * T * h * w, 21);
    const a = randomArray(C * h * w, 22);
    const b = randomArray(C * h * w, 23);
    const x = tensor(lat, shape);
    const ra = tensor(a, [C, 1, h, w]);
    const rb = tensor(b, [1, C, 1, h, w]);
    for (const type of ["i2v_head", "i2v_tail", "i2v_loop", "t2v"] as CondType[]) {
      const out = tidy(() => applyReferenceOverwrite(x, type, [[ra, rb], null]));
      const got = await read(out);
      const want = lat.slice();
      for (let c = 0; c < C; c++) {
        for (let k = 0; k < h * w; k++) {
          if (type === "i2v_head" || type === "i2v_loop") {
            want[(c * T) * h * w + k] = a[c * h * w + k]!;
          }
          if (type === "i2v_tail" || type === "i2v_loop") {
            want[(c * T + T - 1) * h * w + k] = b[c * h * w + k]!;
          }
        }
      }
      assertBitExact(got, want, `overwrite ${type}`);
      out.dispose();
    }
    const x1 = tensor(randomArray(C * h * w, 24), [1, C, 1, h, w]);
    const o1 = tidy(() => applyReferenceOverwrite(x1, "i2v_loop", [[ra, rb]]));
    assertBitExact(await read(o1), b, "T = 1 loop: the tail is written last");
    await assertThrows(() => applyReferenceOverwrite(x, "i2v_head", [null]), "row 0");
    for (const t of [x, ra, rb, x1, o1]) t.dispose();
    const video = tensor(randomArray(2 * 3 * 16 * 4, 3), [1, 2, 16, 3, 4]);
    const kept = keepFrames(video, 13);
    assertEquals(kept.shape, [1, 2, 13, 3, 4]);
    await assertThrows(() => keepFrames(video, 17), "[1, 16]");
    video.dispose();
  },
);

// ---------------------------------------------------------------- the reference cases (GPU)

interface CaseData {
  name: string;
  k: CaseJson;
  t: Stored;
  N: number;
  T: number;
  h: number;
  w: number;
  C: number;
  L: number;
  steps: number;
  refs: Tensor[][] | null;
}

async function loadCase(dir: string, name: string): Promise<CaseData> {
  const k = JSON.parse(await Deno.readTextFile(`${dir}tiny/${name}/case.json`));
  const t: Stored = await loadSafetensors(`${dir}tiny/${name}/tensors.safetensors`);
  const [N, C, T, h, w] = k.latent_shape as number[];
  const refs = t.has("ref_latent")
    ? Array.from({ length: N! }, (_, i) => {
      const r = t.get("ref_latent")!;
      const n = r.data.length / N!;
      return [tensor(r.data.slice(i * n, (i + 1) * n), r.shape.slice(1))];
    })
    : null;
  return {
    name,
    k,
    t,
    N: N!,
    C: C!,
    T: T!,
    h: h!,
    w: w!,
    L: T! * h! * w!,
    steps: k.num_steps,
    refs,
  };
}

function stored(c: CaseData, key: string): Float32Array {
  const s = c.t.get(key);
  if (!s) throw new Error(`${c.name}: no tensor ${key}`);
  return s.data;
}

function up(c: CaseData, key: string): Tensor {
  const s = c.t.get(key)!;
  return tensor(s.data, s.shape);
}

function stepSlice(c: CaseData, key: "x_steps" | "pred_steps", i: number): Float32Array {
  const rows = key === "x_steps" ? c.N : 3 * c.N;
  const n = rows * c.L * c.C;
  return stored(c, key).subarray(i * n, (i + 1) * n);
}

for (const name of ["sampling_t2v", "sampling_i2v"]) {
  fixtureTest(`sampling: ${name} conditioning and CFG rows exact`, async (dir) => {
    const c = await loadCase(dir, name);
    const noise = up(c, "noise");
    const cond = prepareCondition(noise.shape, c.k.api_fn_call.cond_type, c.refs ?? []);
    assertEquals(cond.condType, c.k.api_fn_call.cond_type);
    const [txtP, txtN, yP, yN] = ["txt.prompt", "txt.neg", "y_vec.prompt", "y_vec.neg"].map((k) =>
      up(c, k)
    );
    const outs = tidy(() => [
      pack(noise),
      cfgCondition(cond.cond),
      cfgRows(txtP!, txtN!),
      cfgRows(yP!, yN!),
    ]);
    const vals = await readAll([cond.masks, cond.maskedRef, cond.cond, ...outs]);
    const names = ["masks", "masked_ref", "cond", "x_steps[0]", "model_in.cond", "model_in.txt"];
    names.push("model_in.y_vec");
    vals.forEach((v, i) => {
      const want = names[i] === "x_steps[0]" ? stepSlice(c, "x_steps", 0) : stored(c, names[i]!);
      assertBitExact(v, want, `${name} ${names[i]}`);
    });
    assertBitExact(positionIds(3 * c.N, c.T, c.h, c.w), stored(c, "model_in.img_ids"), "img_ids");
    assertBitExact(textIds(3 * c.N, c.k.txt_len), stored(c, "model_in.txt_ids"), "txt_ids");
    for (
      const t of [noise, txtP!, txtN!, yP!, yN!, cond.masks, cond.maskedRef, cond.cond, ...outs]
    ) {
      t.dispose();
    }
    c.refs?.flat().forEach((t) => t.dispose());
  });

  fixtureTest(
    `sampling: ${name} teacher-forced guidance + Euler bit-exact at every step`,
    async (dir) => {
      const c = await loadCase(dir, name);
      const ts: number[] = c.k.schedule;
      const type: string = c.k.api_fn_call.cond_type;
      const counts: number[] = [];
      for (let i = 0; i < c.steps; i++) {
        const x = tensor(stepSlice(c, "x_steps", i).slice(), [c.N, c.L, c.C]);
        const pred = tensor(stepSlice(c, "pred_steps", i).slice(), [3 * c.N, c.L, c.C]);
        const next = tidy(() =>
          eulerStep(
            x,
            guidedVelocity(pred, stepGuidance(i, c.steps, c.T, type)),
            ts[i]!,
            ts[i + 1]!,
          )
        );
        const got = await read(next);
        const want = stepSlice(c, "x_steps", i + 1);
        counts.push(bitEqualCount(got, want));
        assertBitExact(got, want, `${name} step ${i}`);
        for (const t of [x, pred, next]) t.dispose();
      }
      console.log(
        `  ${name}: ${counts.reduce((a, b) => a + b, 0)}/${c.steps * c.N * c.L * c.C} ` +
          `updated values bit-exact over ${c.steps} steps (${gpu().info.name})`,
      );
      c.refs?.flat().forEach((t) => t.dispose());
    },
  );

  fixtureTest(`sampling: ${name} full loop driven by the stored predictions`, async (dir) => {
    const c = await loadCase(dir, name);
    const rows = 3 * c.N;
    const noise = up(c, "noise");
    const [txtP, txtN, yP, yN] = ["txt.prompt", "txt.neg", "y_vec.prompt", "y_vec.neg"].map((k) =>
      up(c, k)
    );
    const condition = prepareCondition(noise.shape, c.k.api_fn_call.cond_type, c.refs ?? []);
    const txt = tidy(() => cfgRows(txtP!, txtN!));
    const yVec = tidy(() => cfgRows(yP!, yN!));
    const timesteps = getSchedule(c.steps, c.h * c.w, c.T);
    assertEquals(timesteps, c.k.schedule);
    // the stand-in model: returns pred_steps[i] and records what it was given
    const seen: { img: Tensor; timesteps: Tensor }[] = [];
    let fixed: Tensor[] = [];
    const idsOk: boolean[] = [];
    let call = 0;
    const model: VelocityModel = (inp: MMDiTInputs) => {
      seen.push({ img: keep(copy(inp.img)), timesteps: keep(copy(inp.timesteps)) });
      if (call === 0) fixed = [keep(copy(inp.txt)), keep(copy(inp.yVec)), keep(copy(inp.cond!))];
      idsOk.push(
        bitEqualCount(inp.imgIds, stored(c, "model_in.img_ids")) === inp.imgIds.length &&
          bitEqualCount(inp.txtIds, stored(c, "model_in.txt_ids")) === inp.txtIds.length,
      );
      return tensor(stepSlice(c, "pred_steps", call++).slice(), [rows, c.L, c.C]);
    };
    const progress: [number, number, number][] = [];
    const before = gpu().pool.stats().inUse;
    const latent = await sample(model, {
      noise,
      txt,
      yVec,
      timesteps,
      condition,
      onStep: (i, n, t) => void progress.push([i, n, t]),
    });
    assertEquals(call, c.steps);
    assertEquals(progress, timesteps.slice(0, -1).map((t, i) => [i, c.steps, t]));
    assert(idsOk.every((ok) => ok), "img_ids / txt_ids");
    // model inputs at every step: img = [x_i; x_i; x_i], timesteps = t_i (3N copies)
    const imgs = await readAll(seen.map((s) => s.img));
    const tvs = await readAll(seen.map((s) => s.timesteps));
    for (let i = 0; i < c.steps; i++) {
      const x = stepSlice(c, "x_steps", i);
      const want = new Float32Array(3 * x.length);
      for (let r = 0; r < 3; r++) want.set(x, r * x.length);
      assertBitExact(imgs[i]!, want, `${name} model img at step ${i}`);
      assertBitExact(tvs[i]!, new Float32Array(rows).fill(timesteps[i]!), `timesteps ${i}`);
    }
    const fv = await readAll(fixed);
    ["model_in.txt", "model_in.y_vec", "model_in.cond"].forEach((k, i) =>
      assertBitExact(fv[i]!, stored(c, k), `${name} ${k}`)
    );
    // step1_latent = unpack(rows 0..N-1 of the step-1 img), final and output latents
    const step1 = tidy(() =>
      unpack(tensor(imgs[1]!.slice(0, c.N * c.L * c.C), [c.N, c.L, c.C]), c.T, c.h, c.w, c.C)
    );
    const out = tidy(() => applyReferenceOverwrite(latent, condition.condType, c.refs ?? []));
    const [s1, fin, o] = await readAll([step1, latent, out]);
    assertBitExact(s1!, stored(c, "step1_latent"), `${name} step1_latent`);
    assertBitExact(fin!, stored(c, "final_latent"), `${name} final_latent`);
    assertBitExact(o!, stored(c, "output_latent"), `${name} output_latent`);
    if (name === "sampling_i2v") {
      assert(bitEqualCount(fin!, o!) < fin!.length, "the overwrite changed row 0");
    }
    for (const s of seen) [s.img, s.timesteps].forEach((t) => t.dispose());
    fixed.forEach((t) => t.dispose());
    for (const t of [step1, out, latent]) t.dispose();
    // nothing but the returned latent survived the loop
    const afterRun = gpu().pool.stats().inUse;
    assert(afterRun <= before, `GPU memory in use grew from ${before} to ${afterRun} bytes`);
    for (
      const t of [noise, txtP!, txtN!, yP!, yN!, txt, yVec, condition.masks, condition.maskedRef]
    ) t.dispose();
    condition.cond.dispose();
    c.refs?.flat().forEach((t) => t.dispose());
  });
}

gpuTest("sampling: sample checks its inputs and bf16 model timesteps", async () => {
  gpu();
  const noise = tensor(randomArray(2 * 3 * 2 * 2 * 2, 5), [2, 3, 2, 2, 2]);
  const txt = tensor(randomArray(6 * 4 * 5, 6), [6, 4, 5]);
  const yVec = tensor(randomArray(6 * 7, 7), [6, 7]);
  const ts = getSchedule(3, 4, 2);
  const zero: VelocityModel = (inp) => copy(inp.img);
  await assertThrows(
    () => sample(zero, { noise, txt: yVec, yVec, timesteps: ts }),
    "3N",
  );
  await assertThrows(
    () => sample((inp) => copy(inp.txt), { noise, txt, yVec, timesteps: ts }),
    "the model returned",
  );
  const wrong = prepareCondition([1, 3, 2, 2, 2], "t2v");
  await assertThrows(
    () => sample(zero, { noise, txt, yVec, timesteps: ts, condition: wrong }),
    "prepareCondition(noise.shape",
  );
  const tSeen: Tensor[] = [];
  const probe: VelocityModel = (inp) => {
    tSeen.push(keep(copy(inp.timesteps)));
    return tidy(() => copy(inp.img));
  };
  const out = await sample(probe, { noise, txt, yVec, timesteps: ts, modelTimestep: "bf16" });
  assertEquals(out.shape, [2, 3, 2, 2, 2]);
  const tv = await readAll(tSeen);
  tv.forEach((v, i) => assertEquals(v, new Float32Array(6).fill(toBf16(ts[i]!)), `bf16 t ${i}`));
  assert(toBf16(ts[1]!) !== ts[1], "the bf16 timestep differs from the float32 one");
  tSeen.forEach((t) => t.dispose());
  // v = x for every branch: x_{i+1} = x_i + (t_{i+1} - t_i) x_i (text and image terms vanish)
  let want = await read(noise);
  for (let i = 0; i < 3; i++) {
    const dt = Math.fround(ts[i + 1]! - ts[i]!);
    want = want.map((v) => Math.fround(v + Math.fround(dt * v)));
  }
  assertBitExact(await read(out), want, "v = x loop");
  for (const t of [noise, txt, yVec, out, wrong.masks, wrong.maskedRef, wrong.cond]) t.dispose();
});
