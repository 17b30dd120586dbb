/**
 * Small test data for the text encoders, made in the test (nothing is downloaded): random
 * T5 / CLIP weights under their Hugging Face keys, Hugging Face folders (config.json, sharded
 * safetensors + index, tokenizer files), tiny `tokenizer.json` objects in the real files' shapes
 * (a Unigram model for T5, a byte-level BPE for CLIP) and a SentencePiece `spiece.model` encoder.
 */
import { join } from "node:path";
import { saveSafetensors, type TensorToWrite } from "../../engine/safetensors.ts";
import { randomArray } from "../_assert_close.ts";

/** Tensors by key, with shapes. */
export type Weights = Map<string, { shape: number[]; data: Float32Array }>;

/** The tiny T5 config.json (8 buckets / distance 10 so that L = 9, 13 reach the log buckets). */
export const T5_TINY_HF = {
  architectures: ["T5ForConditionalGeneration"],
  model_type: "t5",
  vocab_size: 64,
  d_model: 32,
  d_kv: 8,
  d_ff: 48,
  num_layers: 2,
  num_decoder_layers: 2,
  num_heads: 4,
  relative_attention_num_buckets: 8,
  relative_attention_max_distance: 10,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: "gated-gelu",
  is_encoder_decoder: true,
};

/** The tiny CLIP config.json (a full CLIP config: text_config + vision_config). */
export const CLIP_TINY_HF = {
  architectures: ["CLIPModel"],
  model_type: "clip",
  projection_dim: 16,
  text_config: {
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: 16,
    hidden_act: "quick_gelu",
    layer_norm_eps: 1e-5,
    eos_token_id: 2,
  },
  vision_config: { hidden_size: 8, patch_size: 2, image_size: 4 },
};

function put(ws: Weights, key: string, shape: number[], seed: number, lo = -0.5, hi = 0.5) {
  const n = shape.reduce((a, b) => a * b, 1);
  ws.set(key, { shape, data: randomArray(n, seed, lo, hi) });
}

/** Random encoder weights of the tiny T5 (plus decoder / lm_head keys to be ignored). */
export function t5TinyWeights(seed = 1, withDecoder = true): Weights {
  const c = T5_TINY_HF;
  const ws: Weights = new Map();
  let s = seed * 1000;
  const inner = c.num_heads * c.d_kv;
  put(ws, "shared.weight", [c.vocab_size, c.d_model], s++, -1, 1);
  for (let l = 0; l < c.num_layers; l++) {
    const p = `encoder.block.${l}.layer.`;
    for (const n of ["q", "k", "v"]) {
      put(ws, `${p}0.SelfAttention.${n}.weight`, [inner, c.d_model], s++, -0.35, 0.35);
    }
    put(ws, `${p}0.SelfAttention.o.weight`, [c.d_model, inner], s++, -0.3, 0.3);
    if (l === 0) {
      put(
        ws,
        `${p}0.SelfAttention.relative_attention_bias.weight`,
        [
          c.relative_attention_num_buckets,
          c.num_heads,
        ],
        s++,
        -1,
        1,
      );
    }
    put(ws, `${p}0.layer_norm.weight`, [c.d_model], s++, 0.7, 1.3);
    put(ws, `${p}1.DenseReluDense.wi_0.weight`, [c.d_ff, c.d_model], s++, -0.3, 0.3);
    put(ws, `${p}1.DenseReluDense.wi_1.weight`, [c.d_ff, c.d_model], s++, -0.3, 0.3);
    put(ws, `${p}1.DenseReluDense.wo.weight`, [c.d_model, c.d_ff], s++, -0.25, 0.25);
    put(ws, `${p}1.layer_norm.weight`, [c.d_model], s++, 0.7, 1.3);
  }
  put(ws, "encoder.final_layer_norm.weight", [c.d_model], s++, 0.7, 1.3);
  if (withDecoder) {
    put(ws, "decoder.block.0.layer.0.SelfAttention.q.weight", [inner, c.d_model], s++);
    put(ws, "decoder.final_layer_norm.weight", [c.d_model], s++);
    put(ws, "lm_head.weight", [c.vocab_size, c.d_model], s++);
  }
  return ws;
}

