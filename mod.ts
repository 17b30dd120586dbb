/**
 * Kino: a WebGPU compute engine for Deno that runs and trains video-diffusion models on the GPU
 * (Open-Sora 2.0's Video DC-AE + MMDiT pipeline), with hand-written WGSL kernels, a lazy graph
 * executor with elementwise fusion and liveness-based memory reuse, and reverse-mode autograd.
 *
 * Tensors are lazy: ops record a graph; work runs, batched into few GPU submits, when a tensor is
 * read, realized, or returned from a {@linkcode tidy} scope.
 *
 * @example Quick start
 * ```ts ignore
 * import { backward, init, matmul, parameter, read, relu, sum, tensor, tidy } from "./mod.ts";
 *
 * await init();                                        // picks the GPU (or Mesa's llvmpipe)
 * const x = tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
 * const w = parameter("w", new Float32Array([0.5, -1, 1, 0.25]), [2, 2]);
 * const loss = tidy(() => {
 *   const l = sum(relu(matmul(x, w)));
 *   backward(l);                                       // gradients recorded lazily...
 *   return l;                                          // ...and computed with the forward here
 * });
 * console.log(await read(loss), await read(w.grad!));
 * ```
 *
 * @module
 */

export { init, KernelError, runtime, shutdown } from "./engine/runtime.ts";
export type { BatchStats, Binding, BufferPool, MemoryStats, Runtime } from "./engine/runtime.ts";
export type { KernelSpec, Params } from "./engine/kernel.ts";
export { GpuUnavailableError, requestGpuDevice } from "./engine/device.ts";
export type { DeviceInfo, DeviceOptions } from "./engine/device.ts";
export type { DType } from "./engine/dtype.ts";
export type { Shape } from "./engine/shape.ts";
export { keep, noGrad, Tensor, tidy } from "./engine/tensor.ts";
export type {
  EncodeContext,
  GradContext,
  Node,
  OpDef,
  Storage,
  TensorView,
} from "./engine/tensor.ts";
export { realize } from "./engine/graph.ts";
export { tensor } from "./engine/ops/create.ts";
export {
  backward,
  BackwardNotSupportedError,
  detach,
  parameter,
  zeroGrad,
} from "./engine/autograd.ts";
export {
  abs,
  add,
  clamp,
  copy,
  cos,
  div,
  eq,
  exp,
  full,
  ge,
  gelu,
  gt,
  le,
  log,
  lt,
  maximum,
  minimum,
  mul,
  neg,
  ones,
  pow,
  recip,
  relu,
  rsqrt,
  sigmoid,
  sign,
  silu,
  sin,
  sqrt,
  square,
  sub,
  tanh,
  where,
  zeros,
} from "./engine/ops/elementwise.ts";
export type { Operand } from "./engine/ops/elementwise.ts";
export {
  contiguous,
  expand,
  narrow,
  pad,
  permute,
  read,
  reshape,
  slice,
  transpose,
} from "./engine/ops/movement.ts";
export { max, mean, min, sum, variance } from "./engine/ops/reduce.ts";
export { linear, matmul } from "./engine/ops/matmul.ts";
export type { MatmulOptions } from "./engine/ops/matmul.ts";
export {
  encodeSafetensors,
  loadSafetensors,
  SafetensorsError,
  SafeTensorsFile,
  saveSafetensors,
} from "./engine/safetensors.ts";
export type { SafetensorsDType, TensorInfo, TensorToWrite } from "./engine/safetensors.ts";
export { cast, chunk, concat, gather, split, stack } from "./engine/ops/concat.ts";
export { logSoftmax, softmax } from "./engine/ops/softmax.ts";
export { groupNorm, layerNorm, rmsNorm, rmsNormChannels } from "./engine/ops/norm.ts";
export { normalCpu, randNormal, randUniform, uniformCpu } from "./engine/ops/random.ts";
export type { NormalOptions, Seed, UniformOptions } from "./engine/ops/random.ts";
export { mseLoss } from "./engine/ops/loss.ts";
export type { Reduction } from "./engine/ops/loss.ts";
export { embedding, timestepEmbedding } from "./engine/ops/embedding.ts";
export { conv3d, replicatePad } from "./engine/ops/conv3d.ts";
export type { Conv3dOptions } from "./engine/ops/conv3d.ts";
export {
  channelDuplicatingPixelShuffleUpsample,
  channelGroupMean,
  pixelShuffle2d,
  pixelShuffle3d,
  pixelUnshuffle2d,
  pixelUnshuffle3d,
  pixelUnshuffleChannelAveragingDownsample,
  repeatInterleaveChannels,
  upsampleNearest,
} from "./engine/ops/shuffle.ts";
export { AdamW, EMA } from "./engine/optim.ts";
export type { AdamWOptions, EMAOptions } from "./engine/optim.ts";
export { CheckpointMismatchError, ParamScope, ParamSet } from "./models/params.ts";
export type { Init, LoadReport, ParamSpec } from "./models/params.ts";
export {
  DcAe,
  dcAePreset,
  fromReferenceConfig as dcAeConfigFromReference,
} from "./models/dc_ae/mod.ts";
export type {
  CodecOptions,
  ConvLayer,
  DcAeAct,
  DcAeBlockType,
  DcAeConfig,
  DcAeDecoderConfig,
  DcAeEncoderConfig,
  DcAeEViTConfig,
  DcAeNorm,
  DcAeOptions,
  DcAeTilingConfig,
  Decoder,
  Encoder,
  RMSNorm3d,
  Tap,
  Triple,
} from "./models/dc_ae/mod.ts";
export type { NormActConv, StageOp } from "./models/dc_ae/model.ts";
export type { TileOptions } from "./models/dc_ae/tiling.ts";
export type { Json as DcAeReferenceJson } from "./models/dc_ae/config.ts";
export {
  encodeGif,
  encodePng,
  FfmpegMissingError,
  framesToTensorData,
  hasFfmpeg,
  readVideo,
  tensorDataToFrames,
  writeVideo,
} from "./io/mod.ts";
export type { ReadVideoOptions, Video, WriteVideoOptions } from "./io/mod.ts";
export { MMDiT, MMDIT_PRESETS, mmditFromReferenceConfig, mmditPreset } from "./models/mmdit/mod.ts";
export type {
  BlockHooks,
  MMDiTConfig,
  MMDiTInputs,
  MMDiTOptions,
  MMDiTTap,
  VelocityModel,
} from "./models/mmdit/mod.ts";
export type {
  DoubleStreamBlock,
  LastLayer,
  Linear,
  Mlp,
  MLPEmbedder,
  Modulation,
  ModulationOut,
  QKNorm,
  Rope,
  SingleStreamBlock,
  StreamAttention,
} from "./models/mmdit/layers.ts";
export { WeightStreamer } from "./models/streaming.ts";
export type { Streamable } from "./models/streaming.ts";
export { modelSizes, PlanError, planMemory } from "./models/plan.ts";
export type {
  Chunks,
  MemoryPlan,
  ModelSizes,
  ParamLike,
  PlanInput,
  StageMode,
  StagePlan,
  TensorPlan,
  TextEncoderSize,
} from "./models/plan.ts";
export {
  CLIPTextModel,
  T5EncoderModel,
  TextConditioner,
  TextTokenizer,
  tokenIds,
} from "./models/text/mod.ts";
export type {
  ClipActivation,
  ClipTextConfig,
  ClipTextOutput,
  EmbeddingStorage,
  HostEmbedding,
  T5Config,
  TextEmbedding,
  TextEncoders,
  TokenIds,
  TokenizerKind,
} from "./models/text/mod.ts";
export {
  addFpsInfo,
  addMotionScore,
  applyReferenceOverwrite,
  getSchedule,
  imageSize,
  latentFrames,
  makeNoise,
  pack,
  positionIds,
  prepareCondition,
  sample,
  unpack,
} from "./models/sampling/mod.ts";
export type {
  AspectOptions,
  Condition,
  ConditionOptions,
  CondType,
  FrameOptions,
  GuidanceOptions,
  ImageSize,
  RowReferences,
  SampleOptions,
  ScheduleOptions,
  ShiftAlphaOptions,
} from "./models/sampling/mod.ts";
/**
 * Text to video in one call: load a weights bundle ({@linkcode loadBundle}: the Open-Sora v2
 * release layout or a folder with a `kino.json`), then {@linkcode generate} with progress events.
 *
 * @example
 * ```ts ignore
 * import { generate, loadBundle, writeVideo } from "./mod.ts";
 * const bundle = await loadBundle("ckpts");
 * const [v] = await generate(bundle, { prompt: "a red fox in the snow", resolution: "256px",
 *   numFrames: 32, seed: 42 }, (e) => e.kind === "step" && console.log(`${e.step}/${e.total}`));
 * await writeVideo("fox.mp4", v.frames, { t: v.t, h: v.height, w: v.width, fps: v.fps });
 * ```
 */
