/**
 * Data-movement ops on tensors over one storage binding: concat / stack / split, gather and its
 * scatter-add backward, cast, pad, the optimizer arenas (a parameter spanning several windows),
 * recompute's copies, uploads and read-backs. Each runs under a lowered binding limit (64 KiB, so
 * the ~200 KB tensors here need 3+ windows) against the float64 reference, then unwindowed; the
 * two must agree and the windowed run must have split its dispatches.
 */
import { gpu, gpuTest, withBindingLimit } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { fromData, realize, viewOf } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { pad, permute, read, readAll, slice } from "../../engine/ops/movement.ts";
import { cast, concat, denseCopy, gather, split, stack } from "../../engine/ops/concat.ts";
import { embedding, timestepEmbedding } from "../../engine/ops/embedding.ts";
import { normalCpu, randNormal, randUniform, uniformCpu } from "../../engine/ops/random.ts";
import { pixelShuffle3d, pixelUnshuffle3d } from "../../engine/ops/shuffle.ts";
import { recompute } from "../../engine/recompute.ts";
import { AdamW, type AdamWOptions, EMA } from "../../engine/optim.ts";
import { keep, noGrad, type Tensor, tidy } from "../../engine/tensor.ts";
import { bf16ToF32, DTYPE_BYTES, f16ToF32, f32ToBf16, f32ToF16 } from "../../engine/dtype.ts";
import {
  concatRef,
  gatherRef,
  numelRef,
  permuteRef,
  scatterAddRef,
  sliceRef,
  timestepEmbeddingRef,
} from "../ref/movement.ts";
import { gatherView, padRef } from "../ref/elementwise.ts";
import { applyMap, applyMapVjp, pixelShuffle3dMap, pixelUnshuffle3dMap } from "../ref/shuffle.ts";
import { RefAdamW, type RefOptions } from "../ref/optim.ts";

/** The lowered binding limit: 16384 f32 per window. */
const LIMIT = 65536;
const EXACT = { atol: 0, rtol: 0 };

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

/** The raw bytes of a dense tensor, exactly as stored (no widening). */
async function readRaw(t: Tensor): Promise<ArrayBuffer> {
  assert(t.contiguous, "readRaw needs a dense tensor");
  realize([t]);
  const v = viewOf(t);
  const b = DTYPE_BYTES[t.dtype];
  return await gpu().read(v.buffer, v.offset * b, t.size * b);
}

/** Reads a tensor (views densified by `denseCopy`, an op of this family, not an elementwise copy). */
async function readDense(t: Tensor): Promise<Float32Array> {
  return await read(denseCopy(t));
}

/** Runs `fn` with the device's own binding limit (also under `KINO_MAX_BINDING`), then restores. */
async function unlimited<T>(fn: () => T | Promise<T>): Promise<T> {
  const before = gpu().setBindingLimit(null);
  try {
    return await fn();
  } finally {
    gpu().setBindingLimit(before);
  }
}

/**
 * Runs `fn` under the lowered limit and then unwindowed (the device's limit); asserts the windowed run dispatched more
 * (it split) and that both results agree within `tol` (default: bit-identical). Returns the
 * windowed results.
 */
async function both(
  label: string,
  fn: () => Promise<Float32Array[]>,
  tol = 0,
): Promise<Float32Array[]> {
  const rt = gpu();
  let d0 = rt.counters.dispatches;
  const win = await withBindingLimit(LIMIT, fn);
  const dWin = rt.counters.dispatches - d0;
  d0 = rt.counters.dispatches;
  const plain = await unlimited(fn);
  const dPlain = rt.counters.dispatches - d0;
  assert(
    dWin > dPlain,
    `${label}: the windowed run used ${dWin} dispatches, the plain one ${dPlain} (no split)`,
  );
  win.forEach((w, i) =>
    assertClose(w, plain[i]!, { atol: tol, rtol: 0, label: `${label} #${i}: windowed vs plain` })
  );
  return win;
}

// ---------------------------------------------------------------- uploads and read-backs