/** Random text-tower weights of the tiny CLIP (plus vision / projection keys to be ignored). */
export function clipTinyWeights(
  seed = 2,
  withVision = true,
  c: typeof CLIP_TINY_HF.text_config = CLIP_TINY_HF.text_config,
): Weights {
  const ws: Weights = new Map();
  let s = seed * 1000;
  const d = c.hidden_size;
  const t = "text_model.";
  put(ws, `${t}embeddings.token_embedding.weight`, [c.vocab_size, d], s++, -1, 1);
  put(ws, `${t}embeddings.position_embedding.weight`, [c.max_position_embeddings, d], s++, -1, 1);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `${t}encoder.layers.${l}.`;
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      put(ws, `${p}self_attn.${n}.weight`, [d, d], s++, -0.3, 0.3);
      put(ws, `${p}self_attn.${n}.bias`, [d], s++, -0.1, 0.1);
    }
    for (const n of ["layer_norm1", "layer_norm2"]) {
      put(ws, `${p}${n}.weight`, [d], s++, 0.7, 1.3);
      put(ws, `${p}${n}.bias`, [d], s++, -0.1, 0.1);
    }
    put(ws, `${p}mlp.fc1.weight`, [c.intermediate_size, d], s++, -0.3, 0.3);
    put(ws, `${p}mlp.fc1.bias`, [c.intermediate_size], s++, -0.1, 0.1);
    put(ws, `${p}mlp.fc2.weight`, [d, c.intermediate_size], s++, -0.3, 0.3);
    put(ws, `${p}mlp.fc2.bias`, [d], s++, -0.1, 0.1);
  }
  put(ws, `${t}final_layer_norm.weight`, [d], s++, 0.7, 1.3);
  put(ws, `${t}final_layer_norm.bias`, [d], s++, -0.1, 0.1);
  if (withVision) {
    put(ws, "vision_model.embeddings.patch_embedding.weight", [8, 3, 2, 2], s++);
    put(ws, "text_projection.weight", [16, d], s++);
    put(ws, "visual_projection.weight", [16, 8], s++);
    put(ws, "logit_scale", [], s++);
  }
  return ws;
}

/** The weights as a plain key → data map (for the float64 references). */
export function asRef(ws: Weights): Map<string, Float32Array> {
  return new Map([...ws].map(([k, v]) => [k, v.data]));
}

function toWrite(
  ws: Weights,
  keys: string[],
  dtype: "F32" | "BF16",
): Record<string, TensorToWrite> {
  return Object.fromEntries(keys.map((k) => [k, { dtype, ...ws.get(k)! }]));
}

/**
 * Writes a Hugging Face folder: `config.json`, the weights as `model.safetensors` (shards = 1) or
 * `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`, and extra JSON files.
 */
export async function writeHfFolder(
  dir: string,
  config: unknown,
  ws: Weights,
  options: { shards?: number; dtype?: "F32" | "BF16"; files?: Record<string, unknown> } = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  const shards = options.shards ?? 1;
  const dtype = options.dtype ?? "F32";
  const keys = [...ws.keys()].sort();
  if (shards === 1) {
    await saveSafetensors(join(dir, "model.safetensors"), toWrite(ws, keys, dtype));
  } else {
    const weightMap: Record<string, string> = {};
    const per = Math.ceil(keys.length / shards);
    for (let i = 0; i < shards; i++) {
      const name = `model-${String(i + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}` +
        ".safetensors";
      const part = keys.slice(i * per, (i + 1) * per);
      for (const k of part) weightMap[k] = name;
      await saveSafetensors(join(dir, name), toWrite(ws, part, dtype), { format: "pt" });
    }
    await Deno.writeTextFile(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
    );
  }
  for (const [name, v] of Object.entries(options.files ?? {})) {
    await Deno.writeTextFile(join(dir, name), JSON.stringify(v));
  }
}

// ---------------------------------------------------------------- tokenizers

/** Pieces of the tiny T5 unigram model: [piece, score]; ids are the indices. */
export const T5_PIECES: [string, number][] = [
  ["<pad>", 0],
  ["</s>", 0],
  ["<unk>", 0],
  ["\u2581", -2],
  ["\u2581a", -3],
  ["\u2581cat", -4],
  ["\u2581c", -5],
  ["at", -5.5],
  ["s", -6],
  ["\u2581the", -4],
  ["\u2581dog", -4.5],
  ["t", -7],
  ["h", -7],
  ["e", -7],
  ["c", -7],
  ["a", -7],
  ["d", -7],
  ["o", -7],
  ["g", -7],
  ["\u2581in", -4.5],
  ["\u2581snow", -5],
  [".", -3.5],
  ["i", -7],
  ["n", -7],
  ["w", -7],
];

function added(id: number, content: string, normalized = false) {
  return {
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized,
    special: true,
  };
}

/**
 * A T5-style `tokenizer.json` (what transformers' converter writes for `spiece.model`): Unigram,
 * precompiled normaliser, Metaspace pre-tokenizer and the `$A </s>` template post-processor.
 * `style` picks the older (`WhitespaceSplit` + `Metaspace(add_prefix_space)`) or the newer
 * (`Replace(" {2,}")` + `Metaspace(prepend_scheme, split)`) layout.
 */
