/**
 * Recording ops and executing them: {@linkcode apply} records a node, {@linkcode realize} turns
 * the pending graph into dispatches.
 *
 * Scheduling, in four steps:
 * 1. collect the unrealized tensors the targets depend on (post-order, iterative);
 * 2. decide which of them get a buffer: targets, kernel-op outputs, and elementwise results that
 *    are used by more than one node, by a kernel op, or through a view; every other elementwise
 *    result is inlined into its single consumer, so a chain becomes one fused kernel;
 * 3. split fused groups that exceed the leaf/scalar limits of one kernel;
 * 4. encode in order, allocating each output from the pool and returning every intermediate to the
 *    pool right after its last use (liveness), so peak memory stays far below the sum of all
 *    intermediates. Dispatches go into the runtime's open batch; nothing is read back.
 *
 * @module
 */
import { type DType, DTYPE_BYTES } from "./dtype.ts";
import { fmtShape, isContiguous, numel, type Shape } from "./shape.ts";
import {
  checkAlive,
  isGradEnabled,
  type Node,
  type OpDef,
  scopeHooks,
  Storage,
  Tensor,
  type TensorView,
} from "./tensor.ts";
import { type Runtime, runtime } from "./runtime.ts";
import {
  coalesce,
  EW_MAX_LEAVES,
  EW_MAX_SCALARS,
  EW_OUT,
  EW_RANK,
  EW_WORKGROUP,
  fusedKernel,
  type FusedLeaf,
} from "../kernels/elementwise.ts";
import { gridFor } from "./kernel.ts";
import {
  boxes,
  type BoxOperand,
  boxSpan,
  chunks,
  fitsBinding,
  rangeFits,
  spanOf,
  type Window,
  windowOf,
} from "./window.ts";

/** Output description of an op application. */
export interface OutSpec {
  shape: Shape;
  dtype: DType;
}

/** Records an op application and returns its output tensors (nothing runs yet). */
export function apply<A>(op: OpDef<A>, inputs: Tensor[], attrs: A, outs: OutSpec[]): Tensor[] {
  for (const t of inputs) checkAlive(op.name, t);
  const node: Node = { op: op as OpDef<unknown>, inputs, attrs, outputs: [] };
  const grad = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  for (const o of outs) {
    const t = new Tensor(o.shape, o.dtype, node);
    t.requiresGrad = grad;
    node.outputs.push(t);
  }
  return node.outputs;
}

/** Records a single-output op. */
export function apply1<A>(op: OpDef<A>, inputs: Tensor[], attrs: A, out: OutSpec): Tensor {
  return apply(op, inputs, attrs, [out])[0]!;
}

/** Records a view: a tensor aliasing `input`'s storage with another layout (no copy). */
export function applyView<A>(
  op: OpDef<A>,
  input: Tensor,
  attrs: A,
  shape: Shape,
  strides: readonly number[],
  offset: number,
): Tensor {
  checkAlive(op.name, input);
  const node: Node = { op: op as OpDef<unknown>, inputs: [input], attrs, outputs: [] };
  const base = input.base ?? input;
  const t = new Tensor(shape, input.dtype, node, base, strides, offset);
  t.requiresGrad = isGradEnabled() && input.requiresGrad;
  // the input view may hold the storage after its base was disposed
  const storage = input.storage ?? base.storage;
  if (storage) t.storage = storage.retain();
  node.outputs.push(t);
  return t;
}

/**
 * Creates a realized tensor from CPU data (uploaded into the open batch's queue order). `name`
 * (a parameter's checkpoint key) is set before the upload, so a tensor over the device's
 * `maxBufferSize` is refused naming it.
 */