gpuTest("windowed: uploads and read-backs of tensors over the binding limit", async () => {
  const v = randomArray(60001, 1);
  const iv = Int32Array.from({ length: 40000 }, (_, i) => i * 7919 - 1e8);
  const hv = f32ToBf16(randomArray(90001, 2, -50, 50));
  await withBindingLimit(LIMIT, async () => {
    const rt = gpu();
    assert(60001 * 4 > 3 * rt.maxBinding, "the f32 tensor needs >= 3 windows");
    const x = fromData(v, [60001], "f32");
    assertClose(await read(x), v, { ...EXACT, label: "f32 round trip" });
    const [a, b] = await readAll([x, fromData(v.subarray(5, 50005), [50000], "f32")]);
    assertClose(a!, v, { ...EXACT, label: "readAll #0" });
    assertClose(b!, v.subarray(5, 50005), { ...EXACT, label: "readAll #1" });
    const i = fromData(iv, [40000], "i32");
    assert(new Int32Array(await readRaw(i)).join() === iv.join(), "i32 round trip");
    const h = fromData(hv, [90001], "bf16");
    assert(new Uint16Array(await readRaw(h)).join() === hv.join(), "bf16 round trip");
    // a write and a read at a byte offset beyond the binding limit
    const buf = viewOf(x).buffer;
    rt.write(buf, 200000, new Float32Array([1.5, -2.5, 3.5]));
    const back = new Float32Array(await rt.read(buf, 199996, 20));
    assertClose(back, [v[49999]!, 1.5, -2.5, 3.5, v[50003]!], { ...EXACT, label: "offset io" });
  });
});

// ---------------------------------------------------------------- concat / stack / split

gpuTest("windowed concat: dense (vec4), transposed, sliced and half inputs", async () => {
  const a = randomArray(24 * 1024, 10);
  const b = randomArray(28 * 1024, 11);
  const c = randomArray(613 * 40, 12); // transposed to [40, 613]
  const d = randomArray(45 * 760, 13); // sliced to [40, 700] at an odd offset
  const hb = f32ToBf16(randomArray(80 * 650, 14, -8, 8));
  const hf = f32ToF16(randomArray(80 * 651, 15, -8, 8));
  const ii = Int32Array.from({ length: 26000 }, (_, i) => (i * 2654435761) | 0);
  const [y0, y1, y2, y3] = await both("concat", async () => {
    const dense = concat([fromData(a, [24, 1024], "f32"), fromData(b, [28, 1024], "f32")], 0);
    const tr = permute(fromData(c, [613, 40], "f32"), [1, 0]);
    const sl = slice(fromData(d, [45, 760], "f32"), [3, 17], [43, 717]);
    const mixed = concat([tr, sl, tr], 1);
    const half = concat([
      fromData(hb, [80, 650], "bf16"),
      slice(fromData(hf, [80, 651], "f16"), [0, 1], [80, 651]),
    ], 1);
    const ints = concat([fromData(ii, [2, 13000], "i32"), fromData(ii, [2, 13000], "i32")], 1);
    const out = await readAll([dense, mixed, half]);
    return [...out, new Float32Array(await readRaw(ints))];
  });
  assertClose(y0!, [...a, ...b], { ...EXACT, label: "dense concat" });
  const trRef = permuteRef(c, [613, 40], [1, 0]);
  const slRef = sliceRef(d, [45, 760], [3, 17], [43, 717]);
  const ref = concatRef([trRef, slRef, trRef], 1);
  assertClose(y1!, ref.data, { ...EXACT, shape: ref.shape, label: "strided concat" });
  const hRef = concatRef([
    { data: bf16ToF32(hb), shape: [80, 650] },
    sliceRef(f16ToF32(hf), [80, 651], [0, 1], [80, 651]),
  ], 1);
  assertClose(y2!, hRef.data, { ...EXACT, shape: hRef.shape, label: "half concat" });
  const iRef: number[] = [];
  for (let r = 0; r < 2; r++) {
    for (let k = 0; k < 2; k++) iRef.push(...ii.subarray(r * 13000, (r + 1) * 13000));
  }
  assert(new Int32Array(y3!.buffer).join() === iRef.join(), "i32 concat keeps its bits");
});

