/**
 * Pixel-level evaluation of generated synthetic-shape videos: does the clip show the colour,
 * shape and motion direction its prompt asks for?
 *
 * {@linkcode analyzeVideo} reads only pixels:
 * 1. each frame is smoothed (3x3 box) and its background colour estimated as the per-channel
 *    median (the shape covers well under half of the frame);
 * 2. foreground = pixels farther from the background than half the frame's 99th-percentile
 *    distance (a half-maximum edge, so blur does not change the area), above a noise floor; the
 *    largest 4-connected blob is the object;
 * 3. colour = the palette colour nearest to the mean of the blob's core pixels (the inner,
 *    strongest-contrast part, free of edge blending) over all frames, allowing the palette
 *    colour to be dimmer or brighter ({@linkcode colourDistance});
 * 4. direction = the dominant axis and sign of the centroid's robust (Theil-Sen) slope over time;
 * 5. shape = the best intersection-over-union between the motion-compensated mean mask (blobs
 *    aligned on their centroids and averaged over frames) and an ideal circle, square and
 *    triangle of the same area and centroid, each blurred by the clip's estimated edge blur
 *    (from the width of the 25%-75% contrast band) and thresholded like the clip, so a blurry
 *    square is compared with a blurry square rather than a sharp one.
 *
 * {@linkcode scorePrompts} turns analyses plus prompts into per-attribute accuracy and
 * confusion tables; {@linkcode evaluateVideos} does both, and {@linkcode formatReport} prints the
 * result with the acceptance check of Kino issue #7.
 */
import { parsePrompt, type PromptAttributes } from "./captions.ts";
import {
  type Colour,
  COLOURS,
  type Direction,
  DIRECTIONS,
  PALETTE,
  type Shape,
  SHAPES,
  unpackFrames,
} from "./scene.ts";

/** A predicted motion direction; "none" when the object does not move measurably. */
export type PredictedDirection = Direction | "none";

/** What {@linkcode analyzeVideo} reads from a clip. */
export interface VideoAnalysis {
  /** Nearest palette colour of the object, null when no object was found. */
  colour: Colour | null;
  /** Best-matching shape, null when no object was found. */
  shape: Shape | null;
  /** Dominant motion direction, "none" below the motion threshold, null without an object. */
  direction: PredictedDirection | null;
  /**
   * Per-attribute confidence in [0, 1]: colour = 1 - d1/d2 (distances to the nearest and second
   * palette colour), shape = best minus second IoU, direction = share of the displacement along
   * the dominant axis (|major| / (|dx| + |dy|)).
   */
  confidence: { colour: number; shape: number; direction: number };
  /** Mean RGB of the object's core pixels. */
  meanRgb: [number, number, number] | null;
  /** Centroid displacement over the clip (Theil-Sen slope × (T - 1)), pixels, y down. */
  displacement: [number, number];
  /** IoU of the mean mask with each ideal shape (blurred like the clip). */
  shapeIoU: Record<Shape, number>;
  /** Mean-mask area over its bounding-box area (circle ≈ 0.785, square ≈ 1, triangle ≈ 0.5). */
  fillRatio: number;
  /** Estimated edge blur (Gaussian sigma, pixels, including the analyser's own 3x3 smoothing). */
  edgeSigma: number;
  /** Frames in which an object was found. */
  framesWithObject: number;
  /** Frames analysed. */
  frames: number;
}

/** Tunables of {@linkcode analyzeVideo} (defaults suit 32-256 px clips). */
export interface AnalyzeOptions {
  /** Minimum foreground contrast (RGB distance) for a frame to contain an object (default 30). */
  minContrast?: number;
  /** Minimum blob area as a fraction of the frame (default 0.002). */
  minArea?: number;
  /** Total displacement below this fraction of the shorter side counts as "none" (default 0.03). */
  minMotion?: number;
  /** Palette to classify colours against (default {@linkcode PALETTE}). */
  palette?: Readonly<Record<Colour, readonly [number, number, number]>>;
}

interface Blob {
  pixels: Int32Array;
  cx: number;
  cy: number;
}

function median256(hist: Uint32Array, n: number): number {
  let acc = 0;
  for (let v = 0; v < 256; v++) {
    acc += hist[v]!;
    if (acc * 2 >= n) return v;
  }
  return 255;
}

