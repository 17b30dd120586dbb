/**
 * Batched matrix multiply: `out[b] = op(A[b]) · op(B[b]) (+ bias)`, f32. Either operand may be
 * stored as f16 or bf16 (a compiled-in variant: the words are unpacked and widened to f32 on
 * load; compute and output stay f32).
 *
 * Each invocation computes a `tm × tn` register block of the output (accumulated in `vec4`s, the
 * reduction unrolled by 4); a workgroup is `wgX × wgY` invocations. There is no workgroup memory:
 * on CPU adapters (llvmpipe) register tiles with vec4 loads beat tiles in workgroup memory with
 * barriers. The tile shape is compiled in (part of {@linkcode MatmulConfig}); shapes, strides and
 * offsets are run-time parameters.
 *
 * Each operand is read as `vec4`s along its contiguous dimension when its offset, row stride and
 * batch stride are multiples of 4 (`vecA` / `vecB`), else with scalar loads. Vector reads never
 * leave the stored rows: along the non-reduction dimension the vector start is clamped into the
 * matrix (the extra lanes fall in the row padding `ld ≥ ceil4(dim)` and only feed discarded outputs),
 * and along the reduction dimension only whole vectors are read in the main loop; the last
 * `k % 4` steps run as a scalar tail.
 *
 * @module
 */
import type { KernelSpec } from "../engine/kernel.ts";
import { Params, paramsWGSL } from "../engine/kernel.ts";
import type { Runtime } from "../engine/runtime.ts";
import type { DType } from "../engine/dtype.ts";
import { fitsBinding, rangeFits, type Window, windowOf } from "../engine/window.ts";

/** Storage type of a matmul operand: f32, or a 16-bit float widened to f32 on load. */
export type MatmulDType = "f32" | "f16" | "bf16";

/** A compiled variant of the matmul kernel. */
export interface MatmulConfig {
  /** A is stored `[k, m]` (else `[m, k]`). */
  transA: boolean;
  /** B is stored `[n, k]` (else `[k, n]`). */
  transB: boolean;
  /** Adds a length-`n` bias to every output row. */
  bias: boolean;
  /** A is read as vec4s (needs its offset, row stride and batch stride to be multiples of 4). */
  vecA?: boolean;
  /** B is read as vec4s (same condition). */
  vecB?: boolean;
  /** Output rows per invocation (multiple of 4). */
  tm?: number;
  /** Output columns per invocation (multiple of 4). */
  tn?: number;
  /** Invocations per workgroup along n. */
  wgX?: number;
  /** Invocations per workgroup along m. */
  wgY?: number;
  /** Accumulate with WGSL `fma` (else `acc + a * b`). */
  fma?: boolean;
  /** Storage type of A (f16 / bf16: packed two per u32, widened on load). Default f32. */
  dtypeA?: MatmulDType;
  /** Storage type of B. Default f32. */
  dtypeB?: MatmulDType;
  /** Adds the product to the output's values (a later slice of a reduction split into windows). */
  accumulate?: boolean;
}

/**
 * Tile shape used when a config leaves it out: the fastest measured on llvmpipe (a CPU adapter
 * where every storage load costs a per-lane scalar loop, so the work per loaded element — the
 * register block — decides the speed; 32x32 per invocation, one SIMD-wide workgroup of 8).
 */
export const DEFAULT_TILE = { tm: 32, tn: 32, wgX: 8, wgY: 1, fma: false } as const;

/** Tile shape for real GPUs until a workgroup-memory variant exists: small blocks, many lanes. */
export const GPU_TILE = { tm: 4, tn: 4, wgX: 16, wgY: 8, fma: true } as const;

type Tile = { tm: number; tn: number; wgX: number; wgY: number; fma: boolean };

/**
 * Largest block for the other variants (transposed or scalar-load operands): at 32x32 llvmpipe
 * takes 20-30 s to compile them (0.8 s for the plain vec4 one); 16x16 compiles in ~2 s.
 */
export const OTHER_MAX_TILE = 16;

