/**
 * Optimizer: AdamW as one fused kernel per arena chunk, global grad-norm clipping on the GPU, and
 * an exponential moving average of the weights.
 *
 * State lives in *arenas*: the parameters, their gradients, and the Adam moments (m, v) are laid
 * out in one flat index space (each parameter a segment padded to 64 elements), cut into chunks
 * no larger than the storage-binding limit (`maxStorageBufferBindingSize`, or the lower
 * `rt.maxBinding`). A parameter larger than that gets a chunk of its own (one buffer, up to
 * `maxBufferSize`), which every kernel processes as several windows of at most the binding limit
 * (whole multiples of 64 elements), one dispatch each. At construction the parameters are
 * copied into the parameter arena and re-pointed there (`Tensor.rebind`), so the kernel updates
 * them in place (views of a parameter made before that keep the old storage). A step records,
 * into the open batch and without any CPU read-back:
 * 1. one buffer copy per parameter gathering its gradient into the gradient arena;
 * 2. if clipping (or norm tracking) is on: per chunk (window), a partial sum-of-squares dispatch,
 *    then one dispatch reducing them to the global norm (a GPU buffer);
 * 3. per chunk (window), one AdamW dispatch (clip + decoupled decay + moments + update, vec4),
 *    which reads the norm from the GPU buffer and updates the parameters where they live.
 *
 * @module
 */
import { realize, viewOf } from "./graph.ts";
import { type Binding, type Runtime, runtime } from "./runtime.ts";
import { fmtShape, type Shape } from "./shape.ts";
import { noGrad, Storage, Tensor } from "./tensor.ts";
import { zeroGrad } from "./autograd.ts";
import { copy } from "./ops/elementwise.ts";
import { read } from "./ops/movement.ts";
import { gridFor } from "./kernel.ts";
import { chunks, fitsBinding, rangeFits, windowOf } from "./window.ts";
import {
  adamwKernel,
  emaKernel,
  NORM_GROUPS,
  OPTIM_WG,
  sqNormFinalKernel,
  sqNormPartialKernel,
} from "../kernels/adamw.ts";

/** Every parameter segment starts at a multiple of this many elements (256 bytes). */
const ALIGN = 64;

// ---------------------------------------------------------------- arena layout

/** Where one parameter lives in the flat index space. */
interface Slot {
  param: Tensor;
  name: string;
  chunk: number;
  /** Offset in elements inside its chunk. */
  offset: number;
  size: number;
}

interface Layout {
  slots: Slot[];
  /** Elements of each chunk (multiples of {@linkcode ALIGN}). */
  chunks: number[];
}

/** Largest chunk (elements) the device allows: a power of two so the pool's size class is exact. */
function deviceChunkElements(rt: Runtime): number {
  const maxBuf = rt.info.limits.maxBufferSize ?? rt.maxBinding;
  const bytes = Math.min(rt.maxBinding, maxBuf);
  return 2 ** Math.floor(Math.log2(bytes)) / 4;
}

