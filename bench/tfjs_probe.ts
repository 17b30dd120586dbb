/**
 * Times every TF.js WebGPU peer case at the benchmark sizes and prints the table with the peer
 * columns only (Kino's are empty). Useful to check the peer alone:
 *
 * ```sh
 * deno run -A bench/tfjs_probe.ts [--json FILE] [--filter STR] [--quick]
 * ```
 *
 * @module
 */

import { initTfjs, type PeerTimeOptions, type TfjsPeer } from "./_tfjs.ts";
import {
  BENCH_HELP,
  type BenchRecord,
  BYTES,
  FLOPS,
  matchesFilter,
  parseBenchArgs,
  printTable,
  writeJson,
} from "./_report.ts";

interface ProbeCase {
  name: string;
  shape: string;
  flops?: number;
  bytes?: number;
  run: (peer: TfjsPeer, opts: PeerTimeOptions) => Promise<number>;
  /** Timed runs (full run); `--quick` uses 1. */
  iters: number;
}

/** The benchmark cases at the sizes of the issue. */
export function probeCases(): ProbeCase[] {
  const cases: ProbeCase[] = [];
  for (const s of [256, 1024, 2048]) {
    cases.push({
      name: "matmul",
      shape: `${s}x${s}x${s}`,
      flops: FLOPS.matmul(s, s, s),
      run: (p, o) => p.matmul(s, s, s, o),
      iters: s <= 256 ? 20 : s <= 1024 ? 5 : 1,
    });
  }
  cases.push({
    name: "softmax",
    shape: "4096x1024",
    bytes: BYTES.softmax(4096, 1024),
    run: (p, o) => p.softmax(4096, 1024, o),
    iters: 10,
  });
  cases.push({
    name: "layer norm",
    shape: "4096x1024",
    bytes: BYTES.layerNorm(4096, 1024),
    run: (p, o) => p.layerNorm(4096, 1024, o),
    iters: 10,
  });
  const n = 4 * 1024 * 1024;
  cases.push({
    name: "elementwise chain",
    shape: "4M",
    bytes: BYTES.elementwise(n),
    run: (p, o) => p.elementwiseChain(n, o),
    iters: 10,
  });
  const [b, h, l, d] = [1, 8, 1024, 64];
  cases.push({
    name: "attention fwd",
    shape: `b${b} h${h} L${l} d${d}`,
    flops: FLOPS.attentionFwd(b, h, l, d),
    run: (p, o) => p.attention(b, h, l, d, o),
    iters: 3,
  });
  cases.push({
    name: "attention fwd+bwd",
    shape: `b${b} h${h} L${l} d${d}`,
    flops: FLOPS.attentionFwdBwd(b, h, l, d),
    run: (p, o) => p.attentionFwdBwd(b, h, l, d, o),
    iters: 2,
  });
  const c: [number, number, number, number, number, number, number, number] = [
    1,
    64,
    64,
    8,
    32,
    32,
    3,
    1,
  ];
  const convShape = "N1 C64->64 T8 32x32 k3 p1";
  cases.push({
    name: "conv3d fwd",
    shape: convShape,
    flops: FLOPS.conv3dFwd(...c),
    run: (p, o) => p.conv3d(...c, o),
    iters: 2,
  });
  cases.push({
    name: "conv3d fwd+bwd",
    shape: convShape,
    flops: FLOPS.conv3dFwdBwd(...c),
    run: (p, o) => p.conv3dFwdBwd(...c, o),
    iters: 1,
  });
  return cases;
}

if (import.meta.main) {
  const args = parseBenchArgs(Deno.args);
  if (args.help) {
    console.log(BENCH_HELP);
    Deno.exit(0);
  }
  const peer = await initTfjs();
  if (!peer) Deno.exit(1);
  console.log(`peer: ${peer.name} on ${peer.adapter}`);
  const records: BenchRecord[] = [];
  for (const c of probeCases()) {
    if (!matchesFilter(args.filter, c.name, c.shape)) continue;
    const opts = args.quick ? { warmup: 1, iters: 1 } : { warmup: 2, iters: c.iters };
    let ms: number | null = null;
    try {
      ms = await c.run(peer, opts);
    } catch (e) {
      console.error(`${c.name} ${c.shape}: ${e instanceof Error ? e.message : e}`);
    }
    console.error(`  ${c.name} ${c.shape}: ${ms?.toFixed(2) ?? "failed"} ms`);
    records.push({
      name: c.name,
      shape: c.shape,
      kino_ms: NaN,
      kino_gflops: null,
      kino_gbs: null,
      peer: peer.name,
      peer_ms: ms,
      ratio: null,
      flops: c.flops ?? null,
      bytes: c.bytes ?? null,
    });
  }
  printTable(records);
  console.error(`live tensors at the end: ${peer.numTensors()}`);
  if (args.json) await writeJson(args.json, records);
}
