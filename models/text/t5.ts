/**
 * The T5 v1.1 encoder (`T5EncoderModel` of Hugging Face transformers), as Open-Sora 2.0 uses
 * `google/t5-v1_1-xxl` for its text states (`shared/spec/text-encoders.md` §2):
 *
 * ```
 * h = E[ids]                                   # no scaling, no absolute positions
 * for each block:
 *   h = h + O(MHA(RMSNorm1(h)))                # scores q·kᵀ + B, no 1/√d, no mask, no biases
 *   h = h + Wo(gelu_tanh(Wi0 f) * (Wi1 f))     # f = RMSNorm2(h)
 * out = RMSNorm_final(h)                       # last_hidden_state [B, L, d_model]
 * ```
 *
 * `B[h, i, j] = rel_bias[bucket(j − i), h]`, with the table of block 0 shared by all blocks.
 * The token table `shared.weight` stays on the host ({@linkcode HostEmbedding}); everything else
 * is a GPU parameter under its checkpoint key. Attention is computed with explicit scores
 * ({@linkcode biasedAttention}) because the fused attention op takes no bias.
 *
 * @module
 */
import { gather } from "../../engine/ops/concat.ts";
import { add, gelu, mul } from "../../engine/ops/elementwise.ts";
import { linear } from "../../engine/ops/matmul.ts";
import { contiguous, permute, reshape } from "../../engine/ops/movement.ts";
import { rmsNorm } from "../../engine/ops/norm.ts";
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

/** The encoder's configuration (the `config.json` fields of HF `T5Config`, camel-cased). */
export interface T5Config {
  /** Rows of `shared.weight` (`vocab_size`). */
  vocabSize: number;
  /** Hidden width (`d_model`). */
  dModel: number;
  /** Width of one head (`d_kv`). */
  dKv: number;
  /** Feed-forward width (`d_ff`). */
  dFf: number;
  /** Encoder blocks (`num_layers`). */
  numLayers: number;
  /** Attention heads (`num_heads`). */
  numHeads: number;
  /** Relative-position buckets (`relative_attention_num_buckets`). */
  relativeAttentionNumBuckets: number;
  /** Distance beyond which positions share the last bucket (`relative_attention_max_distance`). */
  relativeAttentionMaxDistance: number;
  /** RMSNorm epsilon (`layer_norm_epsilon`). */
  layerNormEpsilon: number;
  /** Feed-forward kind (`feed_forward_proj`); T5 v1.1 uses gated GELU (tanh approximation). */
  feedForwardProj: "gated-gelu";
}

/** `google/t5-v1_1-xxl` (spec §2.2). */
export const T5_V1_1_XXL: Readonly<T5Config> = Object.freeze({
  vocabSize: 32128,
  dModel: 4096,
  dKv: 64,
  dFf: 10240,
  numLayers: 24,
  numHeads: 64,
  relativeAttentionNumBuckets: 32,
  relativeAttentionMaxDistance: 128,
  layerNormEpsilon: 1e-6,
  feedForwardProj: "gated-gelu",
});

/**
 * The configuration from a Hugging Face `config.json` object. Size fields are required; the
 * relative-attention fields and epsilon default as in `T5Config`. Only `feed_forward_proj`
 * `"gated-gelu"` (T5 v1.1) is supported.
 */
export function t5ConfigFromHf(config: Record<string, unknown>): T5Config {
  const proj = config.feed_forward_proj ?? "relu";
  if (proj !== "gated-gelu") {
    throw new HfFolderError(
      `config.json feed_forward_proj is ${JSON.stringify(proj)}: only "gated-gelu" (T5 v1.1, ` +
        `e.g. google/t5-v1_1-xxl) is supported`,
    );
  }
  return {
    vocabSize: configNumber(config, "vocab_size"),
    dModel: configNumber(config, "d_model"),
    dKv: configNumber(config, "d_kv"),
    dFf: configNumber(config, "d_ff"),
    numLayers: configNumber(config, "num_layers"),
    numHeads: configNumber(config, "num_heads"),
    relativeAttentionNumBuckets: configNumber(config, "relative_attention_num_buckets", 32),
    relativeAttentionMaxDistance: configNumber(config, "relative_attention_max_distance", 128),
    layerNormEpsilon: configNumber(config, "layer_norm_epsilon", 1e-6),
    feedForwardProj: "gated-gelu",
  };
}

