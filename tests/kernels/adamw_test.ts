import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { fromData } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { permute, read, readAll } from "../../engine/ops/movement.ts";
import { mul, sub } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { AdamW, type AdamWOptions, EMA } from "../../engine/optim.ts";
import { keep, type Tensor, tidy } from "../../engine/tensor.ts";

import { RefAdamW, type RefOptions } from "../ref/optim.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const TOL = { atol: 1e-6, rtol: 1e-5 };

// ---------------------------------------------------------------- helpers

const SHAPES = [[1], [7], [33], [257], [3, 11]];

function makeParams(shapes: number[][], seed = 1): Tensor[] {
  return shapes.map((s, i) => parameter(`p${i}`, randomArray(numel(s), seed + i), s));
}

/** Gradients of step `k`: random, scaled so the global norm is about `scale`. */
function makeGrads(shapes: number[][], k: number, scale: number): Float32Array[] {
  const gs = shapes.map((s, i) => randomArray(numel(s), 100 * k + i, -1, 1));
  let sq = 0;
  for (const g of gs) for (const x of g) sq += x * x;
  const f = scale / Math.sqrt(sq);
  return gs.map((g) => g.map((x) => x * f));
}

/** Sets p.grad; the last parameter ([3, 11]) gets a transposed (strided) view as its gradient. */
function setGrads(ps: Tensor[], gs: Float32Array[]): void {
  ps.forEach((p, i) => {
    if (p.shape.length === 2) {
      const [r, c] = p.shape as [number, number];
      const t = new Float32Array(r * c);
      for (let a = 0; a < r; a++) for (let b = 0; b < c; b++) t[b * r + a] = gs[i]![a * c + b]!;
      p.grad = keep(permute(fromData(t, [c, r], "f32"), [1, 0]));
    } else p.grad = keep(fromData(gs[i]!, p.shape, "f32"));
  });
}

async function compare(label: string, opt: AdamW, ps: Tensor[], ref: RefAdamW): Promise<void> {
  const st = opt.stateDict();
  const ts = ps.flatMap((p) => [p, st[`${p.name}.exp_avg`]!, st[`${p.name}.exp_avg_sq`]!]);
  const vals = await readAll(ts);
  ps.forEach((p, k) => {
    const lab = `${label} ${p.name} ${JSON.stringify(p.shape)}`;
    assertClose(vals[3 * k]!, ref.p[k]!, { ...TOL, label: `${lab} param` });
    assertClose(vals[3 * k + 1]!, ref.m[k]!, { ...TOL, label: `${lab} exp_avg` });
    assertClose(vals[3 * k + 2]!, ref.v[k]!, { ...TOL, label: `${lab} exp_avg_sq` });
  });
  for (const t of Object.values(st)) t.dispose();
}

/** Runs `steps` steps of AdamW and the float64 reference side by side, comparing after each. */
async function runAgainstRef(
  label: string,
  opts: AdamWOptions & RefOptions,
  steps: number,
  gradScale: number,
): Promise<{ opt: AdamW; ps: Tensor[]; ref: RefAdamW }> {
  const ps = makeParams(SHAPES);
  const ref = new RefAdamW(
    ps.map((_, i) => Float64Array.from(randomArray(ps[i]!.size, 1 + i))),
    opts,
  );
  const opt = new AdamW(ps, opts);
  for (let k = 1; k <= steps; k++) {
    const gs = makeGrads(SHAPES, k, gradScale);
    setGrads(ps, gs);
    opt.step();
    opt.zeroGrad();
    ref.update(gs);
    await compare(`${label} step ${k}`, opt, ps, ref);
    if (opts.maxGradNorm !== undefined || opts.trackGradNorm) {
      const n = opt.lastGradNorm()!;
      assertClose(await read(n), [ref.lastNorm], { atol: 0, rtol: 1e-5, label: `${label} norm` });
      n.dispose();
    }
  }
  return { opt, ps, ref };
}

function disposeAll(opt: AdamW, ps: Tensor[]): void {
  opt.dispose();
  for (const p of ps) p.dispose();
}

const BASE: RefOptions = { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.05 };

// ---------------------------------------------------------------- tests

