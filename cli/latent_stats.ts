/**
 * `deno task latent-stats --ckpt-dir BUNDLE --csv data.csv [--count 64] [--write]`: encodes clips
 * of a dataset with the bundle's DC-AE (without any scaling) and prints the latents' mean and
 * standard deviation; `--write` stores the deviation as `dc_ae.scaling_factor` in the bundle's
 * kino.json, so that the diffusion model sees unit-variance latents (encode divides by it,
 * decode multiplies). `--reconstruct` also decodes every clip and reports the reconstruction
 * PSNR and, for captions of the synthetic grammar, how often the pixel evaluator reads the
 * caption's colour, shape and direction back from the reconstruction (the autoencoder's ceiling
 * for the generator's evaluation).
 */
import { parseArgs } from "node:util";
import { dirname, isAbsolute, join } from "node:path";
import { parse } from "npm:csv-parse@5.6.0/sync";
import { init } from "../engine/runtime.ts";
import { fromData } from "../engine/graph.ts";
import { read } from "../engine/ops/movement.ts";
import { noGrad, tidy } from "../engine/tensor.ts";
import { framesToTensorData, readVideo, tensorDataToFrames } from "../io/video.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import { inspectBundle } from "../models/pipeline.ts";
import { parsePrompt } from "../train/synthetic/captions.ts";
import { analyzeVideo, EVALUATED } from "../train/synthetic/eval.ts";

const HELP = `Usage: deno task latent-stats --ckpt-dir BUNDLE --csv DATA.csv [--count N] [--write]

  --ckpt-dir DIR   bundle whose DC-AE encodes (kino.json)
  --csv FILE       dataset CSV (path column; clips must have the model's frame size)
  --count N        clips to encode (default 64, the first N rows)
  --frames N       frames per clip (default 16)
  --write          store the standard deviation as dc_ae.scaling_factor in kino.json
  --reconstruct    also decode each clip: reconstruction PSNR and, for synthetic-grammar
                   captions, the share whose colour/shape/direction the evaluator reads back
  -h, --help       this text`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        "ckpt-dir": { type: "string" },
        csv: { type: "string" },
        count: { type: "string", default: "64" },
        frames: { type: "string", default: "16" },
        write: { type: "boolean" },
        reconstruct: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`latent-stats: ${(e as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help || !values["ckpt-dir"] || !values.csv) {
    console.log(HELP);
    return values.help ? 0 : 2;
  }
  const info = await inspectBundle(values["ckpt-dir"]);
  info.ae.scalingFactor = null;
  await init();
  const ae = new DcAe(info.ae);
  await ae.params.load(join(info.dir, info.manifest.dc_ae.weights));
  const rows = parse(await Deno.readTextFile(values.csv), { columns: true }) as {
    path: string;
    text?: string;
  }[];
  const n = Math.min(Number(values.count), rows.length);
  const T = Number(values.frames);
  let s = 0, s2 = 0, count = 0;
  let psnrSum = 0, judged = 0;
  const hits: Record<string, number> = { colour: 0, shape: 0, direction: 0 };
  for (let i = 0; i < n; i++) {
    const p = rows[i]!.path;
    const path = isAbsolute(p) ? p : join(dirname(values.csv), p);
    const v = await readVideo(path, { maxFrames: T });
    const x = fromData(framesToTensorData(v.frames, v.t, v.h, v.w), [1, 3, v.t, v.h, v.w], "f32");
    const z = noGrad(() => tidy(() => ae.encode(x, { tiled: false })));
    const d = await read(z);
    if (values.reconstruct) {
      const y = noGrad(() => tidy(() => ae.decode(z, { tiled: false })));
      const frames = tensorDataToFrames(await read(y), v.t, v.h, v.w);
      y.dispose();
      let se = 0;
      for (let k = 0; k < frames.length; k++) se += (frames[k]! - v.frames[k]!) ** 2;
      psnrSum += 10 * Math.log10((255 * 255) / Math.max(se / frames.length, 1e-10));
      const want = rows[i]!.text ? parsePrompt(rows[i]!.text!) : null;
      if (want) {
        const got = analyzeVideo(frames, v.w, v.h);
        judged++;
        for (const k of EVALUATED) if (got[k] === want[k]) hits[k]!++;
      }
    }
    x.dispose();
    z.dispose();
    for (const a of d) {
      s += a;
      s2 += a * a;
    }
    count += d.length;
  }
  const mean = s / count;
  const std = Math.sqrt(Math.max(0, s2 / count - mean * mean));
  console.log(`${n} clips, ${count} latent values: mean ${mean.toFixed(4)}, std ${std.toFixed(4)}`);
  if (values.reconstruct) {
    console.log(`reconstruction: mean PSNR ${(psnrSum / n).toFixed(2)} dB over ${n} clips`);
    if (judged > 0) {
      const pct = (k: string) => `${k} ${(100 * hits[k]! / judged).toFixed(1)}%`;
      console.log(
        `evaluator on the reconstructions (${judged} clips): ${EVALUATED.map(pct).join(", ")}`,
      );
    }
  }
  if (values.write) {
    const mf = join(info.dir, "kino.json");
    const m = JSON.parse(await Deno.readTextFile(mf));
    m.dc_ae.scaling_factor = Number(std.toPrecision(4));
    await Deno.writeTextFile(`${mf}.tmp`, JSON.stringify(m, null, 2) + "\n");
    await Deno.rename(`${mf}.tmp`, mf);
    console.log(`wrote dc_ae.scaling_factor = ${m.dc_ae.scaling_factor} to ${mf}`);
  }
  ae.params.dispose();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
