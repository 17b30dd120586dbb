/**
 * Fused attention and RoPE against float64 CPU references: forward at odd lengths and every
 * head-dim variant (plus padded ones), strided inputs read in place, gradients against the
 * reference VJP and finite differences, pipeline reuse across lengths, error messages.
 */
import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import { gradcheck } from "../_gradcheck.ts";
import {
  attentionRef,
  attentionVjpRef,
  type AttnDims,
  gatherStrided,
  ropeHalfRef,
  ropeInterleavedRef,
} from "../ref/attention.ts";
import { fromData, realize } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { permute, read, reshape, slice } from "../../engine/ops/movement.ts";
import {
  attention,
  ropeHalf,
  ropeInterleaved,
  ropeTablesFlux,
  ropeTablesHalf,
} from "../../engine/ops/attention.ts";
import { rmsNorm } from "../../engine/ops/norm.ts";
import { type Tensor, tidy } from "../../engine/tensor.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function dimsOf(q: readonly number[], lk = q[2]!): AttnDims {
  return { B: q[0]!, H: q[1]!, Lq: q[2]!, Lk: lk, D: q[3]! };
}

/** Random q, k, v data for dims. */
function qkv(d: AttnDims, seed: number) {
  return {
    q: randomArray(d.B * d.H * d.Lq * d.D, seed),
    k: randomArray(d.B * d.H * d.Lk * d.D, seed + 1),
    v: randomArray(d.B * d.H * d.Lk * d.D, seed + 2),
  };
}

async function forward(d: AttnDims, seed: number, scale?: number) {
  const x = qkv(d, seed);
  const sh = (l: number) => [d.B, d.H, l, d.D];
  const out = tidy(() =>
    attention(
      fromData(x.q, sh(d.Lq), "f32"),
      fromData(x.k, sh(d.Lk), "f32"),
      fromData(x.v, sh(d.Lk), "f32"),
      { scale },
    )
  );
  const got = await read(out);
  out.dispose();
  return { got, ref: attentionRef(x.q, x.k, x.v, d, scale).out };
}

gpuTest("attention forward matches the float64 reference (odd L, every head dim)", async () => {
  const cases: [number[], number?][] = [
    [[1, 1, 1, 32]],
    [[2, 3, 17, 64]],
    [[1, 2, 1000, 64]],
    [[2, 2, 17, 128]],
    [[1, 3, 17, 16]],
    [[2, 1, 33, 32]],
    [[1, 2, 5, 64], 19], // cross-attention: Lq != Lk
    [[1, 2, 19, 32], 5],
    [[1, 2, 9, 24]], // padded to the 32 variant
    [[1, 1, 7, 8]], // padded to 16
    [[1, 1, 6, 80]], // padded to 128
  ];
  let seed = 1;
  for (const [shape, lk] of cases) {
    const d = dimsOf(shape, lk);
    const { got, ref } = await forward(d, seed += 3);
    assertClose(got, ref, {
      atol: 2e-6,
      rtol: 1e-4,
      shape,
      label: `attention ${shape} Lk ${d.Lk}`,
    });
  }
  // explicit scale, large enough for the softmax to be peaked (the online max matters)
  const d = dimsOf([1, 2, 45, 64]);
  const { got, ref } = await forward(d, 99, 2.5);
  assertClose(got, ref, { atol: 1e-5, rtol: 1e-4, label: "attention scale 2.5" });
});

gpuTest("attention reads heads split from [B, L, H*D] in place (no copy)", async () => {
  const rt = gpu();
  const [B, L, H, D] = [2, 13, 3, 32];
  const xq = randomArray(B * L * H * D, 5), xk = randomArray(B * L * H * D, 6);
  const xv = randomArray(B * H * L * (D + 3), 7);
  const tq = fromData(xq, [B, L, H * D], "f32");
  const tk = fromData(xk, [B, L, H * D], "f32");
  const tv = fromData(xv, [B, H, L, D + 3], "f32");
  const heads = (t: Tensor) => permute(reshape(t, [B, L, H, D]), [0, 2, 1, 3]);
  // q, k: strided views (read in place); v: a slice at offset 3 (not vec4-aligned: copied)
  const q = heads(tq), k = heads(tk), v = slice(tv, [0, 0, 0, 3], [B, H, L, D + 3]);
  const before = rt.counters.dispatches;
  const y = attention(q, k, v);
  realize([y]);
  const dispatches = rt.counters.dispatches - before;
  const strided = (t: Tensor, data: Float32Array) =>
    gatherStrided(data, t.shape, t.strides, t.offset);
  const ref = attentionRef(strided(q, xq), strided(k, xk), strided(v, xv), dimsOf([B, H, L, D]));
  assertClose(await read(y), ref.out, { atol: 2e-6, rtol: 1e-4, label: "strided attention" });
  if (dispatches !== 2) {
    throw new Error(`expected 2 dispatches (copy of v, attention), got ${dispatches}`);
  }
  for (const t of [y, q, k, v, tq, tk, tv]) t.dispose();
});

