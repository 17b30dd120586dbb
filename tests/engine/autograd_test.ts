/**
 * Autograd: every differentiable op of the engine core is gradchecked against central differences
 * of its float64 reference (elementwise unary/binary incl. broadcasting and scalar operands, where,
 * clamp, reductions, views, pad), plus the mechanics: accumulation over two backward calls,
 * zeroGrad, noGrad, shared subexpressions, errors for non-differentiable ops and non-scalar roots.
 */
import {
  backward,
  BackwardNotSupportedError,
  detach,
  parameter,
  zeroGrad,
} from "../../engine/autograd.ts";
import { fromData, realize } from "../../engine/graph.ts";
import { noGrad, type Tensor, tidy } from "../../engine/tensor.ts";
import * as E from "../../engine/ops/elementwise.ts";
import { max, mean, min, sum, variance } from "../../engine/ops/reduce.ts";
import {
  contiguous,
  expand,
  narrow,
  pad,
  permute,
  read,
  reshape,
  slice,
  transpose,
} from "../../engine/ops/movement.ts";
import { gpuTest } from "../_gpu.ts";
import { gradcheck } from "../_gradcheck.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import {
  BINARY_REF,
  map1,
  map2,
  padRef,
  permuteRef,
  reduceRef,
  type RefReduce,
  sliceRef,
  UNARY_REF,
  whereRef,
} from "../ref/elementwise.ts";

/** Values in [lo, hi) kept at least `gap` away from 0 (for abs/relu kinks). */
function awayFromZero(n: number, seed: number, gap = 0.1): Float32Array {
  return randomArray(n, seed, -1, 1).map((v) => Math.sign(v || 1) * (gap + Math.abs(v)));
}

// ---------------------------------------------------------------- unary

const UNARY: Record<string, { f: (x: Tensor) => Tensor; data: (n: number) => Float32Array }> = {
  copy: { f: E.copy, data: (n) => randomArray(n, 1) },
  neg: { f: E.neg, data: (n) => randomArray(n, 2) },
  abs: { f: E.abs, data: (n) => awayFromZero(n, 3) },
  exp: { f: E.exp, data: (n) => randomArray(n, 4) },
  log: { f: E.log, data: (n) => randomArray(n, 5, 0.2, 2) },
  sqrt: { f: E.sqrt, data: (n) => randomArray(n, 6, 0.2, 2) },
  rsqrt: { f: E.rsqrt, data: (n) => randomArray(n, 7, 0.2, 2) },
  square: { f: E.square, data: (n) => randomArray(n, 8) },
  recip: { f: E.recip, data: (n) => randomArray(n, 9, 0.3, 2) },
  sin: { f: E.sin, data: (n) => randomArray(n, 10, -3, 3) },
  cos: { f: E.cos, data: (n) => randomArray(n, 11, -3, 3) },
  tanh: { f: E.tanh, data: (n) => randomArray(n, 12, -2, 2) },
  sigmoid: { f: E.sigmoid, data: (n) => randomArray(n, 13, -4, 4) },
  relu: { f: E.relu, data: (n) => awayFromZero(n, 14) },
  silu: { f: E.silu, data: (n) => randomArray(n, 15, -4, 4) },
  geluTanh: { f: (x) => E.gelu(x, "tanh"), data: (n) => randomArray(n, 16, -3, 3) },
  geluErf: { f: (x) => E.gelu(x, "none"), data: (n) => randomArray(n, 17, -3, 3) },
};

for (const [name, { f, data }] of Object.entries(UNARY)) {
  gpuTest(`gradcheck ${name}`, async () => {
    const ref = UNARY_REF[name]!;
    await gradcheck(
      name,
      [{ shape: [3, 5], data: data(15) }],
      ([x]) => f(x!),
      ([x]) => map1(x!, ref),
    );
  });
}

// ---------------------------------------------------------------- binary

const BINARY: Record<
  string,
  { f: (a: Tensor, b: Tensor) => Tensor; lo: number; hi: number; blo?: number }
> = {
  add: { f: E.add, lo: -1, hi: 1 },
  sub: { f: E.sub, lo: -1, hi: 1 },
  mul: { f: E.mul, lo: -1, hi: 1 },
  div: { f: E.div, lo: 0.5, hi: 2 },
  pow: { f: E.pow, lo: 0.5, hi: 2, blo: -1.5 },
  maximum: { f: E.maximum, lo: -1, hi: 1 },
  minimum: { f: E.minimum, lo: -1, hi: 1 },
};

