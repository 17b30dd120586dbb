import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import {
  channelsGeom,
  groupGeom,
  lastAxisGeom,
  type NormGeom,
  normRef,
  normVjpRef,
} from "../ref/norm.ts";
import { fromData } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { permute, read, slice } from "../../engine/ops/movement.ts";
import { groupNorm, layerNorm, rmsNorm, rmsNormChannels } from "../../engine/ops/norm.ts";
import { type Tensor, tidy } from "../../engine/tensor.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const f32 = (d: Float32Array, s: number[]) => fromData(d, s, "f32");

/** Runs `fn` in a scope and reads its result back. */
async function run(fn: () => Tensor): Promise<Float32Array> {
  const y = tidy(fn);
  const v = await read(y);
  y.dispose();
  return v;
}

/** A norm under test: the engine op, its float64 geometry and its channel count. */
interface NormCase {
  name: string;
  shape: number[];
  geom: NormGeom;
  channels: number;
  weight: boolean;
  bias: boolean;
  op: (x: Tensor, w?: Tensor, b?: Tensor) => Tensor;
}

function layerCase(shape: number[], affine: boolean, eps = 1e-5): NormCase {
  return {
    name: `layerNorm${affine ? "+affine" : ""}`,
    shape,
    geom: lastAxisGeom("layer", shape, eps),
    channels: shape.at(-1)!,
    weight: affine,
    bias: affine,
    op: (x, w, b) => layerNorm(x, w, b, eps),
  };
}
function rmsCase(shape: number[], weight: boolean, eps = 1e-6): NormCase {
  return {
    name: `rmsNorm${weight ? "+weight" : ""}`,
    shape,
    geom: lastAxisGeom("rms", shape, eps),
    channels: shape.at(-1)!,
    weight,
    bias: false,
    op: (x, w) => rmsNorm(x, w, eps),
  };
}
function channelsCase(shape: number[], affine: boolean, eps = 1e-5): NormCase {
  return {
    name: `rmsNormChannels${affine ? "+affine" : ""}`,
    shape,
    geom: channelsGeom(shape, eps),
    channels: shape[1]!,
    weight: affine,
    bias: affine,
    op: (x, w, b) => rmsNormChannels(x, w, b, eps),
  };
}
function groupCase(shape: number[], groups: number, affine: boolean, eps = 1e-5): NormCase {
  return {
    name: `groupNorm(${groups})${affine ? "+affine" : ""}`,
    shape,
    geom: groupGeom(shape, groups, eps),
    channels: shape[1]!,
    weight: affine,
    bias: affine,
    op: (x, w, b) => groupNorm(x, groups, w, b, eps),
  };
}

function inputs(c: NormCase, seed: number) {
  return {
    x: randomArray(numel(c.shape), seed, -2, 3),
    w: randomArray(c.channels, seed + 1, 0.5, 1.5),
    b: randomArray(c.channels, seed + 2, -0.5, 0.5),
  };
}

async function checkForward(c: NormCase, seed: number, tol = 2e-5): Promise<void> {
  const { x, w, b } = inputs(c, seed);
  const got = await run(() =>
    c.op(
      f32(x, c.shape),
      c.weight ? f32(w, [c.channels]) : undefined,
      c.bias ? f32(b, [c.channels]) : undefined,
    )
  );
  const want = normRef(x, c.geom, c.weight ? w : undefined, c.bias ? b : undefined);
  assertClose(got, want, { atol: tol, rtol: tol, shape: c.shape, label: `${c.name} [${c.shape}]` });
}

/** Backward through the engine for an explicit dL/dy vs the float64 VJP. */
async function checkBackward(c: NormCase, seed: number): Promise<void> {
  const { x, w, b } = inputs(c, seed);
  const gy = randomArray(numel(c.shape), seed + 3, -1, 1);
  const px = parameter("x", x, c.shape);
  const pw = c.weight ? parameter("w", w, [c.channels]) : undefined;
  const pb = c.bias ? parameter("b", b, [c.channels]) : undefined;
  tidy(() => {
    const y = c.op(px, pw, pb);
    backward(y, f32(gy, c.shape));
  });
  const want = normVjpRef(x, gy, c.geom, c.channels, c.weight ? w : undefined);
  const label = `${c.name} [${c.shape}] backward`;
  const tol = { atol: 5e-5, rtol: 1e-4 };
  assertClose(await read(px.grad!), want.dx, { ...tol, shape: c.shape, label: `${label} dx` });
  if (pw) assertClose(await read(pw.grad!), want.dw, { ...tol, label: `${label} dweight` });
  if (pb) assertClose(await read(pb.grad!), want.db, { ...tol, label: `${label} dbias` });
  for (const p of [px, pw, pb]) p?.dispose();
}

const ODD_ROWS = [1, 7, 33];
const ODD_N = [1, 7, 33, 257, 1000];

