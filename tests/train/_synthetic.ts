/**
 * Tiny synthetic media for the training-data tests: frames with a known pattern, written with
 * ffmpeg (lossless FFV1 `.mkv` when exact pixels matter, H.264 `.mp4` otherwise), PNG images,
 * and corrupt files.
 */
import { hasFfmpeg, writeVideo } from "../../io/video.ts";

/** Whether ffmpeg is available (every media test needs it). */
export const FFMPEG = await hasFfmpeg();

/** A test that needs ffmpeg; fails loudly (never skips silently) when it is missing. */
export function mediaTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      if (!FFMPEG) throw new Error("ffmpeg/ffprobe are required (apt-get install -y ffmpeg)");
      await fn();
    },
  });
}

/** The still pattern of `gen_pil_reference.py`: `(37x + 91y + 53c + 20·((x·y) mod 7)) mod 256`. */
export function synthImage(h: number, w: number): Uint8Array {
  const a = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        a[(y * w + x) * 3 + c] = (x * 37 + y * 91 + c * 53 + ((x * y) % 7) * 20) % 256;
      }
    }
  }
  return a;
}

/** Frame `i` of a synthetic clip: a texture that shifts with the frame index (T·H·W·3 bytes). */
export function synthFrame(i: number, h: number, w: number): Uint8Array {
  const a = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        a[(y * w + x) * 3 + c] = (x * 13 + y * 29 + c * 71 + i * 23 + ((x ^ y) & 5) * 9) % 256;
      }
    }
  }
  return a;
}

/** All frames of a synthetic clip. */
export function synthClip(t: number, h: number, w: number): Uint8Array {
  const out = new Uint8Array(t * h * w * 3);
  for (let i = 0; i < t; i++) out.set(synthFrame(i, h, w), i * h * w * 3);
  return out;
}

/** A smooth clip (gradients and a moving block) that H.264 codes well. */
export function smoothClip(t: number, h: number, w: number): Uint8Array {
  const out = new Uint8Array(t * h * w * 3);
  for (let f = 0; f < t; f++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = ((f * h + y) * w + x) * 3;
        const inside = Math.abs(x - ((f * 3) % w)) < 6 && Math.abs(y - h / 2) < 6;
        out[o] = inside ? 240 : Math.round((x / w) * 200);
        out[o + 1] = inside ? 220 : Math.round((y / h) * 200);
        out[o + 2] = 100;
      }
    }
  }
  return out;
}

async function ffmpeg(args: string[], stdin?: Uint8Array): Promise<void> {
  const child = new Deno.Command("ffmpeg", {
    args: ["-hide_banner", "-v", "error", "-y", ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const r = await child.output();
  if (!r.success) {
    throw new Error(`ffmpeg ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
}

/** Writes frames losslessly (FFV1, RGB) to an `.mkv`: decoding gives the exact bytes back. */
export async function writeLossless(
  path: string,
  frames: Uint8Array,
  t: number,
  h: number,
  w: number,
  fps = 24,
): Promise<void> {
  if (frames.length !== t * h * w * 3) throw new Error("writeLossless: wrong frame bytes");
  await ffmpeg(
    [
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "-s",
      `${w}x${h}`,
      "-r",
      String(fps),
      "-i",
      "pipe:0",
      "-c:v",
      "ffv1",
      "-pix_fmt",
      "bgr0",
      path,
    ],
    frames,
  );
}

/** Writes a smooth H.264 `.mp4` of `t` frames (io/video.ts `writeVideo`). */
export async function writeMp4(path: string, t: number, h: number, w: number, fps = 24) {
  await writeVideo(path, smoothClip(t, h, w), { t, h, w, fps });
}

/** Writes a PNG of {@linkcode synthImage}. */
export async function writePng(path: string, h: number, w: number) {
  await writeVideo(path, synthImage(h, w), { t: 1, h, w, fps: 1 });
}

/** Writes `n` pseudo-random bytes (a "video" no decoder accepts). */
export async function writeGarbage(path: string, n = 4096) {
  const a = new Uint8Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = s >>> 24;
  }
  await Deno.writeFile(path, a);
}
