/** Core-engine cases: matmul, softmax, layer norm, a fused elementwise chain. */
import { fromData } from "../engine/graph.ts";
import { add, mul, relu, sigmoid, sub, tanh } from "../engine/ops/elementwise.ts";
import { linear, matmul } from "../engine/ops/matmul.ts";
import { softmax } from "../engine/ops/softmax.ts";
import { layerNorm } from "../engine/ops/norm.ts";
import { BYTES, FLOPS } from "./_report.ts";
import { CHAIN_A, CHAIN_B, LAYER_NORM_EPS } from "./_tfjs.ts";
import { type Case, kinoTime, rand } from "./_kino.ts";

/** The core cases; `quick` drops the largest sizes. */
export function coreCases(quick: boolean): Case[] {
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

  if (!quick) {
    // The release MMDiT's MLP down-projection as nn.Linear: x [4096, 12288] · W[3072, 12288]ᵀ.
    // The weight (144 MiB) and x (192 MiB) exceed a 128 MiB storage binding, so the matmul runs
    // as windows (blocks of rows and weight rows); the second row is one such block, whole.
    for (const [m, n, label] of [[4096, 3072, "segmented"], [2048, 1536, "one binding"]] as const) {
      const k = 12288;
      CASES.push({
        name: `release MLP matmul (${label})`,
        shape: `${m}x${k}x${n} linear`,
        flops: FLOPS.matmul(m, n, k),
        iters: 1,
        kino: () => {
          const x = fromData(rand(m * k, 7), [m, k], "f32");
          const w = fromData(rand(n * k, 8), [n, k], "f32");
          return kinoTime(() => linear(x, w), 1).finally(() => {
            x.dispose();
            w.dispose();
          });
        },
      });
    }
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
  return CASES;
}
