/**
 * Writes the synthetic captioned-video dataset: mp4 clips, `train.csv` (the reference's
 * training columns, `data.md` §2), `heldout.csv` (prompts of colour×shape×direction combinations
 * that never occur in training) and `meta.json` (settings, attribute lists, palette, held-out
 * combinations).
 *
 * Paths in the CSVs are relative to the folder that holds them.
 */
import { parse } from "npm:csv-parse@5.6.0/sync";
import { writeVideo } from "../../io/video.ts";
import { canonicalCaption, DROPPABLE, makeCaption, partialCaption } from "./captions.ts";
import {
  BACKGROUND_RGB,
  BACKGROUNDS,
  checkObjectScale,
  type Colour,
  COLOURS,
  CROSS_BAND_FRACTION,
  type Direction,
  DIRECTIONS,
  mixSeed,
  type Motion,
  MOTIONS,
  packFrames,
  PALETTE,
  renderScene,
  Rng,
  sampleScene,
  type SceneAttributes,
  type Shape,
  SHAPES,
  SIZE_FRACTION,
  SIZES,
  SPEED_RANGE,
} from "./scene.ts";

/** One colour×shape×direction combination. */
export interface Combo {
  colour: Colour;
  shape: Shape;
  direction: Direction;
}

/** Settings of {@linkcode writeDataset}. */
export interface DatasetOptions {
  /** Number of training clips (default 2000). */
  count?: number;
  /** Frame side in pixels (default 64); `width`/`height` override it per axis. */
  size?: number;
  width?: number;
  height?: number;
  /** Frames per clip (default 16). */
  frames?: number;
  /** Frame rate written to the files and the CSV (default 8). */
  fps?: number;
  /** Master seed (default 0). */
  seed?: number;
  /** How the shapes move (default `drift`). */
  motion?: Motion;
  /**
   * Extra `train.csv` rows per clip (default 0), each naming the same video with a caption that
   * leaves the colour or the direction out ({@linkcode partialCaption}). They follow all the full
   * captions, so rows 0..count-1 are the same with or without variants.
   */
  captionVariants?: number;
  /**
   * Multiplies the half-extent of every size class ({@linkcode SIZE_FRACTION}; default 1, at most
   * `MAX_OBJECT_SCALE` of scene.ts). The draws are the same, so only the shapes' sizes (and the
   * travel that keeps them inside the frame) change.
   */
  objectScale?: number;
  /** Number of held-out colour×shape×direction combinations (default 12). */
  holdout?: number;
  /** Prompts written to heldout.csv per held-out combination (default 2; the first is canonical). */
  promptsPerHoldout?: number;
  /** x264 CRF of the clips (default 12: near-lossless at this size). */
  crf?: number;
  /** Clips encoded at once (default 4). */
  concurrency?: number;
  /** Called after each clip with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * The bucket config that keeps every clip of the dataset whole: one resolution of the clips'
 * area (`"{n}px"`, n² = w·h), all their frames, probability 1, batch 16.
 */
export function syntheticBuckets(
  width: number,
  height: number,
  frames: number,
): Record<string, Record<string, [number, number]>> {
  return { [`${Math.round(Math.sqrt(width * height))}px`]: { [String(frames)]: [1.0, 16] } };
}

/** What {@linkcode writeDataset} wrote. */
export interface DatasetSummary {
  dir: string;
  trainCsv: string;
  heldoutCsv: string;
  metaJson: string;
  /** `buckets.json`: the bucket config for `deno task cache --buckets` (clips kept whole). */
  bucketsJson: string;
  clips: number;
  heldout: Combo[];
  heldoutPrompts: number;
}

/** A row of heldout.csv. */
export interface HeldoutPrompt extends Combo {
  name: string;
  text: string;
}

/** `colour/shape/direction`: the key of a combination. */
export function comboKey(c: Combo): string {
  return `${c.colour}/${c.shape}/${c.direction}`;
}

/** Every colour×shape×direction combination, in table order. */
export function allCombos(): Combo[] {
  const out: Combo[] = [];
  for (const colour of COLOURS) {
    for (const shape of SHAPES) {
      for (const direction of DIRECTIONS) out.push({ colour, shape, direction });
    }
  }
  return out;
}

/**
 * Chooses `n` combinations to hold out, deterministically from `seed`, such that every pair of
 * attribute values (colour-shape, colour-direction, shape-direction) keeps at least two training
 * combinations — so every single value, and every pair, is still seen in training and only the
 * triple is new. Throws when `n` combinations cannot be held out under that rule.
 */
export function chooseHoldout(n: number, seed: number): Combo[] {
  const combos = allCombos();
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`chooseHoldout: holdout must be a non-negative integer, got ${n}`);
  }
  const pairs = (c: Combo) => [
    `cs:${c.colour}/${c.shape}`,
    `cd:${c.colour}/${c.direction}`,
    `sd:${c.shape}/${c.direction}`,
  ];
  // Greedy selection under the pair rule in 256 seeded orders; keep the most balanced result
  // (held-out combinations spread evenly over the colours, shapes and directions).
  let best: Combo[] | null = null;
  let bestSpread = Infinity;
  for (let attempt = 0; attempt < 256; attempt++) {
    const left = new Map<string, number>();
    for (const c of combos) for (const p of pairs(c)) left.set(p, (left.get(p) ?? 0) + 1);
    const order = new Rng(mixSeed(seed, 0x401d, attempt)).shuffle(combos.slice());
    const chosen: Combo[] = [];
    for (const c of order) {
      if (chosen.length === n) break;
      if (pairs(c).every((p) => left.get(p)! > 2)) {
        for (const p of pairs(c)) left.set(p, left.get(p)! - 1);
        chosen.push(c);
      }
    }
    if (chosen.length !== n) continue;
    let spread = 0;
    for (
      const [k, values] of [["colour", COLOURS], ["shape", SHAPES], [
        "direction",
        DIRECTIONS,
      ]] as const
    ) {
      const counts = values.map((v) => chosen.filter((c) => c[k] === v).length);
      spread += Math.max(...counts) - Math.min(...counts);
    }
    if (spread < bestSpread) [best, bestSpread] = [chosen, spread];
  }
  if (best) {
    const idx = (c: Combo) => combos.findIndex((k) => comboKey(k) === comboKey(c));
    return best.sort((a, b) => idx(a) - idx(b));
  }
  throw new RangeError(
    `chooseHoldout: cannot hold out ${n} of ${combos.length} combinations while keeping every ` +
      `attribute pair in training; use a smaller --holdout (12 to 16 works)`,
  );
}

