/**
 * `deno task eval-default`: generates a video for every held-out prompt of the default model (or
 * any bundle trained on the synthetic shapes) and measures from the pixels whether colour, shape
 * and motion direction match the prompt; prints per-attribute accuracy against the acceptance
 * thresholds (colour 80%, direction 70%, shape 60%, at least 20 prompts).
 */
import { parseArgs } from "node:util";
import { numberFlag } from "./_args.ts";
import { join } from "node:path";
import { init } from "../engine/runtime.ts";
import { writeVideo } from "../io/video.ts";
import { generate, loadBundle } from "../models/pipeline.ts";
import { readHeldoutPrompts } from "../train/synthetic/dataset.ts";
import { evaluateVideos, formatReport } from "../train/synthetic/eval.ts";
import { ProgressBar } from "./_progress.ts";
import { DEFAULT_MODEL_DIR } from "./infer.ts";

const HELP = `Usage: deno task eval-default [options]

Generates one video per held-out prompt and scores colour, shape and direction from the pixels.

  --ckpt-dir DIR     bundle to evaluate (default: the shipped default model, weights/default)
  --prompts FILE     held-out prompts CSV (name,text,colour,shape,direction);
                     default: <ckpt-dir>/heldout.csv
  --limit N          evaluate the first N prompts only
  --steps N          sampling steps (default: the bundle's)
  --guidance G       text guidance scale (default: the bundle's)
  --shift ALPHA      fixed timestep shift of the schedule (default: the bundle's)
  --seed N           seed of the first prompt; prompt k uses seed + k (default 1000)
  --save-dir DIR     also write every video (mp4) there
  --json FILE        write the report as JSON
  --check            exit 1 when an accuracy is below its threshold
  -h, --help         this text`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        "ckpt-dir": { type: "string" },
        prompts: { type: "string" },
        limit: { type: "string" },
        steps: { type: "string" },
        guidance: { type: "string" },
        shift: { type: "string" },
        seed: { type: "string", default: "1000" },
        "save-dir": { type: "string" },
        json: { type: "string" },
        check: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`eval-default: ${(e as Error).message}\nRun with --help for the flags.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let limit, steps, guidance, shift, seed: number;
  try {
    limit = numberFlag("limit", values.limit, { integer: true, min: 1 });
    steps = numberFlag("steps", values.steps, { integer: true, min: 1 });
    guidance = numberFlag("guidance", values.guidance, { min: 0 });
    shift = numberFlag("shift", values.shift, { above: 0 });
    seed = numberFlag("seed", values.seed, { integer: true, min: 0 })!;
  } catch (e) {
    console.error(`eval-default: ${(e as Error).message}`);
    return 2;
  }
  const dir = values["ckpt-dir"] ?? DEFAULT_MODEL_DIR;
  const promptsFile = values.prompts ?? join(dir, "heldout.csv");
  let prompts;
  try {
    prompts = await readHeldoutPrompts(promptsFile);
  } catch (e) {
    console.error(
      `eval-default: cannot read the held-out prompts ${promptsFile}: ${(e as Error).message}`,
    );
    return 1;
  }
  if (limit) prompts = prompts.slice(0, limit);
  const t0 = performance.now();
  await init();
  const bundle = await loadBundle(dir, { dtype: "f32" });
  const bar = new ProgressBar("eval", prompts.length);
  const samples = [];
  for (const [k, p] of prompts.entries()) {
    const [v] = await generate(bundle, {
      prompt: p.text,
      seed: seed + k,
      ...(steps ? { steps } : {}),
      ...(guidance !== undefined ? { guidance } : {}),
      ...(shift !== undefined ? { flowShift: shift } : {}),
    });
    samples.push({ prompt: p.text, frames: v!.frames, width: v!.width, height: v!.height });
    if (values["save-dir"]) {
      await Deno.mkdir(values["save-dir"], { recursive: true });
      await writeVideo(join(values["save-dir"], `${p.name}.mp4`), v!.frames, {
        t: v!.t,
        h: v!.height,
        w: v!.width,
        fps: v!.fps,
      });
    }
    bar.tick(1, p.text);
  }
  bar.finish();
  bundle.dispose();
  const report = evaluateVideos(samples);
  console.log(formatReport(report));
  console.log(
    `${prompts.length} held-out prompts in ${((performance.now() - t0) / 1000).toFixed(0)} s ` +
      `(${dir})`,
  );
  if (values.json) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify({ score: report.score, acceptance: report.acceptance }, null, 2) + "\n",
    );
  }
  return values.check && !report.acceptance.passed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
