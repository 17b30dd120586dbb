/**
 * MMDiT configurations (`MMDiTConfig` of `opensora/models/mmdit/model.py`; spec
 * `shared/spec/mmdit.md` §1): the released high-compression model, the base Open-Sora 2.0 model
 * (patch 2, 64 channels), FLUX.1-dev's layout, and small presets of the same architecture.
 *
 * @module
 */

/** One MMDiT configuration; field names follow the reference's `model_args` in camelCase. */
export interface MMDiTConfig {
  /** Preset or case name (informative). */
  name: string;
  /** Token width entering `img_in` = latent channels × patch² (128 HCAE, 64 base). */
  inChannels: number;
  /** Spatial patch size p (1 HCAE, 2 base); no temporal patching. */
  patchSize: number;
  /** Token width inside the blocks (3072 for the real model). */
  hiddenSize: number;
  /** Attention heads; head dim = hiddenSize / numHeads (24). */
  numHeads: number;
  /** Number of double-stream blocks. */
  depth: number;
  /** Number of single-stream blocks. */
  depthSingleBlocks: number;
  /** MLP hidden width as a multiple of hiddenSize (4). */
  mlpRatio: number;
  /** RoPE dims per position axis (t, h, w); the sum is the head dim. */
  axesDim: number[];
  /** RoPE base frequency (10000). */
  theta: number;
  /** Whether the q/k/v projections of the double blocks have a bias. */
  qkvBias: boolean;
  /** Width of the pooled text vector (CLIP: 768). */
  vecInDim: number;
  /** Width of the text states (T5-XXL: 4096). */
  contextInDim: number;
  /** Distilled-guidance input (`guidance_in`), FLUX.1-dev only. */
  guidanceEmbed: boolean;
  /** Image-condition projection `cond_in` (width inChannels + p²). */
  condEmbed: boolean;
  /** Fused `qkv` / `linear1` projections (FLUX naming) instead of separate q/k/v. */
  fusedQkv: boolean;
  /** Rotate-half RoPE (true for the video models) instead of Flux's interleaved pairs. */
  useLigerRope: boolean;
}

const REAL = {
  hiddenSize: 3072,
  numHeads: 24,
  depth: 19,
  depthSingleBlocks: 38,
  mlpRatio: 4,
  axesDim: [16, 56, 56],
  theta: 10000,
  qkvBias: true,
  vecInDim: 768,
  contextInDim: 4096,
  guidanceEmbed: false,
  condEmbed: true,
  fusedQkv: false,
  useLigerRope: true,
};

const KINO_DEFAULT: MMDiTConfig = {
  name: "kino-default",
  inChannels: 32,
  patchSize: 1,
  hiddenSize: 128,
  numHeads: 4,
  depth: 2,
  depthSingleBlocks: 3,
  mlpRatio: 4,
  axesDim: [8, 12, 12],
  theta: 10000,
  qkvBias: true,
  vecInDim: 64,
  contextInDim: 64,
  guidanceEmbed: false,
  condEmbed: true,
  fusedQkv: false,
  useLigerRope: true,
};

/** Named presets. */
export const MMDIT_PRESETS: Record<string, MMDiTConfig> = {
  /** The released high-compression model (`Open_Sora_v2_Video_DC_AE.safetensors`), 11.89 B. */
  "hcae": { name: "hcae", ...REAL, inChannels: 128, patchSize: 1 },
  /** Base Open-Sora 2.0 (HunyuanVideo VAE latents, patch 2), 11.89 B. */
  "baseline-768": { name: "baseline-768", ...REAL, inChannels: 64, patchSize: 2 },
  /** FLUX.1-dev's layout (guidance input, no condition, fused qkv, interleaved RoPE). */
  "flux-dev": {
    name: "flux-dev",
    ...REAL,
    inChannels: 64,
    patchSize: 2,
    guidanceEmbed: true,
    condEmbed: false,
    fusedQkv: true,
    useLigerRope: false,
  },
  /** A reduced model of the real architecture for this machine (benchmarks, default model). */
  "small": {
    name: "small",
    ...REAL,
    inChannels: 128,
    patchSize: 1,
    hiddenSize: 256,
    numHeads: 4,
    depth: 2,
    depthSingleBlocks: 4,
    axesDim: [16, 24, 24],
    vecInDim: 256,
    contextInDim: 256,
  },
  /**
   * Kino's shipped default model (`weights/default/`): width 128 (4 heads of 32), 2 double + 3
   * single blocks on the 32-channel DC-AE latents of the synthetic shapes, patch size 1 (a 4x8x8
   * latent is 256 tokens).
   */
  "kino-default": KINO_DEFAULT,
  /** The default model's first training stage: the same at patch size 2 (64 tokens). */
  "kino-default-p2": { ...KINO_DEFAULT, name: "kino-default-p2", inChannels: 128, patchSize: 2 },
  /** The fixtures' `mmdit_tiny` (real-model flags). */
  "tiny": {
    name: "tiny",
    ...REAL,
    inChannels: 16,
    patchSize: 1,
    hiddenSize: 64,
    numHeads: 4,
    depth: 2,
    depthSingleBlocks: 2,
    axesDim: [4, 6, 6],
    vecInDim: 24,
    contextInDim: 32,
  },
};

