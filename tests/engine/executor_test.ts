/**
 * The executor: liveness-based buffer reuse (peak memory far below the sum of intermediates),
 * command batching (few submits, read-backs only where data is read), tidy/dispose/using releasing
 * memory, pipelines reused across shapes, and the error messages of the graph layer.
 *
 * The memory tests measure `pool.stats()` deltas, so this file keeps its own process state simple:
 * every test releases what it makes.
 */
import { fromData, realize } from "../../engine/graph.ts";
import { sizeClass } from "../../engine/runtime.ts";
import { type DType } from "../../engine/dtype.ts";
import { keep, Tensor, tidy } from "../../engine/tensor.ts";
import { abs, add, exp, full, mul, sub } from "../../engine/ops/elementwise.ts";
import { read, reshape, slice, transpose } from "../../engine/ops/movement.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { f32ToF16 } from "../../engine/dtype.ts";
import { atDeviceLimit, gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gatherView } from "../ref/elementwise.ts";

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const ROWS = 256;
const COLS = 1024;
const STEPS = 20; // 2 dispatches each: a row sum (kernel) and one fused elementwise kernel

/** One step: x -> |x - rowsum(x)| / cols. The row sum forces x to be materialized. */
function step(x: Tensor): Tensor {
  return mul(abs(sub(x, sum(x, -1, true))), 1 / x.shape[1]!);
}

function stepRef(x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[r * cols + c]!;
    for (let c = 0; c < cols; c++) out[r * cols + c] = Math.abs(x[r * cols + c]! - s) / cols;
  }
  return out;
}

gpuTest(
  "executor: a 40-dispatch chain reuses memory, batches into few submits, tidy frees it",
  () =>
    atDeviceLimit(async () => {
      const rt = gpu();
      const pool = rt.pool;
      const v = randomArray(ROWS * COLS, 1, 0, 1);
      const x0 = fromData(v, [ROWS, COLS], "f32");
      realize([x0]);
      await rt.sync();
      const base = pool.stats();
      pool.resetPeak();
      const c0 = { ...rt.counters };
      const y = tidy(() => {
        let x = x0;
        for (let i = 0; i < STEPS; i++) x = step(x);
        return x;
      });
      const c1 = { ...rt.counters };
      const after = pool.stats();
      const got = await read(y);
      const c2 = { ...rt.counters };

      // (a) the result is right, and the peak is far below the sum of all intermediates
      let want: Float64Array = Float64Array.from(v);
      for (let i = 0; i < STEPS; i++) want = stepRef(want, ROWS, COLS);
      assertClose(got, want, { atol: 1e-5, rtol: 1e-4, label: "chain result" });
      const big = sizeClass(ROWS * COLS * 4);
      const intermediates = STEPS * (big + sizeClass(ROWS * 4));
      const peak = after.peakInUse - base.inUse;
      check(
        peak < 0.25 * intermediates,
        `peak ${peak} B is not far below the ${intermediates} B of intermediates`,
      );
      check(
        peak <= 2 * big + 2 * sizeClass(ROWS * 4),
        `peak ${peak} B: more than two live [256,1024]`,
      );
      check(
        after.buffersCreated - base.buffersCreated <= 4,
        `${after.buffersCreated - base.buffersCreated} new buffers`,
      );

      // (b) 40 dispatches recorded without a submit; the read submits once and reads back once
      check(
        c1.dispatches - c0.dispatches === 2 * STEPS,
        `${c1.dispatches - c0.dispatches} dispatches`,
      );
      check(c1.submits - c0.submits <= 1, `${c1.submits - c0.submits} submits while recording`);
      check(c2.submits - c0.submits <= 2, `${c2.submits - c0.submits} submits in all`);
      check(c1.readbacks === c0.readbacks, "no read-back before read()");
      check(
        c2.readbacks - c0.readbacks === 1,
        `${c2.readbacks - c0.readbacks} read-backs for one read`,
      );

      // (c) tidy disposed every intermediate: only the result stays
      check(
        after.inUse === base.inUse + big,
        `inUse ${after.inUse - base.inUse} B over baseline, expected ${big}`,
      );
      y.dispose();
      x0.dispose();
      check(pool.stats().inUse === base.inUse - big, "result and input released");
    }),
);

gpuTest(
  "executor: a new shape reuses the pipelines of the same op chain",
  () =>
    atDeviceLimit(async () => {
      const rt = gpu();
      const run = async (rows: number, cols: number) => {
        const v = randomArray(rows * cols, rows, 0, 1);
        const x = fromData(v, [rows, cols], "f32");
        const y = tidy(() => step(step(x)));
        const got = await read(y);
        assertClose(got, stepRef(stepRef(Float64Array.from(v), rows, cols), rows, cols), {
          atol: 1e-5,
          rtol: 1e-4,
          label: `[${rows}, ${cols}]`,
        });
        x.dispose();
        y.dispose();
      };
      await run(ROWS, COLS); // compiles (or reuses) the row4 sum and the vec4 elementwise kernel
      const p0 = rt.counters.pipelinesCompiled;
      await run(128, 512);
      await run(3, 4);
      await run(1000, 8);
      check(
        rt.counters.pipelinesCompiled === p0,
        `${rt.counters.pipelinesCompiled - p0} new pipelines`,
      );
    }),
);

