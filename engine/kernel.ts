/**
 * The contract between a WGSL kernel and the runtime.
 *
 * Binding convention, the same for every kernel:
 * - `@group(0) @binding(0)`: `var<uniform> P: Params` — the run-time parameters (shapes, strides,
 *   scalars), packed as 32-bit words by {@linkcode Params} and read with `pu(i)`, `pi(i)`, `pf(i)`;
 * - `@binding(1 .. inputs)`: read-only storage buffers;
 * - `@binding(inputs + 1 ..)`: read-write storage buffers (outputs).
 *
 * What is compiled in (dtype, tile sizes, structural flags) is part of the WGSL text or the
 * `constants` (WGSL `override`s), and so part of the pipeline cache key; shapes never are.
 *
 * @module
 */

/** A compiled-once kernel: WGSL source plus its binding counts. */
export interface KernelSpec {
  /** Kernel name used in labels and error messages, e.g. `matmul_4x4`. */
  readonly name: string;
  /** Complete WGSL source (must include {@linkcode paramsWGSL}). */
  readonly code: string;
  /** Number of read-only storage bindings. */
  readonly inputs: number;
  /** Number of read-write storage bindings. */
  readonly outputs: number;
  /** Values for WGSL `override` constants (part of the cache key). */
  readonly constants?: Readonly<Record<string, number>>;
  /** Entry point; default `main`. */
  readonly entry?: string;
}

/** Size of the uniform parameter block in 32-bit words (256 bytes). */
export const PARAM_WORDS = 64;

/**
 * WGSL declarations of the parameter block and its accessors. `words` must be a multiple of 4
 * and at least the number of words the kernel reads.
 */
export function paramsWGSL(words: number = PARAM_WORDS): string {
  return `struct Params { v: array<vec4<u32>, ${Math.ceil(words / 4)}> };
@group(0) @binding(0) var<uniform> P: Params;
fn pu(i: u32) -> u32 { return P.v[i >> 2u][i & 3u]; }
fn pi(i: u32) -> i32 { return bitcast<i32>(P.v[i >> 2u][i & 3u]); }
fn pf(i: u32) -> f32 { return bitcast<f32>(P.v[i >> 2u][i & 3u]); }
`;
}

/** Packs run-time kernel parameters as 32-bit words in the order the kernel reads them. */
export class Params {
  /** The packed 32-bit words, in append order. */
  readonly words: number[] = [];
  private readonly f = new Float32Array(1);
  private readonly u = new Uint32Array(this.f.buffer);
  private readonly i = new Int32Array(this.f.buffer);

  /** Appends unsigned integers. */
  u32(...v: number[]): this {
    for (const x of v) {
      if (!(x >= 0 && x <= 0xffffffff)) throw new RangeError(`Params.u32: ${x} is not a u32`);
      this.words.push(x >>> 0);
    }
    return this;
  }
  /** Appends signed integers. */
  i32(...v: number[]): this {
    for (const x of v) {
      this.i[0] = x;
      this.words.push(this.u[0]!);
    }
    return this;
  }
  /** Appends floats. */
  f32(...v: number[]): this {
    for (const x of v) {
      this.f[0] = x;
      this.words.push(this.u[0]!);
    }
    return this;
  }
}

/** Workgroup counts for `n` work items in groups of `size`, folded into 2-D past 65535. */
export function gridFor(n: number, size: number, maxPerDim = 65535): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / size));
  if (groups <= maxPerDim) return [groups, 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL snippet: flat invocation index for a grid made by {@linkcode gridFor}. */
export function flatIndexWGSL(size: number): string {
  return `fn flat_id(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * ${size}u + lid;
}
`;
}