function layoutParams(
  who: string,
  params: readonly Tensor[],
  rt: Runtime,
  chunkElements?: number,
): Layout {
  const devMax = deviceChunkElements(rt);
  let cap = chunkElements ?? devMax;
  if (!(Number.isInteger(cap) && cap > 0)) {
    throw new RangeError(`${who}: chunkElements must be a positive integer, got ${cap}`);
  }
  cap = Math.min(devMax, Math.ceil(cap / ALIGN) * ALIGN);
  const seen = new Set<Tensor>();
  const names = new Set<string>();
  const slots: Slot[] = [];
  const chunks: number[] = [];
  params.forEach((p, i) => {
    if (seen.has(p)) throw new Error(`${who}: ${p} is listed twice`);
    seen.add(p);
    if (p.disposed) throw new Error(`${who}: ${p} was disposed`);
    if (p.dtype !== "f32") {
      throw new TypeError(`${who}: ${p} is ${p.dtype}; parameters must be f32 (master weights)`);
    }
    if (p.base || !p.contiguous) {
      throw new TypeError(`${who}: ${p} is a view; pass the dense parameter tensor itself`);
    }
    const name = p.name ?? `param${i}`;
    if (names.has(name)) throw new Error(`${who}: two parameters are named "${name}"`);
    names.add(name);
    const size = p.size;
    const padded = Math.max(ALIGN, Math.ceil(size / ALIGN) * ALIGN);
    // a parameter over the chunk size gets a chunk of its own, processed as windows
    if (padded * 4 > rt.maxBufferSize) {
      throw new RangeError(
        `${who}: ${p} needs ${padded * 4} bytes, over the device limit maxBufferSize = ` +
          `${rt.maxBufferSize}; split it`,
      );
    }
    let c = chunks.length - 1;
    if (c < 0 || chunks[c]! + padded > cap) {
      chunks.push(0);
      c++;
    }
    slots.push({ param: p, name, chunk: c, offset: chunks[c]!, size });
    chunks[c] = chunks[c]! + padded;
  });
  return { slots, chunks };
}

/** One f32 buffer per chunk, zero-filled, owned by an optimizer or an EMA. */
class Arena {
  /** Reference-counted storages of the chunks (parameters moved into an arena share them). */
  readonly storages: Storage[];
  constructor(private readonly rt: Runtime, readonly chunks: readonly number[], label: string) {
    this.storages = chunks.map((n) => {
      const b = rt.pool.acquire(n * 4, `${label} arena chunk`);
      rt.write(b, 0, new Float32Array(n));
      return new Storage(b, n * 4, (buf) => rt.pool.release(buf));
    });
  }
  /** The GPU buffer of each chunk. */
  get buffers(): GPUBuffer[] {
    return this.storages.map((s) => s.buffer);
  }
  /**
   * Binding of elements `[a, b)` of chunk `c` (default: the whole chunk, exactly its elements; the
   * pooled buffer may be larger). `a` and `b` are multiples of {@linkcode ALIGN}, as
   * {@linkcode windowsOf} cuts them.
   */
  bind(c: number, a = 0, b = this.chunks[c]!): Binding {
    return { buffer: this.storages[c]!.buffer, offset: a * 4, size: (b - a) * 4 };
  }
  /** Drops the arena's reference (chunks shared with parameters live on with them). */
  dispose(): void {
    for (const s of this.storages) s.release();
    this.storages.length = 0;
  }
}

/**
 * The element ranges of a chunk of `n` elements that one dispatch each processes: the whole chunk
 * when it fits one storage binding, else windows of whole multiples of {@linkcode ALIGN} elements
 * (256 bytes, so every window offset is aligned) of at most the binding limit.
 */
function windowsOf(rt: Runtime, n: number): [number, number][] {
  if (n * 4 <= rt.maxBinding) return [[0, n]];
  return chunks(n, (a, b) => (b - a) * 4 <= rt.maxBinding, "optimizer arena chunk", ALIGN);
}

/** Workgroups (= partial sums) of the norm dispatch over `n` elements. */
function normGroups(n: number): number {
  return Math.min(NORM_GROUPS, Math.ceil(n / 4 / OPTIM_WG));
}

/** A fresh, uninitialised dense f32 tensor (its content is written by the caller's copies). */
function emptyF32(rt: Runtime, shape: Shape): Tensor {
  const t = new Tensor(shape, "f32", null);
  const bytes = Math.max(4, t.size * 4);
  t.storage = new Storage(rt.pool.acquire(bytes, t.toString()), bytes, (b) => rt.pool.release(b));
  return t;
}

/** Realizes `ts` and returns them dense and f32 (copies for strided views or other dtypes). */
function denseRealized(ts: Tensor[]): { dense: Tensor[]; temps: Tensor[] } {
  const temps: Tensor[] = [];
  const dense = noGrad(() =>
    ts.map((t) => {
      if (t.dtype === "f32" && t.contiguous) return t;
      const c = copy(t);
      temps.push(c);
      return c;
    })
  );
  realize(dense);
  return { dense, temps };
}

