/**
 * Layers of the MMDiT, one class per reference module (`opensora/models/mmdit/layers.py`; spec
 * `shared/spec/mmdit.md` §4, §8-§12). Each class declares its parameters under the reference's
 * module path (the checkpoint keys) and records ops in `forward`. Token tensors are
 * `[B, L, hidden]`; heads are contiguous `hidden/numHeads`-wide slices of the features.
 *
 * @module
 */
import type { ParamScope } from "../params.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { add, gelu, mul, silu } from "../../engine/ops/elementwise.ts";
import { permute, reshape, slice } from "../../engine/ops/movement.ts";
import { chunk, concat, split } from "../../engine/ops/concat.ts";
import { linear } from "../../engine/ops/matmul.ts";
import { layerNorm, rmsNorm } from "../../engine/ops/norm.ts";
import { attention, ropeHalf, ropeInterleaved } from "../../engine/ops/attention.ts";

/** `nn.Linear(in, out, bias)`: keys `weight` `[out, in]`, `bias` `[out]`; PyTorch's init. */
export class Linear {
  /** Checkpoint key of the weight `[out, in]`. */
  readonly weight: string;
  /** Checkpoint key of the bias `[out]`, or null without bias. */
  readonly bias: string | null;
  /**
   * Declares `weight` and `bias` under `scope` with PyTorch's uniform init (±1/√in), or zeros with
   * `zeroInit`.
   */
  constructor(
    private readonly scope: ParamScope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
    zeroInit = false,
  ) {
    const bound = 1 / Math.sqrt(inFeatures);
    const init = zeroInit ? "zeros" : { uniform: bound };
    this.weight = scope.declare("weight", [outFeatures, inFeatures], init);
    this.bias = bias ? scope.declare("bias", [outFeatures], init) : null;
  }
  /** `x·Wᵀ + b` over the last axis: `[..., in]` → `[..., out]`. */
  forward(x: Tensor): Tensor {
    const w = this.scope.get(this.weight);
    return this.bias ? linear(x, w, this.scope.get(this.bias)) : linear(x, w);
  }
  /**
   * Output features `[from, to)` only: the same values as `split(forward(x))` gives for them,
   * reading the rows of the weight in place (no copy), so a wide projection can be computed in
   * parts.
   */
  forwardRows(x: Tensor, from: number, to: number): Tensor {
    const w = slice(this.scope.get(this.weight), [from, 0], [to, this.inFeatures]);
    if (!this.bias) return linear(x, w);
    return linear(x, w, slice(this.scope.get(this.bias), [from], [to]));
  }
}

/**
 * `f` applied to chunks of at most `chunk` tokens (axis 1) of every tensor in `xs`, the results
 * joined along the tokens: the same values as `f(xs)` for an `f` that treats every token on its
 * own, with a peak of one chunk's intermediates (the memory plan's token chunks, issue 18).
 * `chunk` null (or ≥ the token count) runs `f` once.
 */
export function byTokens(xs: Tensor[], chunk: number | null, f: (xs: Tensor[]) => Tensor): Tensor {
  const L = xs[0]!.shape[1]!;
  if (!chunk || chunk >= L) return f(xs);
  const parts: Tensor[] = [];
  for (let a = 0; a < L; a += chunk) {
    const b = Math.min(L, a + chunk);
    parts.push(f(xs.map((x) => {
      const end = [...x.shape];
      end[1] = b;
      return slice(x, x.shape.map((_, i) => (i === 1 ? a : 0)), end);
    })));
  }
  return concat(parts, 1);
}

/** `MLPEmbedder`: `out_layer(SiLU(in_layer(x)))`. */
export class MLPEmbedder {
  /** `in_layer`: in → hidden. */
  readonly inLayer: Linear;
  /** `out_layer`: hidden → hidden. */
  readonly outLayer: Linear;
  /**
   * Declares `in_layer` (`inDim` → `hidden`) and `out_layer` (`hidden` → `hidden`) under `scope`.
   */
  constructor(scope: ParamScope, inDim: number, hidden: number) {
    this.inLayer = new Linear(scope.sub("in_layer"), inDim, hidden);
    this.outLayer = new Linear(scope.sub("out_layer"), hidden, hidden);
  }
  /** `[..., inDim]` → `[..., hidden]`. */
  forward(x: Tensor): Tensor {
    return this.outLayer.forward(silu(this.inLayer.forward(x)));
  }
}

