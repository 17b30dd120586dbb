/** Shared helpers of the io tests: the ffmpeg gate and synthetic clips. */
import { hasFfmpeg } from "../../io/mod.ts";

const FFMPEG = await hasFfmpeg();
const SKIP = FFMPEG ? "" : " (skipped: ffmpeg not installed; apt-get install -y ffmpeg)";

/** A test that needs ffmpeg; ignored, with the reason in its name, when it is missing. */
export function ffTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: name + SKIP, ignore: !FFMPEG, fn });
}

/** A smooth background with a bright square moving one step per frame. */
export function movingSquare(t: number, h: number, w: number): Uint8Array {
  const out = new Uint8Array(t * h * w * 3);
  const s = Math.max(2, Math.floor(Math.min(h, w) / 4));
  for (let f = 0; f < t; f++) {
    const x0 = (f * 3) % (w - s);
    const y0 = (f * 2) % (h - s);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = ((f * h + y) * w + x) * 3;
        const inside = x >= x0 && x < x0 + s && y >= y0 && y < y0 + s;
        out[o] = inside ? 240 : Math.round((x / w) * 200);
        out[o + 1] = inside ? 220 : Math.round((y / h) * 200);
        out[o + 2] = inside ? 30 : 100;
      }
    }
  }
  return out;
}
