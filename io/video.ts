/**
 * Video in and out.
 *
 * - {@linkcode readVideo} decodes mp4/webm/gif/mov and still images (png/jpg → one frame) with
 *   ffmpeg into packed uint8 RGB frames (T*H*W*3), probing size and frame rate with ffprobe.
 * - {@linkcode writeVideo} writes `.mp4` (H.264, yuv420p, +faststart: plays everywhere) or
 *   `.webm` (VP9) through ffmpeg, and `.gif` or PNG frames with the TypeScript encoders in
 *   `gif.ts` / `png.ts`, which need no ffmpeg.
 * - {@linkcode framesToTensorData} / {@linkcode tensorDataToFrames} convert between those frames
 *   and the autoencoder's float layout [1, 3, T, H, W] in [-1, 1].
 *
 * The ffmpeg binary is `$KINO_FFMPEG` when set (else `ffmpeg` on the PATH); ffprobe is
 * `$KINO_FFPROBE`, else the ffprobe next to `$KINO_FFMPEG`, else `ffprobe` on the PATH.
 * Outputs are written to a temporary file next to the target and renamed into place, so a failed
 * write leaves no partial file.
 */
import { encodeGif } from "./gif.ts";
import { encodePng } from "./png.ts";

/** Packed RGB frames: `frames` is T*H*W*3 uint8, frame-major, rows top first. */
export interface Video {
  /** RGB bytes, T·H·W·3, frame-major, rows top first. */
  frames: Uint8Array;
  /** Number of frames. */
  t: number;
  /** Frame height in pixels. */
  h: number;
  /** Frame width in pixels. */
  w: number;
  /** Frame rate in frames per second. */
  fps: number;
}

/** Options of {@linkcode readVideo}. */
export interface ReadVideoOptions {
  /** Keep at most this many frames (after any fps resampling). */
  maxFrames?: number;
  /** Resample to this frame rate (ffmpeg's `fps` filter: drops or repeats frames). */
  fps?: number;
  /** Resize every frame to [height, width] (bicubic). */
  size?: [number, number];
}

/** Options of {@linkcode writeVideo}: the frame layout of the data and the encoder settings. */
export interface WriteVideoOptions {
  /** Number of frames in the data. */
  t: number;
  /** Frame height in pixels. */
  h: number;
  /** Frame width in pixels. */
  w: number;
  /** Frame rate in frames per second. */
  fps: number;
  /** x264/VP9 constant rate factor (lower is better quality); default 18 (x264), 24 (VP9). */
  crf?: number;
}

/** Thrown when the ffmpeg or ffprobe binary cannot be started. */
export class FfmpegMissingError extends Error {
  /** Builds the message for the missing `binary` (ffmpeg or ffprobe), with install hints. */
  constructor(binary: string) {
    super(
      `'${binary}' was not found: reading videos and writing mp4/webm need ffmpeg. ` +
        `Install it (Debian/Ubuntu: \`apt-get install -y ffmpeg\`; macOS: \`brew install ffmpeg\`) ` +
        `or point KINO_FFMPEG at the binary. GIF and PNG output work without ffmpeg ` +
        `(writeVideo to a .gif, a .png pattern or a folder).`,
    );
    this.name = "FfmpegMissingError";
  }
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
  const dir = ff.slice(0, slash + 1);
  const base = ff.slice(slash + 1);
  return dir + (base.includes("ffmpeg") ? base.replace("ffmpeg", "ffprobe") : "ffprobe");
}

function tail(bytes: Uint8Array, lines = 12): string {
  const text = new TextDecoder().decode(bytes).trim();
  return text.split("\n").slice(-lines).join("\n");
}

