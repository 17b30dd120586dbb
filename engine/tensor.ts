/**
 * Tensors, graph nodes and scopes.
 *
 * A {@linkcode Tensor} is a lazy value: an op records a {@linkcode Node} (op, inputs, attributes)
 * and returns at once; GPU work happens when the tensor is *realized* (by {@linkcode realize},
 * a read, or the end of a {@linkcode tidy} scope). Its layout (shape, strides, offset) is known
 * when it is built, so views (reshape, permute, slice, expand) cost no copy: they alias the
 * storage of their base tensor with other strides.
 *
 * @module
 */
import { type DType, DTYPE_BYTES } from "./dtype.ts";
import { contiguousStrides, fmtShape, isContiguous, numel, type Shape } from "./shape.ts";
import type { Runtime } from "./runtime.ts";

/** A reference-counted GPU buffer shared by a tensor and its views. */
export class Storage {
  /** Number of live references (tensors and views); the buffer is freed at zero. */
  refs = 1;
  /** Wraps `buffer` (`bytes` bytes) with one reference; `onFree` returns it to the pool. */
  constructor(
    readonly buffer: GPUBuffer,
    readonly bytes: number,
    private readonly onFree: (b: GPUBuffer) => void,
  ) {}
  /** Adds a reference. */
  retain(): this {
    this.refs++;
    return this;
  }
  /** Drops a reference; the buffer goes back to the pool at zero. */
  release(): void {
    if (--this.refs === 0) this.onFree(this.buffer);
  }
}

/** A realized tensor as a kernel sees it: a buffer plus the element layout inside it. */
export interface TensorView {
  /** GPU buffer holding the elements. */
  buffer: GPUBuffer;
  /** Element type. */
  dtype: DType;
  /** Dimensions, outermost first. */
  shape: Shape;
  /** Element strides, per axis (in elements). */
  strides: readonly number[];
  /** Offset of element 0 in elements of `dtype`. */
  offset: number;
}

/** What a kernel op's `encode` receives. */
export interface EncodeContext<A> {
  /** The runtime to record dispatches into. */
  rt: Runtime;
  /** Realized views of the op's inputs. */
  inputs: TensorView[];
  /** Freshly allocated contiguous outputs to write. */
  outputs: TensorView[];
  /** The op's attributes. */
  attrs: A;
}

/** What an op's backward rule receives. */
export interface GradContext<A> {
  /** The op's inputs. */
  inputs: readonly Tensor[];
  /** The op's outputs. */
  outputs: readonly Tensor[];
  /** Gradient of each output (null where no gradient flows). */
  grads: readonly (Tensor | null)[];
  /** The op's attributes. */
  attrs: A;
}

/**
 * An op, declared once: its kind, how to compute it and its backward rule.
 * - `elementwise` ops give a WGSL expression; chains of them are fused into one kernel;
 * - `view` ops only change the layout (the builder computes it), they never dispatch;
 * - `kernel` ops dispatch hand-written kernels in `encode`.
 */
export interface OpDef<A = unknown> {
  /** Op name, used in kernel labels and error messages. */
  readonly name: string;
  /** How it runs: a fusable elementwise expression, a layout-only view, or hand-written kernels. */
  readonly kind: "elementwise" | "view" | "kernel";
  /**
   * Elementwise only: the WGSL expression of the output, given argument expressions and scalar
   * parameter expressions. Values have type `VT` (`f32` or `vec4<f32>`), the flat output index is
   * `IDX` (`u32` or `vec4<u32>`).
   */
  readonly expr?: (args: string[], scalars: string[]) => string;
  /** Elementwise only: run-time scalar parameters (uniforms, not compiled in). */
  readonly scalars?: (attrs: A) => number[];
  /** Elementwise only: WGSL helper functions the expression calls (deduplicated by text). */
  readonly helpers?: string;
  /** Kernel only: records the dispatches; outputs are fresh contiguous buffers. */
  readonly encode?: (ctx: EncodeContext<A>) => void;
  /** Input gradients from output gradients, written with other ops; absent = not differentiable. */
  readonly backward?: (ctx: GradContext<A>) => (Tensor | null)[];
}

/** One recorded op application. */
export interface Node {
  /** The op applied. */
  readonly op: OpDef<unknown>;
  /** The input tensors. */
  readonly inputs: readonly Tensor[];
  /** The op's attributes (op-specific). */
  readonly attrs: unknown;
  /** The tensors the op produces. */
  readonly outputs: Tensor[];
}

let nextId = 1;

/** An n-dimensional array on the GPU. Create with the ops in `engine/ops`, release with `dispose`. */
export class Tensor {
  /** Unique id, for messages and debugging. */
  readonly id: number = nextId++;
  /** GPU memory, once realized (shared with views). */
  storage: Storage | null = null;
  /** How this tensor is computed; null for data uploaded from the CPU. */
  node: Node | null;
  /** For views: the tensor whose storage this one aliases. */
  readonly base: Tensor | null;
  /** Whether gradients flow back to this tensor. */
  requiresGrad = false;
  /** Accumulated gradient (for tensors that require grad and have no node: parameters). */
  grad: Tensor | null = null;
  /** Parameter name (checkpoint key) for parameters. */
  name: string | null = null;
  /** True for trainable parameters. */
  isParameter = false;
  /** Set by `dispose`. */
  disposed = false;
  /** Kept tensors survive the end of the scope they were made in. */
  kept = false;

