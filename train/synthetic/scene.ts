/**
 * The synthetic scene model of Kino's default text-to-video dataset: one simple shape of one
 * colour moving in a straight line over a plain or mildly textured background.
 *
 * Everything is deterministic: a scene is sampled from a seeded PRNG ({@linkcode Rng}) and
 * rendered with 4x4 supersampled (anti-aliased) edges into packed RGB frames. The shape stays
 * fully inside the frame, at least {@linkcode MARGIN_FRACTION} of the side away from the border,
 * for the whole clip.
 */

/** Shapes, in the order used by tables and reports. */
export const SHAPES = ["circle", "square", "triangle"] as const;
/** A shape name. */
export type Shape = typeof SHAPES[number];

/** Shape colours, in the order used by tables and reports. */
export const COLOURS = ["red", "green", "blue", "yellow", "white"] as const;
/** A colour name. */
export type Colour = typeof COLOURS[number];

/** Motion directions (screen directions: "up" is towards the top row). */
export const DIRECTIONS = ["left", "right", "up", "down"] as const;
/** A motion direction. */
export type Direction = typeof DIRECTIONS[number];

/** Size classes: the shape's half-extent is this fraction of the shorter frame side. */
export const SIZES = ["small", "medium", "large"] as const;
/** A size class. */
export type Size = typeof SIZES[number];

/** Backgrounds: two plain ones and a mild, static value-noise texture. */
export const BACKGROUNDS = ["dark", "gray", "textured"] as const;
/** A background name. */
export type Background = typeof BACKGROUNDS[number];

/** RGB of each shape colour (well separated from each other and from every background). */
export const PALETTE: Readonly<Record<Colour, readonly [number, number, number]>> = {
  red: [220, 50, 50],
  green: [50, 190, 70],
  blue: [60, 100, 235],
  yellow: [235, 215, 50],
  white: [240, 240, 240],
};

/** Base RGB of each background (the texture adds a static ±{@linkcode TEXTURE_AMPLITUDE}). */
export const BACKGROUND_RGB: Readonly<Record<Background, readonly [number, number, number]>> = {
  dark: [20, 22, 28],
  gray: [100, 100, 104],
  textured: [48, 46, 52],
};

/** Peak deviation of the "textured" background from its base colour. */
export const TEXTURE_AMPLITUDE = 14;

/** Half-extent of each size class as a fraction of the shorter frame side. */
export const SIZE_FRACTION: Readonly<Record<Size, number>> = {
  small: 0.13,
  medium: 0.165,
  large: 0.2,
};

/** Largest `objectScale` of {@linkcode sampleScene}: a large shape still travels a sixth of the side. */
export const MAX_OBJECT_SCALE = 1.8;

/** The shape keeps at least this fraction of the shorter side away from the frame border. */
export const MARGIN_FRACTION = 1 / 32;

/** Speed range in pixels per frame at 64 px (scaled with the frame side). */
export const SPEED_RANGE: readonly [number, number] = [1.5, 3];

/**
 * How a shape moves: `drift` starts anywhere the whole travel fits, at 1.5-3 px/frame;
 * `cross` goes from one edge to the opposite one in the clip, through the middle band of the
 * frame ({@linkcode CROSS_BAND_FRACTION}), so that the caption fixes the layout of every frame.
 */
export const MOTIONS = ["drift", "cross"] as const;
export type Motion = typeof MOTIONS[number];

/** `cross` motion: the centre stays within this fraction of the side around the middle line. */
export const CROSS_BAND_FRACTION = 1 / 16;

/** The attributes a caption talks about. */
export interface SceneAttributes {
  shape: Shape;
  colour: Colour;
  direction: Direction;
  size: Size;
  background: Background;
}

/** A fully specified scene: attributes plus the sampled geometry and exact colours. */
export interface Scene extends SceneAttributes {
  /** Half-extent in pixels (circle radius, half the square side, half the triangle base/height). */
  radius: number;
  /** Shape centre at frame 0, pixels (x to the right, y down; pixel centres at +0.5). */
  start: [number, number];
  /** Displacement per frame, pixels. */
  velocity: [number, number];
  /** Shape RGB (the palette colour with a small per-clip jitter). */
  rgb: [number, number, number];
  /** Seed of the background texture (unused for plain backgrounds). */
  textureSeed: number;
}

/** Frame geometry of a clip. */
export interface ClipGeometry {
  width: number;
  height: number;
  frames: number;
}

/**
 * A small, fast, seeded PRNG (mulberry32). Equal seeds give equal sequences on every platform.
 */
export class Rng {
  #s: number;

