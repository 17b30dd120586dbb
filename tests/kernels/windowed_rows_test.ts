/**
 * Norms, softmax and reductions on tensors larger than one storage binding: the ops split their
 * dispatches into blocks of rows (whole `[n, inner]` slabs, or columns of one slab), and the
 * reductions also into accumulated segments of the reduced axis, each binding only its windows
 * (engine/window.ts). Every case runs under a 16 KiB binding limit (4096 f32 per binding, so each
 * tensor needs at least 3 windows) against the float64 reference, and once more at the device's
 * limit: both runs must agree (norm and softmax outputs to the bit; sums within 1e-6 relative, as
 * the segments change the summation order), the op's own kernels must have split (more of their
 * dispatches under the low limit) and must have run once per op at the device's limit.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { fromData, realize } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { type Tensor, tidy } from "../../engine/tensor.ts";
import { permute, readAll, reshape, slice } from "../../engine/ops/movement.ts";
import { groupNorm, layerNorm, rmsNorm, rmsNormChannels } from "../../engine/ops/norm.ts";
import { logSoftmax, softmax } from "../../engine/ops/softmax.ts";
import { max, mean, min, sum, variance } from "../../engine/ops/reduce.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../engine/dtype.ts";
import { gpu, gpuTest, withBindingLimit } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import {
  channelsGeom,
  groupGeom,
  lastAxisGeom,
  type NormGeom,
  normRef,
  normVjpRef,
  softmaxRef,
  softmaxVjpRef,
} from "../ref/norm.ts";
import { reduceRef, type RefReduce } from "../ref/elementwise.ts";

const LIMIT = 16384;
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

interface Outcome {
  v: Float32Array[];
  /** Dispatches per kernel-name prefix (the part before the first `_`). */
  counts: Map<string, number>;
}

/** Runs `make` (which records and realizes its results), counting dispatches by kernel family. */
async function measure(make: () => Tensor[]): Promise<Outcome> {
  const rt = gpu();
  const counts = new Map<string, number>();
  const orig = rt.dispatch;
  rt.dispatch = function (spec, ...rest) {
    const fam = spec.name.split("_")[0]!;
    counts.set(fam, (counts.get(fam) ?? 0) + 1);
    return orig.call(this, spec, ...rest);
  };
  let ts: Tensor[];
  try {
    ts = make();
    realize(ts);
  } finally {
    rt.dispatch = orig;
  }
  const v = await readAll(ts);
  for (const t of ts) t.dispose();
  return { v, counts };
}

interface Expect {
  label: string;
  /** float64 references, one per result. */
  refs: ArrayLike<number>[];
  atol: number;
  rtol: number;
  /**
   * Kernel families (`norm`, `softmax`, `reduce`) that must split under the low limit, each with
   * its number of dispatches at the device's limit (0: not checked).
   */
  split: Record<string, number>;
  /** Per result (or for all): windowed and whole bit-identical, else within 1e-6 relative. */
  exact: boolean | boolean[];
}

/** Runs `fn` at the device's own binding limit (also under `KINO_MAX_BINDING`). */
async function atDeviceLimit<T>(fn: () => Promise<T>): Promise<T> {
  const before = gpu().setBindingLimit(null);
  try {
    return await fn();
  } finally {
    gpu().setBindingLimit(before);
  }
}

/** The whole and the windowed run of `make` both match the references and each other. */
async function check(make: () => Tensor[], e: Expect): Promise<void> {
  const whole = await atDeviceLimit(() => measure(make));
  const win = await withBindingLimit(LIMIT, () => measure(make));
  e.refs.forEach((ref, k) => {
    const tol = { atol: e.atol, rtol: e.rtol };
    assertClose(whole.v[k]!, ref, { ...tol, label: `${e.label} #${k} (whole)` });
    assertClose(win.v[k]!, ref, { ...tol, label: `${e.label} #${k} (windowed)` });
    if (Array.isArray(e.exact) ? e.exact[k] : e.exact) {
      assertEquals(win.v[k], whole.v[k], `${e.label} #${k}: windowed != whole`);
    } else {
      assertClose(win.v[k]!, whole.v[k]!, {
        atol: 1e-6,
        rtol: 1e-6,
        label: `${e.label} #${k}: windowed vs whole`,
      });
    }
  });
  for (const [fam, once] of Object.entries(e.split)) {
    const w = win.counts.get(fam) ?? 0, h = whole.counts.get(fam) ?? 0;
    assert(h >= 1 && w >= 3 && w > h, `${e.label}: ${w} ${fam} dispatches windowed vs ${h}`);
    assert(!once || h === once, `${e.label}: ${h} ${fam} dispatches at the device limit`);
  }
}

