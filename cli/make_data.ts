/**
 * `deno task make-data`: writes Kino's synthetic captioned-video dataset of simple moving
 * shapes (mp4 clips, train.csv, heldout.csv, meta.json) for `deno task train`.
 */
import { parseArgs } from "node:util";
import { numberFlag, UsageError } from "./_args.ts";
import { writeDataset } from "../train/synthetic/dataset.ts";
import { hasFfmpeg } from "../io/video.ts";
import { MAX_OBJECT_SCALE, type Motion, MOTIONS } from "../train/synthetic/scene.ts";

const HELP = `Usage: deno task make-data [options]

Writes a synthetic text-to-video dataset: short clips of a circle, square or triangle in one of
five colours moving left, right, up or down over a dark, gray or textured background, each with
a caption from a small grammar ("a small red circle moving to the left on a gray background").
Some colour x shape x direction combinations are held out of training for evaluation.

Output (in --out):
  videos/NNNNN.mp4    the clips (H.264 via ffmpeg)
  train.csv           path,text,num_frames,height,width,aspect_ratio,resolution,fps
                      (paths relative to the CSV's folder)
  heldout.csv         name,text,colour,shape,direction: prompts of held-out combinations
  meta.json           generator settings, attribute lists, palette, held-out combinations
  buckets.json        bucket config keeping every clip whole (deno task cache --buckets)

Options:
  --out DIR           output folder (default data/synthetic)
  --count N           number of training clips (default 2000)
  --size PX           frame side in pixels (default 64; at least 16)
  --frames N          frames per clip (default 16)
  --fps N             frame rate (default 8)
  --seed N            random seed (default 0); the same seed writes the same dataset
  --holdout N         held-out colour x shape x direction combinations (default 12, of 60)
  --motion M          drift: start anywhere, 1.5-3 px/frame (default); cross: edge to edge
                      through the middle of the frame, so the caption fixes the layout
  --caption-variants N
                      extra train.csv rows per clip (default 0), each the same video with a
                      caption that leaves out the colour or the direction ("a square moving
                      left", "a red square"), after all the full captions
  --object-scale X    multiply every size class's half-extent (small 0.13, medium 0.165,
                      large 0.2 of the side) by X (default 1, at most 1.8); larger shapes
                      span more latent tokens
  --crf N             x264 quality, lower is better (default 12)
  --jobs N            clips encoded in parallel (default 4)
  -h, --help          this text`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        out: { type: "string", default: "data/synthetic" },
        count: { type: "string" },
        size: { type: "string" },
        frames: { type: "string" },
        fps: { type: "string" },
        seed: { type: "string" },
        holdout: { type: "string" },
        crf: { type: "string" },
        jobs: { type: "string" },
        motion: { type: "string" },
        "caption-variants": { type: "string" },
        "object-scale": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    console.error(`make-data: ${(e as Error).message}\nRun with --help for the options.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let opts;
  try {
    const fps = numberFlag("fps", values.fps, { above: 0 });
    const motion = values.motion ?? "drift";
    if (!(MOTIONS as readonly string[]).includes(motion)) {
      throw new UsageError(`--motion must be ${MOTIONS.join(" or ")}, got "${motion}"`);
    }
    opts = {
      motion: motion as Motion,
      count: numberFlag("count", values.count, { integer: true, min: 1 }),
      size: numberFlag("size", values.size, { integer: true, min: 16 }),
      frames: numberFlag("frames", values.frames, { integer: true, min: 2 }),
      fps,
      seed: numberFlag("seed", values.seed, { integer: true, min: 0 }),
      holdout: numberFlag("holdout", values.holdout, { integer: true, min: 0 }),
      crf: numberFlag("crf", values.crf, { integer: true, min: 0 }),
      concurrency: numberFlag("jobs", values.jobs, { integer: true, min: 1 }),
      captionVariants: numberFlag("caption-variants", values["caption-variants"], {
        integer: true,
        min: 0,
      }),
      objectScale: numberFlag("object-scale", values["object-scale"], {
        above: 0,
        max: MAX_OBJECT_SCALE,
      }),
    };
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`make-data: ${e.message}`);
    return 2;
  }
  if (!(await hasFfmpeg())) {
    console.error(
      "make-data: ffmpeg is needed to write the mp4 clips (Debian/Ubuntu: apt-get install -y " +
        "ffmpeg; macOS: brew install ffmpeg; or set KINO_FFMPEG)",
    );
    return 1;
  }
  const out = values.out!;
  const t0 = performance.now();
  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  let last = 0;
  const summary = await writeDataset(out, {
    ...opts,
    onProgress: (done, total) => {
      const now = performance.now();
      if (done !== total && now - last < (tty ? 200 : 5000)) return;
      last = now;
      const rate = done / ((now - t0) / 1000);
      const line = `make-data: ${done}/${total} clips, ${rate.toFixed(1)} clips/s`;
      Deno.stderr.writeSync(enc.encode(tty ? `\r${line}` : `${line}\n`));
    },
  });
  if (tty) Deno.stderr.writeSync(enc.encode("\n"));
  console.log(
    `wrote ${summary.clips} clips, ${summary.trainCsv}, ${summary.heldoutCsv} ` +
      `(${summary.heldoutPrompts} prompts of ${summary.heldout.length} held-out combinations) ` +
      `and ${summary.metaJson} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  console.error(
    `make-data: ${Deno.env.get("KINO_DEBUG") ? (e as Error).stack : (e as Error).message}`,
  );
  Deno.exit(1);
}