/** One modulation triple, each `[B, 1, hidden]` (broadcast over the sequence). */
export interface ModulationOut {
  /** Added after the normalisation. */
  shift: Tensor;
  /** Multiplies the normalised input as `(1 + scale)`. */
  scale: Tensor;
  /** Multiplies the branch output before the residual add. */
  gate: Tensor;
}

/** `Modulation`: `lin(SiLU(vec))` chunked into 1 or 2 `(shift, scale, gate)` triples. */
export class Modulation {
  /** `lin`: hidden → 3·hidden (6·hidden when `double`). */
  readonly lin: Linear;
  /** Declares `lin` under `scope`; `double` gives two triples (attention and MLP). */
  constructor(scope: ParamScope, private readonly hidden: number, readonly double: boolean) {
    this.lin = new Linear(scope.sub("lin"), hidden, (double ? 6 : 3) * hidden);
  }
  /** The modulation triples of `vec` `[B, hidden]`: one, or two when `double`. */
  forward(vec: Tensor): ModulationOut[] {
    const B = vec.shape[0]!;
    const m = reshape(this.lin.forward(silu(vec)), [B, 1, (this.double ? 6 : 3) * this.hidden]);
    const c = chunk(m, this.double ? 6 : 3, -1);
    const out: ModulationOut[] = [{ shift: c[0]!, scale: c[1]!, gate: c[2]! }];
    if (this.double) out.push({ shift: c[3]!, scale: c[4]!, gate: c[5]! });
    return out;
  }
}

/** `(1 + scale)·LN(x) + shift`, LN without affine parameters, eps 1e-6 (spec §9). */
export function modulate(x: Tensor, m: { shift: Tensor; scale: Tensor }): Tensor {
  return add(mul(layerNorm(x, undefined, undefined, 1e-6), add(m.scale, 1)), m.shift);
}

/** `x + gate · y`. */
export function gated(x: Tensor, gate: Tensor, y: Tensor): Tensor {
  return add(x, mul(gate, y));
}

/** Rotary tables for one forward: rotate-half (cos/sin) or Flux (pe). */
export type Rope = { kind: "half"; cos: Tensor; sin: Tensor } | { kind: "flux"; pe: Tensor };

/** `QKNorm`: RMSNorm over the head dim with separate learnable scales for q and k (eps 1e-6). */
export class QKNorm {
  /** Checkpoint key of the query scale `[headDim]`. */
  readonly queryScale: string;
  /** Checkpoint key of the key scale `[headDim]`. */
  readonly keyScale: string;
  /** Declares `query_norm.scale` and `key_norm.scale` (ones) of `headDim` under `scope`. */
  constructor(private readonly scope: ParamScope, headDim: number) {
    this.queryScale = scope.sub("query_norm").declare("scale", [headDim], "ones");
    this.keyScale = scope.sub("key_norm").declare("scale", [headDim], "ones");
  }
  /** q, k as `[B, L, H, D]`. */
  forward(q: Tensor, k: Tensor): [Tensor, Tensor] {
    return [
      rmsNorm(q, this.scope.get(this.queryScale), 1e-6),
      rmsNorm(k, this.scope.get(this.keyScale), 1e-6),
    ];
  }
}

/** `[B, L, H·D]` → `[B, L, H, D]` (a view). */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [B, L, F] = x.shape as [number, number, number];
  return reshape(x, [B, L, heads, F / heads]);
}

/**
 * Joint attention (spec §8): q, k, v as `[B, L, H, D]` (text tokens first) → RoPE on q and k →
 * `softmax(q·kᵀ/√D)·v` over all tokens, no mask → `[B, L, H·D]`.
 */