/** 3x3 box blur of one RGB frame into float planes (edge pixels average their neighbours). */
function smooth(frame: Uint8Array, w: number, h: number): Float32Array {
  const out = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let r = 0, g = 0, b = 0, n = 0;
      for (let yy = Math.max(0, y - 1); yy <= Math.min(h - 1, y + 1); yy++) {
        for (let xx = Math.max(0, x - 1); xx <= Math.min(w - 1, x + 1); xx++) {
          const o = (yy * w + xx) * 3;
          r += frame[o]!;
          g += frame[o + 1]!;
          b += frame[o + 2]!;
          n++;
        }
      }
      const o = (y * w + x) * 3;
      out[o] = r / n;
      out[o + 1] = g / n;
      out[o + 2] = b / n;
    }
  }
  return out;
}

function quantile(sorted: Float32Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Largest 4-connected component of `mask` (1 = foreground). */
function largestBlob(mask: Uint8Array, w: number, h: number): Int32Array | null {
  const label = new Int32Array(w * h);
  const queue = new Int32Array(w * h);
  let best: Int32Array | null = null;
  let next = 1;
  for (let s = 0; s < w * h; s++) {
    if (!mask[s] || label[s]) continue;
    let head = 0, tail = 0;
    queue[tail++] = s;
    label[s] = next;
    while (head < tail) {
      const p = queue[head++]!;
      const x = p % w;
      const y = (p - x) / w;
      const nb = [
        x > 0 ? p - 1 : -1,
        x < w - 1 ? p + 1 : -1,
        y > 0 ? p - w : -1,
        y < h - 1 ? p + w : -1,
      ];
      for (const q of nb) {
        if (q >= 0 && mask[q] && !label[q]) {
          label[q] = next;
          queue[tail++] = q;
        }
      }
    }
    if (!best || tail > best.length) best = queue.slice(0, tail);
    next++;
  }
  return best;
}

/** Whether (dx, dy) from the centre lies in the ideal shape of half-extent r (as scene.ts draws it). */
function insideShape(shape: Shape, dx: number, dy: number, r: number): boolean {
  return shape === "circle"
    ? dx * dx + dy * dy <= r * r
    : shape === "square"
    ? Math.abs(dx) <= r && Math.abs(dy) <= r
    : dy <= r && Math.abs(dx) <= (dy + r) / 2;
}

/** Separable Gaussian blur of a w×h plane (clamped edges); sigma <= 0.3 returns the input. */
function gaussianBlur(src: Float32Array, w: number, h: number, sigma: number): Float32Array {
  if (sigma <= 0.3) return src;
  const rad = Math.ceil(3 * sigma);
  const k = Array.from(
    { length: 2 * rad + 1 },
    (_, i) => Math.exp(-((i - rad) ** 2) / (2 * sigma * sigma)),
  );
  const ks = k.reduce((a, b) => a + b);
  const tmp = new Float32Array(w * h);
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = -rad; i <= rad; i++) {
        s += k[i + rad]! * src[y * w + Math.min(w - 1, Math.max(0, x + i))]!;
      }
      tmp[y * w + x] = s / ks;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let i = -rad; i <= rad; i++) {
        s += k[i + rad]! * tmp[Math.min(h - 1, Math.max(0, y + i)) * w + x]!;
      }
      out[y * w + x] = s / ks;
    }
  }
  return out;
}

/**
 * The mask an ideal shape leaves after the blur `sigma` and a half-maximum threshold (what the
 * segmentation sees), anti-aliased, centred so that its area centroid is near (mx, my).
 */
