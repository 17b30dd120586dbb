/**
 * The text encoders against float64 references (`tests/ref/text_ref.ts`) at small random
 * configs, loaded from Hugging Face folders written here (config.json + sharded safetensors with
 * an index, decoder / vision keys to ignore); the relative-position buckets against hand-computed
 * values; the loaders' errors; and the conditioner (cache, embeddings file) end to end.
 */
import { join } from "node:path";
import { gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows } from "../_assert_close.ts";
import { bf16ToF32, f32ToBf16 } from "../../engine/dtype.ts";
import { read } from "../../engine/ops/movement.ts";
import { noGrad, tidy } from "../../engine/tensor.ts";
import {
  CLIP_VIT_L14_TEXT,
  clipPoolPositions,
  clipTextConfigFromHf,
  CLIPTextModel,
} from "../../models/text/clip.ts";
import { TextConditioner } from "../../models/text/conditioner.ts";
import { tokenIds } from "../../models/text/ids.ts";
import {
  T5_V1_1_XXL,
  t5ConfigFromHf,
  T5EncoderModel,
  t5PositionBuckets,
  t5RelativePositionBucket,
} from "../../models/text/t5.ts";
import { TextTokenizer } from "../../models/text/tokenizer.ts";
import { clipTextRef, t5BucketRef, t5EncoderRef } from "../ref/text_ref.ts";
import {
  asRef,
  CLIP_TINY_HF,
  CLIP_TOKENIZER_CONFIG,
  clipTinyWeights,
  clipTokenizerJson,
  T5_TINY_HF,
  T5_TOKENIZER_CONFIG,
  t5TinyWeights,
  t5TokenizerJson,
  type Weights,
  writeHfFolder,
} from "./_text_fixtures.ts";

const TOL = { atol: 1e-4, rtol: 1e-4 };

const T5_REF = {
  dModel: T5_TINY_HF.d_model,
  dKv: T5_TINY_HF.d_kv,
  dFf: T5_TINY_HF.d_ff,
  numLayers: T5_TINY_HF.num_layers,
  numHeads: T5_TINY_HF.num_heads,
  buckets: T5_TINY_HF.relative_attention_num_buckets,
  maxDistance: T5_TINY_HF.relative_attention_max_distance,
  eps: T5_TINY_HF.layer_norm_epsilon,
};

const CLIP_REF = {
  hidden: CLIP_TINY_HF.text_config.hidden_size,
  intermediate: CLIP_TINY_HF.text_config.intermediate_size,
  numLayers: CLIP_TINY_HF.text_config.num_hidden_layers,
  numHeads: CLIP_TINY_HF.text_config.num_attention_heads,
  eps: CLIP_TINY_HF.text_config.layer_norm_eps,
};

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kino_text_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Deterministic ids in [lo, hi). */
function ids(n: number, seed: number, lo: number, hi: number): number[] {
  return Array.from(
    { length: n },
    (_, i) => lo + ((i * 7 + seed * 13 + ((i * i) % 5)) % (hi - lo)),
  );
}