/** Engine gradients of sum(attention(q, k, v) * g) through `backward(out, g)`. */
async function grads(d: AttnDims, seed: number) {
  const x = qkv(d, seed);
  const g = randomArray(d.B * d.H * d.Lq * d.D, seed + 7);
  const q = parameter("q", x.q, [d.B, d.H, d.Lq, d.D]);
  const k = parameter("k", x.k, [d.B, d.H, d.Lk, d.D]);
  const v = parameter("v", x.v, [d.B, d.H, d.Lk, d.D]);
  tidy(() => {
    const y = attention(q, k, v);
    backward(y, fromData(g, y.shape, "f32"));
  });
  const got = [await read(q.grad!), await read(k.grad!), await read(v.grad!)];
  for (const p of [q, k, v]) p.dispose();
  const r = attentionVjpRef(x.q, x.k, x.v, g, d);
  return { got, ref: [r.dq, r.dk, r.dv] };
}

gpuTest("attention gradients match the reference VJP", async () => {
  const cases: [number[], number?][] = [
    [[2, 3, 17, 32]],
    [[1, 2, 33, 64]],
    [[1, 1, 9, 128]],
    [[2, 2, 7, 16]],
    [[1, 1, 1, 64]],
    [[1, 2, 5, 64], 19],
    [[1, 2, 21, 16], 4],
    [[1, 2, 6, 24]],
  ];
  let seed = 11;
  for (const [shape, lk] of cases) {
    const d = dimsOf(shape, lk);
    const { got, ref } = await grads(d, seed += 5);
    ["dq", "dk", "dv"].forEach((n, i) =>
      assertClose(got[i]!, ref[i]!, { atol: 2e-6, rtol: 1e-4, label: `${n} ${shape} Lk ${d.Lk}` })
    );
  }
});

gpuTest("attention gradients flow through head split / merge views", async () => {
  const [B, L, H, D] = [1, 11, 2, 64];
  const n = B * L * H * D;
  const [xq, xk, xv, g] = [21, 22, 23, 24].map((s) => randomArray(n, s));
  const ps = [xq, xk, xv].map((x, i) => parameter(`p${i}`, x!, [B, L, H * D]));
  const heads = (t: Tensor) => permute(reshape(t, [B, L, H, D]), [0, 2, 1, 3]);
  tidy(() => {
    const o = attention(heads(ps[0]!), heads(ps[1]!), heads(ps[2]!));
    const merged = reshape(permute(o, [0, 2, 1, 3]), [B, L, H * D]);
    backward(merged, fromData(g!, [B, L, H * D], "f32"));
  });
  // reference in the [B, H, L, D] layout
  const toHeads = (x: Float32Array) => gatherStrided(x, [B, H, L, D], [L * H * D, D, H * D, 1]);
  const gh = toHeads(g!);
  const r = attentionVjpRef(toHeads(xq!), toHeads(xk!), toHeads(xv!), gh, dimsOf([B, H, L, D]));
  const back = (x: Float64Array) => gatherStrided(x, [B, L, H, D], [H * L * D, D, L * D, 1]);
  const refs = [r.dq, r.dk, r.dv].map(back);
  for (let i = 0; i < 3; i++) {
    assertClose(await read(ps[i]!.grad!), refs[i]!, { atol: 2e-6, rtol: 1e-4, label: `grad ${i}` });
  }
  for (const p of ps) p.dispose();
});

gpuTest("attention gradcheck (finite differences)", async () => {
  const d = dimsOf([1, 2, 5, 16], 6);
  await gradcheck(
    "attention",
    [{ shape: [1, 2, 5, 16] }, { shape: [1, 2, 6, 16] }, { shape: [1, 2, 6, 16] }],
    ([q, k, v]) => attention(q!, k!, v!),
    ([q, k, v]) => attentionRef(q!, k!, v!, d).out,
  );
});

