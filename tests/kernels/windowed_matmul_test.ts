/**
 * Matmul with operands larger than one storage binding: `encodeMatmul` cuts the product into
 * blocks of batch items, rows, columns and reduction slices whose every operand window fits. Each
 * case runs under a 16 KiB limit (4096 f32 per binding; every operand needs at least 3 windows)
 * against the float64 reference, and at the device's limit: the two runs must agree within 1e-6
 * (reduction slices add partial sums in another order), and the windowed one must have split.
 */
import { ok as assert } from "node:assert/strict";
import { fromData, realize } from "../../engine/graph.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { read, transpose } from "../../engine/ops/movement.ts";
import { linear, matmul } from "../../engine/ops/matmul.ts";
import { mul, sum } from "../../mod.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { f16ToF32, f32ToF16 } from "../../engine/dtype.ts";
import { gpu, gpuTest, withBindingLimit } from "../_gpu.ts";
import { assertClose, maxErrors, randomArray } from "../_assert_close.ts";
import { matmulRef, transposeRef } from "../ref/matmul.ts";

const LIMIT = 16384;

async function run(make: () => Tensor[]): Promise<{ vs: Float32Array[]; dispatches: number }> {
  const before = gpu().counters.dispatches;
  const ts = make();
  realize(ts);
  const dispatches = gpu().counters.dispatches - before;
  const vs = [];
  for (const t of ts) vs.push(await read(t));
  for (const t of ts) t.dispose();
  return { vs, dispatches };
}

async function check(label: string, make: () => Tensor[], refs: Float64Array[], rtol = 2e-5) {
  const whole = await run(make);
  const win = await withBindingLimit(LIMIT, () => run(make));
  refs.forEach((ref, i) => {
    assertClose(win.vs[i]!, ref, { rtol, atol: 2e-5, label: `${label} #${i} (windowed)` });
    const { abs } = maxErrors(win.vs[i]!, whole.vs[i]!);
    assert(
      abs <= 1e-6 * Math.max(1, ...ref.map(Math.abs)),
      `${label} #${i}: runs differ by ${abs}`,
    );
  });
  assert(
    win.dispatches >= 3 * whole.dispatches,
    `${label}: ${win.dispatches} windowed dispatches vs ${whole.dispatches}: did not split`,
  );
}

gpuTest("windowed matmul: [150,70]·[70,90] (row and column blocks)", async () => {
  const [m, k, n] = [150, 70, 90];
  const a = randomArray(m * k, 1), b = randomArray(k * n, 2);
  const ta = fromData(a, [m, k], "f32"), tb = fromData(b, [k, n], "f32");
  const ref = matmulRef(a, b, { batch: 1, m, n, k, aBatch: false, bBatch: false });
  await check("plain", () => [matmul(ta, tb)], [ref]);
  ta.dispose();
  tb.dispose();
});

gpuTest("windowed matmul: nn.Linear with a [200,70] weight (transposed B) and bias", async () => {
  const [m, k, n] = [61, 70, 200];
  const x = randomArray(m * k, 3), w = randomArray(n * k, 4), bias = randomArray(n, 5);
  const tx = fromData(x, [m, k], "f32"), tw = fromData(w, [n, k], "f32");
  const tbias = fromData(bias, [n], "f32");
  const ref = matmulRef(x, transposeRef(w, n, k), {
    batch: 1,
    m,
    n,
    k,
    aBatch: false,
    bBatch: false,
  }, bias);
  await check("linear", () => [linear(tx, tw, tbias)], [ref]);
  // the same weight stored as f16 (read as packed halves through windows)
  const w16 = f32ToF16(w);
  const tw16 = fromData(w16, [n, k], "f16");
  const ref16 = matmulRef(x, transposeRef(f16ToF32(w16), n, k), {
    batch: 1,
    m,
    n,
    k,
    aBatch: false,
    bBatch: false,
  }, bias);
  await check("linear f16", () => [linear(tx, tw16, tbias)], [ref16]);
  for (const t of [tx, tw, tbias, tw16]) t.dispose();
});

