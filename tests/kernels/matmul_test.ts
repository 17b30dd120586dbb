import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import { matmulRef, transposeRef } from "../ref/matmul.ts";
import { fromData, realize } from "../../engine/graph.ts";
import { linear, matmul } from "../../engine/ops/matmul.ts";
import { permute, read, slice, transpose } from "../../engine/ops/movement.ts";
import { relu } from "../../engine/ops/elementwise.ts";

const f32 = (d: Float32Array, s: number[]) => fromData(d, s, "f32");
const tol = { atol: 1e-4, rtol: 1e-4 };

gpuTest("matmul() matches float64 at odd shapes (1, 7, 33, 257)", async () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [7, 33, 257],
    [33, 7, 1],
    [257, 33, 7],
    [1, 257, 33],
  ];
  for (const [m, n, k] of shapes) {
    const a = randomArray(m * k, m + 1);
    const b = randomArray(k * n, n + 2);
    const y = await read(matmul(f32(a, [m, k]), f32(b, [k, n])));
    const ref = matmulRef(a, b, { batch: 1, m, n, k, aBatch: true, bBatch: true });
    assertClose(y, ref, { ...tol, shape: [m, n], label: `matmul ${m}x${n}x${k}` });
  }
});

gpuTest("matmul() reads transposed views in place (one dispatch, no copy)", async () => {
  const rt = gpu();
  const [m, n, k] = [9, 13, 33];
  const x = randomArray(m * k, 3);
  const w = randomArray(n * k, 4); // stored [n, k] as nn.Linear
  const bias = randomArray(n, 5);
  const tx = f32(x, [m, k]);
  const tw = f32(w, [n, k]);
  const tb = f32(bias, [n]);
  const before = rt.counters.dispatches;
  const y = linear(tx, tw, tb);
  realize([y]);
  if (rt.counters.dispatches - before !== 1) {
    throw new Error(`linear took ${rt.counters.dispatches - before} dispatches, expected 1`);
  }
  const ref = matmulRef(
    x,
    transposeRef(w, n, k),
    { batch: 1, m, n, k, aBatch: true, bBatch: true },
    bias,
  );
  assertClose(await read(y), ref, { ...tol, shape: [m, n], label: "linear" });
  // both operands transposed
  const y2 = matmul(
    transpose(f32(Float32Array.from(transposeRef(x, m, k)), [k, m])),
    transpose(tw),
  );
  assertClose(
    await read(y2),
    matmulRef(x, transposeRef(w, n, k), { batch: 1, m, n, k, aBatch: true, bBatch: true }),
    {
      ...tol,
      label: "aᵀ-stored · bᵀ-stored",
    },
  );
});

gpuTest("matmul() broadcasts batch axes and accepts strided views", async () => {
  const [m, n, k] = [5, 7, 3];
  const a = randomArray(3 * m * k, 6);
  const b = randomArray(2 * k * n, 7);
  // [3, 1, m, k] · [2, k, n] → [3, 2, m, n]
  const y = await read(matmul(f32(a, [3, 1, m, k]), f32(b, [2, k, n])));
  const want = new Float64Array(3 * 2 * m * n);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 2; j++) {
      const r = matmulRef(
        a.subarray(i * m * k, (i + 1) * m * k),
        b.subarray(j * k * n, (j + 1) * k * n),
        {
          batch: 1,
          m,
          n,
          k,
          aBatch: true,
          bBatch: true,
        },
      );
      want.set(r, (i * 2 + j) * m * n);
    }
  }
  assertClose(y, want, { ...tol, shape: [3, 2, m, n], label: "batch broadcast" });
  // a sliced and permuted operand (non-contiguous batch layout) is copied, still correct
  const big = randomArray(4 * k * 6, 8);
  const view = slice(permute(f32(big, [k, 4, 6]), [1, 0, 2]), [1, 0, 1], [4, k, 6]); // [3, k, 5]
  const lhs = randomArray(3 * m * k, 9);
  const y2 = await read(matmul(f32(lhs, [3, m, k]), view));
  const dense = new Float64Array(3 * k * 5);
  for (let z = 0; z < 3; z++) {
    for (let p = 0; p < k; p++) {
      for (let j = 0; j < 5; j++) dense[(z * k + p) * 5 + j] = big[(p * 4 + z + 1) * 6 + j + 1]!;
    }
  }
  assertClose(y2, matmulRef(lhs, dense, { batch: 3, m, n: 5, k, aBatch: true, bBatch: true }), {
    ...tol,
    label: "strided batch view",
  });
});

gpuTest("matmul() with 1-D operands drops that axis, as numpy", async () => {
  const v = randomArray(4, 10);
  const mtx = randomArray(12, 11);
  const y = await read(matmul(f32(v, [4]), f32(mtx, [4, 3])));
  assertClose(
    y,
    matmulRef(v, mtx, { batch: 1, m: 1, n: 3, k: 4, aBatch: true, bBatch: true }),
    tol,
  );
  const z = matmul(f32(mtx, [3, 4]), f32(v, [4]));
  if (z.shape.join() !== "3") throw new Error(`shape ${z.shape}`);
  assertClose(
    await read(z),
    matmulRef(mtx, v, { batch: 1, m: 3, n: 1, k: 4, aBatch: true, bBatch: true }),
    tol,
  );
});

gpuTest(
  "matmul() gradients match finite differences (batch broadcast, transposed, bias)",
  async () => {
    const [m, n, k] = [3, 5, 4];
    await gradcheck(
      "matmul broadcast",
      [{ shape: [2, m, k] }, { shape: [k, n] }],
      ([a, b]) => relu(matmul(a!, b!)),
      ([a, b]) =>
        matmulRef(a!, b!, { batch: 2, m, n, k, aBatch: true, bBatch: false }).map((x) =>
          Math.max(x, 0)
        ),
    );
    await gradcheck(
      "linear with bias",
      [{ shape: [m, k] }, { shape: [n, k] }, { shape: [n] }],
      ([x, w, b]) => linear(x!, w!, b!),
      ([x, w, b]) =>
        matmulRef(
          x!,
          transposeRef(w!, n, k),
          { batch: 1, m, n, k, aBatch: true, bBatch: true },
          b!,
        ),
    );
    await gradcheck(
      "matmul batch-broadcast rhs",
      [{ shape: [m, k] }, { shape: [2, k, n] }],
      ([a, b]) => matmul(a!, b!),
      ([a, b]) => matmulRef(a!, b!, { batch: 2, m, n, k, aBatch: false, bBatch: true }),
    );
  },
);

gpuTest("matmul() errors name the op and both shapes", async () => {
  const a = f32(new Float32Array(6), [2, 3]);
  const b = f32(new Float32Array(8), [4, 2]);
  await assertThrows(() => matmul(a, b), "matmul", "[2, 3]", "[4, 2]");
  await assertThrows(
    () => matmul(a, f32(new Float32Array(6), [3, 2]), { bias: f32(new Float32Array(3), [3]) }),
    "bias",
    "[3]",
  );
});