/** dL/d(inputs) of `op` for the explicit dL/dy `gy`, through parameters made for each run. */
function grads(
  op: (ps: Tensor[]) => Tensor,
  ins: { data: Float32Array; shape: number[] }[],
  gy: Float32Array,
): () => Tensor[] {
  return () => {
    const ps = ins.map((x, i) => parameter(`p${i}`, x.data, x.shape));
    tidy(() => {
      const y = op(ps);
      backward(y, fromData(gy, y.shape, "f32"));
    });
    const gs = ps.map((p) => p.grad!);
    for (const p of ps) p.grad = null;
    for (const p of ps) p.dispose();
    return gs;
  };
}

// ---------------------------------------------------------------------------------------------
// norms

interface NormCase {
  label: string;
  shape: number[];
  geom: NormGeom;
  channels: number;
  affine: "none" | "weight" | "both";
  op: (x: Tensor, w?: Tensor, b?: Tensor) => Tensor;
}

const layerC = (shape: number[], affine: NormCase["affine"]): NormCase => ({
  label: `layerNorm [${shape}] ${affine}`,
  shape,
  geom: lastAxisGeom("layer", shape, 1e-5),
  channels: shape.at(-1)!,
  affine,
  op: (x, w, b) => layerNorm(x, w, b, 1e-5),
});
const rmsC = (shape: number[], affine: NormCase["affine"]): NormCase => ({
  label: `rmsNorm [${shape}] ${affine}`,
  shape,
  geom: lastAxisGeom("rms", shape, 1e-6),
  channels: shape.at(-1)!,
  affine,
  op: (x, w) => rmsNorm(x, w, 1e-6),
});
const channelsC = (shape: number[], affine: NormCase["affine"]): NormCase => ({
  label: `rmsNormChannels [${shape}] ${affine}`,
  shape,
  geom: channelsGeom(shape, 1e-5),
  channels: shape[1]!,
  affine,
  op: (x, w, b) => rmsNormChannels(x, w, b, 1e-5),
});
const groupC = (shape: number[], groups: number, affine: NormCase["affine"]): NormCase => ({
  label: `groupNorm(${groups}) [${shape}] ${affine}`,
  shape,
  geom: groupGeom(shape, groups, 1e-5),
  channels: shape[1]!,
  affine,
  op: (x, w, b) => groupNorm(x, groups, w, b, 1e-5),
});

/** Forward and backward (dx, dweight, dbias) of a norm case, windowed vs whole vs float64. */
async function checkNorm(c: NormCase, seed: number): Promise<void> {
  const x = randomArray(numel(c.shape), seed, -2, 3);
  const w = randomArray(c.channels, seed + 1, 0.5, 1.5);
  const b = randomArray(c.channels, seed + 2, -0.5, 0.5);
  const gy = randomArray(numel(c.shape), seed + 3, -1, 1);
  const hasW = c.affine !== "none", hasB = c.affine === "both";
  await check(
    () =>
      tidy(() => [
        c.op(
          fromData(x, c.shape, "f32"),
          hasW ? fromData(w, [c.channels], "f32") : undefined,
          hasB ? fromData(b, [c.channels], "f32") : undefined,
        ),
      ]),
    {
      label: `${c.label} forward`,
      refs: [normRef(x, c.geom, hasW ? w : undefined, hasB ? b : undefined)],
      atol: 2e-5,
      rtol: 2e-5,
      split: { norm: 1 },
      exact: true,
    },
  );
  const ins = [{ data: x, shape: c.shape }];
  if (hasW) ins.push({ data: w, shape: [c.channels] });
  if (hasB) ins.push({ data: b, shape: [c.channels] });
  const want = normVjpRef(x, gy, c.geom, c.channels, hasW ? w : undefined);
  // dx is bit-identical; dweight/dbias are sums whose order the segments may change
  await check(grads((ps) => c.op(ps[0]!, ps[1], ps[2]), ins, gy), {
    label: `${c.label} backward`,
    refs: [want.dx, want.dw, want.db].slice(0, ins.length),
    atol: 5e-5,
    rtol: 1e-4,
    split: ins.length > 1 ? { norm: 2, reduce: 0 } : { norm: 2 },
    exact: [true, false, false],
  });
}

