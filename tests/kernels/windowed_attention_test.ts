/**
 * Attention and RoPE on tensors larger than one storage binding (engine/window.ts): the attention
 * kernels run groups of heads per dispatch, or, for a head over the limit, blocks of its rows
 * (query rows forward and for dQ, key rows for dK/dV) times ranges of the streamed rows (merged
 * by log-sum-exp forward, summed backward); RoPE runs ranges of rows. Each case runs under a
 * lowered binding limit, where its tensors need at least 3 windows, against the float64
 * references, and once more at the device's limit: both runs must agree, and every kernel of the
 * op must have split (dispatches counted per kernel).
 */
import { ok as assert } from "node:assert/strict";
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
import { bf16ToF32, f32ToBf16 } from "../../engine/dtype.ts";
import type { Runtime } from "../../engine/runtime.ts";
import { type Tensor, tidy } from "../../engine/tensor.ts";
import { atDeviceLimit, gpu, gpuTest, withBindingLimit } from "../_gpu.ts";
import { assertClose, assertThrows, randomArray } from "../_assert_close.ts";
import {
  attentionRef,
  attentionVjpRef,
  gatherStrided,
  ropeHalfRef,
  ropeInterleavedRef,
} from "../ref/attention.ts";

const FWD = "attention_fwd", DQ = "attention_bwd_dq", DKV = "attention_bwd_dkv", ROPE = "rope";
const ATOL = 2e-6, RTOL = 1e-4; // attention_test.ts's tolerances

/** What one run records: tensors to read (then disposed) and tensors to dispose. */
interface Made {
  out: Tensor[];
  own: Tensor[];
}

/** Runs `make` and reads its outputs, counting the dispatches per kernel (less variant, tile). */
async function run(make: () => Made) {
  const rt = gpu();
  // fresh (zeroed) buffers: a row a dispatch failed to write must not show the other run's value
  rt.pool.trim();
  const counts: Record<string, number> = {};
  const dispatch = rt.dispatch;
  rt.dispatch = (...args: Parameters<Runtime["dispatch"]>) => {
    const k = args[0].name.replace(/(_acc)?_d\d+_r\d+_t\d+$/, "");
    counts[k] = (counts[k] ?? 0) + 1;
    return dispatch.apply(rt, args);
  };
  let m: Made;
  try {
    m = make();
    realize(m.out);
  } finally {
    rt.dispatch = dispatch;
  }
  const vals: Float32Array[] = [];
  for (const t of m.out) vals.push(await read(t));
  for (const t of [...m.out, ...m.own]) t.dispose();
  return { vals, counts };
}

/**
 * Runs `make` at the device's limit and under `limit`: the windowed outputs match `refs` (null:
 * not checked against a reference) and the whole run within `agree`, and each kernel in `split`
 * ran windowed at least that many times as often as whole (pieces per dispatch).
 */
async function check(
  label: string,
  limit: number,
  make: () => Made,
  refs: (ArrayLike<number> | null)[],
  split: Record<string, number>,
  tol = { atol: ATOL, rtol: RTOL },
  agree = EXACT,
) {
  const win = await withBindingLimit(limit, () => run(make));
  const whole = await atDeviceLimit(() => run(make));
  refs.forEach((ref, i) => {
    const l = `${label} output ${i}`;
    if (ref) assertClose(win.vals[i]!, ref, { ...tol, label: `${l} (windowed)` });
    assertClose(win.vals[i]!, whole.vals[i]!, { ...agree, label: `${l}: win vs whole` });
  });
  for (const [k, n] of Object.entries(split)) {
    const w = whole.counts[k] ?? 0;
    assert(w > 0, `${label}: ${k} did not run`);
    assert(
      (win.counts[k] ?? 0) >= n * w,
      `${label}: ${k} ran ${win.counts[k]} times windowed, ${w} whole: expected ${n}x (no split)`,
    );
  }
}