export function t5TokenizerJson(style: "old" | "new" = "old"): Record<string, unknown> {
  const meta = style === "old"
    ? { type: "Metaspace", replacement: "\u2581", add_prefix_space: true }
    : { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true };
  const precompiled = { type: "Precompiled", precompiled_charsmap: "" };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [added(0, "<pad>"), added(1, "</s>"), added(2, "<unk>")],
    normalizer: style === "old" ? precompiled : {
      type: "Sequence",
      normalizers: [precompiled, { type: "Replace", pattern: { Regex: " {2,}" }, content: " " }],
    },
    pre_tokenizer: style === "old"
      ? { type: "Sequence", pretokenizers: [{ type: "WhitespaceSplit" }, meta] }
      : meta,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "</s>", type_id: 0 } }],
      pair: [
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
        { Sequence: { id: "B", type_id: 0 } },
        { SpecialToken: { id: "</s>", type_id: 0 } },
      ],
      special_tokens: { "</s>": { id: "</s>", ids: [1], tokens: ["</s>"] } },
    },
    decoder: meta,
    model: { type: "Unigram", unk_id: 2, vocab: T5_PIECES, byte_fallback: false },
  };
}

/** The T5 `tokenizer_config.json` fields the tokenizer reads. */
export const T5_TOKENIZER_CONFIG = { eos_token: "</s>", pad_token: "<pad>", unk_token: "<unk>" };

/** Vocabulary of the tiny CLIP BPE (ids are the indices); specials last, as in the real one. */
export const CLIP_VOCAB = [
  "a",
  "c",
  "t",
  "d",
  "o",
  "g",
  "s",
  ",",
  "a</w>",
  "c</w>",
  "t</w>",
  "d</w>",
  "o</w>",
  "g</w>",
  "s</w>",
  ",</w>",
  "ca",
  "cat</w>",
  "do",
  "dog</w>",
  "cat",
  "cats</w>",
  "<|startoftext|>",
  "<|endoftext|>",
];

/** A CLIP-style `tokenizer.json` in the layout of `openai/clip-vit-large-patch14`'s. */
export function clipTokenizerJson(): Record<string, unknown> {
  const bos = CLIP_VOCAB.indexOf("<|startoftext|>");
  const eos = CLIP_VOCAB.indexOf("<|endoftext|>");
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [added(bos, "<|startoftext|>", true), added(eos, "<|endoftext|>")],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
        { type: "Lowercase" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: {
            Regex:
              "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
          },
          behavior: "Removed",
          invert: true,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: ["<|endoftext|>", eos],
      cls: ["<|startoftext|>", bos],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<|endoftext|>",
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab: Object.fromEntries(CLIP_VOCAB.map((t, i) => [t, i])),
      merges: ["c a", "ca t</w>", "d o", "do g</w>", "ca t", "cat s</w>"],
    },
  };
}

/** The CLIP `tokenizer_config.json` fields (pad = EOS as in the real checkpoint). */
export const CLIP_TOKENIZER_CONFIG = {
  bos_token: "<|startoftext|>",
  eos_token: "<|endoftext|>",
  pad_token: "<|endoftext|>",
  unk_token: { content: "<|endoftext|>", lstrip: false, normalized: true, rstrip: false },
  do_lower_case: true,
  model_max_length: 77,
};

// ---------------------------------------------------------------- spiece.model

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

function field(num: number, wire: number, payload: number[]): number[] {
  const key = varint(num * 8 + wire);
  return wire === 2 ? [...key, ...varint(payload.length), ...payload] : [...key, ...payload];
}

function utf8(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}

function f32(x: number): number[] {
  return [...new Uint8Array(new Float32Array([x]).buffer)];
}

/**
 * A SentencePiece `ModelProto` of `pieces` (types: 3 control for `<pad>` / `</s>`, 2 unknown for
 * `<unk>`, 1 otherwise), with a trainer spec (`unk_id`) and a normaliser spec (name + charsmap).
 */
export function spieceModelBytes(pieces: [string, number][]): Uint8Array {
  const bytes: number[] = [];
  for (const [piece, score] of pieces) {
    const type = piece === "<unk>" ? 2 : piece === "<pad>" || piece === "</s>" ? 3 : 1;
    const body = [...field(1, 2, utf8(piece)), ...field(2, 5, f32(score))];
    if (type !== 1) body.push(...field(3, 0, varint(type)));
    bytes.push(...field(1, 2, body));
  }
  const unk = pieces.findIndex(([p]) => p === "<unk>");
  bytes.push(...field(2, 2, [...field(3, 0, varint(2)), ...field(40, 0, varint(unk))]));
  bytes.push(...field(3, 2, [...field(1, 2, utf8("nmt_nfkc")), ...field(2, 2, [1, 2, 3, 4])]));
  return new Uint8Array(bytes);
}