function refRows(rows: number[][], fn: (row: number[]) => Float64Array): Float64Array {
  const parts = rows.map(fn);
  const out = new Float64Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Matrices rounded to bf16 and widened back (what a bf16 model computes with; vectors stay f32). */
function bf16Rounded(ws: Weights): Weights {
  return new Map(
    [...ws].map((
      [k, v],
    ) => [k, v.shape.length < 2 ? v : { shape: v.shape, data: bf16ToF32(f32ToBf16(v.data)) }]),
  );
}

Deno.test("T5 relative-position buckets match hand-computed values (32 buckets, distance 128)", () => {
  // r = j − i; b = (r > 0 ? 16 : 0) + (n < 8 ? n : min(15, 8 + floor(ln(n/8) / ln 16 · 8)))
  const cases: [number, number][] = [
    [-200, 15], // 8 + floor(9.29) = 17 → 15
    [-20, 10], // 8 + floor(2.64)
    [-16, 10], // 8 + 2 exactly (ln 2 / ln 16 · 8 = 2)
    [-7, 7],
    [-1, 1],
    [0, 0],
    [1, 17],
    [3, 19],
    [8, 24], // 16 + 8 + 0
    [15, 25], // 16 + 8 + floor(1.81)
    [16, 26],
    [100, 31], // 16 + 8 + floor(7.29)
    [127, 31],
    [128, 31],
    [300, 31],
  ];
  for (const [r, want] of cases) {
    const got = t5RelativePositionBucket(r);
    if (got !== want) throw new Error(`bucket(${r}) = ${got}, want ${want}`);
    if (t5BucketRef(r, 32, 128) !== want) throw new Error(`reference bucket(${r}) disagrees`);
  }
  // the small config used below: 8 buckets, distance 10 (exact below 2, log up to 10)
  const small = [-12, -10, -5, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 9, 10, 12];
  const want = [3, 3, 3, 2, 2, 1, 0, 5, 6, 6, 6, 7, 7, 7, 7, 7];
  small.forEach((r, i) => {
    const got = t5RelativePositionBucket(r, 8, 10);
    if (got !== want[i] || t5BucketRef(r, 8, 10) !== want[i]) {
      throw new Error(`bucket(${r}; 8, 10) = ${got}, want ${want[i]}`);
    }
  });
  const grid = t5PositionBuckets(3);
  if (Array.from(grid).join() !== [0, 17, 18, 1, 0, 17, 2, 1, 0].join()) {
    throw new Error(`buckets of L = 3: ${grid}`);
  }
});

Deno.test("the released configurations declare the spec's keys and parameter counts", async () => {
  const t5 = new T5EncoderModel(T5_V1_1_XXL); // shape-only
  const t5Count = t5.params.count() + t5.shared.vocab * t5.shared.dim;
  if (t5Count !== 4_762_310_656) throw new Error(`T5-XXL encoder has ${t5Count} parameters`);
  const names = new Set(t5.params.list().map((p) => p.name));
  for (
    const k of [
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      "encoder.block.23.layer.1.DenseReluDense.wi_1.weight",
      "encoder.final_layer_norm.weight",
    ]
  ) if (!names.has(k)) throw new Error(`T5 lacks ${k}`);
  if (names.has("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight")) {
    throw new Error("relative bias declared outside block 0");
  }
  const clip = new CLIPTextModel(CLIP_VIT_L14_TEXT);
  const clipCount = clip.params.count() + clip.tokenEmbedding.vocab * clip.tokenEmbedding.dim;
  if (clipCount !== 123_060_480) throw new Error(`CLIP text has ${clipCount} parameters`);
  if (clip.tokenEmbedding.name !== "text_model.embeddings.token_embedding.weight") {
    throw new Error(clip.tokenEmbedding.name);
  }
  // config.json parsing: the HF field names, text_config of a full CLIP config
  const hf = t5ConfigFromHf({
    vocab_size: 32128,
    d_model: 4096,
    d_kv: 64,
    d_ff: 10240,
    num_layers: 24,
    num_heads: 64,
    feed_forward_proj: "gated-gelu",
  });
  if (JSON.stringify(hf) !== JSON.stringify(T5_V1_1_XXL)) throw new Error(JSON.stringify(hf));
  await assertThrows(
    () => t5ConfigFromHf({ ...T5_TINY_HF, feed_forward_proj: "relu" }),
    'only "gated-gelu"',
  );
  await assertThrows(() => t5ConfigFromHf({ ...T5_TINY_HF, d_ff: undefined }), 'lacks "d_ff"');
  const c = clipTextConfigFromHf(CLIP_TINY_HF);
  if (c.hiddenSize !== 32 || c.maxPositions !== 16 || c.eosTokenId !== 2) {
    throw new Error(JSON.stringify(c));
  }
});

gpuTest("T5 encoder from a sharded HF folder matches the float64 reference", async () => {
  await withTempDir(async (dir) => {
    const ws = t5TinyWeights(1);
    await writeHfFolder(dir, T5_TINY_HF, ws, { shards: 3 });
    const t5 = await T5EncoderModel.fromPretrained(dir);
    if (t5.params.storage !== "f32") throw new Error("auto storage should pick f32 here");
    const ref = asRef(ws);
    // B = 2, L = 9; then B = 1, L = 13 with the scores split into head groups of 3 (+1)
    const rows9 = [ids(9, 1, 3, 64), ids(9, 2, 0, 64)];
    const got9 = await read(noGrad(() => tidy(() => t5.forward(tokenIds(rows9)))));
    assertClose(got9, refRows(rows9, (r) => t5EncoderRef(ref, T5_REF, r)), {
      ...TOL,
      shape: [2, 9, 32],
      label: "T5 L=9",
    });
    const chunked = new T5EncoderModel(t5.config, { maxScoreBytes: 3 * 13 * 13 * 4 });
    await chunked.load([1, 2, 3].map((i) => join(dir, `model-0000${i}-of-00003.safetensors`)));
    const rows13 = [ids(13, 3, 0, 64), ids(13, 4, 0, 64)];
    const got13 = await read(noGrad(() => tidy(() => chunked.forward(tokenIds(rows13)))));
    assertClose(got13, refRows(rows13, (r) => t5EncoderRef(ref, T5_REF, r)), {
      ...TOL,
      shape: [2, 13, 32],
      label: "T5 L=13 chunked",
    });
    t5.dispose();
    chunked.dispose();
  });
});

gpuTest("T5 encoder with bf16 weights matches the reference on bf16-rounded weights", async () => {
  await withTempDir(async (dir) => {
    const ws = t5TinyWeights(5, false);
    await writeHfFolder(dir, T5_TINY_HF, ws);
    const t5 = await T5EncoderModel.fromPretrained(dir, { storage: "bf16" });
    const wide = t5.params.tensors().filter((t) => t.rank >= 2 && t.dtype !== "bf16");
    if (wide.length || t5.shared.storage !== "bf16") throw new Error(`widened: ${wide}`);
    const rows = [ids(9, 7, 0, 64)];
    const got = await read(noGrad(() => tidy(() => t5.forward(tokenIds(rows)))));
    const ref = asRef(bf16Rounded(ws));
    assertClose(got, refRows(rows, (r) => t5EncoderRef(ref, T5_REF, r)), {
      ...TOL,
      label: "T5 bf16",
    });
    t5.dispose();
  });
});

gpuTest("CLIP text model from a full CLIP folder matches the float64 reference", async () => {
  await withTempDir(async (dir) => {
    const ws = clipTinyWeights(2);
    await writeHfFolder(dir, CLIP_TINY_HF, ws);
    const clip = await CLIPTextModel.fromPretrained(dir);
    // EOS = 63 (largest id) at positions 5 and 10, padding with EOS after it as the real tokenizer
    const rows = [
      [62, 4, 17, 9, 30, 63, 63, 63, 63, 63, 63],
      [62, 11, 50, 2, 7, 33, 40, 8, 21, 5, 63],
    ];
    const out = noGrad(() => tidy(() => clip.forward(tokenIds(rows))));
    const ref = asRef(ws);
    const refs = rows.map((r) => clipTextRef(ref, CLIP_REF, r));
    assertClose(await read(out.hidden), refRows(rows, (_r) => refs.shift()!.hidden), {
      ...TOL,
      shape: [2, 11, 32],
      label: "CLIP hidden",
    });
    const pooledRef = refRows(rows, (r) => clipTextRef(ref, CLIP_REF, r).pooled);
    assertClose(await read(out.pooled), pooledRef, {
      ...TOL,
      shape: [2, 32],
      label: "CLIP pooled",
    });
    // pooling: first arg-max for the legacy eos id 2, first occurrence otherwise
    const t = tokenIds([[5, 9, 9, 1], [9, 2, 7, 2]]);
    if (clipPoolPositions(t, 2).join() !== "1,0") throw new Error("arg-max pooling");
    if (clipPoolPositions(t, 7).join() !== "0,2") throw new Error("eos-id pooling");
    out.hidden.dispose();
    out.pooled.dispose();
    clip.dispose();
  });
});

gpuTest(
  "loaders fail clearly: missing folder, shard, key, wrong shape, no safetensors",
  async () => {
    await assertThrows(
      () => T5EncoderModel.fromPretrained("/nonexistent/kino-t5"),
      "does not exist",
    );
    await withTempDir(async (dir) => {
      const ws = t5TinyWeights(1);
      await writeHfFolder(join(dir, "sharded"), T5_TINY_HF, ws, { shards: 2 });
      await Deno.remove(join(dir, "sharded", "model-00002-of-00002.safetensors"));
      await assertThrows(
        () => T5EncoderModel.fromPretrained(join(dir, "sharded")),
        "lacks 1 of the 2 shards",
        "model-00002-of-00002.safetensors",
      );
      const missing = new Map(ws);
      missing.delete("encoder.block.1.layer.1.DenseReluDense.wo.weight");
      missing.delete("shared.weight");
      await writeHfFolder(join(dir, "missing"), T5_TINY_HF, missing);
      await assertThrows(
        () => T5EncoderModel.fromPretrained(join(dir, "missing")),
        "missing keys (2)",
        "encoder.block.1.layer.1.DenseReluDense.wo.weight",
        "shared.weight (or encoder.embed_tokens.weight)",
      );
      await writeHfFolder(join(dir, "shape"), { ...T5_TINY_HF, d_ff: 40 }, ws);
      await assertThrows(
        () => T5EncoderModel.fromPretrained(join(dir, "shape")),
        "wrong shapes (6)",
        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight expected [40, 32] found [48, 32]",
      );
      await Deno.mkdir(join(dir, "bin"));
      await Deno.writeTextFile(join(dir, "bin", "config.json"), JSON.stringify(T5_TINY_HF));
      await Deno.writeFile(join(dir, "bin", "pytorch_model.bin"), new Uint8Array(8));
      await assertThrows(
        () => T5EncoderModel.fromPretrained(join(dir, "bin")),
        "only as pytorch_model.bin",
        "safe_serialization=True",
      );
      await Deno.mkdir(join(dir, "noconfig"));
      await assertThrows(
        () => CLIPTextModel.fromPretrained(join(dir, "noconfig")),
        "config.json is missing",
      );
    });
  },
);

gpuTest("TextConditioner: both encoders end to end, cache, embeddings file", async () => {
  await withTempDir(async (dir) => {
    const t5w = t5TinyWeights(3);
    const clipw = clipTinyWeights(4);
    await writeHfFolder(join(dir, "t5"), T5_TINY_HF, t5w, {
      shards: 2,
      files: { "tokenizer.json": t5TokenizerJson(), "tokenizer_config.json": T5_TOKENIZER_CONFIG },
    });
    await writeHfFolder(join(dir, "clip"), CLIP_TINY_HF, clipw, {
      files: {
        "tokenizer.json": clipTokenizerJson(),
        "tokenizer_config.json": CLIP_TOKENIZER_CONFIG,
      },
    });
    const cond = await TextConditioner.fromFolders(join(dir, "t5"), join(dir, "clip"), {
      t5MaxLength: 9,
      clipMaxLength: 11,
    });
    const prompts = ["a cat a dog", "", "", "a cat a dog"];
    const { txt, yVec } = cond.encode(prompts);
    if (txt.shape.join() !== "4,9,32" || yVec.shape.join() !== "4,32") {
      throw new Error(`shapes ${txt.shape} ${yVec.shape}`);
    }
    if (cond.cached !== 2) throw new Error(`cached ${cond.cached}, want 2 ("" once)`);
    const t5tok = TextTokenizer.fromJson(t5TokenizerJson(), "t5", { maxLength: 9 });
    const cliptok = TextTokenizer.fromJson(clipTokenizerJson(), "clip", {
      maxLength: 11,
      config: CLIP_TOKENIZER_CONFIG,
    });
    const rowsOf = (t: { ids: Int32Array; length: number }) =>
      prompts.map((_, b) => Array.from(t.ids.subarray(b * t.length, (b + 1) * t.length)));
    const t5rows = rowsOf(t5tok.encode(prompts));
    const cliprows = rowsOf(cliptok.encode(prompts));
    const txtRef = refRows(t5rows, (r) => t5EncoderRef(asRef(t5w), T5_REF, r));
    const yRef = refRows(cliprows, (r) => clipTextRef(asRef(clipw), CLIP_REF, r).pooled);
    const txtGot = await read(txt);
    const yGot = await read(yVec);
    assertClose(txtGot, txtRef, { ...TOL, shape: [4, 9, 32], label: "conditioner txt" });
    assertClose(yGot, yRef, { ...TOL, shape: [4, 32], label: "conditioner y_vec" });
    txt.dispose();
    yVec.dispose();
    // repeated calls hit the cache; the returned tensors are the caller's to free
    const again = cond.encode([""]);
    assertClose(await read(again.txt), txtGot.subarray(9 * 32, 18 * 32), { label: "cached" });
    again.txt.dispose();
    again.yVec.dispose();
    if (cond.cached !== 2) throw new Error("cache grew on a hit");
    // embeddings file: written by the conditioner, served without encoders
    const file = join(dir, "emb.safetensors");
    await cond.saveEmbeddings(file, ["", "a cat a dog"]);
    cond.dispose();
    const cached = await TextConditioner.fromEmbeddings(file, { cacheSize: 2 });
    const served = cached.encode(["a cat a dog", ""]);
    const both = new Float32Array(2 * 9 * 32);
    both.set(txtGot.subarray(0, 9 * 32));
    both.set(txtGot.subarray(9 * 32, 18 * 32), 9 * 32);
    assertClose(await read(served.txt), both, { label: "served txt" });
    assertClose(await read(served.yVec), yGot.subarray(0, 64), { label: "served y_vec" });
    served.txt.dispose();
    served.yVec.dispose();
    await assertThrows(() => cached.encode(["a dog"]), '"a dog" is not in', "saveEmbeddings");
    await assertThrows(() => cached.encode(["a", "b", "c"]), "exceed cacheSize 2");
    cached.dispose();
  });
});
