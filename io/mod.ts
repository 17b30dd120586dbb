/** File formats: video/image reading and writing (ffmpeg), and TypeScript PNG and GIF encoders. */
export {
  FfmpegMissingError,
  framesToTensorData,
  hasFfmpeg,
  readVideo,
  type ReadVideoOptions,
  tensorDataToFrames,
  type Video,
  writeVideo,
  type WriteVideoOptions,
} from "./video.ts";
export { encodePng } from "./png.ts";
export { encodeGif, GIF_PALETTE, paletteIndex, quantizeRgb } from "./gif.ts";
