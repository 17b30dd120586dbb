import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import {
  applyMap,
  applyMapVjp,
  avgDownMap,
  dupUpMap,
  groupMeanMap,
  type IndexMap,
  pixelShuffle2dMap,
  pixelShuffle3dMap,
  pixelUnshuffle2dMap,
  pixelUnshuffle3dMap,
  repeatInterleaveMap,
  upsampleNearestMap,
} from "../ref/shuffle.ts";
import { permuteRef } from "../ref/movement.ts";
import { fromData } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { permute, read, slice } from "../../engine/ops/movement.ts";
import {
  channelDuplicatingPixelShuffleUpsample,
  channelGroupMean,
  pixelShuffle2d,
  pixelShuffle3d,
  pixelUnshuffle2d,
  pixelUnshuffle3d,
  pixelUnshuffleChannelAveragingDownsample,
  repeatInterleaveChannels,
  upsampleNearest,
} from "../../engine/ops/shuffle.ts";
import { keep, type Tensor, tidy } from "../../engine/tensor.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const TOL = { atol: 1e-5, rtol: 1e-5 };

/** How the op's input is made from the parameter (a strided view or the parameter itself). */
interface InputView {
  name: string;
  /** Shape of the parameter, given the op's input shape. */
  paramShape: (s: number[]) => number[];
  make: (p: Tensor) => Tensor;
  /** CPU version of `make` on row-major data (the param has `paramShape(s)`). */
  ref: (p: Float64Array, s: number[]) => Float64Array;
}

const DIRECT: InputView = {
  name: "dense",
  paramShape: (s) => s,
  make: (p) => p,
  ref: (p) => p,
};

/** The input is a permuted view: the parameter is stored as [B, C, W, H, T]. */
const PERMUTED: InputView = {
  name: "permuted",
  paramShape: (s) => [s[0]!, s[1]!, s[4]!, s[3]!, s[2]!],
  make: (p) => permute(p, [0, 1, 4, 3, 2]),
  ref: (p, s) => permuteRef(p, [s[0]!, s[1]!, s[4]!, s[3]!, s[2]!], [0, 1, 4, 3, 2]).data,
};

/** The input is a slice: the parameter has 2 extra channels and 3 extra columns. */
const SLICED: InputView = {
  name: "sliced",
  paramShape: (s) => [s[0]!, s[1]! + 2, s[2]!, s[3]!, s[4]! + 3],
  make: (p) =>
    slice(p, [0, 1, 0, 0, 2], [p.shape[0]!, p.shape[1]! - 1, p.shape[2]!, p.shape[3]!, -1]),
  ref: (p, s) => {
    const [b, c, t, h, w] = s as [number, number, number, number, number];
    const out = new Float64Array(numel(s));
    let k = 0;
    for (let bi = 0; bi < b; bi++) {
      for (let ci = 0; ci < c; ci++) {
        for (let ti = 0; ti < t; ti++) {
          for (let hi = 0; hi < h; hi++) {
            for (let wi = 0; wi < w; wi++) {
              out[k++] = p[(((bi * (c + 2) + ci + 1) * t + ti) * h + hi) * (w + 3) + wi + 2]!;
            }
          }
        }
      }
    }
    return out;
  },
};

/**
 * Forward and gradient of `op` against the float64 index-map reference: y = map(x) and
 * dL/dparam for L = sum(y · gy), through the input view.
 */
