/**
 * conv3d, its input gradient and its weight gradient with tensors over the storage-binding limit
 * (lowered to 16 KiB): each op is cut into pieces (batch items; frame slices with their halo;
 * blocks of groups, output channels and accumulated reduction channels) bound as windows. Every
 * case checks the windowed results against the float64 reference, against the same ops run
 * unwindowed (within 1e-6), and that the windowed run really dispatched more pieces. Covers odd
 * sizes, strides with the floor rule, groups, depthwise, vec4 rows, the GPU tiles, offset inputs,
 * f16 / bf16 weights, and the error when one frame of one channel cannot fit.
 */
import { gpu, gpuTest, withBindingLimit } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { conv3dGradRef, conv3dRef, type ConvCase, convOutSize, refConv } from "../ref/conv3d.ts";
import { fromData } from "../../engine/graph.ts";
import { narrow, readAll } from "../../engine/ops/movement.ts";
import {
  conv3d,
  conv3dGeometry,
  conv3dInputGrad,
  conv3dWeightGrad,
  forceConv3dTiles,
} from "../../engine/ops/conv3d.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../engine/dtype.ts";
import type { Tensor } from "../../engine/tensor.ts";

/** The lowered binding limit: 4028 f32 elements per window. */
const LIMIT = 16384;
const tol = { atol: 1e-4, rtol: 1e-4 };
type T3 = [number, number, number];

interface Case extends ConvCase {
  /** 16-bit weight (forward and input gradient only: such weights are frozen) */
  half?: "f16" | "bf16";
  /** x and dy as views at an offset into a larger buffer (one extra leading batch item) */
  offset?: boolean;
}

/** `data` as an `[n, ...rest]` tensor, or a view of it behind one extra leading batch item. */
function batchTensor(data: Float32Array, shape: number[], offset: boolean): Tensor {
  if (!offset) return fromData(data, shape, "f32");
  const item = data.length / shape[0]!;
  const s = new Float32Array(data.length + item).fill(9);
  s.set(data, item);
  return narrow(fromData(s, [shape[0]! + 1, ...shape.slice(1)], "f32"), 0, 1, shape[0]!);
}

/** Runs the three ops of a case; returns the results and the dispatches each took. */
async function runOps(
  c: Case,
  d: { x: Float32Array; w: Float32Array; b: Float32Array; dy: Float32Array },
): Promise<{ out: Float32Array[]; dispatches: number[] }> {
  const rc = refConv(c);
  const rt = gpu();
  const xs = [c.n, c.cin, ...c.size], ws = [c.cout, c.cin / rc.groups, ...c.k];
  const ys = [c.n, c.cout, ...convOutSize(rc)];
  const opts = {
    stride: rc.stride,
    padding: rc.padding,
    dilation: rc.dilation,
    groups: rc.groups,
  };
  const geom = conv3dGeometry(xs, ws, opts);
  const weight = () => {
    if (!c.half) return fromData(d.w, ws, "f32");
    const bits = c.half === "bf16" ? f32ToBf16(d.w) : f32ToF16(d.w);
    return fromData(bits, ws, c.half);
  };
  const ops: (() => Tensor)[] = [
    () =>
      conv3d(batchTensor(d.x, xs, !!c.offset), weight(), {
        ...opts,
        bias: c.bias ? fromData(d.b, [c.cout], "f32") : undefined,
      }),
    () => conv3dInputGrad(batchTensor(d.dy, ys, !!c.offset), weight(), geom),
  ];
  if (!c.half) {
    ops.push(() =>
      conv3dWeightGrad(batchTensor(d.x, xs, !!c.offset), batchTensor(d.dy, ys, !!c.offset), geom)
    );
  }
  const out: Float32Array[] = [], dispatches: number[] = [];
  for (const op of ops) {
    const before = rt.counters.dispatches;
    const t = op();
    const [v] = await readAll([t]);
    t.dispose();
    dispatches.push(rt.counters.dispatches - before);
    out.push(v!);
  }
  return { out, dispatches };
}

