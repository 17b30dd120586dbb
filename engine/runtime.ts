/**
 * The runtime: one GPU device, its buffer pool, the pipeline cache and the command batcher.
 *
 * Dispatches are recorded into one open compute pass; they are submitted together when the batch
 * is full, when data is read back, or on {@linkcode Runtime.flush}. Kernel parameters of a batch
 * are packed into one uniform buffer (a 256-byte slice per dispatch) written just before submit.
 *
 * @module
 */
import { type DeviceInfo, type DeviceOptions, requestGpuDevice } from "./device.ts";
import { type KernelSpec, PARAM_WORDS, Params } from "./kernel.ts";

const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const PARAM_SLICE = 256;
const MAX_BATCH = 1024;

/** Bytes in use, allocated and the peaks, as reported by {@linkcode BufferPool.stats}. */
export interface MemoryStats {
  /** Bytes held by live tensors. */
  inUse: number;
  /** Bytes of GPU buffers allocated (in use + cached in the pool). */
  allocated: number;
  /** Highest `inUse` since the last {@linkcode BufferPool.resetPeak}. */
  peakInUse: number;
  /** Highest `allocated` since the last reset. */
  peakAllocated: number;
  /** Number of buffers created so far. */
  buffersCreated: number;
}

/** Size class of a request: multiples of 256 B, then 8 steps per power of two (≤ 12.5% waste). */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 64 * 1024) return b;
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 8;
  return Math.ceil(b / step) * step;
}

/** Pools GPU buffers by size class; buffers come back to it when the last tensor using them dies. */
export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly sizes = new WeakMap<GPUBuffer, number>();
  private s: MemoryStats = {
    inUse: 0,
    allocated: 0,
    peakInUse: 0,
    peakAllocated: 0,
    buffersCreated: 0,
  };

  /**
   * Pools buffers of `device`; requests above `maxBufferSize` bytes throw. A request that fits one
   * storage binding (`bindingLimit()`) never gets a buffer larger than the binding limit, so that
   * kernels may bind it whole.
   */
  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    private readonly bindingLimit: () => number = () => Infinity,
  ) {}

  /** Takes a buffer of at least `bytes` bytes. */
  acquire(bytes: number, what = "tensor"): GPUBuffer {
    let cls = sizeClass(bytes);
    const limit = this.bindingLimit();
    if (bytes <= limit && cls > limit) cls = Math.ceil(bytes / 256) * 256;
    // near the top (maxBufferSize may be 2^31 - 1) the class must not push a fitting request over
    if (cls > this.maxBufferSize && bytes <= this.maxBufferSize) cls = Math.ceil(bytes / 4) * 4;
    if (cls > this.maxBufferSize) {
      throw new RangeError(
        `${what} needs ${bytes} bytes, over the device limit maxBufferSize = ${this.maxBufferSize}`,
      );
    }
    let buf = this.free.get(cls)?.pop();
    if (!buf) {
      buf = this.device.createBuffer({ size: cls, usage: STORAGE_USAGE, label: `kino:${cls}` });
      this.sizes.set(buf, cls);
      this.s.allocated += cls;
      this.s.buffersCreated++;
      this.s.peakAllocated = Math.max(this.s.peakAllocated, this.s.allocated);
    }
    this.s.inUse += cls;
    this.s.peakInUse = Math.max(this.s.peakInUse, this.s.inUse);
    return buf;
  }

  /** Returns a buffer for reuse. */
  release(buf: GPUBuffer): void {
    const cls = this.sizes.get(buf)!;
    this.s.inUse -= cls;
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, list = []);
    list.push(buf);
  }

  /** Destroys every cached (unused) buffer. */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        this.s.allocated -= this.sizes.get(b)!;
        b.destroy();
      }
    }
    this.free.clear();
  }

  /** Memory counters. */
  stats(): MemoryStats {
    return { ...this.s };
  }

  /** Starts a new peak measurement at the current values. */
  resetPeak(): void {
    this.s.peakInUse = this.s.inUse;
    this.s.peakAllocated = this.s.allocated;
  }
}