gpuTest(
  "windowed layerNorm/rmsNorm: blocks of rows (row4, row, col layouts), fwd + bwd",
  async () => {
    await checkNorm(layerC([19, 1000], "both"), 1); // row4: 4 rows per window
    await checkNorm(layerC([21, 999], "none"), 2); // scalar rows
    await checkNorm(rmsC([17, 1028], "weight"), 3); // row4
    await checkNorm(rmsC([700, 20], "weight"), 4); // short rows: one invocation per row
    await checkNorm(layerC([700, 20], "both"), 5);
  },
);

gpuTest(
  "windowed rmsNormChannels: blocks of slabs, and columns of one slab, fwd + bwd",
  async () => {
    await checkNorm(channelsC([7, 4, 500], "both"), 11); // 2 slabs per window
    await checkNorm(channelsC([3, 5, 900], "both"), 12); // a slab (4500) > 4028: column blocks
    await checkNorm(channelsC([2, 3, 2000], "none"), 13); // columns span 4001: narrow blocks
  },
);

gpuTest(
  "windowed groupNorm: grouped affine index across blocks (row4, row, col), fwd + bwd",
  async () => {
    await checkNorm(groupC([2, 8, 40, 41], 4, "both"), 21); // n = 3280, S % 4 == 0: row4
    await checkNorm(groupC([7, 6, 333], 3, "both"), 22); // n = 666, scalar rows
    await checkNorm(groupC([500, 6, 5], 3, "both"), 23); // n = 10: one invocation per row
  },
);

gpuTest("windowed norms: offset and strided inputs, sliced weights, f16/bf16 inputs", async () => {
  const [R, N] = [21, 999];
  const big = randomArray(R * N + 3, 31, -2, 2);
  const wBig = randomArray(N + 5, 32, 0.5, 1.5);
  const x = big.subarray(3);
  const w = wBig.subarray(5);
  // a dense view at offset 3 (scalar layout) with a weight at offset 5
  await check(
    () =>
      tidy(() => {
        const xv = reshape(slice(fromData(big, [R * N + 3], "f32"), [3], [R * N + 3]), [R, N]);
        return [rmsNorm(xv, slice(fromData(wBig, [N + 5], "f32"), [5], [N + 5]))];
      }),
    {
      label: "rmsNorm offset 3",
      refs: [normRef(x, lastAxisGeom("rms", [R, N], 1e-6), w)],
      atol: 2e-5,
      rtol: 2e-5,
      split: { norm: 1 },
      exact: true,
    },
  );
  // a permuted input (made dense by a copy first): [999, 21] transposed to [21, 999]
  const xt = new Float32Array(R * N);
  for (let i = 0; i < R; i++) for (let j = 0; j < N; j++) xt[j * R + i] = x[i * N + j]!;
  await check(
    () => tidy(() => [layerNorm(permute(fromData(xt, [N, R], "f32"), [1, 0]))]),
    {
      label: "layerNorm permuted",
      refs: [normRef(x, lastAxisGeom("layer", [R, N], 1e-5))],
      atol: 2e-5,
      rtol: 2e-5,
      split: { norm: 1 },
      exact: true,
    },
  );
  // half-precision inputs are widened first
  const shape = [19, 1000];
  const h = f32ToF16(randomArray(numel(shape), 33, -2, 2));
  const bh = f32ToBf16(randomArray(numel(shape), 34, -2, 2));
  await check(() => tidy(() => [layerNorm(fromData(h, shape, "f16"))]), {
    label: "layerNorm f16",
    refs: [normRef(f16ToF32(h), lastAxisGeom("layer", shape, 1e-5))],
    atol: 2e-5,
    rtol: 2e-5,
    split: { norm: 1 },
    exact: true,
  });
  await check(() => tidy(() => [groupNorm(fromData(bh, [2, 10, 950], "bf16"), 5)]), {
    label: "groupNorm bf16",
    refs: [normRef(bf16ToF32(bh), groupGeom([2, 10, 950], 5, 1e-5))],
    atol: 2e-5,
    rtol: 2e-5,
    split: { norm: 1 },
    exact: true,
  });
});

// ---------------------------------------------------------------------------------------------
// softmax

