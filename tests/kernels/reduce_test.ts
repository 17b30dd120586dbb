/**
 * Reductions (sum/mean/max/min one kernel, variance composed) against the float64 reference, over
 * single, adjacent, non-adjacent and all axes, with and without keepDims, on rows of length 1, 7,
 * 257, 1000 and 4096, checking which kernel variant (row, row4, col) ran.
 *
 * Tolerances: max/min are exact; sums accumulate in f32 (tree order in the row kernels, sequential
 * in the col kernel), so |error| ≲ R·2^-24·Σ|x| in the worst case; inputs in [-1, 1] and R ≤ 4096
 * keep it under 1e-4 absolute.
 */
import { readAll } from "../../engine/ops/movement.ts";
import { fromData, realize } from "../../engine/graph.ts";
import { type Tensor } from "../../engine/tensor.ts";
import { read, slice, transpose } from "../../engine/ops/movement.ts";
import { full } from "../../engine/ops/elementwise.ts";
import { max, mean, min, sum, variance } from "../../engine/ops/reduce.ts";
import { f32ToF16 } from "../../engine/dtype.ts";
import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, type CloseOptions, randomArray } from "../_assert_close.ts";
import { gatherView, reduceRef, type RefReduce } from "../ref/elementwise.ts";

/** Names of the kernels dispatched while `fn` runs. */
function captureDispatches(fn: () => void): string[] {
  const rt = gpu();
  const names: string[] = [];
  const orig = rt.dispatch;
  rt.dispatch = function (spec, ...rest) {
    names.push(spec.name);
    return orig.call(this, spec, ...rest);
  };
  try {
    fn();
  } finally {
    rt.dispatch = orig;
  }
  return names;
}

const OPS: Record<RefReduce, (x: Tensor, axes?: number | number[], keep?: boolean) => Tensor> = {
  sum,
  mean,
  max,
  min,
  variance,
};
const KINDS = Object.keys(OPS) as RefReduce[];

function tolFor(kind: RefReduce): CloseOptions {
  return kind === "max" || kind === "min" ? { atol: 0, rtol: 0 } : { atol: 1e-4, rtol: 1e-5 };
}

interface Case {
  shape: number[];
  axes?: number | number[];
  keepDims?: boolean;
  /** Expected kernel variant of the reduce dispatch. */
  variant: "row" | "row4" | "col";
}

/** Runs every reduce kind over the cases; checks values, shapes and the kernel variant. */
async function check(cases: Case[], seed: number): Promise<void> {
  const outs: Tensor[] = [];
  const want: { data: Float64Array; shape: number[]; label: string; kind: RefReduce }[] = [];
  const inputs: Tensor[] = [];
  cases.forEach((c, ci) => {
    const n = c.shape.reduce((a, b) => a * b, 1);
    const v = randomArray(n, seed + ci);
    const x = fromData(v, c.shape, "f32");
    inputs.push(x);
    for (const kind of KINDS) {
      const y = OPS[kind](x, c.axes as number[], c.keepDims ?? false);
      const label = `${kind} [${c.shape}] axes ${JSON.stringify(c.axes)} keep=${!!c.keepDims}`;
      if (kind === "sum" || kind === "max") {
        const names = captureDispatches(() => realize([y]));
        const red = names.filter((s) => s.startsWith("reduce_"));
        if (red.length !== 1 || red[0] !== `reduce_${kind}_${c.variant}`) {
          throw new Error(`${label}: kernels ${names}, expected reduce_${kind}_${c.variant}`);
        }
      }
      outs.push(y);
      want.push({ ...reduceRef(kind, v, c.shape, c.axes, c.keepDims ?? false), label, kind });
    }
  });
  const got = await readAll(outs);
  outs.forEach((y, k) => {
    const w = want[k]!;
    if (y.shape.join() !== w.shape.join()) {
      throw new Error(`${w.label}: shape [${y.shape}], expected [${w.shape}]`);
    }
    assertClose(got[k]!, w.data, { ...tolFor(w.kind), shape: w.shape, label: w.label });
  });
  for (const t of [...inputs, ...outs]) t.dispose();
}