gpuTest(
  "attention backward after the forward's scope ended recomputes the statistics",
  async () => {
    const d = dimsOf([1, 2, 9, 32]);
    const x = qkv(d, 31);
    const g = randomArray(numel([1, 2, 9, 32]), 38);
    const q = parameter("q", x.q, [1, 2, 9, 32]);
    const k = parameter("k", x.k, [1, 2, 9, 32]);
    const v = parameter("v", x.v, [1, 2, 9, 32]);
    const y = tidy(() => attention(q, k, v)); // the saved log-sum-exp is freed with this scope
    tidy(() => backward(y, fromData(g, y.shape, "f32")));
    const r = attentionVjpRef(x.q, x.k, x.v, g, d);
    assertClose(await read(q.grad!), r.dq, { atol: 2e-6, rtol: 1e-4, label: "dq" });
    assertClose(await read(k.grad!), r.dk, { atol: 2e-6, rtol: 1e-4, label: "dk" });
    for (const t of [y, q, k, v]) t.dispose();
  },
);

gpuTest("attention: another length, batch or head count compiles no new pipeline", async () => {
  const rt = gpu();
  const run = async (shape: number[]) => {
    const n = numel(shape);
    const ps = [1, 2, 3].map((s) => parameter(`x${s}`, randomArray(n, s), shape));
    tidy(() => {
      const y = attention(ps[0]!, ps[1]!, ps[2]!);
      backward(y, fromData(randomArray(n, 9), shape, "f32"));
    });
    await read(ps[0]!.grad!);
    for (const p of ps) p.dispose();
  };
  await run([1, 2, 17, 32]);
  const before = rt.counters.pipelinesCompiled;
  await run([2, 3, 40, 32]);
  await run([1, 1, 3, 32]);
  const extra = rt.counters.pipelinesCompiled - before;
  if (extra !== 0) throw new Error(`${extra} pipelines compiled for new lengths`);
});

gpuTest("attention errors name the op and the shapes", async () => {
  const a = fromData(new Float32Array(2 * 3 * 4), [2, 3, 4], "f32");
  const b = fromData(new Float32Array(1 * 2 * 5 * 8), [1, 2, 5, 8], "f32");
  const c = fromData(new Float32Array(1 * 2 * 5 * 16), [1, 2, 5, 16], "f32");
  const big = fromData(new Float32Array(2 * 256), [1, 1, 2, 256], "f32");
  await assertThrows(() => attention(a, a, a), "attention", "[2, 3, 4]");
  await assertThrows(() => attention(b, c, c), "attention", "[1, 2, 5, 8]", "[1, 2, 5, 16]");
  await assertThrows(() => attention(big, big, big), "attention", "head dim 256");
  await assertThrows(() => ropeHalf(b, c, c), "ropeHalf", "[1, 2, 5, 16]");
  for (const t of [a, b, c, big]) t.dispose();
});

// ---------------------------------------------------------------- RoPE

/** Position ids like the fixtures: zeros for text tokens, (t, h, w) for image tokens. */
function positionIds(B: number, L: number, txt: number): Float32Array {
  const ids = new Float32Array(B * L * 3);
  for (let b = 0; b < B; b++) {
    for (let l = txt; l < L; l++) {
      const i = l - txt;
      ids.set([Math.floor(i / 6) + b, Math.floor(i / 3) % 2 + 3 * b, i % 3 + 7], (b * L + l) * 3);
    }
  }
  return ids;
}