gpuTest("layerNorm: forward at odd shapes (rows 1, 7, 33; n 1..1000) vs float64", async () => {
  for (const rows of ODD_ROWS) {
    for (const n of ODD_N) {
      await checkForward(layerCase([rows, n], true), rows + n);
      await checkForward(layerCase([rows, n], false), rows * n);
    }
  }
});

gpuTest("rmsNorm: forward at odd shapes (rows 1, 7, 33; n 1..1000) vs float64", async () => {
  for (const rows of ODD_ROWS) {
    for (const n of ODD_N) {
      await checkForward(rmsCase([rows, n], true), rows + n);
      await checkForward(rmsCase([rows, n], false), rows * n);
    }
  }
});

gpuTest("rmsNormChannels: forward over axis 1 of N C ... vs float64", async () => {
  const shapes = [[1, 7, 33], [7, 33, 5], [2, 257, 3], [3, 8, 1], [7, 33], [2, 1000, 7], [
    2,
    5,
    3,
    4,
    5,
  ], [1, 1, 7]];
  for (const s of shapes) {
    await checkForward(channelsCase(s, true), numel(s));
    await checkForward(channelsCase(s, false), numel(s) + 1);
  }
});

gpuTest("groupNorm: forward (short, scalar and vec4 rows) vs float64", async () => {
  const cases: [number[], number][] = [
    [[2, 8, 3, 4, 5], 4], // n = 120, S % 4 == 0: vec4 rows
    [[3, 6, 7], 3], // n = 14: one invocation per row
    [[2, 6, 33], 2], // n = 99: scalar rows
    [[1, 33, 7], 11],
    [[2, 12, 4, 4], 3], // n = 64, S = 16
    [[2, 4, 257], 1], // n = 1028 but S % 4 != 0: scalar rows
    [[7, 4], 2], // no spatial axes
    [[1, 32, 1000], 32],
  ];
  for (const [s, g] of cases) {
    await checkForward(groupCase(s, g, true), numel(s));
    await checkForward(groupCase(s, g, false), numel(s) + 1);
  }
});

gpuTest("norms: non-contiguous inputs and weights (permuted and sliced views)", async () => {
  const base = [5, 33, 7];
  const x = randomArray(numel(base), 31, -2, 2);
  // x permuted to [7, 5, 33]; dense copy for the reference
  const shape = [7, 5, 33];
  const xp = new Float64Array(numel(base));
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 33; j++) {
      for (let k = 0; k < 7; k++) xp[(k * 5 + i) * 33 + j] = x[(i * 33 + j) * 7 + k]!;
    }
  }
  const wBig = randomArray(40, 32, 0.5, 1.5);
  const bBig = randomArray(40, 33, -0.5, 0.5);
  // weight/bias slices [1, 34) and [3, 36): offsets not 4-aligned
  const w33 = wBig.subarray(1, 34);
  const b33 = bBig.subarray(3, 36);
  const xv = () => permute(f32(x, base), [2, 0, 1]);
  const wv = () => slice(f32(wBig, [40]), [1], [34]);
  const bv = () => slice(f32(bBig, [40]), [3], [36]);
  const cases: [string, () => Tensor, Float64Array][] = [
    [
      "layerNorm",
      () => layerNorm(xv(), wv(), bv()),
      normRef(xp, lastAxisGeom("layer", shape, 1e-5), w33, b33),
    ],
    ["rmsNorm", () => rmsNorm(xv(), wv()), normRef(xp, lastAxisGeom("rms", shape, 1e-6), w33)],
  ];
  for (const [name, fn, want] of cases) {
    assertClose(await run(fn), want, { atol: 2e-5, rtol: 2e-5, shape, label: `${name} permuted` });
  }
  // rmsNormChannels on a channels-last tensor viewed as N C L: [5, 33, 7] -> [5, 7, 33]
  const xc = new Float64Array(numel(base));
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 33; j++) {
      for (let k = 0; k < 7; k++) xc[(i * 7 + k) * 33 + j] = x[(i * 33 + j) * 7 + k]!;
    }
  }
  const w7 = wBig.subarray(1, 8);
  const b7 = bBig.subarray(3, 10);
  const gotC = await run(() =>
    rmsNormChannels(
      permute(f32(x, base), [0, 2, 1]),
      slice(f32(wBig, [40]), [1], [8]),
      slice(f32(bBig, [40]), [3], [10]),
    )
  );
  assertClose(gotC, normRef(xc, channelsGeom([5, 7, 33], 1e-5), w7, b7), {
    atol: 2e-5,
    rtol: 2e-5,
    label: "rmsNormChannels permuted",
  });
  // groupNorm on a sliced input: [5, 33, 7][1:4, 3:27, :] -> [3, 24, 7], 6 groups
  const gs = [3, 24, 7];
  const xs = new Float64Array(numel(gs));
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 24; j++) {
      for (let k = 0; k < 7; k++) xs[(i * 24 + j) * 7 + k] = x[((i + 1) * 33 + j + 3) * 7 + k]!;
    }
  }
  const gotG = await run(() =>
    groupNorm(slice(f32(x, base), [1, 3, 0], [4, 27, 7]), 6, slice(f32(wBig, [40]), [1], [25]))
  );
  assertClose(gotG, normRef(xs, groupGeom(gs, 6, 1e-5), wBig.subarray(1, 25)), {
    atol: 2e-5,
    rtol: 2e-5,
    label: "groupNorm sliced",
  });
});