/** A preset by name, with a clear error listing the known names. */
export function mmditPreset(name: string): MMDiTConfig {
  const c = MMDIT_PRESETS[name];
  if (!c) {
    throw new RangeError(
      `unknown MMDiT preset "${name}"; known: ${Object.keys(MMDIT_PRESETS).join(", ")}`,
    );
  }
  return structuredClone(c);
}

/** A configuration from the reference's `model_args` (snake_case, as in the fixtures). */
export function mmditFromReferenceConfig(
  args: Record<string, unknown>,
  name = "reference",
): MMDiTConfig {
  const num = (k: string, d?: number): number => {
    const v = args[k] ?? d;
    if (typeof v !== "number") throw new RangeError(`MMDiT config: ${k} must be a number`);
    return v;
  };
  const bool = (k: string, d: boolean): boolean => (args[k] ?? d) as boolean;
  const c: MMDiTConfig = {
    name,
    inChannels: num("in_channels", 64),
    patchSize: num("patch_size", 2),
    hiddenSize: num("hidden_size", 3072),
    numHeads: num("num_heads", 24),
    depth: num("depth", 19),
    depthSingleBlocks: num("depth_single_blocks", 38),
    mlpRatio: num("mlp_ratio", 4),
    axesDim: (args.axes_dim as number[] | undefined) ?? [16, 56, 56],
    theta: num("theta", 10000),
    qkvBias: bool("qkv_bias", true),
    vecInDim: num("vec_in_dim", 768),
    contextInDim: num("context_in_dim", 4096),
    guidanceEmbed: bool("guidance_embed", false),
    condEmbed: bool("cond_embed", false),
    fusedQkv: bool("fused_qkv", true),
    useLigerRope: bool("use_liger_rope", false),
  };
  validateMMDiTConfig(c);
  return c;
}

/** Checks the construction-time invariants (head dim = Σ axes_dim, integer widths). */
export function validateMMDiTConfig(c: MMDiTConfig): void {
  if (c.hiddenSize % c.numHeads !== 0) {
    throw new RangeError(
      `MMDiT ${c.name}: hidden size ${c.hiddenSize} is not divisible by ${c.numHeads} heads`,
    );
  }
  const headDim = c.hiddenSize / c.numHeads;
  const sum = c.axesDim.reduce((a, b) => a + b, 0);
  if (sum !== headDim) {
    throw new RangeError(
      `MMDiT ${c.name}: axes_dim [${c.axesDim}] sums to ${sum}, but the head dim is ${headDim}`,
    );
  }
  if (!Number.isInteger(c.hiddenSize * c.mlpRatio)) {
    throw new RangeError(`MMDiT ${c.name}: mlp_ratio ${c.mlpRatio} gives a fractional width`);
  }
}

/** The reference's `model_args` (snake_case) of a configuration (for kino.json). */
export function mmditToReferenceConfig(c: MMDiTConfig): Record<string, unknown> {
  return {
    in_channels: c.inChannels,
    patch_size: c.patchSize,
    hidden_size: c.hiddenSize,
    num_heads: c.numHeads,
    depth: c.depth,
    depth_single_blocks: c.depthSingleBlocks,
    mlp_ratio: c.mlpRatio,
    axes_dim: [...c.axesDim],
    theta: c.theta,
    qkv_bias: c.qkvBias,
    vec_in_dim: c.vecInDim,
    context_in_dim: c.contextInDim,
    guidance_embed: c.guidanceEmbed,
    cond_embed: c.condEmbed,
    fused_qkv: c.fusedQkv,
    use_liger_rope: c.useLigerRope,
  };
}
