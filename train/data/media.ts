/**
 * Media access for training data: ffprobe metadata and decoding only the frames a sample needs.
 *
 * `io/video.ts` reads whole files into memory; a training clip needs, say, 128 frames out of 300
 * at 1080p, so {@linkcode decodeSelectedFrames} asks ffmpeg for just those frames (a `select`
 * filter, stopping after the last one) and streams them one at a time to a callback that resizes
 * each into the output tensor: memory stays at one source frame plus the output.
 *
 * Frames are decoded without auto-rotation (`-noautorotate`), like PyAV in the reference, and
 * converted to RGB24 by swscale with bilinear flags (PyAV's default for `to_rgb`). Binaries are
 * found as in `io/video.ts`: `$KINO_FFMPEG` / `$KINO_FFPROBE`, else on the PATH.
 *
 * @module
 */
import { FfmpegMissingError } from "../../io/video.ts";

/** torchvision's image extensions (`IMG_EXTENSIONS`): such paths are one-frame images. */
export const IMAGE_EXTENSIONS = [
  ".jpg",
  ".jpeg",
  ".png",
  ".ppm",
  ".bmp",
  ".pgm",
  ".tif",
  ".tiff",
  ".webp",
] as const;

/** Whether `path` is an image by its extension (case-insensitive), as `is_img` decides. */
export function isImagePath(path: string): boolean {
  const slash = path.lastIndexOf("/");
  const dot = path.lastIndexOf(".");
  if (dot <= slash) return false;
  return (IMAGE_EXTENSIONS as readonly string[]).includes(path.slice(dot).toLowerCase());
}

function ffmpegBin(): string {
  return Deno.env.get("KINO_FFMPEG") || "ffmpeg";
}

function ffprobeBin(): string {
  const probe = Deno.env.get("KINO_FFPROBE");
  if (probe) return probe;
  const ff = Deno.env.get("KINO_FFMPEG");
  if (!ff) return "ffprobe";
  const slash = ff.lastIndexOf("/");
  const base = ff.slice(slash + 1);
  return ff.slice(0, slash + 1) +
    (base.includes("ffmpeg") ? base.replace("ffmpeg", "ffprobe") : "ffprobe");
}

