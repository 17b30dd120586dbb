/**
 * Tokenizers of the two text encoders, on `npm:@huggingface/tokenizers` (a pure-JS
 * implementation of Hugging Face `tokenizer.json` pipelines; works offline):
 *
 * - **T5** (`google/t5-v1_1-xxl`): SentencePiece unigram, no lower-casing;
 *   `tokens + [</s>]`, cut so that EOS stays last, padded with `<pad>` (0) to `maxLength` (512).
 * - **CLIP** (`openai/clip-vit-large-patch14`): byte-level BPE with `</w>` word ends,
 *   whitespace collapsed and lower-cased; `[<|startoftext|>] + tokens + [<|endoftext|>]`, cut so
 *   that EOS stays last, padded to `maxLength` (77) with the pad token (`<|endoftext|>` = 49407
 *   for this checkpoint, read from `tokenizer_config.json` / `special_tokens_map.json`).
 *
 * The special tokens are added here, never by the `tokenizer.json` post-processor (the real
 * files' processors add the same ones; encoding without them and adding them once keeps the
 * truncation rule in one place). A folder without `tokenizer.json` but with a SentencePiece
 * `spiece.model` (as `google/t5-v1_1-xxl` is published) is converted on the fly
 * (`./spiece.ts`). Spec: `shared/spec/text-encoders.md` §2.1, §3.1.
 *
 * @module
 */
import { Tokenizer } from "npm:@huggingface/tokenizers@0.2.0";
import { join } from "node:path";
import { HfFolderError, requireFolder } from "./hf.ts";
import type { TokenIds } from "./ids.ts";
import { parseSentencePieceModel, sentencePieceToTokenizerJson } from "./spiece.ts";

/** Which encoder's conventions a {@linkcode TextTokenizer} follows. */
export type TokenizerKind = "t5" | "clip";

/** Default padded lengths (Open-Sora's `max_length`). */
export const DEFAULT_MAX_LENGTH: Readonly<Record<TokenizerKind, number>> = Object.freeze({
  t5: 512,
  clip: 77,
});

/** Options of {@linkcode TextTokenizer}. */
export interface TextTokenizerOptions {
  /** Padded (and truncation) length; default 512 for T5, 77 for CLIP. */
  maxLength?: number;
  /**
   * `tokenizer_config.json` / `special_tokens_map.json` contents: `bos_token`, `eos_token`,
   * `pad_token` (strings or `{content}` objects) name the special tokens; defaults are the
   * released checkpoints' (`</s>`, `<pad>`; `<|startoftext|>`, `<|endoftext|>` for all of EOS and
   * pad).
   */
  config?: Record<string, unknown>;
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

/** A tokenizer producing fixed-length id rows for one of the encoders; see the module doc. */
export class TextTokenizer {
  readonly #tok: Tokenizer;
  /** Id prepended to every row (CLIP's `<|startoftext|>`), or null (T5). */
  readonly bosId: number | null;
  /** Id ending every row's text. */
  readonly eosId: number;
  /** Id filling the rows after EOS. */
  readonly padId: number;

  private constructor(
    readonly kind: TokenizerKind,
    readonly maxLength: number,
    tok: Tokenizer,
    ids: { bos: number | null; eos: number; pad: number },
  ) {
    this.#tok = tok;
    this.bosId = ids.bos;
    this.eosId = ids.eos;
    this.padId = ids.pad;
  }

