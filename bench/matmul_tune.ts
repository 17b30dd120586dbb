/**
 * Tile tuning of the matmul kernel: `deno run -A bench/matmul_tune.ts [sizes] [--all]`.
 *
 * `--tiles=tm,tn,wgX,wgY[,fma];...` picks tile shapes, `--all` runs the tuned list, `--transA` /
 * `--transB` time the transposed layouts. For each tile configuration and square size, warms up, then records N dispatches and waits once
 * (no readback) and prints ms per matmul and GFLOP/s.
 *
 * @module
 */
import { init } from "../engine/runtime.ts";
import {
  DEFAULT_TILE,
  encodeMatmul,
  type MatmulArgs,
  OTHER_MAX_TILE,
  pickTile,
} from "../kernels/matmul.ts";

type Tile = NonNullable<MatmulArgs["tile"]>;

const cores = navigator.hardwareConcurrency;

/** User + system CPU time of this process in ms (Linux; NaN elsewhere). */
function cpuMs(): number {
  try {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) * 10; // utime, stime in 100 Hz ticks
  } catch {
    return NaN;
  }
}

const rt = await init();
console.log(`adapter: ${rt.info.name}`);

const args = Deno.args.filter((a) => !a.startsWith("--"));
const sizes = args.length > 0 ? args.map(Number) : [256, 1024, 2048];
const all = Deno.args.includes("--all");
const transB = Deno.args.includes("--transB");
const transA = Deno.args.includes("--transA");

const tileArg = Deno.args.find((a) => a.startsWith("--tiles="));
const tiles: Tile[] = tileArg
  ? tileArg.slice(8).split(";").map((t) => {
    const [tm, tn, wgX, wgY, fma] = t.split(",").map(Number);
    return { tm, tn, wgX, wgY, fma: fma === 1 };
  })
  : all
  ? [
    // Explored on llvmpipe (2 threads): the bigger the register block, the faster, up to 32x32
    // (64x32 takes minutes to compile). Workgroups wider than the SIMD width (8) or 2-D were slower.
    { tm: 4, tn: 4, wgX: 8, wgY: 1 },
    { tm: 8, tn: 8, wgX: 8, wgY: 1 },
    { tm: 16, tn: 16, wgX: 8, wgY: 1 },
    { tm: 16, tn: 16, wgX: 16, wgY: 1 },
    { tm: 32, tn: 16, wgX: 8, wgY: 1 },
    { tm: 32, tn: 24, wgX: 8, wgY: 1 },
    { tm: 32, tn: 32, wgX: 8, wgY: 1 },
    { tm: 32, tn: 32, wgX: 8, wgY: 1, fma: true },
    { tm: 32, tn: 32, wgX: 16, wgY: 1 },
    { tm: 32, tn: 32, wgX: 4, wgY: 2 },
  ]
  : [];

for (const size of sizes) {
  const m = size, n = size, k = size;
  const bytes = size * size * 4;
  const a = rt.pool.acquire(bytes), b = rt.pool.acquire(bytes), out = rt.pool.acquire(bytes);
  const init = new Float32Array(size * size).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  rt.write(a, 0, init);
  rt.write(b, 0, init);
  const flop = 2 * m * n * k;
  // With no tile list: the tile encodeMatmul picks for this size.
  const list = tiles.length > 0 ? tiles : [pickTile(
    m,
    n,
    rt.info.isFallback,
    navigator.hardwareConcurrency,
    transA || transB ? OTHER_MAX_TILE : DEFAULT_TILE.tm,
  )];
  for (const tile of list) {
    const run = () =>
      encodeMatmul(rt, {
        batch: 1,
        m,
        n,
        k,
        a,
        aOffset: 0,
        aBatchStride: 0,
        lda: transA ? m : k,
        b,
        bOffset: 0,
        bBatchStride: 0,
        ldb: transB ? k : n,
        out,
        outOffset: 0,
        transA,
        transB,
        tile,
      });
    run();
    await rt.sync(); // compile + warm up
    // Best of 5 timings of ~0.4 s each (the machine is shared; the minimum is the least noisy).
    // Also the process CPU time per matmul (llvmpipe's threads run in this process): on a busy
    // machine, flop / (cpu time / cores) estimates the uncontended rate.
    let t = performance.now();
    run();
    await rt.sync();
    const once = performance.now() - t;
    const iters = Math.max(2, Math.min(200, Math.round(400 / Math.max(once, 0.01))));
    let best = Infinity, bestCpu = Infinity;
    for (let rep = 0; rep < 5; rep++) {
      const c0 = cpuMs();
      t = performance.now();
      for (let i = 0; i < iters; i++) run();
      await rt.sync();
      best = Math.min(best, (performance.now() - t) / iters);
      bestCpu = Math.min(bestCpu, (cpuMs() - c0) / iters);
    }
    const gflops = flop / 1e9 / (best / 1e3);
    const cpuGflops = bestCpu > 0 ? flop / 1e9 / (bestCpu / cores / 1e3) : NaN;
    const name = `tm${tile.tm} tn${tile.tn} wg${tile.wgX}x${tile.wgY}${tile.fma ? " fma" : ""}`;
    console.log(
      `${size.toString().padStart(5)}  ${name.padEnd(20)} ${best.toFixed(2).padStart(9)} ms ` +
        `${gflops.toFixed(2).padStart(7)} GFLOP/s  (cpu-normalised ${cpuGflops.toFixed(2)}, ` +
        `${iters} iters)`,
    );
  }
  rt.pool.release(a);
  rt.pool.release(b);
  rt.pool.release(out);
}
