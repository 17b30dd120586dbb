/**
 * The T5 and CLIP tokenizers on tiny `tokenizer.json` files built here (nothing is downloaded):
 * exact ids with the special tokens added once (the files' own post-processors add them too),
 * truncation keeping EOS last, padding, CLIP lower-casing, the pad token read from
 * `tokenizer_config.json`, and the `spiece.model` conversion giving the same ids as the
 * `tokenizer.json` of the same pieces.
 */
import { join } from "node:path";
import { assertThrows } from "../_assert_close.ts";
import { TextTokenizer } from "../../models/text/tokenizer.ts";
import { parseSentencePieceModel } from "../../models/text/spiece.ts";
import {
  CLIP_TOKENIZER_CONFIG,
  CLIP_VOCAB,
  clipTokenizerJson,
  spieceModelBytes,
  T5_PIECES,
  T5_TOKENIZER_CONFIG,
  t5TokenizerJson,
} from "./_text_fixtures.ts";

function eq(got: ArrayLike<number>, want: readonly number[], label: string): void {
  const g = Array.from(got);
  if (g.join() !== want.join()) throw new Error(`${label}: got [${g}], want [${want}]`);
}

const BOS = CLIP_VOCAB.indexOf("<|startoftext|>");
const EOS = CLIP_VOCAB.indexOf("<|endoftext|>");

/** Expected T5 rows at maxLength 8 (pieces: ▁a 4, ▁cat 5, s 8, ▁the 9, ▁dog 10, ...). */
const T5_CASES: [string, number[]][] = [
  ["a cat", [4, 5, 1, 0, 0, 0, 0, 0]],
  ["  a   cat ", [4, 5, 1, 0, 0, 0, 0, 0]],
  ["", [1, 0, 0, 0, 0, 0, 0, 0]],
  ["the cats in the snow.", [9, 5, 8, 19, 9, 20, 21, 1]], // exactly 8: no padding
  ["the cats in the snow. a dog", [9, 5, 8, 19, 9, 20, 21, 1]], // cut, EOS kept last
  ["a dog.", [4, 10, 21, 1, 0, 0, 0, 0]],
  ["a x", [4, 3, 2, 1, 0, 0, 0, 0]], // "▁x": ▁ + <unk>
  ["A cat", [3, 2, 5, 1, 0, 0, 0, 0]], // no lower-casing: "A" is unknown
];

Deno.test("T5 tokenizer: exact ids, EOS once, truncation keeps EOS last, <pad> padding", () => {
  for (const style of ["old", "new"] as const) {
    const tok = TextTokenizer.fromJson(t5TokenizerJson(style), "t5", {
      maxLength: 8,
      config: T5_TOKENIZER_CONFIG,
    });
    if (tok.eosId !== 1 || tok.padId !== 0 || tok.bosId !== null) {
      throw new Error(`${style}: specials ${tok.bosId} ${tok.eosId} ${tok.padId}`);
    }
    const batch = tok.encode(T5_CASES.map(([t]) => t));
    if (batch.batch !== T5_CASES.length || batch.length !== 8) throw new Error("batch shape");
    T5_CASES.forEach(([text, want], b) => {
      eq(batch.ids.subarray(b * 8, (b + 1) * 8), want, `${style} ${JSON.stringify(text)}`);
    });
  }
  const d = TextTokenizer.fromJson(t5TokenizerJson(), "t5");
  if (d.maxLength !== 512 || d.encode(["a"]).ids.length !== 512) throw new Error("default 512");
});