async function checkOp(
  label: string,
  shape: number[],
  op: (x: Tensor) => Tensor,
  map: IndexMap,
  view: InputView = DIRECT,
): Promise<void> {
  const pShape = view.paramShape(shape);
  const pData = randomArray(numel(pShape), 3);
  const xRef = view.ref(Float64Array.from(pData), shape);
  const yRef = applyMap(map, xRef);
  const gy = randomArray(yRef.length, 5);
  const gxRef = applyMapVjp(map, xRef.length, gy);
  // gradient through the view: scatter gx back to the parameter positions (view of an iota)
  const iota = Float64Array.from({ length: pData.length }, (_, i) => i);
  const src = view.ref(iota, shape);
  const gpRef = new Float64Array(pData.length);
  src.forEach((s, i) => gpRef[s] = gpRef[s]! + gxRef[i]!);

  const p = parameter(label, pData, pShape);
  const y = tidy(() => {
    const out = op(view.make(p));
    if (out.shape.join() !== map.outShape.join()) {
      throw new Error(`${label}: shape [${out.shape}] != expected [${map.outShape}]`);
    }
    backward(out, fromData(gy, out.shape, "f32"));
    return keep(out);
  });
  const tag = `${label} (${view.name} [${shape}])`;
  assertClose(await read(y), yRef, { ...TOL, shape: map.outShape, label: `${tag} y` });
  assertClose(await read(p.grad!), gpRef, { ...TOL, shape: pShape, label: `${tag} grad` });
  y.dispose();
  p.dispose();
}

const S3 = [2, 24, 3, 5, 7]; // 3 output channels after a factor-2 3-D shuffle

gpuTest("pixelShuffle3d: forward and grad vs reference, odd sizes, strided inputs", async () => {
  for (const v of [DIRECT, PERMUTED, SLICED]) {
    await checkOp("pixelShuffle3d", S3, (x) => pixelShuffle3d(x), pixelShuffle3dMap(S3), v);
  }
  const s = [1, 2 * 27, 2, 3, 1];
  await checkOp("pixelShuffle3d f3", s, (x) => pixelShuffle3d(x, 3), pixelShuffle3dMap(s, 3));
});

gpuTest("pixelUnshuffle3d: forward and grad vs reference, odd sizes, strided inputs", async () => {
  const s = [2, 3, 6, 10, 14];
  for (const v of [DIRECT, PERMUTED, SLICED]) {
    await checkOp("pixelUnshuffle3d", s, (x) => pixelUnshuffle3d(x), pixelUnshuffle3dMap(s), v);
  }
  const s3 = [1, 2, 3, 6, 9];
  await checkOp(
    "pixelUnshuffle3d f3",
    s3,
    (x) => pixelUnshuffle3d(x, 3),
    pixelUnshuffle3dMap(s3, 3),
  );
});

gpuTest("pixelShuffle2d / pixelUnshuffle2d: per-frame, odd sizes, strided inputs", async () => {
  const s = [2, 12, 3, 5, 7];
  const u = [2, 3, 3, 10, 14];
  for (const v of [DIRECT, PERMUTED, SLICED]) {
    await checkOp("pixelShuffle2d", s, (x) => pixelShuffle2d(x), pixelShuffle2dMap(s), v);
    await checkOp("pixelUnshuffle2d", u, (x) => pixelUnshuffle2d(x), pixelUnshuffle2dMap(u), v);
  }
  const s3 = [1, 18, 1, 2, 3];
  await checkOp("pixelShuffle2d f3", s3, (x) => pixelShuffle2d(x, 3), pixelShuffle2dMap(s3, 3));
});

gpuTest("repeatInterleaveChannels and channelGroupMean vs reference", async () => {
  const s = [2, 3, 3, 5, 7];
  for (const v of [DIRECT, PERMUTED, SLICED]) {
    await checkOp(
      "repeatInterleave",
      s,
      (x) => repeatInterleaveChannels(x, 3),
      repeatInterleaveMap(s, 3),
      v,
    );
  }
  const g = [2, 9, 3, 5, 7];
  for (const v of [DIRECT, PERMUTED, SLICED]) {
    await checkOp("groupMean", g, (x) => channelGroupMean(x, 3), groupMeanMap(g, 3), v);
  }
  await checkOp("groupMean all", g, (x) => channelGroupMean(x, 9), groupMeanMap(g, 9));
});

