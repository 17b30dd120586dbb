/**
 * The MMDiT (Flux-style diffusion transformer) of Open-Sora 2.0, `MMDiTModel` of
 * `opensora/models/mmdit/model.py` (spec `shared/spec/mmdit.md`). Parameter names are the
 * checkpoint keys; construction allocates nothing (shape-only), so the 11.9 B-parameter presets can
 * be listed and sized without memory.
 *
 * @example
 * ```ts ignore
 * const dit = new MMDiT(mmditPreset("hcae"), { storage: "bf16" });
 * await dit.params.load("ckpts/Open_Sora_v2_Video_DC_AE.safetensors");
 * const v = dit.forward({ img, imgIds, txt, txtIds, timesteps, yVec, cond });  // [B, N, 128]
 * ```
 *
 * @module
 */
import type { DType } from "../../engine/dtype.ts";
import { isGradEnabled, keep, releaseAtScopeEnd, type Tensor, tidy } from "../../engine/tensor.ts";
import { add } from "../../engine/ops/elementwise.ts";
import { concat, split } from "../../engine/ops/concat.ts";
import { timestepEmbedding } from "../../engine/ops/embedding.ts";
import { ropeTablesFlux, ropeTablesHalf } from "../../engine/ops/attention.ts";
import { fmtShape } from "../../engine/shape.ts";
import { ParamSet } from "../params.ts";
import { type MMDiTConfig, validateMMDiTConfig } from "./config.ts";
import type { MMDiTInputs } from "./inputs.ts";
import {
  DoubleStreamBlock,
  LastLayer,
  Linear,
  MLPEmbedder,
  type Rope,
  SingleStreamBlock,
} from "./layers.ts";

/** Receives named intermediates during a forward (`img_in`, `double_blocks.0.img`, ...). */
export type MMDiTTap = (name: string, t: Tensor) => void;

/** Construction options. */
export interface MMDiTOptions {
  /** Storage dtype of loaded weight matrices (bf16 keeps the real model at 2 bytes/param). */
  storage?: DType;
}

/** Per-block hook (weight streaming): called before and after each block runs. */
export interface BlockHooks {
  /** Before the parameters under `prefix` (`embed`, `double_blocks.3`, ...) are used. */
  before?(prefix: string): void;
  /** After the group's ops are recorded; `outputs` are what later groups consume. */
  after?(prefix: string, outputs: Tensor[]): void;
}

/** The MMDiT; see the module doc. */
export class MMDiT {
  /** All parameters under their checkpoint keys. */
  readonly params: ParamSet;
  /** `img_in`: image token projection, inChannels → hidden. */
  readonly imgIn: Linear;
  /** `time_in`: timestep embedding (256 sinusoidal features) → hidden. */
  readonly timeIn: MLPEmbedder;
  /** `vector_in`: pooled text vector (vecInDim) → hidden. */
  readonly vectorIn: MLPEmbedder;
  /** `guidance_in`: distilled-guidance embedding, or null without `guidanceEmbed`. */
  readonly guidanceIn: MLPEmbedder | null;
  /** `cond_in`: image-condition projection (zero-initialised), or null without `condEmbed`. */
  readonly condIn: Linear | null;
  /** `txt_in`: text state projection, contextInDim → hidden. */
  readonly txtIn: Linear;
  /** The double-stream blocks (`double_blocks.i`). */
  readonly doubleBlocks: DoubleStreamBlock[] = [];
  /** The single-stream blocks (`single_blocks.i`). */
  readonly singleBlocks: SingleStreamBlock[] = [];
  /** `final_layer`: back to inChannels per token. */
  readonly finalLayer: LastLayer;
  /** Optional hooks around every block (used to stream weights block by block). */
  hooks: BlockHooks = {};
  /**
   * Tokens per chunk of the MLPs and the single blocks' wide projection, or null for none: the
   * same output with a smaller peak (the memory plan's token chunks for long videos).
   */
  tokenChunk: number | null = null;