gpuTest("AdamW vs float64 reference: sizes 1, 7, 33, 257, [3, 11] (strided grad), wd", async () => {
  const { opt, ps } = await runAgainstRef("adamw", BASE, 4, 0.7);
  if (opt.stepCount !== 4) throw new Error(`stepCount ${opt.stepCount}`);
  disposeAll(opt, ps);
  // betas with 1 - b1 >= 0.5 take the other branch of the lerp; eps as small as 1e-15
  const r = await runAgainstRef(
    "adamw b1=0.3 eps=1e-15",
    { ...BASE, betas: [0.3, 0.98], eps: 1e-15, weightDecay: 0 },
    3,
    2,
  );
  disposeAll(r.opt, r.ps);
});

gpuTest("AdamW grad-norm clipping: norm above and below maxGradNorm", async () => {
  // global norm 5 > 1: gradients scaled by 1 / (5 + 1e-6)
  const hi = await runAgainstRef("clip 5>1", { ...BASE, maxGradNorm: 1 }, 3, 5);
  disposeAll(hi.opt, hi.ps);
  // global norm 0.5 < 1: no scaling; the result equals the unclipped reference
  const lo = await runAgainstRef("clip 0.5<1", { ...BASE, maxGradNorm: 1 }, 3, 0.5);
  const plain = new RefAdamW(
    lo.ps.map((_, i) => Float64Array.from(randomArray(lo.ps[i]!.size, 1 + i))),
    BASE,
  );
  for (let k = 1; k <= 3; k++) plain.update(makeGrads(SHAPES, k, 0.5));
  await compare("clip 0.5<1 vs unclipped", lo.opt, lo.ps, plain);
  disposeAll(lo.opt, lo.ps);
  // the clipped run must differ from an unclipped one (the test can fail)
  const un = new RefAdamW(
    hi.ps.map((_, i) => Float64Array.from(randomArray(SHAPES[i]!.reduce((a, b) => a * b), 1 + i))),
    BASE,
  );
  for (let k = 1; k <= 3; k++) un.update(makeGrads(SHAPES, k, 5));
  const diff = Math.abs(un.m[3]![0]! - hi.ref.m[3]![0]!);
  if (!(diff > 1e-3)) throw new Error(`clipping made no difference to exp_avg (${diff})`);
});

gpuTest("AdamW: trackGradNorm without clipping; lastGradNorm null otherwise", async () => {
  const t = await runAgainstRef("track", { ...BASE, trackGradNorm: true }, 2, 3);
  disposeAll(t.opt, t.ps);
  const ps = makeParams([[5]]);
  const opt = new AdamW(ps, BASE);
  if (opt.lastGradNorm() !== null) throw new Error("lastGradNorm before any step");
  setGrads(ps, [new Float32Array(5).fill(1)]);
  opt.step();
  if (opt.lastGradNorm() !== null) throw new Error("lastGradNorm without clip/track");
  disposeAll(opt, ps);
});

gpuTest("AdamW chunking: a small chunk size gives several chunks, same result", async () => {
  const r = await runAgainstRef("chunk64", { ...BASE, maxGradNorm: 1, chunkElements: 64 }, 3, 4);
  // slots: 64, 64, 64, 320 (alone), 64 -> 5 chunks
  if (r.opt.chunkCount !== 5) throw new Error(`expected 5 chunks, got ${r.opt.chunkCount}`);
  disposeAll(r.opt, r.ps);
  const r2 = await runAgainstRef("chunk200", { ...BASE, maxGradNorm: 1, chunkElements: 200 }, 2, 4);
  if (r2.opt.chunkCount !== 3) throw new Error(`expected 3 chunks, got ${r2.opt.chunkCount}`);
  disposeAll(r2.opt, r2.ps);
  const one = await runAgainstRef("one chunk", { ...BASE, maxGradNorm: 1 }, 1, 4);
  if (one.opt.chunkCount !== 1) throw new Error(`expected 1 chunk, got ${one.opt.chunkCount}`);
  disposeAll(one.opt, one.ps);
});

