/**
 * The text conditioning of Open-Sora 2.0 (`opensora/models/text/conditioner.py` `HFEmbedder`,
 * spec `shared/spec/text-encoders.md` §1): each prompt becomes
 *
 * - `txt`: T5's `last_hidden_state` of the prompt padded to 512 tokens, no padding mask
 *   → the MMDiT's `txt` `[B, 512, 4096]`;
 * - `yVec`: CLIP's pooled vector of the prompt padded to 77 tokens → the MMDiT's `y_vec`
 *   `[B, 768]`.
 *
 * A {@linkcode TextConditioner} caches both per prompt string (LRU), so the null text `""` and
 * repeated prompts are encoded once. It can also run without the encoders, from a file of
 * precomputed embeddings (format below), or use such a file first and the encoders for the rest.
 *
 * **Embeddings file** (safetensors, written by {@linkcode TextConditioner.saveEmbeddings}):
 * tensors `txt.<i>` `[Lt, d_t5]` and `y_vec.<i>` `[d_clip]` (F32, F16 or BF16) for i = 0 … n−1,
 * and `__metadata__` `{"format": "kino-text-embeddings", "prompts": "<JSON array of n strings>"}`
 * where entry i is the exact prompt (suffixes included) of `txt.<i>` / `y_vec.<i>`.
 *
 * @module
 */
import { concat } from "../../engine/ops/concat.ts";
import { fromData, realize } from "../../engine/graph.ts";
import { read } from "../../engine/ops/movement.ts";
import { SafeTensorsFile, saveSafetensors, type TensorToWrite } from "../../engine/safetensors.ts";
import { keep, noGrad, type Tensor, tidy } from "../../engine/tensor.ts";
import { CLIPTextModel } from "./clip.ts";
import type { TextStorage } from "./hf.ts";
import { T5EncoderModel } from "./t5.ts";
import { TextTokenizer } from "./tokenizer.ts";

/** The conditioning of a batch of prompts. */
export interface TextEmbedding {
  /** T5 states `[B, Lt, d_t5]`. */
  txt: Tensor;
  /** CLIP pooled vectors `[B, d_clip]`. */
  yVec: Tensor;
}

/** The two encoders with their tokenizers. */
export interface TextEncoders {
  /** The T5 encoder (text states). */
  t5: T5EncoderModel;
  /** Its tokenizer (`maxLength` = the text length Lt). */
  t5Tokenizer: TextTokenizer;
  /** The CLIP text tower (pooled vector). */
  clip: CLIPTextModel;
  /** Its tokenizer. */
  clipTokenizer: TextTokenizer;
}

/** Options of {@linkcode TextConditioner}. */
export interface TextConditionerOptions {
  /** Prompts kept in the cache (least recently used evicted first); default 16. */
  cacheSize?: number;
  /** Precomputed embeddings looked up before the encoders run (see the module doc). */
  embeddings?: EmbeddingStore;
}

/** Options of {@linkcode TextConditioner.fromFolders}. */
export interface FromFoldersOptions extends Omit<TextConditionerOptions, "embeddings"> {
  /** T5 padded length; default 512. */
  t5MaxLength?: number;
  /** CLIP padded length; default 77. */
  clipMaxLength?: number;
  /** Weight storage; default `"auto"` (bf16 for models over 1 GiB in f32, else f32). */
  storage?: TextStorage | "auto";
  /** A precomputed-embeddings file to use first. */
  embeddings?: string;
}

interface Entry {
  txt: Tensor; // [1, Lt, d]
  yVec: Tensor; // [1, d]
}

const FORMAT = "kino-text-embeddings";

/** Precomputed embeddings by prompt, in host memory (see the module doc for the file format). */
export class EmbeddingStore {
  private constructor(
    readonly path: string,
    readonly rows: Map<string, { txt: Float32Array; txtShape: number[]; yVec: Float32Array }>,
  ) {}