  /** Validates `config` and declares every parameter (allocates nothing). */
  constructor(readonly config: MMDiTConfig, options: MMDiTOptions = {}) {
    validateMMDiTConfig(config);
    const c = config;
    this.params = new ParamSet(options.storage ?? "f32");
    const root = this.params.root;
    const h = c.hiddenSize;
    const mlp = h * c.mlpRatio;
    this.imgIn = new Linear(root.sub("img_in"), c.inChannels, h);
    this.timeIn = new MLPEmbedder(root.sub("time_in"), 256, h);
    this.vectorIn = new MLPEmbedder(root.sub("vector_in"), c.vecInDim, h);
    this.guidanceIn = c.guidanceEmbed ? new MLPEmbedder(root.sub("guidance_in"), 256, h) : null;
    // initialize_weights zeroes cond_in: an untrained condition path is a no-op
    this.condIn = c.condEmbed
      ? new Linear(root.sub("cond_in"), c.inChannels + c.patchSize ** 2, h, true, true)
      : null;
    this.txtIn = new Linear(root.sub("txt_in"), c.contextInDim, h);
    for (let i = 0; i < c.depth; i++) {
      this.doubleBlocks.push(
        new DoubleStreamBlock(
          root.sub("double_blocks").sub(i),
          h,
          c.numHeads,
          mlp,
          c.fusedQkv,
          c.qkvBias,
        ),
      );
    }
    for (let i = 0; i < c.depthSingleBlocks; i++) {
      this.singleBlocks.push(
        new SingleStreamBlock(root.sub("single_blocks").sub(i), h, c.numHeads, mlp, c.fusedQkv),
      );
    }
    this.finalLayer = new LastLayer(root.sub("final_layer"), h, c.inChannels);
  }

  /** Width of the condition tokens (`inChannels + p²`). */
  get condChannels(): number {
    return this.config.inChannels + this.config.patchSize ** 2;
  }

  /** The tables of the last forward's ids (the sampler passes the same ids at every step). */
  #ropeCache: { txt: Float32Array; img: Float32Array; key: string; rope: Rope } | null = null;

  /**
   * RoPE tables for the joint sequence (text ids first, then image ids). Cached while the same
   * id arrays come back (every step of a sampling loop; callers must not mutate an id array
   * they passed before); a replaced entry is released when the enclosing scope ends, so graphs
   * recorded before still read it.
   */
  rope(txtIds: Float32Array, imgIds: Float32Array, B: number, Lt: number, N: number): Rope {
    const key = `${B}/${Lt}/${N}`;
    const c = this.#ropeCache;
    if (c && c.txt === txtIds && c.img === imgIds && c.key === key) return c.rope;
    const rope = this.#ropeTables(txtIds, imgIds, B, Lt, N);
    const tensors = rope.kind === "half" ? [rope.cos, rope.sin] : [rope.pe];
    for (const t of tensors) keep(t);
    if (c) {
      for (const t of c.rope.kind === "half" ? [c.rope.cos, c.rope.sin] : [c.rope.pe]) {
        releaseAtScopeEnd(t);
      }
    }
    this.#ropeCache = { txt: txtIds, img: imgIds, key, rope };
    return rope;
  }