  /** Seeds the generator with any 32-bit integer (other numbers are truncated). */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A uniformly chosen element. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Rng.pick: empty list");
    return items[this.int(items.length)]!;
  }

  /** A standard normal sample (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** Shuffles `items` in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

/** Mixes integers into one well-spread 32-bit seed (for per-clip seeds from (seed, index)). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

function checkGeometry(fn: string, g: ClipGeometry): void {
  for (const k of ["width", "height"] as const) {
    if (!Number.isInteger(g[k]) || g[k] < 16) {
      throw new RangeError(`${fn}: ${k} must be an integer >= 16, got ${g[k]}`);
    }
  }
  if (!Number.isInteger(g.frames) || g.frames < 2) {
    throw new RangeError(
      `${fn}: frames must be an integer >= 2 (the shape moves), got ${g.frames}`,
    );
  }
}

/** Throws a RangeError naming `fn` unless 0 < `scale` <= {@linkcode MAX_OBJECT_SCALE}. */
export function checkObjectScale(fn: string, scale: number): void {
  if (!(scale > 0 && scale <= MAX_OBJECT_SCALE)) {
    throw new RangeError(`${fn}: objectScale must be in (0, ${MAX_OBJECT_SCALE}], got ${scale}`);
  }
}

/**
 * Samples a scene. Attributes given in `attrs` are kept, the others are drawn uniformly; then
 * the size jitter, speed and start position (see {@linkcode MOTIONS}; the shape stays fully
 * visible), colour jitter and texture seed. `drift` moves at 1.5-3 px/frame at 64 px (lowered
 * when the clip is too long for the frame). `objectScale` multiplies every size class's
 * {@linkcode SIZE_FRACTION} (default 1, at most {@linkcode MAX_OBJECT_SCALE}); it changes no draw.
 */
export function sampleScene(
  rng: Rng,
  geometry: ClipGeometry,
  attrs: Partial<SceneAttributes> = {},
  motion: Motion = "drift",
  objectScale = 1,
): Scene {
  checkGeometry("sampleScene", geometry);
  checkObjectScale("sampleScene", objectScale);
  const { width, height, frames } = geometry;
  const shape = attrs.shape ?? rng.pick(SHAPES);
  const colour = attrs.colour ?? rng.pick(COLOURS);
  const direction = attrs.direction ?? rng.pick(DIRECTIONS);
  const size = attrs.size ?? rng.pick(SIZES);
  const background = attrs.background ?? rng.pick(BACKGROUNDS);
  const side = Math.min(width, height);
  const radius = side * SIZE_FRACTION[size] * objectScale * rng.uniform(0.95, 1.05);
  const margin = side * MARGIN_FRACTION;
  const horizontal = direction === "left" || direction === "right";
  const along = horizontal ? width : height;
  const across = horizontal ? height : width;
  const room = along - 2 * (radius + margin); // centre travel that keeps the shape inside
  const scale = side / 64;
  const vMax = room / (frames - 1);
  const lo = radius + margin;
  let speed: number, a0: number, b0: number;
  if (motion === "cross") {
    speed = vMax; // edge to edge over the clip
    a0 = lo;
    const band = side * CROSS_BAND_FRACTION;
    b0 = Math.min(across - lo, Math.max(lo, across / 2 + rng.uniform(-band, band)));
  } else {
    speed = Math.min(rng.uniform(SPEED_RANGE[0] * scale, SPEED_RANGE[1] * scale), vMax);
    const travel = speed * (frames - 1);
    a0 = rng.uniform(lo, lo + Math.max(0, room - travel));
    b0 = rng.uniform(lo, across - lo);
  }
  const sign = direction === "right" || direction === "down" ? 1 : -1;
  // Moving towards -axis: start near the far end so the whole travel fits.
  const startAlong = sign > 0 ? a0 : along - a0;
  const start: [number, number] = horizontal ? [startAlong, b0] : [b0, startAlong];
  const velocity: [number, number] = horizontal ? [sign * speed, 0] : [0, sign * speed];
  const base = PALETTE[colour];
  const rgb = base.map((c) => Math.max(0, Math.min(255, Math.round(c + rng.uniform(-10, 10))))) as [
    number,
    number,
    number,
  ];
  const textureSeed = Math.floor(rng.next() * 2 ** 32) >>> 0;
  return {
    shape,
    colour,
    direction,
    size,
    background,
    radius,
    start,
    velocity,
    rgb,
    textureSeed,
  };
}

/** Whether the point (x, y) lies inside the shape centred at (cx, cy) with half-extent r. */
function inside(shape: Shape, x: number, y: number, cx: number, cy: number, r: number): boolean {
  const dx = x - cx;
  const dy = y - cy;
  switch (shape) {
    case "circle":
      return dx * dx + dy * dy <= r * r;
    case "square":
      return Math.abs(dx) <= r && Math.abs(dy) <= r;
    case "triangle":
      // apex at the top (cy - r), base along cy + r from cx - r to cx + r
      return dy <= r && Math.abs(dx) <= (dy + r) / 2;
  }
}

