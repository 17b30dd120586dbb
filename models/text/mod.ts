/**
 * Open-Sora 2.0's text conditioning: the T5 v1.1 encoder (`google/t5-v1_1-xxl`, text states),
 * the CLIP text tower (`openai/clip-vit-large-patch14`, pooled vector), their tokenizers, Hugging
 * Face folder loading and a caching {@linkcode TextConditioner}. Spec:
 * `shared/spec/text-encoders.md`.
 *
 * @example Conditioning for the MMDiT
 * ```ts ignore
 * import { TextConditioner } from "./models/text/mod.ts";
 * const cond = await TextConditioner.fromFolders(
 *   "ckpts/google/t5-v1_1-xxl",            // config.json, *.safetensors, spiece.model
 *   "ckpts/openai/clip-vit-large-patch14", // config.json, model.safetensors, tokenizer.json
 * );
 * const { txt, yVec } = cond.encode(["a lighthouse at dusk. 24 FPS. 4 motion score.", ""]);
 * // txt [2, 512, 4096] -> MMDiT txt; yVec [2, 768] -> MMDiT y_vec
 * ```
 *
 * @example One encoder on its own
 * ```ts ignore
 * import { T5EncoderModel, TextTokenizer } from "./models/text/mod.ts";
 * import { tidy } from "./mod.ts";
 * const t5 = await T5EncoderModel.fromPretrained(dir, { storage: "bf16" });
 * const tok = await TextTokenizer.fromFolder(dir, "t5");
 * const states = tidy(() => t5.forward(tok.encode(["a cat"]))); // [1, 512, 4096]
 * ```
 *
 * @module
 */
export {
  biasedAttention,
  type BiasedAttentionOptions,
  mergeHeads,
  splitHeads,
} from "./attention.ts";
export {
  causalMask,
  CLIP_VIT_L14_TEXT,
  type ClipActivation,
  clipPoolPositions,
  type ClipTextConfig,
  clipTextConfigFromHf,
  CLIPTextModel,
  type ClipTextOptions,
  type ClipTextOutput,
  quickGelu,
} from "./clip.ts";
export {
  EmbeddingStore,
  type FromFoldersOptions,
  TextConditioner,
  type TextConditionerOptions,
  type TextEmbedding,
  type TextEncoders,
} from "./conditioner.ts";
export { type EmbeddingStorage, HostEmbedding } from "./embedding.ts";
export {
  type CheckpointEntry,
  configNumber,
  findWeightFiles,
  HfFolderError,
  type HostTable,
  indexCheckpoint,
  loadEncoderWeights,
  readHfConfig,
  requireFolder,
  resolveStorage,
  type StorageChoice,
  type TextStorage,
} from "./hf.ts";
export { checkTokenIds, type TokenIds, tokenIds } from "./ids.ts";
export {
  parseSentencePieceModel,
  type SentencePiece,
  type SentencePieceModel,
  sentencePieceToTokenizerJson,
} from "./spiece.ts";
export {
  T5_V1_1_XXL,
  type T5Config,
  t5ConfigFromHf,
  T5EncoderModel,
  type T5Options,
  t5PositionBuckets,
  t5RelativePositionBucket,
} from "./t5.ts";
export {
  DEFAULT_MAX_LENGTH,
  TextTokenizer,
  type TextTokenizerOptions,
  type TokenizerKind,
} from "./tokenizer.ts";
