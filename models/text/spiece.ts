/**
 * SentencePiece models (`spiece.model`, the protobuf `ModelProto`) turned into the equivalent
 * Hugging Face `tokenizer.json` object, as transformers' `T5Converter` does: a Unigram model
 * over the pieces (plus T5's `<extra_id_*>` sentinels), the precompiled normaliser, and a
 * whitespace split with the `▁` word prefix. Checkpoint folders of `google/t5-v1_1-xxl` ship only
 * `spiece.model`, no `tokenizer.json`.
 *
 * @module
 */

/** One vocabulary entry of a SentencePiece model. */
export interface SentencePiece {
  /** The piece text (`▁` marks a word start). */
  piece: string;
  /** Its unigram log-probability. */
  score: number;
  /** 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
  type: number;
}

/** The parts of a `ModelProto` the conversion needs. */
export interface SentencePieceModel {
  /** The vocabulary; ids are the indices. */
  pieces: SentencePiece[];
  /** Id of the unknown piece. */
  unkId: number;
  /** `normalizer_spec.precompiled_charsmap` (null when absent). */
  charsmap: Uint8Array | null;
}

class Reader {
  pos = 0;
  readonly view: DataView;
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  varint(): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v;
      scale *= 128;
    }
    throw new Error("varint longer than 10 bytes");
  }
  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.buf.length) throw new Error("truncated field");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  float(): number {
    if (this.pos + 4 > this.buf.length) throw new Error("truncated float");
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** Calls `fn(field, wireType)` per field; `fn` reads the value, or returns false to skip it. */
  fields(fn: (field: number, wire: number) => boolean): void {
    while (this.pos < this.buf.length) {
      const key = this.varint();
      const field = Math.floor(key / 8);
      const wire = key % 8;
      if (fn(field, wire)) continue;
      if (wire === 0) this.varint();
      else if (wire === 1) this.pos += 8;
      else if (wire === 2) this.bytes();
      else if (wire === 5) this.pos += 4;
      else throw new Error(`unsupported wire type ${wire}`);
    }
    if (this.pos > this.buf.length) throw new Error("truncated field");
  }
}

/** Parses the pieces, unknown id and normaliser charsmap of a `spiece.model` file's bytes. */
export function parseSentencePieceModel(
  bytes: Uint8Array,
  path = "spiece.model",
): SentencePieceModel {
  const pieces: SentencePiece[] = [];
  let charsmap: Uint8Array | null = null;
  let trainerUnk: number | null = null;
  const text = new TextDecoder("utf-8", { fatal: true });
  try {
    const top = new Reader(bytes);
    top.fields((field, wire) => {
      if (wire !== 2 || field < 1 || field > 3) return false;
      const r = new Reader(top.bytes());
      if (field === 1) {
        const p: SentencePiece = { piece: "", score: 0, type: 1 };
        r.fields((f, w) => {
          if (f === 1 && w === 2) p.piece = text.decode(r.bytes());
          else if (f === 2 && w === 5) p.score = r.float();
          else if (f === 3 && w === 0) p.type = r.varint();
          else return false;
          return true;
        });
        pieces.push(p);
      } else if (field === 2) {
        r.fields((f, w) => {
          if (f !== 40 || w !== 0) return false;
          trainerUnk = r.varint();
          return true;
        });
      } else {
        r.fields((f, w) => {
          if (f !== 2 || w !== 2) return false;
          charsmap = r.bytes();
          return true;
        });
      }
      return true;
    });
  } catch (e) {
    throw new Error(
      `${path} is not a valid SentencePiece model (${(e as Error).message}); download it again`,
    );
  }
  if (pieces.length === 0) {
    throw new Error(`${path} holds no pieces: it is not a SentencePiece model`);
  }
  const unk = pieces.findIndex((p) => p.type === 2);
  return { pieces, unkId: unk >= 0 ? unk : trainerUnk ?? 0, charsmap };
}

/**
 * The `tokenizer.json` object of a SentencePiece unigram model, with `extraIds` sentinels
 * `<extra_id_0>` … appended as T5 does (`<extra_id_0>` gets the last id). No post-processor:
 * the caller adds EOS.
 */
export function sentencePieceToTokenizerJson(
  model: SentencePieceModel,
  extraIds = 0,
): Record<string, unknown> {
  const n = model.pieces.length;
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const added = model.pieces
    .map((p, id) => ({ p, id }))
    .filter(({ p }) => p.type === 2 || p.type === 3)
    .map(({ p, id }) => special(id, p.piece));
  const vocab: [string, number][] = model.pieces.map((p) => [p.piece, p.score]);
  for (let i = extraIds - 1; i >= 0; i--) {
    vocab.push([`<extra_id_${i}>`, 0]);
    added.push(special(n + extraIds - 1 - i, `<extra_id_${i}>`));
  }
  const metaspace = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always" };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: model.charsmap
      ? { type: "Precompiled", precompiled_charsmap: base64(model.charsmap) }
      : null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [{ type: "WhitespaceSplit" }, metaspace],
    },
    post_processor: null,
    decoder: metaspace,
    model: { type: "Unigram", unk_id: model.unkId, vocab, byte_fallback: false },
  };
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}