function shapeMask(
  shape: Shape,
  w: number,
  h: number,
  mx: number,
  my: number,
  r: number,
  sigma: number,
): Float32Array {
  const cov = new Float32Array(w * h);
  const cy = shape === "triangle" ? my - r / 3 : my; // a triangle's centroid is r/3 below centre
  const x0 = Math.max(0, Math.floor(mx - r) - 1), x1 = Math.min(w - 1, Math.ceil(mx + r) + 1);
  const y0 = Math.max(0, Math.floor(cy - r) - 1), y1 = Math.min(h - 1, Math.ceil(cy + r) + 1);
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      let hits = 0;
      for (let sy = 0; sy < 4; sy++) {
        for (let sx = 0; sx < 4; sx++) {
          if (insideShape(shape, x + (sx + 0.5) / 4 - mx, y + (sy + 0.5) / 4 - cy, r)) hits++;
        }
      }
      cov[y * w + x] = hits / 16;
    }
  }
  const v = gaussianBlur(cov, w, h, sigma);
  let peak = 0;
  for (const x of v) peak = Math.max(peak, x);
  // Anti-aliased threshold: the fraction of each pixel inside the half-maximum contour,
  // 0.5 + (v - thr) / |grad v| clamped to [0, 1], so the area changes smoothly with r.
  const thr = 0.5 * peak;
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const gx = (v[y * w + Math.min(w - 1, x + 1)]! - v[y * w + Math.max(0, x - 1)]!) / 2;
      const gy = (v[Math.min(h - 1, y + 1) * w + x]! - v[Math.max(0, y - 1) * w + x]!) / 2;
      const g = Math.hypot(gx, gy);
      const f = g > 1e-6 ? 0.5 + (v[i]! - thr) / g : v[i]! > thr ? 1 : 0;
      out[i] = f < 0 ? 0 : f > 1 ? 1 : f;
    }
  }
  return out;
}

/**
 * IoU of a binary mask (w×h) with each ideal shape of the same area and centroid, each blurred
 * by `sigma` and thresholded at half maximum like the observed object (apex-up triangle with
 * base = height, as rendered by scene.ts).
 */
function shapeScores(mask: Uint8Array, w: number, h: number, sigma: number): Record<Shape, number> {
  let area = 0, mx = 0, my = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      area++;
      mx += x + 0.5;
      my += y + 0.5;
    }
  }
  const out = { circle: 0, square: 0, triangle: 0 } as Record<Shape, number>;
  if (area === 0) return out;
  mx /= area;
  my /= area;
  for (const shape of SHAPES) {
    // half-extent r of the same area, refined so the blurred, thresholded template keeps it
    let r = shape === "circle"
      ? Math.sqrt(area / Math.PI)
      : shape === "square"
      ? Math.sqrt(area) / 2
      : Math.sqrt(area / 2);
    let t = shapeMask(shape, w, h, mx, my, r, sigma);
    for (let it = 0; it < 3; it++) {
      const ta = t.reduce((a, v) => a + v, 0);
      if (ta === 0 || Math.abs(ta - area) < 0.005 * area) break;
      r *= Math.sqrt(area / ta);
      t = shapeMask(shape, w, h, mx, my, r, sigma);
    }
    let inter = 0, union = 0;
    for (let i = 0; i < w * h; i++) {
      inter += Math.min(mask[i]!, t[i]!);
      union += Math.max(mask[i]!, t[i]!);
    }
    out[shape] = union > 0 ? inter / union : 0;
  }
  return out;
}

/**
 * Distance from an observed colour to a palette colour allowed to be 0.5x-1.3x as bright:
 * a generated object that is dimmer (or blended with the background) keeps its hue, so a dim
 * white reads as white, not as the nearest mid-gray palette entry.
 */
export function colourDistance(
  rgb: readonly [number, number, number],
  ref: readonly [number, number, number],
): number {
  const dot = rgb[0] * ref[0] + rgb[1] * ref[1] + rgb[2] * ref[2];
  const nn = ref[0] * ref[0] + ref[1] * ref[1] + ref[2] * ref[2];
  const s = Math.min(1.3, Math.max(0.5, nn > 0 ? dot / nn : 1));
  return Math.hypot(rgb[0] - s * ref[0], rgb[1] - s * ref[1], rgb[2] - s * ref[2]);
}

/** Theil-Sen slope of (t, v) points: the median of the pairwise slopes. */
function theilSen(ts: number[], vs: number[]): number {
  const slopes: number[] = [];
  for (let i = 0; i < ts.length; i++) {
    for (let j = i + 1; j < ts.length; j++) slopes.push((vs[j]! - vs[i]!) / (ts[j]! - ts[i]!));
  }
  if (slopes.length === 0) return 0;
  slopes.sort((a, b) => a - b);
  const m = slopes.length >> 1;
  return slopes.length % 2 ? slopes[m]! : (slopes[m - 1]! + slopes[m]!) / 2;
}