export function fromData(
  data: Float32Array | Int32Array | Uint32Array | Uint16Array,
  shape: Shape,
  dtype: DType,
  name?: string,
): Tensor {
  const want = {
    f32: Float32Array,
    f16: Uint16Array,
    bf16: Uint16Array,
    i32: Int32Array,
    u32: Uint32Array,
  }[dtype];
  if (!want) {
    throw new TypeError(`tensor: unsupported dtype ${dtype} (supported: f32, f16, bf16, i32, u32)`);
  }
  if (!(data instanceof want)) {
    throw new TypeError(
      `tensor: ${data.constructor.name} given for dtype ${dtype} (expected ${want.name})`,
    );
  }
  const n = numel(shape);
  if (data.length !== n) {
    throw new RangeError(
      `tensor: ${data.length} values given for shape ${fmtShape(shape)} (${n} elements)`,
    );
  }
  const rt = runtime();
  const t = new Tensor(shape, dtype, null);
  if (name !== undefined) t.name = name;
  t.storage = allocate(rt, t);
  if (data.byteLength > 0) rt.write(t.storage.buffer, 0, data);
  return t;
}

function allocate(rt: Runtime, t: Tensor): Storage {
  const bytes = Math.max(4, Math.ceil((t.size * DTYPE_BYTES[t.dtype]) / 4) * 4);
  if (bytes > rt.maxBufferSize) {
    throw new RangeError(
      `${t} needs ${bytes} bytes, over the device limit maxBufferSize = ${rt.maxBufferSize} ` +
        `(split the work into smaller pieces, or store it as f16/bf16)`,
    );
  }
  const buf = rt.pool.acquire(bytes, t.toString());
  return new Storage(buf, bytes, (b) => rt.pool.release(b));
}

function rootOf(t: Tensor): Tensor {
  return t.base ?? t;
}

/** The kernel-side view of a realized tensor. */
export function viewOf(t: Tensor): TensorView {
  const s = t.storage ?? t.base?.storage;
  if (!s) throw new Error(`internal: ${t} is not realized`);
  return { buffer: s.buffer, dtype: t.dtype, shape: t.shape, strides: t.strides, offset: t.offset };
}

interface Plan {
  order: Tensor[]; // unrealized roots in dependency order
  mat: Set<Tensor>; // roots that get a buffer
  consumers: Map<Tensor, Set<Node>>;
  viaView: Set<Tensor>;
}

function collect(targets: Tensor[]): Plan {
  const order: Tensor[] = [];
  const state = new Map<Tensor, number>(); // 1 = visiting, 2 = done
  const consumers = new Map<Tensor, Set<Node>>();
  const viaView = new Set<Tensor>();
  const stack: Tensor[] = [];
  for (const t of targets) {
    checkAlive("realize", t);
    stack.push(rootOf(t));
  }
  while (stack.length) {
    const r = stack[stack.length - 1]!;
    const st = state.get(r);
    if (st === 2 || r.storage) {
      stack.pop();
      continue;
    }
    const node = r.node;
    if (!node) {
      checkAlive("realize", r);
      throw new Error(`realize: ${r} has neither data nor a recorded op`);
    }
    if (st === 1) {
      state.set(r, 2);
      stack.pop();
      order.push(r);
      continue;
    }
    state.set(r, 1);
    for (const inp of node.inputs) {
      if (inp.disposed) {
        throw new Error(
          `realize: ${r} (op ${node.op.name}) needs ${inp}, which was disposed; keep() it or ` +
            `compute within the scope that made it`,
        );
      }
      const ir = rootOf(inp);
      if (ir.storage || inp.storage) continue; // a view may hold the storage its base released
      let set = consumers.get(ir);
      if (!set) consumers.set(ir, set = new Set());
      set.add(node);
      if (inp !== ir) viaView.add(ir);
      if (!state.has(ir)) stack.push(ir);
    }
  }
  return { order, mat: new Set(), consumers, viaView };
}

/** Inputs of an elementwise node that are inlined (not materialized) in the plan. */
function inlined(plan: Plan, node: Node): Tensor[] {
  const out: Tensor[] = [];
  for (const inp of node.inputs) {
    if (inp === rootOf(inp) && !inp.storage && !plan.mat.has(inp) && !out.includes(inp)) {
      out.push(inp);
    }
  }
  return out;
}

interface Group {
  nodes: Node[]; // topological
  leaves: Tensor[];
  nScalars: number;
}

