/**
 * Fused attention kernels (flash-attention style), forward and backward, f32.
 *
 * Layout: q `[B, H, Lq, D]`, k and v `[B, H, Lk, D]`, read through run-time strides (in vec4
 * units: the head dim must be dense and every other stride and the offset multiples of 4), so
 * heads split from `[B, L, H·D]` by reshape + permute are read in place. Outputs are dense.
 *
 * Work split, the same in the three kernels: a workgroup of {@linkcode ATTN_WG} invocations
 * owns `ATTN_WG · r` rows (query rows forward and for dQ, key rows for dK/dV) of one (b, h); each
 * invocation keeps its `r` rows and their accumulators in registers and streams over the other
 * side's rows, `t` at a time. The streamed rows have the same address in every invocation of the
 * workgroup (a broadcast on GPUs; on CPU adapters each load is a gather whatever the addresses,
 * so what counts there is that each loaded element feeds `r` rows of work).
 *
 * - forward: per key tile of `T` keys: scores `s = q·k` (q pre-scaled by `scale·log2 e`), tile
 *   max, rescale of the running sum and accumulator (skipped when the max did not grow),
 *   `p = 2^(s - m)`, `acc += p·v`; keys past the end of the last tile get a score of −1e30
 *   (p = 0), so any L runs on the same loop. Writes `out = acc / l` and the row's
 *   log-sum-exp `lse = ln Σ exp(scale·q·k)` (natural log) for the backward.
 * - backward dQ (per query row): `Δ = rowsum(dO ∘ O)` first (written out for the dK/dV kernel),
 *   then over keys `p = exp(scale·q·k − lse)`, `ds = p·(dO·v − Δ)`, `dq += ds·k`; `dq·scale`.
 * - backward dK/dV (per key row): over queries `p` as above, `dv += p·dO`,
 *   `ds = p·(dO·v − Δ)`, `dk += ds·q`; `dk·scale`.
 *
 * Tensors over the storage-binding limit: the op dispatches groups of heads, or, when one head
 * does not fit, blocks of its rows times ranges of the streamed rows (parameter words 6-9); over
 * the later ranges the `accumulate` variants run: the forward merges a key range into the output
 * and log-sum-exp of the earlier ones (weights `exp(lse_part − lse_new)`), the backward kernels
 * add their dQ or dK/dV to the earlier ranges'.
 *
 * What is compiled in: the head dim D (one of {@linkcode ATTN_HEAD_DIMS}) and the tile (a
 * function of D, see {@linkcode attnTile}); sizes, strides and the scale are parameters, so any L
 * runs on the same pipelines.
 *
 * @module
 */
import { type KernelSpec, paramsWGSL } from "../engine/kernel.ts";

/** Invocations per workgroup (one SIMD-wide group on CPU adapters). */
export const ATTN_WG = 8;

/** Head dims with a compiled variant (others are zero-padded to the next one by the op). */
export const ATTN_HEAD_DIMS = [16, 32, 64, 128] as const;

/** Tuning knobs of one variant (defaults from {@linkcode attnTile}). */
export interface AttnTile {
  /** Rows per invocation. */
  r: number;
  /** Streamed rows (keys, or queries for dK/dV) per loop step. */
  t: number;
}

/**
 * Tiles per head dim, measured on llvmpipe (B1 H8 L1024): there every storage load is a gather
 * (~25 cycles per 8 lanes, uniform address or not), so the rows per invocation `r` — the reuse
 * of each loaded element — decide the speed, while the live registers (~2·r·D floats forward,
 * 3·r·D for dQ, 4·r·D for dK/dV) decide the compile time. `t` streamed rows per loop step halve
 * the accumulator traffic. D64 / D128 favour speed (4-6 s to compile each on llvmpipe, once:
 * Mesa caches it on disk; the D64 backward at r = 8 takes about 20 s per kernel, for 30% more
 * speed than r = 4: 379 vs 542 ms forward+backward at B1 H8 L1024); D16 / D32 compile in about
 * 1 s.
 */
