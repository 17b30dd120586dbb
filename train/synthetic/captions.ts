/**
 * The caption grammar of the synthetic dataset and its parser.
 *
 * Grammar (one of each alternative, chosen by a seeded {@linkcode Rng}):
 *
 *     caption    := subject " " motion [background]
 *     subject    := "a " [size " "] colour " " shape | colour " " shape
 *     motion     := verb " " dir
 *     verb       := "moving" | "moves" | "sliding" | "slides" | "going" | "drifting"
 *     dir        := "left" | "to the left" | "leftward" | "right" | ... | "up" | "upward"
 *                 | "to the top" | "down" | "downward" | "to the bottom"
 *     background := " on a " bg " background" | ", " bg " background"
 *
 * {@linkcode partialCaption} writes the same grammar with the colour or the motion left out.
 *
 * {@linkcode parsePrompt} reads these captions back, and also free text that names one colour,
 * one shape and one direction with the synonyms in {@linkcode SYNONYMS}.
 */
import {
  type Background,
  type Colour,
  COLOURS,
  type Direction,
  type Rng,
  type SceneAttributes,
  type Shape,
  type Size,
} from "./scene.ts";

/** What a prompt asks for: the three evaluated attributes, plus size and background if named. */
export interface PromptAttributes {
  colour: Colour;
  shape: Shape;
  direction: Direction;
  size?: Size;
  background?: Background;
}

/** Words the parser maps to each attribute value (lower case; multi-word phrases allowed). */
export const SYNONYMS = {
  colour: Object.fromEntries(COLOURS.map((c) => [c, [c]])) as Record<Colour, string[]>,
  shape: {
    circle: ["circle", "circles", "disc", "disk", "ball", "dot", "round shape"],
    square: ["square", "squares", "box", "block"],
    triangle: ["triangle", "triangles"],
  } as Record<Shape, string[]>,
  direction: {
    left: ["left", "leftward", "leftwards", "to the left", "towards the left", "westward"],
    right: ["right", "rightward", "rightwards", "to the right", "towards the right", "eastward"],
    up: ["up", "upward", "upwards", "to the top", "towards the top", "rising", "rises"],
    down: [
      "down",
      "downward",
      "downwards",
      "to the bottom",
      "towards the bottom",
      "falling",
      "falls",
    ],
  } as Record<Direction, string[]>,
  size: {
    small: ["small", "little", "tiny"],
    medium: ["medium", "medium-sized"],
    large: ["large", "big"],
  } as Record<Size, string[]>,
  background: {
    dark: ["dark", "black"],
    gray: ["gray", "grey"],
    textured: ["textured"],
  } as Record<Background, string[]>,
};

/** Direction phrases the caption generator uses (a subset of the parser's synonyms). */
const DIR_PHRASES: Record<Direction, string[]> = {
  left: ["left", "to the left", "leftward"],
  right: ["right", "to the right", "rightward"],
  up: ["up", "upward", "to the top"],
  down: ["down", "downward", "to the bottom"],
};
const VERBS = ["moving", "moves", "sliding", "slides", "going", "drifting"];
const SIZE_WORDS: Record<Size, string[]> = {
  small: ["small"],
  medium: [""],
  large: ["large", "big"],
};
const BG_WORDS: Record<Background, string[]> = {
  dark: ["dark", "black"],
  gray: ["gray", "grey"],
  textured: ["textured"],
};

function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** The canonical caption of an attribute combination, e.g. "a red circle moving right". */
export function canonicalCaption(
  a: Pick<SceneAttributes, "colour" | "shape" | "direction">,
): string {
  return `${article(a.colour)} ${a.colour} ${a.shape} moving ${a.direction}`;
}

/**
 * A caption for a scene drawn from the grammar with `rng`. Size and background are mentioned
 * with probability 0.6 and 0.5; the medium size is never named.
 */
export function makeCaption(a: SceneAttributes, rng: Rng): string {
  const size = rng.next() < 0.6 ? rng.pick(SIZE_WORDS[a.size]) : "";
  const noun = `${size ? size + " " : ""}${a.colour} ${a.shape}`;
  const subject = rng.next() < 0.85 ? `${article(noun)} ${noun}` : noun;
  return `${subject} ${rng.pick(VERBS)} ${rng.pick(DIR_PHRASES[a.direction])}` +
    backgroundPhrase(a.background, rng);
}

