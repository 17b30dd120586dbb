/**
 * `deno task cache`: encodes every usable clip of a training CSV once with a bundle's frozen
 * DC-AE and text encoders into a latent cache folder (`train/cache.ts`), for
 * `deno task train --cache`. Exit code 0 when done, 1 when nothing could be cached or the folder
 * holds a cache of other settings, 2 for bad arguments.
 */
import { parseArgs } from "node:util";
import { numberFlag, UsageError } from "./_args.ts";
import { init } from "../engine/runtime.ts";
import { buildCache, type CacheDType, CacheError } from "../train/cache.ts";
import { DatasetCsvError, DatasetError } from "../train/data/mod.ts";
import { BundleError } from "../models/pipeline.ts";
import { ProgressBar } from "./_progress.ts";

const HELP = `Usage: deno task cache --csv DATA.csv --ckpt-dir BUNDLE --out CACHE [options]

Encodes each usable clip of a training CSV once with the bundle's frozen models, as the training
step would: the whole clip through the DC-AE encoder (untiled), its first frame alone (the i2v
reference latent), and its caption (with the " {fps} FPS, {motion} motion score." suffix) through
T5 and CLIP; also T5("") and CLIP("") for text dropout. Writes CACHE/latents/NNNNNN.safetensors
(latent [C,T',h,w], ref [C,1,h,w], txt [Lt,d], y_vec [d]), CACHE/null.safetensors and
CACHE/cache.json. Resumable: run it again to finish an interrupted cache.

Note: each clip is cached with one temporal crop and bucket (the draws of epoch 0), while
training from the CSV draws a new crop every epoch.

  --csv FILE            dataset CSV (path,text[,num_frames,height,width,fps,...])
  --ckpt-dir DIR        bundle with the DC-AE and text encoders (kino.json or release layout)
  --out DIR             cache folder
  --buckets NAME|FILE   bucket config: preset (hcae, default) or a .json file
  --resolution RES      move the bucket config to this resolution, e.g. 256px
  --dtype f16|f32       storage of the cached tensors (default f16)
  --encoder-dtype T     weight storage of the frozen encoders: bf16 (default), f16 or f32
  --seed N              seed of bucket assignment and temporal crop (default 42)
  --limit N             cache at most N clips (the first usable rows)
  --quiet               no progress bar
  -h, --help            this text`;

/** Runs the command; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        csv: { type: "string" },
        "ckpt-dir": { type: "string" },
        out: { type: "string" },
        buckets: { type: "string" },
        resolution: { type: "string" },
        dtype: { type: "string", default: "f16" },
        "encoder-dtype": { type: "string", default: "bf16" },
        seed: { type: "string" },
        limit: { type: "string" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`cache: ${(e as Error).message}\nRun \`deno task cache --help\` for the flags.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  try {
    for (const k of ["csv", "ckpt-dir", "out"] as const) {
      if (!values[k]) throw new UsageError(`--${k} is required (see --help)`);
    }
    if (values.dtype !== "f16" && values.dtype !== "f32") {
      throw new UsageError(`--dtype must be f16 or f32, got "${values.dtype}"`);
    }
    const ed = values["encoder-dtype"]!;
    if (!["bf16", "f16", "f32"].includes(ed)) {
      throw new UsageError(`--encoder-dtype must be bf16, f16 or f32, got "${ed}"`);
    }
    const seed = numberFlag("seed", values.seed, { integer: true, min: 0 });
    const limit = numberFlag("limit", values.limit, { integer: true, min: 0 });
    await init();
    let bar: ProgressBar | null = null;
    const r = await buildCache({
      csv: values.csv!,
      ckptDir: values["ckpt-dir"]!,
      out: values.out!,
      buckets: values.buckets,
      resolution: values.resolution,
      dtype: values.dtype as CacheDType,
      encoderDtype: ed as "bf16" | "f16" | "f32",
      seed,
      limit,
      log: (m) => console.warn(m),
      onProgress: (e) => {
        if (!bar) {
          bar = new ProgressBar("cache", e.total, { quiet: values.quiet });
          return;
        }
        bar.tick(1, `encoded ${e.encoded} reused ${e.reused} skipped ${e.skipped}`);
      },
    });
    (bar as ProgressBar | null)?.finish();
    const shapes = new Map<string, number>();
    for (const e of r.index.entries) {
      const k = `${e.bucket} -> latent [${e.latentShape.join(", ")}]`;
      shapes.set(k, (shapes.get(k) ?? 0) + 1);
    }
    console.log(
      `cached ${r.index.entries.length} clips in ${values.out} (encoded ${r.encoded}, reused ` +
        `${r.reused}, skipped ${r.skipped.length} rows) in ${r.seconds.toFixed(1)} s`,
    );
    for (const [k, n] of shapes) console.log(`  ${k}: ${n} clips`);
    console.log(
      `  text: T5 [${r.index.text.t5Length}, ${r.index.text.t5Dim}], CLIP [${r.index.text.clipDim}]`,
    );
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`cache: ${e.message}`);
      return 2;
    }
    if (
      e instanceof CacheError || e instanceof DatasetError || e instanceof DatasetCsvError ||
      e instanceof BundleError
    ) {
      console.error(`cache: ${e.message}`);
      return 1;
    }
    console.error(
      `cache: ${Deno.env.get("KINO_DEBUG") ? (e as Error).stack : (e as Error).message}`,
    );
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
