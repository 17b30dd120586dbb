import { gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import { fromData } from "../../engine/graph.ts";
import { permute, read } from "../../engine/ops/movement.ts";
import { mseLoss, type Reduction } from "../../engine/ops/loss.ts";
import { mseRef, permuteRef } from "../ref/movement.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

const REDUCTIONS: Reduction[] = ["mean", "sum", "none"];

gpuTest("mseLoss: values for every reduction (odd shapes, strided input)", async () => {
  for (const shape of [[1], [7, 33], [3, 257]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const p = randomArray(n, 1);
    const t = randomArray(n, 2);
    for (const r of REDUCTIONS) {
      const y = mseLoss(fromData(p, shape, "f32"), fromData(t, shape, "f32"), r);
      assert(y.shape.join() === (r === "none" ? shape.join() : ""), `${r} shape [${y.shape}]`);
      assertClose(await read(y), mseRef(p, t, r), {
        atol: 1e-6,
        rtol: 1e-5,
        label: `mse ${r} [${shape}]`,
      });
    }
  }
  // a permuted prediction
  const base = randomArray(7 * 5, 3);
  const pT = permute(fromData(base, [7, 5], "f32"), [1, 0]);
  const t = randomArray(35, 4);
  const pr = permuteRef(base, [7, 5], [1, 0]).data;
  assertClose(await read(mseLoss(pT, fromData(t, [5, 7], "f32"))), mseRef(pr, t, "mean"), {
    atol: 1e-6,
    rtol: 1e-5,
    label: "strided mse",
  });
});

gpuTest("mseLoss: shape mismatch and unknown reduction are errors", async () => {
  const a = fromData(new Float32Array(6), [2, 3], "f32");
  const b = fromData(new Float32Array(3), [3], "f32");
  await assertThrows(() => mseLoss(a, b), "mseLoss", "[2, 3]", "[3]");
  await assertThrows(() => mseLoss(a, a, "max" as Reduction), "mseLoss", "max");
});

gpuTest("mseLoss: gradcheck w.r.t. pred and target", async () => {
  for (const r of REDUCTIONS) {
    await gradcheck(
      `mse ${r}`,
      [{ shape: [3, 5] }, { shape: [3, 5] }],
      ([p, t]) => mseLoss(p!, t!, r),
      ([p, t]) => mseRef(p!, t!, r),
    );
  }
});
