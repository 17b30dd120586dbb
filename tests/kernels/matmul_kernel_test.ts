import { init, type Runtime } from "../../engine/runtime.ts";
import { encodeMatmul, type MatmulArgs, matmulKernel } from "../../kernels/matmul.ts";

function assert(cond: boolean, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}
function assertEquals<T>(got: T, want: T): void {
  if (got !== want) throw new Error(`expected ${String(want)}, got ${String(got)}`);
}

let rt: Runtime | null = null;
let why = "";
try {
  rt = await init();
} catch (e) {
  why = `no WebGPU adapter (${(e as Error).message.split("\n")[0]}); matmul kernel tests ignored`;
  console.warn(why);
}
const ignore = rt === null;

/** Deterministic pseudo-random values in [-1, 1). */
function rand(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 2 ** 32) * 2 - 1;
  }
  return out;
}

interface Case {
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  /** Extra row-stride padding of A / B (0 = dense). */
  padA?: number;
  padB?: number;
  aOffset?: number;
  bOffset?: number;
  outOffset?: number;
  biasOffset?: number;
  /** Broadcast A (or B) over the batch: batch stride 0. */
  broadcastA?: boolean;
  broadcastB?: boolean;
  tile?: MatmulArgs["tile"];
}

function upload(r: Runtime, data: Float32Array): GPUBuffer {
  const buf = r.pool.acquire(Math.max(4, data.byteLength));
  r.write(buf, 0, data);
  return buf;
}

async function runCase(r: Runtime, c: Case, seed: number): Promise<void> {
  const { batch, m, n, k, transA, transB } = c;
  const aRows = transA ? k : m, aCols = transA ? m : k;
  const bRows = transB ? n : k, bCols = transB ? k : n;
  const lda = aCols + (c.padA ?? 0), ldb = bCols + (c.padB ?? 0);
  const aMat = (aRows - 1) * lda + aCols, bMat = (bRows - 1) * ldb + bCols;
  const aStride = c.broadcastA ? 0 : aMat + 3, bStride = c.broadcastB ? 0 : bMat + (c.padB ?? 0);
  const aOff = c.aOffset ?? 0, bOff = c.bOffset ?? 0, oOff = c.outOffset ?? 0;
  const biasOff = c.biasOffset ?? 0;
  const aData = rand(aOff + (batch - 1) * aStride + aMat, seed);
  const bData = rand(bOff + (batch - 1) * bStride + bMat, seed + 1);
  const biasData = rand(biasOff + n, seed + 2);
  const aBuf = upload(r, aData), bBuf = upload(r, bData);
  const biasBuf = c.bias ? upload(r, biasData) : undefined;
  const outLen = oOff + batch * m * n;
  const sentinel = new Float32Array(outLen + 8).fill(-777);
  const outBuf = upload(r, sentinel);
  encodeMatmul(r, {
    batch,
    m,
    n,
    k,
    a: aBuf,
    aOffset: aOff,
    aBatchStride: aStride,
    lda,
    b: bBuf,
    bOffset: bOff,
    bBatchStride: bStride,
    ldb,
    bias: biasBuf ? { buffer: biasBuf, offset: biasOff } : undefined,
    out: outBuf,
    outOffset: oOff,
    transA,
    transB,
    tile: c.tile,
  });
  const got = new Float32Array(await r.read(outBuf, 0, (outLen + 8) * 4));
  for (const b of [aBuf, bBuf, outBuf, biasBuf]) if (b) r.pool.release(b);

  const bad: string[] = [];
  let nBad = 0;
  for (let i = 0; i < oOff; i++) if (got[i] !== -777) nBad++, bad.push(`prefix[${i}] = ${got[i]}`);
  for (let i = outLen; i < outLen + 8; i++) {
    if (got[i] !== -777) nBad++, bad.push(`suffix[${i}] = ${got[i]}`);
  }
  for (let bi = 0; bi < batch; bi++) {
    const ab = aOff + bi * aStride, bb = bOff + bi * bStride;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, mag = 0;
        for (let p = 0; p < k; p++) {
          const av = aData[ab + (transA ? p * lda + i : i * lda + p)]!;
          const bv = bData[bb + (transB ? j * ldb + p : p * ldb + j)]!;
          s += av * bv;
          mag += Math.abs(av * bv);
        }
        if (c.bias) s += biasData[biasOff + j]!, mag += Math.abs(biasData[biasOff + j]!);
        const g = got[oOff + (bi * m + i) * n + j]!;
        if (!(Math.abs(g - s) <= 1e-4 + 1e-4 * mag)) {
          nBad++;
          if (bad.length < 8) bad.push(`[${bi},${i},${j}] got ${g} want ${s}`);
        }
      }
    }
  }
  if (nBad > 0) {
    throw new Error(`${JSON.stringify(c)}: ${nBad} mismatches, first:\n  ${bad.join("\n  ")}`);
  }
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 33, 257],
  [33, 7, 1],
  [257, 33, 7],
  [1, 257, 33],
  [33, 1, 7],
  [7, 7, 7],
  [8, 16, 12],
  [36, 20, 64],
];

