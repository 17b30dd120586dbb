/**
 * Float64 CPU references of the two text encoders (T5 v1.1 encoder, CLIP text tower), written as
 * plain loops straight from `shared/spec/text-encoders.md` §2.3 / §3.3, independent of the
 * engine. Weights are given by their Hugging Face checkpoint keys; one sequence at a time.
 */

/** Weights by checkpoint key (row-major). */
export type RefWeights = Map<string, ArrayLike<number>>;

function w(ws: RefWeights, key: string): ArrayLike<number> {
  const v = ws.get(key);
  if (!v) throw new Error(`reference: weight ${key} missing`);
  return v;
}

/** `x [n, inDim] · Wᵀ (+ b)` with W `[outDim, inDim]`. */
function linear(
  x: Float64Array,
  n: number,
  inDim: number,
  W: ArrayLike<number>,
  outDim: number,
  b?: ArrayLike<number>,
): Float64Array {
  const y = new Float64Array(n * outDim);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < outDim; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i]! * W[o * inDim + i]!;
      y[r * outDim + o] = s;
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, n: number, d: number, g: ArrayLike<number>, eps: number) {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += x[r * d + i]! ** 2;
    const s = 1 / Math.sqrt(ms / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = x[r * d + i]! * s * g[i]!;
  }
  return y;
}

function layerNorm(
  x: Float64Array,
  n: number,
  d: number,
  g: ArrayLike<number>,
  b: ArrayLike<number>,
  eps: number,
) {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let m = 0;
    for (let i = 0; i < d; i++) m += x[r * d + i]!;
    m /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - m) ** 2;
    const s = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - m) * s * g[i]! + b[i]!;
  }
  return y;
}

/**
 * Multi-head attention of one sequence: `q, k, v [L, H·D]` → `[L, H·D]` with
 * `softmax(q·kᵀ·scale + bias(h, i, j))`; `bias` returns −Infinity to mask.
 */
function mha(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  L: number,
  H: number,
  D: number,
  scale: number,
  bias: (h: number, i: number, j: number) => number,
): Float64Array {
  const out = new Float64Array(L * H * D);
  const C = H * D;
  const s = new Float64Array(L);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < L; i++) {
      let m = -Infinity;
      for (let j = 0; j < L; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[i * C + h * D + d]! * k[j * C + h * D + d]!;
        s[j] = dot * scale + bias(h, i, j);
        m = Math.max(m, s[j]!);
      }
      let z = 0;
      for (let j = 0; j < L; j++) {
        s[j] = s[j] === -Infinity ? 0 : Math.exp(s[j]! - m);
        z += s[j]!;
      }
      for (let d = 0; d < D; d++) {
        let acc = 0;
        for (let j = 0; j < L; j++) acc += (s[j]! / z) * v[j * C + h * D + d]!;
        out[i * C + h * D + d] = acc;
      }
    }
  }
  return out;
}

/** T5 sizes for the reference. */
export interface T5RefConfig {
  dModel: number;
  dKv: number;
  dFf: number;
  numLayers: number;
  numHeads: number;
  buckets: number;
  maxDistance: number;
  eps: number;
}

/** HF `_relative_position_bucket(bidirectional=True)` for one relative position `j − i`. */
export function t5BucketRef(rel: number, numBuckets: number, maxDistance: number): number {
  const nb = Math.floor(numBuckets / 2);
  let ret = rel > 0 ? nb : 0;
  const n = Math.abs(rel);
  const maxExact = Math.floor(nb / 2);
  if (n < maxExact) return ret + n;
  let large = maxExact +
    Math.trunc((Math.log(n / maxExact) / Math.log(maxDistance / maxExact)) * (nb - maxExact));
  if (large > nb - 1) large = nb - 1;
  ret += large;
  return ret;
}