gpuTest("windowed stack/split/concat backward: views of the gradient, pad", async () => {
  const a = randomArray(200 * 131, 20);
  const b = randomArray(200 * 131, 21);
  const g = randomArray(200 * 2 * 131, 22);
  const [s, ga, gb, gs] = await both("stack + backward", async () => {
    const pa = parameter("a", a, [200, 131]);
    const pb = parameter("b", b, [200, 131]);
    let y!: Tensor;
    tidy(() => {
      y = keep(stack([pa, pb], 1));
      backward(y, fromData(g, [200, 2, 131], "f32"));
    });
    // the gradient of a split part is a pad of it (slice backward)
    const px = parameter("x", g, [400, 131]);
    tidy(() => {
      const part = split(px, [150, 250], 0)[1]!;
      backward(part, fromData(g.subarray(0, 250 * 131), [250, 131], "f32"));
    });
    const out = [await read(y), await readDense(pa.grad!), await readDense(pb.grad!)];
    out.push(await read(px.grad!));
    for (const t of [y, pa, pb, px]) t.dispose();
    return out;
  });
  const ref = concatRef([{ data: a, shape: [200, 1, 131] }, { data: b, shape: [200, 1, 131] }], 1);
  assertClose(s!, ref.data, { ...EXACT, shape: ref.shape, label: "stack" });
  const g3 = { data: g, shape: [200, 2, 131] };
  assertClose(ga!, sliceRef(g3.data, g3.shape, [0, 0, 0], [200, 1, 131]).data, {
    ...EXACT,
    label: "stack grad a",
  });
  assertClose(gb!, sliceRef(g3.data, g3.shape, [0, 1, 0], [200, 2, 131]).data, {
    ...EXACT,
    label: "stack grad b",
  });
  const want = new Float32Array(400 * 131);
  want.set(g.subarray(0, 250 * 131), 150 * 131);
  assertClose(gs!, want, { ...EXACT, label: "split grad (pad)" });
});

// ---------------------------------------------------------------- pad

gpuTest("windowed pad: dense, transposed, offset views and the value", async () => {
  const v = randomArray(200 * 250, 30);
  const cases: [number[], number[], number, [number, number][], number][] = [
    // [view shape, strides, offset, pads, value]
    [[200, 250], [250, 1], 0, [[3, 2], [5, 1]], 1.5],
    [[250, 200], [1, 250], 0, [[1, 0], [2, 3]], 0], // transposed
    [[190, 239], [250, 1], 2505, [[0, 7], [0, 0]], -2], // sliced, odd offset
    [[50000], [1], 0, [[100, 1]], 0.25], // 1-D
  ];
  const got = await both("pad", async () => {
    const x = fromData(v, [200, 250], "f32");
    const views = [
      x,
      permute(x, [1, 0]),
      slice(x, [10, 5], [200, 244]),
      slice(fromData(v, [50000], "f32"), [0], [50000]),
    ];
    return await readAll(cases.map(([, , , p, val], k) => pad(views[k]!, p, val)));
  });
  cases.forEach(([shape, strides, off, p, val], k) => {
    const w = padRef(gatherView(v, shape, strides, off), shape, p, val);
    assertClose(got[k]!, w.data, { ...EXACT, shape: w.shape, label: `pad #${k}` });
  });
});

// ---------------------------------------------------------------- gather / scatter-add

gpuTest("windowed gather: rows, masked source passes, index windows, halves", async () => {
  const tab = randomArray(600 * 96, 40);
  const idx0 = Int32Array.from({ length: 500 }, (_, i) => (i * 7919 + 3) % 600);
  const x1 = randomArray(3 * 4001 * 5, 41); // axis 1: one slab of 20005 f32 is over a window
  const idx1 = [4000, 0, 2001, 17, 4000, 3999, 1];
  const hv = f32ToBf16(randomArray(700 * 75, 42, -4, 4));
  const idx2 = Uint32Array.from({ length: 300 }, (_, i) => (i * 31) % 700);
  idx2[5] = 0xffffffff; // clamps to 699
  const x3 = randomArray(50 * 3, 43);
  const idx3 = Int32Array.from({ length: 20000 }, (_, i) => (i * 13) % 50);
  const [y0, y1, y2, y3, y4] = await both("gather", async () => {
    const t = fromData(tab, [600, 96], "f32");
    return await readAll([
      gather(t, fromData(idx0, [20, 25], "i32"), 0),
      gather(fromData(x1, [3, 4001, 5], "f32"), idx1, 1),
      gather(fromData(hv, [700, 75], "bf16"), fromData(idx2, [300], "u32"), 0),
      gather(fromData(x3, [50, 3], "f32"), fromData(idx3, [20000], "i32"), 0),
      embedding(t, fromData(idx0, [500], "i32")),
    ]);
  });
  assertClose(y0!, gatherRef(tab, [600, 96], idx0, 0), { ...EXACT, label: "table rows" });
  assertClose(y1!, gatherRef(x1, [3, 4001, 5], idx1, 1), { ...EXACT, label: "axis 1" });
  assertClose(y2!, gatherRef(bf16ToF32(hv), [700, 75], idx2.map((i) => Math.min(i, 699)), 0), {
    ...EXACT,
    label: "bf16 table, clamped u32",
  });
  assertClose(y3!, gatherRef(x3, [50, 3], idx3, 0), { ...EXACT, label: "index windows" });
  assertClose(y4!, y0!, { ...EXACT, label: "embedding" });
});