gpuTest("reduce: last axis, rows of length 1, 7, 257 (row) and 1000, 4096 (row4)", async () => {
  await check([
    { shape: [5, 1], axes: -1, variant: "row" },
    { shape: [3, 7], axes: 1, variant: "row" },
    { shape: [2, 257], axes: -1, keepDims: true, variant: "row" },
    { shape: [3, 1000], axes: 1, variant: "row4" },
    { shape: [2, 4096], axes: -1, keepDims: true, variant: "row4" },
    { shape: [4096], axes: 0, variant: "row4" },
  ], 1);
});

gpuTest("reduce: leading and middle axes use the col kernel (R = 1, 7, 257, 1000)", async () => {
  await check([
    { shape: [1, 33], axes: 0, variant: "col" },
    { shape: [7, 33], axes: 0, keepDims: true, variant: "col" },
    { shape: [257, 5], axes: 0, variant: "col" },
    { shape: [1000, 3], axes: -2, variant: "col" },
    { shape: [3, 7, 33], axes: 1, variant: "col" },
    { shape: [3, 7, 33], axes: -2, keepDims: true, variant: "col" },
  ], 20);
});

gpuTest("reduce: adjacent axes, non-adjacent axes, all axes", async () => {
  await check([
    { shape: [3, 7, 5, 2], axes: [1, 2], variant: "col" },
    { shape: [3, 7, 5, 2], axes: [2, 3], keepDims: true, variant: "row" },
    { shape: [3, 7, 5, 4], axes: [-1, -2], variant: "row4" },
    // non-adjacent: moved last and copied, then a row reduction
    { shape: [3, 7, 5], axes: [0, 2], variant: "row" },
    { shape: [3, 7, 5, 2], axes: [0, 2], keepDims: true, variant: "row" },
    { shape: [4, 3, 2, 5], axes: [-1, 1], variant: "row" },
    // all axes
    { shape: [7, 33], variant: "row" },
    { shape: [16, 64], keepDims: true, variant: "row4" },
    { shape: [2, 3, 5], axes: [0, 1, 2], variant: "row" },
  ], 40);
});

gpuTest("reduce: strided and offset inputs are made dense first", async () => {
  const v = randomArray(33 * 8, 3);
  const x = fromData(v, [33, 8], "f32");
  const t = transpose(x); // [8, 33], strides [1, 8]
  const s = slice(fromData(v, [264], "f32"), [1], [257]); // dense, offset 1, R = 256
  const ys = [sum(t, -1), max(t, 0), mean(s, 0), min(s), variance(t, 1)];
  const tv = gatherView(v, [8, 33], [1, 8]);
  const sv = gatherView(v, [256], [1], 1);
  const want = [
    reduceRef("sum", tv, [8, 33], -1),
    reduceRef("max", tv, [8, 33], 0),
    reduceRef("mean", sv, [256], 0),
    reduceRef("min", sv, [256]),
    reduceRef("variance", tv, [8, 33], 1),
  ];
  const got = await readAll(ys);
  want.forEach((w, k) => assertClose(got[k]!, w.data, { atol: 1e-5, rtol: 1e-5, label: `#${k}` }));
  // the offset-1 slice of length 256 is copied to offset 0, so the aligned row4 kernel applies
  const names = captureDispatches(() =>
    realize([sum(slice(fromData(v, [264], "f32"), [1], [257]))])
  );
  if (!names.includes("reduce_sum_row4")) throw new Error(`kernels: ${names}`);
});