/** Agreement of a windowed run with the whole one: same arithmetic per row. */
const EXACT = { atol: 1e-6, rtol: 0 };
/**
 * Agreement when the streamed rows (keys, or queries for dK/dV) of a head are split: sums over
 * ranges (merged forward) round differently from one sum over all (~1e-6 on partial sums of ~1).
 */
const SUMMED = { atol: 1e-6, rtol: 1e-4 };

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** `[B, H, L, D]` heads of a `[B, L, H·D]` tensor (a strided view), and back (a copy). */
const heads = (t: Tensor, H: number) => {
  const [B, L, HD] = t.shape as [number, number, number];
  return permute(reshape(t, [B, L, H, HD / H]), [0, 2, 1, 3]);
};
const merge = (y: Tensor) => {
  const [B, H, L, D] = y.shape as [number, number, number, number];
  return reshape(permute(y, [0, 2, 1, 3]), [B, L, H * D]);
};
/** Row-major `[B, H, L, D]` values of `[B, L, H·D]` data, and back. */
const toHeads = (x: ArrayLike<number>, [B, H, L, D]: number[]) =>
  gatherStrided(x, [B!, H!, L!, D!], [L! * H! * D!, D!, H! * D!, 1]);
const fromHeads = (x: ArrayLike<number>, [B, H, L, D]: number[]) =>
  gatherStrided(x, [B!, L!, H!, D!], [H! * L! * D!, D!, L! * D!, 1]);

/**
 * Forward and backward of `attention` on parameters `q`, `k`, `v` (data, shape), each turned into
 * an operand by `view`; the output's gradient is `g` (data, shape) w.r.t. `seed(y)`.
 */
function attnMake(
  x: [Float32Array, number[]][],
  view: (p: Tensor) => Tensor,
  g?: { data: Float32Array; shape: number[]; seed?: (y: Tensor) => Tensor },
  scale?: number,
): () => Made {
  return () => {
    const ps = x.map(([d, s], i) => parameter(`p${i}`, d, s));
    const y = tidy(() => {
      const y = attention(view(ps[0]!), view(ps[1]!), view(ps[2]!), { scale });
      if (g) backward(g.seed ? g.seed(y) : y, fromData(g.data, g.shape, "f32"));
      return y;
    });
    return { out: g ? [y, ...ps.map((p) => p.grad!)] : [y], own: ps };
  };
}

gpuTest("windowed attention: groups of heads per dispatch, forward and backward", async () => {
  const cases: [number[], number][] = [
    // 8 heads of 150 x 32 (19 KB each), 150 KB per tensor: 3 heads per 64 KiB binding
    [[2, 4, 150, 32], 65536],
    // 28 heads of 100 x 16 (6 KB each) at 8 KiB: one head per dispatch, lse and Δ windowed too
    [[4, 7, 100, 16], 8192],
  ];
  let seed = 1;
  for (const [s, limit] of cases) {
    const [q, k, v, g] = [0, 1, 2, 3].map((i) => randomArray(numel(s), seed + i));
    seed += 4;
    const d = { B: s[0]!, H: s[1]!, Lq: s[2]!, Lk: s[2]!, D: s[3]! };
    const r = attentionVjpRef(q!, k!, v!, g!, d);
    await check(
      `dense ${s} at ${limit}`,
      limit,
      attnMake([[q!, s], [k!, s], [v!, s]], (p) => p, { data: g!, shape: s }),
      [attentionRef(q!, k!, v!, d).out, r.dq, r.dk, r.dv],
      { [FWD]: 3, [DQ]: 3, [DKV]: 3 },
    );
  }
});

