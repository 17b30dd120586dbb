/**
 * WebGPU adapter and device: asks for the limits the engine needs (taken from the adapter, not
 * the low defaults), exposes adapter name, limits and features for logging, turns "no WebGPU" and
 * "no adapter" into errors that say how to fix them, and reports device loss.
 *
 * @module
 */

/** What the engine knows about the GPU it runs on. */
export interface DeviceInfo {
  /** Human-readable adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`. */
  name: string;
  /** Adapter vendor as reported by WebGPU (may be empty). */
  vendor: string;
  /** Adapter architecture as reported by WebGPU (may be empty). */
  architecture: string;
  /** True for software adapters (Mesa llvmpipe / lavapipe, WARP, SwiftShader). */
  isFallback: boolean;
  /** The limits the device was created with. */
  limits: Record<string, number>;
  /** Optional features enabled on the device (`shader-f16`, `timestamp-query`). */
  features: string[];
}

/** Options of {@linkcode requestGpuDevice}. */
export interface DeviceOptions {
  /** Adapter preference; default `high-performance`. */
  powerPreference?: GPUPowerPreference;
  /**
   * Storage-binding limit in bytes to use instead of the device's (lower only; a multiple of 256,
   * at least 4096). Tests set it, or the `KINO_MAX_BINDING` environment variable, to run the
   * segmented paths of every op at small sizes.
   */
  maxBinding?: number;
}

/** The limits the engine raises to the adapter's maximum (the defaults are far lower). */
const WANTED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
] as const;

const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "timestamp-query"];

/** Error raised when the GPU cannot be used; the message says how to fix it. */
export class GpuUnavailableError extends Error {
  /** Error class name, shown in stack traces. */
  override name = "GpuUnavailableError";
}

/**
 * Requests a high-performance adapter and a device with the adapter's full compute limits.
 *
 * @example Pick a device and print what it is
 * ```ts ignore
 * const { device, info } = await requestGpuDevice();
 * console.log(info.name, info.limits.maxStorageBufferBindingSize);
 * device.destroy();
 * ```
 */
export async function requestGpuDevice(
  options: DeviceOptions = {},
): Promise<{ device: GPUDevice; info: DeviceInfo }> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new GpuUnavailableError(
      "WebGPU is not available in this runtime (navigator.gpu is missing). Run Kino with Deno 2 " +
        "or newer (`npm install -g deno`), where WebGPU is built in.",
    );
  }
  const adapter = await gpu.requestAdapter({
    powerPreference: options.powerPreference ?? "high-performance",
  });
  if (!adapter) {
    throw new GpuUnavailableError(
      "No WebGPU adapter found. On a machine without a GPU install Mesa's software Vulkan " +
        "driver (`apt-get install -y mesa-vulkan-drivers`, then `export XDG_RUNTIME_DIR=/tmp`); " +
        "with a GPU, check that its Vulkan/Metal/D3D12 driver is installed.",
    );
  }
  const requiredLimits: Record<string, number> = {};
  const al = adapter.limits as unknown as Record<string, number>;
  for (const k of WANTED_LIMITS) if (typeof al[k] === "number") requiredLimits[k] = al[k];
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    label: "kino",
    requiredLimits,
    requiredFeatures,
  });
  const limits: Record<string, number> = {};
  const dl = device.limits as unknown as Record<string, number>;
  for (const k in dl) if (typeof dl[k] === "number") limits[k] = dl[k];
  const ai = adapter.info;
  const info: DeviceInfo = {
    name: ai.description || ai.device || ai.vendor || "unknown adapter",
    vendor: ai.vendor,
    architecture: ai.architecture,
    isFallback: (ai as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    limits,
    features: [...device.features],
  };
  return { device, info };
}