async function checkSoftmax(shape: number[], axis: number, seed: number): Promise<void> {
  const x = randomArray(numel(shape), seed, -4, 4);
  const gy = randomArray(numel(shape), seed + 1, -1, 1);
  for (
    const [name, f, log] of [["softmax", softmax, false], ["logSoftmax", logSoftmax, true]] as const
  ) {
    const label = `${name} [${shape}] axis ${axis}`;
    await check(() => tidy(() => [f(fromData(x, shape, "f32"), axis)]), {
      label,
      refs: [softmaxRef(x, shape, axis, log)],
      atol: log ? 1e-5 : 1e-6,
      rtol: 1e-5,
      split: { softmax: 1 },
      exact: true,
    });
    await check(grads((ps) => f(ps[0]!, axis), [{ data: x, shape }], gy), {
      label: `${label} backward`,
      refs: [softmaxVjpRef(x, gy, shape, axis, log)],
      atol: log ? 2e-5 : 1e-6,
      rtol: 1e-4,
      split: { softmax: 2 },
      exact: true,
    });
  }
}

gpuTest("windowed softmax/logSoftmax: blocks of rows and of columns, fwd + bwd", async () => {
  await checkSoftmax([19, 1000], -1, 1); // row4
  await checkSoftmax([21, 999], -1, 2); // scalar rows
  await checkSoftmax([700, 20], -1, 3); // short rows
  await checkSoftmax([7, 4, 500], 1, 4); // strided rows: blocks of slabs
  await checkSoftmax([3, 5, 900], 1, 5); // one slab > a window: blocks of columns
  await checkSoftmax([6, 1100, 2], 1, 6); // few columns: moved last
});

gpuTest("windowed softmax: offset, sliced and permuted views, f16 input", async () => {
  const [R, N] = [21, 999];
  const big = randomArray(R * N + 3, 41, -3, 3);
  const x = big.subarray(3);
  await check(
    () =>
      tidy(() => [
        softmax(reshape(slice(fromData(big, [R * N + 3], "f32"), [3], [R * N + 3]), [R, N])),
      ]),
    {
      label: "softmax offset 3",
      refs: [softmaxRef(x, [R, N])],
      atol: 1e-6,
      rtol: 1e-5,
      split: { softmax: 1 },
      exact: true,
    },
  );
  // a column slice [:, 1:998] of [21, 999] (strided: copied dense first)
  const want = new Float32Array(R * 997);
  for (let i = 0; i < R; i++) for (let j = 0; j < 997; j++) want[i * 997 + j] = x[i * N + j + 1]!;
  await check(
    () => tidy(() => [logSoftmax(slice(fromData(x, [R, N], "f32"), [0, 1], [R, 998]))]),
    {
      label: "logSoftmax sliced",
      refs: [softmaxRef(want, [R, 997], -1, true)],
      atol: 1e-5,
      rtol: 1e-5,
      split: { softmax: 1 },
      exact: true,
    },
  );
  const xt = new Float32Array(R * N);
  for (let i = 0; i < R; i++) for (let j = 0; j < N; j++) xt[j * R + i] = x[i * N + j]!;
  await check(() => tidy(() => [softmax(permute(fromData(xt, [N, R], "f32"), [1, 0]))]), {
    label: "softmax permuted",
    refs: [softmaxRef(x, [R, N])],
    atol: 1e-6,
    rtol: 1e-5,
    split: { softmax: 1 },
    exact: true,
  });
  const h = f32ToF16(randomArray(19 * 1000, 42, -3, 3));
  await check(() => tidy(() => [softmax(fromData(h, [19, 1000], "f16"))]), {
    label: "softmax f16",
    refs: [softmaxRef(f16ToF32(h), [19, 1000])],
    atol: 1e-6,
    rtol: 1e-5,
    split: { softmax: 1 },
    exact: true,
  });
});

