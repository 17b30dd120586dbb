/**
 * `deno task train-ae`: trains Kino's own Video DC-AE on a dataset CSV with a pixel
 * reconstruction loss (MSE, optional L1), with checkpoints that resume exactly, metrics files,
 * a progress bar, and an inference export (`train/ae_trainer.ts`).
 */
import { parseArgs } from "node:util";
import { numberFlag, UsageError } from "./_args.ts";
import { join } from "node:path";
import { init } from "../engine/runtime.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import {
  type DcAeConfig,
  dcAePreset,
  fromReferenceConfig,
  validateConfig,
} from "../models/dc_ae/config.ts";
import { hasFfmpeg } from "../io/video.ts";
import { resolveResume } from "../train/checkpoint.ts";
import { DatasetCsvError } from "../train/data/csv.ts";
import { DatasetError } from "../train/data/dataset.ts";
import { type Cursor, cursorFromJSON } from "../train/data/batches.ts";
import {
  aeCheckpointConfig,
  aeCheckpointSeed,
  AeMetricsWriter,
  AeTrainer,
  type ExportDType,
  openAeDataset,
  reconstructionProblem,
} from "../train/ae_trainer.ts";
import { ProgressBar } from "./_progress.ts";

const HELP = `Usage: deno task train-ae --csv DATA.csv --output-dir OUT [options]

Trains a Video DC-AE (deep-compression autoencoder) to reconstruct the clips of a dataset CSV
(columns path,text[,num_frames,height,width,fps]; text is ignored). Every clip is resized to fill
SIZE x SIZE, centre-cropped, and a random run of FRAMES frames is taken. The loss is the pixel
MSE (+ L1 when --l1 > 0); the reference's perceptual and adversarial losses are not used.
Optimizer: AdamW, betas (0.9, 0.98), eps 1e-8, no weight decay, grad-norm clip 1.0.

Data and model:
  --csv FILE             dataset CSV (rows that cannot be used are skipped with a reason)
  --output-dir DIR       run folder: checkpoints/, metrics.jsonl, metrics.csv, train_ae.json
  --preset NAME          model preset: small (default), tiny or f32t4c128
  --config FILE          model config JSON instead of a preset (a Kino DcAeConfig, a reference
                         DCAEConfig, or a fixture case.json with a "config" object)
  --init FILE            start from these weights (.safetensors) instead of a random init
  --frames N             frames per clip (default 8; 1 or a multiple of the temporal factor
                         with at least 2 latent frames: 8, 12, 16, ... for small)
  --size PX              clip side in pixels (default 64; a multiple of the spatial factor)
  --crop-frames N        train on a random run of N of the clip's frames per step (default all)
  --crop-size PX         train on a random PX x PX window per step (default the whole frame)
  --preload              decode every clip once into memory (no ffmpeg per step; f32, about
                         clips x frames x 3 x size² x 4 bytes: 1.6 GB for 2000 16-frame 64 px clips)
  --batch-size N         clips per step (default 4)

Training:
  --max-steps N          train until N steps in total, counting resumed ones (default 1000)
  --lr X                 learning rate (default 5e-5)
  --l1 X                 weight of an L1 term added to the MSE (default 0)
  --fg-weight X          extra weight of foreground pixels in the loss (default 0): pixels whose
                         colour is far from their frame's mean colour weigh 1 + X
  --seed N               seed of the initialisation, clip order and crops (default 42; when
                         resuming, the checkpoint's)
  --resume SPEC          "latest" (newest checkpoint of --output-dir; a fresh start when there
                         is none) or a checkpoint folder; the model config comes from the
                         checkpoint unless --preset/--config is given
  --ckpt-every N         save a checkpoint every N steps (default 500; always at the end)
  --keep-last K          keep only the newest K checkpoints (default 3)
  --log-every N          print a progress line every N steps when not on a terminal (default 10)
  --export FILE          inference weights at the end (default OUT/dc_ae.safetensors)
  --export-dtype T       f32 (default, exact), f16 or bf16
  --quiet                no progress bar
  -h, --help             this text

Ctrl-C saves a checkpoint (and the export) after the current step and exits with status 130;
resume with --resume latest. Exit status: 0 done, 1 error, 2 bad command line.`;

