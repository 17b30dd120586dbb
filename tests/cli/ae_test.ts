/** `deno task ae`: a round trip through the tiny DC-AE writes a video and reports PSNR. */
import { runCli } from "../_cli.ts";
import { fixtureTest } from "../_gpu.ts";
import { hasFfmpeg, writeVideo } from "../../io/video.ts";

const ae = (args: string[]) => runCli("ae.ts", args);

fixtureTest("deno task ae round-trips a video through the tiny DC-AE", async (fx) => {
  if (!(await hasFfmpeg())) {
    throw new Error("ffmpeg is required for this test (apt-get install -y ffmpeg)");
  }
  const dir = await Deno.makeTempDir();
  try {
    // 9 frames of a moving gradient, 64x96 (the tool codes 8: a multiple of 4)
    const [t, h, w] = [9, 64, 96];
    const frames = new Uint8Array(t * h * w * 3);
    for (let f = 0; f < t; f++) {
      for (let i = 0; i < h * w; i++) {
        const x = i % w;
        frames.set([(x * 2 + f * 10) & 255, (i / w) * 3 & 255, 128], (f * h * w + i) * 3);
      }
    }
    await writeVideo(`${dir}/in.mp4`, frames, { t, h, w, fps: 8 });
    const caseDir = `${fx}tiny/dc_ae_tiny`;
    const common = ["--input", `${dir}/in.mp4`, "--config", `${caseDir}/case.json`];
    const ok = await ae([
      ...common,
      "--output",
      `${dir}/out.gif`,
      "--ckpt",
      `${caseDir}/weights.safetensors`,
    ]);
    if (ok.code !== 0) throw new Error(`ae exited ${ok.code}:\n${ok.out}`);
    for (const want of [/coding 8 frames/, /latent: \[1, 16, 2, 2, 3\]/, /PSNR -?\d+\.\d+ dB/]) {
      if (!want.test(ok.out)) throw new Error(`output lacks ${want}:\n${ok.out}`);
    }
    const gif = await Deno.readFile(`${dir}/out.gif`);
    if (new TextDecoder().decode(gif.subarray(0, 6)) !== "GIF89a") {
      throw new Error("no GIF written");
    }
    const bad = await ae([
      ...common,
      "--output",
      `${dir}/x.gif`,
      "--ckpt",
      `${dir}/absent.safetensors`,
    ]);
    if (bad.code !== 1 || !bad.out.includes("absent.safetensors")) {
      throw new Error(`missing checkpoint: exit ${bad.code}\n${bad.out}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