const TILES: Record<number, Record<"fwd" | "dq" | "dkv", AttnTile>> = {
  16: { fwd: { r: 16, t: 2 }, dq: { r: 8, t: 2 }, dkv: { r: 8, t: 2 } },
  32: { fwd: { r: 8, t: 2 }, dq: { r: 4, t: 2 }, dkv: { r: 4, t: 2 } },
  64: { fwd: { r: 8, t: 2 }, dq: { r: 8, t: 2 }, dkv: { r: 8, t: 2 } },
  128: { fwd: { r: 4, t: 2 }, dq: { r: 2, t: 2 }, dkv: { r: 2, t: 2 } },
};

/** Tile for real GPUs (untuned: one row per invocation keeps the registers per thread low). */
const GPU_TILE: AttnTile = { r: 1, t: 2 };

/**
 * The tile used for head dim `d` (one of {@linkcode ATTN_HEAD_DIMS}) and a pass; `fallback`:
 * a CPU adapter such as llvmpipe (the measured tiles), else a GPU.
 */
export function attnTile(d: number, pass: "fwd" | "dq" | "dkv", fallback = true): AttnTile {
  const t = fallback ? TILES[d]?.[pass] : ATTN_HEAD_DIMS.includes(d as 16) ? GPU_TILE : undefined;
  if (!t) throw new RangeError(`attention: no kernel variant for head dim ${d}`);
  return t;
}