  /** Reads an embeddings file; throws a clear error when it is not in the documented format. */
  static async load(path: string): Promise<EmbeddingStore> {
    using f = await SafeTensorsFile.open(path);
    const fix = `write it with TextConditioner.saveEmbeddings (format "${FORMAT}")`;
    let prompts: unknown;
    try {
      prompts = JSON.parse(f.metadata.prompts ?? "null");
    } catch {
      prompts = null;
    }
    if (!Array.isArray(prompts) || prompts.some((p) => typeof p !== "string")) {
      throw new Error(`${path}: __metadata__.prompts is not a JSON array of strings; ${fix}`);
    }
    const rows = new Map<string, { txt: Float32Array; txtShape: number[]; yVec: Float32Array }>();
    for (let i = 0; i < prompts.length; i++) {
      for (const k of [`txt.${i}`, `y_vec.${i}`]) {
        if (!f.has(k)) throw new Error(`${path}: tensor ${k} is missing; ${fix}`);
      }
      const ts = f.info(`txt.${i}`).shape;
      const ys = f.info(`y_vec.${i}`).shape;
      if (ts.length !== 2 || ys.length !== 1) {
        throw new Error(
          `${path}: txt.${i} [${ts}] / y_vec.${i} [${ys}] must be [Lt, d_t5] / [d_clip]; ${fix}`,
        );
      }
      rows.set(prompts[i] as string, {
        txt: await f.readF32(`txt.${i}`),
        txtShape: [...ts],
        yVec: await f.readF32(`y_vec.${i}`),
      });
    }
    return new EmbeddingStore(path, rows);
  }

  /** Whether the store holds `prompt`. */
  has(prompt: string): boolean {
    return this.rows.has(prompt);
  }
}

/**
 * T5 + CLIP conditioning with a per-prompt cache; see the module doc.
 *
 * @example
 * ```ts ignore
 * const cond = await TextConditioner.fromFolders(
 *   "ckpts/google/t5-v1_1-xxl",
 *   "ckpts/openai/clip-vit-large-patch14",
 * );
 * const { txt, yVec } = cond.encode(["a red fox in the snow. 24 FPS. 4 motion score.", "", ""]);
 * // txt [3, 512, 4096], yVec [3, 768]; "" was encoded once
 * ```
 */
export class TextConditioner {
  readonly #cache = new Map<string, Entry>();
  readonly #cacheSize: number;
  readonly #store: EmbeddingStore | null;