function spawn(bin: string, args: string[], stdin: boolean): Deno.ChildProcess {
  try {
    return new Deno.Command(bin, {
      args,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new FfmpegMissingError(bin);
    throw e;
  }
}

/** Whether the ffmpeg binary (`$KINO_FFMPEG` or `ffmpeg`) can be run. */
export async function hasFfmpeg(): Promise<boolean> {
  try {
    const { success } = await spawn(ffmpegBin(), ["-hide_banner", "-version"], false).output();
    return success;
  } catch {
    return false;
  }
}

function parseRate(s: unknown): number {
  if (typeof s !== "string") return 0;
  const [a, b] = s.split("/").map(Number);
  const r = b === undefined ? a : a / b;
  return Number.isFinite(r) && r > 0 ? r : 0;
}

async function probe(path: string): Promise<{ w: number; h: number; fps: number }> {
  const args = [
    "-v",
    "error",
    "-select_streams",
    "v:0",
    "-show_entries",
    "stream=width,height,avg_frame_rate,r_frame_rate:stream_side_data=rotation",
    "-of",
    "json",
    path,
  ];
  const res = await spawn(ffprobeBin(), args, false).output();
  if (!res.success) {
    throw new Error(`readVideo: cannot read '${path}' (ffprobe failed):\n${tail(res.stderr)}`);
  }
  let info: { streams?: Record<string, unknown>[] };
  try {
    info = JSON.parse(new TextDecoder().decode(res.stdout));
  } catch {
    throw new Error(`readVideo: cannot read '${path}': ffprobe printed no JSON`);
  }
  const s = info.streams?.[0];
  if (!s || !(Number(s.width) > 0) || !(Number(s.height) > 0)) {
    throw new Error(`readVideo: '${path}' has no video stream (is it a video or image file?)`);
  }
  let w = Number(s.width);
  let h = Number(s.height);
  // ffmpeg auto-rotates on decode; ±90° rotations swap the output's sides.
  const sd = s.side_data_list as { rotation?: number }[] | undefined;
  const rot = sd?.find((d) => d.rotation !== undefined)?.rotation ?? 0;
  if (Math.abs(rot) % 180 === 90) [w, h] = [h, w];
  const fps = parseRate(s.avg_frame_rate) || parseRate(s.r_frame_rate) || 25;
  return { w, h, fps };
}

/**
 * Decodes a video or image file into packed RGB frames with ffmpeg.
 * Throws {@linkcode FfmpegMissingError} without ffmpeg, and an Error that quotes ffmpeg's
 * message for a missing, truncated or non-video file.
 */
export async function readVideo(path: string, opts: ReadVideoOptions = {}): Promise<Video> {
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) throw new Error(`readVideo: '${path}' is not a file`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`readVideo: no such file '${path}'`);
    throw e;
  }
  if (opts.maxFrames !== undefined && !(Number.isInteger(opts.maxFrames) && opts.maxFrames > 0)) {
    throw new RangeError(`readVideo: maxFrames must be a positive integer, got ${opts.maxFrames}`);
  }
  if (opts.fps !== undefined && !(opts.fps > 0)) {
    throw new RangeError(`readVideo: fps must be positive, got ${opts.fps}`);
  }
  if (opts.size && !opts.size.every((v) => Number.isInteger(v) && v > 0)) {
    throw new RangeError(`readVideo: size must be [h, w] positive integers, got [${opts.size}]`);
  }
  const info = await probe(path);
  let [h, w] = [info.h, info.w];
  let fps = info.fps;
  const filters: string[] = [];
  if (opts.fps !== undefined) {
    filters.push(`fps=${opts.fps}`);
    fps = opts.fps;
  }
  if (opts.size) {
    [h, w] = opts.size;
    filters.push(`scale=${w}:${h}:flags=bicubic`);
  }
  const args = ["-hide_banner", "-v", "error", "-nostdin", "-i", path, "-map", "0:v:0"];
  if (filters.length) args.push("-vf", filters.join(","));
  if (opts.maxFrames !== undefined) args.push("-frames:v", String(opts.maxFrames));
  // Every decoded frame exactly once: the rawvideo muxer would otherwise duplicate frames of
  // variable-delay inputs (GIF) to a constant rate.
  args.push("-vsync", "passthrough");
  args.push("-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1");
  const res = await spawn(ffmpegBin(), args, false).output();
  const frameBytes = h * w * 3;
  if (!res.success) {
    throw new Error(`readVideo: ffmpeg could not decode '${path}':\n${tail(res.stderr)}`);
  }
  const t = Math.floor(res.stdout.length / frameBytes);
  if (t === 0) {
    throw new Error(
      `readVideo: '${path}' decoded to no frames` +
        (res.stderr.length ? `:\n${tail(res.stderr)}` : ""),
    );
  }
  if (res.stdout.length !== t * frameBytes) {
    throw new Error(
      `readVideo: ffmpeg output for '${path}' is ${res.stdout.length} bytes, not a multiple of ` +
        `the ${w}x${h} frame size (unexpected frame geometry)`,
    );
  }
  return { frames: res.stdout, t, h, w, fps };
}

