/**
 * Movement ops: views (reshape, permute, transpose, slice, narrow, expand) never dispatch and alias
 * their base's storage; reshape copies when the layout forces it; pad (a kernel) handles strided
 * and offset inputs; read converts views and other dtypes. Values are exact (pure data movement).
 */
import { readAll } from "../../engine/ops/movement.ts";
import { fromData, realize, viewOf } from "../../engine/graph.ts";
import { type Tensor } from "../../engine/tensor.ts";
import {
  contiguous,
  expand,
  narrow,
  pad,
  permute,
  read,
  reshape,
  slice,
  toF32,
  transpose,
} from "../../engine/ops/movement.ts";
import { exp } from "../../engine/ops/elementwise.ts";
import { f16ToF32, f32ToF16 } from "../../engine/dtype.ts";
import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gatherView, map1, padRef, permuteRef, sliceRef } from "../ref/elementwise.ts";

const EXACT = { atol: 0, rtol: 0 };

/** Number of dispatches `fn` records. */
function dispatches(fn: () => void): number {
  const c = gpu().counters;
  const d0 = c.dispatches;
  fn();
  return c.dispatches - d0;
}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

function layout(t: Tensor): string {
  return `[${t.shape}] strides [${t.strides}] offset ${t.offset}`;
}

// ---------------------------------------------------------------- reshape

gpuTest("reshape: contiguous input gives a view (no copy, same storage)", async () => {
  const v = randomArray(24, 1);
  const x = fromData(v, [6, 4], "f32");
  const a = reshape(x, [2, 3, 4]);
  const b = reshape(x, [-1, 8]);
  const c = reshape(slice(x, [2], [5]), [3, 2, 2]); // row slice: dense with offset 8
  check(a.base === x && b.base === x && c.base === x, "views alias x");
  check(b.shape.join() === "3,8", `-1 inferred: [${b.shape}]`);
  check(c.offset === 8 && c.contiguous, layout(c));
  check(viewOf(a).buffer === viewOf(x).buffer, "same GPU buffer");
  check(dispatches(() => realize([a, b, c])) === 0, "views must not dispatch");
  const [ga, gb, gc] = [await read(a), await read(b), await read(c)];
  assertClose(ga, v, { ...EXACT, label: "reshape" });
  assertClose(gb, v, { ...EXACT, label: "reshape -1" });
  assertClose(gc, v.slice(8, 20), { ...EXACT, label: "reshape of row slice" });
});

gpuTest("reshape: a permuted tensor is copied when it must be, viewed when it can be", async () => {
  const v = randomArray(24, 2);
  const x = fromData(v, [6, 4], "f32");
  const t = transpose(x); // [4, 6], strides [1, 4]
  const flat = reshape(t, [24]); // needs a copy
  check(flat.contiguous && flat.base !== x, `copied: ${layout(flat)}`);
  check(dispatches(() => realize([flat])) === 1, "one copy kernel");
  const split = reshape(t, [2, 2, 6]); // splitting the strided axis is still a view
  check(split.base === x && !split.contiguous, `view: ${layout(split)}`);
  const regroup = reshape(t, [6, 4]); // [4,6]^T regrouped: a copy
  const e = expand(fromData(v.slice(0, 6), [1, 6], "f32"), [4, 6]);
  const eFlat = reshape(e, [24]); // expanded: a copy
  const tv = gatherView(v, [4, 6], [1, 4]);
  const [gf, gs, gr, ge] = await readAll([flat, contiguous(split), regroup, eFlat]);
  assertClose(gf!, tv, { ...EXACT, label: "reshape(transpose) -> [24]" });
  assertClose(gs!, tv, { ...EXACT, label: "reshape(transpose) -> [2,2,6]" });
  assertClose(gr!, tv, { ...EXACT, label: "reshape(transpose) -> [6,4]" });
  assertClose(ge!, gatherView(v, [24], [0]).map((_, i) => v[i % 6]!), {
    ...EXACT,
    label: "expanded",
  });
});

gpuTest("reshape: lazy inputs and error messages", async () => {
  const v = randomArray(12, 3);
  const x = fromData(v, [3, 4], "f32");
  const y = reshape(exp(x), [2, 6]);
  check(!y.realized, "lazy until realized");
  assertClose(await read(y), map1(v, Math.exp), { atol: 0, rtol: 2e-6, label: "reshape(exp)" });
  await assertThrows(() => reshape(x, [5, -1]), "reshape", "[3, 4]", "[5, -1]");
  await assertThrows(
    () => reshape(x, [2, 2]),
    "reshape",
    "[3, 4] (12 elements)",
    "[2, 2] (4 elements)",
  );
});

// ---------------------------------------------------------------- permute / transpose