/**
 * Bidirectional relative-position bucket of `r = j − i` (key minus query position), as
 * `T5Attention._relative_position_bucket(bidirectional=True)`: half the buckets for r > 0; within
 * a half, distances below half of it map to themselves, longer ones logarithmically up to
 * `maxDistance`, beyond which they share the last bucket. With 32 buckets and distance 128:
 * `b = (r > 0 ? 16 : 0) + (n < 8 ? n : min(15, 8 + floor(ln(n/8) / ln 16 · 8)))`, `n = |r|`.
 */
export function t5RelativePositionBucket(r: number, numBuckets = 32, maxDistance = 128): number {
  const half = Math.floor(numBuckets / 2);
  const exact = Math.floor(half / 2);
  const n = Math.abs(r);
  const base = r > 0 ? half : 0;
  if (n < exact) return base + n;
  const large = exact +
    Math.floor(Math.log(n / exact) / Math.log(maxDistance / exact) * (half - exact));
  return base + Math.min(half - 1, large);
}

/** Buckets of every (query i, key j) pair, row-major `[L, L]`: `bucket(j − i)`. */
export function t5PositionBuckets(L: number, numBuckets = 32, maxDistance = 128): Int32Array {
  const out = new Int32Array(L * L);
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < L; j++) {
      out[i * L + j] = t5RelativePositionBucket(j - i, numBuckets, maxDistance);
    }
  }
  return out;
}

/** Options of {@linkcode T5EncoderModel}. */
export interface T5Options {
  /** Storage type of the weights (default f32; use bf16 for the real checkpoint). */
  storage?: TextStorage;
  /** Largest attention-score block in bytes (default: the device's binding limit). */
  maxScoreBytes?: number;
}

/** Checkpoint keys of one block's parameters. */
interface T5Block {
  q: string;
  k: string;
  v: string;
  o: string;
  norm1: string;
  wi0: string;
  wi1: string;
  wo: string;
  norm2: string;
}

/** The T5 v1.1 encoder; see the module doc. Construction allocates nothing. */
export class T5EncoderModel {
  /** GPU parameters under their HF keys (everything but the token table). */
  readonly params: ParamSet;
  /** `shared.weight` `[vocab, d_model]`, in host memory. */
  readonly shared: HostEmbedding;
  readonly #blocks: T5Block[] = [];
  readonly #relBias: string;
  readonly #finalNorm: string;
  readonly #maxScoreBytes?: number;

  /** Declares the parameters of `config` (shape-only: nothing is allocated). */
  constructor(readonly config: T5Config, options: T5Options = {}) {
    const c = config;
    for (const k of ["vocabSize", "dModel", "dKv", "dFf", "numLayers", "numHeads"] as const) {
      if (!Number.isInteger(c[k]) || c[k] < 1) {
        throw new RangeError(`T5Config.${k} must be a positive integer, got ${c[k]}`);
      }
    }
    const storage = options.storage ?? "f32";
    this.#maxScoreBytes = options.maxScoreBytes;
    this.params = new ParamSet(storage);
    this.shared = new HostEmbedding("shared.weight", c.vocabSize, c.dModel, storage);
    const inner = c.numHeads * c.dKv;
    const enc = this.params.root.sub("encoder");
    let relBias = "";
    for (let l = 0; l < c.numLayers; l++) {
      const block = enc.sub("block").sub(l).sub("layer");
      const att = block.sub(0).sub("SelfAttention");
      const ff = block.sub(1).sub("DenseReluDense");
      const q = att.sub("q").declare("weight", [inner, c.dModel]);
      const k = att.sub("k").declare("weight", [inner, c.dModel]);
      const v = att.sub("v").declare("weight", [inner, c.dModel]);
      const o = att.sub("o").declare("weight", [c.dModel, inner]);
      if (l === 0) {
        relBias = att.sub("relative_attention_bias").declare("weight", [
          c.relativeAttentionNumBuckets,
          c.numHeads,
        ]);
      }
      const norm1 = block.sub(0).sub("layer_norm").declare("weight", [c.dModel], "ones");
      const wi0 = ff.sub("wi_0").declare("weight", [c.dFf, c.dModel]);
      const wi1 = ff.sub("wi_1").declare("weight", [c.dFf, c.dModel]);
      const wo = ff.sub("wo").declare("weight", [c.dModel, c.dFf]);
      const norm2 = block.sub(1).sub("layer_norm").declare("weight", [c.dModel], "ones");
      this.#blocks.push({ q, k, v, o, norm1, wi0, wi1, wo, norm2 });
    }
    this.#relBias = relBias;
    this.#finalNorm = enc.sub("final_layer_norm").declare("weight", [c.dModel], "ones");
  }