/** Copies a dense realized tensor into an arena segment. */
function copyIn(rt: Runtime, t: Tensor, dst: GPUBuffer, offset: number): void {
  if (t.size === 0) return;
  const v = viewOf(t);
  rt.copy(v.buffer, v.offset * 4, dst, offset * 4, t.size * 4);
}

// ---------------------------------------------------------------- AdamW

/** Options of {@linkcode AdamW} (defaults are PyTorch's `torch.optim.AdamW`). */
export interface AdamWOptions {
  /** Learning rate; default 1e-3 (mutable later through {@linkcode AdamW.lr}). */
  lr?: number;
  /** `[β1, β2]`; default `[0.9, 0.999]`. */
  betas?: readonly [number, number];
  /** Denominator epsilon; default 1e-8 (Open-Sora's DiT uses 1e-15). */
  eps?: number;
  /** Decoupled weight decay (`p *= 1 − lr·wd` before the update); default 0.01. */
  weightDecay?: number;
  /**
   * Clip the global L2 norm of all gradients to this value (`clip_grad_norm_`) before the update;
   * default none.
   */
  maxGradNorm?: number;
  /** Compute the global grad norm (for {@linkcode AdamW.lastGradNorm}) even without clipping. */
  trackGradNorm?: boolean;
  /** Largest arena chunk in elements (default: the device's binding limit); for tests. */
  chunkElements?: number;
}

interface Shared {
  rt: Runtime;
  layout: Layout;
  params: Arena;
}
const shared = new WeakMap<AdamW, Shared>();

/**
 * AdamW (decoupled weight decay, PyTorch formula and order of operations) over a list of f32
 * parameters, with optional global grad-norm clipping computed on the GPU.
 *
 * A parameter whose `.grad` is null at a step is updated with a zero gradient (its moments decay
 * and it still moves), unlike PyTorch, which skips it; the step count is global.
 *
 * @example
 * ```ts ignore
 * const opt = new AdamW(model.parameters(), { lr: 3e-5, eps: 1e-15, weightDecay: 0, maxGradNorm: 1 });
 * tidy(() => { backward(loss(model, batch)); });
 * opt.step();         // records copies + dispatches; no wait
 * opt.zeroGrad();
 * console.log((await read(opt.lastGradNorm()!))[0]);
 * ```
 */
export class AdamW {
  /** Learning rate used by the next step (set it for schedules). */
  lr: number;
  /** Epsilon used by the next step. */
  eps: number;
  /** Weight decay used by the next step. */
  weightDecay: number;
  /** Clipping threshold used by the next step (undefined: no clipping). */
  maxGradNorm: number | undefined;
  /**
   * Adam coefficients `[β1, β2]` of the moment averages, each in [0, 1); default `[0.9, 0.999]`.
   */
  readonly betas: readonly [number, number];
  /** Number of steps taken (the bias-correction exponent of the last step). */
  stepCount = 0;

  private readonly rt: Runtime;
  private readonly layout: Layout;
  private readonly params: Arena;
  private readonly grads: Arena;
  private readonly m: Arena;
  private readonly v: Arena;
  private readonly normBuf: GPUBuffer;
  /** Partial sums of squares, one per workgroup of every window's norm dispatch, in order. */
  private partialBuf: GPUBuffer;
  /** Capacity of {@linkcode AdamW.partialBuf} in partial sums. */
  private partialCount: number;
  private readonly track: boolean;
  private normValid = false;
  private zeroBuf: GPUBuffer | null = null;
  private zeroBytes = 0;
  private disposed = false;