gpuTest("permute/transpose: 3-D permutations, composition, negative axes", async () => {
  const shape = [7, 33, 3];
  const v = randomArray(7 * 33 * 3, 4);
  const x = fromData(v, shape, "f32");
  const perms = [[2, 0, 1], [1, 2, 0], [0, 2, 1], [2, 1, 0], [-1, 0, -2]];
  const outs = perms.map((p) => permute(x, p));
  const pp = permute(permute(x, [2, 0, 1]), [2, 0, 1]); // = permute by [1, 2, 0]
  const t1 = transpose(x); // last two
  const t2 = transpose(x, 0, 2);
  check(dispatches(() => realize([...outs, pp, t1, t2])) === 0, "permute is a view");
  for (const t of [...outs, pp, t1, t2]) check(t.base === x, "aliases x");
  const got = await readAll([...outs, pp, t1, t2].map((t) => contiguous(t)));
  const norm = (p: number[]) => p.map((a) => (a < 0 ? a + 3 : a));
  perms.forEach((p, k) => {
    const w = permuteRef(v, shape, norm(p));
    check(outs[k]!.shape.join() === w.shape.join(), `shape of permute ${p}`);
    assertClose(got[k]!, w.data, { ...EXACT, label: `permute ${p}` });
  });
  assertClose(got[5]!, permuteRef(v, shape, [1, 2, 0]).data, { ...EXACT, label: "composed" });
  assertClose(got[6]!, permuteRef(v, shape, [0, 2, 1]).data, { ...EXACT, label: "transpose()" });
  assertClose(got[7]!, permuteRef(v, shape, [2, 1, 0]).data, { ...EXACT, label: "transpose(0,2)" });
  await assertThrows(() => permute(x, [0, 1]), "permute", "not a permutation of 3 axes");
  await assertThrows(() => permute(x, [0, 1, 1]), "permute", "[0, 1, 1]");
  await assertThrows(() => permute(x, [0, 1, 3]), "permute", "axis 3");
});

// ---------------------------------------------------------------- slice / narrow

gpuTest("slice/narrow: negative indices, slices of slices and of transposed views", async () => {
  const shape = [7, 33];
  const v = randomArray(7 * 33, 5);
  const x = fromData(v, shape, "f32");
  const a = slice(x, [-3, 5], [-1, -2]); // rows 4..5, cols 5..30
  const b = slice(x, [1], [6]); // missing axes taken whole
  const c = slice(slice(x, [1, 2], [7, 30]), [2, 3], [5, -4]); // rows 3..5, cols 5..25
  const d = narrow(x, -1, 2, 7); // cols 2..8
  const e = narrow(x, 0, 6, 1); // last row
  const f = slice(transpose(x), [3, -5], [10, 7]); // [7, 2] of the [33, 7] view
  const empty = slice(x, [2, 0], [2, 33]);
  check(dispatches(() => realize([a, b, c, d, e, f])) === 0, "slices are views");
  check(a.shape.join() === "2,26" && a.offset === 4 * 33 + 5, layout(a));
  check(empty.size === 0 && empty.shape.join() === "0,33", layout(empty));
  const got = await readAll([a, b, c, d, e, f].map((t) => contiguous(t)));
  const want = [
    sliceRef(v, shape, [4, 5], [6, 31]),
    sliceRef(v, shape, [1, 0], [6, 33]),
    sliceRef(v, shape, [3, 5], [6, 26]),
    sliceRef(v, shape, [0, 2], [7, 9]),
    sliceRef(v, shape, [6, 0], [7, 33]),
    sliceRef(permuteRef(v, shape, [1, 0]).data, [33, 7], [3, 2], [10, 7]),
  ];
  want.forEach((w, k) =>
    assertClose(got[k]!, w.data, { ...EXACT, shape: w.shape, label: `slice #${k}` })
  );
  await assertThrows(() => slice(x, [0, 30], [7, 34]), "slice", "axis 1", "[7, 33]");
  await assertThrows(() => slice(x, [5], [3]), "slice", "5:3", "axis 0");
  await assertThrows(() => narrow(x, 2, 0, 1), "narrow", "axis 2");
});

// ---------------------------------------------------------------- expand

gpuTest("expand: size-1 and new leading axes get stride 0", async () => {
  const v = randomArray(33, 6);
  const row = fromData(v, [1, 33], "f32");
  const col = fromData(v.slice(0, 3), [3, 1], "f32");
  const a = expand(row, [7, 33]);
  const b = expand(col, [2, 3, 5]);
  const c = expand(transpose(fromData(v.slice(0, 6), [1, 6], "f32")), [6, 4]); // [6,1] view
  check(a.strides.join() === "0,1" && b.strides.join() === "0,1,0", `${layout(a)} / ${layout(b)}`);
  check(dispatches(() => realize([a, b, c])) === 0, "expand is a view");
  const got = await readAll([a, b, c].map((t) => contiguous(t)));
  assertClose(got[0]!, gatherView(v, [7, 33], [0, 1]), { ...EXACT, label: "[1,33]->[7,33]" });
  assertClose(got[1]!, gatherView(v, [2, 3, 5], [0, 1, 0]), { ...EXACT, label: "[3,1]->[2,3,5]" });
  assertClose(got[2]!, gatherView(v, [6, 4], [1, 0]), {
    ...EXACT,
    label: "transposed [6,1]->[6,4]",
  });
  await assertThrows(() => expand(row, [7, 32]), "expand", "[1, 33]", "[7, 32]");
  await assertThrows(() => expand(row, [33]), "expand", "[1, 33]", "[33]");
});