gpuTest("executor: dispose, using and views release memory exactly", async () => {
  const pool = gpu().pool;
  const base = pool.stats().inUse;
  const cls = sizeClass(1000 * 4);
  {
    using t = fromData(randomArray(1000, 2), [1000], "f32");
    check(pool.stats().inUse === base + cls, "allocated while in scope");
    check(t.realized, "uploaded");
  }
  check(pool.stats().inUse === base, "`using` released it");
  const xv = randomArray(1000, 3);
  const x = fromData(xv, [10, 100], "f32");
  const v = slice(x, [2], [5]);
  const tv = transpose(x);
  const r = reshape(tv, [100, 10]); // a copy: lazy, no memory yet
  check(pool.stats().inUse === base + cls, "views and lazy tensors take no memory");
  x.dispose();
  x.dispose(); // idempotent
  check(pool.stats().inUse === base + cls, "views keep the storage alive");
  check(v.realized && tv.realized, "views still realized");
  // a view of a disposed base is still a valid input
  assertClose(await read(r), gatherView(xv, [100, 10], [1, 100]), {
    atol: 0,
    rtol: 0,
    label: "copy of view",
  });
  r.dispose();
  v.dispose();
  check(pool.stats().inUse === base + cls, "one view left holds the storage");
  tv.dispose();
  check(pool.stats().inUse === base, "last view released the storage");
  // outside tidy, realize keeps only its targets: the intermediates go back to the pool
  const z = fromData(randomArray(1000, 4), [1000], "f32");
  const y = exp(mul(sum(z, 0, true), add(z, 1)));
  realize([y]);
  check(pool.stats().inUse === base + 2 * cls, `inUse ${pool.stats().inUse - base} after realize`);
  y.dispose();
  z.dispose();
  check(pool.stats().inUse === base, "everything released");
});

gpuTest("executor: kept tensors and returned views outlive their tidy scope", async () => {
  const v = randomArray(24, 5);
  const x = fromData(v, [4, 6], "f32");
  let kept: Tensor | null = null;
  const t = tidy(() => {
    kept = keep(mul(x, 2));
    return transpose(add(x, 1)); // a view of an intermediate the scope releases
  });
  check(kept!.realized && t.realized, "kept and returned tensors are realized");
  const want = gatherView(v, [6, 4], [1, 6]).map((a) => a + 1);
  assertClose(await read(t), want, { atol: 1e-7, rtol: 0, label: "returned view" });
  assertClose(await read(mul(t, 3)), want.map((a) => 3 * a), {
    atol: 0,
    rtol: 1e-6,
    label: "view as input",
  });
  assertClose(await read(kept!), v.map((a) => a * 2), { atol: 0, rtol: 0, label: "kept" });
  // a tensor made in the scope and not returned is disposed with it
  let inner: Tensor | null = null;
  tidy(() => {
    inner = exp(x);
  });
  await assertThrows(() => read(inner!), "disposed", "tidy");
  x.dispose();
  t.dispose();
  kept!.dispose();
});

// ---------------------------------------------------------------- errors

gpuTest("errors: shape mismatch names the op and both shapes", async () => {
  const a = full([2, 3], 1);
  const b = full([4], 1);
  await assertThrows(() => add(a, b), "add:", "[2, 3]", "[4]");
  await assertThrows(() => sub(b, a), "sub:", "[4]", "[2, 3]");
  await assertThrows(() => mul(full([3, 1, 5], 1), full([2, 6], 1)), "mul:", "[3, 1, 5]", "[2, 6]");
});

gpuTest("errors: using a disposed tensor says so", async () => {
  const x = fromData(randomArray(8, 6), [8], "f32");
  const lazy = exp(x);
  x.dispose();
  const e1 = await assertThrows(() => exp(x), "exp", "disposed");
  check(e1.message.includes(x.toString()), `names the tensor: ${e1.message}`);
  await assertThrows(() => realize([lazy]), "realize", "disposed");
  await assertThrows(() => read(x), "read", "disposed");
  await assertThrows(() => reshape(x, [2, 4]), "reshape", "disposed");
  lazy.dispose();
});

gpuTest("errors: a tensor over maxBufferSize fails before allocating", async () => {
  const rt = gpu();
  const before = rt.pool.stats();
  const n = Math.floor(rt.maxBufferSize / 4) + 1;
  const huge = full([n], 0); // lazy: nothing allocated on the CPU or the GPU
  const e = await assertThrows(
    () => realize([huge]),
    "maxBufferSize",
    `${rt.maxBufferSize}`,
  );
  check(e instanceof RangeError, `RangeError, got ${e.name}`);
  const after = rt.pool.stats();
  check(after.inUse === before.inUse && after.allocated === before.allocated, "nothing allocated");
  huge.dispose();
});

gpuTest("errors: an op rejects a dtype it does not support", async () => {
  const odd = new Tensor([2], "f64" as DType, null); // not a DType: no upload, no memory
  const e = await assertThrows(() => exp(odd), "exp", "unsupported dtype f64", "f32");
  check(e instanceof TypeError, `TypeError, got ${e.name}`);
});

gpuTest("fromData() validates the dtype and the array type", () => {
  // an unknown dtype, or an array of the wrong type (a Float32Array as "f16" would otherwise be
  // reinterpreted as pairs of halves), is refused with a TypeError
  const problems: string[] = [];
  for (
    const [label, make] of [
      ["f64", () => fromData(new Float32Array(2), [2], "f64" as DType)],
      ["Float32Array as f16", () => fromData(new Float32Array(4), [4], "f16")],
      ["Uint16Array as f32", () => fromData(f32ToF16(new Float32Array(4)), [4], "f32")],
    ] as const
  ) {
    try {
      const t = make();
      t.dispose();
      problems.push(`${label}: accepted`);
    } catch (e) {
      if (!(e instanceof TypeError)) problems.push(`${label}: ${(e as Error).message}`);
    }
  }
  if (problems.length) throw new Error(problems.join("; "));
});