/**
 * Tile for an `m × n` output: {@linkcode DEFAULT_TILE} on CPU adapters (blocks capped at
 * `maxBlock`), shrunk (powers of two, ≥ 4) for small outputs so that little work is wasted on
 * clamped rows / columns and there are at least `2 × threads` workgroups; {@linkcode GPU_TILE}
 * on real GPUs.
 */
export function pickTile(
  m: number,
  n: number,
  isFallback: boolean,
  threads = 2,
  maxBlock: number = DEFAULT_TILE.tm,
): Tile {
  if (!isFallback) return { ...GPU_TILE };
  const t: Tile = {
    ...DEFAULT_TILE,
    tm: Math.min(DEFAULT_TILE.tm, maxBlock),
    tn: Math.min(DEFAULT_TILE.tn, maxBlock),
  };
  const fit = (v: number, max: number) => Math.min(max, Math.max(4, 2 ** Math.ceil(Math.log2(v))));
  t.tm = fit(m, t.tm);
  t.tn = fit(Math.ceil(n / t.wgX), t.tn);
  const groups = () => Math.ceil(m / (t.tm * t.wgY)) * Math.ceil(n / (t.tn * t.wgX));
  while (groups() < 2 * threads && Math.max(t.tm, t.tn) > 8) {
    if (t.tm >= t.tn) t.tm /= 2;
    else t.tn /= 2;
  }
  return t;
}

type FullConfig = Required<MatmulConfig>;

function full(cfg: MatmulConfig): FullConfig {
  return {
    transA: cfg.transA,
    transB: cfg.transB,
    bias: cfg.bias,
    vecA: cfg.vecA ?? false,
    vecB: cfg.vecB ?? false,
    tm: cfg.tm ?? DEFAULT_TILE.tm,
    tn: cfg.tn ?? DEFAULT_TILE.tn,
    wgX: cfg.wgX ?? DEFAULT_TILE.wgX,
    wgY: cfg.wgY ?? DEFAULT_TILE.wgY,
    fma: cfg.fma ?? DEFAULT_TILE.fma,
    dtypeA: cfg.dtypeA ?? "f32",
    dtypeB: cfg.dtypeB ?? "f32",
    accumulate: cfg.accumulate ?? false,
  };
}

const cache = new Map<string, KernelSpec>();

/** Parameter word layout (see {@linkcode encodeMatmul}). */
const P_M = 0, P_N = 1, P_K = 2, P_LDA = 3, P_LDB = 4, P_AOFF = 5, P_BOFF = 6, P_OOFF = 7;
const P_ASTR = 8, P_BSTR = 9, P_BIAS = 10, P_LDO = 11, P_OSTR = 12;

/** The WGSL kernel of a config (built once per distinct config). */
export function matmulKernel(cfg: MatmulConfig): KernelSpec {
  const c = full(cfg);
  if (c.tm % 4 !== 0 || c.tn % 4 !== 0 || c.tm < 4 || c.tn < 4) {
    throw new RangeError(`matmul: tm and tn must be positive multiples of 4 (got ${c.tm}x${c.tn})`);
  }
  if (!(c.wgX >= 1 && c.wgY >= 1 && Number.isInteger(c.wgX) && Number.isInteger(c.wgY))) {
    throw new RangeError(`matmul: bad workgroup ${c.wgX}x${c.wgY}`);
  }
  const key = JSON.stringify(c);
  let spec = cache.get(key);
  if (!spec) {
    const name = `matmul_${c.transA ? "t" : "n"}${c.transB ? "t" : "n"}${c.vecA ? "v" : "s"}` +
      `${c.vecB ? "v" : "s"}${c.bias ? "_bias" : ""}_${c.tm}x${c.tn}_wg${c.wgX}x${c.wgY}${
        c.fma ? "_fma" : ""
      }${c.dtypeA === "f32" ? "" : "_a" + c.dtypeA}${c.dtypeB === "f32" ? "" : "_b" + c.dtypeB}${
        c.accumulate ? "_acc" : ""
      }`;
    spec = { name, code: buildWGSL(c), inputs: c.bias ? 3 : 2, outputs: 1 };
    cache.set(key, spec);
  }
  return spec;
}

