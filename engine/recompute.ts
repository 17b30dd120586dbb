/**
 * Activation recomputation ("gradient checkpointing"): run a block of ops without keeping its
 * activations for the backward, and run it again, with gradients, when the backward needs them.
 *
 * {@linkcode recompute} records the block as **one kernel op** (`recompute`) whose outputs are the
 * block's outputs. When the scheduler encodes that op, it runs the block under `noGrad` in a nested
 * `tidy` on the op's input buffers: the block's intermediates live only inside that nested schedule
 * and are freed before the outer schedule goes on. The op's backward rule records a second kernel
 * op (`recompute_backward`) that takes the block inputs and the output gradients; when it is
 * encoded (i.e. exactly when the outer backward reaches the block), it re-runs the block with
 * gradients, back-propagates the output gradients through it in another nested schedule, and
 * writes the gradients of the inputs and of the block's parameters into its outputs. The outer
 * autograd then accumulates them like any other op's gradients.
 *
 * So the outer graph keeps only block boundaries (inputs and outputs), and at most one block's
 * activations exist at a time, at the price of a second forward of every block (the reference's
 * `torch.utils.checkpoint`, `opensora/acceleration/checkpoint.py`).
 *
 * Rules:
 * - every tensor the block reads must be one of `inputs`, or an already realized tensor such as a
 *   parameter (checked when recorded);
 * - parameters the block reads are found by tracing the block once at record time (shapes only,
 *   nothing runs), or given explicitly;
 * - the block must be deterministic (no random ops with changing offsets), as the recomputation
 *   must reproduce the first run;
 * - the backward op must be realized with gradients enabled (not inside `noGrad`), since it
 *   records the block's gradient graph when it runs.
 *
 * Gradients equal those of the plain graph up to float rounding: the block's own gradients are
 * the same ops; a tensor used by several blocks (e.g. the conditioning vector) accumulates its
 * per-block gradients in a different association order.
 *
 * @module
 */
import { apply, viewOf } from "./graph.ts";
import { backward } from "./autograd.ts";
import {
  isGradEnabled,
  noGrad,
  type OpDef,
  Storage,
  Tensor,
  type TensorView,
  tidy,
} from "./tensor.ts";
import { runtime } from "./runtime.ts";
import { add, mul, zeros } from "./ops/elementwise.ts";
import { contiguous } from "./ops/movement.ts";
import { sum } from "./ops/reduce.ts";

/** A block of ops: inputs in, one or several f32 outputs out. */
export type RecomputeFn = (...inputs: Tensor[]) => Tensor | Tensor[];

interface Attrs {
  fn: RecomputeFn;
  /** Number of activation inputs (the rest of the op's inputs are parameters). */
  nIn: number;
  params: Tensor[];
  label: string;
  /** Backward op only: which forward inputs (activations, then parameters) need a gradient. */
  need?: boolean[];
}

const toList = (y: Tensor | Tensor[]): Tensor[] => (Array.isArray(y) ? y : [y]);

/** A tensor over a buffer the outer schedule owns (releasing it does nothing). */
function wrap(v: TensorView): Tensor {
  const t = new Tensor(v.shape, v.dtype, null, null, v.strides, v.offset);
  t.storage = new Storage(v.buffer, v.buffer.size, () => {});
  return t;
}

/** Copies a realized dense f32 tensor into an op output (a fresh contiguous buffer). */
function copyInto(y: Tensor, out: TensorView): void {
  if (y.size === 0) return;
  const v = viewOf(y);
  runtime().copy(v.buffer, v.offset * 4, out.buffer, out.offset * 4, y.size * 4);
}

const RECOMPUTE: OpDef<Attrs> = {
  name: "recompute",
  kind: "kernel",
  encode: ({ inputs, outputs, attrs }) => {
    const ys = tidy(() =>
      noGrad(() => toList(attrs.fn(...inputs.slice(0, attrs.nIn).map(wrap))).map(contiguous))
    );
    ys.forEach((y, i) => {
      copyInto(y, outputs[i]!);
      y.dispose();
    });
  },
  backward: ({ inputs, outputs, grads, attrs }) => {
    const need = inputs.map((t) => t.requiresGrad);
    const gs = grads.map((g, i) => g ?? zeros(outputs[i]!.shape));
    const outs = inputs.filter((_, i) => need[i]).map((t) => ({
      shape: t.shape,
      dtype: "f32" as const,
    }));
    const res = apply(RECOMPUTE_BWD, [...inputs.slice(0, attrs.nIn), ...gs], {
      ...attrs,
      need,
    }, outs);
    let k = 0;
    return inputs.map((_, i) => (need[i] ? res[k++]! : null));
  },
};