gpuTest("windowed matmul: Aᵀ·B over a long reduction (accumulated reduction slices)", async () => {
  const [k, m, n] = [300, 40, 36]; // A stored [k, m], B [k, n]: the weight-gradient shape
  const a = randomArray(k * m, 6), b = randomArray(k * n, 7);
  const ta = fromData(a, [k, m], "f32"), tb = fromData(b, [k, n], "f32");
  const ref = matmulRef(transposeRef(a, k, m), b, {
    batch: 1,
    m,
    n,
    k,
    aBatch: false,
    bBatch: false,
  });
  await check("AᵀB", () => [matmul(transpose(ta), tb)], [ref]);
  ta.dispose();
  tb.dispose();
});

gpuTest("windowed matmul: batched [3,60,50]·[3,50,70] and a broadcast B", async () => {
  const [z, m, k, n] = [3, 60, 50, 70];
  const a = randomArray(z * m * k, 8), b = randomArray(z * k * n, 9);
  const ta = fromData(a, [z, m, k], "f32"), tb = fromData(b, [z, k, n], "f32");
  const ref = matmulRef(a, b, { batch: z, m, n, k, aBatch: true, bBatch: true });
  await check("batched", () => [matmul(ta, tb)], [ref]);
  const b1 = randomArray(k * n, 10);
  const tb1 = fromData(b1, [1, k, n], "f32");
  // a transposed (non-contiguous) A keeps the batch in the grid instead of folding it into m
  const at = randomArray(z * k * m, 11);
  const tat = fromData(at, [z, k, m], "f32");
  const atRef = new Float64Array(z * m * k);
  for (let i = 0; i < z; i++) atRef.set(transposeRef(at.subarray(i * k * m), k, m), i * m * k);
  const ref1 = matmulRef(atRef, b1, { batch: z, m, n, k, aBatch: true, bBatch: false });
  await check("batched, broadcast B", () => [matmul(transpose(tat, 1, 2), tb1)], [ref1]);
  for (const t of [ta, tb, tb1, tat]) t.dispose();
});

gpuTest("windowed matmul: gradients of a linear layer agree with the whole run", async () => {
  const [m, k, n] = [90, 64, 120];
  const x = randomArray(m * k, 12), w = randomArray(n * k, 13), g = randomArray(m * n, 14);
  const grads = async () => {
    const px = parameter("x", x, [m, k]), pw = parameter("w", w, [n, k]);
    const tg = fromData(g, [m, n], "f32");
    backward(sum(mul(linear(px, pw), tg)));
    const out = [await read(px.grad!), await read(pw.grad!)];
    for (const t of [px, pw, tg]) t.dispose();
    return out;
  };
  const whole = await grads();
  const win = await withBindingLimit(LIMIT, grads);
  // dx = g·w, dw = gᵀ·x
  const dx = matmulRef(g, w, { batch: 1, m, n: k, k: n, aBatch: false, bBatch: false });
  const dw = matmulRef(transposeRef(g, m, n), x, {
    batch: 1,
    m: n,
    n: k,
    k: m,
    aBatch: false,
    bBatch: false,
  });
  assertClose(win[0]!, dx, { rtol: 2e-5, atol: 2e-5, label: "dx" });
  assertClose(win[1]!, dw, { rtol: 2e-5, atol: 2e-5, label: "dw" });
  for (let i = 0; i < 2; i++) assert(maxErrors(win[i]!, whole[i]!).abs <= 1e-5, `grad ${i}`);
});

gpuTest("windowed matmul: rows longer than the limit are cut along the reduction", async () => {
  const k = 8192; // one row of A alone is 32 KiB, over the 16 KiB limit
  const av = randomArray(3 * k, 15), bv = randomArray(k * 5, 16);
  const a = fromData(av, [3, k], "f32");
  const b = fromData(bv, [k, 5], "f32");
  const ref = matmulRef(av, bv, { batch: 1, m: 3, n: 5, k, aBatch: false, bBatch: false });
  const whole = await read(matmul(a, b));
  const win = await withBindingLimit(LIMIT, () => read(matmul(a, b)));
  // 8192-term sums: both orders are within float32 rounding of the float64 value
  assertClose(whole, ref, { rtol: 1e-4, atol: 1e-4, label: "whole" });
  assertClose(win, ref, { rtol: 1e-4, atol: 1e-4, label: "windowed" });
  a.dispose();
  b.dispose();
});