/** Repeats `f(i)` for i in [0, n) and joins the results. */
function rep(n: number, f: (i: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(sep);
}

/**
 * Declaration and load helpers of operand `X` (binding `b`): f32 as `f32` / `vec4<f32>`; a
 * 16-bit type as packed `u32` words (`vec2<u32>` = 4 halves when read as vectors), widened by
 * `ldX(i)` (element `i`) and `ldX4(q)` (elements `4q .. 4q+3`).
 */
function operandWGSL(X: "A" | "B", b: number, vec: boolean, dt: MatmulDType): string {
  if (dt === "f32") {
    return `@group(0) @binding(${b}) var<storage, read> ${X}: array<${vec ? "vec4<f32>" : "f32"}>;`;
  }
  const word = vec ? `${X}[i >> 2u][(i >> 1u) & 1u]` : `${X}[i >> 1u]`;
  const one = dt === "f16"
    ? `unpack2x16float(${word})[i & 1u]`
    : `bitcast<f32>(((${word} >> ((i & 1u) * 16u)) & 0xffffu) << 16u)`;
  const L = [
    `@group(0) @binding(${b}) var<storage, read> ${X}: array<${vec ? "vec2<u32>" : "u32"}>;`,
    `fn ld${X}(i: u32) -> f32 { return ${one}; }`,
  ];
  if (vec) {
    L.push(
      dt === "f16"
        ? `fn ld${X}4(q: u32) -> vec4<f32> { let w = ${X}[q]; ` +
          `return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }`
        : `fn ld${X}4(q: u32) -> vec4<f32> { let w = ${X}[q]; ` +
          `return bitcast<vec4<f32>>(vec4<u32>(w.x << 16u, w.x & 0xffff0000u, ` +
          `w.y << 16u, w.y & 0xffff0000u)); }`,
    );
  }
  return L.join("\n");
}

function buildWGSL(c: FullConfig): string {
  const { tm, tn, transA, transB, vecA, vecB } = c;
  const tn4 = tn / 4, tm4 = tm / 4;
  const L: string[] = [];
  // Load expressions: element-wise arrays index elements, vec4 arrays index groups of 4.
  const A = (idx: string) => c.dtypeA === "f32" ? `A[${idx}]` : `ld${vecA ? "A4" : "A"}(${idx})`;
  const B = (idx: string) => c.dtypeB === "f32" ? `B[${idx}]` : `ld${vecB ? "B4" : "B"}(${idx})`;

  // --- Loads of one k-step of 4: names a_<r>_<kk> (scalars) and b_<kk>_<g> (vec4 over 4 columns).
  // A element (row r, k step kk) as an expression over the loaded registers.
  let loadA: string; // statements that load one k-step of 4 from A at reduction index k0
  let aElem: (r: number, kk: number) => string;
  if (!transA && vecA) {
    // [m,k] as vec4 along k: one vec4 per row.
    loadA = rep(tm, (r) => `    let va${r} = ${A(`ar${r} + kq`)};`);
    aElem = (r, kk) => `va${r}[${kk}]`;
  } else if (!transA) {
    loadA = rep(tm, (r) => rep(4, (kk) => `    let a${r}_${kk} = ${A(`ar${r} + k0 + ${kk}u`)};`));
    aElem = (r, kk) => `a${r}_${kk}`;
  } else if (vecA) {
    // [k,m] as vec4 along m: one vec4 per (k, group of 4 rows).
    loadA = rep(
      4,
      (kk) => rep(tm4, (g) => `    let va${kk}_${g} = ${A(`ag${g} + (k0 + ${kk}u) * lda4`)};`),
    );
    aElem = (r, kk) => `va${kk}_${r >> 2}[${r & 3}]`;
  } else {
    loadA = rep(
      4,
      (kk) => rep(tm, (r) => `    let a${r}_${kk} = ${A(`ar${r} + (k0 + ${kk}u) * lda`)};`),
    );
    aElem = (r, kk) => `a${r}_${kk}`;
  }
  let loadB: string;
  let bVec: (kk: number, g: number) => string; // vec4 of B[k0+kk, col0+4g .. +3]
  if (!transB && vecB) {
    loadB = rep(
      4,
      (kk) => rep(tn4, (g) => `    let vb${kk}_${g} = ${B(`bg${g} + (k0 + ${kk}u) * ldb4`)};`),
    );
    bVec = (kk, g) => `vb${kk}_${g}`;
  } else if (!transB) {
    loadB = rep(
      4,
      (kk) => rep(tn, (j) => `    let b${kk}_${j} = ${B(`bc${j} + (k0 + ${kk}u) * ldb`)};`),
    );
    bVec = (kk, g) => `vec4<f32>(${rep(4, (i) => `b${kk}_${4 * g + i}`, ", ")})`;
  } else if (vecB) {
    // [n,k] as vec4 along k: one vec4 per column.
    loadB = rep(tn, (j) => `    let vb${j} = ${B(`bc${j} + kq`)};`);
    bVec = (kk, g) => `vec4<f32>(${rep(4, (i) => `vb${4 * g + i}[${kk}]`, ", ")})`;
  } else {
    loadB = rep(tn, (j) => rep(4, (kk) => `    let b${kk}_${j} = ${B(`bc${j} + k0 + ${kk}u`)};`));
    bVec = (kk, g) => `vec4<f32>(${rep(4, (i) => `b${kk}_${4 * g + i}`, ", ")})`;
  }
  // a (scalar) * b (vec4) + c (vec4)
  const mad = (a: string, b: string, acc: string) =>
    c.fma ? `fma(vec4<f32>(${a}), ${b}, ${acc})` : `${acc} + ${a} * ${b}`;
  const fmaStep = rep(
    4,
    (kk) =>
      rep(
        tm,
        (r) =>
          rep(tn4, (g) =>
            `    acc${r}_${g} = ${mad(`${aElem(r, kk)}`, bVec(kk, g), `acc${r}_${g}`)};`),
      ),
  );

  // Scalar accessors for the k tail (and any element-wise access to a vec4 array).
  const getA = c.dtypeA !== "f32" ? "ldA(i)" : vecA ? "A[i >> 2u][i & 3u]" : "A[i]";
  const getB = c.dtypeB !== "f32" ? "ldB(i)" : vecB ? "B[i >> 2u][i & 3u]" : "B[i]";

  L.push(paramsWGSL(16));
  L.push(operandWGSL("A", 1, vecA, c.dtypeA));
  L.push(operandWGSL("B", 2, vecB, c.dtypeB));
  if (c.bias) L.push(`@group(0) @binding(3) var<storage, read> BIAS: array<f32>;`);
  L.push(`@group(0) @binding(${c.bias ? 4 : 3}) var<storage, read_write> OUT: array<f32>;`);
  L.push(`fn getA(i: u32) -> f32 { return ${getA}; }`);
  L.push(`fn getB(i: u32) -> f32 { return ${getB}; }`);
  L.push(`
@compute @workgroup_size(${c.wgX}, ${c.wgY}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = pu(${P_M}u); let N = pu(${P_N}u); let K = pu(${P_K}u);
  let lda = pu(${P_LDA}u); let ldb = pu(${P_LDB}u);
  let batch = wg.z;
  let aBase = pu(${P_AOFF}u) + batch * pu(${P_ASTR}u);
  let bBase = pu(${P_BOFF}u) + batch * pu(${P_BSTR}u);
  let row0 = (${c.wgY === 1 ? "wg.y" : `wg.y * ${c.wgY}u + lid.y`}) * ${tm}u;
  let col0 = (${c.wgX === 1 ? "wg.x" : `wg.x * ${c.wgX}u + lid.x`}) * ${tn}u;
  if (row0 >= M || col0 >= N) { return; }`);
  // Per-row / per-column base indices (clamped into the matrix; clamped ones are never stored).
  if (!transA) {
    L.push(
      rep(
        tm,
        (r) =>
          `  let ar${r} = ${vecA ? "(" : ""}aBase + min(row0 + ${r}u, M - 1u) * lda${
            vecA ? ") >> 2u" : ""
          };`,
      ),
    );
  } else if (vecA) {
    L.push(`  let lda4 = lda >> 2u;`);
    L.push(
      rep(tm4, (g) => `  let ag${g} = (aBase + min(row0 + ${4 * g}u, (M - 1u) & ~3u)) >> 2u;`),
    );
  } else {
    L.push(rep(tm, (r) => `  let ar${r} = aBase + min(row0 + ${r}u, M - 1u);`));
  }
  if (transB) {
    L.push(
      rep(
        tn,
        (j) =>
          `  let bc${j} = ${vecB ? "(" : ""}bBase + min(col0 + ${j}u, N - 1u) * ldb${
            vecB ? ") >> 2u" : ""
          };`,
      ),
    );
  } else if (vecB) {
    L.push(`  let ldb4 = ldb >> 2u;`);
    L.push(
      rep(tn4, (g) => `  let bg${g} = (bBase + min(col0 + ${4 * g}u, (N - 1u) & ~3u)) >> 2u;`),
    );
  } else {
    L.push(rep(tn, (j) => `  let bc${j} = bBase + min(col0 + ${j}u, N - 1u);`));
  }
  L.push(rep(tm, (r) => rep(tn4, (g) => `  var acc${r}_${g} = vec4<f32>(0.0);`)));
  L.push(`  let K4 = K & ~3u;
  for (var k0 = 0u; k0 < K4; k0 = k0 + 4u) {
    let kq = k0 >> 2u;
${loadA}
${loadB}
${fmaStep}
  }
  for (var kk = K4; kk < K; kk = kk + 1u) {`);
  // Tail: scalar loads of one k.
  const aIdx = (r: number) =>
    !transA
      ? (vecA ? `aBase + min(row0 + ${r}u, M - 1u) * lda + kk` : `ar${r} + kk`)
      : (vecA ? `aBase + min(row0 + ${r}u, M - 1u) + kk * lda` : `ar${r} + kk * lda`);
  const bIdx = (j: number) =>
    transB
      ? (vecB ? `bBase + min(col0 + ${j}u, N - 1u) * ldb + kk` : `bc${j} + kk`)
      : (vecB ? `bBase + min(col0 + ${j}u, N - 1u) + kk * ldb` : `bc${j} + kk * ldb`);
  L.push(rep(tm, (r) => `    let ta${r} = getA(${aIdx(r)});`));
  L.push(rep(tn, (j) => `    let tb${j} = getB(${bIdx(j)});`));
  L.push(
    rep(tm, (r) =>
      rep(tn4, (g) =>
        `    acc${r}_${g} = ${
          mad(
            `ta${r}`,
            `vec4<f32>(${rep(4, (i) => `tb${4 * g + i}`, ", ")})`,
            `acc${r}_${g}`,
          )
        };`)),
  );
  L.push(`  }`);
  // Epilogue: bias, bounds-checked scalar stores.
  if (c.bias) {
    L.push(
      rep(
        tn4,
        (g) =>
          `  let bias${g} = vec4<f32>(${
            rep(4, (i) => `BIAS[pu(${P_BIAS}u) + min(col0 + ${4 * g + i}u, N - 1u)]`, ", ")
          });`,
      ),
    );
  }
  L.push(`  let oBase = pu(${P_OOFF}u) + batch * pu(${P_OSTR}u);`);
  L.push(rep(tm, (r) => {
    const s = [
      `  if (row0 + ${r}u < M) {`,
      `    let o = oBase + (row0 + ${r}u) * pu(${P_LDO}u) + col0;`,
    ];
    for (let g = 0; g < tn4; g++) {
      const v = c.bias ? `acc${r}_${g} + bias${g}` : `acc${r}_${g}`;
      s.push(`    { let v = ${v};`);
      for (let i = 0; i < 4; i++) {
        const j = 4 * g + i;
        const stored = c.accumulate ? `OUT[o + ${j}u] + v[${i}]` : `v[${i}]`;
        s.push(`      if (col0 + ${j}u < N) { OUT[o + ${j}u] = ${stored}; }`);
      }
      s.push(`    }`);
    }
    s.push(`  }`);
    return s.join("\n");
  }));
  L.push(`}`);
  return L.join("\n") + "\n";
}

/** Operands and output of one batched matmul (offsets, strides in elements). */
export interface MatmulArgs {
  batch: number;
  m: number;
  n: number;
  k: number;
  /** Stored `[m, k]` (or `[k, m]` when transposed) with row stride `lda`. */
  a: GPUBuffer;
  aOffset: number;
  /** Elements between batch items; 0 broadcasts one matrix over the batch. */
  aBatchStride: number;
  lda: number;
  /** Stored `[k, n]` (or `[n, k]` when transposed) with row stride `ldb`. */
  b: GPUBuffer;
  bOffset: number;
  bBatchStride: number;
  ldb: number;
  /** Length-`n` vector added to every output row. */
  bias?: { buffer: GPUBuffer; offset: number };
  /** Dense `[batch, m, n]` output. */
  out: GPUBuffer;
  outOffset: number;
  /** A is stored transposed (`[k, m]`). Default false. */
  transA?: boolean;
  /** B is stored transposed (`[n, k]`). Default false. */
  transB?: boolean;
  /** Storage type of A (f16 / bf16 are widened to f32 on load). Default f32. */
  aDType?: MatmulDType;
  /** Storage type of B. Default f32. */
  bDType?: MatmulDType;
  /** Tile override (tests, benchmarks); default {@linkcode pickTile}. */
  tile?: Partial<Pick<MatmulConfig, "tm" | "tn" | "wgX" | "wgY" | "fma">>;
}

function vecOK(offset: number, ld: number, batchStride: number, batch: number): boolean {
  return offset % 4 === 0 && ld % 4 === 0 && (batch === 1 || batchStride % 4 === 0);
}

/**
 * Records `out = op(A) · op(B) (+ bias)` for every batch item into the runtime's batch.
 *
 * Operands larger than one storage binding are bound as windows (`engine/window.ts`): the work is
 * cut into blocks of batch items, output rows, output columns and (last resort) reduction slices
 * until every operand's touched range fits; each block is one dispatch of the same kernel on its
 * windows, a reduction slice after the first adding into the output (the `accumulate` variant).
 * Which axis is cut first follows the layout: a row-major operand is cut along its rows (`m` for
 * A `[m, k]` and the output, `n` for a transposed B `[n, k]` such as an `nn.Linear` weight), a
 * column-major one along the reduction.
 */
export function encodeMatmul(rt: Runtime, args: MatmulArgs): void {
  const { batch, m, n, k } = args;
  const transA = args.transA ?? false, transB = args.transB ?? false;
  for (const [name, v] of Object.entries({ batch, m, n, k })) {
    if (!(Number.isInteger(v) && v >= 1)) throw new RangeError(`matmul: ${name} = ${v}, need ≥ 1`);
  }
  if (args.lda < (transA ? m : k) || args.ldb < (transB ? k : n)) {
    throw new RangeError(
      `matmul: lda = ${args.lda} / ldb = ${args.ldb} smaller than the row length`,
    );
  }
  const bufs = [args.a, args.b, args.out, ...(args.bias ? [args.bias.buffer] : [])];
  if (bufs.every((b) => fitsBinding(rt, b))) {
    encodeBlock(rt, args, { b0: 0, nb: batch, m0: 0, mc: m, n0: 0, nc: n, k0: 0, kc: k }, null);
    return;
  }
  const blocks = splitBlocks(rt, args);
  for (const blk of blocks) encodeBlock(rt, args, blk, windowsOf(rt, args, blk));
}

/** A block of the product: batch items, output rows, output columns, reduction indices. */
interface Block {
  b0: number;
  nb: number;
  m0: number;
  mc: number;
  n0: number;
  nc: number;
  k0: number;
  kc: number;
}

/** Element ranges `[first, end)` of A, B, out and bias that a block touches. */
function blockRanges(args: MatmulArgs, blk: Block): [number, number][] {
  const { b0, nb, m0, mc, n0, nc, k0, kc } = blk;
  const bl = b0 + nb - 1;
  // vector loads along a non-reduction axis may read up to 3 elements past the block (row padding)
  const span = (
    off: number,
    bs: number,
    r0: number,
    rc: number,
    ld: number,
    c0: number,
    cc: number,
  ) =>
    [off + b0 * bs + r0 * ld + c0, off + bl * bs + (r0 + rc - 1) * ld + c0 + cc + 3] as [
      number,
      number,
    ];
  const a = args.transA
    ? span(args.aOffset, args.aBatchStride, k0, kc, args.lda, m0, mc)
    : span(args.aOffset, args.aBatchStride, m0, mc, args.lda, k0, kc);
  const b = args.transB
    ? span(args.bOffset, args.bBatchStride, n0, nc, args.ldb, k0, kc)
    : span(args.bOffset, args.bBatchStride, k0, kc, args.ldb, n0, nc);
  const mn = args.m * args.n;
  const o: [number, number] = [
    args.outOffset + b0 * mn + m0 * args.n + n0,
    args.outOffset + bl * mn + (m0 + mc - 1) * args.n + n0 + nc,
  ];
  const out = [a, b, o];
  if (args.bias) out.push([args.bias.offset + n0, args.bias.offset + n0 + nc]);
  return out;
}

function dtypesOf(args: MatmulArgs): DType[] {
  return [args.aDType ?? "f32", args.bDType ?? "f32", "f32", "f32"];
}

/** Cuts the product into blocks whose every operand range fits one binding. */
function splitBlocks(rt: Runtime, args: MatmulArgs): Block[] {
  const dts = dtypesOf(args);
  // Block sizes along an axis that an operand reads as vec4s stay multiples of 4 (aligned offsets).
  const vecA = vecOK(args.aOffset, args.lda, args.aBatchStride, args.batch);
  const vecB = vecOK(args.bOffset, args.ldb, args.bBatchStride, args.batch);
  const vecAxes = new Set<string>();
  if (vecA) vecAxes.add(args.transA ? "mc" : "kc");
  if (vecB) vecAxes.add(args.transB ? "kc" : "nc");
  const Q = (ax: string) => vecAxes.has(ax) ? 4 : 1;
  const size = { nb: args.batch, mc: args.m, nc: args.n, kc: args.k };
  const at = (): Block => ({ b0: 0, m0: 0, n0: 0, k0: 0, ...size });
  const failing = () => blockRanges(args, at()).map((r, i) => !rangeFits(rt, dts[i]!, r[0], r[1]));
  // For each operand: the axes to cut, outer first.
  const axes: (keyof typeof size)[][] = [
    ["nb", ...(args.transA ? ["kc", "mc"] : ["mc", "kc"]) as (keyof typeof size)[]],
    ["nb", ...(args.transB ? ["nc", "kc"] : ["kc", "nc"]) as (keyof typeof size)[]],
    ["nb", "mc", "nc"],
    ["nc"],
  ];
  const min = {
    nb: 1,
    mc: Math.min(Q("mc"), args.m),
    nc: Math.min(Q("nc"), args.n),
    kc: Math.min(Q("kc"), args.k),
  };
  for (let bad = failing(); bad.some((x) => x); bad = failing()) {
    const op = bad.indexOf(true);
    const axis = axes[op]!.find((ax) => size[ax] > min[ax]);
    if (!axis) {
      const what = ["A", "B", "the output", "the bias"][op];
      throw new RangeError(
        `matmul [${args.batch}, ${args.m}, ${args.k}] · [${args.k}, ${args.n}]: even a ` +
          `${min.mc}x${min.nc}x${min.kc} block of ${what} does not fit one storage binding ` +
          `(limit ${rt.maxBinding} bytes)`,
      );
    }
    const half = Math.ceil(size[axis] / 2);
    size[axis] = Math.max(min[axis], Math.ceil(half / Q(axis)) * Q(axis));
  }
  const blocks: Block[] = [];
  for (let b0 = 0; b0 < args.batch; b0 += size.nb) {
    for (let m0 = 0; m0 < args.m; m0 += size.mc) {
      for (let n0 = 0; n0 < args.n; n0 += size.nc) {
        for (let k0 = 0; k0 < args.k; k0 += size.kc) {
          blocks.push({
            b0,
            nb: Math.min(size.nb, args.batch - b0),
            m0,
            mc: Math.min(size.mc, args.m - m0),
            n0,
            nc: Math.min(size.nc, args.n - n0),
            k0,
            kc: Math.min(size.kc, args.k - k0),
          });
        }
      }
    }
  }
  return blocks;
}

/** The windows of A, B, out (and bias) for one block. */
function windowsOf(rt: Runtime, args: MatmulArgs, blk: Block): Window[] {
  const dts = dtypesOf(args);
  const bufs = [args.a, args.b, args.out, args.bias?.buffer];
  return blockRanges(args, blk).map(([lo, hi], i) =>
    windowOf(rt, bufs[i]!, dts[i]!, lo, hi, `matmul ${["A", "B", "output", "bias"][i]}`)
  );
}

/** Records one block (all of it when `win` is null: whole buffers, no shift). */
function encodeBlock(rt: Runtime, args: MatmulArgs, blk: Block, win: Window[] | null): void {
  const { m0, mc: m, n0, nc: n, k0, kc: k } = blk;
  const transA = args.transA ?? false, transB = args.transB ?? false;
  const sh = (i: number) => win ? win[i]!.shift : 0;
  // offsets of the block's first element, shifted into the windows
  const aOffset = args.aOffset - sh(0) + (transA ? k0 * args.lda + m0 : m0 * args.lda + k0);
  const bOffset = args.bOffset - sh(1) + (transB ? n0 * args.ldb + k0 : k0 * args.ldb + n0);
  const outOffset = args.outOffset - sh(2) + m0 * args.n + n0;
  const batch = blk.nb;
  const aBase = aOffset + blk.b0 * args.aBatchStride;
  const bBase = bOffset + blk.b0 * args.bBatchStride;
  const oBase = outOffset + blk.b0 * args.m * args.n;
  const vecA = vecOK(aBase, args.lda, args.aBatchStride, batch);
  const vecB = vecOK(bBase, args.ldb, args.bBatchStride, batch);
  const plain = vecA && vecB && !transA && !transB && (args.aDType ?? "f32") === "f32" &&
    (args.bDType ?? "f32") === "f32";
  const threads = navigator.hardwareConcurrency ?? 2;
  const cfg = full({
    transA,
    transB,
    bias: args.bias !== undefined && k0 === 0,
    accumulate: k0 > 0,
    vecA,
    vecB,
    dtypeA: args.aDType ?? "f32",
    dtypeB: args.bDType ?? "f32",
    ...pickTile(m, n, rt.info.isFallback, threads, plain ? DEFAULT_TILE.tm : OTHER_MAX_TILE),
    ...args.tile,
  });
  const spec = matmulKernel(cfg);
  const gx = Math.ceil(n / (cfg.tn * cfg.wgX));
  const gy = Math.ceil(m / (cfg.tm * cfg.wgY));
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (gx > maxG || gy > maxG) {
    throw new RangeError(`matmul: ${m}x${n} output needs grid ${gx}x${gy}, over ${maxG}`);
  }
  const bind = (i: number, b: GPUBuffer) => win ? win[i]!.binding : b;
  const bindings = [bind(0, args.a), bind(1, args.b)];
  if (cfg.bias) bindings.push(bind(3, args.bias!.buffer));
  bindings.push(bind(2, args.out));
  const biasOffset = cfg.bias ? args.bias!.offset - sh(3) + n0 : 0;
  // Batch runs in grid z, in chunks of at most maxG items (offsets advance per chunk).
  for (let b0 = 0; b0 < batch; b0 += maxG) {
    const nb = Math.min(maxG, batch - b0);
    const p = new Params().u32(
      m,
      n,
      k,
      args.lda,
      args.ldb,
      aBase + b0 * args.aBatchStride,
      bBase + b0 * args.bBatchStride,
      oBase + b0 * args.m * args.n,
      args.aBatchStride,
      args.bBatchStride,
      biasOffset,
      args.n,
      args.m * args.n,
    );
    rt.dispatch(spec, bindings, p, [gx, gy, nb]);
  }
}