function buildGroup(plan: Plan, root: Tensor): Group {
  const nodes: Node[] = [];
  const leaves: Tensor[] = [];
  let nScalars = 0;
  const seen = new Set<Node>();
  const visit = (node: Node) => {
    if (seen.has(node)) return;
    seen.add(node);
    for (const inp of node.inputs) {
      if (inp === rootOf(inp) && !inp.storage && !plan.mat.has(inp)) visit(inp.node!);
      else if (!leaves.includes(inp)) leaves.push(inp);
    }
    nScalars += node.op.scalars?.(node.attrs).length ?? 0;
    nodes.push(node);
  };
  visit(root.node!);
  return { nodes, leaves, nScalars };
}

function plan(targets: Tensor[]): { plan: Plan; groups: Map<Tensor, Group> } {
  const p = collect(targets);
  const targetRoots = new Set(targets.map(rootOf));
  for (const r of p.order) {
    const node = r.node!;
    const cons = p.consumers.get(r);
    const single = cons && cons.size === 1 ? [...cons][0]! : null;
    if (
      targetRoots.has(r) || node.op.kind !== "elementwise" || p.viaView.has(r) || !single ||
      single.op.kind !== "elementwise"
    ) p.mat.add(r);
  }
  // split fused groups that do not fit one kernel (consumers first)
  const groups = new Map<Tensor, Group>();
  const work = p.order.filter((r) => p.mat.has(r) && r.node!.op.kind === "elementwise").reverse();
  const leafCount = (r: Tensor) => buildGroup(p, r).leaves.length;
  while (work.length) {
    const r = work.shift()!;
    let g = buildGroup(p, r);
    while (g.leaves.length > EW_MAX_LEAVES || g.nScalars > EW_MAX_SCALARS) {
      // materialize the inlined input whose subtree is largest
      let best: Tensor | null = null;
      let bestN = -1;
      for (const node of g.nodes) {
        for (const inp of inlined(p, node)) {
          const n = leafCount(inp) + (buildGroup(p, inp).nScalars > 0 ? 1 : 0);
          if (n > bestN) [best, bestN] = [inp, n];
        }
      }
      if (!best) {
        throw new Error(
          `internal: elementwise op ${r.node!.op.name} alone exceeds the fused-kernel limits`,
        );
      }
      p.mat.add(best);
      work.push(best);
      work.sort((a, b) => p.order.indexOf(b) - p.order.indexOf(a));
      g = buildGroup(p, r);
    }
    groups.set(r, g);
  }
  return { plan: p, groups };
}

/**
 * Computes the given tensors: records the dispatches of everything they depend on into the open
 * batch (no read-back, no wait). Intermediates that are not targets are freed after their last
 * use and recomputed if needed again.
 */
export function realize(targets: Tensor[]): void {
  const todo = targets.filter((t) => !t.realized);
  if (todo.length === 0) {
    attachViews(targets);
    return;
  }
  const rt = runtime();
  const { plan: p, groups } = plan(todo);
  const targetRoots = new Set(targets.map(rootOf));
  // remaining uses of each materialized root by later dispatches
  const uses = new Map<Tensor, number>();
  const useOf = (t: Tensor) => {
    const r = rootOf(t);
    if (p.mat.has(r)) uses.set(r, (uses.get(r) ?? 0) + 1);
  };
  const dispatchInputs = new Map<Node, Tensor[]>();
  for (const r of p.order) {
    if (!p.mat.has(r)) continue;
    const node = r.node!;
    if (dispatchInputs.has(node)) continue;
    const ins = node.op.kind === "elementwise" ? groups.get(r)!.leaves : [...node.inputs];
    const distinct = [...new Set(ins.map(rootOf))];
    dispatchInputs.set(node, distinct);
    distinct.forEach(useOf);
  }
  const encoded = new Set<Node>();
  for (const r of p.order) {
    if (!p.mat.has(r)) continue;
    const node = r.node!;
    if (encoded.has(node)) continue;
    encoded.add(node);
    for (const o of node.outputs) if (!o.storage) o.storage = allocate(rt, o);
    if (node.op.kind === "elementwise") encodeFused(rt, r, groups.get(r)!);
    else if (node.op.kind === "kernel") {
      node.op.encode!({
        rt,
        inputs: node.inputs.map(viewOf),
        outputs: node.outputs.map(viewOf),
        attrs: node.attrs,
      });
    } else throw new Error(`internal: view op ${node.op.name} scheduled as a dispatch`);
    for (const o of node.outputs) {
      if (!targetRoots.has(o) && !(uses.get(o)! > 0)) {
        o.storage?.release();
        o.storage = null;
      }
    }
    for (const ir of dispatchInputs.get(node)!) {
      const left = (uses.get(ir) ?? 0) - 1;
      uses.set(ir, left);
      if (left === 0 && !targetRoots.has(ir)) {
        ir.storage?.release();
        ir.storage = null;
      }
    }
  }
  attachViews(targets);
}