/** Quotes one CSV field (RFC 4180): fields with a comma, quote or newline are quoted. */
export function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** A CSV document from a header and rows (LF line ends, trailing newline). */
export function toCsv(header: readonly string[], rows: readonly (string | number)[][]): string {
  return [header, ...rows].map((r) => r.map(csvField).join(",")).join("\n") + "\n";
}

/** Columns of train.csv: the reference's minimum training header (`data.md` §2). */
export const TRAIN_COLUMNS = [
  "path",
  "text",
  "num_frames",
  "height",
  "width",
  "aspect_ratio",
  "resolution",
  "fps",
] as const;

/** Columns of heldout.csv. */
export const HELDOUT_COLUMNS = ["name", "text", "colour", "shape", "direction"] as const;

function positiveInt(name: string, v: number, min = 1): number {
  if (!Number.isInteger(v) || v < min) {
    throw new RangeError(`writeDataset: ${name} must be an integer >= ${min}, got ${v}`);
  }
  return v;
}

/** The attributes and caption of training clip `index` (deterministic in (seed, index)). */
export function trainClip(
  index: number,
  seed: number,
  train: readonly Combo[],
): { rng: Rng; attrs: Partial<SceneAttributes>; combo: Combo } {
  // Balanced combinations: each block of |train| clips is one seeded permutation.
  const block = Math.floor(index / train.length);
  const perm = new Rng(mixSeed(seed, 0xb10c, block)).shuffle(train.map((_, i) => i));
  const combo = train[perm[index % train.length]!]!;
  const rng = new Rng(mixSeed(seed, 0xc11b, index));
  return { rng, attrs: { ...combo }, combo };
}

