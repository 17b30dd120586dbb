/**
 * Kino side of the benchmarks: the case type, timing of a Kino graph, deterministic inputs.
 */
import { runtime } from "../engine/runtime.ts";
import { realize } from "../engine/graph.ts";
import type { Tensor } from "../engine/tensor.ts";
import { timeIt } from "./_report.ts";
import type { TfjsPeer } from "./_tfjs.ts";

/** Deterministic inputs in [-0.5, 0.5). */
export function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

/** Times one Kino graph: builds it, realizes it into the open batch, frees the result. */
export function kinoTime(build: () => Tensor, iters: number): Promise<number> {
  return timeIt(() => {
    const y = build();
    realize([y]);
    y.dispose();
  }, { warmup: 1, iters, sync: () => runtime().sync() });
}

/** One benchmark case: Kino's timing and, optionally, the peer's on the same work. */
export interface Case {
  name: string;
  shape: string;
  /** FLOPs of one run (compute-bound cases). */
  flops?: number;
  /** Bytes moved by one run (memory-bound cases). */
  bytes?: number;
  iters: number;
  /** Extra lines to print after the table (e.g. memory figures). */
  notes?: string[];
  /** Kino ms per run. */
  kino: () => Promise<number>;
  /** Peer ms per run. */
  peer?: (p: TfjsPeer) => Promise<number>;
}