gpuTest("reduce: max/min of all-negative / all-positive rows, ties, large values", async () => {
  const a = new Float32Array(257).fill(-5e30);
  a[100] = -1e30;
  const b = new Float32Array(1000).fill(7);
  b[999] = 8;
  const c = Float32Array.from({ length: 33 * 7 }, (_, i) => -((i * 37) % 11) - 1);
  const x = fromData(a, [257], "f32");
  const y = fromData(b, [1, 1000], "f32");
  const z = fromData(c, [33, 7], "f32");
  const got = await readAll([max(x), min(x), max(y, 1), min(y, 1), max(z, 0), min(z, 0)]);
  assertClose(got[0]!, [Math.fround(-1e30)], { atol: 0, rtol: 0, label: "max all-negative" });
  assertClose(got[1]!, [Math.fround(-5e30)], { atol: 0, rtol: 0, label: "min" });
  assertClose(got[2]!, [8], { atol: 0, rtol: 0, label: "max row4" });
  assertClose(got[3]!, [7], { atol: 0, rtol: 0, label: "min row4" });
  assertClose(got[4]!, reduceRef("max", c, [33, 7], 0).data, {
    atol: 0,
    rtol: 0,
    label: "col max",
  });
  assertClose(got[5]!, reduceRef("min", c, [33, 7], 0).data, {
    atol: 0,
    rtol: 0,
    label: "col min",
  });
});

gpuTest("reduce: variance correction, empty axis list, rank-0 input", async () => {
  const v = randomArray(7 * 33, 9);
  const x = fromData(v, [7, 33], "f32");
  const ys = [
    variance(x, -1, false, 1),
    variance(x, 0, true, 1),
    sum(x, []),
    sum(full([], 3)),
    mean(full([4, 5], 2.5), [0, 1], true),
  ];
  const shapes = ["7", "1,33", "7,33", "", "1,1"];
  ys.forEach((y, k) => {
    if (y.shape.join() !== shapes[k]) throw new Error(`#${k}: shape [${y.shape}]`);
  });
  const got = await readAll(ys);
  assertClose(got[0]!, reduceRef("variance", v, [7, 33], -1, false, 1).data, {
    atol: 1e-5,
    rtol: 1e-5,
    label: "var c=1",
  });
  assertClose(got[1]!, reduceRef("variance", v, [7, 33], 0, true, 1).data, {
    atol: 1e-5,
    rtol: 1e-5,
    label: "var c=1 axis 0",
  });
  assertClose(got[2]!, v, { atol: 0, rtol: 0, label: "sum over no axes = identity" });
  assertClose(got[3]!, [3], { atol: 0, rtol: 0, label: "rank 0" });
  assertClose(got[4]!, [2.5], { atol: 1e-6, rtol: 0, label: "mean of full" });
});

gpuTest("reduce: axis out of range names the op and the rank", () => {
  const x = full([2, 3], 1);
  for (
    const [f, name] of [[sum, "sum"], [max, "max"], [mean, "mean"], [variance, "variance"]] as const
  ) {
    let msg = "";
    try {
      f(x, 2);
    } catch (e) {
      msg = (e as Error).message;
    }
    if (!msg.includes(name) || !msg.includes("axis 2") || !msg.includes("rank 2")) {
      throw new Error(`${name}: ${msg}`);
    }
  }
});

gpuTest("sum/max of an f16 or i32 tensor widens the values first", async () => {
  // the reduce kernel reads f32, so other dtypes are widened by a copy first
  const h = fromData(f32ToF16(new Float32Array([1, 2, 3, 4])), [4], "f16");
  const i = fromData(new Int32Array([1, 2, 3, 4]), [4], "i32");
  const got = [(await read(sum(h)))[0], (await read(max(i)))[0]];
  if (got[0] !== 10 || got[1] !== 4) {
    throw new Error(
      `sum(f16 [1,2,3,4]) = ${got[0]} (expected 10), max(i32 [1,2,3,4]) = ${got[1]} (expected 4)`,
    );
  }
});