  /**
   * Packs `params` into GPU arenas (chunked, one dispatch each) and allocates the moments; the
   * parameters are rebound to the arena.
   */
  constructor(params: readonly Tensor[], opts: AdamWOptions = {}) {
    const rt = this.rt = runtime();
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
    this.maxGradNorm = opts.maxGradNorm;
    this.track = opts.trackGradNorm ?? false;
    const [b1, b2] = this.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) {
      throw new RangeError(`AdamW: betas must be in [0, 1), got [${b1}, ${b2}]`);
    }
    if (params.length === 0) throw new RangeError("AdamW: no parameters given");
    this.layout = layoutParams("AdamW", params, rt, opts.chunkElements);
    const ch = this.layout.chunks;
    this.params = new Arena(rt, ch, "AdamW params");
    this.grads = new Arena(rt, ch, "AdamW grads");
    this.m = new Arena(rt, ch, "AdamW exp_avg");
    this.v = new Arena(rt, ch, "AdamW exp_avg_sq");
    this.normBuf = rt.pool.acquire(4, "AdamW grad norm");
    rt.write(this.normBuf, 0, new Float32Array(1));
    this.partialCount = ch.reduce((a, n) => a + normGroups(n), 0);
    this.partialBuf = rt.pool.acquire(this.partialCount * 4, "AdamW norm partials");
    this.gatherParams();
    // the parameters now live in the arena: the fused kernel updates them in place
    for (const sl of this.layout.slots) sl.param.rebind(this.params.storages[sl.chunk]!, sl.offset);
    shared.set(this, { rt, layout: this.layout, params: this.params });
  }

  /** The parameters, in the order given. */
  get parameters(): Tensor[] {
    return this.layout.slots.map((s) => s.param);
  }

  /** Number of arena chunks (one AdamW dispatch each). */
  get chunkCount(): number {
    return this.layout.chunks.length;
  }

  /** Throws if the optimizer was disposed. */
  private check(op: string): void {
    if (this.disposed) throw new Error(`AdamW.${op}: the optimizer was disposed`);
  }

  /** Copies every parameter into the parameter arena (recorded in the open batch). */
  private gatherParams(): void {
    const ps = this.layout.slots.map((s) => s.param);
    for (const p of ps) {
      if (p.disposed) throw new Error(`AdamW: parameter ${p} was disposed`);
    }
    const { dense, temps } = denseRealized(ps);
    this.layout.slots.forEach((s, i) =>
      copyIn(this.rt, dense[i]!, this.params.buffers[s.chunk]!, s.offset)
    );
    for (const t of temps) t.dispose();
  }

  /** A zero-filled scratch buffer of at least `bytes` bytes (grown on demand, reused). */
  private zeros(bytes: number): GPUBuffer {
    if (!this.zeroBuf || this.zeroBytes < bytes) {
      if (this.zeroBuf) this.rt.pool.release(this.zeroBuf);
      this.zeroBuf = this.rt.pool.acquire(bytes, "AdamW zeros");
      this.zeroBytes = bytes;
      this.rt.write(this.zeroBuf, 0, new Uint8Array(bytes));
    }
    return this.zeroBuf;
  }

  /**
   * One optimisation step: realizes the pending gradients, gathers them into the gradient arena,
   * computes the global grad norm (when clipping or tracking) and runs the fused AdamW kernel per
   * chunk, updating the parameters in place. Everything is recorded into the open
   * batch; nothing waits for the GPU.
   */
  step(): void {
    this.check("step");
    const rt = this.rt;
    const slots = this.layout.slots;
    for (const s of slots) {
      const g = s.param.grad;
      if (g && g.shape.join() !== s.param.shape.join()) {
        throw new RangeError(
          `AdamW.step: gradient ${fmtShape(g.shape)} does not match ${s.param} ${
            fmtShape(s.param.shape)
          }`,
        );
      }
    }
    // 1. gradients and parameters into the arenas
    const withGrad = slots.filter((s) => s.param.grad);
    const { dense, temps } = denseRealized(withGrad.map((s) => s.param.grad!));
    withGrad.forEach((s, i) => copyIn(rt, dense[i]!, this.grads.buffers[s.chunk]!, s.offset));
    for (const s of slots) {
      if (s.param.grad || s.size === 0) continue;
      rt.copy(this.zeros(s.size * 4), 0, this.grads.buffers[s.chunk]!, s.offset * 4, s.size * 4);
    }
    for (const t of temps) t.dispose();

    this.stepCount++;
    const clip = this.maxGradNorm !== undefined;
    if (clip && !(this.maxGradNorm! > 0)) {
      throw new RangeError(`AdamW.step: maxGradNorm must be > 0, got ${this.maxGradNorm}`);
    }
    // the dispatch pieces: every chunk, or its windows when it is over one binding
    const pieces = this.layout.chunks.flatMap((n, c) =>
      windowsOf(rt, n).map(([a, b]) => [c, a, b] as const)
    );
    // 2. global grad norm: the partials of every window, packed in order, then their sum
    if (clip || this.track) {
      const groups = pieces.map(([, a, b]) => normGroups(b - a));
      const count = groups.reduce((x, y) => x + y, 0);
      if (count > this.partialCount) {
        rt.pool.release(this.partialBuf);
        this.partialBuf = rt.pool.acquire(count * 4, "AdamW norm partials");
        this.partialCount = count;
      }
      let first = 0;
      pieces.forEach(([c, a, b], p) => {
        const pw = windowOf(rt, this.partialBuf, "f32", first, first + groups[p]!);
        rt.dispatch(
          sqNormPartialKernel(),
          [this.grads.bind(c, a, b), pw.binding],
          [(b - a) / 4, first - pw.shift],
          [groups[p]!, 1, 1],
        );
        first += groups[p]!;
      });
      const ranges: [number, number][] = fitsBinding(rt, this.partialBuf)
        ? [[0, count]]
        : chunks(count, (a, b) => rangeFits(rt, "f32", a, b), "AdamW norm");
      ranges.forEach(([a, b], k) => {
        const w = windowOf(rt, this.partialBuf, "f32", a, b, "AdamW norm");
        const mode = (k > 0 ? 1 : 0) | (k === ranges.length - 1 ? 2 : 0);
        rt.dispatch(
          sqNormFinalKernel(),
          [w.binding, this.normBuf],
          [b - a, a - w.shift, mode],
          [1, 1, 1],
        );
      });
      this.normValid = true;
    } else this.normValid = false;

    // 3. fused update, bias corrections in float64
    const [b1, b2] = this.betas;
    const s = this.stepCount;
    const bc1 = 1 - b1 ** s;
    const bc2 = 1 - b2 ** s;
    const words = [
      0,
      clip ? 1 : 0,
      ...f32Words([
        1 - this.lr * this.weightDecay,
        1 - b1,
        b2,
        1 - b2,
        this.lr / bc1,
        Math.sqrt(bc2),
        this.eps,
        this.maxGradNorm ?? 0,
      ]),
    ];
    const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
    for (const [c, a, b] of pieces) {
      words[0] = (b - a) / 4;
      const [g, p, m, v] = [this.grads, this.params, this.m, this.v].map((r) => r.bind(c, a, b));
      rt.dispatch(
        adamwKernel(),
        [g!, this.normBuf, p!, m!, v!],
        words,
        gridFor(words[0], OPTIM_WG, maxG),
      );
    }
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    zeroGrad(this.layout.slots.map((s) => s.param));
  }

  /**
   * The global gradient L2 norm of the last step (before clipping) as a fresh scalar tensor (a
   * GPU copy; read it with `read`), or null when the last step computed none (no clipping and no
   * `trackGradNorm`, or no step yet).
   */
  lastGradNorm(): Tensor | null {
    this.check("lastGradNorm");
    if (!this.normValid) return null;
    const t = emptyF32(this.rt, []);
    this.rt.copy(this.normBuf, 0, viewOf(t).buffer, 0, 4);
    return t;
  }

  /**
   * The optimizer state as named f32 tensors (fresh copies): `<param>.exp_avg`,
   * `<param>.exp_avg_sq` (parameter shapes) and `step` (a scalar).
   */
  stateDict(): Record<string, Tensor> {
    this.check("stateDict");
    const out: Record<string, Tensor> = {};
    for (const s of this.layout.slots) {
      for (const [key, arena] of [["exp_avg", this.m], ["exp_avg_sq", this.v]] as const) {
        const t = emptyF32(this.rt, s.param.shape);
        if (s.size) {
          this.rt.copy(arena.buffers[s.chunk]!, s.offset * 4, viewOf(t).buffer, 0, s.size * 4);
        }
        out[`${s.name}.${key}`] = t;
      }
    }
    const st = emptyF32(this.rt, []);
    this.rt.write(viewOf(st).buffer, 0, new Float32Array([this.stepCount]));
    out.step = st;
    return out;
  }

  /** Restores a state from {@linkcode stateDict} (reads the `step` scalar back). */
  async loadStateDict(state: Readonly<Record<string, Tensor>>): Promise<void> {
    this.check("loadStateDict");
    const need = (k: string, shape: Shape) => {
      const t = state[k];
      if (!t) throw new Error(`AdamW.loadStateDict: missing "${k}"`);
      if (t.shape.join() !== shape.join()) {
        throw new RangeError(
          `AdamW.loadStateDict: "${k}" has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`,
        );
      }
      return t;
    };
    const step = state.step;
    if (!step || step.size !== 1) throw new Error(`AdamW.loadStateDict: missing scalar "step"`);
    const items: [Tensor, GPUBuffer, number][] = [];
    for (const s of this.layout.slots) {
      items.push([need(`${s.name}.exp_avg`, s.param.shape), this.m.buffers[s.chunk]!, s.offset]);
      items.push([need(`${s.name}.exp_avg_sq`, s.param.shape), this.v.buffers[s.chunk]!, s.offset]);
    }
    const { dense, temps } = denseRealized(items.map((i) => i[0]));
    items.forEach(([, buf, off], i) => copyIn(this.rt, dense[i]!, buf, off));
    for (const t of temps) t.dispose();
    const n = (await read(step))[0]!;
    if (!(Number.isInteger(n) && n >= 0)) {
      throw new RangeError(`AdamW.loadStateDict: step must be an integer >= 0, got ${n}`);
    }
    this.stepCount = n;
    this.normValid = false;
  }

  /** Frees the arenas (the parameters stay). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    shared.delete(this);
    for (const a of [this.params, this.grads, this.m, this.v]) a.dispose();
    this.rt.pool.release(this.normBuf);
    this.rt.pool.release(this.partialBuf);
    if (this.zeroBuf) this.rt.pool.release(this.zeroBuf);
  }

  /** Same as {@linkcode AdamW.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function f32Words(xs: number[]): number[] {
  return [...new Uint32Array(new Float32Array(xs).buffer)];
}

// ---------------------------------------------------------------- EMA

/** Options of {@linkcode EMA}. */
export interface EMAOptions {
  /** `ema ← decay·ema + (1 − decay)·param`. */
  decay: number;
  /** Largest arena chunk in elements (standalone EMA only; default: the device limit). */
  chunkElements?: number;
}