function toFrameList(
  frames: Uint8Array | readonly Uint8Array[],
  w: number,
  h: number,
): Uint8Array[] {
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 4 || h < 4) {
    throw new RangeError(`analyzeVideo: width and height must be integers >= 4, got ${w}x${h}`);
  }
  const list = frames instanceof Uint8Array ? unpackFrames(frames, w, h) : [...frames];
  if (list.length === 0) throw new RangeError("analyzeVideo: no frames");
  list.forEach((f, i) => {
    if (f.length !== w * h * 3) {
      throw new RangeError(
        `analyzeVideo: frame ${i} has ${f.length} bytes, expected ${w}x${h}x3 = ${w * h * 3} ` +
          `(frames must be packed uint8 RGB)`,
      );
    }
  });
  return list;
}

/**
 * Reads colour, shape and motion direction of the single moving object in a clip from its
 * pixels. `frames` is a list of H*W*3 uint8 RGB frames, or one packed T*H*W*3 array (as
 * io/video.ts readVideo returns). See the module comment for the method.
 */
export function analyzeVideo(
  frames: Uint8Array | readonly Uint8Array[],
  width: number,
  height: number,
  opts: AnalyzeOptions = {},
): VideoAnalysis {
  const w = width, h = height;
  const list = toFrameList(frames, w, h);
  const minContrast = opts.minContrast ?? 30;
  const minArea = Math.max(3, (opts.minArea ?? 0.002) * w * h);
  const palette = opts.palette ?? PALETTE;
  const side = Math.min(w, h);
  const canvas = 2 * Math.max(w, h); // motion-compensated mask, object centroid at the centre
  const meanMask = new Float32Array(canvas * canvas);
  const ts: number[] = [], xs: number[] = [], ys: number[] = [], sigmas: number[] = [];
  const rgbSum = [0, 0, 0];
  let rgbCount = 0;
  const npx = w * h;
  const d = new Float32Array(npx);
  const hist = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];
  const mask = new Uint8Array(npx);

  list.forEach((frame, f) => {
    const sm = smooth(frame, w, h);
    for (const hc of hist) hc.fill(0);
    for (let p = 0; p < npx; p++) {
      for (let c = 0; c < 3; c++) hist[c]![Math.round(sm[p * 3 + c]!)]!++;
    }
    const bg = hist.map((hc) => median256(hc, npx));
    for (let p = 0; p < npx; p++) {
      const dr = sm[p * 3]! - bg[0]!, dg = sm[p * 3 + 1]! - bg[1]!, db = sm[p * 3 + 2]! - bg[2]!;
      d[p] = Math.sqrt(dr * dr + dg * dg + db * db);
    }
    const sorted = d.slice().sort();
    const peak = quantile(sorted, 0.99);
    if (peak < minContrast) return;
    const thr = Math.max(0.5 * peak, 2.5 * quantile(sorted, 0.5), minContrast / 2);
    for (let p = 0; p < npx; p++) mask[p] = d[p]! > thr ? 1 : 0;
    const blob = largestBlob(mask, w, h);
    if (!blob || blob.length < minArea) return;
    let cx = 0, cy = 0;
    for (const p of blob) {
      cx += (p % w) + 0.5;
      cy += Math.floor(p / w) + 0.5;
    }
    const b: Blob = { pixels: blob, cx: cx / blob.length, cy: cy / blob.length };
    ts.push(f);
    xs.push(b.cx);
    ys.push(b.cy);
    // colour: core pixels (strong contrast) of the unsmoothed frame
    const core = 0.8 * peak;
    for (const p of b.pixels) {
      if (d[p]! < core) continue;
      for (let c = 0; c < 3; c++) rgbSum[c] += frame[p * 3 + c]!;
      rgbCount++;
    }
    // edge blur: the 25%-75% contrast band of a Gaussian edge is 1.349 sigma wide
    let bx0 = w, bx1 = 0, by0 = h, by1 = 0, hi = 0, perimeter = 0;
    for (const p of b.pixels) {
      const x = p % w, y = Math.floor(p / w);
      bx0 = Math.min(bx0, x);
      bx1 = Math.max(bx1, x);
      by0 = Math.min(by0, y);
      by1 = Math.max(by1, y);
      if (d[p]! > 0.75 * peak) hi++;
      perimeter += (x === 0 || !mask[p - 1] ? 1 : 0) + (x === w - 1 || !mask[p + 1] ? 1 : 0) +
        (y === 0 || !mask[p - w] ? 1 : 0) + (y === h - 1 || !mask[p + w] ? 1 : 0);
    }
    const m = Math.ceil(Math.max(3, 0.25 * Math.max(bx1 - bx0, by1 - by0)));
    let lo = 0;
    for (let y = Math.max(0, by0 - m); y <= Math.min(h - 1, by1 + m); y++) {
      for (let x = Math.max(0, bx0 - m); x <= Math.min(w - 1, bx1 + m); x++) {
        if (d[y * w + x]! > 0.25 * peak) lo++;
      }
    }
    sigmas.push((lo - hi) / (1.349 * perimeter));
    // shape: add the blob to the mean mask with its centroid moved to the canvas centre
    const ox = Math.round(canvas / 2 - b.cx);
    const oy = Math.round(canvas / 2 - b.cy);
    for (const p of b.pixels) {
      const x = (p % w) + ox, y = Math.floor(p / w) + oy;
      if (x >= 0 && y >= 0 && x < canvas && y < canvas) meanMask[y * canvas + x]! += 1;
    }
  });

  const n = ts.length;
  const none: VideoAnalysis = {
    colour: null,
    shape: null,
    direction: null,
    confidence: { colour: 0, shape: 0, direction: 0 },
    meanRgb: null,
    displacement: [0, 0],
    shapeIoU: { circle: 0, square: 0, triangle: 0 },
    fillRatio: 0,
    edgeSigma: 0,
    framesWithObject: 0,
    frames: list.length,
  };
  if (n === 0) return none;

  // colour
  let colour: Colour | null = null;
  let colourConf = 0;
  let meanRgb: [number, number, number] | null = null;
  if (rgbCount > 0) {
    meanRgb = rgbSum.map((s) => s / rgbCount) as [number, number, number];
    const dist = COLOURS.map((c) => colourDistance(meanRgb!, palette[c]));
    const order = COLOURS.map((_, i) => i).sort((a, b) => dist[a]! - dist[b]!);
    colour = COLOURS[order[0]!]!;
    colourConf = 1 - dist[order[0]!]! / Math.max(1e-9, dist[order[1]!]!);
  }

  // direction
  const T = list.length;
  const dx = n >= 2 ? theilSen(ts, xs) * (T - 1) : 0;
  const dy = n >= 2 ? theilSen(ts, ys) * (T - 1) : 0;
  let direction: PredictedDirection;
  const major = Math.max(Math.abs(dx), Math.abs(dy));
  if (major < (opts.minMotion ?? 0.03) * side) direction = "none";
  else if (Math.abs(dx) >= Math.abs(dy)) direction = dx > 0 ? "right" : "left";
  else direction = dy > 0 ? "down" : "up";
  const dirConf = major > 0 ? major / (Math.abs(dx) + Math.abs(dy)) : 0;

  // shape: mean mask (fraction of frames covering each pixel), binarised at one half, cropped
  let x0 = canvas, x1 = -1, y0 = canvas, y1 = -1, area = 0;
  for (let i = 0; i < meanMask.length; i++) {
    if (meanMask[i]! / n < 0.5) continue;
    area++;
    const x = i % canvas, y = Math.floor(i / canvas);
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  sigmas.sort((a, b) => a - b);
  // (capped: a noisy estimate must not blur the templates into one round blob)
  const sigma = Math.min(Math.max(0, sigmas[sigmas.length >> 1]!), 0.2 * Math.sqrt(area));
  let iou: Record<Shape, number> = { circle: 0, square: 0, triangle: 0 };
  if (area > 0) {
    const pad = Math.ceil(0.25 * Math.max(x1 - x0, y1 - y0) + 3 * sigma + 3);
    const cx0 = x0 - pad, cy0 = y0 - pad;
    const cw = x1 - x0 + 1 + 2 * pad, ch = y1 - y0 + 1 + 2 * pad;
    const crop = new Uint8Array(cw * ch);
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) {
        const gx = x + cx0, gy = y + cy0;
        const inCanvas = gx >= 0 && gy >= 0 && gx < canvas && gy < canvas;
        crop[y * cw + x] = inCanvas && meanMask[gy * canvas + gx]! / n >= 0.5 ? 1 : 0;
      }
    }
    iou = shapeScores(crop, cw, ch, sigma);
  }
  const ranked = SHAPES.slice().sort((a, b) => iou[b] - iou[a]);
  return {
    colour,
    shape: area > 0 ? ranked[0]! : null,
    direction,
    confidence: {
      colour: colourConf,
      shape: iou[ranked[0]!] - iou[ranked[1]!],
      direction: dirConf,
    },
    meanRgb,
    displacement: [dx, dy],
    shapeIoU: iou,
    fillRatio: area > 0 ? area / ((x1 - x0 + 1) * (y1 - y0 + 1)) : 0,
    edgeSigma: sigma,
    framesWithObject: n,
    frames: T,
  };
}