export function jointAttention(q: Tensor, k: Tensor, v: Tensor, rope: Rope): Tensor {
  const [B, L, H, D] = q.shape as [number, number, number, number];
  const heads = (t: Tensor) => permute(t, [0, 2, 1, 3]);
  const rot = (t: Tensor) =>
    rope.kind === "half"
      ? ropeHalf(heads(t), rope.cos, rope.sin)
      : ropeInterleaved(heads(t), rope.pe);
  const o = attention(rot(q), rot(k), heads(v)); // [B, H, L, D]
  return reshape(permute(o, [0, 2, 1, 3]), [B, L, H * D]);
}

/** The MLP of a double block: `Linear(h → r·h) → GELU(tanh) → Linear(r·h → h)` (keys `0`, `2`). */
export class Mlp {
  /** First linear (key `0`): hidden → mlpHidden. */
  readonly fc1: Linear;
  /** Second linear (key `2`): mlpHidden → hidden. */
  readonly fc2: Linear;
  /** Declares both linears under `scope`. */
  constructor(scope: ParamScope, hidden: number, mlpHidden: number) {
    this.fc1 = new Linear(scope.sub(0), hidden, mlpHidden);
    this.fc2 = new Linear(scope.sub(2), mlpHidden, hidden);
  }
  /** `[B, L, hidden]` → `[B, L, hidden]`, in chunks of `tokenChunk` tokens when given. */
  forward(x: Tensor, tokenChunk: number | null = null): Tensor {
    return byTokens(
      [x],
      tokenChunk,
      ([xc]) => this.fc2.forward(gelu(this.fc1.forward(xc!), "tanh")),
    );
  }
}

/**
 * `SelfAttention` of one stream of a double block: q/k/v projections (separate, or fused `qkv`),
 * QK-norm, and the output projection `proj`.
 */
export class StreamAttention {
  /** Separate query projection (`q_proj`), or null when fused. */
  readonly q: Linear | null = null;
  /** Separate key projection (`k_proj`), or null when fused. */
  readonly k: Linear | null = null;
  /** Separate value projection (`v_proj`), or null when fused. */
  readonly v: Linear | null = null;
  /** Fused `qkv` projection (hidden → 3·hidden), or null when separate. */
  readonly qkv: Linear | null = null;
  /** QK-norm of the heads. */
  readonly norm: QKNorm;
  /** Output projection `proj`. */
  readonly proj: Linear;
  /**
   * Declares the projections (fused `qkv` or separate `q/k/v_proj`, with `bias`), the QK-norm and
   * `proj` under `scope`.
   */
  constructor(
    scope: ParamScope,
    private readonly hidden: number,
    readonly heads: number,
    fused: boolean,
    bias: boolean,
  ) {
    if (fused) this.qkv = new Linear(scope.sub("qkv"), hidden, 3 * hidden, bias);
    else {
      this.q = new Linear(scope.sub("q_proj"), hidden, hidden, bias);
      this.k = new Linear(scope.sub("k_proj"), hidden, hidden, bias);
      this.v = new Linear(scope.sub("v_proj"), hidden, hidden, bias);
    }
    this.norm = new QKNorm(scope.sub("norm"), hidden / heads);
    this.proj = new Linear(scope.sub("proj"), hidden, hidden);
  }
  /** q, k (normalised), v as `[B, L, H, D]`. */
  qkvHeads(x: Tensor): [Tensor, Tensor, Tensor] {
    let q: Tensor, k: Tensor, v: Tensor;
    if (this.qkv) [q, k, v] = chunk(this.qkv.forward(x), 3, -1) as [Tensor, Tensor, Tensor];
    else [q, k, v] = [this.q!.forward(x), this.k!.forward(x), this.v!.forward(x)];
    const [qn, kn] = this.norm.forward(splitHeads(q, this.heads), splitHeads(k, this.heads));
    return [qn, kn, splitHeads(v, this.heads)];
  }
}

