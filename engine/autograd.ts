/**
 * Reverse-mode automatic differentiation over the recorded graph.
 *
 * `backward(loss)` walks the nodes that lead to `loss` in reverse order and calls each op's
 * backward rule (declared next to its forward, in `engine/ops`). The rules are written with
 * ordinary ops, so the gradient graph is recorded lazily like any other and runs, fused and
 * batched, when it is realized (typically at the end of the `tidy` scope of a training step).
 * Gradients of parameters accumulate into `param.grad` until `zeroGrad`.
 *
 * @module
 */
import { fmtShape } from "./shape.ts";
import { keep, type Node, noGrad, type OpDef, releaseAtScopeEnd, Tensor } from "./tensor.ts";
import { applyView, fromData } from "./graph.ts";
import { add, ones } from "./ops/elementwise.ts";

/** Error for an op that has no backward rule inside a graph that needs gradients. */
export class BackwardNotSupportedError extends Error {
  /** Error class name, shown in stack traces. */
  override name = "BackwardNotSupportedError";
}

/**
 * Makes a trainable parameter from CPU data: a realized tensor that requires grad and carries a
 * checkpoint name. Parameters live until disposed (scopes never free them).
 *
 * @example
 * ```ts ignore
 * const w = parameter("proj.weight", new Float32Array(6), [2, 3]);
 * ```
 */
export function parameter(name: string, data: Float32Array, shape: readonly number[]): Tensor {
  const t = keep(fromData(data, shape, "f32", name));
  t.requiresGrad = true;
  t.isParameter = true;
  return t;
}

/**
 * Back-propagates from `root` (a scalar unless `grad` is given) and accumulates `.grad` on every
 * leaf tensor that requires grad. The gradients are recorded lazily and marked `keep`, so they
 * are computed at the end of the enclosing `tidy` (or at the next read/realize).
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error(
      `backward: ${root} does not require grad (no parameter or requiresGrad input leads to it, ` +
        `or it was built under noGrad)`,
    );
  }
  if (!grad && root.size !== 1) {
    throw new RangeError(`backward: ${root} is not a scalar; pass its gradient explicitly`);
  }
  if (grad && grad.shape.join() !== root.shape.join()) {
    throw new RangeError(
      `backward: gradient shape ${fmtShape(grad.shape)} does not match ${fmtShape(root.shape)}`,
    );
  }
  // topological order of the nodes that lead to root
  const order: Node[] = [];
  const seen = new Set<Node>();
  const stack: [Node, boolean][] = root.node ? [[root.node, false]] : [];
  while (stack.length) {
    const [n, done] = stack.pop()!;
    if (done) {
      order.push(n);
      continue;
    }
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push([n, true]);
    for (const inp of n.inputs) {
      if (inp.requiresGrad && inp.node && !seen.has(inp.node)) stack.push([inp.node, false]);
    }
  }
  const grads = new Map<Tensor, Tensor>();
  const accumulate = (t: Tensor, g: Tensor) => {
    const prev = grads.get(t);
    grads.set(t, prev ? add(prev, g) : g);
  };
  noGrad(() => {
    grads.set(root, grad ?? ones(root.shape));
    if (!root.node) {
      accumulateLeaf(root, grads.get(root)!);
      return;
    }
    for (let i = order.length - 1; i >= 0; i--) {
      const n = order[i]!;
      const gs = n.outputs.map((o) => grads.get(o) ?? null);
      if (gs.every((g) => g === null)) continue;
      if (!n.op.backward) {
        throw new BackwardNotSupportedError(
          `backward: op ${n.op.name} has no backward rule; run it under noGrad or detach its inputs`,
        );
      }
      const ins = n.op.backward({
        inputs: n.inputs,
        outputs: n.outputs,
        grads: gs,
        attrs: n.attrs,
      });
      n.inputs.forEach((inp, k) => {
        const g = ins[k];
        if (!g || !inp.requiresGrad) return;
        if (g.shape.join() !== inp.shape.join()) {
          throw new Error(
            `internal: backward of ${n.op.name} gave ${fmtShape(g.shape)} for input ${
              fmtShape(inp.shape)
            }`,
          );
        }
        if (inp.node) accumulate(inp, g);
        else accumulateLeaf(inp, g);
      });
      for (const o of n.outputs) grads.delete(o);
    }
  });
}

function accumulateLeaf(t: Tensor, g: Tensor): void {
  const prev = t.grad;
  t.grad = keep(prev ? add(prev, g) : g);
  if (prev) releaseAtScopeEnd(prev);
}

/** Drops the accumulated gradients of `params`. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}

/** A tensor with the same value that does not carry gradients (shares storage via a view). */
export function detach(t: Tensor): Tensor {
  return noGrad(() => applyView(DETACH, t, {}, t.shape, t.strides, t.offset));
}

const DETACH: OpDef<Record<string, never>> = { name: "detach", kind: "view" };