  #ropeTables(txtIds: Float32Array, imgIds: Float32Array, B: number, Lt: number, N: number): Rope {
    const ids = new Float32Array(B * (Lt + N) * 3);
    for (let b = 0; b < B; b++) {
      ids.set(txtIds.subarray(b * Lt * 3, (b + 1) * Lt * 3), b * (Lt + N) * 3);
      ids.set(imgIds.subarray(b * N * 3, (b + 1) * N * 3), (b * (Lt + N) + Lt) * 3);
    }
    const shape = [B, Lt + N, 3] as const;
    const c = this.config;
    return c.useLigerRope
      ? { kind: "half", ...ropeTablesHalf(ids, shape, c.axesDim, c.theta) }
      : { kind: "flux", pe: ropeTablesFlux(ids, shape, c.axesDim, c.theta) };
  }

  /** Checks the inputs' shapes against the configuration; errors name the input and the fix. */
  checkInputs(x: MMDiTInputs): { B: number; N: number; Lt: number } {
    const c = this.config;
    const bad = (what: string, want: string, t: { shape: readonly number[] } | number) => {
      const got = typeof t === "number" ? `${t} values` : fmtShape(t.shape);
      return new RangeError(`MMDiT ${c.name}: ${what} must be ${want}, got ${got}`);
    };
    if (x.img.rank !== 3 || x.img.shape[2] !== c.inChannels) {
      throw bad("img", `[B, N, ${c.inChannels}] (patchified latent tokens)`, x.img);
    }
    const [B, N] = x.img.shape as [number, number];
    if (x.txt.rank !== 3 || x.txt.shape[0] !== B || x.txt.shape[2] !== c.contextInDim) {
      throw bad("txt", `[${B}, Lt, ${c.contextInDim}] (text encoder states)`, x.txt);
    }
    const Lt = x.txt.shape[1]!;
    if (x.timesteps.rank !== 1 || x.timesteps.shape[0] !== B) {
      throw bad("timesteps", `[${B}]`, x.timesteps);
    }
    if (x.yVec.rank !== 2 || x.yVec.shape[0] !== B || x.yVec.shape[1] !== c.vecInDim) {
      throw bad("yVec", `[${B}, ${c.vecInDim}] (pooled text vector)`, x.yVec);
    }
    if (x.cond && (x.cond.rank !== 3 || x.cond.shape.join() !== [B, N, this.condChannels].join())) {
      throw bad("cond", `[${B}, ${N}, ${this.condChannels}] ([mask, masked reference])`, x.cond);
    }
    if (x.imgIds.length !== B * N * 3) throw bad("imgIds", `[${B}, ${N}, 3]`, x.imgIds.length);
    if (x.txtIds.length !== B * Lt * 3) throw bad("txtIds", `[${B}, ${Lt}, 3]`, x.txtIds.length);
    if (c.guidanceEmbed && !x.guidance) {
      throw new RangeError(`MMDiT ${c.name}: this model embeds guidance; pass inputs.guidance [B]`);
    }
    return { B, N, Lt };
  }

  /** One forward pass (spec §5): velocity `[B, N, inChannels]`. */
  forward(x: MMDiTInputs, tap?: MMDiTTap): Tensor {
    const { B, N, Lt } = this.checkInputs(x);
    const hooks = this.hooks;
    // One streaming group: its hooks around it, and (streaming without gradients) its own scope,
    // so that the views of its weights and its intermediates die with it and the streamer's free
    // really returns the weights' memory.
    const group = <T extends Tensor | Tensor[]>(name: string, f: () => T): T => {
      hooks.before?.(name);
      const out = hooks.after && !isGradEnabled() ? tidy(f) : f();
      hooks.after?.(name, Array.isArray(out) ? out : [out as Tensor]);
      return out;
    };
    let [img, txt, vec] = group("embed", () => {
      let img = this.imgIn.forward(x.img);
      if (this.condIn) {
        // a missing condition is all zeros, i.e. cond_in's bias alone
        img = x.cond
          ? add(img, this.condIn.forward(x.cond))
          : add(img, this.params.get(this.condIn.bias!));
      }
      const txt = this.txtIn.forward(x.txt);
      let vec = add(
        this.timeIn.forward(timestepEmbedding(x.timesteps, 256)),
        this.vectorIn.forward(x.yVec),
      );
      if (this.guidanceIn && x.guidance) {
        vec = add(vec, this.guidanceIn.forward(timestepEmbedding(x.guidance, 256)));
      }
      return [img, txt, vec] as Tensor[];
    }) as [Tensor, Tensor, Tensor];
    tap?.("img_in", img);
    tap?.("txt_in", txt);
    tap?.("vec", vec);
    const rope = this.rope(x.txtIds, x.imgIds, B, Lt, N);
    if (rope.kind === "half") {
      tap?.("pe_cos", rope.cos);
      tap?.("pe_sin", rope.sin);
    } else tap?.("pe", rope.pe);
    this.doubleBlocks.forEach((block, i) => {
      [img, txt] = group(
        `double_blocks.${i}`,
        () => block.forward(img, txt, vec, rope, this.tokenChunk),
      );
      tap?.(`double_blocks.${i}.img`, img);
      tap?.(`double_blocks.${i}.txt`, txt);
    });
    let joint: Tensor = concat([txt, img], 1);
    this.singleBlocks.forEach((block, i) => {
      joint = group(`single_blocks.${i}`, () => block.forward(joint, vec, rope, this.tokenChunk));
      tap?.(`single_blocks.${i}`, joint);
    });
    img = split(joint, [Lt, N], 1)[1]!;
    tap?.("final_layer_in", img);
    const out = group("final_layer", () => this.finalLayer.forward(img, vec));
    return out;
  }
}