/** `DoubleStreamBlock` (spec §10): separate weights for the image and text streams. */
export class DoubleStreamBlock {
  /** Modulation of the image stream (two triples). */
  readonly imgMod: Modulation;
  /** Attention projections of the image stream. */
  readonly imgAttn: StreamAttention;
  /** MLP of the image stream. */
  readonly imgMlp: Mlp;
  /** Modulation of the text stream (two triples). */
  readonly txtMod: Modulation;
  /** Attention projections of the text stream. */
  readonly txtAttn: StreamAttention;
  /** MLP of the text stream. */
  readonly txtMlp: Mlp;
  /** Declares the block's parameters under `scope`. */
  constructor(
    scope: ParamScope,
    hidden: number,
    heads: number,
    mlpHidden: number,
    fused: boolean,
    qkvBias: boolean,
  ) {
    this.imgMod = new Modulation(scope.sub("img_mod"), hidden, true);
    this.imgAttn = new StreamAttention(scope.sub("img_attn"), hidden, heads, fused, qkvBias);
    this.imgMlp = new Mlp(scope.sub("img_mlp"), hidden, mlpHidden);
    this.txtMod = new Modulation(scope.sub("txt_mod"), hidden, true);
    this.txtAttn = new StreamAttention(scope.sub("txt_attn"), hidden, heads, fused, qkvBias);
    this.txtMlp = new Mlp(scope.sub("txt_mlp"), hidden, mlpHidden);
  }
  /**
   * One block: joint attention over text then image tokens, then per-stream MLPs; returns the new
   * `[img, txt]`.
   */
  forward(
    img: Tensor,
    txt: Tensor,
    vec: Tensor,
    rope: Rope,
    tokenChunk: number | null = null,
  ): [Tensor, Tensor] {
    const [im1, im2] = this.imgMod.forward(vec) as [ModulationOut, ModulationOut];
    const [tm1, tm2] = this.txtMod.forward(vec) as [ModulationOut, ModulationOut];
    const [iq, ik, iv] = this.imgAttn.qkvHeads(modulate(img, im1));
    const [tq, tk, tv] = this.txtAttn.qkvHeads(modulate(txt, tm1));
    const Lt = txt.shape[1]!;
    const a = jointAttention(concat([tq, iq], 1), concat([tk, ik], 1), concat([tv, iv], 1), rope);
    const [ta, ia] = split(a, [Lt, img.shape[1]!], 1) as [Tensor, Tensor];
    img = gated(img, im1.gate, this.imgAttn.proj.forward(ia));
    img = gated(img, im2.gate, this.imgMlp.forward(modulate(img, im2), tokenChunk));
    txt = gated(txt, tm1.gate, this.txtAttn.proj.forward(ta));
    txt = gated(txt, tm2.gate, this.txtMlp.forward(modulate(txt, tm2), tokenChunk));
    return [img, txt];
  }
}

