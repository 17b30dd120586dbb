/**
 * Builds a small weights bundle for end-to-end inference tests: the fixtures' tiny MMDiT and
 * tiny Video DC-AE (real PyTorch-made weights) with tiny random T5 / CLIP folders and tokenizers,
 * described by a `kino.json`.
 */
import { join } from "node:path";
import {
  CLIP_TINY_HF,
  CLIP_TOKENIZER_CONFIG,
  clipTinyWeights,
  clipTokenizerJson,
  T5_TINY_HF,
  T5_TOKENIZER_CONFIG,
  t5TinyWeights,
  t5TokenizerJson,
  writeHfFolder,
} from "../models/_text_fixtures.ts";

/** Writes the bundle into `dir`; `mmditWeights` overrides the MMDiT file (another model's). */
export async function writeTinyBundle(
  fx: string,
  dir: string,
  mmditWeights?: string,
): Promise<void> {
  const mm = JSON.parse(await Deno.readTextFile(`${fx}tiny/mmdit_tiny/case.json`));
  const ae = JSON.parse(await Deno.readTextFile(`${fx}tiny/dc_ae_tiny/case.json`));
  await Deno.mkdir(dir, { recursive: true });
  await Deno.copyFile(
    mmditWeights ?? `${fx}tiny/mmdit_tiny/weights.safetensors`,
    join(dir, "mmdit.safetensors"),
  );
  await Deno.copyFile(`${fx}tiny/dc_ae_tiny/weights.safetensors`, join(dir, "dc_ae.safetensors"));
  await writeHfFolder(join(dir, "t5"), T5_TINY_HF, t5TinyWeights(1, false), {
    files: { "tokenizer.json": t5TokenizerJson(), "tokenizer_config.json": T5_TOKENIZER_CONFIG },
  });
  // the tiny MMDiT takes a 24-wide pooled vector
  const clipText = { ...CLIP_TINY_HF.text_config, hidden_size: 24, num_attention_heads: 4 };
  await writeHfFolder(
    join(dir, "clip"),
    { ...CLIP_TINY_HF, text_config: clipText },
    clipTinyWeights(2, false, clipText),
    {
      files: {
        "tokenizer.json": clipTokenizerJson(),
        "tokenizer_config.json": CLIP_TOKENIZER_CONFIG,
      },
    },
  );
  await Deno.writeTextFile(
    join(dir, "kino.json"),
    JSON.stringify(
      {
        format: "kino-bundle",
        version: 1,
        name: "tiny test bundle (fixtures' mmdit_tiny + dc_ae_tiny, random tiny T5/CLIP)",
        mmdit: { weights: "mmdit.safetensors", config: mm.model_args },
        dc_ae: { weights: "dc_ae.safetensors", config: ae.config },
        t5: "t5",
        clip: "clip",
        t5_max_length: 12,
        clip_max_length: 16,
        defaults: { height: 64, width: 96, numFrames: 8, steps: 3, fps: 8 },
      },
      null,
      2,
    ),
  );
}