/** Accuracy of one attribute and its confusion table (truth → prediction → count). */
export interface AttributeScore {
  correct: number;
  total: number;
  accuracy: number;
  confusion: Record<string, Record<string, number>>;
}

/** Per-attribute accuracy over a set of prompts. */
export interface PromptScore {
  n: number;
  colour: AttributeScore;
  shape: AttributeScore;
  direction: AttributeScore;
  /** Clips with all three attributes right. */
  all: { correct: number; total: number; accuracy: number };
}

/** The attributes evaluated, in report order. */
export const EVALUATED = ["colour", "shape", "direction"] as const;

/**
 * Scores analyses against prompts (texts, parsed with {@linkcode parsePrompt}, or attribute
 * objects). A missing prediction (null: no object found) counts as wrong and is tabulated as
 * "none". Throws when a prompt cannot be parsed or the lists differ in length.
 */
export function scorePrompts(
  results: readonly VideoAnalysis[],
  prompts: readonly (string | PromptAttributes)[],
): PromptScore {
  if (results.length !== prompts.length) {
    throw new RangeError(
      `scorePrompts: ${results.length} results for ${prompts.length} prompts (one each)`,
    );
  }
  const empty = (): AttributeScore => ({ correct: 0, total: 0, accuracy: 0, confusion: {} });
  const s: PromptScore = {
    n: results.length,
    colour: empty(),
    shape: empty(),
    direction: empty(),
    all: { correct: 0, total: results.length, accuracy: 0 },
  };
  results.forEach((r, i) => {
    const p = prompts[i]!;
    const want = typeof p === "string" ? parsePrompt(p) : p;
    if (!want) {
      throw new Error(
        `scorePrompts: prompt ${i} ("${p}") does not name one colour, shape and direction ` +
          `of the synthetic grammar; use prompts from heldout.csv`,
      );
    }
    let all = true;
    for (const k of EVALUATED) {
      const truth = want[k];
      const pred = r[k] ?? "none";
      const a = s[k];
      a.total++;
      a.confusion[truth] ??= {};
      a.confusion[truth][pred] = (a.confusion[truth][pred] ?? 0) + 1;
      if (pred === truth) a.correct++;
      else all = false;
    }
    if (all) s.all.correct++;
  });
  for (const k of EVALUATED) s[k].accuracy = s[k].total ? s[k].correct / s[k].total : 0;
  s.all.accuracy = s.n ? s.all.correct / s.n : 0;
  return s;
}