function spawn(bin: string, args: string[]): Deno.ChildProcess {
  try {
    return new Deno.Command(bin, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new FfmpegMissingError(bin);
    throw e;
  }
}

function tail(text: string, lines = 6): string {
  return text.trim().split("\n").slice(-lines).join("\n");
}

/** A file that ffprobe/ffmpeg cannot read as media (truncated, not a video, no video stream). */
export class CorruptMediaError extends Error {
  override name = "CorruptMediaError";
}

/** What {@linkcode probeMedia} learns about a file. */
export interface MediaInfo {
  width: number;
  height: number;
  /** Average frame rate rounded to 3 decimals (as `scripts/cnv/meta.py`); NaN if unknown. */
  fps: number;
  /** Frame count: the stream's `nb_frames`, or counted by decoding; 1 for images. */
  numFrames: number;
  /** Whether the count came from decoding every frame (`-count_frames`). */
  counted: boolean;
}

function parseRate(s: unknown): number {
  if (typeof s !== "string") return NaN;
  const [a, b] = s.split("/").map(Number);
  const r = b === undefined ? a! : a! / b;
  return Number.isFinite(r) && r > 0 ? r : NaN;
}

/**
 * ffprobe's view of the first video stream: coded width and height (no rotation applied), frame
 * rate and frame count. `countFrames` decodes the whole stream for an exact count (slow, but it
 * also proves the stream decodes); otherwise the container's `nb_frames` is used and frames are
 * only counted when the container does not say. `sizeOnly` skips rate and count (one quick
 * ffprobe run; `fps` and `numFrames` are then NaN). Throws {@linkcode CorruptMediaError} when the
 * file is not readable media.
 */
export async function probeMedia(
  path: string,
  opts: { countFrames?: boolean; image?: boolean; sizeOnly?: boolean } = {},
): Promise<MediaInfo> {
  const image = opts.image ?? isImagePath(path);
  const run = async (count: boolean) => {
    const args = ["-v", "error", "-select_streams", "v:0"];
    if (count) args.push("-count_frames");
    args.push(
      "-show_entries",
      "stream=width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_frames",
      "-of",
      "json",
      path,
    );
    const res = await spawn(ffprobeBin(), args).output();
    const dec = new TextDecoder();
    if (!res.success) {
      throw new CorruptMediaError(
        `ffprobe cannot read it: ${tail(dec.decode(res.stderr)) || "(no message)"}`,
      );
    }
    let info: { streams?: Record<string, unknown>[] };
    try {
      info = JSON.parse(dec.decode(res.stdout));
    } catch {
      throw new CorruptMediaError("ffprobe printed no JSON");
    }
    const s = info.streams?.[0];
    if (!s || !(Number(s.width) > 0) || !(Number(s.height) > 0)) {
      throw new CorruptMediaError("no video stream");
    }
    return s;
  };
  let s = await run(!image && !!opts.countFrames);
  const width = Number(s.width);
  const height = Number(s.height);
  if (image) return { width, height, fps: NaN, numFrames: 1, counted: false };
  if (opts.sizeOnly) return { width, height, fps: NaN, numFrames: NaN, counted: false };
  let fps = parseRate(s.avg_frame_rate);
  if (Number.isNaN(fps)) fps = parseRate(s.r_frame_rate);
  if (!Number.isNaN(fps)) fps = Math.round(fps * 1000) / 1000;
  let counted = !!opts.countFrames;
  let numFrames = Number(counted ? s.nb_read_frames : s.nb_frames);
  if (!counted && !(numFrames > 0)) {
    s = await run(true);
    numFrames = Number(s.nb_read_frames);
    counted = true;
  }
  if (!(Number.isInteger(numFrames) && numFrames > 0)) {
    throw new CorruptMediaError("the video stream has no decodable frames");
  }
  return { width, height, fps, numFrames, counted };
}

/**
 * Decodes the frames at `indices` (0-based decode order; ascending, duplicates allowed) of the
 * first video stream of a `width×height` file and calls `onFrame(k, rgb)` for each requested
 * position `k` in order, with packed RGB24 bytes (the buffer is reused: copy to keep it).
 * Returns how many of the requested positions were delivered: fewer than `indices.length` means
 * the stream ended early (its real frame count is lower than expected). Throws
 * {@linkcode CorruptMediaError} when ffmpeg fails to decode.
 */
export async function decodeSelectedFrames(
  path: string,
  width: number,
  height: number,
  indices: readonly number[],
  onFrame: (k: number, rgb: Uint8Array) => void,
): Promise<number> {
  if (indices.length === 0) return 0;
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    if (!Number.isInteger(i) || i < 0 || (k > 0 && i < indices[k - 1]!)) {
      throw new RangeError(`decodeSelectedFrames: indices must be ascending non-negative integers`);
    }
  }
  const unique = [...new Set(indices)];
  const select = unique.map((i) => `eq(n,${i})`).join("+");
  const args = [
    "-hide_banner",
    "-v",
    "error",
    "-nostdin",
    "-noautorotate",
    "-i",
    path,
    "-map",
    "0:v:0",
    "-vf",
    `select='${select}'`,
    "-vsync",
    "passthrough",
    "-sws_flags",
    "bilinear",
    "-frames:v",
    String(unique.length),
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "pipe:1",
  ];
  const child = spawn(ffmpegBin(), args);
  const errText = new Response(child.stderr).text();
  const frameBytes = width * height * 3;
  const frame = new Uint8Array(frameBytes);
  let fill = 0;
  let u = 0; // unique frames delivered
  let k = 0; // requested positions delivered
  const reader = child.stdout.getReader();
  let callbackError: unknown = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let off = 0;
      while (off < value.length) {
        const n = Math.min(frameBytes - fill, value.length - off);
        frame.set(value.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === frameBytes) {
          fill = 0;
          const idx = unique[u++];
          while (k < indices.length && indices[k] === idx) onFrame(k++, frame);
        }
      }
    }
  } catch (e) {
    callbackError = e;
    try {
      child.kill();
    } catch { /* already exited */ }
    await reader.cancel().catch(() => {});
  }
  const status = await child.status;
  const stderr = await errText;
  if (callbackError) throw callbackError;
  if (!status.success) {
    throw new CorruptMediaError(
      `ffmpeg could not decode it: ${tail(stderr) || `exit ${status.code}`}`,
    );
  }
  if (fill !== 0) {
    throw new CorruptMediaError(
      `ffmpeg output is not a whole number of ${width}x${height} frames (size changes mid-stream?)`,
    );
  }
  return k;
}
