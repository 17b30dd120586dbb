/**
 * conv3d forward and gradients against the float64 reference at odd shapes: odd T/H/W, channels
 * that are not multiples of 4, strides 2 with the floor rule, groups, depthwise, dilation, T = 1,
 * strided inputs; both the scalar and the vec4 paths of each kernel; a gradcheck; the pipeline
 * count across shapes.
 */
import { atDeviceLimit, gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import {
  conv3dGradRef,
  conv3dRef,
  type ConvCase,
  convOutSize,
  type RefConv,
  refConv,
} from "../ref/conv3d.ts";
import { fromData } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { narrow, permute, read, readAll } from "../../engine/ops/movement.ts";
import { conv3d, forceConv3dTiles, replicatePad } from "../../engine/ops/conv3d.ts";
import { keep, noGrad, type Tensor, tidy } from "../../engine/tensor.ts";

const tol = { atol: 1e-4, rtol: 1e-4 };
type T3 = [number, number, number];

interface Case extends ConvCase {
  /** build x as a permuted / sliced view instead of a dense tensor */
  view?: "permuted" | "sliced";
}

/** The input tensor with the values `x` (dense [N, C, T, H, W] order), possibly as a view. */
function inputTensor(c: Case, x: Float32Array): Tensor {
  const [T, H, W] = c.size;
  const shape = [c.n, c.cin, T, H, W];
  if (c.view === "permuted") {
    // stored [N, T, C, H, W], permuted back
    const s = new Float32Array(x.length);
    for (let n = 0; n < c.n; n++) {
      for (let ci = 0; ci < c.cin; ci++) {
        for (let t = 0; t < T; t++) {
          for (let i = 0; i < H * W; i++) {
            s[((n * T + t) * c.cin + ci) * H * W + i] = x[((n * c.cin + ci) * T + t) * H * W + i]!;
          }
        }
      }
    }
    return permute(fromData(s, [c.n, T, c.cin, H, W], "f32"), [0, 2, 1, 3, 4]);
  }
  if (c.view === "sliced") {
    // stored with one extra leading and trailing column along W
    const s = new Float32Array(c.n * c.cin * T * H * (W + 2)).fill(7);
    for (let r = 0; r < c.n * c.cin * T * H; r++) {
      for (let w = 0; w < W; w++) s[r * (W + 2) + w + 1] = x[r * W + w]!;
    }
    return narrow(fromData(s, [c.n, c.cin, T, H, W + 2], "f32"), 4, 1, W);
  }
  return fromData(x, shape, "f32");
}

/** Forward and the three gradients of one case against the reference. */
async function check(c: Case): Promise<void> {
  const rc = refConv(c);
  const [T, H, W] = c.size;
  const crg = c.cin / rc.groups;
  const xData = randomArray(c.n * c.cin * T * H * W, 11);
  const wData = randomArray(c.cout * crg * c.k[0] * c.k[1] * c.k[2], 12);
  const bData = randomArray(c.cout, 13);
  const o = convOutSize(rc);
  const dyData = randomArray(c.n * c.cout * o[0] * o[1] * o[2], 14);
  const xp = parameter("x", xData, [c.n, c.cin, T, H, W]);
  const wp = parameter("w", wData, [c.cout, crg, ...c.k]);
  const bp = c.bias ? parameter("b", bData, [c.cout]) : undefined;
  const y = tidy(() => {
    const xin = c.view ? inputTensor(c, xData) : xp;
    // views of a parameter copy the values, so gradients still reach xp via the view
    const xv = c.view ? xin : xp;
    const out = conv3d(xv, wp, {
      bias: bp,
      stride: rc.stride,
      padding: rc.padding,
      dilation: rc.dilation,
      groups: rc.groups,
    });
    if (!c.view) backward(out, fromData(dyData, out.shape, "f32"));
    return keep(out);
  });
  const yRef = conv3dRef(rc, xData, wData, c.bias ? bData : undefined);
  assertClose(await read(y), yRef, {
    ...tol,
    shape: [c.n, c.cout, ...o],
    label: `${c.label}: y`,
  });
  if (!c.view) {
    const g = conv3dGradRef(rc, xData, wData, dyData);
    const [gx, gw] = await readAll([xp.grad!, wp.grad!]);
    assertClose(gx!, g.dx, { ...tol, shape: xp.shape, label: `${c.label}: grad_x` });
    assertClose(gw!, g.dw, { ...tol, shape: wp.shape, label: `${c.label}: grad_weight` });
    if (bp) assertClose(await read(bp.grad!), g.db, { ...tol, label: `${c.label}: grad_bias` });
  }
  for (const t of [y, xp, wp, bp]) t?.dispose();
}

const CASES: Case[] = [
  {
    label: "k3 pad1, C3→5, odd T/H/W",
    n: 2,
    cin: 3,
    cout: 5,
    size: [5, 7, 3],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "k3 pad1, C6→20, W 8 (vec4 paths, co 16)",
    n: 1,
    cin: 6,
    cout: 20,
    size: [3, 5, 8],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "k3 pad1, C16→16, W 12 (vec4, full blocks)",
    n: 2,
    cin: 16,
    cout: 16,
    size: [3, 3, 12],
    k: [3, 3, 3],
    padding: [1, 1, 1],
  },
  {
    label: "k3 stride 2, odd sizes (floor rule)",
    n: 2,
    cin: 5,
    cout: 6,
    size: [7, 5, 9],
    k: [3, 3, 3],
    stride: [2, 2, 2],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "k3 stride (1,2,2), W 16 (vec4 grad input)",
    n: 1,
    cin: 4,
    cout: 9,
    size: [3, 8, 16],
    k: [3, 3, 3],
    stride: [1, 2, 2],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "k3 stride 2 no padding, even sizes",
    n: 1,
    cin: 3,
    cout: 4,
    size: [6, 6, 8],
    k: [3, 3, 3],
    stride: [2, 2, 2],
  },
  {
    label: "groups 2, k (3,1,5), padding (1,0,2)",
    n: 2,
    cin: 6,
    cout: 10,
    size: [5, 3, 7],
    k: [3, 1, 5],
    padding: [1, 0, 2],
    groups: 2,
    bias: true,
  },
  {
    label: "groups 3, W 8, stride (2,1,2)",
    n: 1,
    cin: 9,
    cout: 6,
    size: [5, 4, 8],
    k: [3, 3, 3],
    stride: [2, 1, 2],
    padding: [1, 1, 1],
    groups: 3,
  },
  {
    label: "depthwise k3, C5",
    n: 2,
    cin: 5,
    cout: 5,
    size: [3, 5, 7],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    groups: 5,
    bias: true,
  },
  {
    label: "depthwise k5 pad 2, C6, W 12",
    n: 1,
    cin: 6,
    cout: 6,
    size: [5, 7, 12],
    k: [5, 5, 5],
    padding: [2, 2, 2],
    groups: 6,
  },
  {
    label: "depthwise k3, W 8, stride (2,1,1) (vec4 depthwise paths)",
    n: 2,
    cin: 7,
    cout: 7,
    size: [5, 3, 8],
    k: [3, 3, 3],
    stride: [2, 1, 1],
    padding: [1, 1, 1],
    groups: 7,
    bias: true,
  },
  {
    label: "depthwise k (1,3,5), W 20, dilation (2,1,1)",
    n: 1,
    cin: 3,
    cout: 3,
    size: [5, 4, 20],
    k: [1, 3, 5],
    padding: [0, 1, 2],
    dilation: [2, 1, 1],
    groups: 3,
  },
  {
    label: "depthwise stride (1,2,2) (general kernels)",
    n: 1,
    cin: 5,
    cout: 5,
    size: [3, 7, 9],
    k: [3, 3, 3],
    stride: [1, 2, 2],
    padding: [1, 1, 1],
    groups: 5,
    bias: true,
  },
  {
    label: "depthwise multiplier 2 (C3→6)",
    n: 1,
    cin: 3,
    cout: 6,
    size: [3, 4, 5],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    groups: 3,
  },
  {
    label: "dilation 2 pad 2",
    n: 2,
    cin: 4,
    cout: 6,
    size: [5, 7, 6],
    k: [3, 3, 3],
    padding: [2, 2, 2],
    dilation: [2, 2, 2],
    bias: true,
  },
  {
    label: "mixed stride (2,1,3) dilation (1,2,1)",
    n: 1,
    cin: 3,
    cout: 5,
    size: [7, 9, 11],
    k: [3, 3, 2],
    stride: [2, 1, 3],
    padding: [1, 2, 1],
    dilation: [1, 2, 1],
  },
  { label: "1x1x1, C7→9, no bias (matmul)", n: 2, cin: 7, cout: 9, size: [3, 5, 7], k: [1, 1, 1] },
  {
    label: "1x1x1 groups 2, C8→12 (batched matmul)",
    n: 2,
    cin: 8,
    cout: 12,
    size: [3, 2, 5],
    k: [1, 1, 1],
    groups: 2,
    bias: true,
  },
  {
    label: "1x1x1 groups 4, C12→12 (direct kernel)",
    n: 2,
    cin: 12,
    cout: 12,
    size: [3, 4, 5],
    k: [1, 1, 1],
    groups: 4,
  },
  {
    label: "1x1x1 stride (1,2,2), C5→7 (direct kernel)",
    n: 1,
    cin: 5,
    cout: 7,
    size: [3, 5, 9],
    k: [1, 1, 1],
    stride: [1, 2, 2],
    bias: true,
  },
  {
    label: "1x1x1 padding 1, C6→5, W 8 (direct kernel, vec4)",
    n: 1,
    cin: 6,
    cout: 5,
    size: [2, 3, 8],
    k: [1, 1, 1],
    padding: [1, 1, 1],
  },
  {
    label: "1x1x1, C8→12, W 4 (matmul)",
    n: 1,
    cin: 8,
    cout: 12,
    size: [1, 3, 4],
    k: [1, 1, 1],
    bias: true,
  },
  {
    label: "T = 1, k (1,3,3)",
    n: 2,
    cin: 3,
    cout: 5,
    size: [1, 7, 5],
    k: [1, 3, 3],
    padding: [0, 1, 1],
    bias: true,
  },
  {
    label: "T = 1, k3 pad 1 (single frame)",
    n: 1,
    cin: 5,
    cout: 6,
    size: [1, 6, 8],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "T = H = W = 1, k3 pad 1",
    n: 3,
    cin: 2,
    cout: 3,
    size: [1, 1, 1],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "stride (1,1,2), W 36 (16-wide blocks per residue class)",
    n: 1,
    cin: 5,
    cout: 4,
    size: [2, 3, 36],
    k: [3, 3, 3],
    stride: [1, 1, 2],
    padding: [1, 1, 1],
    bias: true,
  },
  {
    label: "one output row (unchunked weight grad), C9→17",
    n: 1,
    cin: 9,
    cout: 17,
    size: [1, 1, 12],
    k: [1, 1, 3],
    padding: [0, 0, 1],
    bias: true,
  },
  {
    label: "kernel larger than stride, no padding, W 33",
    n: 1,
    cin: 2,
    cout: 3,
    size: [3, 3, 33],
    k: [1, 3, 5],
    stride: [1, 1, 2],
  },
];

for (const c of CASES) {
  gpuTest(`conv3d matches float64: ${c.label}`, () => check(c));
}

gpuTest("conv3d with the GPU tiles (4 positions, 64 invocations) matches float64", async () => {
  forceConv3dTiles("gpu");
  try {
    for (const c of CASES) await check({ ...c, label: `${c.label} [gpu tiles]` });
  } finally {
    forceConv3dTiles(null);
  }
});

gpuTest("conv3d reads permuted and sliced input views", async () => {
  await check({
    label: "permuted x",
    n: 2,
    cin: 3,
    cout: 5,
    size: [3, 5, 8],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    view: "permuted",
    bias: true,
  });
  await check({
    label: "sliced x",
    n: 1,
    cin: 4,
    cout: 6,
    size: [3, 4, 8],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    view: "sliced",
  });
  await check({
    label: "permuted x, 1x1x1 (matmul)",
    n: 2,
    cin: 5,
    cout: 3,
    size: [3, 2, 7],
    k: [1, 1, 1],
    view: "permuted",
    bias: true,
  });
  await check({
    label: "sliced x, depthwise k3",
    n: 1,
    cin: 4,
    cout: 4,
    size: [2, 3, 9],
    k: [3, 3, 3],
    padding: [1, 1, 1],
    groups: 4,
    view: "sliced",
  });
});

gpuTest("conv3d at T = 1 equals the 2-D convolution with the middle temporal tap", async () => {
  // kT = 3 with padding 1 on a single frame uses only weight[:, :, 1]
  const [n, cin, cout, H, W] = [2, 3, 4, 5, 6];
  const x = randomArray(n * cin * H * W, 21);
  const w = randomArray(cout * cin * 27, 22);
  const b = randomArray(cout, 23);
  const w2 = new Float32Array(cout * cin * 9);
  for (let i = 0; i < cout * cin; i++) {
    for (let j = 0; j < 9; j++) w2[i * 9 + j] = w[i * 27 + 9 + j]!;
  }
  const f = (d: Float32Array, s: number[]) => fromData(d, s, "f32");
  const [y3, y1] = await readAll([
    conv3d(f(x, [n, cin, 1, H, W]), f(w, [cout, cin, 3, 3, 3]), { bias: f(b, [cout]), padding: 1 }),
    conv3d(f(x, [n, cin, 1, H, W]), f(w2, [cout, cin, 1, 3, 3]), {
      bias: f(b, [cout]),
      padding: [0, 1, 1],
    }),
  ]);
  assertClose(y3!, y1!, { ...tol, label: "T=1 kT=3 vs kT=1" });
  const ref = conv3dRef(
    {
      n,
      cin,
      cout,
      groups: 1,
      size: [1, H, W],
      k: [1, 3, 3],
      stride: [1, 1, 1],
      padding: [0, 1, 1],
      dilation: [1, 1, 1],
    },
    x,
    w2,
    b,
  );
  assertClose(y1!, ref, { ...tol, label: "T=1 vs reference" });
});

gpuTest("conv3d gradcheck (x, weight, bias; stride 2, groups 2)", async () => {
  const c: RefConv = {
    n: 1,
    cin: 4,
    cout: 2,
    groups: 2,
    size: [3, 4, 3],
    k: [3, 2, 3],
    stride: [2, 1, 2],
    padding: [1, 0, 1],
    dilation: [1, 1, 1],
  };
  await gradcheck(
    "conv3d",
    [{ shape: [1, 4, 3, 4, 3] }, { shape: [2, 2, 3, 2, 3] }, { shape: [2] }],
    ([x, w, b]) => conv3d(x!, w!, { bias: b, stride: c.stride, padding: c.padding, groups: 2 }),
    ([x, w, b]) => conv3dRef(c, x!, w!, b!),
  );
});

gpuTest(
  "conv3d: a new shape with the same tile config compiles no new pipeline",
  () =>
    atDeviceLimit(async () => {
      const rt = gpu();
      const run = async (T: number, H: number, W: number) => {
        const x = parameter("x", randomArray(2 * 6 * T * H * W, 1), [2, 6, T, H, W]);
        const w = parameter("w", randomArray(10 * 6 * 27, 2), [10, 6, 3, 3, 3]);
        const b = parameter("b", randomArray(10, 3), [10]);
        const y = tidy(() => {
          const out = conv3d(x, w, { bias: b, padding: 1 });
          backward(out, noGrad(() => fromData(randomArray(out.size, 4), out.shape, "f32")));
          return keep(out);
        });
        await readAll([y, x.grad!, w.grad!, b.grad!]);
        for (const t of [y, x, w, b]) t.dispose();
      };
      const compiled = () => rt.counters.pipelinesCompiled;
      const expectNone = (since: number, what: string) => {
        if (compiled() !== since) {
          throw new Error(`${what} compiled ${compiled() - since} pipeline(s); expected none`);
        }
      };
      // channels 6→10, rows of at most 8 outputs that are not multiples of 4: one tile config
      await run(3, 5, 7);
      const narrow = compiled();
      await run(5, 9, 6);
      await run(1, 3, 5);
      expectNone(narrow, "new narrow shapes");
      // rows wider than 8 take the 16-position tile: compiled once, then reused
      await run(2, 3, 13);
      const wide = compiled();
      await run(4, 7, 30);
      await run(3, 2, 9);
      expectNone(wide, "new wide shapes");
    }),
);

gpuTest("conv3d: shape errors name the op and both shapes", async () => {
  const f = (s: number[]) => fromData(new Float32Array(s.reduce((a, b) => a * b, 1)), s, "f32");
  await assertThrows(
    () => conv3d(f([1, 4, 3, 3, 3]), f([2, 3, 3, 3, 3])),
    "conv3d",
    "[1, 4, 3, 3, 3]",
    "[2, 3, 3, 3, 3]",
  );
  await assertThrows(() => conv3d(f([1, 4, 3, 3]), f([2, 4, 1, 1, 1])), "conv3d", "[1, 4, 3, 3]");
  await assertThrows(
    () => conv3d(f([1, 4, 3, 3, 3]), f([2, 2, 1, 1, 1]), { groups: 3 }),
    "conv3d",
    "groups 3",
  );
  await assertThrows(
    () => conv3d(f([1, 4, 2, 2, 2]), f([2, 4, 3, 3, 3])),
    "conv3d",
    "empty output",
  );
  await assertThrows(
    () => conv3d(f([1, 4, 3, 3, 3]), f([2, 4, 1, 1, 1]), { bias: f([3]) }),
    "conv3d",
    "bias [3]",
  );
  await assertThrows(
    () => conv3d(f([1, 4, 3, 3, 3]), f([2, 4, 1, 1, 1]), { stride: 0 }),
    "conv3d",
    "stride",
  );
});

gpuTest("replicatePad repeats the edge slices and sends their gradient back", async () => {
  const x = parameter("x", Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 1, 3, 2, 1]);
  const y = tidy(() => {
    const p = replicatePad(x, 2, 2, 1);
    backward(p, fromData(new Float32Array(12).fill(1), p.shape, "f32"));
    return keep(p);
  });
  assertClose(await read(y), [1, 2, 1, 2, 1, 2, 3, 4, 5, 6, 5, 6], { label: "replicatePad" });
  assertClose(await read(x.grad!), [3, 3, 1, 1, 2, 2], { label: "replicatePad grad" });
  y.dispose();
  x.dispose();
});