gpuTest(
  "windowed attention: heads split from [B, L, H*D] (strided q, k, v, dOut), Lq != Lk, D16",
  async () => {
    const [B, H, D, Lq, Lk] = [3, 3, 16, 70, 45];
    const sq = [B, Lq, H * D], sk = [B, Lk, H * D];
    const [q, g] = [5, 6].map((i) => randomArray(numel(sq), i));
    const [k, v] = [7, 8].map((i) => randomArray(numel(sk), i));
    const hq = [B, H, Lq, D], hk = [B, H, Lk, D];
    const d = { B, H, Lq, Lk, D };
    const [qh, kh, vh, gh] = [toHeads(q!, hq), toHeads(k!, hk), toHeads(v!, hk), toHeads(g!, hq)];
    const r = attentionVjpRef(qh, kh, vh, gh, d);
    // 16 KiB: one batch's heads of q (13 KB) per window
    await check(
      "heads of [3, 70, 48] / [3, 45, 48]",
      16384,
      attnMake([[q!, sq], [k!, sk], [v!, sk]], (p) => heads(p, H), {
        data: g!,
        shape: sq,
        seed: merge,
      }),
      [
        attentionRef(qh, kh, vh, d).out,
        fromHeads(r.dq, hq),
        fromHeads(r.dk, hk),
        fromHeads(r.dv, hk),
      ],
      { [FWD]: 3, [DQ]: 3, [DKV]: 3 },
    );
  },
);

/**
 * Forward and backward of dense q `[B, H, Lq, D]`, k, v `[B, H, Lk, D]` against the reference
 * (heads over the limit: the streamed rows are split).
 */
async function dense(
  label: string,
  limit: number,
  [B, H, Lq, Lk, D]: number[],
  seed: number,
  split: Record<string, number>,
  scale?: number,
) {
  const sq = [B!, H!, Lq!, D!], sk = [B!, H!, Lk!, D!];
  const q = randomArray(numel(sq), seed), g = randomArray(numel(sq), seed + 1);
  const [k, v] = [2, 3].map((i) => randomArray(numel(sk), seed + i));
  const d = { B: B!, H: H!, Lq: Lq!, Lk: Lk!, D: D! };
  const r = attentionVjpRef(q, k!, v!, g, d, scale);
  await check(
    label,
    limit,
    attnMake([[q, sq], [k!, sk], [v!, sk]], (p) => p, { data: g, shape: sq }, scale),
    [attentionRef(q, k!, v!, d, scale).out, r.dq, r.dk, r.dv],
    split,
    undefined,
    SUMMED,
  );
}

gpuTest(
  "windowed attention: long queries (query blocks; dK/dV sums ranges of queries)",
  async () => {
    // a head of q is 64 KB at 16 KiB: blocks of 64 (32 for dQ) query rows, k and v whole;
    // dK/dV: 20 key rows whole, queries in ranges of about 125 rows accumulated
    await dense("q [1, 2, 500, 32], k [1, 2, 20, 32]", 16384, [1, 2, 500, 20, 32], 9, {
      [FWD]: 6,
      [DQ]: 6,
      [DKV]: 3,
    });
    // q, k, v heads of [B, L, H*D]: a block of q spans 64 rows of both heads
    const [B, H, Lq, Lk, D] = [1, 2, 500, 20, 32];
    const sq = [B, Lq, H * D], sk = [B, Lk, H * D];
    const q = randomArray(numel(sq), 13), g = randomArray(numel(sq), 14);
    const [k, v] = [15, 16].map((i) => randomArray(numel(sk), i));
    const hq = [B, H, Lq, D], hk = [B, H, Lk, D];
    const [qh, kh, vh, gh] = [toHeads(q, hq), toHeads(k!, hk), toHeads(v!, hk), toHeads(g, hq)];
    const d = { B, H, Lq, Lk, D };
    const r = attentionVjpRef(qh, kh, vh, gh, d);
    await check(
      "heads of q [1, 500, 64], k [1, 20, 64]",
      32768,
      attnMake([[q, sq], [k!, sk], [v!, sk]], (p) => heads(p, H), {
        data: g,
        shape: sq,
        seed: merge,
      }),
      [
        attentionRef(qh, kh, vh, d).out,
        fromHeads(r.dq, hq),
        fromHeads(r.dk, hk),
        fromHeads(r.dv, hk),
      ],
      { [FWD]: 3, [DQ]: 3, [DKV]: 3 },
      undefined,
      SUMMED,
    );
  },
);

