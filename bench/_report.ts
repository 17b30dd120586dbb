/**
 * Shared plumbing of the benchmarks: the record written per case, a wall-clock timer, FLOP and
 * byte counts per case (one convention for Kino and its peer), the side-by-side table, the JSON
 * writer and the command-line flags of `deno task bench`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname } from "node:path";
import process from "node:process";

/** One benchmark case, measured on Kino and on a peer library (TF.js WebGPU). */
export interface BenchRecord {
  /** Case name, e.g. `matmul`, `attention fwd+bwd`. */
  name: string;
  /** Human-readable shape, e.g. `1024x1024x1024`. */
  shape: string;
  /** Kino milliseconds per run; `NaN` when Kino was not run (written as `null` in JSON). */
  kino_ms: number;
  /** Kino GFLOP/s for compute-bound cases; null for memory-bound ones. */
  kino_gflops: number | null;
  /** Kino GB/s for memory-bound cases. */
  kino_gbs?: number | null;
  /** Peer name and version, e.g. `tfjs-webgpu@4.22.0`, or `none`. */
  peer: string;
  /** Peer milliseconds per run; null when the peer could not run. */
  peer_ms: number | null;
  /** `peer_ms / kino_ms`: above 1 means Kino is faster. */
  ratio: number | null;
  /** FLOPs of one run (the convention of {@linkcode FLOPS}); lets the table rate the peer. */
  flops?: number | null;
  /** Bytes of one run (the convention of {@linkcode BYTES}); lets the table rate the peer. */
  bytes?: number | null;
  /**
   * FLOPs of one peer run when the peer does other work than Kino (the baseline pipeline of a
   * `speedup` record); absent: the same as `flops`.
   */
  peer_flops?: number | null;
  /** `speedup` records: the ratio the FLOP model (spec speedup.md §3) predicts for this config. */
  predicted?: number | null;
  /** `speedup` records: the FLOP model's ratio for the full-size model at these token counts. */
  predicted_full?: number | null;
  /** `speedup` records: FLOPs of the Kino side's work on the full-size model. */
  flops_full?: number | null;
  /** `speedup` records: FLOPs of the peer side's work on the full-size model. */
  peer_flops_full?: number | null;
  /** Process CPU milliseconds of the Kino side (see {@linkcode RunTime.cpuMs}). */
  kino_cpu_ms?: number | null;
  /** Process CPU milliseconds of the peer side. */
  peer_cpu_ms?: number | null;
  /** `peer_cpu_ms / kino_cpu_ms`: the ratio with less noise from other processes on the CPU. */
  cpu_ratio?: number | null;
}

/**
 * A case that adds a record of its own after it ran, built from it and earlier cases (e.g. a
 * `speedup` row: two pipelines' timings and their ratio); `null` when a case it needs did not run.
 */
export interface Summarised {
  summary?: () => BenchRecord | null;
}

/** Options of {@linkcode timeIt}. */
export interface TimeOptions {
  /** Untimed runs first (pipeline compilation, buffer pools); default 2. */
  warmup?: number;
  /** Timed runs; default 10. */
  iters?: number;
  /**
   * Waits until all queued GPU work is finished. Called after the warm-up (untimed) and once at
   * the end of the timed loop (timed), so work still in the queue counts.
   */
  sync?: () => Promise<void> | void;
}

/** What {@linkcode timeRun} measures, per timed iteration. */
export interface RunTime {
  /** Wall-clock milliseconds. */
  ms: number;
  /**
   * Process CPU milliseconds (user + system, all threads, so the software adapter's worker
   * threads count): unlike `ms`, it barely grows when other processes share the CPU.
   */
  cpuMs: number;
}

/**
 * Wall-clock and CPU milliseconds per iteration: runs `fn` `warmup` times, syncs, then times
 * `iters` back-to-back runs plus one final `sync` and returns the means (total / iters).
 * Each call of `fn` is awaited, so an `fn` that waits for its own result is timed whole.
 */
export async function timeRun(
  fn: () => Promise<void> | void,
  options: TimeOptions = {},
): Promise<RunTime> {
  const warmup = options.warmup ?? 2;
  const iters = Math.max(1, options.iters ?? 10);
  for (let i = 0; i < warmup; i++) await fn();
  if (options.sync) await options.sync();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await fn();
  if (options.sync) await options.sync();
  const ms = (performance.now() - t0) / iters;
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000 / iters };
}

/**
 * Milliseconds per iteration: runs `fn` `warmup` times, syncs, then times `iters` back-to-back
 * runs plus one final `sync` with `performance.now()` and returns the mean (total / iters).
 * Each call of `fn` is awaited, so an `fn` that waits for its own result is timed whole.
 *
 * @example
 * ```ts
 * import { timeIt } from "./_report.ts";
 * const ms = await timeIt(() => {
 *   let s = 0;
 *   for (let i = 0; i < 1000; i++) s += i;
 * }, { warmup: 1, iters: 5 });
 * console.log(ms >= 0);
 * ```
 */