/** `SingleStreamBlock` (spec §11) on the joint sequence (text first). */
export class SingleStreamBlock {
  /** Separate query projection (`q_proj`), or null when fused. */
  readonly q: Linear | null = null;
  /** Separate key projection (`k_proj`), or null when fused. */
  readonly k: Linear | null = null;
  /** Value and MLP-input projection (`v_mlp`, hidden → hidden + mlpHidden), or null when fused. */
  readonly vMlp: Linear | null = null;
  /** Fused projection (`linear1`, hidden → 3·hidden + mlpHidden), or null when separate. */
  readonly linear1: Linear | null = null;
  /** Output projection (`linear2`) of the attention and MLP outputs, concatenated. */
  readonly linear2: Linear;
  /** QK-norm of the heads. */
  readonly norm: QKNorm;
  /** Modulation (one triple). */
  readonly modulation: Modulation;
  /** Declares the block's parameters under `scope` (fused `linear1` or separate projections). */
  constructor(
    scope: ParamScope,
    private readonly hidden: number,
    readonly heads: number,
    private readonly mlpHidden: number,
    fused: boolean,
  ) {
    if (fused) this.linear1 = new Linear(scope.sub("linear1"), hidden, 3 * hidden + mlpHidden);
    else {
      this.q = new Linear(scope.sub("q_proj"), hidden, hidden);
      this.k = new Linear(scope.sub("k_proj"), hidden, hidden);
      this.vMlp = new Linear(scope.sub("v_mlp"), hidden, hidden + mlpHidden);
    }
    this.linear2 = new Linear(scope.sub("linear2"), hidden + mlpHidden, hidden);
    this.norm = new QKNorm(scope.sub("norm"), hidden / heads);
    this.modulation = new Modulation(scope.sub("modulation"), hidden, false);
  }
  /**
   * One block on the joint sequence `x` `[B, L, hidden]` (text first); returns the new sequence.
   * With `tokenChunk`, the MLP part of the wide projection (`v_mlp` / `linear1`), its GELU and
   * `linear2` run in chunks of that many tokens (the same values, a smaller peak).
   */
  forward(x: Tensor, vec: Tensor, rope: Rope, tokenChunk: number | null = null): Tensor {
    const [m] = this.modulation.forward(vec) as [ModulationOut];
    const u = modulate(x, m);
    const h = this.hidden;
    if (tokenChunk && tokenChunk < x.shape[1]!) {
      const proj = (this.linear1 ?? this.vMlp)!;
      const qkvW = this.linear1 ? 3 * h : h; // the attention part of the wide projection
      const [q, k, v] = this.linear1
        ? split(proj.forwardRows(u, 0, qkvW), [h, h, h], -1) as [Tensor, Tensor, Tensor]
        : [this.q!.forward(u), this.k!.forward(u), proj.forwardRows(u, 0, h)];
      const [qn, kn] = this.norm.forward(splitHeads(q, this.heads), splitHeads(k, this.heads));
      const a = jointAttention(qn, kn, splitHeads(v, this.heads), rope);
      const out = byTokens([u, a], tokenChunk, ([uc, ac]) => {
        const mlp = proj.forwardRows(uc!, qkvW, qkvW + this.mlpHidden);
        return this.linear2.forward(concat([ac!, gelu(mlp, "tanh")], -1));
      });
      return gated(x, m.gate, out);
    }
    let q: Tensor, k: Tensor, v: Tensor, mlp: Tensor;
    if (this.linear1) {
      [q, k, v, mlp] = split(this.linear1.forward(u), [h, h, h, this.mlpHidden], -1) as [
        Tensor,
        Tensor,
        Tensor,
        Tensor,
      ];
    } else {
      q = this.q!.forward(u);
      k = this.k!.forward(u);
      [v, mlp] = split(this.vMlp!.forward(u), [h, this.mlpHidden], -1) as [Tensor, Tensor];
    }
    const [qn, kn] = this.norm.forward(splitHeads(q, this.heads), splitHeads(k, this.heads));
    const a = jointAttention(qn, kn, splitHeads(v, this.heads), rope);
    return gated(x, m.gate, this.linear2.forward(concat([a, gelu(mlp, "tanh")], -1)));
  }
}

/** `LastLayer` (spec §12): `[shift | scale] = adaLN(SiLU(vec))`, then a linear to the output. */
export class LastLayer {
  /** Output projection: hidden → output channels. */
  readonly linear: Linear;
  /** `adaLN_modulation.1`: hidden → 2·hidden (shift, scale). */
  readonly adaLN: Linear;
  /** Declares `linear` and `adaLN_modulation.1` under `scope`. */
  constructor(scope: ParamScope, private readonly hidden: number, outChannels: number) {
    this.linear = new Linear(scope.sub("linear"), hidden, outChannels);
    this.adaLN = new Linear(scope.sub("adaLN_modulation").sub(1), hidden, 2 * hidden);
  }
  /** Modulated norm of `x` `[B, L, hidden]` then the linear: `[B, L, outChannels]`. */
  forward(x: Tensor, vec: Tensor): Tensor {
    const B = vec.shape[0]!;
    const m = reshape(this.adaLN.forward(silu(vec)), [B, 1, 2 * this.hidden]);
    const [shift, scale] = chunk(m, 2, -1) as [Tensor, Tensor];
    return this.linear.forward(modulate(x, { shift, scale }));
  }
}