/** Counters of the command batcher, for tests and logging. */
export interface BatchStats {
  /** Compute dispatches recorded. */
  dispatches: number;
  /** Command buffers submitted to the queue. */
  submits: number;
  /** Compute pipelines compiled (cache misses). */
  pipelinesCompiled: number;
  /** GPU-to-CPU buffer reads. */
  readbacks: number;
}

/** Error in a kernel: WGSL compilation or pipeline validation, with the kernel's name. */
export class KernelError extends Error {
  /** Error class name, shown in stack traces. */
  override name = "KernelError";
}

/** A storage binding: a whole buffer, or a byte range of it. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset: number; size: number };

/** One GPU device with its pool, caches and batcher. Obtain it with {@linkcode runtime}. */
export class Runtime {
  /** Pool of the GPU buffers of tensors and kernels. */
  readonly pool: BufferPool;
  /** Batcher counters since the runtime was created. */
  readonly counters: BatchStats = { dispatches: 0, submits: 0, pipelinesCompiled: 0, readbacks: 0 };
  /** Set when the device is lost; every later call throws it. */
  lostReason: string | null = null;

  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly pendingChecks: Promise<string | null>[] = [];
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchCount = 0;
  private readonly paramBuffer: GPUBuffer;
  private readonly paramStaging: Uint32Array<ArrayBuffer>;
  private readonly touched = new Set<GPUBuffer>();
  private readonly debug = (Deno.env.get("KINO_DEBUG") ?? "") !== "";

  /**
   * Wraps a created device: sets up the buffer pool, the parameter buffer and loss/error reporting.
   */
  constructor(readonly device: GPUDevice, readonly info: DeviceInfo, options: DeviceOptions = {}) {
    const env = Deno.env.get("KINO_MAX_BINDING");
    const lower = options.maxBinding ?? (env ? Number(env) : undefined);
    if (lower !== undefined) {
      this.setBindingLimit(lower, options.maxBinding ? "maxBinding" : "KINO_MAX_BINDING");
    }
    this.pool = new BufferPool(
      device,
      info.limits.maxBufferSize ?? 256 * 2 ** 20,
      () => this.maxBinding,
    );
    this.paramBuffer = device.createBuffer({
      size: PARAM_SLICE * MAX_BATCH,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: "kino:params",
    });
    this.paramStaging = new Uint32Array((PARAM_SLICE * MAX_BATCH) / 4);
    device.lost.then((i) => {
      this.lostReason = `GPU device lost (${i.reason}): ${i.message}`;
      if (i.reason !== "destroyed") console.error(`kino: ${this.lostReason}`);
    });
    device.addEventListener("uncapturederror", (e) => {
      const msg = (e as GPUUncapturedErrorEvent).error.message;
      console.error(`kino: uncaptured WebGPU error: ${msg}`);
    });
  }

  private bindingOverride: number | null = null;

  /** The device's own limit on the byte size of one storage binding. */
  get deviceMaxBinding(): number {
    return this.info.limits.maxStorageBufferBindingSize ?? 128 * 2 ** 20;
  }

  /**
   * Largest byte size one storage binding may have: the device's limit, or the lower one set with
   * {@linkcode Runtime.setBindingLimit} (`KINO_MAX_BINDING`, the `maxBinding` init option). Ops
   * bind larger tensors as several windows (`engine/window.ts`).
   */
  get maxBinding(): number {
    return Math.min(this.deviceMaxBinding, this.bindingOverride ?? Infinity);
  }

  /** Largest byte size of one buffer, hence of one tensor. */
  get maxBufferSize(): number {
    return this.info.limits.maxBufferSize ?? 256 * 2 ** 20;
  }

  /** Alignment of a binding's byte offset (`minStorageBufferOffsetAlignment`, 256 by default). */
  get bindAlign(): number {
    return this.info.limits.minStorageBufferOffsetAlignment ?? 256;
  }

  /**
   * Lowers the storage-binding limit below the device's (tests of the windowed paths), or restores
   * the device's with `null`. `bytes` must be a multiple of 256 and at least 4096. Returns the
   * previous override (null: none).
   */
  setBindingLimit(bytes: number | null, what = "setBindingLimit"): number | null {
    if (bytes !== null && !(Number.isInteger(bytes) && bytes >= 4096 && bytes % 256 === 0)) {
      throw new RangeError(
        `${what} = ${bytes}: the binding limit must be a whole number of bytes, a multiple of 256 ` +
          `and at least 4096 (e.g. KINO_MAX_BINDING=65536)`,
      );
    }
    this.flush();
    const before = this.bindingOverride;
    this.bindingOverride = bytes;
    return before;
  }