for (const [name, { f, lo, hi, blo }] of Object.entries(BINARY)) {
  gpuTest(`gradcheck ${name}: same shape and broadcast [2,1,3] x [4,1]`, async () => {
    const ref = BINARY_REF[name]!;
    const a = { shape: [2, 4, 3], data: randomArray(24, 30, lo, hi) };
    const b = { shape: [2, 4, 3], data: randomArray(24, 31, blo ?? lo, hi) };
    await gradcheck(
      `${name} same`,
      [a, b],
      ([x, y]) => f(x!, y!),
      ([x, y]) => map2(x!, a.shape, y!, b.shape, ref).data,
    );
    const c = { shape: [2, 1, 3], data: randomArray(6, 32, lo, hi) };
    const d = { shape: [4, 1], data: randomArray(4, 33, blo ?? lo, hi) };
    await gradcheck(
      `${name} broadcast`,
      [c, d],
      ([x, y]) => f(x!, y!),
      ([x, y]) => map2(x!, c.shape, y!, d.shape, ref).data,
    );
  });
}

gpuTest("gradcheck scalar operands on either side", async () => {
  const cases: [string, (x: Tensor) => Tensor, (v: number) => number, number, number][] = [
    ["x + 0.5", (x) => E.add(x, 0.5), (v) => v + 0.5, -1, 1],
    ["0.5 + x", (x) => E.add(0.5, x), (v) => 0.5 + v, -1, 1],
    ["x - 0.5", (x) => E.sub(x, 0.5), (v) => v - 0.5, -1, 1],
    ["0.5 - x", (x) => E.sub(0.5, x), (v) => 0.5 - v, -1, 1],
    ["x * 1.5", (x) => E.mul(x, 1.5), (v) => v * 1.5, -1, 1],
    ["1.5 * x", (x) => E.mul(1.5, x), (v) => 1.5 * v, -1, 1],
    ["x / 1.5", (x) => E.div(x, 1.5), (v) => v / 1.5, -1, 1],
    ["1.5 / x", (x) => E.div(1.5, x), (v) => 1.5 / v, 0.5, 2],
    ["x ^ 2.5", (x) => E.pow(x, 2.5), (v) => v ** 2.5, 0.3, 2],
    ["powScalar(x, -1.5)", (x) => E.powScalar(x, -1.5), (v) => v ** -1.5, 0.3, 2],
    ["2 ^ x", (x) => E.pow(2, x), (v) => 2 ** v, -1, 1],
    ["maximum(x, 0.1)", (x) => E.maximum(x, 0.1), (v) => Math.max(v, 0.1), -1, 1],
    ["maximum(0.1, x)", (x) => E.maximum(0.1, x), (v) => Math.max(0.1, v), -1, 1],
    ["minimum(x, 0.1)", (x) => E.minimum(x, 0.1), (v) => Math.min(v, 0.1), -1, 1],
    [
      "clamp(x, -0.5, 0.5)",
      (x) => E.clamp(x, -0.5, 0.5),
      (v) => Math.min(Math.max(v, -0.5), 0.5),
      -1,
      1,
    ],
  ];
  for (const [label, f, r, lo, hi] of cases) {
    await gradcheck(
      label,
      [{ shape: [7], data: randomArray(7, 40, lo, hi) }],
      ([x]) => f(x!),
      ([x]) => map1(x!, r),
    );
  }
});

gpuTest(
  "gradcheck where: broadcast branches, number branch, condition from a graded tensor",
  async () => {
    const cv = Float32Array.from({ length: 24 }, (_, i) => (i * 7) % 3 === 0 ? 0 : 1);
    const cond = fromData(cv, [2, 4, 3], "f32");
    const a = { shape: [2, 1, 3], data: randomArray(6, 50) };
    const b = { shape: [4, 1], data: randomArray(4, 51) };
    await gradcheck(
      "where(c, a, b)",
      [a, b],
      ([x, y]) => E.where(cond, x!, y!),
      ([x, y]) => whereRef(cv, [2, 4, 3], x!, a.shape, y!, b.shape).data,
    );
    await gradcheck(
      "where(c, 2, b)",
      [{ shape: [2, 4, 3] }],
      ([y]) => E.where(cond, 2, y!),
      ([y]) => whereRef(cv, [2, 4, 3], [2], [1], y!, [2, 4, 3]).data,
    );
    // leaky relu: the condition gt(x, 0) has no backward, but no gradient flows into it
    await gradcheck(
      "where(x > 0, x, 0.1x)",
      [{ shape: [9], data: awayFromZero(9, 52) }],
      ([x]) => E.where(E.gt(x!, 0), x!, E.mul(x!, 0.1)),
      ([x]) => map1(x!, (v) => (v > 0 ? v : 0.1 * v)),
    );
    cond.dispose();
  },
);

// ---------------------------------------------------------------- reductions

const RED: Record<RefReduce, (x: Tensor, axes?: number | number[], keep?: boolean) => Tensor> = {
  sum,
  mean,
  max,
  min,
  variance,
};

