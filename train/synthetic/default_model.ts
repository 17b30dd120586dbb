/**
 * Kino's small default text-to-video model: the configurations of its four parts (the same
 * architectures as the real pipeline at a size a 2-core CPU runs in seconds) and the writer of a
 * fresh bundle folder with seeded weights — the starting point of the recipe in
 * `weights/default/MODEL_CARD.md`:
 *
 * - Video DC-AE `small` (4 stages, ResBlock + EfficientViT blocks, 8x spatial and 4x temporal
 *   compression, 32 latent channels): trained by `deno task train-ae`;
 * - MMDiT (double + single stream blocks, patch 2, rotate-half 3D RoPE, QK-norm, modulation):
 *   trained by `deno task train` on cached latents;
 * - T5 v1.1 encoder and CLIP text tower of a few layers with their own word-level tokenizer
 *   over the synthetic captions' vocabulary: seeded and frozen (as the reference freezes T5 and
 *   CLIP).
 *
 * @module
 */
import { join } from "node:path";
import { saveSafetensors, type TensorToWrite } from "../../engine/safetensors.ts";
import { t5ConfigFromHf, T5EncoderModel } from "../../models/text/t5.ts";
import { clipTextConfigFromHf, CLIPTextModel } from "../../models/text/clip.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import {
  type MMDiTConfig,
  mmditPreset,
  mmditToReferenceConfig,
} from "../../models/mmdit/config.ts";
import { DcAe } from "../../models/dc_ae/model.ts";
import { dcAePreset } from "../../models/dc_ae/config.ts";
import type { BundleManifest } from "../../models/pipeline.ts";
import { makeCaption } from "./captions.ts";
import { Rng, sampleScene } from "./scene.ts";

/** Text lengths of the default model (captions are at most ~20 tokens with the suffixes). */
export const DEFAULT_T5_LENGTH = 24;
export const DEFAULT_CLIP_LENGTH = 24;

/**
 * The MMDiT of a fresh default bundle: the `kino-default-p2` preset (width 128, 2 double + 3
 * single blocks; the 32-channel latents packed 2x2, a 4x8x8 latent is 64 tokens), the first
 * training stage of the shipped `kino-default` (patch size 1, see `weights/default/MODEL_CARD.md`).
 */
export const DEFAULT_MMDIT: MMDiTConfig = mmditPreset("kino-default-p2");

const SPECIALS = ["<pad>", "</s>", "<unk>", "<|startoftext|>", "<|endoftext|>"];

/**
 * The vocabulary: specials, every word of the caption grammar (as `▁word` pieces, from 20 000
 * generated captions) and of the prompt suffixes, then single characters as a fallback.
 */
export function defaultVocabulary(): [string, number][] {
  const words = new Set<string>(["fps", "motion", "score", "a", "an", "the"]);
  const rng = new Rng(12345);
  for (let i = 0; i < 20000; i++) {
    for (
      const w of makeCaption(sampleScene(rng, { width: 64, height: 64, frames: 16 }), rng)
        .toLowerCase().split(/[^a-z]+/)
    ) {
      if (w) words.add(w);
    }
  }
  const pieces: [string, number][] = SPECIALS.map((s) => [s, 0]);
  for (const w of [...words].sort()) pieces.push([`\u2581${w}`, -3]);
  pieces.push(["\u2581", -6]);
  for (const ch of ".,;:!?-'0123456789abcdefghijklmnopqrstuvwxyz") pieces.push([ch, -8]);
  return pieces;
}

/** A Unigram `tokenizer.json` over {@linkcode defaultVocabulary} (lower-cased input). */
export function defaultTokenizerJson(vocab: [string, number][]): Record<string, unknown> {
  const meta = { type: "Metaspace", replacement: "\u2581", add_prefix_space: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: "Lowercase" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "[.,;:!?]" }, behavior: "Isolated", invert: false },
        { type: "WhitespaceSplit" },
        meta,
      ],
    },
    post_processor: null,
    decoder: meta,
    model: { type: "Unigram", unk_id: 2, vocab, byte_fallback: false },
  };
}

/** A seeded uniform generator (mulberry32). */
function uniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Seeded weights for every declared parameter of a shape-only model (and extra tables): norm
 * weights 1, biases 0 (names ending in `bias`), matrices U(±√(3/fan_in)), tables U(±1).
 */