function attachViews(targets: Tensor[]): void {
  for (const t of targets) {
    if (t.base && !t.storage && t.base.storage) t.storage = t.base.storage.retain();
  }
}

function encodeFused(rt: Runtime, root: Tensor, g: Group): void {
  const n = root.size;
  const index = new Map<Tensor, string>();
  g.leaves.forEach((l, i) => index.set(l, `l${i}`));
  const stmts: { expr: string }[] = [];
  const helpers: string[] = [];
  const scalars: number[] = [];
  const labels: string[] = [];
  for (const node of g.nodes) {
    const args = node.inputs.map((t) => index.get(t)!);
    const sv = node.op.scalars?.(node.attrs) ?? [];
    const sNames = sv.map((_, k) => `s${scalars.length + k}`);
    scalars.push(...sv);
    stmts.push({ expr: node.op.expr!(args, sNames) });
    index.set(node.outputs[0]!, `v${stmts.length - 1}`);
    if (node.op.helpers && !helpers.includes(node.op.helpers)) helpers.push(node.op.helpers);
    labels.push(node.op.name);
  }
  const views = g.leaves.map(viewOf);
  const direct = views.map((v) => isContiguous(v.shape, v.strides));
  const vec4 = n % 4 === 0 &&
    views.every((v, i) => direct[i] && v.dtype === "f32" && v.offset % 4 === 0);
  const co = coalesce(root.shape, views.map((v) => v.strides));
  if (!co) {
    throw new Error(
      `elementwise ${labels.join("+")}: ${fmtShape(root.shape)} with these layouts needs more ` +
        `than ${EW_RANK} axes; make an input contiguous first`,
    );
  }
  const leaves: FusedLeaf[] = views.map((v, i) => ({ dtype: v.dtype, strided: !direct[i] }));
  const spec = fusedKernel({
    leaves,
    stmts,
    helpers,
    nScalars: scalars.length,
    vec4,
    label: labels.join("_"),
  });
  const scalarWords = [...new Uint32Array(new Float32Array(scalars).buffer)];
  const out = viewOf(root);
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  const dispatch = (a: number, b: number, ws: Window[], ow: Window) => {
    // vec4: every leaf is direct, so the piece's start folds into the (non-negative) offsets;
    // scalar: coordinates need the global position, offsets may wrap below zero (u32).
    const base = vec4 ? 0 : a;
    const fold = vec4 ? a : 0;
    const words: number[] = [b - a, base, ...co.shape, (out.offset + fold - ow.shift) >>> 0];
    views.forEach((v, i) => {
      words.push((v.offset + fold - ws[i]!.shift) >>> 0);
      if (!direct[i]) words.push(...co.strides[i]!);
    });
    words.push(...scalarWords);
    const count = b - a;
    rt.dispatch(
      spec,
      [...ws.map((w) => w.binding), ow.binding],
      words,
      gridFor(vec4 ? count / 4 : count, EW_WORKGROUP, maxG),
    );
  };
  const whole = (buf: GPUBuffer): Window => ({ binding: buf, shift: 0 });
  if ([...views.map((v) => v.buffer), out.buffer].every((b) => fitsBinding(rt, b))) {
    dispatch(0, n, views.map((v) => whole(v.buffer)), whole(out.buffer));
    return;
  }
  const what = `elementwise ${labels.join("+")} ${fmtShape(root.shape)}`;
  // A strided (e.g. transposed) leaf: boxes of the index space tile it (a flat range would need
  // single rows), when the box sizes fit the parameter block.
  const leafWords = views.reduce((k, _, i) => k + (direct[i] ? 1 : 1 + EW_RANK), 0);
  if (direct.some((d) => !d) && EW_OUT + 1 + EW_RANK + leafWords + scalarWords.length <= 64) {
    encodeBoxes(rt, { co, views, direct, out, scalarWords, stmts, helpers, labels, what });
    return;
  }
  // Windows: flat output ranges whose every leaf range fits one binding (multiples of 4
  // positions keep vec4 pieces whole).
  const ranges = (a: number, b: number) =>
    views.map((v, i) => {
      if (direct[i]) return [v.offset + a, v.offset + b] as const;
      const [lo, hi] = spanOf(co.shape, co.strides[i]!, a, b);
      return [v.offset + lo, v.offset + hi] as const;
    });
  const fits = (a: number, b: number) =>
    rangeFits(rt, out.dtype, out.offset + a, out.offset + b) &&
    ranges(a, b).every(([lo, hi], i) => rangeFits(rt, views[i]!.dtype, lo, hi));
  for (const [a, b] of chunks(n, fits, what, vec4 ? 4 : 1)) {
    const ws = ranges(a, b).map(([lo, hi], i) =>
      windowOf(rt, views[i]!.buffer, views[i]!.dtype, lo, hi, what)
    );
    const ow = windowOf(rt, out.buffer, out.dtype, out.offset + a, out.offset + b, what);
    dispatch(a, b, ws, ow);
  }
}