gpuTest("windowed gather backward: scatter-add by output rows and index passes", async () => {
  const cases: { shape: number[]; axis: number; idx: Int32Array }[] = [
    // output [600, 96] in windows; vec4
    { shape: [600, 96], axis: 0, idx: Int32Array.from({ length: 300 }, (_, i) => (i * 37) % 600) },
    // a slab of the output over a window (axis 1), scalar path
    { shape: [3, 4001, 5], axis: 1, idx: Int32Array.from([4000, 0, 2001, 17, 4000, 3999, 1]) },
    // the gradient slab ([9000, 4] per o) over a window: passes over index ranges
    {
      shape: [2, 3000, 4],
      axis: 1,
      idx: Int32Array.from({ length: 9000 }, (_, i) => (i * 7) % 3000),
    },
  ];
  const gs = cases.map((c, k) => {
    const outShape = [...c.shape.slice(0, c.axis), c.idx.length, ...c.shape.slice(c.axis + 1)];
    return randomArray(numelRef(outShape), 50 + k);
  });
  const got = await both("scatter-add", async () => {
    const out: Float32Array[] = [];
    for (const [k, c] of cases.entries()) {
      const x = parameter("x", randomArray(numelRef(c.shape), 60 + k), c.shape);
      const idx = fromData(c.idx, [c.idx.length], "i32");
      tidy(() => {
        const y = gather(x, idx, c.axis);
        backward(y, fromData(gs[k]!, y.shape, "f32"));
      });
      out.push(await read(x.grad!));
      x.dispose();
    }
    return out;
  }, 1e-6);
  cases.forEach((c, k) =>
    assertClose(got[k]!, scatterAddRef(gs[k]!, c.shape, c.idx, c.axis), {
      atol: 1e-6,
      rtol: 1e-6,
      shape: c.shape,
      label: `scatter-add [${c.shape}] axis ${c.axis}`,
    })
  );
});

gpuTest("windowed gather: a row over one binding is refused before any GPU work", async () => {
  await withBindingLimit(LIMIT, async () => {
    const x = fromData(new Float32Array(3 * 20000), [3, 20000], "f32");
    await read(x);
    const rt = gpu();
    const before = rt.counters.dispatches;
    await assertThrows(() => read(gather(x, [2, 0], 0)), "gather", "[3, 20000]", "240000 bytes");
    await assertThrows(() => read(gather(x, [2, 0], 0)), `limit ${LIMIT} bytes`);
    assert(rt.counters.dispatches === before, "dispatches were recorded before the error");
  });
});

// ---------------------------------------------------------------- cast

gpuTest("windowed cast: f32 -> bf16/f16 bits, odd length and offset, gradient", async () => {
  const v = randomArray(60003, 70, -70000, 70000);
  const got = await both("cast", async () => {
    const x = fromData(v, [60003], "f32");
    const off = slice(x, [1], [60003]); // dense at element offset 1
    const out: Float32Array[] = [];
    for (const t of [cast(x, "bf16"), cast(x, "f16"), cast(off, "bf16")]) {
      out.push(new Float32Array(Uint16Array.from(new Uint16Array(await readRaw(t)))));
    }
    const p = parameter("p", v.subarray(0, 50001), [50001]);
    tidy(() => backward(cast(p, "f16"), fromData(v.subarray(2, 50003), [50001], "f32")));
    out.push(await read(p.grad!));
    p.dispose();
    return out;
  });
  assertClose(got[0]!, f32ToBf16(v), { ...EXACT, label: "bf16 bits" });
  assertClose(got[1]!, f32ToF16(v), { ...EXACT, label: "f16 bits" });
  assertClose(got[2]!, f32ToBf16(v.subarray(1)), { ...EXACT, label: "bf16 bits at offset 1" });
  assertClose(got[3]!, v.subarray(2, 50003), { ...EXACT, label: "cast gradient" });
});

// ---------------------------------------------------------------- recompute