gpuTest("AdamW step records no read-back and one AdamW dispatch per chunk", async () => {
  const rt = gpu();
  const ps = makeParams(SHAPES);
  const opt = new AdamW(ps, { ...BASE, maxGradNorm: 1, chunkElements: 64 });
  setGrads(ps, makeGrads(SHAPES, 1, 3));
  await rt.sync();
  const before = { ...rt.counters };
  opt.step();
  const reads = rt.counters.readbacks - before.readbacks;
  const dispatches = rt.counters.dispatches - before.dispatches;
  // copy of the strided grad (1) + norm partials (5) + norm final (1) + AdamW (5)
  if (reads !== 0) throw new Error(`step read back ${reads} times`);
  if (dispatches !== 12) throw new Error(`step recorded ${dispatches} dispatches, expected 12`);
  await rt.sync();
  // a second optimizer at other sizes compiles nothing new
  const compiled = rt.counters.pipelinesCompiled;
  const qs = makeParams([[1000], [3]], 9);
  const opt2 = new AdamW(qs, { ...BASE, maxGradNorm: 0.1 });
  setGrads(qs, makeGrads([[1000], [3]], 1, 1));
  opt2.step();
  await read(qs[0]!);
  if (rt.counters.pipelinesCompiled !== compiled) {
    throw new Error(`new sizes compiled ${rt.counters.pipelinesCompiled - compiled} pipelines`);
  }
  disposeAll(opt, ps);
  disposeAll(opt2, qs);
});

gpuTest("AdamW: gradients from backward (lazy) and a missing gradient (zero)", async () => {
  const target = randomArray(33, 50);
  const ps = makeParams([[33], [7]]);
  const ref = new RefAdamW(
    [Float64Array.from(randomArray(33, 1)), Float64Array.from(randomArray(7, 2))],
    BASE,
  );
  const opt = new AdamW(ps, BASE);
  for (let k = 0; k < 3; k++) {
    // loss = sum((p0 - target)^2) -> grad 2 (p0 - target); p1 gets no gradient
    const g0 = ref.p[0]!.map((x, i) => 2 * (x - target[i]!));
    tidy(() => {
      const d = sub(ps[0]!, fromData(target, [33], "f32"));
      backward(sum(mul(d, d)));
      opt.step(); // realizes the pending gradient itself
    });
    opt.zeroGrad();
    ref.update([g0, new Float64Array(7)]);
  }
  await compare("backward", opt, ps, ref);
  disposeAll(opt, ps);
});

gpuTest("AdamW stateDict / loadStateDict round trip", async () => {
  const a = makeParams(SHAPES);
  const optA = new AdamW(a, { ...BASE, maxGradNorm: 1 });
  for (let k = 1; k <= 2; k++) {
    setGrads(a, makeGrads(SHAPES, k, 3));
    optA.step();
    optA.zeroGrad();
  }
  const state = optA.stateDict();
  const values = await readAll(a);
  const b = SHAPES.map((s, i) => parameter(`p${i}`, values[i]!, s));
  const optB = new AdamW(b, { ...BASE, maxGradNorm: 1 });
  await optB.loadStateDict(state);
  if (optB.stepCount !== 2) throw new Error(`loaded step ${optB.stepCount}`);
  for (const [ps, opt] of [[a, optA], [b, optB]] as const) {
    setGrads(ps, makeGrads(SHAPES, 3, 3));
    opt.step();
  }
  const [va, vb] = [await readAll(a), await readAll(b)];
  va.forEach((x, i) => assertClose(vb[i]!, x, { atol: 0, rtol: 0, label: `resumed p${i}` }));
  await assertThrows(
    () => optB.loadStateDict({ step: state.step! }),
    "loadStateDict",
    'missing "p0.exp_avg"',
  );
  for (const t of Object.values(state)) t.dispose();
  disposeAll(optA, a);
  disposeAll(optB, b);
});