/**
 * Exponential moving average of parameters, one dispatch per arena chunk. Built from an
 * {@linkcode AdamW}, it reads the optimizer's parameter arena (call {@linkcode EMA.update} right
 * after `step()`); built from a list of parameters, it first copies them into its own arena.
 * Starts from the current parameter values.
 */
export class EMA {
  /** Decay used by the next update. */
  decay: number;
  private readonly rt: Runtime;
  private readonly layout: Layout;
  private readonly ema: Arena;
  private readonly src: Arena;
  private readonly ownsSrc: boolean;
  private readonly opt: AdamW | null;
  private disposed = false;

  /**
   * Averages the parameters of an optimizer (sharing its arena) or of a list of tensors (copied
   * into an own arena); starts from their current values.
   */
  constructor(source: AdamW | readonly Tensor[], opts: EMAOptions) {
    if (!(opts.decay >= 0 && opts.decay <= 1)) {
      throw new RangeError(`EMA: decay must be in [0, 1], got ${opts.decay}`);
    }
    this.decay = opts.decay;
    if (source instanceof AdamW) {
      const s = shared.get(source);
      if (!s) throw new Error("EMA: the optimizer was disposed");
      this.rt = s.rt;
      this.layout = s.layout;
      this.src = s.params;
      this.ownsSrc = false;
      this.opt = source;
    } else {
      this.rt = runtime();
      if (source.length === 0) throw new RangeError("EMA: no parameters given");
      this.layout = layoutParams("EMA", source, this.rt, opts.chunkElements);
      this.src = new Arena(this.rt, this.layout.chunks, "EMA params");
      this.ownsSrc = true;
      this.opt = null;
    }
    this.ema = new Arena(this.rt, this.layout.chunks, "EMA");
    this.gather(this.ema);
  }

