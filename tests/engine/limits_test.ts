/**
 * Device limits: a tensor may exceed one storage binding (ops bind it as windows) but not one
 * buffer; what exceeds `maxBufferSize` is refused before any GPU work, naming the tensor (the
 * parameter's name for weights), its bytes and the limit. The binding limit can be lowered for
 * tests (`KINO_MAX_BINDING`, `setBindingLimit`) and is checked on every dispatch.
 */
import { ok as assert, strictEqual as assertEquals } from "node:assert/strict";
import { fromData, realize } from "../../engine/graph.ts";
import { copy } from "../../engine/ops/elementwise.ts";
import { expand, read } from "../../engine/ops/movement.ts";
import { ParamSet } from "../../models/params.ts";
import { fitsBinding, windowOf } from "../../engine/window.ts";
import { paramsWGSL } from "../../engine/kernel.ts";
import { gpu, gpuTest, withBindingLimit } from "../_gpu.ts";

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return "";
}

gpuTest("limits: a result over maxBufferSize is refused naming the tensor, bytes and limit", () => {
  const max = gpu().maxBufferSize;
  const one = fromData(new Float32Array([1]), [1], "f32");
  const n = Math.floor(max / 4) + 1024;
  const y = copy(expand(one, [n]));
  const msg = message(() => realize([y]));
  assert(
    msg.includes(`[${n}] f32 needs ${n * 4} bytes`) && msg.includes(`maxBufferSize = ${max}`),
    msg,
  );
  one.dispose();
  y.dispose();
});

gpuTest("limits: a weight over maxBufferSize is refused by name before anything loads", () => {
  const max = gpu().maxBufferSize;
  const ps = new ParamSet("bf16");
  const rows = Math.ceil(max / 2 / 4096) + 1;
  ps.declare("blocks.0.img_mod.lin.weight", [rows, 4096]);
  const msg = message(() => ps.checkFits());
  assert(
    msg.includes("parameter blocks.0.img_mod.lin.weight") &&
      msg.includes(`needs ${rows * 4096 * 2} bytes`) && msg.includes(`maxBufferSize = ${max}`),
    msg,
  );
  // the same weight at a size over one binding but under one buffer is fine
  const ok = new ParamSet("bf16");
  ok.declare("w", [Math.ceil(gpu().deviceMaxBinding / 2 / 4096) + 1, 4096]);
  assertEquals(message(() => ok.checkFits()), "");
});

gpuTest(
  "limits: the binding limit can be lowered, is enforced per dispatch, and restores",
  async () => {
    const r = gpu();
    const before = r.maxBinding;
    assertEquals(message(() => r.setBindingLimit(1000)).includes("multiple of 256"), true);
    const x = fromData(new Float32Array(5000).fill(2), [5000], "f32"); // 20 KB
    await withBindingLimit(8192, async () => {
      assertEquals(r.maxBinding, 8192);
      assert(!fitsBinding(r, x.storage!.buffer));
      // a window of elements 3000..4000 starts at an aligned byte and is shifted accordingly
      const w = windowOf(r, x.storage!.buffer, "f32", 3000, 4000);
      const b = w.binding as { offset: number; size: number };
      assertEquals(b.offset % r.bindAlign, 0);
      assertEquals(w.shift * 4, b.offset);
      assert(b.offset <= 3000 * 4 && b.offset + b.size >= 4000 * 4 && b.size <= 8192);
      // a dispatch binding the whole 20 KB buffer is refused, naming the kernel and the binding
      const probe = {
        name: "probe",
        code: paramsWGSL(4) + "@group(0) @binding(1) var<storage, read_write> o: array<f32>;\n" +
          "@compute @workgroup_size(1) fn main() { o[0] = 1.0; }",
        inputs: 0,
        outputs: 1,
      };
      const msg = message(() => r.dispatch(probe, [x.storage!.buffer], [], [1, 1, 1]));
      assert(
        /kernel probe: binding 1 is \d+ bytes, over the storage-binding limit 8192/.test(msg),
        msg,
      );
      // ops split: the values are right
      const y = await read(copy(x));
      assert(y.every((v) => v === 2));
    });
    assertEquals(r.maxBinding, before);
    x.dispose();
  },
);
