/**
 * A token-embedding table kept in host (CPU) memory.
 *
 * The text encoders' vocabularies are too large for one GPU binding (T5-XXL `shared.weight` is
 * 32 128 × 4 096 = 263 MB even in bf16; CLIP's 49 408 × 768 is 152 MB in f32, both over the
 * 128 MiB `maxStorageBufferBindingSize` of many devices), and token ids are CPU data anyway. So the
 * table stays on the host in its storage dtype, the rows of the requested ids are gathered on the
 * CPU, widened to f32 and uploaded as one `[n, dim]` tensor.
 *
 * @module
 */
import { bf16ToF32, type DType, f16ToF32, f32ToBf16, f32ToF16 } from "../../engine/dtype.ts";
import { fromData } from "../../engine/graph.ts";
import type { SafeTensorsFile } from "../../engine/safetensors.ts";
import type { Tensor } from "../../engine/tensor.ts";

/** Storage types a {@linkcode HostEmbedding} keeps its table in. */
export type EmbeddingStorage = Extract<DType, "f32" | "f16" | "bf16">;

/** A `[vocab, dim]` table in host memory; {@linkcode HostEmbedding.lookup} uploads rows. */
export class HostEmbedding {
  #table: Float32Array | Uint16Array | null = null;

  /**
   * A table without values (call `set`, `load` or `initialize`).
   *
   * @param name Checkpoint key of the table (for messages), e.g. `shared.weight`.
   * @param vocab Number of rows.
   * @param dim Row width.
   * @param storage Element type the table is kept in (f32, or 16-bit bits for f16/bf16).
   */
  constructor(
    readonly name: string,
    readonly vocab: number,
    readonly dim: number,
    readonly storage: EmbeddingStorage = "f32",
  ) {}

  /** Whether the table has values. */
  get ready(): boolean {
    return this.#table !== null;
  }

  /** Host bytes of the table. */
  get bytes(): number {
    return this.vocab * this.dim * (this.storage === "f32" ? 4 : 2);
  }

  /** Sets the table from f32 values (rounded to the storage type) or 16-bit bits. */
  set(data: Float32Array | Uint16Array): void {
    if (data.length !== this.vocab * this.dim) {
      throw new RangeError(
        `${this.name}: ${data.length} values for a [${this.vocab}, ${this.dim}] table`,
      );
    }
    if (this.storage === "f32") {
      if (!(data instanceof Float32Array)) {
        throw new TypeError(`${this.name}: f32 storage needs a Float32Array`);
      }
      this.#table = data;
    } else if (data instanceof Uint16Array) this.#table = data;
    else this.#table = roundHalf(data, this.storage);
  }

  /** Fills the table with seeded uniform values in `[-scale, scale)` (tests, shape checks). */
  initialize(seed = 0, scale = 1): void {
    let s = seed >>> 0;
    const data = new Float32Array(this.vocab * this.dim);
    for (let i = 0; i < data.length; i++) {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      data[i] = (2 * (((t ^ (t >>> 14)) >>> 0) / 4294967296) - 1) * scale;
    }
    this.set(data);
  }

  /** Reads the table `key` (default: this table's name) from an open safetensors file. */
  async load(file: SafeTensorsFile, key: string = this.name): Promise<void> {
    const info = file.info(key);
    if (info.shape.length !== 2 || info.shape[0] !== this.vocab || info.shape[1] !== this.dim) {
      throw new RangeError(
        `${file.path}: ${key} has shape [${info.shape.join(", ")}], expected ` +
          `[${this.vocab}, ${this.dim}]; check that the checkpoint matches config.json`,
      );
    }
    const { data } = await file.readAs(key, this.storage);
    this.set(data);
  }

  /**
   * The rows of `ids` as a new f32 tensor `[...shape, dim]` (default shape `[ids.length]`).
   * Ids are range-checked (a RangeError names the first bad one).
   */
  lookup(ids: ArrayLike<number>, shape: readonly number[] = [ids.length]): Tensor {
    const table = this.#table;
    if (!table) {
      throw new Error(`${this.name} has no values: load a checkpoint or call initialize() first`);
    }
    const d = this.dim;
    const out = new Float32Array(ids.length * d);
    const widen = this.storage === "bf16" ? bf16ToF32 : f16ToF32;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.vocab) {
        throw new RangeError(
          `${this.name}: token id ${id} at position ${i} is outside the vocabulary [0, ${this.vocab}); ` +
            `the tokenizer and the model do not match`,
        );
      }
      const row = table.subarray(id * d, (id + 1) * d);
      out.set(table instanceof Float32Array ? row : widen(row as Uint16Array), i * d);
    }
    return fromData(out, [...shape, d], "f32");
  }

  /** Frees the table. */
  dispose(): void {
    this.#table = null;
  }
}

function roundHalf(x: Float32Array, dtype: "f16" | "bf16"): Uint16Array {
  return dtype === "bf16" ? f32ToBf16(x) : f32ToF16(x);
}
