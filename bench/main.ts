/**
 * `deno task bench`: Kino and TensorFlow.js's WebGPU backend side by side on the same adapter.
 * Prints a table (ms, GFLOP/s or GB/s, ratio = peer ms / Kino ms) and, with `--json FILE`, the
 * same records as JSON. Later issues add their cases to `CASES`.
 */
import { init } from "../engine/runtime.ts";
import { type Case } from "./_kino.ts";
import { coreCases } from "./core_bench.ts";
import { conv3dCases } from "./conv3d_bench.ts";
import { attentionCases } from "./attention_bench.ts";
import { dcAeCases } from "./dc_ae_bench.ts";
import { mmditCases, mmditTrainCases } from "./mmdit_bench.ts";
import {
  BENCH_HELP,
  type BenchRecord,
  gbs,
  gflops,
  matchesFilter,
  parseBenchArgs,
  printTable,
  type Summarised,
  writeJson,
} from "./_report.ts";
import { initTfjs, type TfjsPeer } from "./_tfjs.ts";
import { fullSizeRun } from "./full_size.ts";

const args = parseBenchArgs(Deno.args);
if (args.help) {
  console.log(BENCH_HELP);
  Deno.exit(0);
}

const rt = await init();
console.log(`adapter: ${rt.info.name}${rt.info.isFallback ? " (software)" : ""}`);
if (args.syntheticWeights) {
  // the full-size pipeline alone (no peer: TF.js has no such model)
  const figs = await fullSizeRun({
    preset: args.preset,
    log: (line) => console.log(line),
  });
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  console.log("\nstage            weights made   run        GPU peak    planned     host peak");
  for (const f of figs) {
    console.log(
      `${f.stage.padEnd(16)} ${(f.weightsMs / 1000).toFixed(1).padStart(8)} s ${
        (f.ms / 1000).toFixed(1).padStart(8)
      } s ${gib(f.peakDevice).padStart(10)} ${gib(f.predicted).padStart(10)} ${
        gib(f.peakHost).padStart(10)
      }`,
    );
  }
  if (args.json) {
    await writeJson(
      args.json,
      figs.map((f) => ({
        name: `full-size ${f.stage} (synthetic weights)`,
        shape: `${args.preset ?? "hcae"}, 256x256, 1 frame, one guidance branch`,
        kino_ms: f.ms,
        kino_gflops: null,
        kino_gbs: null,
        peer: "none",
        peer_ms: null,
        ratio: null,
        flops: null,
        bytes: null,
        weights_ms: f.weightsMs,
        peak_device_bytes: f.peakDevice,
        planned_bytes: f.predicted,
        peak_host_bytes: f.peakHost,
      })),
    );
    console.log(`wrote ${args.json}`);
  }
  Deno.exit(0);
}
const peer: TfjsPeer | null = await initTfjs();
const quick = args.quick;

const CASES: (Case & Summarised)[] = [
  ...coreCases(quick),
  ...attentionCases(quick),
  ...conv3dCases(quick),
  ...dcAeCases(quick),
  ...mmditCases(quick),
  ...mmditTrainCases(quick),
];

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
    peer: peer && c.peer ? peer.name : "none",
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
  const extra = c.summary?.();
  if (extra) {
    records.push(extra);
    console.log(
      `${extra.name}: ${extra.peer} ${extra.peer_ms!.toFixed(0)} ms / ${
        extra.kino_ms.toFixed(0)
      } ms` +
        ` = ${extra.ratio!.toFixed(2)}x (FLOP model ${extra.predicted?.toFixed(2)}x, full-size ` +
        `${extra.predicted_full?.toFixed(2)}x)`,
    );
  }
}
console.log();
printTable(records);
for (const c of CASES) for (const line of c.notes ?? []) console.log(`${c.name}: ${line}`);
if (args.json) {
  await writeJson(args.json, records);
  console.log(`wrote ${args.json}`);
}
Deno.exit(0);