gpuTest("norms backward: fused kernels + parameter reductions vs float64 VJP", async () => {
  const cases = [
    layerCase([7, 1], true),
    layerCase([7, 7], true),
    layerCase([7, 33], true),
    layerCase([7, 257], true),
    layerCase([33, 1000], true),
    layerCase([7, 1000], false),
    rmsCase([7, 7], true),
    rmsCase([7, 257], true),
    rmsCase([7, 1000], true),
    rmsCase([33, 33], false),
    channelsCase([2, 8, 3, 4, 5], true),
    channelsCase([7, 33, 5], true),
    channelsCase([3, 257], true),
    channelsCase([2, 1000, 3], false),
    groupCase([2, 8, 3, 4, 5], 4, true),
    groupCase([3, 6, 7], 3, true),
    groupCase([2, 6, 33], 2, true),
    groupCase([2, 4, 257], 1, true),
    groupCase([1, 32, 1000], 8, false),
  ];
  let seed = 100;
  for (const c of cases) await checkBackward(c, seed++);
});

gpuTest("norms: gradcheck w.r.t. x, weight and bias (col, row, row4 layouts)", async () => {
  const check = async (c: NormCase) => {
    const ins = [{ shape: c.shape }];
    if (c.weight) ins.push({ shape: [c.channels] });
    if (c.bias) ins.push({ shape: [c.channels] });
    await gradcheck(
      `${c.name} [${c.shape}]`,
      ins,
      (ts) => c.op(ts[0]!, c.weight ? ts[1] : undefined, c.bias ? ts[c.weight ? 2 : 1] : undefined),
      (xs) =>
        normRef(
          xs[0]!,
          c.geom,
          c.weight ? xs[1] : undefined,
          c.bias ? xs[c.weight ? 2 : 1] : undefined,
        ),
    );
  };
  for (const s of [[3, 7], [2, 37], [2, 40]]) {
    await check(layerCase(s, true));
    await check(rmsCase(s, true));
  }
  await check(layerCase([3, 7], false));
  await check(rmsCase([2, 40], false));
  await check(channelsCase([2, 5, 3], true));
  await check(channelsCase([2, 5, 2, 3], false));
  await check(groupCase([2, 6, 5], 3, true));
  await check(groupCase([1, 4, 20], 2, true)); // n = 40, S = 20: vec4 rows
  await check(groupCase([1, 4, 17], 2, true)); // n = 34: scalar rows
  await check(groupCase([2, 4, 3], 2, false));
});

gpuTest("norms: gradcheck through a permuted input", async () => {
  await gradcheck(
    "layerNorm permuted",
    [{ shape: [5, 3] }],
    ([x]) => layerNorm(permute(x!, [1, 0])),
    ([x]) => {
      const t = new Float64Array(15);
      for (let i = 0; i < 5; i++) for (let j = 0; j < 3; j++) t[j * 5 + i] = x![i * 3 + j]!;
      return normRef(t, lastAxisGeom("layer", [3, 5], 1e-5));
    },
  );
});

gpuTest("norms: a second shape reuses the compiled pipelines", async () => {
  const rt = gpu();
  await checkBackward(layerCase([5, 257], true), 1);
  await checkBackward(groupCase([2, 6, 33], 3, true), 2);
  const before = rt.counters.pipelinesCompiled;
  await checkBackward(layerCase([9, 301], true), 3);
  await checkBackward(groupCase([3, 6, 21], 3, true), 4);
  if (rt.counters.pipelinesCompiled !== before) {
    throw new Error(
      `compiled ${rt.counters.pipelinesCompiled - before} new pipelines for new shapes`,
    );
  }
});

gpuTest("norms: shape errors name the op and both shapes", async () => {
  const x = () => f32(new Float32Array(24), [2, 3, 4]);
  const v = (n: number) => f32(new Float32Array(n), [n]);
  await assertThrows(() => tidy(() => layerNorm(x(), v(3))), "layerNorm", "[3]", "[2, 3, 4]");
  await assertThrows(() => tidy(() => rmsNorm(x(), v(5))), "rmsNorm", "[5]", "[2, 3, 4]");
  await assertThrows(
    () => tidy(() => rmsNormChannels(x(), v(3), v(4))),
    "rmsNormChannels",
    "bias",
    "[4]",
  );
  await assertThrows(() => tidy(() => groupNorm(x(), 2)), "groupNorm", "3 channels", "2 groups");
  await assertThrows(() => tidy(() => rmsNormChannels(v(4))), "rmsNormChannels", "[4]");
});