/** T5 v1.1 encoder `last_hidden_state` `[L, dModel]` of one id sequence. */
export function t5EncoderRef(ws: RefWeights, c: T5RefConfig, ids: readonly number[]): Float64Array {
  const L = ids.length;
  const d = c.dModel;
  const inner = c.numHeads * c.dKv;
  const E = w(ws, "shared.weight");
  let h = new Float64Array(L * d);
  for (let i = 0; i < L; i++) for (let j = 0; j < d; j++) h[i * d + j] = E[ids[i]! * d + j]!;
  const rel = w(ws, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  const bias = (hd: number, i: number, j: number) =>
    rel[t5BucketRef(j - i, c.buckets, c.maxDistance) * c.numHeads + hd]!;
  const gelu = (x: number) =>
    0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  for (let l = 0; l < c.numLayers; l++) {
    const pre = `encoder.block.${l}.layer.`;
    const a = rmsNorm(h, L, d, w(ws, `${pre}0.layer_norm.weight`), c.eps);
    const proj = (n: string) => linear(a, L, d, w(ws, `${pre}0.SelfAttention.${n}.weight`), inner);
    const o = mha(proj("q"), proj("k"), proj("v"), L, c.numHeads, c.dKv, 1, bias);
    const ao = linear(o, L, inner, w(ws, `${pre}0.SelfAttention.o.weight`), d);
    h = h.map((x, i) => x + ao[i]!);
    const f = rmsNorm(h, L, d, w(ws, `${pre}1.layer_norm.weight`), c.eps);
    const g0 = linear(f, L, d, w(ws, `${pre}1.DenseReluDense.wi_0.weight`), c.dFf);
    const g1 = linear(f, L, d, w(ws, `${pre}1.DenseReluDense.wi_1.weight`), c.dFf);
    const g = g0.map((x, i) => gelu(x) * g1[i]!);
    const fo = linear(g, L, c.dFf, w(ws, `${pre}1.DenseReluDense.wo.weight`), d);
    h = h.map((x, i) => x + fo[i]!);
  }
  return rmsNorm(h, L, d, w(ws, "encoder.final_layer_norm.weight"), c.eps);
}

/** CLIP text sizes for the reference. */
export interface ClipRefConfig {
  hidden: number;
  intermediate: number;
  numLayers: number;
  numHeads: number;
  eps: number;
}

/** CLIP text tower of one id sequence: hidden `[L, hidden]` and the pooled row (first max id). */
export function clipTextRef(
  ws: RefWeights,
  c: ClipRefConfig,
  ids: readonly number[],
): { hidden: Float64Array; pooled: Float64Array } {
  const L = ids.length;
  const d = c.hidden;
  const pre = "text_model.";
  const tok = w(ws, `${pre}embeddings.token_embedding.weight`);
  const pos = w(ws, `${pre}embeddings.position_embedding.weight`);
  let h = new Float64Array(L * d);
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < d; j++) h[i * d + j] = tok[ids[i]! * d + j]! + pos[i * d + j]!;
  }
  const D = d / c.numHeads;
  const causal = (_h: number, i: number, j: number) => (j <= i ? 0 : -Infinity);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `${pre}encoder.layers.${l}.`;
    const x = layerNorm(
      h,
      L,
      d,
      w(ws, `${p}layer_norm1.weight`),
      w(ws, `${p}layer_norm1.bias`),
      c.eps,
    );
    const proj = (n: string) =>
      linear(x, L, d, w(ws, `${p}self_attn.${n}.weight`), d, w(ws, `${p}self_attn.${n}.bias`));
    const o = mha(
      proj("q_proj"),
      proj("k_proj"),
      proj("v_proj"),
      L,
      c.numHeads,
      D,
      D ** -0.5,
      causal,
    );
    const ao = linear(
      o,
      L,
      d,
      w(ws, `${p}self_attn.out_proj.weight`),
      d,
      w(ws, `${p}self_attn.out_proj.bias`),
    );
    h = h.map((v, i) => v + ao[i]!);
    const y = layerNorm(
      h,
      L,
      d,
      w(ws, `${p}layer_norm2.weight`),
      w(ws, `${p}layer_norm2.bias`),
      c.eps,
    );
    const f1 = linear(
      y,
      L,
      d,
      w(ws, `${p}mlp.fc1.weight`),
      c.intermediate,
      w(ws, `${p}mlp.fc1.bias`),
    );
    const act = f1.map((v) => v / (1 + Math.exp(-1.702 * v)));
    const f2 = linear(
      act,
      L,
      c.intermediate,
      w(ws, `${p}mlp.fc2.weight`),
      d,
      w(ws, `${p}mlp.fc2.bias`),
    );
    h = h.map((v, i) => v + f2[i]!);
  }
  const hidden = layerNorm(
    h,
    L,
    d,
    w(ws, `${pre}final_layer_norm.weight`),
    w(ws, `${pre}final_layer_norm.bias`),
    c.eps,
  );
  let at = 0;
  for (let i = 1; i < L; i++) if (ids[i]! > ids[at]!) at = i;
  return { hidden, pooled: hidden.slice(at * d, (at + 1) * d) };
}