Deno.test("T5 tokenizer from spiece.model matches the tokenizer.json of the same pieces", async () => {
  const bytes = spieceModelBytes(T5_PIECES);
  const model = parseSentencePieceModel(bytes);
  if (model.pieces.length !== T5_PIECES.length || model.unkId !== 2) {
    throw new Error(`parsed ${model.pieces.length} pieces, unk ${model.unkId}`);
  }
  if (model.pieces[5]!.piece !== "\u2581cat" || model.pieces[5]!.score !== -4) {
    throw new Error(`piece 5: ${JSON.stringify(model.pieces[5])}`);
  }
  if (model.pieces[1]!.type !== 3 || model.charsmap?.join() !== "1,2,3,4") {
    throw new Error("types / charsmap");
  }
  const dir = await Deno.makeTempDir({ prefix: "kino_spm_" });
  try {
    await Deno.writeFile(join(dir, "spiece.model"), bytes);
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ ...T5_TOKENIZER_CONFIG, extra_ids: 2 }),
    );
    const tok = await TextTokenizer.fromFolder(dir, "t5", { maxLength: 8 });
    const batch = tok.encode(T5_CASES.map(([t]) => t));
    T5_CASES.forEach(([text, want], b) => {
      eq(batch.ids.subarray(b * 8, (b + 1) * 8), want, `spiece ${JSON.stringify(text)}`);
    });
    // sentinels after the pieces, <extra_id_0> last (T5's convention)
    eq(tok.encode(["a <extra_id_0>"]).ids.subarray(0, 3), [4, 26, 1], "extra id 0");
    if (tok.idToToken(25) !== "<extra_id_1>") throw new Error(`id 25: ${tok.idToToken(25)}`);
    await assertThrows(
      () => parseSentencePieceModel(bytes.subarray(0, 7)),
      "not a valid SentencePiece model",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLIP tokenizer: BOS/EOS once, lower-cased, truncated with EOS last, EOS padding", () => {
  const tok = TextTokenizer.fromJson(clipTokenizerJson(), "clip", {
    maxLength: 10,
    config: CLIP_TOKENIZER_CONFIG,
  });
  if (tok.bosId !== BOS || tok.eosId !== EOS || tok.padId !== EOS) {
    throw new Error(`specials ${tok.bosId} ${tok.eosId} ${tok.padId}`);
  }
  const id = (t: string) => CLIP_VOCAB.indexOf(t);
  const cases: [string, number[]][] = [
    ["A Cat, a DOG", [
      BOS,
      id("a</w>"),
      id("cat</w>"),
      id(",</w>"),
      id("a</w>"),
      id("dog</w>"),
      EOS,
    ]],
    ["  cats\n\tdog ", [BOS, id("cats</w>"), id("dog</w>"), EOS]],
    ["tac", [BOS, id("t"), id("a"), id("c</w>"), EOS]],
    ["", [BOS, EOS]],
    ["a cat a dog a cat a dog a", [BOS, 8, 17, 8, 19, 8, 17, 8, 19, EOS]],
  ];
  const batch = tok.encode(cases.map(([t]) => t));
  cases.forEach(([text, body], b) => {
    const want = [...body, ...new Array(10 - body.length).fill(EOS)];
    eq(batch.ids.subarray(b * 10, (b + 1) * 10), want, JSON.stringify(text));
  });
  const short = TextTokenizer.fromJson(clipTokenizerJson(), "clip", {
    maxLength: 5,
    config: CLIP_TOKENIZER_CONFIG,
  });
  eq(short.encode(["a cat a dog"]).ids, [BOS, 8, 17, 8, EOS], "cut to 5");
  // the pad token comes from the config when it names one
  const commaPad = TextTokenizer.fromJson(clipTokenizerJson(), "clip", {
    maxLength: 5,
    config: { ...CLIP_TOKENIZER_CONFIG, pad_token: { content: "," } },
  });
  eq(commaPad.encode(["dog"]).ids, [BOS, 19, EOS, 7, 7], "pad from config");
  if (TextTokenizer.fromJson(clipTokenizerJson(), "clip").maxLength !== 77) {
    throw new Error("CLIP default length is not 77");
  }
});

Deno.test("tokenizer errors name the problem and the fix", async () => {
  await assertThrows(
    () => TextTokenizer.fromJson(clipTokenizerJson(), "clip", { maxLength: 2 }),
    "maxLength 2 leaves no room",
  );
  await assertThrows(
    () => TextTokenizer.fromJson(clipTokenizerJson(), "clip", { config: { eos_token: "<|eot|>" } }),
    'no EOS token "<|eot|>"',
  );
  await assertThrows(
    () => TextTokenizer.fromFolder("/nonexistent/kino-clip", "clip"),
    "does not exist",
  );
  const dir = await Deno.makeTempDir({ prefix: "kino_tok_" });
  try {
    await assertThrows(
      () => TextTokenizer.fromFolder(dir, "t5"),
      "no tokenizer.json or spiece.model",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
