import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import { softmaxRef, softmaxVjpRef } from "../ref/norm.ts";
import { fromData } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { permute, read, slice } from "../../engine/ops/movement.ts";
import { logSoftmax, softmax } from "../../engine/ops/softmax.ts";
import { type Tensor, tidy } from "../../engine/tensor.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Runs `fn` in a scope and reads its result back. */
async function run(fn: () => Tensor): Promise<Float32Array> {
  const y = tidy(fn);
  const v = await read(y);
  y.dispose();
  return v;
}

/** dL/dx of op(x) for an explicit dL/dy, through the engine's backward. */
async function vjp(
  op: (x: Tensor) => Tensor,
  x: Float32Array,
  gy: Float32Array,
  shape: number[],
): Promise<Float32Array> {
  const p = parameter("x", x, shape);
  tidy(() => {
    const y = op(p);
    backward(y, fromData(gy, y.shape, "f32"));
  });
  const g = await read(p.grad!);
  p.dispose();
  return g;
}

const OPS = [
  { name: "softmax", log: false, f: softmax, atol: 1e-6 },
  { name: "logSoftmax", log: true, f: logSoftmax, atol: 1e-5 },
];

gpuTest(
  "softmax/logSoftmax: last axis at odd shapes (rows 1, 7, 33; n 1..1000) vs float64",
  async () => {
    for (const { name, log, f, atol } of OPS) {
      for (const rows of [1, 7, 33]) {
        for (const n of [1, 7, 33, 257, 1000]) {
          const shape = [rows, n];
          const x = randomArray(rows * n, rows * 1000 + n, -4, 4);
          const got = await run(() => f(fromData(x, shape, "f32")));
          assertClose(got, softmaxRef(x, shape, -1, log), {
            atol,
            rtol: 1e-5,
            shape,
            label: `${name} [${shape}]`,
          });
        }
      }
    }
  },
);

gpuTest(
  "softmax/logSoftmax: other axes (strided rows, the few-columns path) vs float64",
  async () => {
    const cases: [number[], number][] = [
      [[7, 33, 5], 0],
      [[7, 33, 5], 1],
      [[7, 33, 5], 2],
      [[2, 3, 257, 3], 2],
      [[1000, 7], 0], // long strided rows
      [[3, 1100, 2], 1], // few columns: moved last
      [[5], 0],
      [[], 0],
    ];
    for (const { name, log, f, atol } of OPS) {
      for (const [shape, axis] of cases) {
        const x = randomArray(numel(shape), 11 + axis, -3, 3);
        const got = await run(() => f(fromData(x, shape, "f32"), axis));
        assertClose(got, softmaxRef(x, shape.length ? shape : [1], axis, log), {
          atol,
          rtol: 1e-5,
          shape,
          label: `${name} [${shape}] axis ${axis}`,
        });
      }
    }
  },
);

gpuTest("softmax: non-contiguous inputs (permuted and sliced views)", async () => {
  const base = [33, 7, 5];
  const x = randomArray(numel(base), 5, -2, 2);
  // permuted: [5, 33, 7] softmax over the last axis (of length 7) and axis 1 (33)
  const xp = new Float64Array(numel(base));
  for (let i = 0; i < 33; i++) {
    for (let j = 0; j < 7; j++) {
      for (let k = 0; k < 5; k++) xp[(k * 33 + i) * 7 + j] = x[(i * 7 + j) * 5 + k]!;
    }
  }
  for (const { name, log, f, atol } of OPS) {
    for (const axis of [-1, 1]) {
      const got = await run(() => f(permute(fromData(x, base, "f32"), [2, 0, 1]), axis));
      assertClose(got, softmaxRef(xp, [5, 33, 7], axis, log), {
        atol,
        rtol: 1e-5,
        label: `${name} permuted axis ${axis}`,
      });
    }
    // sliced: rows 3..20 of [33, 35] (row stride 35, offset not 4-aligned)
    const xs = randomArray(33 * 35, 9, -2, 2);
    const want = new Float64Array(17 * 30);
    for (let i = 0; i < 17; i++) {
      for (let j = 0; j < 30; j++) want[i * 30 + j] = xs[(i + 3) * 35 + j + 1]!;
    }
    const got = await run(() => f(slice(fromData(xs, [33, 35], "f32"), [3, 1], [20, 31])));
    assertClose(got, softmaxRef(want, [17, 30], -1, log), {
      atol,
      rtol: 1e-5,
      label: `${name} sliced`,
    });
  }
});