gpuTest(
  "windowed attention: long keys (ranges of keys merged by log-sum-exp; dK/dV key blocks)",
  async () => {
    // a head of k is 64 KB at 16 KiB: keys in ranges of about 125 rows, forward merged and dQ
    // summed; dK/dV in blocks of 32 key rows with q whole
    const dims = [1, 2, 20, 500, 32];
    await dense("q [1, 2, 20, 32], k [1, 2, 500, 32]", 16384, dims, 17, {
      [FWD]: 6,
      [DQ]: 6,
      [DKV]: 6,
    });
    // scale 2.5: a peaked softmax, so the merge's rescaling matters (forward only: the backward
    // of such scores loses ~1e-5 to rounding in the whole run already)
    const sq = [1, 2, 20, 32], sk = [1, 2, 500, 32];
    const [q, k, v] = [30, 31, 32].map((i, j) => randomArray(numel(j ? sk : sq), i));
    const d = { B: 1, H: 2, Lq: 20, Lk: 500, D: 32 };
    await check(
      "scale 2.5",
      16384,
      attnMake([[q!, sq], [k!, sk], [v!, sk]], (p) => p, undefined, 2.5),
      [attentionRef(q!, k!, v!, d, 2.5).out],
      { [FWD]: 6 },
      { atol: 1e-5, rtol: RTOL }, // attention_test.ts's tolerance at scale 2.5
      SUMMED,
    );
  },
);

gpuTest("windowed attention: long queries and keys (row blocks x key ranges), D16", async () => {
  // a head is 16.6 KB at 16 KiB: 2 blocks of 128 query rows x 2 ranges of keys forward
  await dense("[1, 2, 260, 16]", 16384, [1, 2, 260, 260, 16], 21, {
    [FWD]: 4,
    [DQ]: 4,
    [DKV]: 4,
  });
});

gpuTest("windowed attention: q and k read at an offset (slices of larger tensors)", async () => {
  // q: batches 1..2 of a [3, 4, 150, 32] tensor; k: rows 10.. of [2, 4, 160, 32] (gaps per head)
  const [B, H, L, D] = [2, 4, 150, 32];
  const qb = randomArray(3 * H * L * D, 25), kb = randomArray(B * H * 160 * D, 26);
  const v = randomArray(B * H * L * D, 27);
  const d = { B, H, Lq: L, Lk: L, D };
  const q = gatherStrided(qb, [B, H, L, D], [H * L * D, L * D, D, 1], H * L * D);
  const k = gatherStrided(kb, [B, H, L, D], [H * 160 * D, 160 * D, D, 1], 10 * D);
  await check(
    "offset views",
    65536,
    () => {
      const ts = [fromData(qb, [3, H, L, D], "f32"), fromData(kb, [B, H, 160, D], "f32")];
      const tv = fromData(v, [B, H, L, D], "f32");
      const y = attention(
        slice(ts[0]!, [1, 0, 0, 0], [3, H, L, D]),
        slice(ts[1]!, [0, 0, 10, 0], [B, H, 160, D]),
        tv,
      );
      return { out: [y], own: [...ts, tv] };
    },
    [attentionRef(q, k, v, d).out],
    { [FWD]: 3 },
  );
});

