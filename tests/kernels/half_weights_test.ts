/**
 * f16 / bf16 weights in matmul, linear and conv3d: the kernels read the 16-bit values and widen
 * them to f32, so every result equals the one computed with the f32-widened weight (the same
 * products in the same order). Covers the scalar and vec4 paths of matmul (plain, transposed
 * via `linear`, bias, half A operand), conv3d (k3, strided, grouped, k1 pointwise and strided,
 * depthwise, vec4 input rows, both tile sets), the input gradient through a half weight and the
 * error for a half weight that requires grad.
 */
import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { fromData, realize } from "../../engine/graph.ts";
import { backward } from "../../engine/autograd.ts";
import { read, readAll, transpose } from "../../engine/ops/movement.ts";
import { linear, matmul } from "../../engine/ops/matmul.ts";
import { conv3d, type Conv3dOptions, forceConv3dTiles } from "../../engine/ops/conv3d.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../engine/dtype.ts";
import type { Tensor } from "../../engine/tensor.ts";

type Half = "f16" | "bf16";
const HALVES: Half[] = ["bf16", "f16"];
const tol = { atol: 1e-6, rtol: 1e-5 };

/** A half tensor and the f32 tensor of exactly its values. */
function halfPair(data: Float32Array, shape: number[], dt: Half): [Tensor, Tensor] {
  const bits = dt === "bf16" ? f32ToBf16(data) : f32ToF16(data);
  const wide = dt === "bf16" ? bf16ToF32(bits) : f16ToF32(bits);
  return [fromData(bits, shape, dt), fromData(wide, shape, "f32")];
}
const f32 = (d: Float32Array, s: readonly number[]) => fromData(d, s, "f32");

gpuTest("matmul(a, half b) equals matmul with the widened b (scalar and vec4 paths)", async () => {
  // [m, n, k]: n % 4 == 0 takes the vec4 B path, else scalar loads
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [7, 33, 257],
    [33, 7, 1],
    [257, 33, 7],
    [7, 32, 257],
    [33, 8, 36],
  ];
  for (const dt of HALVES) {
    for (const [m, n, k] of shapes) {
      const a = f32(randomArray(m * k, m + k), [m, k]);
      const [bh, bw] = halfPair(randomArray(k * n, n + 3), [k, n], dt);
      const [y, ref] = await readAll([matmul(a, bh), matmul(a, bw)]);
      assertClose(y!, ref!, { ...tol, shape: [m, n], label: `${dt} matmul ${m}x${n}x${k}` });
    }
  }
});

gpuTest("linear(x, half w, bias) reads the transposed half weight in place", async () => {
  // [m, out, in]: in % 4 == 0 takes the vec4 path of the transposed B
  const shapes: [number, number, number][] = [[1, 1, 1], [7, 33, 257], [33, 36, 64], [2, 7, 33]];
  for (const dt of HALVES) {
    for (const [m, o, i] of shapes) {
      const x = f32(randomArray(m * i, 5), [m, i]);
      const [wh, ww] = halfPair(randomArray(o * i, 6), [o, i], dt);
      const b = f32(randomArray(o, 7), [o]);
      const [y, ref, y3] = await readAll([
        linear(x, wh, b),
        linear(x, ww, b),
        // batched activations fold into one GEMM
        linear(f32(randomArray(2 * m * i, 5), [2, m, i]), wh),
      ]);
      assertClose(y!, ref!, { ...tol, shape: [m, o], label: `${dt} linear ${m}x${o}x${i}` });
      const ref3 = await read(linear(f32(randomArray(2 * m * i, 5), [2, m, i]), ww));
      assertClose(y3!, ref3, { ...tol, shape: [2, m, o], label: `${dt} batched linear` });
    }
  }
});

gpuTest("matmul(half a, b) (the pointwise-conv layout) and transposed half A", async () => {
  for (const dt of HALVES) {
    for (const [m, n, k] of [[7, 33, 257], [8, 12, 36], [1, 5, 3]] as const) {
      const [ah, aw] = halfPair(randomArray(m * k, 11), [m, k], dt);
      const b = f32(randomArray(2 * k * n, 12), [2, k, n]);
      const [at, atw] = halfPair(randomArray(m * k, 13), [k, m], dt);
      const [y, ref, yt, reft] = await readAll([
        matmul(ah, b),
        matmul(aw, b),
        matmul(transpose(at), b),
        matmul(transpose(atw), b),
      ]);
      assertClose(y!, ref!, { ...tol, shape: [2, m, n], label: `${dt} half A ${m}x${n}x${k}` });
      assertClose(yt!, reft!, { ...tol, label: `${dt} half Aᵀ ${m}x${n}x${k}` });
    }
  }
});

gpuTest("input gradient through a half linear weight matches the widened weight", async () => {
  for (const dt of HALVES) {
    for (const [m, o, i] of [[7, 33, 257], [5, 8, 12]] as const) {
      const [wh, ww] = halfPair(randomArray(o * i, 21), [o, i], dt);
      const b = f32(randomArray(o, 22), [o]);
      const xs = [wh, ww].map(() => {
        const x = f32(randomArray(m * i, 23), [m, i]);
        x.requiresGrad = true;
        return x;
      });
      const dy = randomArray(m * o, 24);
      backward(linear(xs[0]!, wh, b), f32(dy, [m, o]));
      backward(linear(xs[1]!, ww, b), f32(dy, [m, o]));
      const [g, ref] = await readAll([xs[0]!.grad!, xs[1]!.grad!]);
      assertClose(g!, ref!, { ...tol, shape: [m, i], label: `${dt} dx ${m}x${o}x${i}` });
      // a non-zero gradient (the comparison could not pass vacuously)
      if (!g!.some((v) => v !== 0)) throw new Error("zero gradient");
    }
  }
});