gpuTest("softmax: numerically stable for large and very negative inputs", async () => {
  const shape = [7, 257];
  const x = randomArray(numel(shape), 3, -5, 5);
  const big = x.map((v) => v + 1e4);
  for (const { name, log, f, atol } of OPS) {
    const got = await run(() => f(fromData(big, shape, "f32")));
    if (got.some((v) => !Number.isFinite(v))) {
      throw new Error(`${name}: non-finite output for x + 1e4`);
    }
    // x + 1e4 in f32 is x rounded to ~1e-3, so compare with the reference of the rounded input
    assertClose(got, softmaxRef(big, shape, -1, log), {
      atol,
      rtol: 1e-5,
      label: `${name} x + 1e4`,
    });
  }
  const neg = new Float32Array([-1e30, 0, -Infinity, 1, -1e30, -Infinity, 2, 0]);
  const got = await run(() => softmax(fromData(neg, [2, 4], "f32")));
  assertClose(got, softmaxRef(neg, [2, 4]), { atol: 1e-7, rtol: 1e-6, label: "softmax with -inf" });
});

gpuTest(
  "softmax/logSoftmax backward: fused kernel vs float64 VJP at odd shapes and axes",
  async () => {
    const cases: [number[], number][] = [
      [[7, 1], -1],
      [[7, 7], -1],
      [[7, 33], -1],
      [[7, 257], -1],
      [[7, 1000], -1],
      [[1, 1000], -1],
      [[5, 33, 7], 1],
      [[3, 1100, 2], 1],
    ];
    for (const { name, log, f } of OPS) {
      for (const [shape, axis] of cases) {
        const x = randomArray(numel(shape), 21, -3, 3);
        const gy = randomArray(numel(shape), 22, -1, 1);
        const got = await vjp((t) => f(t, axis), x, gy, shape);
        assertClose(got, softmaxVjpRef(x, gy, shape, axis, log), {
          atol: log ? 2e-5 : 1e-6,
          rtol: 1e-4,
          shape,
          label: `${name} backward [${shape}] axis ${axis}`,
        });
      }
    }
  },
);

gpuTest(
  "softmax/logSoftmax: gradcheck (col, row, row4 layouts, middle axis, permuted input)",
  async () => {
    for (const { name, log, f } of OPS) {
      for (const shape of [[3, 7], [2, 37], [2, 40]]) {
        await gradcheck(
          `${name} [${shape}]`,
          [{ shape }],
          ([x]) => f(x!),
          ([x]) => softmaxRef(x!, shape, -1, log),
        );
      }
      await gradcheck(
        `${name} [3, 5, 4] axis 1`,
        [{ shape: [3, 5, 4] }],
        ([x]) => f(x!, 1),
        ([x]) => softmaxRef(x!, [3, 5, 4], 1, log),
      );
      // permuted: input [4, 3] viewed as [3, 4]
      await gradcheck(
        `${name} permuted`,
        [{ shape: [4, 3] }],
        ([x]) => f(permute(x!, [1, 0])),
        ([x]) => {
          const t = new Float64Array(12);
          for (let i = 0; i < 4; i++) {
            for (let j = 0; j < 3; j++) {
              t[j * 4 + i] = x![i * 3 + j]!;
            }
          }
          return softmaxRef(t, [3, 4], -1, log);
        },
      );
    }
  },
);

gpuTest("softmax: a second shape reuses the compiled pipelines", async () => {
  const rt = gpu();
  const once = async (shape: number[]) => {
    const x = randomArray(numel(shape), 1);
    const gy = randomArray(numel(shape), 2);
    const dx = await vjp((t) => softmax(t), x, gy, shape);
    assertClose(dx, softmaxVjpRef(x, gy, shape), { atol: 1e-6, rtol: 1e-4, label: `[${shape}]` });
  };
  await once([5, 257]);
  const before = rt.counters.pipelinesCompiled;
  await once([9, 301]);
  if (rt.counters.pipelinesCompiled !== before) {
    throw new Error(
      `compiled ${rt.counters.pipelinesCompiled - before} new pipelines for a new shape`,
    );
  }
});

gpuTest("softmax: a bad axis names the op", async () => {
  await assertThrows(
    () => tidy(() => softmax(fromData(new Float32Array(6), [2, 3], "f32"), 2)),
    "softmax",
    "axis 2",
  );
  await assertThrows(
    () => tidy(() => logSoftmax(fromData(new Float32Array(6), [2, 3], "f32"), -3)),
    "logSoftmax",
  );
});
