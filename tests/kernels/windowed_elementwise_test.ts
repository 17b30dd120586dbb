/**
 * Fused elementwise chains on tensors larger than one storage binding: the scheduler splits the
 * flat output range into pieces whose every leaf window fits (engine/window.ts). Each case runs
 * under a 16 KiB binding limit, where every tensor needs at least 3 windows, against a float64
 * reference, and once more at the device's limit: both runs must agree to the bit, and the
 * windowed run must really have split (more dispatches).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { fromData, realize } from "../../engine/graph.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { expand, read, reshape, slice, transpose } from "../../engine/ops/movement.ts";
import * as E from "../../engine/ops/elementwise.ts";
import { f16ToF32, f32ToF16 } from "../../engine/dtype.ts";
import { spanOf } from "../../engine/window.ts";
import { atDeviceLimit, gpu, gpuTest, withBindingLimit } from "../_gpu.ts";
import { assertClose, randomArray } from "../_assert_close.ts";

const LIMIT = 16384; // 4096 f32 per binding

/** Runs `make()` and reads the result, returning values and the dispatches it took. */
async function run(make: () => Tensor): Promise<{ v: Float32Array; dispatches: number }> {
  const before = gpu().counters.dispatches;
  const t = make();
  realize([t]);
  const dispatches = gpu().counters.dispatches - before;
  const v = await read(t);
  t.dispose();
  return { v, dispatches };
}

/** Windowed and whole runs agree bit for bit, match `ref`, and the windowed one split. */
async function check(label: string, make: () => Tensor, ref: Float64Array, rtol = 1e-6) {
  const whole = await atDeviceLimit(() => run(make));
  const win = await withBindingLimit(LIMIT, () => run(make));
  assertEquals(win.v.length, ref.length, label);
  assertClose(win.v, ref, { rtol, atol: 1e-6, label: `${label} (windowed)` });
  assertEquals(win.v, whole.v, `${label}: windowed and whole runs differ`);
  assert(
    win.dispatches >= 3 * whole.dispatches,
    `${label}: ${win.dispatches} windowed dispatches vs ${whole.dispatches}: did not split`,
  );
}

gpuTest(
  "windowed elementwise: dense chains (vec4 and scalar paths) over >= 3 windows",
  async () => {
    for (const n of [20000, 20001]) { // 20000: vec4 path; 20001: scalar path
      const a = randomArray(n, 1, -2, 2), b = randomArray(n, 2, -2, 2);
      const ta = fromData(a, [n], "f32"), tb = fromData(b, [n], "f32");
      const ref = new Float64Array(n);
      for (let i = 0; i < n; i++) ref[i] = Math.max(a[i]! * b[i]! + a[i]!, 0) - 0.5 * b[i]!;
      await check(
        `relu(a*b+a)-0.5b [${n}]`,
        () => E.sub(E.relu(E.add(E.mul(ta, tb), ta)), E.mul(tb, 0.5)),
        ref,
      );
      ta.dispose();
      tb.dispose();
    }
  },
);

gpuTest("windowed elementwise: transposed, broadcast and offset views, f16 leaves", async () => {
  const R = 97, C = 131; // 12707 elements: 51 KB per f32 tensor
  const x = randomArray(R * C, 3, -1, 1);
  const y = randomArray(C * R, 4, -1, 1);
  const row = randomArray(C, 5, -1, 1);
  const big = randomArray(R * C + 333, 6, -1, 1);
  const h = f32ToF16(randomArray(R * C, 7, -1, 1));
  const tx = fromData(x, [R, C], "f32");
  const ty = fromData(y, [C, R], "f32"); // read transposed
  const trow = fromData(row, [C], "f32");
  const tbig = fromData(big, [R * C + 333], "f32");
  const th = fromData(h, [R, C], "f16");
  const hv = f16ToF32(h);
  const ref = new Float64Array(R * C);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const i = r * C + c;
      ref[i] = x[i]! + 2 * y[c * R + r]! - row[c]! * big[333 + i]! + hv[i]!;
    }
  }
  await check("x + 2yᵀ - row·big[333:] + h16", () => {
    const yt = transpose(ty);
    const rb = expand(trow, [R, C]);
    const off = reshape(slice(tbig, [333], [R * C + 333]), [R, C]);
    return E.add(E.sub(E.add(tx, E.mul(yt, 2)), E.mul(rb, off)), th);
  }, ref);
  for (const t of [tx, ty, trow, tbig, th]) t.dispose();
});

Deno.test("spanOf: the element range a flat range of a strided view touches", () => {
  // brute force over a transposed-and-broadcast layout
  const shape = [3, 4, 5], strides = [0, 1, 4];
  for (let a = 0; a < 60; a += 7) {
    for (let b = a + 1; b <= 60; b += 5) {
      let lo = Infinity, hi = -Infinity;
      for (let i = a; i < b; i++) {
        const c = [Math.floor(i / 20), Math.floor(i / 5) % 4, i % 5];
        const addr = c[0]! * strides[0]! + c[1]! * strides[1]! + c[2]! * strides[2]!;
        lo = Math.min(lo, addr);
        hi = Math.max(hi, addr);
      }
      assertEquals(spanOf(shape, strides, a, b), [lo, hi + 1], `[${a}, ${b})`);
    }
  }
});

gpuTest(
  "windowed elementwise: a transposed leaf is tiled in boxes, not cut into rows",
  async () => {
    const R = 300, C = 200; // 240 KB: at least 15 windows of 16 KiB per operand
    const x = randomArray(R * C, 8, -1, 1);
    const tx = fromData(x, [R, C], "f32");
    const ref = new Float64Array(R * C);
    for (let c = 0; c < C; c++) for (let r = 0; r < R; r++) ref[c * R + r] = 3 * x[r * C + c]!;
    await check("3·xᵀ", () => E.mul(transpose(tx), 3), ref);
    const win = await withBindingLimit(LIMIT, () => run(() => E.mul(transpose(tx), 3)));
    // a flat piece of an output row reads a column of x: at most ~20 outputs per dispatch (~3000
    // dispatches); boxes of ~13x20 outputs fit both windows (~230)
    assert(win.dispatches <= 300, `${win.dispatches} dispatches for a transposed 300x200`);
    tx.dispose();
  },
);
