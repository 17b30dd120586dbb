import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import { fromData, realize, viewOf } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { add, mul } from "../../engine/ops/elementwise.ts";
import { permute, read, slice } from "../../engine/ops/movement.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { cast, chunk, concat, gather, split, stack } from "../../engine/ops/concat.ts";
import { type Tensor, tidy } from "../../engine/tensor.ts";
import { bf16ToF32, DTYPE_BYTES, f16ToF32, f32ToBf16, f32ToF16 } from "../../engine/dtype.ts";
import {
  concatRef,
  gatherRef,
  numelRef,
  permuteRef,
  scatterAddRef,
  sliceRef,
} from "../ref/movement.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertShape(t: Tensor, shape: readonly number[], label: string): void {
  assert(t.shape.join() === shape.join(), `${label}: shape [${t.shape}] != [${shape}]`);
}

/** The raw bytes of a dense tensor, exactly as stored (no widening). */
async function readRaw(t: Tensor): Promise<ArrayBuffer> {
  assert(t.contiguous, "readRaw needs a dense tensor");
  realize([t]);
  const v = viewOf(t);
  const b = DTYPE_BYTES[t.dtype];
  return await gpu().read(v.buffer, v.offset * b, t.size * b);
}

/** Exact equality of f32 values, infinities and NaNs included. */
function assertSameF32(got: Float32Array, want: Float32Array, label: string): void {
  assert(got.length === want.length, `${label}: length ${got.length} != ${want.length}`);
  const bad = want.findIndex((w, i) => !Object.is(w, got[i]) && !(w === 0 && got[i] === 0));
  assert(bad < 0, `${label}: at ${bad} got ${got[bad]}, want ${want[bad]}`);
}

function f32(shape: number[], seed: number): { t: Tensor; data: Float32Array } {
  const data = randomArray(numelRef(shape), seed);
  return { t: fromData(data, shape, "f32"), data };
}

// ---------------------------------------------------------------- concat

gpuTest("concat: dense inputs along every axis, odd sizes", async () => {
  const cases: { shapes: number[][]; axis: number }[] = [
    { shapes: [[7], [1], [33]], axis: 0 },
    { shapes: [[3, 7], [3, 1], [3, 257]], axis: 1 },
    { shapes: [[3, 7], [1, 7], [5, 7]], axis: 0 },
    { shapes: [[2, 5, 3], [2, 1, 3], [2, 33, 3]], axis: 1 },
    { shapes: [[2, 5, 3], [2, 5, 7]], axis: -1 },
    // vec4 path: inner sizes and window offsets are multiples of 4
    { shapes: [[4, 8], [4, 12]], axis: 1 },
    { shapes: [[5, 16], [3, 16]], axis: 0 },
    { shapes: [[2, 3, 8], [2, 3, 4], [2, 3, 16]], axis: 2 },
  ];
  let seed = 1;
  for (const { shapes, axis } of cases) {
    const ins = shapes.map((s) => f32(s, seed++));
    const y = concat(ins.map((i) => i.t), axis);
    const a = axis < 0 ? axis + shapes[0]!.length : axis;
    const ref = concatRef(ins.map((i, k) => ({ data: i.data, shape: shapes[k]! })), a);
    assertShape(y, ref.shape, "concat");
    assertClose(await read(y), ref.data, { atol: 0, rtol: 0, shape: ref.shape, label: "concat" });
  }
});