for (const kind of Object.keys(RED) as RefReduce[]) {
  gpuTest(`gradcheck ${kind}: one axis, adjacent axes, all axes, keepDims`, async () => {
    const shape = [3, 4, 5];
    const cases: [number | number[] | undefined, boolean][] = [
      [-1, false],
      [0, true],
      [1, false],
      [[1, 2], false],
      [[0, 1], true],
      [undefined, false],
    ];
    for (const [axes, keep] of cases) {
      await gradcheck(
        `${kind} axes ${JSON.stringify(axes)} keep=${keep}`,
        [{ shape, data: randomArray(60, 60) }],
        ([x]) => RED[kind](x!, axes as number[], keep),
        ([x]) => reduceRef(kind, x!, shape, axes, keep).data,
      );
    }
  });
}

gpuTest("gradient of a reduction over non-adjacent axes", async () => {
  // the reduce op works on the permuted tensor, whose input and output share axes
  const shape = [3, 4, 5];
  const errors: string[] = [];
  for (const kind of ["sum", "max", "min", "mean", "variance"] as const) {
    try {
      await gradcheck(
        `${kind} over [0, 2]`,
        [{ shape, data: randomArray(60, 61) }],
        ([x]) => RED[kind](x!, [0, 2]),
        ([x]) => reduceRef(kind, x!, shape, [0, 2]).data,
      );
    } catch (e) {
      errors.push(`${kind}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  if (errors.length) throw new Error(errors.join("\n"));
});

gpuTest("max/min backward shares the gradient equally among ties", async () => {
  const p = parameter("ties", new Float32Array([1, 3, 3, -2, -2, 0]), [2, 3]);
  tidy(() => {
    backward(E.add(sum(max(p, 1)), sum(min(p, 1))));
  });
  // row 0: max 3 at two places, min 1; row 1: max 0, min -2 at two places
  assertClose(await read(p.grad!), [1, 0.5, 0.5, 0.5, 0.5, 1], {
    atol: 1e-6,
    rtol: 0,
    label: "ties",
  });
  p.dispose();
});

// ---------------------------------------------------------------- movement

gpuTest(
  "gradcheck views: reshape, permute, transpose, slice, narrow, expand, contiguous",
  async () => {
    const shape = [3, 4, 5];
    const x0 = { shape, data: randomArray(60, 70) };
    const cases: [string, (x: Tensor) => Tensor, (x: Float64Array) => ArrayLike<number>][] = [
      ["reshape", (x) => reshape(x, [4, -1]), (x) => x],
      ["permute", (x) => permute(x, [2, 0, 1]), (x) => permuteRef(x, shape, [2, 0, 1]).data],
      ["transpose", (x) => transpose(x, 0, 1), (x) => permuteRef(x, shape, [1, 0, 2]).data],
      [
        "slice",
        (x) => slice(x, [1, -3, 0], [3, -1, 4]),
        (x) => sliceRef(x, shape, [1, 1, 0], [3, 3, 4]).data,
      ],
      ["narrow", (x) => narrow(x, -1, 1, 3), (x) => sliceRef(x, shape, [0, 0, 1], [3, 4, 4]).data],
      [
        "reshape(permute) copy",
        (x) => reshape(permute(x, [2, 1, 0]), [60]),
        (x) => permuteRef(x, shape, [2, 1, 0]).data,
      ],
      [
        "contiguous(transpose)",
        (x) => contiguous(transpose(x)),
        (x) => permuteRef(x, shape, [0, 2, 1]).data,
      ],
    ];
    for (const [label, f, r] of cases) {
      await gradcheck(label, [x0], ([x]) => f(x!), ([x]) => r(x!));
    }
    const e = { shape: [3, 1], data: randomArray(3, 71) };
    await gradcheck(
      "expand [3,1] -> [2,3,4]",
      [e],
      ([x]) => expand(x!, [2, 3, 4]),
      ([x]) => Float64Array.from({ length: 24 }, (_, i) => x![Math.floor(i / 4) % 3]!),
    );
  },
);

gpuTest("gradcheck pad: dense, strided input, constant value", async () => {
  const shape = [3, 4];
  const x0 = { shape, data: randomArray(12, 80) };
  await gradcheck(
    "pad",
    [x0],
    ([x]) => pad(x!, [[1, 2], [0, 3]], 0.5),
    ([x]) => padRef(x!, shape, [[1, 2], [0, 3]], 0.5).data,
  );
  await gradcheck(
    "pad(transpose)",
    [x0],
    ([x]) => pad(transpose(x!), [[2, 0], [1, 1]]),
    ([x]) => padRef(permuteRef(x!, shape, [1, 0]).data, [4, 3], [[2, 0], [1, 1]]).data,
  );
});

// ---------------------------------------------------------------- mechanics

gpuTest("gradients accumulate over two backward calls; zeroGrad drops them", async () => {
  const v = randomArray(6, 90);
  const p = parameter("acc", v, [2, 3]);
  const step = () => tidy(() => backward(sum(E.mul(E.square(p), 1.5))));
  step();
  const g1 = await read(p.grad!);
  assertClose(g1, map1(v, (x) => 3 * x), { atol: 1e-6, rtol: 1e-6, label: "first" });
  step();
  const g2 = await read(p.grad!);
  assertClose(g2, map1(v, (x) => 6 * x), { atol: 1e-6, rtol: 1e-6, label: "accumulated" });
  zeroGrad([p]);
  if (p.grad !== null) throw new Error("zeroGrad left a gradient");
  step();
  assertClose(await read(p.grad!), g1, { atol: 1e-6, rtol: 1e-6, label: "after zeroGrad" });
  p.dispose();
});

gpuTest("noGrad records nothing; backward on its result is an error", async () => {
  const p = parameter("ng", randomArray(4, 91), [4]);
  const y = noGrad(() => E.mul(p, 2));
  const z = E.mul(p, 2);
  if (y.requiresGrad || !z.requiresGrad) throw new Error("requiresGrad flags");
  await assertThrows(() => backward(sum(y)), "backward", "does not require grad", "noGrad");
  if (p.grad !== null) throw new Error("noGrad produced a gradient");
  p.dispose();
});

gpuTest("backward through a shared subexpression sums both paths", async () => {
  // x used twice by one op, and a shared intermediate used by two ops
  await gradcheck(
    "x * x",
    [{ shape: [7] }],
    ([x]) => E.mul(x!, x!),
    ([x]) => map1(x!, (v) => v * v),
  );
  await gradcheck(
    "y = exp(x); y*y + sin(y)",
    [{ shape: [2, 5] }],
    ([x]) => {
      const y = E.exp(x!);
      return E.add(E.mul(y, y), E.sin(y));
    },
    ([x]) => map1(x!, (v) => Math.exp(2 * v) + Math.sin(Math.exp(v))),
  );
  await gradcheck(
    "two inputs sharing a broadcast term",
    [{ shape: [3, 4] }, { shape: [4] }],
    ([a, b]) => {
      const s = E.add(a!, b!);
      return E.mul(s, E.sub(s, a!));
    },
    ([a, b]) => map2(a!, [3, 4], b!, [4], (x, y) => (x + y) * y).data,
  );
});

gpuTest("BackwardNotSupportedError for an op without a backward rule", async () => {
  for (
    const [name, f] of [["sign", E.sign], ["gt_s", (x: Tensor) => E.gt(x, 0)], [
      "eq",
      (x: Tensor) => E.eq(x, x),
    ]] as const
  ) {
    const p = parameter(`nb_${name}`, randomArray(5, 92), [5]);
    const e = await assertThrows(
      () => tidy(() => backward(sum(E.mul(f(p), p)))),
      `op ${name} has no backward rule`,
      "noGrad",
    );
    if (!(e instanceof BackwardNotSupportedError)) throw new Error(`${name}: ${e.name}`);
    p.dispose();
  }
});

gpuTest("backward on a non-scalar needs an explicit gradient of the same shape", async () => {
  const v = randomArray(6, 93);
  const p = parameter("ns", v, [2, 3]);
  await assertThrows(() => tidy(() => backward(E.mul(p, 2))), "backward", "[2, 3]", "not a scalar");
  await assertThrows(
    () => tidy(() => backward(E.mul(p, 2), E.ones([3]))),
    "backward",
    "gradient shape [3]",
    "[2, 3]",
  );
  const gv = randomArray(6, 94);
  tidy(() => backward(E.mul(p, 2), fromData(gv, [2, 3], "f32")));
  assertClose(await read(p.grad!), map1(gv, (g) => 2 * g), {
    atol: 1e-6,
    rtol: 1e-6,
    label: "explicit",
  });
  p.dispose();
});

gpuTest("detach of a realized tensor stops the gradient", async () => {
  const v = randomArray(5, 95);
  const p = parameter("dt", v, [5]);
  const y = E.mul(p, 3);
  realize([y]);
  const d = detach(y);
  if (d.requiresGrad) throw new Error("detached tensor requires grad");
  tidy(() => backward(sum(E.mul(d, p))));
  // d/dp of sum(d * p) with d constant is d = 3v (not 6v)
  assertClose(await read(p.grad!), map1(v, (x) => 3 * x), {
    atol: 1e-6,
    rtol: 1e-6,
    label: "detach",
  });
  p.dispose();
});

gpuTest("detach() of an unrealized tensor is computed", async () => {
  // detach is a view without backward, so it realizes with its base
  const p = parameter("dt2", new Float32Array([1, 2, 3]), [3]);
  const d = detach(E.mul(p, 2));
  assertClose(await read(d), [2, 4, 6], { atol: 0, rtol: 0, label: "detach(lazy)" });
  p.dispose();
});