const RECOMPUTE_BWD: OpDef<Attrs> = {
  name: "recompute_backward",
  kind: "kernel",
  encode: ({ inputs, outputs, attrs }) => {
    if (!isGradEnabled()) {
      throw new Error(
        `recompute (${attrs.label}): the backward of a recomputed block was realized inside ` +
          `noGrad; realize the gradients (end the training step's tidy, read them) outside noGrad`,
      );
    }
    const { nIn, params } = attrs;
    const need = attrs.need!;
    const saved = params.map((p) => p.grad);
    for (const p of params) p.grad = null;
    const inner: Tensor[] = [];
    try {
      const res = tidy(() => {
        const ins = inputs.slice(0, nIn).map((v, i) => {
          const t = wrap(v);
          t.requiresGrad = need[i]!;
          return t;
        });
        const gOut = inputs.slice(nIn).map(wrap);
        const ys = toList(attrs.fn(...ins));
        // Σ_i sum(y_i ⊙ g_i): its gradient with respect to y_i is exactly g_i
        let s = sum(mul(ys[0]!, gOut[0]!));
        for (let i = 1; i < ys.length; i++) s = add(s, sum(mul(ys[i]!, gOut[i]!)));
        backward(s);
        const out: Tensor[] = [];
        ins.forEach((t, i) => {
          if (!need[i]) return;
          out.push(t.grad ?? zeros(t.shape));
          if (t.grad) inner.push(t.grad);
          t.grad = null; // the wrapper is disposed with the scope; its gradient is returned
        });
        params.forEach((p, j) => {
          if (!need[nIn + j]) return;
          out.push(p.grad ?? zeros(p.shape));
          if (p.grad) inner.push(p.grad);
        });
        return out.map(contiguous);
      });
      res.forEach((g, i) => {
        copyInto(g, outputs[i]!);
        g.dispose();
      });
    } finally {
      for (const g of inner) g.dispose();
      params.forEach((p, j) => (p.grad = saved[j]!));
    }
  },
};

/** Options of {@linkcode recompute}. */
export interface RecomputeOptions {
  /** Name for messages (e.g. `double_blocks.3`). */
  label?: string;
}

/**
 * Records `fn(...inputs)` as a recomputed block (see the module doc): its activations are not
 * kept for the backward; the backward runs the block again. `params` are the parameters `fn`
 * reads; when omitted they are found by tracing `fn` once (record only, nothing runs). Returns
 * `fn`'s outputs (an array when `fn` returns one).
 *
 * @example
 * ```ts ignore
 * const [img2, txt2] = recompute(
 *   (i, t, v, c, s) => block.forward(i, t, v, { kind: "half", cos: c, sin: s }),
 *   [img, txt, vec, rope.cos, rope.sin],
 * ) as Tensor[];
 * ```
 */
export function recompute(
  fn: RecomputeFn,
  inputs: readonly Tensor[],
  params?: readonly Tensor[],
  options: RecomputeOptions = {},
): Tensor | Tensor[] {
  const label = options.label ?? "block";
  const ins = [...inputs];
  for (const t of ins) {
    if (t.disposed) throw new Error(`recompute (${label}): input ${t} was disposed`);
  }
  const inputSet = new Set(ins);
  // trace once (nothing is realized: no tensor made here is returned or kept)
  let many = false;
  const specs: { shape: readonly number[] }[] = [];
  const found: Tensor[] = [];
  tidy(() => {
    const marker = new Tensor([1], "f32", null);
    const firstId = marker.id;
    const res = noGrad(() => fn(...ins));
    many = Array.isArray(res);
    const ys = toList(res);
    for (const y of ys) {
      if (y.dtype !== "f32") {
        throw new TypeError(`recompute (${label}): outputs must be f32, got ${y}`);
      }
      specs.push({ shape: y.shape });
    }
    // walk the traced graph down to the inputs; everything else it reads must be realized
    const seen = new Set<Tensor>();
    const stack = [...ys];
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t)) continue;
      seen.add(t);
      if (inputSet.has(t)) continue;
      if (t.id < firstId) {
        if (!t.realized) {
          throw new Error(
            `recompute (${label}): the block reads ${t}, which is neither an input nor realized; ` +
              `pass it in \`inputs\``,
          );
        }
        if (t.requiresGrad && t.node) {
          throw new Error(
            `recompute (${label}): the block reads ${t}, an activation that needs gradients; ` +
              `pass it in \`inputs\``,
          );
        }
        if (t.requiresGrad && !found.includes(t)) found.push(t);
        continue;
      }
      if (t.node) { for (const x of t.node.inputs) stack.push(x); }
    }
  });
  let ps: Tensor[];
  if (params) {
    ps = [...params];
    const missing = found.filter((p) => !ps.includes(p));
    if (missing.length) {
      throw new Error(
        `recompute (${label}): the block reads parameters not listed in \`params\`: ${
          missing.slice(0, 5).join(", ")
        }`,
      );
    }
  } else ps = found;
  const outs = apply(
    RECOMPUTE,
    [...ins, ...ps],
    { fn, nIn: ins.length, params: ps, label },
    specs
      .map((s) => ({ shape: s.shape, dtype: "f32" as const })),
  );
  return many ? outs : outs[0]!;
}