gpuTest("concat: strided inputs (permuted, sliced, lazy) are read in place", async () => {
  const base = f32([7, 33, 5], 11);
  const p = permute(base.t, [2, 0, 1]); // [5, 7, 33]
  const pRef = permuteRef(base.data, [7, 33, 5], [2, 0, 1]);
  const b2 = f32([9, 7, 40], 12);
  const s = slice(b2.t, [2, 0, 3], [7, 7, 36]); // [5, 7, 33]
  const sRef = sliceRef(b2.data, [9, 7, 40], [2, 0, 3], [7, 7, 36]);
  const l = f32([5, 7, 33], 13);
  const lazy = add(l.t, 1);
  const lRef = { data: Float64Array.from(l.data, (v) => v + 1), shape: [5, 7, 33] };
  for (const axis of [0, 1, 2]) {
    const y = concat([p, s, lazy], axis);
    const ref = concatRef([pRef, sRef, lRef], axis);
    assertClose(await read(y), ref.data, {
      atol: 1e-7,
      rtol: 0,
      shape: ref.shape,
      label: `axis ${axis}`,
    });
  }
  // realized views are read in place: one copy dispatch per input, nothing else
  const rt = gpu();
  await read(base.t);
  await read(b2.t);
  const before = rt.counters.dispatches;
  await read(concat([p, s], 1));
  const used = rt.counters.dispatches - before;
  assert(used === 2, `concat of 2 views used ${used} dispatches`);
  // a transposed 2-D input with an inner axis of 257
  const m = f32([257, 3], 14);
  const y = concat([permute(m.t, [1, 0]), f32([3, 1], 15).t], 1);
  const ref = permuteRef(m.data, [257, 3], [1, 0]);
  const got = await read(y);
  for (let r = 0; r < 3; r++) {
    assertClose(got.subarray(r * 258, r * 258 + 257), ref.data.subarray(r * 257, r * 257 + 257), {
      atol: 0,
      rtol: 0,
      label: "transposed row",
    });
  }
});

gpuTest("concat: i32 keeps its dtype and exact values; halves widen to f32", async () => {
  const a = fromData(new Int32Array([16777217, -5, 2147483647]), [3], "i32");
  const b = fromData(new Int32Array([-2147483648, 7]), [2], "i32");
  const y = concat([a, b]);
  assert(y.dtype === "i32", `dtype ${y.dtype}`);
  const bits = new Int32Array(await readRaw(y));
  assert(
    bits.join() === [16777217, -5, 2147483647, -2147483648, 7].join(),
    `i32 concat: ${bits.join()}`,
  );
  const v = randomArray(7, 21, -100, 100);
  const h = fromData(f32ToBf16(v), [7], "bf16");
  const f = fromData(f32ToF16(v), [7], "f16");
  const z = concat([h, f, fromData(v, [7], "f32")]);
  assert(z.dtype === "f32", `dtype ${z.dtype}`);
  const want = [...bf16ToF32(f32ToBf16(v)), ...f16ToF32(f32ToF16(v)), ...v];
  assertClose(await read(z), want, { atol: 0, rtol: 0, label: "half concat" });
  // a strided bf16 view (odd element offset)
  const h2 = fromData(f32ToBf16(randomArray(12, 22)), [3, 4], "bf16");
  const w = concat([slice(h2, [0, 1], [3, 4]), permute(slice(h2, [0, 0], [3, 1]), [0, 1])], 1);
  const hv = bf16ToF32(f32ToBf16(randomArray(12, 22)));
  const wantW: number[] = [];
  for (let r = 0; r < 3; r++) {
    wantW.push(hv[r * 4 + 1]!, hv[r * 4 + 2]!, hv[r * 4 + 3]!, hv[r * 4]!);
  }
  assertClose(await read(w), wantW, { atol: 0, rtol: 0, label: "strided bf16 concat" });
});

gpuTest("concat/stack/split: errors name the op and the shapes", async () => {
  const a = fromData(new Float32Array(6), [2, 3], "f32");
  const b = fromData(new Float32Array(8), [2, 4], "f32");
  const c = fromData(new Float32Array(6), [3, 2], "f32");
  await assertThrows(() => concat([a, c], 1), "concat", "[2, 3]", "[3, 2]");
  await assertThrows(
    () => concat([a, fromData(new Float32Array(6), [2, 3, 1], "f32")]),
    "concat",
    "[2, 3, 1]",
  );
  await assertThrows(() => concat([a, b], 2), "concat", "axis 2");
  await assertThrows(() => stack([a, b]), "stack", "[2, 3]", "[2, 4]");
  await assertThrows(() => split(a, [1, 1], 1), "split", "[1, 1]", "[2, 3]");
  await assertThrows(
    () => concat([a, fromData(new Int32Array(6), [2, 3], "i32")]),
    "concat",
    "i32",
  );
  await assertThrows(() => concat([]), "concat");
  // a mismatch must be reported, while a valid call works
  assertShape(concat([a, b], 1), [2, 7], "concat ok");
});