/** The fused group of {@linkcode encodeFused}, as {@linkcode encodeBoxes} needs it. */
interface BoxJob {
  co: { shape: number[]; strides: number[][] };
  views: TensorView[];
  direct: boolean[];
  out: TensorView;
  scalarWords: number[];
  stmts: { expr: string }[];
  helpers: string[];
  labels: string[];
  what: string;
}

/** One dispatch per box of the index space whose every operand window fits (box-mode kernel). */
function encodeBoxes(rt: Runtime, j: BoxJob): void {
  const { co, views, direct, out } = j;
  const dense: number[] = [];
  for (let d = co.shape.length - 1, s = 1; d >= 0; d--) {
    dense[d] = s;
    s *= co.shape[d]!;
  }
  const ops: BoxOperand[] = [
    ...views.map((v, i) => ({
      buffer: v.buffer,
      dtype: v.dtype,
      offset: v.offset,
      strides: direct[i] ? dense : co.strides[i]!,
    })),
    { buffer: out.buffer, dtype: out.dtype, offset: out.offset, strides: dense },
  ];
  const spec = fusedKernel({
    leaves: views.map((v, i) => ({ dtype: v.dtype, strided: !direct[i] })),
    stmts: j.stmts,
    helpers: j.helpers,
    nScalars: j.scalarWords.length,
    vec4: false,
    box: true,
    label: j.labels.join("_"),
  });
  const maxG = rt.info.limits.maxComputeWorkgroupsPerDimension;
  for (const b of boxes(rt, co.shape, ops)) {
    const ws = ops.map((o) => {
      const [lo, hi] = boxSpan(o, b)!;
      return windowOf(rt, o.buffer, o.dtype, lo, hi, j.what);
    });
    const ow = ws.pop()!;
    const count = b.size.reduce((x, y) => x * y, 1);
    const base = b.start.reduce((acc, c, d) => acc + c * dense[d]!, 0);
    const words: number[] = [count, base, ...co.shape, (out.offset - ow.shift) >>> 0, ...b.size];
    views.forEach((v, i) => {
      words.push((v.offset - ws[i]!.shift) >>> 0);
      if (!direct[i]) words.push(...co.strides[i]!);
    });
    words.push(...j.scalarWords);
    rt.dispatch(
      spec,
      [...ws.map((w) => w.binding), ow.binding],
      words,
      gridFor(count, EW_WORKGROUP, maxG),
    );
  }
}

scopeHooks.realize = realize;