/**
 * Windowed and unwindowed results agree within 1e-6 of the tensor's scale (max |value|, at least
 * 1): the windowed ops sum the same products, in another order where they accumulate blocks of
 * reduction channels or partial sums over other row pieces (else the results are identical).
 */
function agree(a: Float32Array, b: Float32Array, label: string): void {
  let scale = 1, diff = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  if (!(a.length === b.length && diff <= 1e-6 * scale)) {
    throw new Error(`${label}: max difference ${diff} over 1e-6 of the scale ${scale}`);
  }
}

/** One case: windowed vs the reference, vs the unwindowed ops, and that it split. */
async function check(c: Case): Promise<void> {
  const rc = refConv(c);
  const [T, H, W] = c.size;
  const o = convOutSize(rc);
  const w = randomArray(c.cout * (c.cin / rc.groups) * c.k[0] * c.k[1] * c.k[2], 32);
  const d = {
    x: randomArray(c.n * c.cin * T * H * W, 31),
    // the values the kernels see (a half weight widened)
    w: c.half ? (c.half === "bf16" ? bf16ToF32(f32ToBf16(w)) : f16ToF32(f32ToF16(w))) : w,
    b: randomArray(c.cout, 33),
    dy: randomArray(c.n * c.cout * o[0] * o[1] * o[2], 34),
  };
  const win = await withBindingLimit(LIMIT, () => runOps(c, d));
  const plain = await runOps(c, d);
  const g = conv3dGradRef(rc, d.x, d.w, d.dy);
  const refs = [conv3dRef(rc, d.x, d.w, c.bias ? d.b : undefined), g.dx, g.dw];
  const names = ["y", "grad_input", "grad_weight"];
  win.out.forEach((v, i) => {
    const label = `${c.label}: ${names[i]}`;
    assertClose(v, refs[i]!, { ...tol, label: `${label} (windowed vs float64)` });
    agree(v, plain.out[i]!, `${label} (windowed vs unwindowed)`);
    const [dw, dp] = [win.dispatches[i]!, plain.dispatches[i]!];
    if (dw < dp + 2) {
      throw new Error(`${label}: ${dw} dispatches windowed, ${dp} unwindowed: expected 3+ pieces`);
    }
  });
}

const CASES: Case[] = [
  {
    label: "batch pieces, k3 pad 1, odd sizes",
    n: 10,
    cin: 3,
    cout: 5,
    size: [4, 9, 11],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "channel blocks with accumulated input channels, W 16 (vec4)",
    n: 2,
    cin: 8,
    cout: 10,
    size: [5, 8, 16],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "frame slices with halo, stride (2,1,1), groups 2, single-channel blocks",
    n: 1,
    cin: 4,
    cout: 6,
    size: [12, 10, 36],
    k: [3, 3, 3],
    stride: [2, 1, 1],
    padding: [1, 1, 1],
    groups: 2,
    bias: true,
  },
  {
    label: "frame slices, stride 2 floor rule, dilation (2,1,1), odd W",
    n: 1,
    cin: 3,
    cout: 2,
    size: [13, 11, 35],
    k: [3, 3, 3],
    stride: [2, 2, 2],
    padding: [2, 1, 1],
    dilation: [2, 1, 1],
  },
  {
    label: "depthwise k3, blocks of groups, W 20 (vec4 depthwise)",
    n: 1,
    cin: 6,
    cout: 6,
    size: [6, 12, 20],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    groups: 6,
    bias: true,
  },
  {
    label: "depthwise k (3,3,5), frame slices",
    n: 2,
    cin: 2,
    cout: 2,
    size: [10, 16, 28],
    k: [3, 3, 5],
    padding: [1, 1, 2],
    groups: 2,
  },
  {
    label: "offset inputs, channel blocks",
    n: 2,
    cin: 5,
    cout: 7,
    size: [4, 9, 20],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    bias: true,
    offset: true,
  },
];

for (const c of CASES) {
  gpuTest(`windowed conv3d matches float64 and the unwindowed ops: ${c.label}`, () => check(c));
}

