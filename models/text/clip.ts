/**
 * The CLIP text transformer (`CLIPTextModel` of Hugging Face transformers, no projection), as
 * Open-Sora 2.0 uses `openai/clip-vit-large-patch14` for its pooled vector
 * (`shared/spec/text-encoders.md` §3):
 *
 * ```
 * h = TokEmb[ids] + PosEmb[0..L)
 * for each layer:
 *   h = h + OutProj(CausalMHA(LN1(h)))         # q·kᵀ / √d_head, query i sees keys j ≤ i
 *   h = h + FC2(quick_gelu(FC1(LN2(h))))
 * hidden = FinalLN(h)                          # [B, L, hidden]
 * pooled = hidden[b, argmax(ids[b])]           # the first EOS (largest id) of each row
 * ```
 *
 * The token table stays on the host ({@linkcode HostEmbedding}: 49 408 × 768 f32 is over a
 * 128 MiB binding). The causal mask is an additive `[1, L, L]` bias (0 / −1e30) on explicit
 * scores ({@linkcode biasedAttention}); the fused attention op takes no mask.
 *
 * @module
 */
import { gather } from "../../engine/ops/concat.ts";
import { add, gelu, mul, sigmoid } from "../../engine/ops/elementwise.ts";
import { fromData } from "../../engine/graph.ts";
import { linear } from "../../engine/ops/matmul.ts";
import { reshape, slice } from "../../engine/ops/movement.ts";
import { layerNorm } from "../../engine/ops/norm.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { ParamSet } from "../params.ts";
import { biasedAttention, mergeHeads, splitHeads } from "./attention.ts";
import { HostEmbedding } from "./embedding.ts";
import {
  configNumber,
  findWeightFiles,
  HfFolderError,
  loadEncoderWeights,
  readHfConfig,
  resolveStorage,
  type StorageChoice,
  type TextStorage,
} from "./hf.ts";
import { checkTokenIds, type TokenIds } from "./ids.ts";

/** Activations `CLIPTextConfig.hidden_act` may name. */
export type ClipActivation = "quick_gelu" | "gelu" | "gelu_new";

/** The text tower's configuration (HF `CLIPTextConfig` fields, camel-cased). */
export interface ClipTextConfig {
  /** Rows of the token table (`vocab_size`). */
  vocabSize: number;
  /** Width (`hidden_size`). */
  hiddenSize: number;
  /** MLP width (`intermediate_size`). */
  intermediateSize: number;
  /** Layers (`num_hidden_layers`). */
  numLayers: number;
  /** Heads (`num_attention_heads`). */
  numHeads: number;
  /** Rows of the position table (`max_position_embeddings`). */
  maxPositions: number;
  /** LayerNorm epsilon (`layer_norm_eps`). */
  layerNormEps: number;
  /** MLP activation (`hidden_act`). */
  hiddenAct: ClipActivation;
  /**
   * `eos_token_id`: the legacy value 2 (the released checkpoints) pools at the arg-max of the ids;
   * any other value pools at the first occurrence of that id, as transformers does.
   */
  eosTokenId: number;
}

/** `openai/clip-vit-large-patch14` text tower (spec §3.2). */
export const CLIP_VIT_L14_TEXT: Readonly<ClipTextConfig> = Object.freeze({
  vocabSize: 49408,
  hiddenSize: 768,
  intermediateSize: 3072,
  numLayers: 12,
  numHeads: 12,
  maxPositions: 77,
  layerNormEps: 1e-5,
  hiddenAct: "quick_gelu",
  eosTokenId: 2,
});

/**
 * The configuration from a `config.json` object: a full CLIP config (its `text_config` is used)
 * or a text-only one. Sizes are required; the others default as in `CLIPTextConfig` (positions
 * 77, eps 1e-5, quick_gelu, legacy eos id 2).
 */
export function clipTextConfigFromHf(config: Record<string, unknown>): ClipTextConfig {
  const tc = config.text_config;
  const c = tc && typeof tc === "object" && !Array.isArray(tc)
    ? tc as Record<string, unknown>
    : config;
  const act = c.hidden_act ?? "quick_gelu";
  if (act !== "quick_gelu" && act !== "gelu" && act !== "gelu_new") {
    throw new HfFolderError(
      `config.json hidden_act is ${JSON.stringify(act)}: supported are quick_gelu, gelu, gelu_new`,
    );
  }
  return {
    vocabSize: configNumber(c, "vocab_size"),
    hiddenSize: configNumber(c, "hidden_size"),
    intermediateSize: configNumber(c, "intermediate_size"),
    numLayers: configNumber(c, "num_hidden_layers"),
    numHeads: configNumber(c, "num_attention_heads"),
    maxPositions: configNumber(c, "max_position_embeddings", 77),
    layerNormEps: configNumber(c, "layer_norm_eps", 1e-5),
    hiddenAct: act,
    eosTokenId: configNumber(c, "eos_token_id", 2),
  };
}