  /** Copies the current parameter values into `dst` (recorded in the open batch). */
  private gather(dst: Arena): void {
    const { dense, temps } = denseRealized(this.layout.slots.map((s) => s.param));
    this.layout.slots.forEach((s, i) =>
      copyIn(this.rt, dense[i]!, dst.buffers[s.chunk]!, s.offset)
    );
    for (const t of temps) t.dispose();
  }

  /** Records one EMA update from the current parameters (no wait). */
  update(): void {
    if (this.disposed) throw new Error("EMA.update: the EMA was disposed");
    if (this.opt && !shared.has(this.opt)) {
      throw new Error("EMA.update: the optimizer was disposed");
    }
    if (this.ownsSrc) this.gather(this.src);
    const maxG = this.rt.info.limits.maxComputeWorkgroupsPerDimension;
    const [d, w] = f32Words([this.decay, 1 - this.decay]);
    this.layout.chunks.forEach((n, c) => {
      for (const [a, b] of windowsOf(this.rt, n)) {
        this.rt.dispatch(
          emaKernel(),
          [this.src.bind(c, a, b), this.ema.bind(c, a, b)],
          [(b - a) / 4, d!, w!],
          gridFor((b - a) / 4, OPTIM_WG, maxG),
        );
      }
    });
  }