/** The optional background phrase: " on a gray background", ", dark background" or "" (p 0.5). */
function backgroundPhrase(background: Background, rng: Rng): string {
  if (rng.next() >= 0.5) return "";
  const bg = rng.pick(BG_WORDS[background]);
  return rng.next() < 0.6 ? ` on ${article(bg)} ${bg} background` : `, ${bg} background`;
}

/** Attributes a caption variant may leave out ({@linkcode partialCaption}). */
export const DROPPABLE = ["colour", "direction"] as const;
/** An attribute a caption variant leaves out. */
export type Droppable = typeof DROPPABLE[number];

/**
 * A caption of the grammar that leaves one attribute out: "a small square moving left" (no
 * colour) or "a red square on a gray background" (no direction). Training on such variants beside
 * the full captions makes each word carry its own attribute, rather than the model learning each
 * (colour, shape, direction) combination as a whole. The shape is always named.
 */
export function partialCaption(a: SceneAttributes, drop: Droppable, rng: Rng): string {
  const size = rng.next() < 0.6 ? rng.pick(SIZE_WORDS[a.size]) : "";
  const words = [size, drop === "colour" ? "" : a.colour, a.shape].filter((w) => w).join(" ");
  const motion = drop === "direction"
    ? ""
    : ` ${rng.pick(VERBS)} ${rng.pick(DIR_PHRASES[a.direction])}`;
  return `${article(words)} ${words}${motion}${backgroundPhrase(a.background, rng)}`;
}

type Entry<K extends string> = { value: K; words: string[] };

/** Finds every attribute value whose synonym occurs in the token list (whole words). */
function matches<K extends string>(
  tokens: string[],
  table: Record<K, string[]>,
): { value: K; index: number }[] {
  const entries: Entry<K>[] = (Object.keys(table) as K[]).map((value) => ({
    value,
    words: table[value],
  }));
  const found: { value: K; index: number }[] = [];
  const used = new Set<number>();
  // Longest phrases first, so "to the left" is one match and its tokens are not reused.
  const phrases = entries
    .flatMap((e) => e.words.map((w) => ({ value: e.value, toks: w.split(" ") })))
    .sort((a, b) => b.toks.length - a.toks.length);
  for (const p of phrases) {
    for (let i = 0; i + p.toks.length <= tokens.length; i++) {
      if (p.toks.every((t, k) => tokens[i + k] === t && !used.has(i + k))) {
        p.toks.forEach((_, k) => used.add(i + k));
        found.push({ value: p.value, index: i });
      }
    }
  }
  return found.sort((a, b) => a.index - b.index);
}

function unique<K extends string>(found: { value: K }[]): K | null | undefined {
  const values = new Set(found.map((f) => f.value));
  if (values.size === 0) return undefined;
  return values.size === 1 ? found[0]!.value : null;
}

/**
 * Parses a prompt into its attributes, or returns null when it does not name exactly one colour,
 * one shape and one direction (missing or conflicting, e.g. "moving left then right").
 * Understands every caption of the grammar and the synonyms of {@linkcode SYNONYMS}; matching is
 * case-insensitive on whole words, punctuation is ignored. Words of a background phrase
 * ("on a gray background", ", dark background") are read as the background, never as a colour.
 */
export function parsePrompt(text: string): PromptAttributes | null {
  let tokens = text.toLowerCase().replace(/[^a-z0-9\- ]+/g, " ").split(/\s+/).filter((t) => t);
  // Background: "<bg words> background(s)"; take the word before "background" out of play.
  let background: Background | undefined;
  const bgAt = tokens.findIndex((t) => t === "background" || t === "backdrop");
  if (bgAt > 0) {
    const bg = matches([tokens[bgAt - 1]!], SYNONYMS.background);
    if (bg.length === 1) background = bg[0]!.value;
    tokens = tokens.slice(0, bgAt - 1).concat(tokens.slice(bgAt + 1));
  }
  const colour = unique(matches(tokens, SYNONYMS.colour));
  const shape = unique(matches(tokens, SYNONYMS.shape));
  const direction = unique(matches(tokens, SYNONYMS.direction));
  if (!colour || !shape || !direction) return null;
  const out: PromptAttributes = { colour, shape, direction };
  const size = unique(matches(tokens, SYNONYMS.size));
  if (size) out.size = size;
  if (background) out.background = background;
  return out;
}