gpuTest(
  "windowed attention: bf16 inputs (widened by a copy), odd L, padded head dim 24",
  async () => {
    const s = [2, 3, 101, 24];
    const [q, k, v] = [18, 19, 20].map((i) => randomArray(numel(s), i));
    const bf = [q!, k!, v!].map((x) => f32ToBf16(x));
    // the reference sees the bf16-rounded values
    const [wq, wk, wv] = bf.map(bf16ToF32);
    const d = { B: 2, H: 3, Lq: 101, Lk: 101, D: 24 };
    await check(
      "bf16 [2, 3, 101, 24]",
      16384,
      () => {
        const ts = bf.map((x) => fromData(x, s, "bf16"));
        return { out: [attention(ts[0]!, ts[1]!, ts[2]!)], own: ts };
      },
      [attentionRef(wq!, wk!, wv!, d).out],
      { [FWD]: 3 },
    );
  },
);

gpuTest("windowed attention: a block of rows over the binding limit is refused", async () => {
  // 4 KiB: even the smallest block of rows (8 rows of 512 bytes) of q does not fit
  const q = fromData(randomArray(40 * 128, 28), [1, 1, 40, 128], "f32");
  await withBindingLimit(4096, async () => {
    const y = attention(q, q, q);
    await assertThrows(
      () => realize([y]),
      "attention (q [1, 1, 40, 128]): one block of",
      "rows of a head of q [1, 1, 40, 128] spans",
      "over the storage-binding limit of 4096 bytes",
    );
    y.dispose();
  });
  q.dispose();
});

// ---------------------------------------------------------------- RoPE

gpuTest(
  "windowed rope: ranges of rows, both layouts, strided x, forward and backward",
  async () => {
    const [B, H, L, D] = [2, 3, 50, 32];
    const hs = [B, H, L, D], ps = [B, L, H * D];
    const ids = new Float32Array(B * L * 3).map((_, i) => (i * 7) % 13);
    // cos/sin broadcast over the batch (6 KB); pe per batch (25 KB: windowed too)
    const { cos, sin } = ropeTablesHalf(ids.subarray(0, L * 3), [1, L, 3], [8, 12, 12]);
    const pe = ropeTablesFlux(ids, [B, L, 3], [8, 12, 12]);
    const [cd, sd, ped] = [await read(cos), await read(sin), await read(pe)];
    const x = randomArray(numel(ps), 27), g = randomArray(numel(hs), 28);
    const xh = toHeads(x, hs);
    const cases = [
      {
        name: "ropeHalf",
        f: (t: Tensor) => ropeHalf(t, cos, sin),
        ref: (a: ArrayLike<number>, t: boolean) => ropeHalfRef(a, cd, sd, hs, 1, t),
      },
      {
        name: "ropeInterleaved",
        f: (t: Tensor) => ropeInterleaved(t, pe),
        ref: (a: ArrayLike<number>, t: boolean) => ropeInterleavedRef(a, ped, hs, B, t),
      },
    ];
    for (const c of cases) {
      // x: heads of a [B, L, H*D] parameter (38 KB); 16 KiB: a window holds ~40 rows of a head
      await check(
        c.name,
        16384,
        () => {
          const p = parameter("x", x, ps);
          const y = tidy(() => {
            const y = c.f(heads(p, H));
            backward(y, fromData(g, hs, "f32"));
            return y;
          });
          return { out: [y, p.grad!], own: [p] };
        },
        [c.ref(xh, false), fromHeads(c.ref(g, true), hs)],
        { [ROPE]: 6 },
        { atol: 1e-6, rtol: 1e-5 },
      );
    }
    for (const t of [cos, sin, pe]) t.dispose();
  },
);

gpuTest("windowed rope: a row over the binding limit is refused", async () => {
  const x = fromData(randomArray(4 * 1100, 29), [1, 1, 4, 1100], "f32");
  const t = fromData(new Float32Array(4 * 1100), [1, 4, 1100], "f32");
  await withBindingLimit(4096, async () => {
    const y = ropeHalf(x, t, t);
    await assertThrows(
      () => realize([y]),
      "rope",
      "one row of x [1, 1, 4, 1100]",
      "4400 bytes",
      "limit of 4096 bytes",
    );
    y.dispose();
  });
  for (const u of [x, t]) u.dispose();
});