  /** Throws the device-lost reason if the device is gone. */
  private checkAlive(): void {
    if (this.lostReason) throw new Error(`kino: ${this.lostReason}`);
  }

  /** The compiled pipeline of a kernel (compiled on first use, then cached by its source). */
  pipeline(spec: KernelSpec): GPUComputePipeline {
    const key = spec.name + "\0" + JSON.stringify(spec.constants ?? {}) + "\0" + spec.code;
    let p = this.pipelines.get(key);
    if (p) return p;
    const dev = this.device;
    dev.pushErrorScope("validation");
    const module = dev.createShaderModule({ code: spec.code, label: spec.name });
    p = dev.createComputePipeline({
      label: spec.name,
      layout: dev.createPipelineLayout({ bindGroupLayouts: [this.layout(spec)] }),
      compute: { module, entryPoint: spec.entry ?? "main", constants: spec.constants ?? {} },
    });
    this.pendingChecks.push(
      dev.popErrorScope().then(async (err) => {
        if (!err) return null;
        const info = await module.getCompilationInfo();
        const msgs = info.messages.map((m) => `  ${m.type} ${m.lineNum}:${m.linePos} ${m.message}`);
        return `kernel ${spec.name} failed to compile: ${err.message}\n${msgs.join("\n")}`;
      }),
    );
    this.counters.pipelinesCompiled++;
    if (Deno.env.get("KINO_PRINT_WGSL")) console.error(`// ${spec.name}\n${spec.code}`);
    this.pipelines.set(key, p);
    return p;
  }

