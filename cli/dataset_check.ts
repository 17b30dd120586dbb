/**
 * `deno task dataset:check data.csv`: tells, for every row of a training CSV, whether it will be
 * used and why not (malformed row, missing file, unreadable, corrupt media, too short, wrong size,
 * no bucket), then counts per reason and per bucket. Exit code 0 when some row is usable, 1 when
 * none is (or the CSV itself is unusable), 2 for bad arguments.
 */
import { parseArgs } from "node:util";
import { numberFlag, UsageError } from "./_args.ts";
import {
  type BucketConfig,
  Buckets,
  DatasetCsvError,
  loadBucketConfig,
  openDataset,
  type RowStatus,
  SKIP_REASONS,
  withResolution,
} from "../train/data/mod.ts";

const HELP = `Usage: deno task dataset:check DATA.csv [options]

Checks a training dataset CSV (columns path,text and optionally num_frames,height,width,fps,...):
probes every file with ffprobe, assigns buckets as training would, and prints one line per row
and a summary. Exit code: 0 if some row is usable, 1 if none is, 2 for bad arguments.

  --buckets NAME|FILE   bucket config: a preset (hcae, the default) or a .json file
                        {"768px": {"1": [1.0, 20], "16": [1.0, 8], ...}}
  --resolution RES      move the bucket config to this resolution, e.g. 256px
  --ae-compression D    aspect-table quantum (default 32, the DC-AE's)
  --seed N              global seed (default 42)
  --epoch N             epoch whose bucket assignment to show (default 0)
  --fps-max N           frame-rate cap (default 24)
  --count-frames        count frames by decoding every file (exact, slow)
  --json                print the report as JSON instead of text
  -h, --help            this text`;

function fail(msg: string): number {
  console.error(`dataset:check: ${msg}`);
  return 2;
}

function statusLine(s: RowStatus): string {
  const where = `line ${String(s.line).padStart(4)}`;
  const path = s.path ?? "";
  if (s.used) {
    const b = s.bucket!;
    return `${where}  used      ${b.resolution} ${b.frames}f ${b.ratio} (${b.height}x${b.width})  ${path}`;
  }
  return `${where}  skipped   ${s.reason}: ${s.detail}${
    path && !s.detail?.includes(path) ? `  ${path}` : ""
  }`;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args,
      allowPositionals: true,
      options: {
        buckets: { type: "string", default: "hcae" },
        resolution: { type: "string" },
        "ae-compression": { type: "string" },
        seed: { type: "string" },
        epoch: { type: "string" },
        "fps-max": { type: "string" },
        "count-frames": { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail(`${(e as Error).message} (see --help)`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) {
    return fail(
      positionals.length
        ? `give one CSV, got ${positionals.length}: ${positionals.join(" ")}`
        : `no CSV given\n\n${HELP}`,
    );
  }
  const csv = positionals[0]!;
  const nums: Record<string, number> = {};
  for (
    const [k, def] of [["seed", 42], ["epoch", 0], ["fps-max", 24], ["ae-compression", 32]] as const
  ) {
    try {
      nums[k] = numberFlag(k, values[k], { integer: true, min: 0 }) ?? def;
    } catch (e) {
      if (e instanceof UsageError) return fail(e.message);
      throw e;
    }
  }
  if (!(nums["fps-max"]! > 0 && nums["ae-compression"]! > 0)) {
    return fail("--fps-max and --ae-compression must be positive");
  }
  let config: BucketConfig;
  try {
    config = await loadBucketConfig(values.buckets!);
    if (values.resolution) config = withResolution(config, values.resolution);
    new Buckets(config, { spatialCompression: nums["ae-compression"], fpsMax: nums["fps-max"] });
  } catch (e) {
    return fail((e as Error).message);
  }
  let ds;
  try {
    ds = await openDataset(csv, {
      buckets: config,
      spatialCompression: nums["ae-compression"],
      seed: nums.seed,
      fpsMax: nums["fps-max"],
      reportEpoch: nums.epoch,
      verify: true,
      countFrames: values["count-frames"] ?? false,
      allowEmpty: true,
      log: () => {},
    });
  } catch (e) {
    if (e instanceof DatasetCsvError) {
      console.error(`dataset:check: ${e.message}`);
      return 1;
    }
    throw e;
  }
  const r = ds.report;
  if (values.json) {
    console.log(JSON.stringify(r, null, 2));
    return r.used > 0 ? 0 : 1;
  }
  const res = ds.buckets.resolutions.join(", ");
  console.log(
    `${r.csvPath}: ${r.records} rows; buckets ${values.buckets} at ${res} ` +
      `(${ds.buckets.numBuckets} buckets), seed ${ds.seed}, epoch ${r.epoch}`,
  );
  console.log(`columns: ${r.columns.join(", ")}`);
  if (r.unknownColumns.length) {
    console.log(`ignored unknown columns: ${r.unknownColumns.join(", ")}`);
  }
  for (const s of r.rows) console.log(statusLine(s));
  for (const w of r.warnings) console.log(`warning: ${w}`);
  console.log("");
  console.log(`summary: ${r.used} used, ${r.records - r.used} skipped of ${r.records}`);
  for (const reason of SKIP_REASONS) {
    const n = r.counts[reason];
    if (n) console.log(`  ${reason.padEnd(13)} ${n}`);
  }
  if (r.buckets.length) {
    console.log(`buckets (epoch ${r.epoch}):`);
    for (const c of r.buckets) {
      const b = c.bucket;
      const dropped = c.samples - c.batches * b.batchSize;
      console.log(
        `  ${b.resolution} ${b.frames}f ${b.ratio} (${b.height}x${b.width}): ${c.samples} samples, ` +
          `batch size ${b.batchSize} -> ${c.batches} batches` +
          (dropped > 0 ? ` (${dropped} dropped: incomplete batch)` : ""),
      );
    }
    console.log(`batches per epoch: ${r.batches}`);
    if (r.batches === 0) {
      console.log("note: no bucket holds a full batch (drop_last): training would form no batch");
    }
  }
  if (r.used === 0) console.log("no usable row: training would have no data");
  return r.used > 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