for (const transA of [false, true]) {
  for (const transB of [false, true]) {
    const tag = `${transA ? "T" : "N"}${transB ? "T" : "N"}`;
    Deno.test({ name: `matmul ${tag}: odd shapes, with and without bias`, ignore }, async () => {
      let seed = 1;
      for (const [m, n, k] of SHAPES) {
        for (const bias of [false, true]) {
          await runCase(rt!, { batch: 1, m, n, k, transA, transB, bias }, seed++);
        }
      }
    });
    Deno.test(
      { name: `matmul ${tag}: batch 3, broadcast, offsets, padded strides`, ignore },
      async () => {
        let seed = 100;
        const variants: Partial<Case>[] = [
          // vec4 paths (offsets, strides multiple of 4)
          {
            broadcastB: true,
            aOffset: 4,
            bOffset: 8,
            outOffset: 3,
            padA: 4,
            padB: 0,
            biasOffset: 5,
          },
          // scalar paths (odd offsets / strides)
          {
            broadcastA: true,
            aOffset: 1,
            bOffset: 3,
            outOffset: 5,
            padA: 1,
            padB: 3,
            biasOffset: 1,
          },
          // mixed: vec A, scalar B
          { broadcastA: true, aOffset: 0, bOffset: 1, padA: 0, padB: 2 },
        ];
        for (const v of variants) {
          for (const [m, n, k] of [[7, 33, 257], [33, 7, 1], [257, 33, 7], [5, 6, 9]]) {
            await runCase(
              rt!,
              { batch: 3, m: m!, n: n!, k: k!, transA, transB, bias: true, ...v },
              seed++,
            );
          }
        }
      },
    );
  }
}

Deno.test({ name: "matmul: other tile shapes", ignore }, async () => {
  let seed = 500;
  const tiles: MatmulArgs["tile"][] = [
    { tm: 8, tn: 4, wgX: 8, wgY: 1 },
    { tm: 4, tn: 8, wgX: 4, wgY: 2 },
    { tm: 8, tn: 8, wgX: 2, wgY: 4 },
    { tm: 16, tn: 8, wgX: 8, wgY: 1, fma: true },
    { tm: 4, tn: 4, wgX: 16, wgY: 8, fma: true },
  ];
  const shapes = [[33, 7, 13], [7, 33, 20], [40, 36, 8], [70, 300, 9]];
  for (const tile of tiles) {
    for (const [transA, transB] of [[false, false], [true, true], [false, true]]) {
      for (const [m, n, k] of shapes) {
        const c = { batch: 2, m: m!, n: n!, k: k!, transA: transA!, transB: transB!, bias: true };
        await runCase(rt!, { ...c, tile }, seed++);
      }
    }
  }
  // The default llvmpipe block (32x32) on the plain vec4 variant (the others compile slowly).
  for (const [m, n, k] of [...shapes, [1, 1, 1], [65, 260, 33]]) {
    const c = { batch: 1, m: m!, n: n!, k: k!, transA: false, transB: false, bias: true };
    await runCase(rt!, { ...c, tile: { tm: 32, tn: 32, wgX: 8, wgY: 1 } }, seed++);
    const bcast = { batch: 2, broadcastA: true, broadcastB: true };
    await runCase(rt!, { ...c, ...bcast, tile: { tm: 32, tn: 32, wgX: 8, wgY: 1 } }, seed++);
  }
});

Deno.test({ name: "matmul: same config, two shapes, one pipeline", ignore }, async () => {
  const r = rt!;
  // A tile shape no other test uses, so its pipeline is not cached yet.
  const tile = { tm: 4, tn: 4, wgX: 2, wgY: 2 };
  const spec = matmulKernel({
    transA: false,
    transB: false,
    bias: false,
    vecA: true,
    vecB: true,
    ...tile,
  });
  assertEquals(
    matmulKernel({ transA: false, transB: false, bias: false, vecA: true, vecB: true, ...tile }),
    spec,
  );
  const before = r.counters.pipelinesCompiled;
  await runCase(r, {
    batch: 1,
    m: 16,
    n: 12,
    k: 8,
    transA: false,
    transB: false,
    bias: false,
    tile,
  }, 7);
  assertEquals(r.counters.pipelinesCompiled, before + 1);
  const other = { batch: 2, m: 37, n: 20, k: 44, broadcastA: true, broadcastB: true, padA: 4 };
  await runCase(r, { ...other, transA: false, transB: false, bias: false, tile }, 8);
  assertEquals(r.counters.pipelinesCompiled, before + 1);
  assert(spec.code.includes("@workgroup_size(2, 2, 1)"));
});