  /**
   * The bind group layout of a kernel (uniform params, then read-only inputs, then outputs), cached
   * by binding counts.
   */
  private layout(spec: KernelSpec): GPUBindGroupLayout {
    const key = `${spec.inputs}/${spec.outputs}`;
    let l = this.layouts.get(key);
    if (l) return l;
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform" } },
    ];
    for (let i = 0; i < spec.inputs + spec.outputs; i++) {
      entries.push({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: i < spec.inputs ? "read-only-storage" : "storage" },
      });
    }
    l = this.device.createBindGroupLayout({ entries, label: `kino:layout${key}` });
    this.layouts.set(key, l);
    return l;
  }

  /**
   * Records one dispatch into the open batch. Bindings are inputs then outputs, as the spec
   * counts them; `params` are the run-time parameters (≤ 64 words).
   */
  dispatch(
    spec: KernelSpec,
    bindings: readonly Binding[],
    params: Params | readonly number[],
    groups: readonly [number, number, number],
  ): void {
    this.checkAlive();
    if (bindings.length !== spec.inputs + spec.outputs) {
      throw new Error(
        `kernel ${spec.name}: expected ${
          spec.inputs + spec.outputs
        } bindings, got ${bindings.length}`,
      );
    }
    const words = params instanceof Params ? params.words : params;
    if (words.length > PARAM_WORDS) {
      throw new Error(`kernel ${spec.name}: ${words.length} parameter words, max ${PARAM_WORDS}`);
    }
    const maxG = this.info.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (groups.some((g) => g > maxG)) {
      throw new RangeError(
        `kernel ${spec.name}: grid ${
          groups.join("x")
        } exceeds maxComputeWorkgroupsPerDimension = ${maxG}`,
      );
    }
    const limit = this.maxBinding;
    bindings.forEach((b, i) => {
      if (b.size > limit) {
        throw new RangeError(
          `kernel ${spec.name}: binding ${i + 1} is ${b.size} bytes, over the storage-binding ` +
            `limit ${limit}; the op must bind it as windows (engine/window.ts)`,
        );
      }
    });
    if (groups.some((g) => g === 0)) return;
    const pipeline = this.pipeline(spec);
    if (this.batchCount >= MAX_BATCH) this.flush();
    if (!this.encoder) {
      this.encoder = this.device.createCommandEncoder({ label: "kino:batch" });
      this.pass = this.encoder.beginComputePass({ label: "kino:pass" });
    }
    const slot = this.batchCount++;
    this.paramStaging.set(words, (slot * PARAM_SLICE) / 4);
    const entries: GPUBindGroupEntry[] = [
      {
        binding: 0,
        resource: { buffer: this.paramBuffer, offset: slot * PARAM_SLICE, size: PARAM_SLICE },
      },
    ];
    bindings.forEach((b, i) => {
      const buffer = b instanceof GPUBuffer ? b : b.buffer;
      this.touched.add(buffer);
      entries.push({ binding: i + 1, resource: b instanceof GPUBuffer ? { buffer: b } : b });
    });
    const bg = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.pass!;
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    this.counters.dispatches++;
    if (this.debug) console.error(`kino: dispatch ${spec.name} grid ${groups.join("x")}`);
  }

  /** Records a buffer-to-buffer copy (ends the open pass; cheap). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.checkAlive();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: "kino:batch" });
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.touched.add(src).add(dst);
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.pass = this.encoder.beginComputePass({ label: "kino:pass" });
  }

  /** Submits everything recorded so far (no wait). */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    if (this.batchCount > 0) {
      this.device.queue.writeBuffer(
        this.paramBuffer,
        0,
        this.paramStaging,
        0,
        (this.batchCount * PARAM_SLICE) / 4,
      );
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.batchCount = 0;
    this.touched.clear();
    this.counters.submits++;
  }

  /**
   * Writes CPU data into a buffer. If the open batch uses that buffer, the batch is submitted
   * first, since queue writes land before commands that are still being recorded.
   */
  write(buffer: GPUBuffer, byteOffset: number, data: ArrayBufferView): void {
    this.checkAlive();
    if (this.touched.has(buffer)) this.flush();
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    const aligned = bytes.byteLength & 3 ? copyPadded(bytes) : bytes;
    this.device.queue.writeBuffer(buffer, byteOffset, aligned);
  }

  /** Copies `bytes` bytes from a buffer to the CPU: submits the batch and waits for the GPU. */
  async read(buffer: GPUBuffer, byteOffset: number, bytes: number): Promise<ArrayBuffer> {
    this.checkAlive();
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(size, 4),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "kino:readback",
    });
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: "kino:batch" });
    this.pass?.end();
    this.pass = null;
    this.encoder.copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
    this.flush();
    this.counters.readbacks++;
    await this.checkErrors();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      this.checkAlive();
      throw e;
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Awaits pending shader-compilation checks and throws the first failure with its kernel name. */
  async checkErrors(): Promise<void> {
    if (this.pendingChecks.length === 0) return;
    const results = await Promise.all(this.pendingChecks.splice(0));
    const bad = results.find((r) => r !== null);
    if (bad) throw new KernelError(bad);
  }

  /** Submits and waits until the GPU has finished all work. */
  async sync(): Promise<void> {
    this.flush();
    await this.checkErrors();
    await this.device.queue.onSubmittedWorkDone();
    this.checkAlive();
  }
}

function copyPadded(b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.ceil(b.byteLength / 4) * 4);
  out.set(b);
  return out;
}

let current: Runtime | null = null;
let pending: Promise<Runtime> | null = null;

/**
 * Initialises the engine on the best available GPU (once; later calls return the same runtime).
 *
 * @example
 * ```ts ignore
 * const rt = await init();
 * console.log(rt.info.name);
 * ```
 */
export function init(options: DeviceOptions = {}): Promise<Runtime> {
  if (current && !current.lostReason) return Promise.resolve(current);
  if (!pending) {
    pending = requestGpuDevice(options).then(({ device, info }) => {
      current = new Runtime(device, info, options);
      pending = null;
      return current;
    }, (e) => {
      pending = null;
      throw e;
    });
  }
  return pending;
}

/** The initialised runtime; throws if {@linkcode init} has not completed. */
export function runtime(): Runtime {
  if (!current) throw new Error("kino: call `await init()` before running tensor ops");
  return current;
}

/** Destroys the device (tests call this at the end). */
export function shutdown(): void {
  if (current) {
    current.flush();
    current.pool.trim();
    current.device.destroy();
    current = null;
  }
}