/** Options of {@linkcode CLIPTextModel}. */
export interface ClipTextOptions {
  /** Storage type of the weights (default f32). */
  storage?: TextStorage;
  /** Largest attention-score block in bytes (default: the device's binding limit). */
  maxScoreBytes?: number;
}

/** Output of {@linkcode CLIPTextModel.forward}. */
export interface ClipTextOutput {
  /** `last_hidden_state` `[B, L, hidden]`. */
  hidden: Tensor;
  /** `pooler_output` `[B, hidden]`: the final-LN row of each sequence's EOS token. */
  pooled: Tensor;
}

interface Linear {
  weight: string;
  bias: string;
}

interface ClipLayer {
  k: Linear;
  v: Linear;
  q: Linear;
  out: Linear;
  ln1: Linear;
  fc1: Linear;
  fc2: Linear;
  ln2: Linear;
}

/** `x·sigmoid(1.702·x)`, the activation of the OpenAI CLIP models. */
export function quickGelu(x: Tensor): Tensor {
  return mul(x, sigmoid(mul(x, 1.702)));
}

/**
 * Position of the pooled token of each row: the first arg-max of the ids (legacy eos id 2), or
 * the first position holding `eosTokenId` (0 when a row has none), as transformers pools.
 */
export function clipPoolPositions(tokens: TokenIds, eosTokenId: number): Int32Array {
  const out = new Int32Array(tokens.batch);
  for (let b = 0; b < tokens.batch; b++) {
    const row = tokens.ids.subarray(b * tokens.length, (b + 1) * tokens.length);
    let best = 0;
    if (eosTokenId === 2) {
      for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
    } else {
      const i = row.indexOf(eosTokenId);
      best = i < 0 ? 0 : i;
    }
    out[b] = best;
  }
  return out;
}

/** The CLIP text tower; see the module doc. Construction allocates nothing. */
export class CLIPTextModel {
  /** GPU parameters under their HF keys (everything but the token table). */
  readonly params: ParamSet;
  /** `text_model.embeddings.token_embedding.weight`, in host memory. */
  readonly tokenEmbedding: HostEmbedding;
  readonly #layers: ClipLayer[] = [];
  readonly #position: string;
  readonly #finalLn: Linear;
  readonly #maxScoreBytes?: number;

