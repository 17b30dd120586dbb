/**
 * Model parameters by checkpoint name.
 *
 * A model declares each parameter once, at construction, under the exact `state_dict` key of the
 * reference implementation (`encoder.stages.0.op_list.0.main.conv1.conv.weight`, ...), through
 * nested scopes that mirror the module tree. Construction allocates nothing, so a model can be
 * built in *shape-only* mode to list its parameters or estimate memory; weights then come from a
 * safetensors checkpoint (by name, with a report of missing, unexpected and wrongly-shaped keys)
 * or from a seeded initialiser.
 *
 * @module
 */
import { parameter } from "../engine/autograd.ts";
import { type DType, DTYPE_BYTES } from "../engine/dtype.ts";
import { fromData } from "../engine/graph.ts";
import { fmtShape, numel } from "../engine/shape.ts";
import { keep, noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { copy, ones, zeros } from "../engine/ops/elementwise.ts";
import { cast } from "../engine/ops/concat.ts";
import { randUniform } from "../engine/ops/random.ts";
import { SafeTensorsFile } from "../engine/safetensors.ts";
import { runtime } from "../engine/runtime.ts";

/** How a parameter is initialised when no checkpoint provides it. */
export type Init =
  | "zeros"
  | "ones"
  | { uniform: number }
  | { truncNormal: number }
  | "fan_in";

/** One declared parameter. */
export interface ParamSpec {
  /** Full checkpoint key. */
  name: string;
  /** Dimensions. */
  shape: number[];
  /** Initialiser used when no checkpoint provides it. */
  init: Init;
}

/** Result of {@linkcode ParamSet.load}. */
export interface LoadReport {
  /** Number of parameters loaded. */
  loaded: number;
  /** Declared names the checkpoint lacks. */
  missing: string[];
  /** Checkpoint names the model does not declare. */
  unexpected: string[];
  /** Names whose shape differs between the model and the checkpoint. */
  wrongShape: { name: string; expected: number[]; found: number[] }[];
}

/** Error raised when a checkpoint does not match the model. */
export class CheckpointMismatchError extends Error {
  /** Error class name, shown in stack traces. */
  override name = "CheckpointMismatchError";
}

/** A named collection of parameters; see the module doc. */
export class ParamSet {
  private readonly specs = new Map<string, ParamSpec>();
  private readonly values = new Map<string, Tensor>();

  /** Storage dtype of loaded weights (f32 unless set: bf16/f16 keep checkpoints compact). */
  constructor(readonly storage: DType = "f32") {}

  /** The root scope (no prefix). */
  get root(): ParamScope {
    return new ParamScope(this, "");
  }

  /** Declares a parameter (construction time; allocates nothing). */
  declare(name: string, shape: readonly number[], init: Init = "fan_in"): string {
    if (this.specs.has(name)) throw new Error(`parameter ${name} is declared twice`);
    this.specs.set(name, { name, shape: [...shape], init });
    return name;
  }

  /**
   * Changes how declared parameters are initialised (e.g. a model's from-scratch recipe):
   * `rule` returns the new {@linkcode Init} of a declaration, or undefined to keep it.
   */
  reinit(rule: (spec: ParamSpec) => Init | undefined): void {
    for (const spec of this.specs.values()) spec.init = rule(spec) ?? spec.init;
  }

  /** All declarations in declaration order. */
  list(): ParamSpec[] {
    return [...this.specs.values()];
  }

  /** Total number of parameter elements. */
  count(): number {
    let n = 0;
    for (const s of this.specs.values()) n += numel(s.shape);
    return n;
  }

  /** Bytes the parameters take in a storage dtype. */
  bytes(dtype: DType = this.storage): number {
    return this.count() * (dtype === "f16" || dtype === "bf16" ? 2 : 4);
  }

  /** The tensor of a parameter; throws a clear error if weights were never loaded. */
  get(name: string): Tensor {
    const t = this.values.get(name);
    if (t) return t;
    if (!this.specs.has(name)) throw new Error(`parameter ${name} was never declared`);
    throw new Error(
      `parameter ${name} has no value: the model was built shape-only; load a checkpoint or ` +
        `call initialize() first`,
    );
  }

  /** Whether every declared parameter has a value. */
  get ready(): boolean {
    return this.values.size === this.specs.size;
  }

  /** The realized parameter tensors (for an optimizer). */
  tensors(): Tensor[] {
    return [...this.values.values()];
  }

  /** Initialises every parameter without a value from a seeded generator (deterministic). */
  initialize(seed = 0): void {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    for (const spec of this.specs.values()) {
      if (this.values.has(spec.name)) continue;
      const n = numel(spec.shape);
      const data = new Float32Array(n);
      const init = spec.init;
      if (init === "ones") data.fill(1);
      else if (typeof init === "object" && "truncNormal" in init) {
        // N(0, std²) truncated to [-2, 2] (PyTorch's trunc_normal_ defaults), by Box-Muller
        for (let i = 0; i < n; i++) {
          let v: number;
          do {
            v = init.truncNormal * Math.sqrt(-2 * Math.log(1 - next())) *
              Math.cos(2 * Math.PI * next());
          } while (v < -2 || v > 2);
          data[i] = v;
        }
      } else if (init !== "zeros") {
        const a = typeof init === "object"
          ? (init as { uniform: number }).uniform
          : Math.sqrt(3 / Math.max(1, n / (spec.shape[0] ?? 1)));
        for (let i = 0; i < n; i++) data[i] = (2 * next() - 1) * a;
      }
      this.set(spec.name, data);
    }
  }

  /**
   * Makes one parameter's value on the GPU from a counter-based generator (Threefry), with no host
   * copy: the declared init (the uniform bound of `fan_in` / `uniform`, a truncated normal as the
   * uniform of the same standard deviation, ones, zeros), stored like loaded weights (the set's
   * storage dtype for matrices, f32 for vectors). The same name and seed give the same values, so
   * a streamer can make a group again on every forward. For measuring real-size models without
   * their weights (`--synthetic-weights`); the values are not a trained model's.
   */
  synthesize(name: string, seed: number): void {
    const spec = this.specs.get(name);
    if (!spec) throw new Error(`parameter ${name} was never declared`);
    const dtype = this.storage === "f32" || spec.shape.length < 2 ? "f32" : this.storage;
    const n = numel(spec.shape);
    const init = spec.init;
    const bound = init === "ones" || init === "zeros"
      ? 0
      : typeof init === "object"
      ? ("uniform" in init ? init.uniform : init.truncNormal * Math.sqrt(3))
      : Math.sqrt(3 / Math.max(1, n / (spec.shape[0] ?? 1)));
    this.values.get(name)?.dispose();
    const t = keep(noGrad(() =>
      tidy(() => {
        const v = init === "ones"
          ? ones(spec.shape)
          : init === "zeros"
          ? zeros(spec.shape)
          : randUniform(spec.shape, { seed: nameSeed(name, seed), low: -bound, high: bound });
        return dtype === "f32" ? copy(v) : cast(v, dtype as "f16" | "bf16");
      })
    ));
    t.name = name;
    t.isParameter = true;
    this.values.set(name, t);
  }

  /** Sets one parameter from f32 data (checks the shape). */
  set(name: string, data: Float32Array | Uint16Array, dtype: DType = "f32"): void {
    const spec = this.specs.get(name);
    if (!spec) throw new Error(`parameter ${name} was never declared`);
    if (data.length !== numel(spec.shape)) {
      throw new RangeError(
        `parameter ${name}: ${data.length} values for shape ${fmtShape(spec.shape)}`,
      );
    }
    this.values.get(name)?.dispose();
    const t = dtype === "f32" && this.storage === "f32"
      ? parameter(name, data as Float32Array, spec.shape)
      : storedParameter(name, data, spec.shape, dtype);
    this.values.set(name, t);
  }

  /**
   * Loads weights by name from a safetensors file (or several, e.g. shards). Throws a
   * {@linkcode CheckpointMismatchError} listing missing, unexpected and wrongly-shaped keys unless
   * `strict` is false, in which case the report tells what was skipped.
   */
  async load(paths: string | string[], options: { strict?: boolean } = {}): Promise<LoadReport> {
    const strict = options.strict ?? true;
    const files = await Promise.all(
      (Array.isArray(paths) ? paths : [paths]).map((p) => SafeTensorsFile.open(p)),
    );
    try {
      const report: LoadReport = { loaded: 0, missing: [], unexpected: [], wrongShape: [] };
      const where = new Map<string, SafeTensorsFile>();
      for (const f of files) for (const n of f.names()) where.set(n, f);
      for (const [n, f] of where) {
        const spec = this.specs.get(n);
        if (!spec) report.unexpected.push(n);
        else if (f.info(n).shape.join() !== spec.shape.join()) {
          report.wrongShape.push({ name: n, expected: spec.shape, found: f.info(n).shape });
        }
      }
      for (const n of this.specs.keys()) if (!where.has(n)) report.missing.push(n);
      const bad = report.missing.length + report.wrongShape.length + report.unexpected.length;
      if (strict && bad > 0) {
        throw new CheckpointMismatchError(describe(report, files.map((f) => f.path)));
      }
      this.checkFits();
      for (const [n, f] of where) {
        if (!this.specs.has(n) || report.wrongShape.some((w) => w.name === n)) continue;
        // compact storage applies to matrices; vectors (biases, norm scales) stay f32
        if (this.storage === "f32" || this.specs.get(n)!.shape.length < 2) {
          this.set(n, await f.readF32(n));
        } else {
          const { data } = await f.readAs(n, this.storage === "f16" ? "f16" : "bf16");
          this.set(n, data, this.storage);
        }
        report.loaded++;
      }
      return report;
    } finally {
      for (const f of files) f.close();
    }
  }

  /**
   * Throws, before anything is uploaded, naming the first parameter whose stored bytes exceed the
   * device's `maxBufferSize` (a tensor over one storage binding is fine: ops bind it as windows).
   */
  checkFits(): void {
    const max = runtime().maxBufferSize;
    for (const spec of this.specs.values()) {
      const dtype = this.storage === "f32" || spec.shape.length < 2 ? "f32" : this.storage;
      const bytes = numel(spec.shape) * DTYPE_BYTES[dtype];
      if (bytes > max) {
        throw new RangeError(
          `parameter ${spec.name} ${
            fmtShape(spec.shape)
          } ${dtype} needs ${bytes} bytes, over the ` +
            `device limit maxBufferSize = ${max}; store the weights as bf16/f16 or use a GPU ` +
            `with larger buffers`,
        );
      }
    }
  }

  /** Frees one parameter's value (it can be set again later, e.g. by a weight streamer). */
  release(name: string): void {
    this.values.get(name)?.dispose();
    this.values.delete(name);
  }

  /** Whether a parameter currently has a value. */
  has(name: string): boolean {
    return this.values.has(name);
  }

  /** Frees every parameter. */
  dispose(): void {
    for (const t of this.values.values()) t.dispose();
    this.values.clear();
  }
}

/** A 32-bit seed per parameter name (FNV-1a of the name, mixed with the set's seed). */
function nameSeed(name: string, seed: number): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function storedParameter(
  name: string,
  data: Float32Array | Uint16Array,
  shape: number[],
  dtype: DType,
): Tensor {
  const t = keep(fromData(data, shape, dtype, name));
  t.isParameter = true;
  return t;
}

function describe(r: LoadReport, paths: string[]): string {
  const list = (xs: string[]) =>
    xs.slice(0, 10).join(", ") + (xs.length > 10 ? `, ... (${xs.length} in all)` : "");
  const parts = [`checkpoint ${paths.join(", ")} does not match the model:`];
  if (r.missing.length) parts.push(`  missing keys (${r.missing.length}): ${list(r.missing)}`);
  if (r.unexpected.length) {
    parts.push(`  unexpected keys (${r.unexpected.length}): ${list(r.unexpected)}`);
  }
  if (r.wrongShape.length) {
    parts.push(
      `  wrong shapes (${r.wrongShape.length}): ` +
        r.wrongShape.slice(0, 10).map((w) =>
          `${w.name} expected ${fmtShape(w.expected)} found ${fmtShape(w.found)}`
        ).join("; "),
    );
  }
  parts.push("  check that the checkpoint and the model preset are the same model");
  return parts.join("\n");
}

/** A prefix in the module tree: `scope.sub("conv1").declare("weight", ...)` → `conv1.weight`. */
export class ParamScope {
  /** A scope of `set` whose keys start with `prefix` (empty for the root). */
  constructor(readonly set: ParamSet, readonly prefix: string) {}
  /** A nested scope. */
  sub(name: string | number): ParamScope {
    return new ParamScope(this.set, this.key(String(name)));
  }
  /** The full checkpoint key of a local name. */
  key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }
  /** Declares `prefix.name` and returns its full key. */
  declare(name: string, shape: readonly number[], init?: Init): string {
    return this.set.declare(this.key(name), shape, init);
  }
  /** The tensor of a full key (forward time). */
  get(fullKey: string): Tensor {
    return this.set.get(fullKey);
  }
}