gpuTest("stack, split and chunk", async () => {
  const xs = [f32([3, 5], 31), f32([3, 5], 32), f32([3, 5], 33)];
  for (const axis of [0, 1, 2, -1]) {
    const y = stack(xs.map((x) => x.t), axis);
    const a = axis < 0 ? axis + 3 : axis;
    const shape = [3, 5];
    shape.splice(a, 0, 1);
    const ref = concatRef(xs.map((x) => ({ data: x.data, shape })), a);
    assertShape(y, ref.shape, `stack ${axis}`);
    assertClose(await read(y), ref.data, { atol: 0, rtol: 0, label: `stack ${axis}` });
  }
  const x = f32([4, 7], 34);
  const parts = split(x.t, [2, 0, 5], 1);
  assert(parts.map((p) => p.shape.join("x")).join() === "4x2,4x0,4x5", "split shapes");
  assert(parts.every((p) => p.base !== null), "split returns views");
  assertClose(await read(parts[2]!), sliceRef(x.data, [4, 7], [0, 2], [4, 7]).data, {
    atol: 0,
    rtol: 0,
    label: "split part",
  });
  // torch.chunk sizes: 7 in 3 -> 3,3,1; 5 in 4 -> 2,2,1; 2 in 4 -> 1,1
  const sizes = (d: number, n: number) =>
    chunk(fromData(new Float32Array(d), [d], "f32"), n).map((t) => t.shape[0]).join();
  assert(sizes(7, 3) === "3,3,1", `chunk 7/3: ${sizes(7, 3)}`);
  assert(sizes(5, 4) === "2,2,1", `chunk 5/4: ${sizes(5, 4)}`);
  assert(sizes(2, 4) === "1,1", `chunk 2/4: ${sizes(2, 4)}`);
  const ch = chunk(x.t, 2, 0);
  assertClose(await read(ch[1]!), x.data.subarray(14), { atol: 0, rtol: 0, label: "chunk" });
  // split then concat is the identity
  assertClose(await read(concat(split(x.t, [3, 4], 1), 1)), x.data, {
    atol: 0,
    rtol: 0,
    label: "roundtrip",
  });
});

gpuTest("concat/stack: gradcheck (with a permuted input)", async () => {
  await gradcheck(
    "concat",
    [{ shape: [2, 3] }, { shape: [4, 2] }, { shape: [2, 1] }],
    // the gradients of b and c are views of the concat gradient
    ([a, b, c]) => concat([mul(a!, 2), permute(b!, [1, 0]), c!], 1),
    ([a, b, c]) => {
      const bt = permuteRef(b!, [4, 2], [1, 0]);
      return concatRef([
        { data: a!.map((v) => 2 * v), shape: [2, 3] },
        bt,
        { data: c!, shape: [2, 1] },
      ], 1).data;
    },
  );
  await gradcheck(
    "stack",
    [{ shape: [3] }, { shape: [3] }],
    ([a, b]) => stack([a!, b!], 1),
    ([a, b]) => concatRef([{ data: a!, shape: [3, 1] }, { data: b!, shape: [3, 1] }], 1).data,
  );
});

// ---------------------------------------------------------------- gather

gpuTest("gather: axes, 2-D indices, repeats, vec4 and scalar paths", async () => {
  const cases: { shape: number[]; axis: number; idx: number[]; idxShape: number[] }[] = [
    { shape: [7, 33], axis: 0, idx: [3, 0, 6, 3], idxShape: [4] },
    { shape: [7, 32], axis: 0, idx: [1, 1, 6, 0, 2, 5], idxShape: [2, 3] }, // vec4
    { shape: [5, 7, 3], axis: 1, idx: [6, 0, 2], idxShape: [3] },
    { shape: [3, 257], axis: 1, idx: [256, 0, 128, 1, 255], idxShape: [5] },
    { shape: [2, 3, 9], axis: 2, idx: [8, 8], idxShape: [1, 2] },
    { shape: [1], axis: 0, idx: [0, 0, 0], idxShape: [3] },
  ];
  let seed = 40;
  for (const c of cases) {
    const x = f32(c.shape, seed++);
    const idx = fromData(Int32Array.from(c.idx), c.idxShape, "i32");
    const y = gather(x.t, idx, c.axis);
    const outShape = [...c.shape.slice(0, c.axis), ...c.idxShape, ...c.shape.slice(c.axis + 1)];
    assertShape(y, outShape, "gather");
    assertClose(await read(y), gatherRef(x.data, c.shape, c.idx, c.axis), {
      atol: 0,
      rtol: 0,
      shape: outShape,
      label: `gather [${c.shape}] axis ${c.axis}`,
    });
  }
});

