import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { assertThrows as assertRejectsMsg } from "../_assert_close.ts";

/** Rejects with an error of class `cls` whose message contains `msg`. */
async function assertRejects(
  fn: () => Promise<unknown>,
  cls: new (...a: never[]) => Error,
  msg = "",
): Promise<Error> {
  const e = await assertRejectsMsg(fn, msg);
  assert(e instanceof cls, `expected ${cls.name}, got ${e.constructor.name}: ${e.message}`);
  return e;
}
import { framesToTensorData, readVideo, tensorDataToFrames, writeVideo } from "../../io/mod.ts";

import { ffTest, movingSquare } from "./_helpers.ts";

function meanAbs(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

async function tmpDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "kino_io_" });
}

ffTest("mp4 round trip: moving square, size, frame count, error", async () => {
  const dir = await tmpDir();
  try {
    const [t, h, w] = [12, 48, 64];
    const clip = movingSquare(t, h, w);
    const path = `${dir}/clip.mp4`;
    await writeVideo(path, clip, { t, h, w, fps: 24 });
    const v = await readVideo(path);
    assertEquals([v.t, v.h, v.w], [t, h, w]);
    assert(Math.abs(v.fps - 24) < 1e-6, `fps ${v.fps}`);
    const err = meanAbs(v.frames, clip);
    assert(err < 8, `mean abs error ${err}`);
    // No temporary files left behind.
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(names, ["clip.mp4"]);
    // maxFrames, size and fps options.
    const small = await readVideo(path, { maxFrames: 5, size: [24, 32] });
    assertEquals([small.t, small.h, small.w, small.frames.length], [5, 24, 32, 5 * 24 * 32 * 3]);
    const slow = await readVideo(path, { fps: 12 });
    assertEquals(slow.fps, 12);
    assert(slow.t >= 5 && slow.t <= 7, `fps=12 gave ${slow.t} frames`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

ffTest("mp4 is H.264 yuv420p with faststart; odd sides are padded to even", async () => {
  const dir = await tmpDir();
  try {
    const [t, h, w] = [3, 33, 47];
    const path = `${dir}/odd.mp4`;
    await writeVideo(path, movingSquare(t, h, w), { t, h, w, fps: 10 });
    const probe = await new Deno.Command("ffprobe", {
      args: [
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,pix_fmt,width,height",
        "-of",
        "json",
        path,
      ],
    }).output();
    const s = JSON.parse(new TextDecoder().decode(probe.stdout)).streams[0];
    assertEquals([s.codec_name, s.pix_fmt, s.width, s.height], ["h264", "yuv420p", 48, 34]);
    // faststart: the moov atom comes before mdat.
    const bytes = await Deno.readFile(path);
    const text = new TextDecoder("latin1").decode(bytes);
    assert(text.indexOf("moov") < text.indexOf("mdat"), "moov after mdat (no faststart)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

ffTest("webm round trip", async () => {
  const dir = await tmpDir();
  try {
    const [t, h, w] = [4, 32, 32];
    const clip = movingSquare(t, h, w);
    await writeVideo(`${dir}/c.webm`, clip, { t, h, w, fps: 8 });
    const v = await readVideo(`${dir}/c.webm`);
    assertEquals([v.t, v.h, v.w], [t, h, w]);
    assert(meanAbs(v.frames, clip) < 8);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("missing ffmpeg: error names the package and the GIF/PNG fallback", async () => {
  // Runs in a child process with KINO_FFMPEG pointing nowhere: changing this process's
  // environment would leak into test files that run in parallel.
  const dir = await tmpDir();
  const mod = new URL("../../io/mod.ts", import.meta.url).href;
  const script = `
    import { FfmpegMissingError, hasFfmpeg, readVideo, writeVideo } from "${mod}";
    const dir = ${JSON.stringify(dir)};
    const clip = new Uint8Array(2 * 8 * 8 * 3).fill(100);
    const opts = { t: 2, h: 8, w: 8, fps: 5 };
    const out = { has: await hasFfmpeg(), mp4: "", read: "" };
    try { await writeVideo(dir + "/x.mp4", clip, opts); } catch (e) {
      out.mp4 = (e instanceof FfmpegMissingError ? "missing: " : "other: ") + e.message;
    }
    await Deno.writeFile(dir + "/in.bin", new Uint8Array(10));
    try { await readVideo(dir + "/in.bin"); } catch (e) {
      out.read = (e instanceof FfmpegMissingError ? "missing: " : "other: ") + e.message;
    }
    await writeVideo(dir + "/x.gif", clip, opts);
    out.pngs = (await writeVideo(dir + "/frames/", clip, opts)).length;
    console.log(JSON.stringify(out));`;
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", script],
      env: { KINO_FFMPEG: "/nonexistent", KINO_FFPROBE: "/nonexistent" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(r.stdout);
    assert(r.code === 0, text + new TextDecoder().decode(r.stderr));
    const out = JSON.parse(text.trim().split("\n").at(-1)!);
    assertEquals(out.has, false);
    assert(out.mp4.startsWith("missing: "), out.mp4);
    assert(out.mp4.includes("apt-get install -y ffmpeg"), out.mp4);
    assert(/GIF and PNG output work without ffmpeg/.test(out.mp4), out.mp4);
    assert(out.read.startsWith("missing: ") && out.read.includes("apt-get install"), out.read);
    // GIF and PNG writing still work, and no partial x.mp4 is left
    assertEquals(out.pngs, 2);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assertEquals(names, ["frames", "in.bin", "x.gif"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

ffTest("unreadable inputs: missing, non-video, truncated", async () => {
  const dir = await tmpDir();
  try {
    await assertRejects(() => readVideo(`${dir}/nope.mp4`), Error, "no such file");
    await Deno.writeTextFile(`${dir}/notes.mp4`, "this is not a video at all\n".repeat(20));
    const e = await assertRejects(() => readVideo(`${dir}/notes.mp4`), Error, "cannot read");
    // ffprobe's own words are quoted.
    assert(/Invalid data|moov atom/i.test(e.message), e.message);
    const [t, h, w] = [8, 32, 32];
    await writeVideo(`${dir}/ok.mp4`, movingSquare(t, h, w), { t, h, w, fps: 8 });
    const full = await Deno.readFile(`${dir}/ok.mp4`);
    await Deno.writeFile(`${dir}/trunc.mp4`, full.subarray(0, Math.floor(full.length / 3)));
    await assertRejects(() => readVideo(`${dir}/trunc.mp4`), Error, "trunc.mp4");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeVideo rejects bad shapes and unknown formats", async () => {
  const clip = movingSquare(2, 8, 8);
  await assertRejects(
    () => writeVideo("/tmp/x.gif", clip, { t: 3, h: 8, w: 8, fps: 5 }),
    RangeError,
    "3*8*8*3",
  );
  await assertRejects(
    () => writeVideo("/tmp/kino_no_such_format.xyz", clip, { t: 2, h: 8, w: 8, fps: 5 }),
    Error,
    "cannot tell the format",
  );
});

Deno.test("framesToTensorData / tensorDataToFrames: layout, range, round trip", () => {
  const [t, h, w] = [2, 3, 5];
  const frames = new Uint8Array(t * h * w * 3);
  for (let i = 0; i < frames.length; i++) frames[i] = (i * 37) % 256;
  frames[0] = 0;
  frames[1] = 255;
  const x = framesToTensorData(frames, t, h, w);
  assertEquals(x.length, 3 * t * h * w);
  // element (c, f, y, xx) of [1,3,T,H,W]
  const at = (c: number, f: number, y: number, xx: number) => x[((c * t + f) * h + y) * w + xx];
  for (const [c, f, y, xx] of [[0, 0, 0, 0], [1, 0, 0, 0], [2, 1, 2, 4], [1, 1, 1, 3]]) {
    const u = frames[((f * h + y) * w + xx) * 3 + c];
    assert(Math.abs(at(c, f, y, xx) - (u / 255 - 0.5) / 0.5) < 1e-6);
  }
  assertEquals(at(0, 0, 0, 0), -1);
  assertEquals(at(1, 0, 0, 0), 1);
  assertEquals(tensorDataToFrames(x, t, h, w), frames);
  // Clamping and rounding.
  const y = new Float32Array(3 * t * h * w).fill(0);
  y[0] = 5;
  y[1] = -5;
  y[2] = NaN;
  const u = tensorDataToFrames(y, t, h, w);
  assertEquals([u[0], u[3], u[6], u[9]], [255, 0, 0, 128]);
});