export async function timeIt(
  fn: () => Promise<void> | void,
  options: TimeOptions = {},
): Promise<number> {
  return (await timeRun(fn, options)).ms;
}

/** GFLOP/s of `flops` operations done in `ms` milliseconds (null if `ms` is not positive). */
export function gflops(flops: number, ms: number): number | null {
  return ms > 0 && Number.isFinite(ms) ? flops / (ms * 1e6) : null;
}

/** GB/s (1e9 bytes) of `bytes` moved in `ms` milliseconds (null if `ms` is not positive). */
export function gbs(bytes: number, ms: number): number | null {
  return ms > 0 && Number.isFinite(ms) ? bytes / (ms * 1e6) : null;
}

/**
 * FLOP counts per case; both sides of the table use these. Multiply-add = 2 FLOPs; softmax and
 * scaling inside attention are not counted; backward is counted as twice the forward (so
 * fwd+bwd = 3x fwd: attention backward is 4 matmuls of the forward's size, conv backward is the
 * input gradient plus the filter gradient, each one forward's worth).
 */
export const FLOPS = {
  /** `[m,k] x [k,n]`: 2mnk. */
  matmul: (m: number, n: number, k: number): number => 2 * m * n * k,
  /** `softmax(q k^T / sqrt(d)) v`, q/k/v `[b,h,l,d]`: two batched matmuls, 4 b h l^2 d. */
  attentionFwd: (b: number, h: number, l: number, d: number): number => 4 * b * h * l * l * d,
  /** Forward plus gradients w.r.t. q, k, v: 12 b h l^2 d. */
  attentionFwdBwd: (b: number, h: number, l: number, d: number): number => 12 * b * h * l * l * d,
  /** Stride-1 3-D convolution: 2 N Cout To Ho Wo Cin k^3, with To = t + 2 pad - k + 1 etc. */
  conv3dFwd: (
    n: number,
    cin: number,
    cout: number,
    t: number,
    h: number,
    w: number,
    k: number,
    pad: number,
  ): number => {
    const o = (x: number) => x + 2 * pad - k + 1;
    return 2 * n * cout * o(t) * o(h) * o(w) * cin * k * k * k;
  },
  /** Forward plus gradients w.r.t. input and filter: 3x the forward. */
  conv3dFwdBwd: (
    n: number,
    cin: number,
    cout: number,
    t: number,
    h: number,
    w: number,
    k: number,
    pad: number,
  ): number => 3 * FLOPS.conv3dFwd(n, cin, cout, t, h, w, k, pad),
};

/**
 * Byte counts of the memory-bound cases (f32): the minimum traffic of a fused kernel, one read of
 * the input and one write of the output (layer norm's gamma/beta are ignored).
 */
export const BYTES = {
  softmax: (rows: number, cols: number): number => 2 * 4 * rows * cols,
  layerNorm: (rows: number, cols: number): number => 2 * 4 * rows * cols,
  elementwise: (n: number): number => 2 * 4 * n,
};

function fmtNum(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "-";
  if (Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 100) return x.toFixed(1);
  return x.toFixed(digits);
}

function kinoRate(r: BenchRecord): string {
  if (r.kino_gflops !== null && Number.isFinite(r.kino_gflops)) {
    return `${fmtNum(r.kino_gflops)} GFLOP/s`;
  }
  if (r.kino_gbs !== null && r.kino_gbs !== undefined && Number.isFinite(r.kino_gbs)) {
    return `${fmtNum(r.kino_gbs)} GB/s`;
  }
  return "-";
}

function peerRate(r: BenchRecord): string {
  const ms = r.peer_ms;
  if (ms === null || !(ms > 0)) return "-";
  if (r.peer_flops) return `${fmtNum(gflops(r.peer_flops, ms))} GFLOP/s`;
  if (r.flops) return `${fmtNum(gflops(r.flops, ms))} GFLOP/s`;
  if (r.bytes) return `${fmtNum(gbs(r.bytes, ms))} GB/s`;
  // Same work on both sides: rescale Kino's rate by the time ratio.
  if (Number.isFinite(r.kino_ms) && r.kino_ms > 0) {
    if (r.kino_gflops !== null && Number.isFinite(r.kino_gflops)) {
      return `${fmtNum((r.kino_gflops * r.kino_ms) / ms)} GFLOP/s`;
    }
    if (r.kino_gbs !== null && r.kino_gbs !== undefined && Number.isFinite(r.kino_gbs)) {
      return `${fmtNum((r.kino_gbs * r.kino_ms) / ms)} GB/s`;
    }
  }
  return "-";
}

