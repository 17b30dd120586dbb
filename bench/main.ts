/**
 * `deno task bench`: Kino and TensorFlow.js's WebGPU backend side by side on the same adapter.
 * Prints a table (ms, GFLOP/s or GB/s, ratio = peer ms / Kino ms) and, with `--json FILE`, the
 * same records as JSON. Later issues add their cases to `CASES`.
 */
import { init } from "../engine/runtime.ts";
import { fromData, realize } from "../engine/graph.ts";
import type { Tensor } from "../engine/tensor.ts";
import { add, mul, relu, sigmoid, sub, tanh } from "../engine/ops/elementwise.ts";
import { matmul } from "../engine/ops/matmul.ts";
import { softmax } from "../engine/ops/softmax.ts";
import { layerNorm } from "../engine/ops/norm.ts";
import {
  BENCH_HELP,
  type BenchRecord,
  BYTES,
  FLOPS,
  gbs,
  gflops,
  matchesFilter,
  parseBenchArgs,
  printTable,
  timeIt,
  writeJson,
} from "./_report.ts";
import { CHAIN_A, CHAIN_B, initTfjs, LAYER_NORM_EPS, type TfjsPeer } from "./_tfjs.ts";

const args = parseBenchArgs(Deno.args);
if (args.help) {
  console.log(BENCH_HELP);
  Deno.exit(0);
}

const rt = await init();
console.log(`adapter: ${rt.info.name}${rt.info.isFallback ? " (software)" : ""}`);
const peer: TfjsPeer | null = await initTfjs();
const quick = args.quick;

function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

/** Times one Kino graph: builds it, realizes it into the open batch, frees the result. */
function kinoTime(build: () => Tensor, iters: number): Promise<number> {
  return timeIt(() => {
    const y = build();
    realize([y]);
    y.dispose();
  }, { warmup: 1, iters, sync: () => rt.sync() });
}

interface Case {
  name: string;
  shape: string;
  flops?: number;
  bytes?: number;
  iters: number;
  kino: () => Promise<number>;
  peer?: (p: TfjsPeer) => Promise<number>;
}

const CASES: Case[] = [];

for (const n of quick ? [256, 1024] : [256, 1024, 2048]) {
  const iters = n >= 2048 ? 2 : n >= 1024 ? 4 : 20;
  CASES.push({
    name: "matmul",
    shape: `${n}x${n}x${n}`,
    flops: FLOPS.matmul(n, n, n),
    iters,
    kino: () => {
      const a = fromData(rand(n * n, 1), [n, n], "f32");
      const b = fromData(rand(n * n, 2), [n, n], "f32");
      return kinoTime(() => matmul(a, b), iters).finally(() => {
        a.dispose();
        b.dispose();
      });
    },
    peer: (p) => p.matmul(n, n, n, { warmup: 1, iters: n >= 2048 ? 1 : iters }),
  });
}

const ROWS = 4096, COLS = 1024;
CASES.push({
  name: "softmax",
  shape: `${ROWS}x${COLS}`,
  bytes: BYTES.softmax(ROWS, COLS),
  iters: 10,
  kino: () => {
    const x = fromData(rand(ROWS * COLS, 3), [ROWS, COLS], "f32");
    return kinoTime(() => softmax(x), 10).finally(() => x.dispose());
  },
  peer: (p) => p.softmax(ROWS, COLS, { warmup: 1, iters: 10 }),
});
CASES.push({
  name: "layer norm",
  shape: `${ROWS}x${COLS}`,
  bytes: BYTES.layerNorm(ROWS, COLS),
  iters: 10,
  kino: () => {
    const x = fromData(rand(ROWS * COLS, 4), [ROWS, COLS], "f32");
    const g = fromData(rand(COLS, 5), [COLS], "f32");
    const b = fromData(rand(COLS, 6), [COLS], "f32");
    return kinoTime(() => layerNorm(x, g, b, LAYER_NORM_EPS), 10).finally(() => {
      x.dispose();
      g.dispose();
      b.dispose();
    });
  },
  peer: (p) => p.layerNorm(ROWS, COLS, { warmup: 1, iters: 10 }),
});
const EW = 4 * 1024 * 1024;
CASES.push({
  name: "elementwise chain",
  shape: `${EW} (relu(x*a+b)*sigmoid(x)-tanh(x))`,
  bytes: BYTES.elementwise(EW),
  iters: 10,
  kino: () => {
    const x = fromData(rand(EW, 7), [EW], "f32");
    return kinoTime(() => sub(mul(relu(add(mul(x, CHAIN_A), CHAIN_B)), sigmoid(x)), tanh(x)), 10)
      .finally(() => x.dispose());
  },
  peer: (p) => p.elementwiseChain(EW, { warmup: 1, iters: 10 }),
});

const records: BenchRecord[] = [];
for (const c of CASES) {
  if (!matchesFilter(args.filter, c.name, c.shape)) continue;
  const kms = await c.kino();
  const pms = peer && c.peer ? await c.peer(peer) : null;
  const rec: BenchRecord = {
    name: c.name,
    shape: c.shape,
    kino_ms: kms,
    kino_gflops: c.flops ? gflops(c.flops, kms) : null,
    kino_gbs: c.bytes ? gbs(c.bytes, kms) : null,
    peer: peer ? peer.name : "none",
    peer_ms: pms,
    ratio: pms !== null ? pms / kms : null,
    flops: c.flops ?? null,
    bytes: c.bytes ?? null,
  };
  records.push(rec);
  console.log(
    `${c.name} ${c.shape}: kino ${kms.toFixed(2)} ms` +
      (pms !== null ? `, ${peer!.name} ${pms.toFixed(2)} ms, ratio ${(pms / kms).toFixed(2)}` : ""),
  );
}
console.log();
printTable(records);
if (args.json) {
  await writeJson(args.json, records);
  console.log(`wrote ${args.json}`);
}
Deno.exit(0);