/** Smooth value noise in [-1, 1] on a grid of `cell` pixels, bilinearly interpolated. */
function valueNoise(width: number, height: number, cell: number, seed: number): Float32Array {
  const gw = Math.ceil(width / cell) + 2;
  const gh = Math.ceil(height / cell) + 2;
  const rng = new Rng(seed);
  const grid = new Float32Array(gw * gh).map(() => rng.uniform(-1, 1));
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const gy = (y + 0.5) / cell;
    const y0 = Math.floor(gy);
    const fy = gy - y0;
    const sy = fy * fy * (3 - 2 * fy);
    for (let x = 0; x < width; x++) {
      const gx = (x + 0.5) / cell;
      const x0 = Math.floor(gx);
      const fx = gx - x0;
      const sx = fx * fx * (3 - 2 * fx);
      const a = grid[y0 * gw + x0]! * (1 - sx) + grid[y0 * gw + x0 + 1]! * sx;
      const b = grid[(y0 + 1) * gw + x0]! * (1 - sx) + grid[(y0 + 1) * gw + x0 + 1]! * sx;
      out[y * width + x] = a * (1 - sy) + b * sy;
    }
  }
  return out;
}

/** The background image of a scene (H*W*3 RGB, static over the clip). */
export function renderBackground(scene: Scene, width: number, height: number): Uint8Array {
  const [r, g, b] = BACKGROUND_RGB[scene.background];
  const out = new Uint8Array(width * height * 3);
  if (scene.background !== "textured") {
    for (let i = 0; i < width * height; i++) out.set([r, g, b], i * 3);
    return out;
  }
  const coarse = valueNoise(width, height, Math.max(4, Math.round(width / 8)), scene.textureSeed);
  const fine = valueNoise(width, height, 2, scene.textureSeed ^ 0x5bd1e995);
  for (let i = 0; i < width * height; i++) {
    const n = TEXTURE_AMPLITUDE * (0.7 * coarse[i]! + 0.3 * fine[i]!);
    out[i * 3] = Math.round(r + n);
    out[i * 3 + 1] = Math.round(g + n);
    out[i * 3 + 2] = Math.round(b + n * 0.8);
  }
  return out;
}

/** Supersampling factor per axis for the anti-aliased edges. */
const SS = 4;

/**
 * Renders a scene into `frames` RGB frames (each a fresh H*W*3 Uint8Array, rows top first).
 * Edges are anti-aliased by 4x4 supersampling of the shape's coverage.
 */
export function renderScene(scene: Scene, geometry: ClipGeometry): Uint8Array[] {
  checkGeometry("renderScene", geometry);
  const { width, height, frames } = geometry;
  const bg = renderBackground(scene, width, height);
  const [fr, fg, fb] = scene.rgb;
  const r = scene.radius;
  const out: Uint8Array[] = [];
  for (let f = 0; f < frames; f++) {
    const frame = bg.slice();
    const cx = scene.start[0] + scene.velocity[0] * f;
    const cy = scene.start[1] + scene.velocity[1] * f;
    const x0 = Math.max(0, Math.floor(cx - r) - 1);
    const x1 = Math.min(width - 1, Math.ceil(cx + r) + 1);
    const y0 = Math.max(0, Math.floor(cy - r) - 1);
    const y1 = Math.min(height - 1, Math.ceil(cy + r) + 1);
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        let hits = 0;
        for (let sy = 0; sy < SS; sy++) {
          const py = y + (sy + 0.5) / SS;
          for (let sx = 0; sx < SS; sx++) {
            if (inside(scene.shape, x + (sx + 0.5) / SS, py, cx, cy, r)) hits++;
          }
        }
        if (hits === 0) continue;
        const a = hits / (SS * SS);
        const o = (y * width + x) * 3;
        frame[o] = Math.round(frame[o]! * (1 - a) + fr * a);
        frame[o + 1] = Math.round(frame[o + 1]! * (1 - a) + fg * a);
        frame[o + 2] = Math.round(frame[o + 2]! * (1 - a) + fb * a);
      }
    }
    out.push(frame);
  }
  return out;
}

/** Concatenates per-frame RGB arrays into one packed T*H*W*3 array (the layout of io/video.ts). */
export function packFrames(frames: readonly Uint8Array[]): Uint8Array {
  if (frames.length === 0) throw new RangeError("packFrames: no frames");
  const n = frames[0]!.length;
  const out = new Uint8Array(n * frames.length);
  frames.forEach((f, i) => {
    if (f.length !== n) {
      throw new RangeError(`packFrames: frame ${i} has ${f.length} bytes, frame 0 has ${n}`);
    }
    out.set(f, i * n);
  });
  return out;
}

/** Splits a packed T*H*W*3 array into per-frame views (no copy). */
export function unpackFrames(packed: Uint8Array, width: number, height: number): Uint8Array[] {
  const n = width * height * 3;
  if (n === 0 || packed.length % n !== 0) {
    throw new RangeError(
      `unpackFrames: ${packed.length} bytes is not a whole number of ${width}x${height} RGB frames`,
    );
  }
  const out: Uint8Array[] = [];
  for (let o = 0; o < packed.length; o += n) out.push(packed.subarray(o, o + n));
  return out;
}