async function writeAtomicText(path: string, text: string): Promise<void> {
  const tmp = `${path}.${crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36)}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

/**
 * Renders and writes the dataset into `dir` (created if needed): `videos/NNNNN.mp4`,
 * `train.csv`, `heldout.csv`, `meta.json`. Deterministic in the options (same seed, same clips
 * and captions). The CSVs and meta.json are written last, so an interrupted run leaves no CSV
 * pointing at missing clips.
 */
export async function writeDataset(
  dir: string,
  opts: DatasetOptions = {},
): Promise<DatasetSummary> {
  const count = positiveInt("count", opts.count ?? 2000);
  const size = opts.size ?? 64;
  const width = positiveInt("width", opts.width ?? size, 16);
  const height = positiveInt("height", opts.height ?? size, 16);
  const frames = positiveInt("frames", opts.frames ?? 16, 2);
  const fps = opts.fps ?? 8;
  if (!(fps > 0)) throw new RangeError(`writeDataset: fps must be positive, got ${fps}`);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) throw new RangeError(`writeDataset: seed must be an integer`);
  const perHoldout = positiveInt("promptsPerHoldout", opts.promptsPerHoldout ?? 2);
  const crf = opts.crf ?? 12;
  const motion = opts.motion ?? "drift";
  if (!MOTIONS.includes(motion)) {
    throw new RangeError(`writeDataset: motion must be ${MOTIONS.join(" or ")}, got "${motion}"`);
  }
  const variants = positiveInt("captionVariants", opts.captionVariants ?? 0, 0);
  const objectScale = opts.objectScale ?? 1;
  checkObjectScale("writeDataset", objectScale); // before any file is written
  const concurrency = positiveInt("concurrency", opts.concurrency ?? 4);
  const heldout = chooseHoldout(opts.holdout ?? 12, seed);
  const heldKeys = new Set(heldout.map(comboKey));
  const train = allCombos().filter((c) => !heldKeys.has(comboKey(c)));

  await Deno.mkdir(`${dir}/videos`, { recursive: true });
  const geometry = { width, height, frames };
  const digits = Math.max(5, String(count - 1).length);
  const rows: (string | number)[][] = new Array(count * (1 + variants));
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const { rng, attrs } = trainClip(i, seed, train);
      const scene = sampleScene(rng, geometry, attrs, motion, objectScale);
      // Ends with "." so that the training caption ("... . 8 FPS.", data.md §3) reads like the
      // inference prompt (addFpsInfo ends the text with "." before " 8 FPS.").
      const text = `${makeCaption(scene, rng)}.`;
      const rel = `videos/${String(i).padStart(digits, "0")}.mp4`;
      const clip = packFrames(renderScene(scene, geometry));
      await writeVideo(`${dir}/${rel}`, clip, { t: frames, h: height, w: width, fps, crf });
      rows[i] = [rel, text, frames, height, width, height / width, height * width, fps];
      for (let v = 1; v <= variants; v++) {
        // own stream: the full captions and the clips do not depend on the variants
        const vr = new Rng(mixSeed(seed, 0xca9, v, i));
        const part = `${partialCaption(scene, vr.pick(DROPPABLE), vr)}.`;
        rows[v * count + i] = [rel, part, ...rows[i]!.slice(2)];
      }
      opts.onProgress?.(++done, count);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));

  const prompts = heldoutPrompts(heldout, seed, perHoldout);
  const trainCsv = `${dir}/train.csv`;
  const heldoutCsv = `${dir}/heldout.csv`;
  const metaJson = `${dir}/meta.json`;
  const bucketsJson = `${dir}/buckets.json`;
  await writeAtomicText(trainCsv, toCsv(TRAIN_COLUMNS, rows));
  await writeAtomicText(
    heldoutCsv,
    toCsv(HELDOUT_COLUMNS, prompts.map((p) => [p.name, p.text, p.colour, p.shape, p.direction])),
  );
  const meta = {
    generator: "kino synthetic shapes v1",
    seed,
    count,
    width,
    height,
    frames,
    fps,
    crf,
    attributes: {
      shapes: SHAPES,
      colours: COLOURS,
      directions: DIRECTIONS,
      sizes: SIZES,
      backgrounds: BACKGROUNDS,
    },
    palette: PALETTE,
    backgroundRgb: BACKGROUND_RGB,
    objectScale,
    sizeFraction: Object.fromEntries(SIZES.map((z) => [z, SIZE_FRACTION[z] * objectScale])),
    motion,
    captionVariants: variants,
    ...(motion === "cross"
      ? { crossBandFraction: CROSS_BAND_FRACTION }
      : { speedRangePxPerFrameAt64: SPEED_RANGE }),
    heldoutCombos: heldout,
    heldoutPrompts: prompts.length,
    trainCombos: train.length,
  };
  await writeAtomicText(metaJson, JSON.stringify(meta, null, 2) + "\n");
  await writeAtomicText(
    bucketsJson,
    JSON.stringify(syntheticBuckets(width, height, frames)) + "\n",
  );
  return {
    dir,
    trainCsv,
    heldoutCsv,
    metaJson,
    bucketsJson,
    clips: count,
    heldout,
    heldoutPrompts: prompts.length,
  };
}

/**
 * The evaluation prompts of held-out combinations: per combination the canonical caption
 * ("a red circle moving right") and `perCombo - 1` captions drawn from the grammar.
 * Distinct texts per combination where the grammar allows.
 */
export function heldoutPrompts(
  heldout: readonly Combo[],
  seed: number,
  perCombo = 2,
): HeldoutPrompt[] {
  const out: HeldoutPrompt[] = [];
  heldout.forEach((c, ci) => {
    const rng = new Rng(mixSeed(seed, 0x4e1d, ci));
    const texts = new Set([canonicalCaption(c)]);
    for (let tries = 0; texts.size < perCombo && tries < 100; tries++) {
      const scene = { ...c, size: rng.pick(SIZES), background: rng.pick(BACKGROUNDS) };
      texts.add(makeCaption(scene, rng));
    }
    for (const text of texts) {
      out.push({ name: `heldout_${String(out.length).padStart(4, "0")}`, text, ...c });
    }
  });
  return out;
}

/**
 * Reads heldout.csv (as written by {@linkcode writeDataset}). Throws when the file lacks the
 * columns or a row names an unknown attribute value.
 */
export async function readHeldoutPrompts(csvPath: string): Promise<HeldoutPrompt[]> {
  const rows = parse(await Deno.readTextFile(csvPath), { columns: true }) as Record<
    string,
    string
  >[];
  const known = { colour: COLOURS, shape: SHAPES, direction: DIRECTIONS } as const;
  return rows.map((r, i) => {
    for (const k of HELDOUT_COLUMNS) {
      if (r[k] === undefined) {
        throw new Error(`${csvPath}: no '${k}' column (expected ${HELDOUT_COLUMNS.join(",")})`);
      }
    }
    for (const k of ["colour", "shape", "direction"] as const) {
      if (!(known[k] as readonly string[]).includes(r[k]!)) {
        throw new Error(`${csvPath}: row ${i + 1} has unknown ${k} '${r[k]}'`);
      }
    }
    return {
      name: r.name!,
      text: r.text!,
      colour: r.colour as Colour,
      shape: r.shape as Shape,
      direction: r.direction as Direction,
    };
  });
}