function int(name: string, v: string | undefined, min: number, dflt: number): number {
  return numberFlag(name, v, { integer: true, min }) ?? dflt;
}

function num(name: string, v: string | undefined, min: number, dflt: number, strict = false) {
  return numberFlag(name, v, strict ? { above: min } : { min }) ?? dflt;
}

/** A model config from a JSON file: Kino's own, a reference `DCAEConfig`, or a case.json. */
async function configFromFile(path: string): Promise<DcAeConfig> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new UsageError(`--config ${path}: ${(e as Error).message}`);
  }
  const enc = json.encoder as Record<string, unknown> | undefined;
  if (enc && Array.isArray(enc.widths)) return validateConfig(json as unknown as DcAeConfig);
  if (json.config && typeof json.config === "object") {
    return fromReferenceConfig(json.config as Record<string, unknown>, path);
  }
  if (enc && Array.isArray(enc.width_list)) return fromReferenceConfig(json, path);
  throw new UsageError(
    `--config ${path}: not a DC-AE config (expected encoder.widths, encoder.width_list or a ` +
      `"config" object)`,
  );
}

const enc = new TextEncoder();
const err = (s: string) => Deno.stderr.writeSync(enc.encode(s + "\n"));

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        csv: { type: "string" },
        "output-dir": { type: "string" },
        preset: { type: "string" },
        config: { type: "string" },
        init: { type: "string" },
        frames: { type: "string" },
        size: { type: "string" },
        "crop-frames": { type: "string" },
        "crop-size": { type: "string" },
        preload: { type: "boolean" },
        "fg-weight": { type: "string" },
        "batch-size": { type: "string" },
        "max-steps": { type: "string" },
        lr: { type: "string" },
        l1: { type: "string" },
        seed: { type: "string" },
        resume: { type: "string" },
        "ckpt-every": { type: "string" },
        "keep-last": { type: "string" },
        "log-every": { type: "string" },
        export: { type: "string" },
        "export-dtype": { type: "string" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    err(`train-ae: ${(e as Error).message}\nRun with --help for the options.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let a;
  try {
    for (const k of ["csv", "output-dir"] as const) {
      if (!values[k]) throw new UsageError(`--${k} is required`);
    }
    if (values.preset && values.config) {
      throw new UsageError(`give --preset or --config, not both`);
    }
    const exportDtype = (values["export-dtype"] ?? "f32") as ExportDType;
    if (!["f32", "f16", "bf16"].includes(exportDtype)) {
      throw new UsageError(`--export-dtype must be f32, f16 or bf16, got '${exportDtype}'`);
    }
    const out = values["output-dir"]!;
    a = {
      csv: values.csv!,
      out,
      frames: int("frames", values.frames, 1, 8),
      size: int("size", values.size, 1, 64),
      cropFrames: values["crop-frames"] === undefined
        ? undefined
        : int("crop-frames", values["crop-frames"], 1, 0),
      cropSize: values["crop-size"] === undefined
        ? undefined
        : int("crop-size", values["crop-size"], 1, 0),
      batchSize: int("batch-size", values["batch-size"], 1, 4),
      maxSteps: int("max-steps", values["max-steps"], 1, 1000),
      lr: num("lr", values.lr, 0, 5e-5, true),
      l1: num("l1", values.l1, 0, 0),
      fgWeight: num("fg-weight", values["fg-weight"], 0, 0),
      seed: int("seed", values.seed, 0, 42),
      ckptEvery: int("ckpt-every", values["ckpt-every"], 1, 500),
      keepLast: int("keep-last", values["keep-last"], 1, 3),
      logEvery: int("log-every", values["log-every"], 1, 10),
      exportPath: values.export ?? join(out, "dc_ae.safetensors"),
      exportDtype,
    };
    if (a.cropFrames !== undefined && a.cropFrames > a.frames) {
      throw new UsageError(`--crop-frames ${a.cropFrames} is more than --frames ${a.frames}`);
    }
    if (a.cropSize !== undefined && a.cropSize > a.size) {
      throw new UsageError(`--crop-size ${a.cropSize} is more than --size ${a.size}`);
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`train-ae: ${e.message}\nRun with --help for the options.`);
    return 2;
  }

  // ---- model configuration (checked before any slow work)
  const resumeDir = values.resume ? await resolveResume(values.resume, a.out) : null;
  if (resumeDir) {
    // the data order and crops continue only with the checkpoint's seed: take it when --seed is
    // not given, refuse a different one before any slow work (preloading can take minutes)
    const saved = await aeCheckpointSeed(resumeDir);
    if (saved !== null && values.seed === undefined) a.seed = saved;
    else if (saved !== null && saved !== a.seed) {
      err(
        `train-ae: ${resumeDir} was trained with --seed ${saved}, not ${a.seed}; resume with ` +
          `--seed ${saved} (or leave --seed out)`,
      );
      return 2;
    }
  }
  let config: DcAeConfig;
  try {
    if (values.config) config = await configFromFile(values.config);
    else if (values.preset) config = dcAePreset(values.preset);
    else if (resumeDir) {
      const c = await aeCheckpointConfig(resumeDir);
      if (!c) {
        err(`train-ae: ${resumeDir} is not a train-ae checkpoint (no DC-AE training state)`);
        return 1;
      }
      config = c;
    } else config = dcAePreset("small");
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError || e instanceof TypeError) {
      err(`train-ae: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const ae = new DcAe(config);
  const shapeProblem = reconstructionProblem(ae, a.frames, a.size, a.size) ??
    reconstructionProblem(
      ae,
      a.cropFrames ?? a.frames,
      a.cropSize ?? a.size,
      a.cropSize ?? a.size,
    );
  if (shapeProblem) {
    err(`train-ae: ${shapeProblem}; change --frames/--size/--crop-frames/--crop-size`);
    return 2;
  }
  if (!(await hasFfmpeg())) {
    err(
      "train-ae: ffmpeg/ffprobe are needed to decode the clips (Debian/Ubuntu: apt-get install " +
        "-y ffmpeg; macOS: brew install ffmpeg; or set KINO_FFMPEG)",
    );
    return 1;
  }

  // ---- data
  let ds;
  try {
    ds = await openAeDataset(a.csv, {
      frames: a.frames,
      size: a.size,
      batchSize: a.batchSize,
      seed: a.seed,
      log: (m) => err(`train-ae: ${m}`),
    });
    if (values.preload) {
      const t0 = performance.now();
      await ds.preload();
      err(
        `train-ae: preloaded clips into memory in ${
          ((performance.now() - t0) / 1000).toFixed(0)
        } s`,
      );
    }
  } catch (e) {
    if (e instanceof DatasetCsvError || e instanceof DatasetError) {
      err(`train-ae: ${e.message}`);
      return 1;
    }
    throw e;
  }
  const skipped = ds.report.rows.filter((r) => !r.used);
  for (const r of skipped.slice(0, 20)) {
    err(
      `train-ae: skipping line ${r.line}${r.path ? ` (${r.path})` : ""}: ${r.reason}: ${r.detail}`,
    );
  }
  if (skipped.length > 20) err(`train-ae: ... and ${skipped.length - 20} more skipped rows`);
  if (ds.batchesPerEpoch === 0) {
    err(
      `train-ae: ${ds.rows.length} usable clip(s) in ${a.csv}, fewer than --batch-size ` +
        `${a.batchSize}; add clips or lower the batch size`,
    );
    return 1;
  }

  // ---- engine, weights, trainer
  const rt = await init();
  if (values.init) await ae.params.load(values.init);
  else ae.params.initialize(a.seed);
  const crop = a.cropFrames !== undefined || a.cropSize !== undefined
    ? {
      ...(a.cropFrames !== undefined ? { frames: a.cropFrames } : {}),
      ...(a.cropSize !== undefined ? { size: a.cropSize } : {}),
    }
    : null;
  const trainer = new AeTrainer(ae, {
    lr: a.lr,
    l1: a.l1,
    fgWeight: a.fgWeight,
    crop,
    seed: a.seed,
  });
  let cursor: Cursor | null = null;
  if (resumeDir) {
    const info = await trainer.resume(resumeDir);
    cursor = info?.dataCursor ? cursorFromJSON(info.dataCursor) : null;
    console.log(`resumed from ${resumeDir} at step ${trainer.steps}`);
    for (const d of info?.differences ?? []) {
      console.log(`  option changed since the checkpoint (resume is not exact): ${d}`);
    }
  } else if (values.resume) {
    console.log(`no checkpoint in ${a.out}: starting from scratch`);
  }
  const metrics = await AeMetricsWriter.open(a.out, { resumeStep: trainer.steps });
  await Deno.writeTextFile(
    join(a.out, "train_ae.json"),
    JSON.stringify(
      { args: a, options: trainer.options, config, device: rt.info.name },
      null,
      2,
    ) + "\n",
  );
  console.log(
    `DC-AE ${config.name}: ${ae.params.count().toLocaleString()} parameters; ${ds.rows.length} ` +
      `clips (${skipped.length} skipped), ${ds.batchesPerEpoch} batch(es) of ${a.batchSize} x ` +
      `${a.frames} x ${a.size}x${a.size} per epoch; on ${rt.info.name}`,
  );

  // ---- loop
  let stop = false;
  const onInt = () => {
    if (stop) {
      err("\ntrain-ae: interrupted again: exiting without saving");
      Deno.exit(130);
    }
    stop = true;
    err("\ntrain-ae: interrupt: saving after this step (Ctrl-C again to quit without saving)");
  };
  Deno.addSignalListener("SIGINT", onInt);
  const start = trainer.steps;
  const bar = new ProgressBar("train-ae", Math.max(0, a.maxSteps - start), {
    quiet: values.quiet,
    logEvery: a.logEvery,
  });
  let savedAt = -1;
  let lastDir = resumeDir;
  const save = async () => {
    lastDir = await trainer.save(a.out, { dataCursor: cursor, keepLast: a.keepLast });
    savedAt = trainer.steps;
  };
  try {
    if (trainer.steps < a.maxSteps && !stop) {
      for await (const b of ds.batches(cursor, { prefetch: true })) {
        const r = await trainer.step(b);
        cursor = b.cursor;
        await metrics.write(r);
        bar.tick(
          1,
          `step ${r.step} loss ${r.loss.toPrecision(4)} PSNR ${r.psnr.toFixed(2)} dB`,
        );
        if (trainer.steps % a.ckptEvery === 0) await save();
        if (stop || trainer.steps >= a.maxSteps) break;
      }
    }
  } finally {
    bar.finish();
  }
  // the final state, unless this process took no step or just saved it
  if (trainer.steps > start && savedAt !== trainer.steps) await save();
  console.log(`checkpoint (step ${trainer.steps}): ${lastDir}`);
  await trainer.exportWeights(a.exportPath, a.exportDtype);
  console.log(`exported ${a.exportDtype} weights (step ${trainer.steps}) to ${a.exportPath}`);
  Deno.removeSignalListener("SIGINT", onInt);
  trainer.dispose();
  if (stop) {
    console.log(`interrupted at step ${trainer.steps}; continue with --resume latest`);
    return 130;
  }
  return 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  err(`train-ae: ${Deno.env.get("KINO_DEBUG") ? (e as Error).stack : (e as Error).message}`);
  Deno.exit(1);
}