/** Renders the records as an aligned text table (one header row, one row per record). */
export function formatTable(records: BenchRecord[]): string {
  const header = ["case", "shape", "kino ms", "kino rate", "peer", "peer ms", "peer rate", "ratio"];
  const rows = records.map((r) => [
    r.name,
    r.shape,
    fmtNum(r.kino_ms),
    kinoRate(r),
    r.peer,
    fmtNum(r.peer_ms),
    peerRate(r),
    r.ratio === null || !Number.isFinite(r.ratio) ? "-" : `${r.ratio.toFixed(2)}x` +
      (r.predicted ? ` (FLOP model ${r.predicted.toFixed(2)}x)` : ""),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  // Text columns left-aligned, numbers right-aligned.
  const left = new Set([0, 1, 4]);
  const line = (cells: string[]) =>
    cells.map((c, i) => (left.has(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
      .trimEnd();
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("  ")];
  for (const row of rows) out.push(line(row));
  out.push("ratio = peer ms / kino ms (above 1: Kino is faster)");
  if (records.some((r) => r.predicted)) {
    out.push(
      "speedup rows: kino = the high-compression pipeline, peer = the baseline pipeline, both on " +
        "Kino; ratio = baseline ms / high-compression ms, next to the FLOP model's prediction",
    );
  }
  return out.join("\n");
}

/** Prints {@linkcode formatTable} to stdout. */
export function printTable(records: BenchRecord[]): void {
  console.log(formatTable(records));
}

/** Writes the records as a pretty-printed JSON array (non-finite numbers become null). */
export async function writeJson(path: string, records: BenchRecord[]): Promise<void> {
  const dir = dirname(path);
  if (dir && dir !== ".") await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(records, null, 2) + "\n");
}

/** Flags of `deno task bench`. */
export interface BenchArgs {
  /** `--json FILE`: also write the records there. */
  json?: string;
  /** `--filter STR`: run only cases whose name or shape contains STR (case-insensitive). */
  filter?: string;
  /** `--quick`: fewer iterations and smaller sizes, for a smoke run. */
  quick: boolean;
  /** `--help`: print {@linkcode BENCH_HELP} and exit. */
  help: boolean;
  /** `--synthetic-weights`: run only the full-size pipeline with seeded random weights. */
  syntheticWeights: boolean;
  /** `--preset NAME`: the MMDiT of the `--synthetic-weights` run (default hcae). */
  preset?: string;
}

/** Help text of `deno task bench`. */
export const BENCH_HELP = `Usage: deno task bench [options]

Times Kino and TensorFlow.js (WebGPU backend) side by side on the same adapter and prints a
table: milliseconds per run, GFLOP/s (compute-bound) or GB/s (memory-bound), and
ratio = peer ms / kino ms (above 1: Kino is faster).

Options:
  --json FILE    also write the records as JSON to FILE
                 ({name, shape, kino_ms, kino_gflops, peer, peer_ms, ratio}, ...)
  --filter STR   run only the cases whose name or shape contains STR (case-insensitive);
                 --filter 768 runs the 768px speed-up cases alone (about 20 minutes on a CPU
                 adapter)
  --quick        fewer iterations, skip the largest sizes and the 768px cases (smoke run)
  --synthetic-weights [--preset hcae|baseline-768]
                 instead of the cases: the full-size pipeline with seeded random weights made
                 on the GPU (T5-XXL + CLIP-L encode of one prompt, one MMDiT forward of one
                 guidance branch at 256px 1 frame, the DC-AE decode); per stage its time, peak
                 GPU and host memory and the memory planner's estimate (rows "full-size <stage>
                 (synthetic weights)"); about 30 minutes and 12 GB on a CPU adapter

Speed-up rows ("speedup 256px fwd", "speedup 768px train", ...): the same reduced MMDiT at the
token counts of the high-compression pipeline (kino_ms) and the baseline pipeline (peer, peer_ms);
ratio = baseline ms / high-compression ms, next to the FLOP model's prediction for this model
(predicted; flops, peer_flops) and for the full-size model (predicted_full; flops_full,
peer_flops_full).
  -h, --help     show this help

On a machine without a GPU: apt-get install -y mesa-vulkan-drivers; export XDG_RUNTIME_DIR=/tmp`;

/**
 * Parses the bench flags; an unknown flag or a missing value throws an Error whose message ends
 * with the help text.
 *
 * @example
 * ```ts
 * import { parseBenchArgs } from "./_report.ts";
 * const a = parseBenchArgs(["--json", "out/b.json", "--quick"]);
 * console.log(a.json, a.quick); // out/b.json true
 * ```
 */
export function parseBenchArgs(args: string[]): BenchArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        json: { type: "string" },
        filter: { type: "string" },
        quick: { type: "boolean", default: false },
        "synthetic-weights": { type: "boolean", default: false },
        preset: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : e}\n\n${BENCH_HELP}`);
  }
  return {
    json: values.json,
    filter: values.filter,
    quick: values.quick ?? false,
    help: values.help ?? false,
    syntheticWeights: values["synthetic-weights"] ?? false,
    preset: values.preset,
  };
}

/** True if a case passes `--filter` (no filter: every case). */
export function matchesFilter(filter: string | undefined, name: string, shape = ""): boolean {
  if (!filter) return true;
  const f = filter.toLowerCase();
  return name.toLowerCase().includes(f) || shape.toLowerCase().includes(f);
}