/** Acceptance thresholds of Kino issue #7 for the default model. */
export const ACCEPTANCE = {
  colour: 0.8,
  direction: 0.7,
  shape: 0.6,
  minPrompts: 20,
} as const;

/** One generated clip to evaluate. `frames`: per-frame H*W*3 RGB arrays or one packed array. */
export interface EvalSample {
  prompt: string;
  frames: Uint8Array | readonly Uint8Array[];
  width: number;
  height: number;
}

/** The result of {@linkcode evaluateVideos}. */
export interface EvalReport {
  samples: { prompt: string; expected: PromptAttributes; analysis: VideoAnalysis }[];
  score: PromptScore;
  acceptance: {
    passed: boolean;
    checks: { attribute: string; value: number; required: number; passed: boolean }[];
  };
}

/** Analyses every sample and scores it against its prompt, with the acceptance check. */
export function evaluateVideos(
  samples: readonly EvalSample[],
  opts: AnalyzeOptions = {},
): EvalReport {
  const rows = samples.map((s, i) => {
    const expected = parsePrompt(s.prompt);
    if (!expected) {
      throw new Error(
        `evaluateVideos: sample ${i} prompt "${s.prompt}" does not name one colour, shape and ` +
          `direction of the synthetic grammar`,
      );
    }
    return {
      prompt: s.prompt,
      expected,
      analysis: analyzeVideo(s.frames, s.width, s.height, opts),
    };
  });
  const score = scorePrompts(rows.map((r) => r.analysis), rows.map((r) => r.expected));
  const checks = [
    ...EVALUATED.map((k) => ({
      attribute: k,
      value: score[k].accuracy,
      required: ACCEPTANCE[k],
      passed: score[k].accuracy >= ACCEPTANCE[k],
    })),
    {
      attribute: "prompts",
      value: score.n,
      required: ACCEPTANCE.minPrompts,
      passed: score.n >= ACCEPTANCE.minPrompts,
    },
  ];
  return { samples: rows, score, acceptance: { passed: checks.every((c) => c.passed), checks } };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

function confusionTable(name: string, a: AttributeScore, labels: readonly string[]): string[] {
  const preds = [...labels, "none"].filter((l) =>
    labels.includes(l) || Object.values(a.confusion).some((row) => row[l])
  );
  const truths = labels.filter((l) => a.confusion[l]);
  const head = `${name} \\ pred`;
  const lw = Math.max(head.length, ...truths.map((t) => t.length)) + 2;
  const cw = Math.max(...preds.map((p) => p.length)) + 2;
  const lines = [head.padEnd(lw) + preds.map((p) => p.padStart(cw)).join("")];
  for (const t of truths) {
    lines.push(
      t.padEnd(lw) + preds.map((p) => String(a.confusion[t]![p] ?? 0).padStart(cw)).join(""),
    );
  }
  return lines;
}

/**
 * A printable report: per-attribute accuracy, the acceptance check, the confusion tables and
 * the wrong samples (at most `maxMistakes`, default 10).
 */
export function formatReport(report: EvalReport, maxMistakes = 10): string {
  const s = report.score;
  const out: string[] = [`evaluated ${s.n} prompts`];
  for (const k of EVALUATED) {
    out.push(
      `  ${k.padEnd(10)} ${pct(s[k].accuracy).padStart(6)}  (${s[k].correct}/${s[k].total})`,
    );
  }
  out.push(
    `  ${"all three".padEnd(10)} ${pct(s.all.accuracy).padStart(6)}  (${s.all.correct}/${s.n})`,
  );
  out.push(
    `acceptance: ${report.acceptance.passed ? "PASSED" : "FAILED"} (` +
      report.acceptance.checks
        .map((c) =>
          c.attribute === "prompts"
            ? `prompts ${c.value} >= ${c.required}`
            : `${c.attribute} ${pct(c.value)} >= ${pct(c.required)}`
        )
        .map((t, i) => `${t} ${report.acceptance.checks[i]!.passed ? "ok" : "NO"}`)
        .join(", ") +
      ")",
  );
  const labels = { colour: COLOURS, shape: SHAPES, direction: DIRECTIONS } as const;
  for (const k of EVALUATED) out.push("", ...confusionTable(k, s[k], labels[k]));
  const wrong = report.samples.filter((r) =>
    EVALUATED.some((k) => r.analysis[k] !== r.expected[k])
  );
  if (wrong.length) {
    out.push("", `mistakes (${Math.min(wrong.length, maxMistakes)} of ${wrong.length}):`);
    for (const r of wrong.slice(0, maxMistakes)) {
      const a = r.analysis;
      out.push(
        `  "${r.prompt}" -> ${a.colour ?? "none"} ${a.shape ?? "none"} ${a.direction ?? "none"}` +
          (a.meanRgb ? ` (rgb ${a.meanRgb.map(Math.round).join(",")}, ` : " (") +
          `moved ${a.displacement.map((v) => v.toFixed(1)).join(",")} px, ` +
          `object in ${a.framesWithObject}/${a.frames} frames)`,
      );
    }
  }
  return out.join("\n");
}