gpuTest("windowed recompute: a block of data movers, its output copied out", async () => {
  const v = randomArray(200 * 131, 80);
  const idx = [199, 0, 5, 5, 100];
  const got = await both("recompute", async () => {
    const x = fromData(v, [200, 131], "f32");
    const y = noGrad(() =>
      recompute((t) => [concat([t, pad(t, [[0, 0], [2, 1]])], 1), gather(t, idx, 0)], [x])
    ) as Tensor[];
    return await readAll(y);
  });
  const ref = concatRef([
    { data: v, shape: [200, 131] },
    padRef(v, [200, 131], [[0, 0], [2, 1]]),
  ], 1);
  assertClose(got[0]!, ref.data, { ...EXACT, shape: ref.shape, label: "recompute concat" });
  assertClose(got[1]!, gatherRef(v, [200, 131], idx, 0), { ...EXACT, label: "recompute gather" });
});

// ---------------------------------------------------------------- composed ops

gpuTest(
  "windowed composed ops: random tensors, timestep embedding, 3-D pixel shuffles",
  async () => {
    // these dispatch no kernel of their own: the fused elementwise chains and copies they are made
    // of split; random values must keep their global element index
    const t = randomArray(100, 110, 0, 1);
    const s3 = [1, 16, 4, 30, 32];
    const x = randomArray(numelRef(s3), 111);
    const gy = randomArray(numelRef(s3), 112);
    const got = await both("composed", async () => {
      const p = parameter("x", x, s3);
      const gys = fromData(gy, [1, 2, 8, 60, 64], "f32");
      const up = pixelUnshuffle3d(fromData(x, [1, 2, 8, 60, 64], "f32"));
      let y!: Tensor;
      tidy(() => {
        y = keep(pixelShuffle3d(p));
        backward(y, gys);
      });
      const out = await readAll([
        randUniform([60001], { seed: 7, offset: 3 }),
        randNormal([60001], { seed: 8n, offset: 1, mean: 1, std: 2 }),
        timestepEmbedding(fromData(t, [100], "f32"), 601),
        y,
        p.grad!,
        up,
      ]);
      y.dispose();
      p.dispose();
      return out;
    });
    assertClose(got[0]!, uniformCpu(60001, { seed: 7, offset: 3 }), { ...EXACT, label: "uniform" });
    assertClose(got[1]!, normalCpu(60001, { seed: 8n, offset: 1, mean: 1, std: 2 }), {
      atol: 2e-5,
      rtol: 0,
      label: "normal",
    });
    assertClose(got[2]!, timestepEmbeddingRef(t, 601), { atol: 1e-4, rtol: 1e-4, label: "t-emb" });
    const map = pixelShuffle3dMap(s3);
    assertClose(got[3]!, applyMap(map, x), { ...EXACT, label: "pixelShuffle3d" });
    assertClose(got[4]!, applyMapVjp(map, x.length, gy), { ...EXACT, label: "its gradient" });
    const unmap = pixelUnshuffle3dMap([1, 2, 8, 60, 64]);
    assertClose(got[5]!, applyMap(unmap, x), { ...EXACT, label: "pixelUnshuffle3d" });
  },
);

// ---------------------------------------------------------------- optimizer

/** One parameter of 60000 f32 (240 KB: 4 windows of 64 KiB) between two small ones. */
const OPT_SHAPES = [[7], [60000], [3, 11]];
const OPT_TOL = { atol: 1e-6, rtol: 1e-5 };

