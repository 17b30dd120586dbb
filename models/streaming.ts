/**
 * Weight streaming: run a model whose weights do not fit in GPU memory by keeping them in host
 * memory and uploading one group of parameters (the embedders, one transformer block, the final
 * layer) right before the group runs, then freeing it once the group's outputs are computed.
 * GPU memory then holds one block's weights plus the activations, at the price of re-uploading
 * every weight on every forward (host→GPU bandwidth bound).
 *
 * @example
 * ```ts ignore
 * const dit = new MMDiT(mmditPreset("hcae"), { storage: "bf16" });
 * const streamer = await WeightStreamer.fromFiles(dit.params, [ckpt]);
 * streamer.attach(dit);              // dit.forward(...) now streams block by block
 * ```
 *
 * @module
 */
import type { DType } from "../engine/dtype.ts";
import { realize } from "../engine/graph.ts";
import { SafeTensorsFile } from "../engine/safetensors.ts";
import type { Tensor } from "../engine/tensor.ts";
import type { ParamSet } from "./params.ts";

/** A model with per-group hooks (e.g. the MMDiT). */
export interface Streamable {
  /** The model's parameters (what is streamed). */
  params: ParamSet;
  /** Hooks the streamer installs to upload each group before use and free it after. */
  hooks: {
    before?(prefix: string): void;
    after?(prefix: string, outputs: Tensor[]): void;
  };
}

interface HostTensor {
  /** The values, or null for a synthetic weight made on the GPU when its group runs. */
  data: Float32Array | Uint16Array | null;
  dtype: DType;
  /** Bytes on the GPU. */
  bytes: number;
}

/** Holds weights on the host and uploads them group by group; see the module doc. */
export class WeightStreamer {
  private readonly host = new Map<string, HostTensor>();
  /** Bytes uploaded (or made, for synthetic weights) since construction (for reports). */
  uploaded = 0;
  /** Largest number of bytes of weights resident on the GPU at once. */
  peakResident = 0;
  private resident = 0;

  private synthSeed = 0;

  private constructor(readonly params: ParamSet, readonly groups: (name: string) => string) {}

  /**
   * Streams seeded random weights made on the GPU group by group ({@linkcode ParamSet.synthesize}):
   * the real architecture's time and memory without its checkpoint, never the whole model in host
   * or GPU memory (`--synthetic-weights`).
   */
  static synthetic(
    params: ParamSet,
    seed: number,
    groupOf: (name: string) => string = mmditGroup,
  ): WeightStreamer {
    const s = new WeightStreamer(params, groupOf);
    s.synthSeed = seed;
    for (const spec of params.list()) {
      const half = params.storage !== "f32" && spec.shape.length >= 2;
      const n = spec.shape.reduce((a, b) => a * b, 1);
      s.host.set(spec.name, {
        data: null,
        dtype: half ? params.storage : "f32",
        bytes: n * (half ? 2 : 4),
      });
    }
    return s;
  }

  /**
   * Reads every declared parameter from safetensors files into host memory (in the set's storage
   * dtype for matrices, f32 for vectors), checking names and shapes like {@linkcode ParamSet.load}.
   * `groupOf` maps a parameter name to its group (default: `double_blocks.N`, `single_blocks.N`,
   * `final_layer`, otherwise `embed`).
   */
  static async fromFiles(
    params: ParamSet,
    paths: string[],
    groupOf: (name: string) => string = mmditGroup,
  ): Promise<WeightStreamer> {
    const s = new WeightStreamer(params, groupOf);
    const files = await Promise.all(paths.map((p) => SafeTensorsFile.open(p)));
    try {
      const where = new Map<string, SafeTensorsFile>();
      for (const f of files) for (const n of f.names()) where.set(n, f);
      for (const spec of params.list()) {
        const f = where.get(spec.name);
        if (!f) {
          throw new Error(`weight streaming: ${spec.name} is missing from ${paths.join(", ")}`);
        }
        if (f.info(spec.name).shape.join() !== spec.shape.join()) {
          throw new Error(
            `weight streaming: ${spec.name} has shape [${f.info(spec.name).shape}] in the ` +
              `checkpoint, the model expects [${spec.shape}]`,
          );
        }
        const half = params.storage !== "f32" && spec.shape.length >= 2;
        const data = half
          ? (await f.readAs(spec.name, params.storage === "f16" ? "f16" : "bf16")).data
          : await f.readF32(spec.name);
        s.host.set(spec.name, {
          data,
          dtype: half ? params.storage : "f32",
          bytes: data.byteLength,
        });
      }
    } finally {
      for (const f of files) f.close();
    }
    return s;
  }

  /** Streams from values already in host memory (e.g. a freshly initialised model in tests). */
  static fromHost(
    params: ParamSet,
    values: Map<string, Float32Array>,
    groupOf: (name: string) => string = mmditGroup,
  ): WeightStreamer {
    const s = new WeightStreamer(params, groupOf);
    for (const spec of params.list()) {
      const v = values.get(spec.name);
      if (!v) throw new Error(`weight streaming: no host value for ${spec.name}`);
      s.host.set(spec.name, { data: v, dtype: "f32", bytes: v.byteLength });
    }
    return s;
  }

  /** Host bytes held. */
  get hostBytes(): number {
    let n = 0;
    for (const t of this.host.values()) n += t.data?.byteLength ?? 0;
    return n;
  }

  /** Installs the hooks on a model; its forward then uploads and frees weights per group. */
  attach(model: Streamable): void {
    model.hooks = {
      before: (prefix) => this.upload(prefix),
      after: (prefix, outputs) => {
        realize(outputs);
        this.free(prefix);
      },
    };
  }

  /** Uploads the parameters of one group. */
  upload(group: string): void {
    for (const [name, t] of this.host) {
      if (this.groups(name) !== group || this.params.has(name)) continue;
      if (t.data) this.params.set(name, t.data, t.dtype);
      else this.params.synthesize(name, this.synthSeed);
      this.resident += t.bytes;
      this.uploaded += t.bytes;
    }
    this.peakResident = Math.max(this.peakResident, this.resident);
  }

  /** Frees the parameters of one group. */
  free(group: string): void {
    for (const [name, t] of this.host) {
      if (this.groups(name) !== group || !this.params.has(name)) continue;
      this.params.release(name);
      this.resident -= t.bytes;
    }
  }
}

/** The MMDiT's streaming groups: `embed`, `double_blocks.N`, `single_blocks.N`, `final_layer`. */
export function mmditGroup(name: string): string {
  const m = /^(double_blocks\.\d+|single_blocks\.\d+|final_layer)\./.exec(name);
  return m ? m[1]! : "embed";
}