gpuTest("EMA: standalone (chunked) and from an optimizer, vs float64 reference", async () => {
  const decay = 0.9;
  // standalone: params change between updates; 3 chunks of 64
  const ps = makeParams([[7], [33], [5]]);
  const ema = new EMA(ps, { decay, chunkElements: 64 });
  const ref = [randomArray(7, 1), randomArray(33, 2), randomArray(5, 3)].map((x) =>
    Float64Array.from(x)
  );
  for (let k = 0; k < 3; k++) {
    const next = [randomArray(7, 10 + k), randomArray(33, 20 + k), randomArray(5, 30 + k)];
    ps.forEach((p, i) => gpu().write(p.storage!.buffer, 0, next[i]!));
    ema.update();
    ref.forEach((r, i) => r.forEach((x, j) => r[j] = decay * x + (1 - decay) * next[i]![j]!));
  }
  const st = ema.stateDict();
  const got = await readAll(ps.map((p) => st[p.name!]!));
  got.forEach((g, i) => assertClose(g, ref[i]!, { ...TOL, label: `ema p${i}` }));
  // copyToParams writes the averages into the parameters
  ema.copyToParams();
  const pv = await readAll(ps);
  pv.forEach((g, i) => assertClose(g, ref[i]!, { ...TOL, label: `copyToParams p${i}` }));
  // loadStateDict restores
  ema.loadStateDict(
    Object.fromEntries(
      ps.map((p, i) => [p.name!, fromData(new Float32Array(p.size).fill(i), p.shape, "f32")]),
    ),
  );
  const back = await readAll(Object.values(ema.stateDict()));
  back.forEach((g, i) =>
    assertClose(g, new Float32Array(g.length).fill(i), { label: `load p${i}` })
  );
  for (const t of Object.values(st)) t.dispose();
  ema.dispose();

  // from an optimizer: reads the optimizer's parameter arena after each step
  const qs = makeParams(SHAPES);
  const opt = new AdamW(qs, BASE);
  const ref2 = new RefAdamW(
    qs.map((_, i) => Float64Array.from(randomArray(qs[i]!.size, 1 + i))),
    BASE,
  );
  const avg = ref2.p.map((p) => Float64Array.from(p));
  const ema2 = new EMA(opt, { decay: 0.5 });
  for (let k = 1; k <= 3; k++) {
    const gs = makeGrads(SHAPES, k, 1);
    setGrads(qs, gs);
    opt.step();
    opt.zeroGrad();
    ema2.update();
    ref2.update(gs);
    avg.forEach((a, i) => a.forEach((x, j) => a[j] = 0.5 * x + 0.5 * ref2.p[i]![j]!));
  }
  const st2 = ema2.stateDict();
  const got2 = await readAll(qs.map((p) => st2[p.name!]!));
  got2.forEach((g, i) => assertClose(g, avg[i]!, { ...TOL, label: `ema(opt) p${i}` }));
  ema2.dispose();
  disposeAll(opt, qs);
  for (const p of ps) p.dispose();
});

gpuTest("AdamW: errors", async () => {
  const p = parameter("w", new Float32Array(6), [2, 3]);
  const opt = new AdamW([p], BASE);
  p.grad = keep(fromData(new Float32Array(3), [3], "f32"));
  await assertThrows(() => opt.step(), "AdamW.step", "[3]", "[2, 3]");
  await assertThrows(() => new AdamW([p, p]), "listed twice");
  await assertThrows(() => new AdamW([permute(p, [1, 0])]), "is a view");
  await assertThrows(() => new AdamW([]), "no parameters");
  opt.dispose();
  await assertThrows(() => opt.step(), "disposed");
  p.dispose();
});

gpuTest("AdamW moves the parameters into its arena and updates them in place", async () => {
  const a = parameter("arena.a", new Float32Array([1, 2, 3]), [3]);
  const b = parameter("arena.b", new Float32Array([4, 5]), [2]);
  const oldA = a.storage;
  const opt = new AdamW([a, b], { lr: 0.1, weightDecay: 0 });
  if (a.storage === oldA || a.storage !== b.storage) {
    throw new Error("parameters were not re-pointed into one arena chunk");
  }
  if (a.offset !== 0 || b.offset !== 64) throw new Error(`offsets ${a.offset}, ${b.offset}`);
  a.grad = keep(fromData(new Float32Array([1, 1, 1]), [3], "f32"));
  b.grad = keep(fromData(new Float32Array([-1, -1]), [2], "f32"));
  opt.step();
  // first Adam step moves each element by lr against the sign of its gradient
  const [va, vb] = await readAll([a, b]);
  if (va!.some((v, i) => Math.abs(v - ([1, 2, 3][i]! - 0.1)) > 1e-5)) throw new Error(`a = ${va}`);
  if (vb!.some((v, i) => Math.abs(v - ([4, 5][i]! + 0.1)) > 1e-5)) throw new Error(`b = ${vb}`);
  opt.dispose();
  // the arena chunk lives on with the parameters
  const again = await readAll([a]);
  if (Math.abs(again[0]![0]! - 0.9) > 1e-5) throw new Error("parameter lost with the optimizer");
  a.dispose();
  b.dispose();
});