// ---------------------------------------------------------------- pad

gpuTest("pad: values on several axes, constant value, strided/offset/f16 inputs", async () => {
  const v = randomArray(7 * 33, 7);
  const x = fromData(v, [7, 33], "f32");
  const t = transpose(x); // strided [33, 7]
  const s = slice(x, [1, 3], [6, 36 - 3]); // offset 36, strided rows
  const h16 = f32ToF16(v);
  const h = fromData(h16, [7, 33], "f16");
  const r1 = fromData(v.slice(0, 5), [5], "f32");
  const x3 = reshape(x, [7, 3, 11]);
  const cases: [Tensor, [number, number][], number, Float64Array | Float32Array, number[]][] = [
    [x, [[1, 2], [3, 0]], 0, v, [7, 33]],
    [x, [[0, 0], [0, 5]], -1.5, v, [7, 33]],
    [t, [[2, 1], [1, 1]], 0.25, gatherView(v, [33, 7], [1, 33]), [33, 7]],
    [s, [[1, 1], [0, 2]], 9, gatherView(v, [5, 30], [33, 1], 36), [5, 30]],
    [h, [[1, 0], [0, 1]], 0, f16ToF32(h16), [7, 33]],
    [r1, [[3, 4]], 2, v.slice(0, 5), [5]],
    [x3, [[0, 1]], 0, v, [7, 3, 11]], // missing axes are not padded
  ];
  const outs = cases.map(([inp, p, val]) => pad(inp, p, val));
  check(outs.every((o) => o.dtype === "f32"), "pad outputs f32");
  const got = await readAll(outs);
  cases.forEach(([, p, val, data, shape], k) => {
    const full = shape.map((_, i) => p[i] ?? [0, 0]) as [number, number][];
    const w = padRef(data, shape, full, val);
    check(outs[k]!.shape.join() === w.shape.join(), `pad #${k} shape [${outs[k]!.shape}]`);
    assertClose(got[k]!, w.data, { ...EXACT, shape: w.shape, label: `pad #${k}` });
  });
  await assertThrows(() => pad(x, [[-1, 0]]), "pad", ">= 0");
  await assertThrows(() => pad(x, [[0.5, 0]]), "pad", "integers");
});

// ---------------------------------------------------------------- contiguous / read

gpuTest(
  "contiguous/read: dense tensors are returned as is; views and other dtypes are converted",
  async () => {
    const v = randomArray(40, 8);
    const x = fromData(v, [40], "f32");
    check(contiguous(x) === x, "dense: same tensor");
    const s4 = slice(x, [4], [36]);
    check(contiguous(s4) === s4, "dense at offset 4: same tensor");
    const s1 = slice(x, [1], [33]);
    const c1 = contiguous(s1);
    check(c1 !== s1 && c1.offset === 0, "offset 1 is copied to an aligned buffer");
    const t = transpose(reshape(x, [5, 8]));
    check(contiguous(t) !== t, "strided is copied");
    const iv = new Int32Array([-3, 0, 7, 1 << 24]);
    const i = fromData(iv, [4], "i32");
    const h16 = f32ToF16(v.slice(0, 6));
    const h = fromData(h16, [2, 3], "f16");
    check(toF32(i).dtype === "f32", "toF32 gives f32");
    const [rs1, rt, ri, rh, rth] = [
      await read(s1),
      await read(t),
      await read(i),
      await read(h),
      await read(transpose(h)),
    ];
    assertClose(rs1, v.slice(1, 33), { ...EXACT, label: "read(offset view)" });
    assertClose(rt, gatherView(v, [8, 5], [1, 8]), { ...EXACT, label: "read(transposed)" });
    assertClose(ri, iv, { ...EXACT, label: "read(i32)" });
    assertClose(rh, f16ToF32(h16), { ...EXACT, label: "read(f16)" });
    assertClose(rth, gatherView(f16ToF32(h16), [3, 2], [1, 3]), { ...EXACT, label: "read(f16ᵀ)" });
  },
);

gpuTest("views keep the storage alive after their base is disposed", async () => {
  const v = randomArray(33, 9);
  const x = fromData(v, [33], "f32");
  const s = slice(x, [3], [10]);
  const r = reshape(x, [3, 11]);
  x.dispose();
  assertClose(await read(s), v.slice(3, 10), { ...EXACT, label: "slice after base dispose" });
  assertClose(await read(r), v, { ...EXACT, label: "reshape after base dispose" });
  await assertThrows(() => slice(x, [0], [1]), "slice", "disposed");
});