  /** Declares the parameters of `config` (shape-only: nothing is allocated). */
  constructor(readonly config: ClipTextConfig, options: ClipTextOptions = {}) {
    const c = config;
    for (
      const k of [
        "vocabSize",
        "hiddenSize",
        "intermediateSize",
        "numLayers",
        "numHeads",
        "maxPositions",
      ] as const
    ) {
      if (!Number.isInteger(c[k]) || c[k] < 1) {
        throw new RangeError(`ClipTextConfig.${k} must be a positive integer, got ${c[k]}`);
      }
    }
    if (c.hiddenSize % c.numHeads !== 0) {
      throw new RangeError(
        `ClipTextConfig: hiddenSize ${c.hiddenSize} is not divisible by numHeads ${c.numHeads}`,
      );
    }
    const storage = options.storage ?? "f32";
    this.#maxScoreBytes = options.maxScoreBytes;
    this.params = new ParamSet(storage);
    const tm = this.params.root.sub("text_model");
    const emb = tm.sub("embeddings");
    this.tokenEmbedding = new HostEmbedding(
      emb.sub("token_embedding").key("weight"),
      c.vocabSize,
      c.hiddenSize,
      storage,
    );
    this.#position = emb.sub("position_embedding").declare("weight", [
      c.maxPositions,
      c.hiddenSize,
    ]);
    const d = c.hiddenSize;
    const lin = (s: ReturnType<typeof tm.sub>, out: number, inp: number): Linear => ({
      weight: s.declare("weight", [out, inp]),
      bias: s.declare("bias", [out], "zeros"),
    });
    const norm = (s: ReturnType<typeof tm.sub>): Linear => ({
      weight: s.declare("weight", [d], "ones"),
      bias: s.declare("bias", [d], "zeros"),
    });
    for (let l = 0; l < c.numLayers; l++) {
      const layer = tm.sub("encoder").sub("layers").sub(l);
      const att = layer.sub("self_attn");
      const k = lin(att.sub("k_proj"), d, d);
      const v = lin(att.sub("v_proj"), d, d);
      const q = lin(att.sub("q_proj"), d, d);
      const out = lin(att.sub("out_proj"), d, d);
      const ln1 = norm(layer.sub("layer_norm1"));
      const fc1 = lin(layer.sub("mlp").sub("fc1"), c.intermediateSize, d);
      const fc2 = lin(layer.sub("mlp").sub("fc2"), d, c.intermediateSize);
      const ln2 = norm(layer.sub("layer_norm2"));
      this.#layers.push({ k, v, q, out, ln1, fc1, fc2, ln2 });
    }
    this.#finalLn = norm(tm.sub("final_layer_norm"));
  }

  /**
   * Builds the text tower from a Hugging Face folder (a full CLIP model such as
   * `openai/clip-vit-large-patch14`, whose `text_config` and `text_model.*` weights are used, or a
   * `CLIPTextModel`); vision weights, projections and `logit_scale` are ignored. `storage`
   * defaults to `"auto"` (bf16 above 1 GiB of f32 weights, else f32: CLIP-L stays f32).
   *
   * @example
   * ```ts ignore
   * const clip = await CLIPTextModel.fromPretrained("ckpts/openai/clip-vit-large-patch14");
   * ```
   */
  static async fromPretrained(
    dir: string,
    options: Omit<ClipTextOptions, "storage"> & { storage?: StorageChoice } = {},
  ): Promise<CLIPTextModel> {
    const config = clipTextConfigFromHf(await readHfConfig(dir));
    const probe = new CLIPTextModel(config);
    const storage = resolveStorage(
      options.storage,
      probe.params.bytes("f32") + probe.tokenEmbedding.bytes,
    );
    const model = new CLIPTextModel(config, { ...options, storage });
    await model.load(await findWeightFiles(dir));
    return model;
  }

  /** Loads weights from safetensors files (see {@linkcode loadEncoderWeights}). */
  async load(paths: readonly string[]): Promise<void> {
    await loadEncoderWeights(
      this.params,
      [{ table: this.tokenEmbedding, keys: [this.tokenEmbedding.name] }],
      paths,
      "CLIP text model",
    );
  }

  /** Seeded random weights (norms 1, biases 0), for tests and shape checks. */
  initialize(seed = 0): void {
    this.params.initialize(seed);
    this.tokenEmbedding.initialize(seed + 1);
  }

  /** Hidden states and pooled vectors for token ids `[B, L]` (L ≤ `maxPositions`). */
  forward(tokens: TokenIds): ClipTextOutput {
    checkTokenIds("CLIPTextModel.forward", tokens);
    const c = this.config;
    const { batch: B, length: L } = tokens;
    if (L > c.maxPositions) {
      throw new RangeError(
        `CLIPTextModel.forward: sequences of ${L} tokens exceed max_position_embeddings ` +
          `${c.maxPositions}; truncate them (the tokenizer does with maxLength ${c.maxPositions})`,
      );
    }
    const p = (k: string) => this.params.get(k);
    const lin = (x: Tensor, l: Linear) => linear(x, p(l.weight), p(l.bias));
    const ln = (x: Tensor, l: Linear) => layerNorm(x, p(l.weight), p(l.bias), c.layerNormEps);
    const act = (x: Tensor) =>
      c.hiddenAct === "quick_gelu"
        ? quickGelu(x)
        : gelu(x, c.hiddenAct === "gelu" ? "none" : "tanh");
    const mask = causalMask(L);
    const pos = slice(p(this.#position), [0, 0], [L, c.hiddenSize]);
    let h = add(this.tokenEmbedding.lookup(tokens.ids, [B, L]), pos);
    const scale = 1 / Math.sqrt(c.hiddenSize / c.numHeads);
    for (const layer of this.#layers) {
      const x = ln(h, layer.ln1);
      const o = biasedAttention(
        splitHeads(lin(x, layer.q), c.numHeads),
        splitHeads(lin(x, layer.k), c.numHeads),
        splitHeads(lin(x, layer.v), c.numHeads),
        mask,
        { scale, maxScoreBytes: this.#maxScoreBytes },
      );
      h = add(h, lin(mergeHeads(o), layer.out));
      h = add(h, lin(act(lin(ln(h, layer.ln2), layer.fc1)), layer.fc2));
    }
    const hidden = ln(h, this.#finalLn);
    const rows = Int32Array.from(clipPoolPositions(tokens, c.eosTokenId), (i, b) => b * L + i);
    const pooled = gather(reshape(hidden, [B * L, c.hiddenSize]), rows, 0);
    return { hidden, pooled };
  }

  /** Frees the weights (GPU parameters and the host table). */
  dispose(): void {
    this.params.dispose();
    this.tokenEmbedding.dispose();
  }
}

/** Additive causal mask `[1, L, L]`: 0 where key j ≤ query i, −1e30 above the diagonal. */
export function causalMask(L: number): Tensor {
  const m = new Float32Array(L * L);
  for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) m[i * L + j] = -1e30;
  return fromData(m, [1, L, L], "f32");
}