  /** `encoders` may be null when every prompt comes from `options.embeddings`. */
  constructor(readonly encoders: TextEncoders | null, options: TextConditionerOptions = {}) {
    this.#cacheSize = options.cacheSize ?? 16;
    if (!Number.isInteger(this.#cacheSize) || this.#cacheSize < 1) {
      throw new RangeError(`TextConditioner: cacheSize ${this.#cacheSize} must be >= 1`);
    }
    this.#store = options.embeddings ?? null;
    if (!encoders && !this.#store) {
      throw new Error("TextConditioner: give the encoders, a file of embeddings, or both");
    }
  }

  /** Loads both encoders and tokenizers from Hugging Face folders. */
  static async fromFolders(
    t5Dir: string,
    clipDir: string,
    options: FromFoldersOptions = {},
  ): Promise<TextConditioner> {
    const storage = options.storage ?? "auto";
    const t5 = await T5EncoderModel.fromPretrained(t5Dir, { storage });
    const clip = await CLIPTextModel.fromPretrained(clipDir, { storage });
    const t5Tokenizer = await TextTokenizer.fromFolder(t5Dir, "t5", {
      maxLength: options.t5MaxLength,
    });
    const clipTokenizer = await TextTokenizer.fromFolder(clipDir, "clip", {
      maxLength: options.clipMaxLength,
    });
    if (clipTokenizer.maxLength > clip.config.maxPositions) {
      throw new RangeError(
        `CLIP maxLength ${clipTokenizer.maxLength} exceeds the model's ${clip.config.maxPositions} ` +
          `positions; set clipMaxLength <= ${clip.config.maxPositions}`,
      );
    }
    return new TextConditioner({ t5, t5Tokenizer, clip, clipTokenizer }, {
      cacheSize: options.cacheSize,
      embeddings: options.embeddings ? await EmbeddingStore.load(options.embeddings) : undefined,
    });
  }

  /** A conditioner that only serves the prompts of an embeddings file (no encoders loaded). */
  static async fromEmbeddings(
    path: string,
    options: Omit<TextConditionerOptions, "embeddings"> = {},
  ): Promise<TextConditioner> {
    return new TextConditioner(null, { ...options, embeddings: await EmbeddingStore.load(path) });
  }

  /** Number of prompts in the cache. */
  get cached(): number {
    return this.#cache.size;
  }

  /**
   * `txt [B, Lt, d_t5]` and `yVec [B, d_clip]` for `prompts` (new tensors the caller owns).
   * Each distinct prompt not in the cache is encoded once (or read from the embeddings file).
   */
  encode(prompts: readonly string[]): TextEmbedding {
    if (prompts.length === 0) throw new RangeError("TextConditioner.encode: no prompts given");
    const unique = [...new Set(prompts)];
    if (unique.length > this.#cacheSize) {
      throw new RangeError(
        `TextConditioner.encode: ${unique.length} distinct prompts exceed cacheSize ` +
          `${this.#cacheSize}; encode fewer at once or raise cacheSize`,
      );
    }
    const entries = new Map<string, Entry>();
    for (const p of unique) entries.set(p, this.#entry(p, unique));
    const rows = prompts.map((p) => entries.get(p)!);
    const shape = rows[0]!.txt.shape.join();
    const other = rows.find((r) => r.txt.shape.join() !== shape);
    if (other) {
      throw new RangeError(
        `TextConditioner.encode: text states of shape [${shape}] and [${other.txt.shape}] ` +
          `cannot form one batch (embeddings file and encoders disagree on the T5 length?)`,
      );
    }
    const txt = concat(rows.map((r) => r.txt), 0);
    const yVec = concat(rows.map((r) => r.yVec), 0);
    realize([txt, yVec]);
    return { txt, yVec };
  }

  /** The cache entry of `prompt` (most recently used last); evicts outside `protect`. */
  #entry(prompt: string, protect: readonly string[]): Entry {
    const hit = this.#cache.get(prompt);
    if (hit) {
      this.#cache.delete(prompt);
      this.#cache.set(prompt, hit);
      return hit;
    }
    const entry = this.#compute(prompt);
    for (const [k, e] of this.#cache) {
      if (this.#cache.size < this.#cacheSize) break;
      if (protect.includes(k)) continue;
      e.txt.dispose();
      e.yVec.dispose();
      this.#cache.delete(k);
    }
    this.#cache.set(prompt, entry);
    return entry;
  }

  #compute(prompt: string): Entry {
    const row = this.#store?.rows.get(prompt);
    if (row) {
      return {
        txt: keep(fromData(row.txt, [1, ...row.txtShape], "f32")),
        yVec: keep(fromData(row.yVec, [1, row.yVec.length], "f32")),
      };
    }
    const enc = this.encoders;
    if (!enc) {
      throw new Error(
        `TextConditioner: prompt ${JSON.stringify(prompt)} is not in ${this.#store!.path} ` +
          `(${this.#store!.rows.size} prompts) and no encoders are loaded: add it to the file ` +
          `(TextConditioner.saveEmbeddings) or load the encoders`,
      );
    }
    const out = noGrad(() =>
      tidy(() => ({
        txt: enc.t5.forward(enc.t5Tokenizer.encode([prompt])),
        yVec: enc.clip.forward(enc.clipTokenizer.encode([prompt])).pooled,
      }))
    );
    return { txt: keep(out.txt), yVec: keep(out.yVec) };
  }

  /**
   * Encodes `prompts` and writes them as an embeddings file (format in the module doc), e.g. to
   * run inference later without loading the encoders.
   */
  async saveEmbeddings(path: string, prompts: readonly string[]): Promise<void> {
    const unique = [...new Set(prompts)];
    const tensors: Record<string, TensorToWrite> = {};
    for (let i = 0; i < unique.length; i++) {
      const e = this.#entry(unique[i]!, [unique[i]!]);
      const [, Lt, d] = e.txt.shape as [number, number, number];
      tensors[`txt.${i}`] = { dtype: "F32", shape: [Lt, d], data: await read(e.txt) };
      tensors[`y_vec.${i}`] = { dtype: "F32", shape: [e.yVec.shape[1]!], data: await read(e.yVec) };
    }
    await saveSafetensors(path, tensors, { format: FORMAT, prompts: JSON.stringify(unique) });
  }

  /** Frees the cached embeddings. */
  clearCache(): void {
    for (const e of this.#cache.values()) {
      e.txt.dispose();
      e.yVec.dispose();
    }
    this.#cache.clear();
  }

  /** Frees the cache and the encoders' weights. */
  dispose(): void {
    this.clearCache();
    this.encoders?.t5.dispose();
    this.encoders?.clip.dispose();
  }
}