gpuTest("windowed conv3d with the GPU tiles (channel tiles of 4 and 8)", async () => {
  forceConv3dTiles("gpu");
  try {
    for (const c of CASES.slice(1, 4)) await check({ ...c, label: `${c.label} [gpu tiles]` });
  } finally {
    forceConv3dTiles(null);
  }
});

gpuTest("windowed conv3d with f16 / bf16 weights (forward and input gradient)", async () => {
  for (const half of ["bf16", "f16"] as const) {
    await check({ ...CASES[1]!, half, label: `${CASES[1]!.label} [${half} weight]` });
    await check({ ...CASES[2]!, half, label: `${CASES[2]!.label} [${half} weight]` });
  }
});

gpuTest("conv3d ops recorded under the default limit and run under a lower one", async () => {
  // x and dy are views of one item of buffers over the limit: the ops find it out when they
  // encode, and bind windows (one piece each). The weight gradient was recorded with 2 row
  // chunks, whose partial sums (2 x 2025 values) no longer fit one window: one dispatch each.
  const rc = refConv({
    label: "recorded high, run low",
    n: 1,
    cin: 15,
    cout: 5,
    size: [1, 2, 100],
    k: [3, 3, 3],
    padding: [1, 1, 1],
  });
  const xs = [1, 15, 1, 2, 100], ws = [5, 15, 3, 3, 3], ys = [1, 5, 1, 2, 100];
  const x = randomArray(3000, 41), w = randomArray(2025, 42), dy = randomArray(1000, 43);
  const geom = conv3dGeometry(xs, ws, { padding: 1 });
  const rt = gpu();
  forceConv3dTiles("cpu");
  try {
    const run = async (limit: number | null) => {
      const xv = batchTensor(x, xs, true), wt = fromData(w, ws, "f32");
      const dyv = batchTensor(dy, ys, true);
      const ts = [
        conv3d(xv, wt, { padding: 1 }),
        conv3dInputGrad(dyv, wt, geom),
        conv3dWeightGrad(xv, dyv, geom),
      ];
      const before = rt.counters.dispatches;
      const out = limit ? await withBindingLimit(limit, () => readAll(ts)) : await readAll(ts);
      return { out, dispatches: rt.counters.dispatches - before };
    };
    const win = await run(LIMIT), plain = await run(null);
    const g = conv3dGradRef(rc, x, w, dy);
    const refs = [conv3dRef(rc, x, w), g.dx, g.dw];
    ["y", "grad_input", "grad_weight"].forEach((name, i) => {
      assertClose(win.out[i]!, refs[i]!, { ...tol, label: `late limit: ${name}` });
      agree(win.out[i]!, plain.out[i]!, `late limit: ${name} (windowed vs unwindowed)`);
    });
    if (win.dispatches !== plain.dispatches + 1) {
      throw new Error(`late limit: ${win.dispatches} vs ${plain.dispatches} dispatches`);
    }
  } finally {
    forceConv3dTiles(null);
  }
});

gpuTest("windowed conv3d: one frame of one channel over the limit is a clear error", async () => {
  // one 64 x 72 frame is 18432 bytes
  const f = (s: number[]) => fromData(new Float32Array(s.reduce((a, b) => a * b, 1)), s, "f32");
  const xs = [1, 2, 3, 64, 72], ws = [2, 2, 3, 3, 3];
  const geom = conv3dGeometry(xs, ws, { padding: 1 });
  await withBindingLimit(LIMIT, async () => {
    await assertThrows(
      () => conv3d(f(xs), f(ws), { padding: 1 }),
      "conv3d",
      "input [1, 2, 3, 64, 72] (110592 bytes)",
      `limit of ${LIMIT} bytes`,
      "one output and one reduction channel",
    );
    await assertThrows(
      () => conv3dInputGrad(f(xs), f(ws), geom),
      "conv3d_grad_input",
      "dy [1, 2, 3, 64, 72] (110592 bytes)",
      `limit of ${LIMIT} bytes`,
    );
    await assertThrows(
      () => conv3dWeightGrad(f(xs), f(xs), geom),
      "conv3d_grad_weight",
      "x [1, 2, 3, 64, 72] (110592 bytes)",
      `limit of ${LIMIT} bytes`,
    );
  });
});