gpuTest("gather: strided table and indices, half tables, u32 and CPU indices", async () => {
  const base = f32([9, 6], 50);
  const xt = permute(base.t, [1, 0]); // [6, 9] strided
  const xRef = permuteRef(base.data, [9, 6], [1, 0]);
  const idxBase = fromData(Int32Array.from([5, 0, 3, 1, 2, 4]), [2, 3], "i32");
  const idx = permute(idxBase, [1, 0]); // [3, 2] strided: 5,1,0,2,3,4
  const y = gather(xt, idx, 0);
  assertShape(y, [3, 2, 9], "strided gather");
  assertClose(await read(y), gatherRef(xRef.data, [6, 9], [5, 1, 0, 2, 3, 4], 0), {
    atol: 0,
    rtol: 0,
    label: "strided gather",
  });
  const v = randomArray(7 * 5, 51, -10, 10);
  for (const dt of ["bf16", "f16"] as const) {
    const bits = dt === "bf16" ? f32ToBf16(v) : f32ToF16(v);
    const wide = dt === "bf16" ? bf16ToF32(bits) : f16ToF32(bits);
    const t = fromData(bits, [7, 5], dt);
    const g = gather(t, [6, 1, 1], 0);
    assert(g.dtype === "f32", `${dt} gather dtype ${g.dtype}`);
    assertClose(await read(g), gatherRef(wide, [7, 5], [6, 1, 1], 0), {
      atol: 0,
      rtol: 0,
      label: `${dt} gather`,
    });
    const g1 = gather(t, [4, 0], 1);
    assertClose(await read(g1), gatherRef(wide, [7, 5], [4, 0], 1), {
      atol: 0,
      rtol: 0,
      label: `${dt} axis 1`,
    });
  }
  const u = gather(base.t, fromData(Uint32Array.from([8, 2]), [2], "u32"), 0);
  assertClose(await read(u), gatherRef(base.data, [9, 6], [8, 2], 0), {
    atol: 0,
    rtol: 0,
    label: "u32 indices",
  });
  // an i32 table keeps exact values
  const ti = fromData(Int32Array.from([16777217, 3, -16777219, 4]), [2, 2], "i32");
  const gi = gather(ti, [1, 0], 0);
  assert(gi.dtype === "i32", "i32 gather dtype");
  assert(
    new Int32Array(await readRaw(gi)).join() === "-16777219,4,16777217,3",
    "i32 gather values",
  );
});

gpuTest("gather: tensor indices clamp, CPU indices are range-checked", async () => {
  const x = f32([4, 3], 60);
  const idx = fromData(Int32Array.from([-3, 100, 2]), [3], "i32");
  assertClose(await read(gather(x.t, idx, 0)), gatherRef(x.data, [4, 3], [0, 3, 2], 0), {
    atol: 0,
    rtol: 0,
    label: "clamped",
  });
  const big = fromData(Uint32Array.from([0xffffffff, 1]), [2], "u32");
  assertClose(await read(gather(x.t, big, 0)), gatherRef(x.data, [4, 3], [3, 1], 0), {
    atol: 0,
    rtol: 0,
    label: "clamped u32",
  });
  await assertThrows(() => gather(x.t, [0, 4], 0), "gather", "index 4", "[4, 3]");
  await assertThrows(() => gather(x.t, [-1], 0), "gather", "index -1");
  await assertThrows(() => gather(x.t, [1.5], 0), "gather", "1.5");
  await assertThrows(() => gather(x.t, x.t, 0), "gather", "i32 or u32", "f32");
});