/** Repeats `f(i)` for i in [0, n) and joins the results. */
function rep(n: number, f: (i: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(sep);
}

const LOG2E = "1.4426950408889634";
const LN2 = "0.6931471805599453";
const NEG_BIG = "-1.0e30";

/**
 * Parameter words shared by the kernels:
 * 0 H, 1 Lq, 2 Lk, 3 row blocks per (b, h) in this dispatch, 4 workgroups of this dispatch,
 * 5 scale (f32), 6 first (b, h) and 7 first row block of this dispatch, 8 first and 9 end of the
 * streamed rows (keys, or queries for dK/dV) this dispatch covers (10, 11 unused), then per
 * tensor (offset, stride b, stride h, stride l) in vec4 units (scalars for lse/Δ).
 *
 * One dispatch normally covers everything (all heads and rows, streamed rows `[0, L)`). An op
 * whose tensors do not fit one storage binding dispatches ranges of heads, or of row blocks and
 * streamed rows of one head, binding windows: offsets are then relative to the windows and may
 * wrap below zero (u32); only the addresses a dispatch touches are in range. The dispatches over
 * the later streamed rows of a head use the `accumulate` variant of each kernel, which merges
 * into the outputs of the earlier ones (compiled separately: reading the outputs back would
 * double the memory accesses llvmpipe compiles, ~2.5x the compile time of the plain kernels).
 */
const HEADER = `let H = pu(0u); let Lq = pu(1u); let Lk = pu(2u); let nrb = pu(3u);
  let g = wg.y * nwg.x + wg.x;
  if (g >= pu(4u)) { return; }
  let bh = pu(6u) + g / nrb; let rb = pu(7u) + g % nrb;
  let b = bh / H; let h = bh % H;
  let s0 = pu(8u); let s1 = pu(9u);`;

/** First word of the tensor slots (after the header). */
const SLOTS = 12;

/** Base address of tensor slot `i` (words SLOTS + 4i ..) for (b, h). */
function base(name: string, i: number): string {
  const w = SLOTS + 4 * i;
  return `let ${name}b = pu(${w}u) + b * pu(${w + 1}u) + h * pu(${w + 2}u); let ${name}l = pu(${
    w + 3
  }u);`;
}

const fwdCache = new Map<string, KernelSpec>();

/**
 * Forward kernel. Bindings: q, k, v → out (dense `[B, H, Lq, D]`), lse (dense `[B, H, Lq]`).
 * Parameter words: header, then slots q, k, v, out (4 words each, vec4 units) and lse offset.
 * `accumulate`: merge the keys `[s0, s1)` into the out and lse of the keys before (weights
 * `exp(lse_part − lse_new)` of both parts).
 */
export function attnFwdKernel(d: number, tile: AttnTile, accumulate = false): KernelSpec {
  const key = `${d}/${tile.r}/${tile.t}/${accumulate}`;
  let k = fwdCache.get(key);
  if (k) return k;
  const { r: R, t: T } = tile;
  const C = d / 4;
  const rows = ATTN_WG * R;
  // one key step of tile size `n`, keys at j0 + t
  const step = (n: number, j0: string) => {
    const L: string[] = [];
    for (let t = 0; t < n; t++) {
      // keys past the end (last tile) load the last key and get a score of -1e30 (p = 0)
      L.push(`    { let j = ${j0} + ${t}u; let ka = kb + min(j, s1 - 1u) * kl;`);
      L.push(rep(C, (c) => `      let k${c} = K[ka + ${c}u];`));
      for (let r = 0; r < R; r++) {
        const s = `sv${r}.x + sv${r}.y + sv${r}.z + sv${r}.w`;
        L.push(
          `      let sv${r} = ${rep(C, (c) => `q${r}_${c} * k${c}`, " + ")};`,
          n > 1
            ? `      s${r}_${t} = select(${NEG_BIG}, ${s}, j < s1);`
            : `      s${r}_${t} = ${s};`,
        );
      }
      L.push(`    }`);
    }
    for (let r = 0; r < R; r++) {
      const mt = rep(n - 1, () => "max(", "") + `s${r}_0` +
        rep(n - 1, (t) => `, s${r}_${t + 1})`, "");
      L.push(
        `    { let mn = max(m${r}, ${mt});`,
        `      if (mn > m${r}) { let al = exp2(m${r} - mn); m${r} = mn; l${r} *= al;`,
        rep(C, (c) => `        a${r}_${c} *= al;`),
        `      }`,
        rep(n, (t) => `      s${r}_${t} = exp2(s${r}_${t} - mn);`),
        `      l${r} += ${rep(n, (t) => `s${r}_${t}`, " + ")}; }`,
      );
    }
    for (let t = 0; t < n; t++) {
      L.push(`    { let va = vb + min(${j0} + ${t}u, s1 - 1u) * vl;`);
      L.push(rep(C, (c) => `      let v${c} = V[va + ${c}u];`));
      for (let r = 0; r < R; r++) L.push(rep(C, (c) => `      a${r}_${c} += s${r}_${t} * v${c};`));
      L.push(`    }`);
    }
    return L.join("\n");
  };
  const code = paramsWGSL(SLOTS + 20) + `
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> K: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> LSE: array<f32>;

@compute @workgroup_size(${ATTN_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${HEADER}
  ${base("q", 0)}
  ${base("k", 1)}
  ${base("v", 2)}
  ${base("o", 3)}
  let lseb = pu(${SLOTS + 16}u) + bh * Lq;
  let qs = pf(5u) * ${LOG2E};
  let rowb = rb * ${rows}u + lid;
${
    rep(R, (r) =>
      `  let qa${r} = qb + min(rowb + ${r * ATTN_WG}u, Lq - 1u) * ql;
${rep(C, (c) => `  let q${r}_${c} = Q[qa${r} + ${c}u] * qs;`)}
  var m${r}: f32 = ${NEG_BIG}; var l${r}: f32 = 0.0;
${rep(C, (c) => `  var a${r}_${c} = vec4<f32>(0.0);`)}`)
  }
${rep(R, (r) => rep(T, (t) => `  var s${r}_${t}: f32;`))}
  for (var j0 = s0; j0 < s1; j0 += ${T}u) {
${step(T, "j0")}
  }
${
    rep(R, (r) =>
      `  { let row = rowb + ${r * ATTN_WG}u;
    if (row < Lq) {
      let inv = 1.0 / l${r}; let oa = ob + row * ol; let ls = (m${r} + log2(l${r})) * ${LN2};
${
        accumulate
          ? `      let lo = LSE[lseb + row]; let mx = max(lo, ls);
      let wo = exp(lo - mx); let wn = exp(ls - mx); let si = 1.0 / (wo + wn);
      let fo = wo * si; let fw = wn * si * inv;
${rep(C, (c) => `      O[oa + ${c}u] = O[oa + ${c}u] * fo + a${r}_${c} * fw;`)}
      LSE[lseb + row] = mx + log(wo + wn);`
          : `${rep(C, (c) => `      O[oa + ${c}u] = a${r}_${c} * inv;`)}
      LSE[lseb + row] = ls;`
      }
    } }`)
  }
}`;
  const name = `attention_fwd${accumulate ? "_acc" : ""}_d${d}_r${R}_t${T}`;
  k = { name, code, inputs: 3, outputs: 2 };
  fwdCache.set(key, k);
  return k;
}

const dqCache = new Map<string, KernelSpec>();

/**
 * Backward kernel for dQ (and Δ = rowsum(dO ∘ O)). Bindings: q, k, v, out, dOut, lse → dq
 * (dense `[B, H, Lq, D]`), Δ (dense `[B, H, Lq]`). Parameter words: header, slots q, k, v, out,
 * dOut, dq (vec4 units), then the lse and Δ offsets (elements). `accumulate`: add dQ of the keys
 * `[s0, s1)` to the dq of the keys before.
 */
export function attnBwdQKernel(d: number, tile: AttnTile, accumulate = false): KernelSpec {
  const key = `${d}/${tile.r}/${tile.t}/${accumulate}`;
  let k = dqCache.get(key);
  if (k) return k;
  const { r: R, t: T } = tile;
  const C = d / 4;
  const hsum = (v: string) => `${v}.x + ${v}.y + ${v}.z + ${v}.w`;
  const code = paramsWGSL(SLOTS + 28) + `
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> K: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> O: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> G: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> LSE: array<f32>;
@group(0) @binding(7) var<storage, read_write> DQ: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> DEL: array<f32>;

@compute @workgroup_size(${ATTN_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${HEADER}
  ${base("q", 0)}
  ${base("k", 1)}
  ${base("v", 2)}
  ${base("o", 3)}
  ${base("g", 4)}
  ${base("d", 5)}
  let lseb = pu(${SLOTS + 24}u) + bh * Lq; let delb = pu(${SLOTS + 25}u) + bh * Lq;
  let qs = pf(5u) * ${LOG2E};
  let rowb = rb * ${ATTN_WG * R}u + lid;
${
    rep(R, (r) =>
      `  let row${r} = min(rowb + ${r * ATTN_WG}u, Lq - 1u);
  let qa${r} = qb + row${r} * ql; let ga${r} = gb + row${r} * gl; let oa${r} = ob + row${r} * ol;
${rep(C, (c) => `  let q${r}_${c} = Q[qa${r} + ${c}u] * qs; let g${r}_${c} = G[ga${r} + ${c}u];`)}
  let dv${r} = ${rep(C, (c) => `g${r}_${c} * O[oa${r} + ${c}u]`, " + ")};
  let de${r} = ${hsum(`dv${r}`)};
  let ls${r} = LSE[lseb + row${r}] * ${LOG2E};
${rep(C, (c) => `  var a${r}_${c} = vec4<f32>(0.0);`)}`)
  }
  for (var j0 = s0; j0 < s1; j0 += ${T}u) {
${
    rep(T, (t) =>
      `    let j${t} = min(j0 + ${t}u, s1 - 1u);
    let ka${t} = kb + j${t} * kl; let va${t} = vb + j${t} * vl;
${rep(C, (c) => `    let k${t}_${c} = K[ka${t} + ${c}u]; let v${t}_${c} = V[va${t} + ${c}u];`)}`)
  }
${
    rep(R, (r) =>
      `    {
${
        rep(T, (t) =>
          `      let sv${t} = ${rep(C, (c) => `q${r}_${c} * k${t}_${c}`, " + ")};
      let pv${t} = ${rep(C, (c) => `g${r}_${c} * v${t}_${c}`, " + ")};
      let p${t} = ${
            T > 1
              ? `select(0.0, exp2(${hsum(`sv${t}`)} - ls${r}), j0 + ${t}u < s1)`
              : `exp2(${hsum(`sv${t}`)} - ls${r})`
          };
      let ds${t} = p${t} * (${hsum(`pv${t}`)} - de${r});`)
      }
${rep(C, (c) => `      a${r}_${c} += ${rep(T, (t) => `ds${t} * k${t}_${c}`, " + ")};`)}
    }`)
  }
  }
  let sc = pf(5u);
${
    rep(R, (r) =>
      `  { let row = rowb + ${r * ATTN_WG}u;
    if (row < Lq) {
      let da = db + row * dl;
${rep(C, (c) => `      DQ[da + ${c}u] ${accumulate ? "+=" : "="} a${r}_${c} * sc;`)}
      DEL[delb + row] = de${r};
    } }`)
  }
}`;
  const name = `attention_bwd_dq${accumulate ? "_acc" : ""}_d${d}_r${R}_t${T}`;
  k = { name, code, inputs: 6, outputs: 2 };
  dqCache.set(key, k);
  return k;
}

const dkvCache = new Map<string, KernelSpec>();

/**
 * Backward kernel for dK and dV. Bindings: q, k, v, dOut, lse, Δ → dk, dv (dense
 * `[B, H, Lk, D]`). Row blocks run over keys. Parameter words: header, slots q, k, v, dOut,
 * dk, dv (vec4 units), then the lse and Δ offsets (elements). `accumulate`: add dK/dV of the
 * queries `[s0, s1)` to those of the queries before.
 */
export function attnBwdKVKernel(d: number, tile: AttnTile, accumulate = false): KernelSpec {
  const key = `${d}/${tile.r}/${tile.t}/${accumulate}`;
  let k = dkvCache.get(key);
  if (k) return k;
  const { r: R, t: T } = tile;
  const C = d / 4;
  const hsum = (v: string) => `${v}.x + ${v}.y + ${v}.z + ${v}.w`;
  const code = paramsWGSL(SLOTS + 28) + `
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> K: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> G: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> LSE: array<f32>;
@group(0) @binding(6) var<storage, read> DEL: array<f32>;
@group(0) @binding(7) var<storage, read_write> DK: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> DV: array<vec4<f32>>;

@compute @workgroup_size(${ATTN_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${HEADER}
  ${base("q", 0)}
  ${base("k", 1)}
  ${base("v", 2)}
  ${base("g", 3)}
  ${base("x", 4)}
  ${base("y", 5)}
  let lseb = pu(${SLOTS + 24}u) + bh * Lq; let delb = pu(${SLOTS + 25}u) + bh * Lq;
  let ks = pf(5u) * ${LOG2E};
  let rowb = rb * ${ATTN_WG * R}u + lid;
${
    rep(R, (r) =>
      `  let row${r} = min(rowb + ${r * ATTN_WG}u, Lk - 1u);
  let ka${r} = kb + row${r} * kl; let va${r} = vb + row${r} * vl;
${rep(C, (c) => `  let k${r}_${c} = K[ka${r} + ${c}u] * ks; let v${r}_${c} = V[va${r} + ${c}u];`)}
${rep(C, (c) => `  var dk${r}_${c} = vec4<f32>(0.0); var dv${r}_${c} = vec4<f32>(0.0);`)}`)
  }
  for (var i0 = s0; i0 < s1; i0 += ${T}u) {
${
    rep(T, (t) =>
      `    let i${t} = min(i0 + ${t}u, s1 - 1u);
    let qa${t} = qb + i${t} * ql; let ga${t} = gb + i${t} * gl;
    let ls${t} = LSE[lseb + i${t}] * ${LOG2E}; let de${t} = DEL[delb + i${t}];
${rep(C, (c) => `    let q${t}_${c} = Q[qa${t} + ${c}u]; let g${t}_${c} = G[ga${t} + ${c}u];`)}`)
  }
${
    rep(R, (r) =>
      `    {
${
        rep(T, (t) =>
          `      let sv${t} = ${rep(C, (c) => `q${t}_${c} * k${r}_${c}`, " + ")};
      let pv${t} = ${rep(C, (c) => `g${t}_${c} * v${r}_${c}`, " + ")};
      let p${t} = ${
            T > 1
              ? `select(0.0, exp2(${hsum(`sv${t}`)} - ls${t}), i0 + ${t}u < s1)`
              : `exp2(${hsum(`sv${t}`)} - ls${t})`
          };
      let ds${t} = p${t} * (${hsum(`pv${t}`)} - de${t});`)
      }
${
        rep(C, (c) =>
          `      dv${r}_${c} += ${rep(T, (t) => `p${t} * g${t}_${c}`, " + ")}; dk${r}_${c} += ${
            rep(T, (t) => `ds${t} * q${t}_${c}`, " + ")
          };`)
      }
    }`)
  }
  }
  let sc = pf(5u);
${
    rep(R, (r) =>
      `  { let row = rowb + ${r * ATTN_WG}u;
    if (row < Lk) {
      let xa = xb + row * xl; let ya = yb + row * yl;
${
        rep(C, (c) => {
          const op = accumulate ? "+=" : "=";
          return `      DK[xa + ${c}u] ${op} dk${r}_${c} * sc; DV[ya + ${c}u] ${op} dv${r}_${c};`;
        })
      }
    } }`)
  }
}`;
  const name = `attention_bwd_dkv${accumulate ? "_acc" : ""}_d${d}_r${R}_t${T}`;
  k = { name, code, inputs: 6, outputs: 2 };
  dkvCache.set(key, k);
  return k;
}

let rope: KernelSpec | null = null;

/**
 * Rotary embedding of `[B, H, L, D]` (any strides), one pair per invocation, output dense.
 * Mode bit 0: interleaved (Flux, pairs (2j, 2j+1), `pe` 2×2 matrices `[Bt, 1, L, D/2, 2, 2]`);
 * else rotate-half (pairs (j, j + D/2), `cos`/`sin` `[Bt, L, D]`). Mode bit 1: apply the
 * transposed matrices (the backward). Bindings: x, table 1 (cos or pe), table 2 (sin or pe) → y.
 * Parameter words: pairs of this dispatch, H, L, D/2, mode, x offset, x strides (b, h, l, d),
 * table 1 offset, strides (b, l), table 2 offset, strides (b, l), first row (b, h, l) of this
 * dispatch, y offset. An op whose tensors do not fit one storage binding dispatches a range of rows
 * at a time with windowed bindings; offsets are then relative to the windows (u32, may wrap).
 */
export function ropeKernel(): KernelSpec {
  if (rope) return rope;
  const code = paramsWGSL(20) + `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> T1: array<f32>;
@group(0) @binding(3) var<storage, read> T2: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let p = (wg.y * nwg.x + wg.x) * 64u + lid;
  if (p >= pu(0u)) { return; }
  let H = pu(1u); let L = pu(2u); let half = pu(3u); let mode = pu(4u);
  let j = p % half; let row = pu(16u) + p / half; let l = row % L; let bh = row / L;
  let h = bh % H; let b = bh / H;
  let inter = (mode & 1u) != 0u;
  let ia = select(j, 2u * j, inter);
  let ib = select(j + half, 2u * j + 1u, inter);
  let xb = pu(5u) + b * pu(6u) + h * pu(7u) + l * pu(8u);
  let xa = X[xb + ia * pu(9u)];
  let xo = X[xb + ib * pu(9u)];
  var m: vec4<f32>;  // [[m.x, m.y], [m.z, m.w]]
  let t1 = pu(10u) + b * pu(11u) + l * pu(12u);
  if (inter) {
    let pb = t1 + 4u * j;
    m = vec4<f32>(T1[pb], T1[pb + 1u], T1[pb + 2u], T1[pb + 3u]);
  } else {
    let t2 = pu(13u) + b * pu(14u) + l * pu(15u);
    m = vec4<f32>(T1[t1 + j], -T2[t2 + j], T2[t2 + j + half], T1[t1 + j + half]);
  }
  if ((mode & 2u) != 0u) { m = m.xzyw; }
  let ob = pu(17u) + row * 2u * half;
  Y[ob + ia] = m.x * xa + m.y * xo;
  Y[ob + ib] = m.z * xa + m.w * xo;
}`;
  rope = { name: "rope", code, inputs: 3, outputs: 1 };
  return rope;
}