gpuTest("windowed AdamW + EMA: a parameter over the binding limit, vs float64", async () => {
  const base: RefOptions = { lr: 1e-2, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.05 };
  for (const opts of [base, { ...base, maxGradNorm: 1 }] as (AdamWOptions & RefOptions)[]) {
    const label = opts.maxGradNorm ? "clipped" : "plain";
    const init = OPT_SHAPES.map((s, i) => randomArray(numelRef(s), 90 + i));
    const grads = (k: number) =>
      OPT_SHAPES.map((s, i) => randomArray(numelRef(s), 100 * k + i, -1, 1).map((x) => x * 0.02));
    const ref = new RefAdamW(init.map((x) => Float64Array.from(x)), opts);
    const avg = init.map((x) => Float64Array.from(x));
    for (let k = 1; k <= 3; k++) {
      ref.update(grads(k));
      avg.forEach((a, i) => a.forEach((x, j) => a[j] = 0.5 * x + 0.5 * ref.p[i]![j]!));
    }
    const got = await both(`AdamW ${label}`, async () => {
      const ps = OPT_SHAPES.map((s, i) => parameter(`p${i}`, init[i]!, s));
      const opt = new AdamW(ps, opts);
      const ema = new EMA(opt, { decay: 0.5 });
      const own = new EMA(ps, { decay: 0.5 }); // its own arena, gathered before each update
      for (let k = 1; k <= 3; k++) {
        const gs = grads(k);
        ps.forEach((p, i) => p.grad = keep(fromData(gs[i]!, p.shape, "f32")));
        opt.step();
        opt.zeroGrad();
        ema.update();
        own.update();
      }
      const st = opt.stateDict();
      const es = ema.stateDict();
      const os = own.stateDict();
      const ts = ps.flatMap((p) => [
        p,
        st[`${p.name}.exp_avg`]!,
        st[`${p.name}.exp_avg_sq`]!,
        es[p.name!]!,
        os[p.name!]!,
      ]);
      const vals = await readAll(ts);
      for (const t of [...Object.values(st), ...Object.values(es), ...Object.values(os)]) {
        t.dispose();
      }
      ema.dispose();
      own.dispose();
      opt.dispose();
      for (const p of ps) p.dispose();
      return vals;
    }, 1e-6);
    OPT_SHAPES.forEach((s, k) => {
      const lab = `${label} p${k} [${s}]`;
      assertClose(got[5 * k]!, ref.p[k]!, { ...OPT_TOL, label: `${lab} param` });
      assertClose(got[5 * k + 1]!, ref.m[k]!, { ...OPT_TOL, label: `${lab} exp_avg` });
      assertClose(got[5 * k + 2]!, ref.v[k]!, { ...OPT_TOL, label: `${lab} exp_avg_sq` });
      assertClose(got[5 * k + 3]!, avg[k]!, { ...OPT_TOL, label: `${lab} EMA(opt)` });
      assertClose(got[5 * k + 4]!, avg[k]!, { ...OPT_TOL, label: `${lab} EMA(params)` });
    });
  }
});

gpuTest(
  "windowed AdamW: the binding limit lowered after construction; norm in windows",
  () =>
    unlimited(async () => {
      // one chunk of 300096 f32, built under the device's limit; step 2 runs under a 4 KiB limit:
      // 294 windows of 1024 f32, whose 1173 partial sums of squares need two windows themselves
      const shapes = [[300000], [7]];
      const init = shapes.map((s, i) => randomArray(s[0]!, 200 + i));
      const opts = {
        lr: 1e-2,
        betas: [0.9, 0.999] as [number, number],
        eps: 1e-8,
        weightDecay: 0.1,
      };
      const ref = new RefAdamW(init.map((x) => Float64Array.from(x)), {
        ...opts,
        maxGradNorm: 0.5,
      });
      const ps = shapes.map((s, i) => parameter(`q${i}`, init[i]!, s));
      const opt = new AdamW(ps, { ...opts, maxGradNorm: 0.5 });
      assert(opt.chunkCount === 1, `${opt.chunkCount} chunks`);
      const rt = gpu();
      for (let k = 1; k <= 3; k++) {
        const gs = shapes.map((s, i) => randomArray(s[0]!, 300 * k + i, -0.01, 0.01));
        ps.forEach((p, i) => p.grad = keep(fromData(gs[i]!, p.shape, "f32")));
        const before = rt.counters.dispatches;
        if (k === 2) await withBindingLimit(4096, () => opt.step());
        else opt.step();
        const used = rt.counters.dispatches - before;
        const windows = k === 2 ? Math.ceil(300096 / 1024) : 1;
        // partial sums and AdamW per window, then the final sum (in 2 windows at step 2)
        const want = 2 * windows + (k === 2 ? 2 : 1);
        assert(used === want, `step ${k}: ${used} dispatches, expected ${want}`);
        opt.zeroGrad();
        ref.update(gs);
        const n = opt.lastGradNorm()!;
        const norm = Math.sqrt(gs.reduce((a, g) => a + g.reduce((b, x) => b + x * x, 0), 0));
        assertClose(await read(n), [norm], { atol: 0, rtol: 1e-5, label: `step ${k} norm` });
        n.dispose();
      }
      const vals = await readAll(ps);
      vals.forEach((v, i) => assertClose(v, ref.p[i]!, { ...OPT_TOL, label: `q${i}` }));
      opt.dispose();
      for (const p of ps) p.dispose();
    }),
);