gpuTest("gather: gradient is a scatter-add (gradcheck, repeated indices)", async () => {
  const cases: { shape: number[]; axis: number; idx: number[] }[] = [
    { shape: [5, 3], axis: 0, idx: [4, 1, 4, 0, 4] },
    { shape: [6, 8], axis: 0, idx: [2, 2, 5] }, // vec4 scatter
    { shape: [3, 4, 2], axis: 1, idx: [3, 3, 0] },
    { shape: [2, 7], axis: 1, idx: [6, 0, 6, 6] },
  ];
  for (const c of cases) {
    const idx = fromData(Int32Array.from(c.idx), [c.idx.length], "i32");
    await gradcheck(
      `gather [${c.shape}] axis ${c.axis}`,
      [{ shape: c.shape }],
      ([x]) => gather(x!, idx, c.axis),
      ([x]) => gatherRef(x!, c.shape, c.idx, c.axis),
    );
  }
  // the scatter-add itself against the reference, at a non-tile size
  const shape = [3, 33, 5];
  const idxs = [32, 0, 7, 7, 32, 1, 9];
  const idx = fromData(Int32Array.from(idxs), [idxs.length], "i32");
  const x = parameter("x", randomArray(numelRef(shape), 70), shape);
  const gData = randomArray(3 * idxs.length * 5, 71);
  tidy(() => {
    backward(gather(x, idx, 1), fromData(gData, [3, idxs.length, 5], "f32"));
  });
  assertClose(await read(x.grad!), scatterAddRef(gData, shape, idxs, 1), {
    atol: 1e-6,
    rtol: 1e-6,
    shape,
    label: "scatter-add",
  });
  x.dispose();
});

// ---------------------------------------------------------------- cast

const SPECIALS = [
  0,
  -0,
  1,
  -1,
  0.1,
  1 / 3,
  65504,
  65519.99,
  65520,
  1e6,
  -1e6,
  6e-8,
  3e-8,
  2.9e-8,
  6.1e-5,
  1e-40,
  -1e-40,
  3.4e38,
  Infinity,
  -Infinity,
  NaN,
  1.00048828125,
  1.001953125,
  1.0009765625,
  1.0029296875,
  1.00390625,
  1.01171875,
  255.5,
  256.5,
  2 ** -24,
  2 ** -25,
  3 * 2 ** -26,
];

gpuTest("cast: f32 -> bf16/f16 bits equal the CPU conversions exactly", async () => {
  const vals = new Float32Array([
    ...SPECIALS,
    ...randomArray(251, 80, -70000, 70000),
    ...randomArray(64, 81, -1e-4, 1e-4),
  ]);
  for (const n of [vals.length, vals.length - 1, 1]) { // odd and even lengths
    const v = vals.slice(0, n);
    const x = fromData(v, [n], "f32");
    for (const dt of ["bf16", "f16"] as const) {
      const y = cast(x, dt);
      assert(y.dtype === dt, `dtype ${y.dtype}`);
      const got = new Uint16Array(await readRaw(y));
      const want = dt === "bf16" ? f32ToBf16(v) : f32ToF16(v);
      const bad = want.findIndex((w, i) => w !== got[i]);
      assert(
        bad < 0,
        `${dt} bits differ at ${bad} (x = ${v[bad]}): got 0x${got[bad]?.toString(16)}, want 0x${
          want[bad]?.toString(16)
        }`,
      );
      // read-back widens the stored bits
      const back = await read(y);
      const wide = dt === "bf16" ? bf16ToF32(want) : f16ToF32(want);
      assertSameF32(back, wide, `${dt} read-back`);
    }
  }
});

gpuTest("cast: strided input, round trips, identity and gradient", async () => {
  const base = f32([7, 33], 90);
  const p = permute(base.t, [1, 0]);
  const pRef = Float32Array.from(permuteRef(base.data, [7, 33], [1, 0]).data);
  const y = cast(p, "bf16");
  assert(new Uint16Array(await readRaw(y)).join() === f32ToBf16(pRef).join(), "strided bf16 bits");
  // f16 -> bf16 goes through f32
  const h = cast(cast(p, "f16"), "bf16");
  assert(
    new Uint16Array(await readRaw(h)).join() === f32ToBf16(f16ToF32(f32ToF16(pRef))).join(),
    "f16 -> bf16 bits",
  );
  const w = cast(y, "f32");
  assert(w.dtype === "f32", "cast to f32");
  assertClose(await read(w), bf16ToF32(f32ToBf16(pRef)), {
    atol: 0,
    rtol: 0,
    label: "bf16 -> f32",
  });
  assert(cast(y, "bf16") === y, "same-dtype cast returns its input");
  await assertThrows(() => cast(p, "i32" as "f32"), "cast", "i32");
  // the gradient passes through unchanged
  const x = parameter("x", randomArray(9, 91), [9]);
  const wData = randomArray(9, 92);
  tidy(() => backward(sum(mul(cast(x, "f16"), fromData(wData, [9], "f32")))));
  assertClose(await read(x.grad!), wData, { atol: 0, rtol: 0, label: "cast grad" });
  x.dispose();
});