gpuTest("ropeHalf and ropeInterleaved match the reference, forward and backward", async () => {
  const [B, H, L, D] = [2, 3, 7, 16];
  const axes = [4, 6, 6];
  const ids = positionIds(B, L, 2);
  const { cos, sin } = ropeTablesHalf(ids, [B, L, 3], axes);
  const pe = ropeTablesFlux(ids, [B, L, 3], axes);
  const [cd, sd, ped] = [await read(cos), await read(sin), await read(pe)];
  const xd = randomArray(B * L * H * D, 41);
  const gd = randomArray(B * H * L * D, 42);
  // x given as heads split from [B, L, H*D] (a strided view)
  const xh = gatherStrided(xd, [B, H, L, D], [L * H * D, D, H * D, 1]);
  const cases = [
    {
      name: "ropeHalf",
      f: (x: Tensor) => ropeHalf(x, cos, sin),
      ref: (x: ArrayLike<number>, t: boolean) => ropeHalfRef(x, cd, sd, [B, H, L, D], B, t),
    },
    {
      name: "ropeInterleaved",
      f: (x: Tensor) => ropeInterleaved(x, pe),
      ref: (x: ArrayLike<number>, t: boolean) => ropeInterleavedRef(x, ped, [B, H, L, D], B, t),
    },
  ];
  for (const c of cases) {
    const p = parameter("x", xd, [B, L, H * D]);
    const y = tidy(() => {
      const y = c.f(permute(reshape(p, [B, L, H, D]), [0, 2, 1, 3]));
      backward(y, fromData(gd, y.shape, "f32"));
      return y;
    });
    assertClose(await read(y), c.ref(xh, false), { atol: 1e-6, rtol: 1e-5, label: c.name });
    // the gradient (rotation by -θ) comes back in the [B, L, H*D] layout of the parameter
    const gx = gatherStrided(c.ref(gd, true), [B, L, H, D], [H * L * D, D, L * D, 1]);
    assertClose(await read(p.grad!), gx, { atol: 1e-6, rtol: 1e-5, label: `${c.name} grad` });
    for (const t of [y, p]) t.dispose();
  }
  for (const t of [cos, sin, pe]) t.dispose();
});

gpuTest("RoPE tables broadcast over the batch; gradcheck of both layouts", async () => {
  const [B, H, L, D] = [2, 2, 5, 8];
  const ids = positionIds(1, L, 1);
  const { cos, sin } = ropeTablesHalf(ids, [1, L, 3], [2, 2, 4]);
  const pe = ropeTablesFlux(ids, [1, L, 3], [2, 2, 4]);
  const [cd, sd, ped] = [await read(cos), await read(sin), await read(pe)];
  await gradcheck(
    "ropeHalf",
    [{ shape: [B, H, L, D] }],
    ([x]) => ropeHalf(x!, cos, sin),
    ([x]) => ropeHalfRef(x!, cd, sd, [B, H, L, D], 1),
  );
  await gradcheck(
    "ropeInterleaved",
    [{ shape: [B, H, L, D] }],
    ([x]) => ropeInterleaved(x!, pe),
    ([x]) => ropeInterleavedRef(x!, ped, [B, H, L, D], 1),
  );
  for (const t of [cos, sin, pe]) t.dispose();
});

gpuTest("QK RMS-norm, RoPE and attention compose (MMDiT attention)", async () => {
  const [B, H, L, D] = [1, 2, 6, 16];
  const n = B * H * L * D;
  const [xq, xk, xv] = [51, 52, 53].map((s) => randomArray(n, s, -2, 2));
  const scale = randomArray(D, 54, 0.75, 1.25);
  const ids = positionIds(B, L, 2);
  const { cos, sin } = ropeTablesHalf(ids, [B, L, 3], [4, 6, 6]);
  const [cd, sd] = [await read(cos), await read(sin)];
  const w = fromData(scale, [D], "f32");
  const y = tidy(() => {
    const t = (x: Float32Array) => fromData(x, [B, H, L, D], "f32");
    const q = ropeHalf(rmsNorm(t(xq!), w, 1e-6), cos, sin);
    const k = ropeHalf(rmsNorm(t(xk!), w, 1e-6), cos, sin);
    return attention(q, k, t(xv!));
  });
  const norm = (x: Float32Array) => {
    const o = new Float64Array(n);
    for (let r = 0; r < n / D; r++) {
      let ss = 0;
      for (let j = 0; j < D; j++) ss += x[r * D + j]! ** 2;
      const inv = 1 / Math.sqrt(ss / D + 1e-6);
      for (let j = 0; j < D; j++) o[r * D + j] = x[r * D + j]! * inv * scale[j]!;
    }
    return o;
  };
  const rq = ropeHalfRef(norm(xq!), cd, sd, [B, H, L, D], B);
  const rk = ropeHalfRef(norm(xk!), cd, sd, [B, H, L, D], B);
  const ref = attentionRef(rq, rk, xv!, dimsOf([B, H, L, D])).out;
  assertClose(await read(y), ref, { atol: 1e-5, rtol: 1e-4, label: "rmsNorm+rope+attention" });
  for (const t of [y, cos, sin, w]) t.dispose();
});