function seededWeights(
  specs: { name: string; shape: number[]; init?: unknown }[],
  seed: number,
  zero: (name: string) => boolean = () => false,
): Record<string, TensorToWrite> {
  const next = uniform(seed);
  const out: Record<string, TensorToWrite> = {};
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (zero(s.name) || (s.shape.length === 1 && s.name.endsWith("bias"))) {
      // zeros
    } else if (s.shape.length === 1) data.fill(1);
    else {
      const table = /embed|shared|relative_attention_bias/.test(s.name);
      const a = table ? 1 : Math.sqrt(3 / (n / s.shape[0]!));
      for (let i = 0; i < n; i++) data[i] = (2 * next() - 1) * a;
    }
    out[s.name] = { dtype: "F32", shape: s.shape, data };
  }
  return out;
}

/** HF configs of the default text encoders for a vocabulary size. */
export function defaultTextConfigs(
  vocab: number,
): { t5: Record<string, unknown>; clip: Record<string, unknown> } {
  return {
    t5: {
      model_type: "t5",
      vocab_size: vocab,
      d_model: 64,
      d_kv: 16,
      d_ff: 128,
      num_layers: 2,
      num_heads: 4,
      relative_attention_num_buckets: 32,
      relative_attention_max_distance: 128,
      layer_norm_epsilon: 1e-6,
      feed_forward_proj: "gated-gelu",
    },
    clip: {
      model_type: "clip_text_model",
      vocab_size: vocab,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      max_position_embeddings: DEFAULT_CLIP_LENGTH,
      hidden_act: "quick_gelu",
      layer_norm_eps: 1e-5,
      eos_token_id: 4,
    },
  };
}

/**
 * Writes a fresh default bundle into `dir`: kino.json, `t5/` and `clip/` (configs, tokenizer,
 * seeded frozen weights), and seeded initial weights of the DC-AE and the MMDiT (to be replaced
 * by `deno task train-ae` and `deno task train`).
 */
export async function writeDefaultBundle(dir: string, seed = 0): Promise<BundleManifest> {
  await Deno.mkdir(dir, { recursive: true });
  const vocab = defaultVocabulary();
  const cfg = defaultTextConfigs(vocab.length);
  const tok = defaultTokenizerJson(vocab);
  for (
    const [name, config, extra] of [
      ["t5", cfg.t5, { eos_token: "</s>", pad_token: "<pad>", unk_token: "<unk>" }],
      ["clip", cfg.clip, {
        bos_token: "<|startoftext|>",
        eos_token: "<|endoftext|>",
        pad_token: "<|endoftext|>",
      }],
    ] as const
  ) {
    const d = join(dir, name);
    await Deno.mkdir(d, { recursive: true });
    await Deno.writeTextFile(join(d, "config.json"), JSON.stringify(config, null, 2) + "\n");
    await Deno.writeTextFile(join(d, "tokenizer.json"), JSON.stringify(tok) + "\n");
    await Deno.writeTextFile(
      join(d, "tokenizer_config.json"),
      JSON.stringify(extra, null, 2) + "\n",
    );
  }
  const t5 = new T5EncoderModel(t5ConfigFromHf(cfg.t5));
  const t5c = t5.config;
  await saveSafetensors(
    join(dir, "t5", "model.safetensors"),
    seededWeights([
      { name: "shared.weight", shape: [t5c.vocabSize, t5c.dModel] },
      ...t5.params.list(),
    ], seed + 1),
  );
  const clip = new CLIPTextModel(clipTextConfigFromHf(cfg.clip));
  const cc = clip.config;
  await saveSafetensors(
    join(dir, "clip", "model.safetensors"),
    seededWeights([
      {
        name: "text_model.embeddings.token_embedding.weight",
        shape: [cc.vocabSize, cc.hiddenSize],
      },
      ...clip.params.list(),
    ], seed + 2),
  );
  const ae = new DcAe(dcAePreset("small"));
  await saveSafetensors(join(dir, "dc_ae.safetensors"), seededWeights(ae.params.list(), seed + 3));
  const dit = new MMDiT(DEFAULT_MMDIT);
  await saveSafetensors(
    join(dir, "mmdit.safetensors"),
    seededWeights(dit.params.list(), seed + 4, (n) => n.startsWith("cond_in")),
  );
  const manifest: BundleManifest = {
    format: "kino-bundle",
    version: 1,
    name: "Kino default (synthetic shapes), untrained",
    mmdit: { weights: "mmdit.safetensors", config: mmditToReferenceConfig(DEFAULT_MMDIT) },
    dc_ae: { weights: "dc_ae.safetensors", preset: "small" },
    t5: "t5",
    clip: "clip",
    t5_max_length: DEFAULT_T5_LENGTH,
    clip_max_length: DEFAULT_CLIP_LENGTH,
    defaults: {
      height: 64,
      width: 64,
      numFrames: 16,
      steps: 30,
      guidance: 5,
      guidanceImg: 1,
      fps: 8,
      motionScore: null,
      seed: 42,
    },
  };
  await Deno.writeTextFile(join(dir, "kino.json"), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}
