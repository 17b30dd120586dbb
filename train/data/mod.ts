/**
 * Training data: dataset CSVs, frame sampling and transforms, buckets and batches
 * (`spec/data.md`, `spec/training.md` §7).
 *
 * @module
 */
export {
  type Batch,
  type BucketCount,
  Dataset,
  DatasetError,
  type DatasetReport,
  type DatasetRow,
  openDataset,
  type OpenDatasetOptions,
  type RowStatus,
  SKIP_REASONS,
  type SkipReason,
} from "./dataset.ts";
export {
  type CsvProblem,
  type CsvRow,
  type CsvTable,
  DatasetCsvError,
  KNOWN_COLUMNS,
  parseDatasetCsv,
  readDatasetCsv,
} from "./csv.ts";
export {
  AE_SPATIAL_COMPRESSION,
  ASPECT_RATIO_LIST,
  aspectRatioTable,
  type AspectTable,
  BUCKET_PRESETS,
  type BucketConfig,
  type BucketId,
  type BucketInfo,
  type BucketInput,
  bucketKey,
  type BucketProb,
  Buckets,
  closestRatio,
  HCAE_BUCKETS,
  loadBucketConfig,
  type NoBucket,
  pixelsOfResolution,
  ratioOf,
  resolutionTable,
  withResolution,
} from "./buckets.ts";
export {
  type Cursor,
  cursorFromJSON,
  cursorToJSON,
  type EpochPlan,
  type MicroBatch,
  planEpoch,
  type PlanOptions,
} from "./batches.ts";
export {
  type CaptionInfo,
  captionWithSuffix,
  FPS_MAX,
  type FpsMapping,
  linspaceInt,
  mapTargetFps,
  maxCropStart,
  temporalIndices,
  temporalRandomCrop,
  TooShortError,
} from "./sampling.ts";
export {
  bilinearResizeCrop,
  type FrameTarget,
  normalizeInto,
  pilBicubicResizeCrop,
  resizeCropPlan,
  type ResizeKind,
  type ResizePlan,
  roundHalfEven,
} from "./transform.ts";
export {
  CorruptMediaError,
  decodeSelectedFrames,
  IMAGE_EXTENSIONS,
  isImagePath,
  type MediaInfo,
  probeMedia,
} from "./media.ts";
export { Rng, seedFromKeys, STREAM } from "./rng.ts";