  /**
   * A tokenizer from a parsed `tokenizer.json` object.
   *
   * @example
   * ```ts ignore
   * const json = JSON.parse(await Deno.readTextFile("clip/tokenizer.json"));
   * const tok = TextTokenizer.fromJson(json, "clip");
   * tok.encode(["a cat"]).ids; // [49406, 320, 2368, 49407, 49407, ...] (77 ids)
   * ```
   */
  static fromJson(
    json: Record<string, unknown>,
    kind: TokenizerKind,
    options: TextTokenizerOptions = {},
  ): TextTokenizer {
    const maxLength = options.maxLength ?? DEFAULT_MAX_LENGTH[kind];
    const specials = kind === "clip" ? 2 : 1;
    if (!Number.isInteger(maxLength) || maxLength <= specials) {
      throw new RangeError(
        `TextTokenizer: maxLength ${maxLength} leaves no room for text (${kind} adds ${specials} ` +
          `special token${specials > 1 ? "s" : ""})`,
      );
    }
    const cfg = options.config ?? {};
    const names = kind === "clip"
      ? {
        bos: tokenName(cfg.bos_token) ?? "<|startoftext|>",
        eos: tokenName(cfg.eos_token) ?? "<|endoftext|>",
        pad: tokenName(cfg.pad_token),
      }
      : { bos: null, eos: tokenName(cfg.eos_token) ?? "</s>", pad: tokenName(cfg.pad_token) };
    const padding = json.padding as { pad_token?: unknown } | null | undefined;
    const padName = names.pad ?? tokenName(padding?.pad_token) ??
      (kind === "clip" ? names.eos : "<pad>");
    const full = { added_tokens: [], ...json };
    const tok = new Tokenizer(full, {
      eos_token: names.eos,
      ...(names.bos ? { bos_token: names.bos } : {}),
      pad_token: padName,
    });
    const id = (what: string, name: string): number => {
      const v = tok.token_to_id(name);
      if (v === undefined) {
        throw new HfFolderError(
          `the ${kind} tokenizer has no ${what} token "${name}": use the model's own ` +
            `tokenizer.json (and tokenizer_config.json)`,
        );
      }
      return v;
    };
    return new TextTokenizer(kind, maxLength, tok, {
      bos: names.bos === null ? null : id("BOS", names.bos),
      eos: id("EOS", names.eos),
      pad: id("padding", padName),
    });
  }

  /**
   * A tokenizer from a Hugging Face folder: `tokenizer.json` (or, for T5, `spiece.model`), with
   * the special tokens named by `tokenizer_config.json` / `special_tokens_map.json` when present.
   *
   * @example
   * ```ts ignore
   * const t5tok = await TextTokenizer.fromFolder("ckpts/google/t5-v1_1-xxl", "t5");
   * const clipTok = await TextTokenizer.fromFolder("ckpts/openai/clip-vit-large-patch14", "clip");
   * ```
   */
  static async fromFolder(
    dir: string,
    kind: TokenizerKind,
    options: Omit<TextTokenizerOptions, "config"> = {},
  ): Promise<TextTokenizer> {
    await requireFolder(dir, `${kind} tokenizer`);
    const config: Record<string, unknown> = {
      ...(await optionalJson(join(dir, "special_tokens_map.json"))),
      ...(await optionalJson(join(dir, "tokenizer_config.json"))),
    };
    const json = await optionalJson(join(dir, "tokenizer.json"));
    if (json) return TextTokenizer.fromJson(json, kind, { ...options, config });
    const spm = join(dir, "spiece.model");
    let bytes: Uint8Array | null = null;
    try {
      bytes = kind === "t5" ? await Deno.readFile(spm) : null;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (!bytes) {
      throw new HfFolderError(
        `${dir} has no tokenizer.json${kind === "t5" ? " or spiece.model" : ""}: download the ` +
          `model's tokenizer files into it`,
      );
    }
    const extra = typeof config.extra_ids === "number" ? config.extra_ids : 100;
    const converted = sentencePieceToTokenizerJson(parseSentencePieceModel(bytes, spm), extra);
    return TextTokenizer.fromJson(converted, kind, { ...options, config });
  }

  /** The text as the encoder's conventions clean it before the tokenizer's own normaliser. */
  clean(text: string): string {
    const t = text.replace(/\s+/g, " ").trim();
    return this.kind === "clip" ? t.toLowerCase() : t;
  }

  /** The ids of `text` without special tokens, truncation or padding. */
  tokenize(text: string): number[] {
    return this.#tok.encode(this.clean(text), { add_special_tokens: false }).ids;
  }

  /** Token string of an id (for inspection), or undefined. */
  idToToken(id: number): string | undefined {
    return this.#tok.id_to_token(id);
  }

  /**
   * Fixed-length rows `[texts.length, maxLength]`: special tokens added, truncated so that EOS
   * stays last, padded with {@linkcode TextTokenizer.padId}.
   */
  encode(texts: readonly string[]): TokenIds {
    const L = this.maxLength;
    const ids = new Int32Array(texts.length * L).fill(this.padId);
    texts.forEach((text, b) => {
      const body = this.tokenize(text).slice(0, L - (this.bosId === null ? 1 : 2));
      const row = this.bosId === null ? [...body, this.eosId] : [this.bosId, ...body, this.eosId];
      ids.set(row, b * L);
    });
    return { ids, batch: texts.length, length: L };
  }
}

async function optionalJson(path: string): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new HfFolderError(`${path} is not valid JSON (${(e as Error).message})`);
  }
}