function checkFrames(fn: string, frames: Uint8Array, o: WriteVideoOptions): void {
  for (const k of ["t", "h", "w"] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) {
      throw new RangeError(`${fn}: ${k} must be a positive integer, got ${o[k]}`);
    }
  }
  if (!(o.fps > 0)) throw new RangeError(`${fn}: fps must be positive, got ${o.fps}`);
  const n = o.t * o.h * o.w * 3;
  if (frames.length !== n) {
    throw new RangeError(
      `${fn}: expected T*H*W*3 = ${o.t}*${o.h}*${o.w}*3 = ${n} bytes, got ${frames.length}`,
    );
  }
}

function tmpName(path: string): string {
  const slash = path.lastIndexOf("/");
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  return `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.${rand}.tmp`;
}

/** Writes `bytes` to `path` through a temporary file and a rename (no partial file on failure). */
async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = tmpName(path);
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

function framePath(pattern: string, i: number, t: number): string {
  const m = pattern.match(/%(0?)(\d*)d/);
  if (m) {
    const width = m[2] ? Number(m[2]) : 0;
    return pattern.replace(m[0], String(i).padStart(m[1] ? width : 0, "0"));
  }
  if (t === 1) return pattern;
  return pattern.replace(/\.png$/i, `_${String(i).padStart(5, "0")}.png`);
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function writeFfmpeg(
  path: string,
  frames: Uint8Array,
  o: WriteVideoOptions,
  kind: "mp4" | "webm",
): Promise<void> {
  const args = [
    "-hide_banner",
    "-v",
    "error",
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "-s",
    `${o.w}x${o.h}`,
    "-framerate",
    String(o.fps),
    "-i",
    "pipe:0",
  ];
  // yuv420p needs even sides: pad the right/bottom edge by one pixel (black) when odd.
  if (o.w % 2 || o.h % 2) args.push("-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2");
  if (kind === "mp4") {
    args.push("-c:v", "libx264", "-preset", "medium", "-crf", String(o.crf ?? 18));
    args.push("-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4");
  } else {
    args.push("-c:v", "libvpx-vp9", "-b:v", "0", "-crf", String(o.crf ?? 24));
    args.push("-pix_fmt", "yuv420p", "-f", "webm");
  }
  const tmp = tmpName(path);
  args.push("-y", tmp);
  const child = spawn(ffmpegBin(), args, true);
  const writing = (async () => {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(frames);
      await writer.close();
    } catch {
      // ffmpeg exited early (bad arguments): its stderr explains.
    }
  })();
  const [res] = await Promise.all([child.output(), writing]);
  if (!res.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`writeVideo: ffmpeg failed to write '${path}':\n${tail(res.stderr)}`);
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Writes packed RGB frames to `path`, by its form:
 * - `*.mp4` / `*.m4v` / `*.mov`: H.264 (libx264, yuv420p, `+faststart`) via ffmpeg. Odd sides
 *   are padded by one black row/column, since yuv420p needs even dimensions.
 * - `*.webm`: VP9 (yuv420p) via ffmpeg, padded likewise.
 * - `*.gif`: animated GIF with the TypeScript encoder (no ffmpeg needed).
 * - an existing folder, or a path ending in `/`: PNG frames `frame_00000.png`, ... (no ffmpeg).
 * - `*.png`: one PNG when T = 1; otherwise a `%05d`-style pattern is filled with the frame index,
 *   or without one, `name_00000.png`, `name_00001.png`, ... (no ffmpeg).
 * Returns the paths written.
 */
export async function writeVideo(
  path: string,
  frames: Uint8Array,
  opts: WriteVideoOptions,
): Promise<string[]> {
  checkFrames("writeVideo", frames, opts);
  const { t, h, w, fps } = opts;
  const lower = path.toLowerCase();
  if (/\.(mp4|m4v|mov)$/.test(lower)) {
    await writeFfmpeg(path, frames, opts, "mp4");
    return [path];
  }
  if (lower.endsWith(".webm")) {
    await writeFfmpeg(path, frames, opts, "webm");
    return [path];
  }
  if (lower.endsWith(".gif")) {
    await writeAtomic(path, encodeGif(frames, t, h, w, fps));
    return [path];
  }
  let pattern: string;
  if (lower.endsWith(".png")) pattern = path;
  else if (path.endsWith("/") || await isDir(path)) {
    await Deno.mkdir(path, { recursive: true });
    pattern = `${path.replace(/\/+$/, "")}/frame_%05d.png`;
  } else {
    throw new Error(
      `writeVideo: cannot tell the format of '${path}': use .mp4, .webm, .gif, .png, ` +
        `or a folder (existing, or ending in '/') for PNG frames`,
    );
  }
  const frameSize = h * w * 3;
  const written: string[] = [];
  for (let i = 0; i < t; i++) {
    const p = framePath(pattern, i, t);
    await writeAtomic(
      p,
      await encodePng(frames.subarray(i * frameSize, (i + 1) * frameSize), w, h),
    );
    written.push(p);
  }
  return written;
}

/**
 * uint8 RGB frames (T*H*W*3) → the model's input layout: NCTHW [1, 3, T, H, W] float32 in
 * [-1, 1], `x = (u8 / 255 - 0.5) / 0.5`.
 */
export function framesToTensorData(
  frames: Uint8Array,
  t: number,
  h: number,
  w: number,
): Float32Array {
  checkFrames("framesToTensorData", frames, { t, h, w, fps: 1 });
  const hw = h * w;
  const thw = t * hw;
  const out = new Float32Array(3 * thw);
  for (let f = 0; f < t; f++) {
    for (let p = 0; p < hw; p++) {
      const src = (f * hw + p) * 3;
      const dst = f * hw + p;
      for (let c = 0; c < 3; c++) out[c * thw + dst] = (frames[src + c] / 255 - 0.5) / 0.5;
    }
  }
  return out;
}

/**
 * The inverse of {@linkcode framesToTensorData}: [1, 3, T, H, W] floats in [-1, 1] → uint8 RGB
 * frames (T*H*W*3), `u8 = round(clamp((x * 0.5 + 0.5) * 255, 0, 255))` (NaN → 0).
 */
export function tensorDataToFrames(
  data: Float32Array,
  t: number,
  h: number,
  w: number,
): Uint8Array {
  const hw = h * w;
  const thw = t * hw;
  if (data.length !== 3 * thw) {
    throw new RangeError(
      `tensorDataToFrames: expected [1, 3, ${t}, ${h}, ${w}] = ${3 * thw} values, ` +
        `got ${data.length}`,
    );
  }
  const out = new Uint8Array(3 * thw);
  for (let f = 0; f < t; f++) {
    for (let p = 0; p < hw; p++) {
      const dst = (f * hw + p) * 3;
      const src = f * hw + p;
      for (let c = 0; c < 3; c++) {
        const v = Math.round((data[c * thw + src] * 0.5 + 0.5) * 255);
        out[dst + c] = v > 255 ? 255 : v > 0 ? v : 0;
      }
    }
  }
  return out;
}