  /** The averaged weights as named f32 tensors (fresh copies, parameter names and shapes). */
  stateDict(): Record<string, Tensor> {
    if (this.disposed) throw new Error("EMA.stateDict: the EMA was disposed");
    const out: Record<string, Tensor> = {};
    for (const s of this.layout.slots) {
      const t = emptyF32(this.rt, s.param.shape);
      if (s.size) {
        this.rt.copy(this.ema.buffers[s.chunk]!, s.offset * 4, viewOf(t).buffer, 0, s.size * 4);
      }
      out[s.name] = t;
    }
    return out;
  }

  /** Replaces the averaged weights by named tensors (as from {@linkcode stateDict}). */
  loadStateDict(state: Readonly<Record<string, Tensor>>): void {
    const items = this.layout.slots.map((s) => {
      const t = state[s.name];
      if (!t) throw new Error(`EMA.loadStateDict: missing "${s.name}"`);
      if (t.shape.join() !== s.param.shape.join()) {
        throw new RangeError(
          `EMA.loadStateDict: "${s.name}" has shape ${fmtShape(t.shape)}, expected ${
            fmtShape(s.param.shape)
          }`,
        );
      }
      return t;
    });
    const { dense, temps } = denseRealized(items);
    this.layout.slots.forEach((s, i) =>
      copyIn(this.rt, dense[i]!, this.ema.buffers[s.chunk]!, s.offset)
    );
    for (const t of temps) t.dispose();
  }

  /** Writes the averaged weights into the parameters (e.g. for evaluation). */
  copyToParams(): void {
    for (const s of this.layout.slots) {
      if (!s.size) continue;
      const v = viewOf(s.param);
      this.rt.copy(this.ema.buffers[s.chunk]!, s.offset * 4, v.buffer, v.offset * 4, s.size * 4);
    }
  }

  /** Frees the EMA arenas. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ema.dispose();
    if (this.ownsSrc) this.src.dispose();
  }
}
