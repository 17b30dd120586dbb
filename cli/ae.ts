/**
 * `deno task ae`: round-trips a video through the Video DC-AE (encode, decode), writes the
 * reconstruction and prints PSNR and timings, so users can judge the autoencoder themselves.
 */
import { parseArgs } from "node:util";
import { init, runtime } from "../engine/runtime.ts";
import { fromData } from "../engine/graph.ts";
import { read } from "../engine/ops/movement.ts";
import { noGrad, tidy } from "../engine/tensor.ts";
import { dcAePreset, fromReferenceConfig } from "../models/dc_ae/config.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import { framesToTensorData, readVideo, tensorDataToFrames, writeVideo } from "../io/video.ts";

const HELP = `Usage: deno task ae --input VIDEO --output FILE --ckpt WEIGHTS [options]

Encodes a video with the Video DC-AE and decodes it again; writes the reconstruction and prints
PSNR and timings.

  --input FILE        video or image to read (mp4, webm, gif, png, jpg; needs ffmpeg)
  --output FILE       reconstruction: .mp4 (ffmpeg), .gif, or a folder for PNG frames
  --ckpt FILE         DC-AE weights (.safetensors), e.g. F32T4C128_AE.safetensors
  --preset NAME       model preset (default f32t4c128; also tiny)
  --config FILE       build the model from a reference case.json "config" instead of a preset
  --size HxW          resize the input first (H and W must be multiples of 32)
  --max-frames N      read at most N frames (the count is cut to 1 or a multiple of 4)
  --dtype T           weight storage: bf16 (default, as released), f16 or f32; compute is f32
  --no-tiling         code the whole video at once (more memory)
  --tile-size PX      spatial tile size in pixels (default from the preset, 256)
  --tile-frames N     temporal tile size in frames (default from the preset, 32)
  -h, --help          this text`;

function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      input: { type: "string" },
      output: { type: "string" },
      ckpt: { type: "string" },
      preset: { type: "string", default: "f32t4c128" },
      config: { type: "string" },
      size: { type: "string" },
      "max-frames": { type: "string" },
      dtype: { type: "string", default: "bf16" },
      "no-tiling": { type: "boolean" },
      "tile-size": { type: "string" },
      "tile-frames": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  for (const k of ["input", "output", "ckpt"] as const) {
    if (!values[k]) {
      console.error(`ae: --${k} is required\n\n${HELP}`);
      return 2;
    }
  }
  const size = values.size?.split("x").map(Number) as [number, number] | undefined;
  if (size && (size.length !== 2 || size.some((d) => !(d > 0)))) {
    console.error(`ae: --size must look like 256x384, got ${values.size}`);
    return 2;
  }
  const config = values.config
    ? fromReferenceConfig(JSON.parse(await Deno.readTextFile(values.config)).config, "from config")
    : dcAePreset(values.preset!);
  const storage = values.dtype as "bf16" | "f16" | "f32";
  if (!["bf16", "f16", "f32"].includes(storage)) {
    console.error(`ae: --dtype must be bf16, f16 or f32, got ${values.dtype}`);
    return 2;
  }
  const rt = await init();
  const ae = new DcAe(config, { storage });
  console.log(
    `Video DC-AE ${config.name}: ${ae.params.count().toLocaleString()} parameters, ` +
      `${(ae.params.bytes() / 2 ** 20).toFixed(1)} MiB of weights in ${storage} on ${rt.info.name}`,
  );
  let t0 = performance.now();
  await ae.params.load(values.ckpt!);
  console.log(`weights loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s`);

  const maxFrames = values["max-frames"] ? Number(values["max-frames"]) : undefined;
  const v = await readVideo(values.input!, {
    ...(maxFrames ? { maxFrames } : {}),
    ...(size ? { size } : {}),
  });
  const tf = ae.temporalFactor;
  const t = v.t === 1 ? 1 : Math.floor(v.t / tf) * tf;
  if (t === 0) {
    console.error(
      `ae: ${values.input} has ${v.t} frames; the model needs 1 or a multiple of ${tf}`,
    );
    return 2;
  }
  const frames = v.frames.subarray(0, t * v.h * v.w * 3);
  const shape = [1, 3, t, v.h, v.w];
  ae.latentShape(shape); // throws a message naming the sizes that work
  console.log(`input: ${v.t} frames of ${v.h}x${v.w} at ${v.fps} fps; coding ${t} frames`);
  const tiled = values["no-tiling"] ? false : {
    ...(values["tile-size"] ? { spatialTileSize: Number(values["tile-size"]) } : {}),
    ...(values["tile-frames"] ? { temporalTileSize: Number(values["tile-frames"]) } : {}),
  };
  const x = fromData(framesToTensorData(frames, t, v.h, v.w), shape, "f32");
  rt.pool.resetPeak();
  t0 = performance.now();
  const latent = noGrad(() => tidy(() => ae.encode(x, { tiled })));
  await rt.sync();
  const encMs = performance.now() - t0;
  t0 = performance.now();
  const y = noGrad(() => tidy(() => ae.decode(latent, { tiled })));
  const out = await read(y);
  const decMs = performance.now() - t0;
  const recon = tensorDataToFrames(out, y.shape[2]!, y.shape[3]!, y.shape[4]!);
  const written = await writeVideo(values.output!, recon, {
    t: y.shape[2]!,
    h: y.shape[3]!,
    w: y.shape[4]!,
    fps: v.fps,
  });
  const peak = runtime().pool.stats().peakInUse;
  console.log(`latent: [${latent.shape.join(", ")}]`);
  console.log(
    `encode ${(encMs / 1000).toFixed(2)} s, decode ${
      (decMs / 1000).toFixed(2)
    } s, peak GPU memory ${(peak / 2 ** 20).toFixed(1)} MiB`,
  );
  console.log(`PSNR ${psnr(frames, recon.subarray(0, frames.length)).toFixed(2)} dB`);
  console.log(
    `wrote ${Array.isArray(written) ? written.length + " file(s), first " + written[0] : written}`,
  );
  for (const tns of [x, latent, y]) tns.dispose();
  ae.params.dispose();
  return 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  // a clear one-line message instead of a stack trace (KINO_DEBUG=1 shows the stack)
  console.error(`ae: ${Deno.env.get("KINO_DEBUG") ? (e as Error).stack : (e as Error).message}`);
  Deno.exit(1);
}