export {
  BundleError,
  DEFAULT_SETTINGS,
  generate,
  inspectBundle,
  loadBundle,
  planSplits,
  RELEASE_LAYOUT,
  resolveSettings,
  syntheticBundle,
} from "./models/pipeline.ts";
export type {
  Bundle,
  BundleInfo,
  BundleManifest,
  GeneratedVideo,
  GenerateEvent,
  GenerateOptions,
  GenerationSettings,
  LoadOptions,
  ResolvedSettings,
  SyntheticOptions,
} from "./models/pipeline.ts";
/**
 * Training: the MMDiT {@linkcode Trainer} (rectified-flow objective, AdamW, clipping, EMA,
 * accumulation, recomputation, exact resume), the DC-AE {@linkcode AeTrainer}, the dataset of
 * videos from a CSV ({@linkcode openDataset}) and of cached latents ({@linkcode CachedDataset}).
 *
 * @example
 * ```ts ignore
 * const trainer = new Trainer(dit, { lr: 3e-4, emaDecay: 0.995 });
 * const r = await trainer.step({ latents, txt, yVec });   // one update, one read-back
 * await trainer.save("runs/dit", { dataCursor });
 * ```
 */
export { Trainer } from "./train/trainer.ts";
export type {
  ResolvedTrainerOptions,
  RestoreInfo,
  SaveOptions,
  StepResult,
} from "./train/trainer.ts";
export type { StepMetrics } from "./train/metrics.ts";
export { FlowMatchingObjective } from "./train/objective.ts";
export type {
  ConditionType,
  ObjectiveOptions,
  PreparedBatch,
  ResolvedObjectiveOptions,
  SampleDraws,
  ShiftMode,
  TensorLike,
  TrainBatch,
} from "./train/objective.ts";
export { readCheckpoint, resolveResume, writeCheckpoint } from "./train/checkpoint.ts";
export type { CheckpointData, HostTensor, TrainerState, WriteOptions } from "./train/checkpoint.ts";
export { AeTrainer } from "./train/ae_trainer.ts";
export type {
  AeCrop,
  AeRestoreInfo,
  AeStepMetrics,
  AeTrainerState,
  ExportDType,
  HostVideo,
  ResolvedAeTrainerOptions,
} from "./train/ae_trainer.ts";
export { CachedDataset } from "./train/cached_dataset.ts";
export type { CachedBatch, PlannedBatch, ShapeGroup } from "./train/cached_dataset.ts";
export type {
  CACHE_FORMAT,
  CacheDType,
  CacheEntry,
  CacheIndex,
  CacheSettings,
  CacheSkip,
} from "./train/cache.ts";
export { openDataset } from "./train/data/mod.ts";
export type {
  AspectTable,
  Batch,
  BucketConfig,
  BucketCount,
  BucketId,
  BucketInfo,
  BucketInput,
  BucketProb,
  Buckets,
  Cursor,
  Dataset,
  DatasetReport,
  DatasetRow,
  EpochPlan,
  MicroBatch,
  NoBucket,
  OpenDatasetOptions,
  Rng,
  RowStatus,
  SkipReason,
} from "./train/data/mod.ts";