  /**
   * Low-level constructor used by the ops (`engine/ops`); registers the tensor in the current
   * scope. Build tensors with the ops instead.
   */
  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
    node: Node | null,
    base: Tensor | null = null,
    readonly strides: readonly number[] = contiguousStrides(shape),
    public offset: number = 0,
  ) {
    this.node = node;
    this.base = base;
    registerInScope(this);
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /** Number of axes. */
  get rank(): number {
    return this.shape.length;
  }

  /** True when elements are dense row-major (views may not be). */
  get contiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }

  /** True once the values exist in GPU memory. */
  get realized(): boolean {
    return (this.storage ?? this.base?.storage) != null;
  }

  /** Bytes of a dense buffer holding this tensor. */
  get bytes(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** Releases the GPU memory now (views keep the storage alive until they are disposed too). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage?.release();
    this.storage = null;
    this.node = null;
    this.grad?.dispose();
    this.grad = null;
  }

  /**
   * Re-points a realized dense tensor (not a view) at element `offset` of another storage holding
   * the same values, e.g. a parameter moved into an optimizer's arena. Views made earlier keep the
   * old storage.
   */
  rebind(storage: Storage, offset: number): void {
    if (this.base || !this.storage || !this.contiguous) {
      throw new Error(`rebind: ${this} must be a realized dense tensor, not a view`);
    }
    storage.retain();
    this.storage.release();
    this.storage = storage;
    this.offset = offset;
  }

  /** `using t = ...` support. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Short description for messages: `tensor#12 [2, 3] f32`. */
  toString(): string {
    return `tensor#${this.id}${this.name ? ` (${this.name})` : ""} ${
      fmtShape(this.shape)
    } ${this.dtype}`;
  }
}

/** Throws a clear error when a disposed tensor is used. */
export function checkAlive(op: string, t: Tensor): void {
  if (t.disposed) {
    throw new Error(
      `${op}: ${t} was disposed (or released at the end of a tidy scope); keep it with keep() ` +
        `or return it from the scope`,
    );
  }
}

// ---------------------------------------------------------------- scopes and grad mode

const scopes: Tensor[][] = [];
let gradEnabled = true;

function registerInScope(t: Tensor): void {
  scopes.at(-1)?.push(t);
}

/** Whether ops currently record gradients. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs `fn` without recording gradients (inference).
 *
 * @example
 * ```ts ignore
 * const y = noGrad(() => model.forward(x));
 * ```
 */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Marks tensors to outlive the scope they were made in. Returns its argument. */
export function keep<T extends Tensor>(t: T): T {
  t.kept = true;
  return t;
}

/**
 * Hands a kept tensor to the current scope, so it is disposed when that scope ends (used for a
 * gradient that a new accumulated gradient replaces). Without a scope it stays kept.
 */
export function releaseAtScopeEnd(t: Tensor): void {
  const s = scopes.at(-1);
  if (!s) return;
  t.kept = false;
  s.push(t);
}

/** Tensors found in a scope's return value (a tensor, an array or a plain object of them). */
export function collectTensors(v: unknown, out: Tensor[] = []): Tensor[] {
  if (v instanceof Tensor) out.push(v);
  else if (Array.isArray(v)) { for (const x of v) collectTensors(x, out); }
  else if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collectTensors(x, out);
  }
  return out;
}

/** Hook set by the scheduler (avoids an import cycle). */
export const scopeHooks: { realize: (ts: Tensor[]) => void } = {
  realize: () => {
    throw new Error("kino: scheduler not loaded");
  },
};

/**
 * Runs `fn` as one graph: every tensor it makes is recorded lazily, then the returned tensors
 * (and those marked with {@linkcode keep}, such as parameter gradients) are computed in one
 * schedule, which frees each intermediate after its last use; all other tensors made inside are
 * disposed. The returned tensors move to the enclosing scope.
 *
 * @example
 * ```ts ignore
 * const y = tidy(() => relu(add(matmul(x, w), b)));  // one schedule, intermediates freed
 * ```
 */
export function tidy<T>(fn: () => T): T {
  scopes.push([]);
  let made: Tensor[] = [];
  let result: T;
  try {
    result = fn();
  } catch (e) {
    made = scopes.pop()!;
    for (const t of made) if (!t.kept) t.dispose();
    throw e;
  }
  made = scopes.pop()!;
  const returned = new Set(collectTensors(result));
  const targets = made.filter((t) => returned.has(t) || t.kept);
  for (const t of returned) if (!made.includes(t)) targets.push(t);
  scopeHooks.realize(targets.filter((t) => !t.disposed));
  for (const t of made) {
    if (returned.has(t) || t.kept) continue;
    t.dispose();
  }
  for (const t of made) {
    if (returned.has(t)) {
      registerInScope(t);
      if (!t.requiresGrad) t.node = null;
    }
  }
  return result;
}