gpuTest("windowed norms/softmax: a row that does not fit throws a RangeError", async () => {
  await withBindingLimit(LIMIT, async () => {
    const x = (shape: number[]) => fromData(new Float32Array(numel(shape)), shape, "f32");
    const cases: [string, string, () => Tensor][] = [
      ["layerNorm", "[2, 5000]", () => layerNorm(x([2, 5000]))],
      ["rmsNormChannels", "[2, 6, 1000]", () => rmsNormChannels(x([2, 6, 1000]))],
      ["groupNorm", "[1, 4, 2500]", () => groupNorm(x([1, 4, 2500]), 2)],
      ["softmax", "[2, 5000]", () => softmax(x([2, 5000]))],
      ["logSoftmax", "[5000, 2, 3]", () => logSoftmax(x([5000, 2, 3]), 0)],
    ];
    for (const [op, shape, fn] of cases) {
      const e = await assertThrows(() => tidy(() => [fn()]), op, shape, "bytes", `${LIMIT}`);
      assert(e instanceof RangeError, `${op}: ${e.name}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// reductions

const REDUCERS: Record<RefReduce, (x: Tensor, axes?: number | number[], keep?: boolean) => Tensor> =
  {
    sum,
    mean,
    max,
    min,
    variance,
  };

/** Every reduce kind over `axes` of `shape`, plus the gradients of sum and max. */
async function checkReduce(shape: number[], axes: number | number[] | undefined, seed: number) {
  const x = randomArray(numel(shape), seed);
  const kinds = Object.keys(REDUCERS) as RefReduce[];
  const label = `[${shape}] axes ${JSON.stringify(axes)}`;
  await check(
    () =>
      tidy(() => {
        const t = fromData(x, shape, "f32");
        return kinds.map((k) => REDUCERS[k](t, axes));
      }),
    {
      label: `reduce ${label}`,
      refs: kinds.map((k) => reduceRef(k, x, shape, axes).data),
      atol: 1e-4,
      rtol: 1e-5,
      split: { reduce: 6 },
      exact: false,
    },
  );
  // gradients: sum broadcasts dy back; max routes it to the maxima (no ties in random data)
  const { data: m, shape: mShape } = reduceRef("max", x, shape, axes, true);
  const gy = randomArray(numel(mShape), seed + 1);
  const dSum = new Float64Array(x.length), dMax = new Float64Array(x.length);
  const strides = shape.map((_, i) => numel(shape.slice(i + 1)));
  const mStrides = mShape.map((_, i) => numel(mShape.slice(i + 1)));
  for (let i = 0; i < x.length; i++) {
    let k = 0;
    shape.forEach((_, d) => {
      const c = Math.floor(i / strides[d]!) % shape[d]!;
      if (mShape[d] !== 1) k += c * mStrides[d]!;
    });
    dSum[i] = gy[k]!;
    dMax[i] = x[i] === m[k] ? gy[k]! : 0;
  }
  for (const [name, f, ref] of [["sum", sum, dSum], ["max", max, dMax]] as const) {
    await check(
      grads((ps) => f(ps[0]!, axes, true), [{ data: x, shape }], gy),
      {
        label: `${name} backward ${label}`,
        refs: [ref],
        atol: 1e-6,
        rtol: 1e-6,
        // the max's backward reduces the tie mask; the sum's is a broadcast (elementwise only)
        split: name === "max" ? { reduce: 2 } : {},
        exact: name === "sum",
      },
    );
  }
}

gpuTest("windowed reductions: blocks of rows (row4, row) and of outputs (col)", async () => {
  await checkReduce([19, 1000], -1, 1); // row4
  await checkReduce([21, 999], 1, 2); // scalar rows
  await checkReduce([6, 30, 100], 1, 3); // col: slabs of 3000
  await checkReduce([7, 30, 100], [0, 2], 4); // non-adjacent: moved last, copied
});

gpuTest("windowed reductions: reduced ranges over the limit accumulate in segments", async () => {
  await checkReduce([19, 1000], 0, 5); // col: a slab of 19000 in segments of 4 rows
  await checkReduce([3, 5000], 0, 6); // inner 5000 > 4028: one position and column blocks
  await checkReduce([20000], undefined, 7); // a full reduction: row4 segments
  await checkReduce([3, 7, 953], undefined, 8); // a full reduction: scalar segments
});

gpuTest("windowed reductions: an offset view, an f16 input", async () => {
  const big = randomArray(20003, 9);
  const h = f32ToF16(randomArray(20000, 10));
  await check(
    () =>
      tidy(() => {
        const v = slice(fromData(big, [20003], "f32"), [3], [20003]);
        return [sum(v), max(reshape(v, [20, 1000]), 1), sum(fromData(h, [20, 1000], "f16"), 0)];
      }),
    {
      label: "offset and f16 reductions",
      refs: [
        reduceRef("sum", big.subarray(3), [20000]).data,
        reduceRef("max", big.subarray(3), [20, 1000], 1).data,
        reduceRef("sum", f16ToF32(h), [20, 1000], 0).data,
      ],
      atol: 1e-4,
      rtol: 1e-5,
      split: { reduce: 3 },
      exact: false,
    },
  );
});