gpuTest("upsampleNearest: factors [1,2,2], [2,2,2], [3,1,2] vs reference", async () => {
  const s = [2, 3, 3, 5, 7];
  for (const f of [[1, 2, 2], [2, 2, 2], [3, 1, 2]] as [number, number, number][]) {
    for (const v of [DIRECT, PERMUTED]) {
      await checkOp(
        `upsample[${f}]`,
        s,
        (x) => upsampleNearest(x, f),
        upsampleNearestMap(s, f),
        v,
      );
    }
  }
  // a factor > 6 takes the reduction path of the backward
  const s1 = [1, 2, 2, 3, 2];
  await checkOp(
    "upsample[1,7,2]",
    s1,
    (x) => upsampleNearest(x, [1, 7, 2]),
    upsampleNearestMap(s1, [1, 7, 2]),
  );
  await checkOp(
    "upsample sliced",
    s,
    (x) => upsampleNearest(x, [2, 2, 2]),
    upsampleNearestMap(s, [2, 2, 2]),
    SLICED,
  );
});

gpuTest("averaging downsample shortcut: temporal, T = 1, spatial, factor 1", async () => {
  const s = [2, 3, 6, 10, 14];
  const cases: [string, number[], number, boolean, number][] = [
    ["temporal g4", s, 6, true, 2], // group 3·8/6 = 4
    ["temporal g24", s, 1, true, 2],
    ["temporal T=1", [2, 3, 1, 10, 14], 6, true, 2], // 2-D: group 3·4/6 = 2
    ["spatial g2", s, 6, false, 2],
    ["spatial g1", s, 12, false, 2],
    ["factor 1", [2, 9, 3, 5, 7], 3, false, 1],
  ];
  for (const [name, shape, out, temporal, f] of cases) {
    for (const v of [DIRECT, PERMUTED]) {
      await checkOp(
        `avgDown ${name}`,
        shape,
        (x) => pixelUnshuffleChannelAveragingDownsample(x, out, temporal, f),
        avgDownMap(shape, out, temporal, f),
        v,
      );
    }
  }
});

gpuTest("duplicating upsample shortcut: temporal, T = 1, spatial, factor 1", async () => {
  const s = [2, 6, 3, 5, 7];
  const cases: [string, number[], number, boolean, number][] = [
    ["temporal r4", s, 3, true, 2], // repeat 3·8/6 = 4
    ["temporal r8", [2, 3, 3, 5, 7], 3, true, 2],
    ["temporal r16", [1, 3, 2, 3, 5], 6, true, 2],
    ["temporal T=1", [2, 6, 1, 5, 7], 3, true, 2], // 2-D: repeat 3·4/6 = 2
    ["spatial r2", s, 3, false, 2],
    ["factor 1", [2, 3, 3, 5, 7], 9, false, 1],
  ];
  for (const [name, shape, out, temporal, f] of cases) {
    for (const v of [DIRECT, PERMUTED]) {
      await checkOp(
        `dupUp ${name}`,
        shape,
        (x) => channelDuplicatingPixelShuffleUpsample(x, out, temporal, f),
        dupUpMap(shape, out, temporal, f),
        v,
      );
    }
  }
});