  /**
   * Builds the encoder from a Hugging Face folder (`config.json` + safetensors weights, e.g.
   * `google/t5-v1_1-xxl`); decoder weights of a full T5 checkpoint are ignored. `storage`
   * defaults to `"auto"`: bf16 when the f32 weights would exceed 1 GiB (T5-XXL), else f32.
   *
   * @example
   * ```ts ignore
   * const t5 = await T5EncoderModel.fromPretrained("ckpts/google/t5-v1_1-xxl", { storage: "bf16" });
   * ```
   */
  static async fromPretrained(
    dir: string,
    options: Omit<T5Options, "storage"> & { storage?: StorageChoice } = {},
  ): Promise<T5EncoderModel> {
    const config = t5ConfigFromHf(await readHfConfig(dir));
    const probe = new T5EncoderModel(config);
    const storage = resolveStorage(options.storage, probe.params.bytes("f32") + probe.shared.bytes);
    const model = new T5EncoderModel(config, { ...options, storage });
    await model.load(await findWeightFiles(dir));
    return model;
  }

  /** Loads weights from safetensors files (see {@linkcode loadEncoderWeights}). */
  async load(paths: readonly string[]): Promise<void> {
    await loadEncoderWeights(
      this.params,
      [{ table: this.shared, keys: ["shared.weight", "encoder.embed_tokens.weight"] }],
      paths,
      "T5 encoder",
    );
  }

  /** Seeded random weights (layer norms 1), for tests and shape checks. */
  initialize(seed = 0): void {
    this.params.initialize(seed);
    this.shared.initialize(seed + 1);
  }

  /** The position bias `[H, L, L]` for sequences of length `L` (from block 0's table). */
  positionBias(L: number): Tensor {
    const c = this.config;
    const buckets = t5PositionBuckets(
      L,
      c.relativeAttentionNumBuckets,
      c.relativeAttentionMaxDistance,
    );
    const rows = gather(this.params.get(this.#relBias), buckets, 0); // [L·L, H]
    return contiguous(permute(reshape(rows, [L, L, c.numHeads]), [2, 0, 1]));
  }

  /**
   * `last_hidden_state [B, L, d_model]` for token ids `[B, L]` (no attention mask: every
   * position, padding included, attends to every other, as Open-Sora calls it).
   */
  forward(tokens: TokenIds): Tensor {
    checkTokenIds("T5EncoderModel.forward", tokens);
    const c = this.config;
    const p = (k: string) => this.params.get(k);
    const eps = c.layerNormEpsilon;
    const bias = this.positionBias(tokens.length);
    let h = this.shared.lookup(tokens.ids, [tokens.batch, tokens.length]);
    for (const b of this.#blocks) {
      const a = rmsNorm(h, p(b.norm1), eps);
      const o = biasedAttention(
        splitHeads(linear(a, p(b.q)), c.numHeads),
        splitHeads(linear(a, p(b.k)), c.numHeads),
        splitHeads(linear(a, p(b.v)), c.numHeads),
        bias,
        { scale: 1, maxScoreBytes: this.#maxScoreBytes },
      );
      h = add(h, linear(mergeHeads(o), p(b.o)));
      const f = rmsNorm(h, p(b.norm2), eps);
      const g = mul(gelu(linear(f, p(b.wi0)), "tanh"), linear(f, p(b.wi1)));
      h = add(h, linear(g, p(b.wo)));
    }
    return rmsNorm(h, p(this.#finalNorm), eps);
  }

  /** Frees the weights (GPU parameters and the host table). */
  dispose(): void {
    this.params.dispose();
    this.shared.dispose();
  }
}