gpuTest("requiresGrad on a half weight is a clear error at graph build time", async () => {
  const x = f32(randomArray(12, 1), [3, 4]);
  const [wh] = halfPair(randomArray(20, 2), [5, 4], "bf16");
  wh.requiresGrad = true;
  await assertThrows(() => linear(x, wh), "matmul", "bf16", "requires grad");
  const [ch] = halfPair(randomArray(2 * 3 * 27, 3), [2, 3, 3, 3, 3], "f16");
  ch.requiresGrad = true;
  const xc = f32(randomArray(3 * 4 * 4 * 4, 4), [1, 3, 4, 4, 4]);
  await assertThrows(() => conv3d(xc, ch, { padding: 1 }), "conv3d", "f16", "requires grad");
});

interface ConvCase {
  label: string;
  n: number;
  cin: number;
  cout: number;
  size: [number, number, number];
  k: [number, number, number];
  opts: Conv3dOptions;
}

const CONV_CASES: ConvCase[] = [
  { label: "k3", n: 2, cin: 3, cout: 5, size: [3, 5, 7], k: [3, 3, 3], opts: { padding: 1 } },
  {
    label: "k3 vec rows, 33 ch",
    n: 1,
    cin: 7,
    cout: 33,
    size: [2, 3, 8],
    k: [3, 3, 3],
    opts: { padding: 1 },
  },
  {
    label: "stride 2, groups 2",
    n: 1,
    cin: 6,
    cout: 10,
    size: [5, 7, 9],
    k: [3, 3, 3],
    opts: { padding: [1, 1, 1], stride: 2, groups: 2 },
  },
  { label: "k1 pointwise", n: 2, cin: 8, cout: 7, size: [1, 5, 7], k: [1, 1, 1], opts: {} },
  {
    label: "k1 stride 2",
    n: 1,
    cin: 5,
    cout: 6,
    size: [3, 7, 7],
    k: [1, 1, 1],
    opts: { stride: 2 },
  },
  {
    label: "depthwise k3",
    n: 1,
    cin: 5,
    cout: 5,
    size: [3, 7, 33],
    k: [3, 3, 3],
    opts: { padding: 1, groups: 5 },
  },
  {
    label: "depthwise k5 vec rows",
    n: 1,
    cin: 4,
    cout: 4,
    size: [2, 5, 8],
    k: [1, 5, 5],
    opts: { padding: [0, 2, 2], groups: 4 },
  },
];

for (const mode of ["cpu", "gpu"] as const) {
  gpuTest(`conv3d with a half weight equals the widened weight (${mode} tiles)`, async () => {
    forceConv3dTiles(mode);
    try {
      for (const dt of HALVES) {
        for (const c of CONV_CASES) {
          const cin = c.cin / (c.opts.groups ?? 1);
          const wShape = [c.cout, cin, ...c.k];
          const [wh, ww] = halfPair(randomArray(wShape.reduce((a, b) => a * b), 31), wShape, dt);
          const xData = randomArray(c.n * c.cin * c.size.reduce((a, b) => a * b), 32);
          const xShape = [c.n, c.cin, ...c.size];
          const bias = f32(randomArray(c.cout, 33), [c.cout]);
          const xs = [0, 1].map(() => {
            const x = f32(xData, xShape);
            x.requiresGrad = true;
            return x;
          });
          const ys = [wh, ww].map((w, i) => conv3d(xs[i]!, w, { ...c.opts, bias }));
          const dy = randomArray(ys[0]!.size, 34);
          ys.forEach((y) => backward(y, f32(dy, y.shape)));
          const [y, ref, gx, gref] = await readAll([ys[0]!, ys[1]!, xs[0]!.grad!, xs[1]!.grad!]);
          const label = `${dt} ${mode} ${c.label}`;
          assertClose(y!, ref!, { ...tol, shape: ys[0]!.shape, label: `${label}: forward` });
          assertClose(gx!, gref!, { ...tol, shape: xShape, label: `${label}: grad_input` });
          if (!gx!.some((v) => v !== 0)) throw new Error(`${label}: zero gradient`);
        }
      }
    } finally {
      forceConv3dTiles(null);
    }
  });
}

gpuTest("half weights are read in place: one dispatch, exact small case", async () => {
  const rt = gpu();
  const [wh] = halfPair(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], "bf16");
  const x = f32(new Float32Array([1, 0, -1]), [1, 3]);
  realize([x, wh]);
  const before = rt.counters.dispatches;
  const y = linear(x, wh);
  realize([y]);
  if (rt.counters.dispatches - before !== 1) {
    throw new Error(`expected 1 dispatch, got ${rt.counters.dispatches - before}`);
  }
  assertClose(await read(y), [-2, -2], { label: "bf16 exact" });
});