gpuTest("shuffle ops: gradcheck (float64 finite differences)", async () => {
  const ref = (m: IndexMap) => ([x]: Float64Array[]) => applyMap(m, x!);
  const s8 = [1, 8, 1, 2, 3];
  await gradcheck(
    "pixelShuffle3d",
    [{ shape: s8 }],
    ([x]) => pixelShuffle3d(x!),
    ref(pixelShuffle3dMap(s8)),
  );
  const u = [1, 1, 2, 2, 4];
  await gradcheck(
    "pixelUnshuffle3d",
    [{ shape: u }],
    ([x]) => pixelUnshuffle3d(x!),
    ref(pixelUnshuffle3dMap(u)),
  );
  const s4 = [1, 4, 2, 1, 3];
  await gradcheck(
    "pixelShuffle2d",
    [{ shape: s4 }],
    ([x]) => pixelShuffle2d(x!),
    ref(pixelShuffle2dMap(s4)),
  );
  await gradcheck(
    "pixelUnshuffle2d",
    [{ shape: u }],
    ([x]) => pixelUnshuffle2d(x!),
    ref(pixelUnshuffle2dMap(u)),
  );
  const c = [1, 2, 2, 1, 3];
  await gradcheck(
    "repeatInterleave",
    [{ shape: c }],
    ([x]) => repeatInterleaveChannels(x!, 3),
    ref(repeatInterleaveMap(c, 3)),
  );
  const g = [1, 6, 2, 1, 2];
  await gradcheck(
    "groupMean",
    [{ shape: g }],
    ([x]) => channelGroupMean(x!, 3),
    ref(groupMeanMap(g, 3)),
  );
  await gradcheck(
    "upsample",
    [{ shape: c }],
    ([x]) => upsampleNearest(x!, [2, 1, 2]),
    ref(upsampleNearestMap(c, [2, 1, 2])),
  );
  const d = [1, 2, 2, 2, 2];
  await gradcheck(
    "avgDown",
    [{ shape: d }],
    ([x]) => pixelUnshuffleChannelAveragingDownsample(x!, 4, true),
    ref(avgDownMap(d, 4, true)),
  );
  await gradcheck(
    "dupUp",
    [{ shape: c }],
    ([x]) => channelDuplicatingPixelShuffleUpsample(x!, 1, true),
    ref(dupUpMap(c, 1, true)),
  );
});

gpuTest("shuffle ops: a new shape compiles no new pipeline", async () => {
  const rt = gpu();
  const run = async (s: number[]) => {
    const x = fromData(randomArray(numel(s), 1), s, "f32");
    const ys = tidy(() => [
      pixelShuffle3d(x),
      pixelUnshuffleChannelAveragingDownsample(x, s[1]! * 2, true),
      channelDuplicatingPixelShuffleUpsample(x, s[1]! / 2, true),
      upsampleNearest(x, [2, 2, 2]),
    ]);
    for (const y of ys) await read(y);
    for (const y of [...ys, x]) y.dispose();
  };
  await run([2, 16, 2, 6, 10]);
  const before = rt.counters.pipelinesCompiled;
  await run([1, 24, 4, 2, 6]);
  await run([3, 8, 2, 10, 2]);
  if (rt.counters.pipelinesCompiled !== before) {
    throw new Error(
      `new shapes compiled ${rt.counters.pipelinesCompiled - before} new pipelines (expected 0)`,
    );
  }
});

gpuTest("shuffle ops: errors name the op and the shape", async () => {
  const x = fromData(new Float32Array(2 * 6 * 3 * 4 * 5), [2, 6, 3, 4, 5], "f32");
  await assertThrows(() => pixelShuffle3d(x), "pixelShuffle3d", "[2, 6, 3, 4, 5]", "8");
  await assertThrows(() => pixelUnshuffle3d(x), "pixelUnshuffle3d", "frame count 3");
  await assertThrows(() => pixelUnshuffle2d(x), "pixelUnshuffle2d", "width 5");
  await assertThrows(() => channelGroupMean(x, 4), "channelGroupMean", "channel count 6");
  await assertThrows(
    () => pixelUnshuffleChannelAveragingDownsample(x, 5, false),
    "pixelUnshuffleChannelAveragingDownsample",
  );
  await assertThrows(
    () => channelDuplicatingPixelShuffleUpsample(x, 4, true),
    "channelDuplicatingPixelShuffleUpsample",
    "[2, 6, 3, 4, 5]",
  );
  const flat = fromData(new Float32Array(6), [2, 3], "f32");
  await assertThrows(() => pixelShuffle2d(flat), "pixelShuffle2d", "rank 5");
  x.dispose();
  flat.dispose();
});
