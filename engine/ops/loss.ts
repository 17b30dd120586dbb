/**
 * Loss functions, composed of elementwise and reduce ops (their gradients come from autograd).
 *
 * @module
 */
import { fmtShape } from "../shape.ts";
import { checkAlive, type Tensor } from "../tensor.ts";
import { square, sub } from "./elementwise.ts";
import { mean, sum } from "./reduce.ts";

/** How a per-element loss is reduced. */
export type Reduction = "mean" | "sum" | "none";

/**
 * Mean squared error `(pred - target)²`, averaged (`"mean"`, a scalar), summed (`"sum"`) or
 * kept per element (`"none"`). Shapes must match exactly (no silent broadcasting).
 *
 * @example
 * ```ts ignore
 * const loss = mseLoss(model(x), noise);          // scalar
 * backward(loss);
 * ```
 */
export function mseLoss(pred: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  checkAlive("mseLoss", pred);
  checkAlive("mseLoss", target);
  if (pred.shape.join() !== target.shape.join() || pred.rank !== target.rank) {
    throw new RangeError(
      `mseLoss: pred ${fmtShape(pred.shape)} and target ${fmtShape(target.shape)} differ in shape`,
    );
  }
  const se = square(sub(pred, target));
  switch (reduction) {
    case "mean":
      return mean(se);
    case "sum":
      return sum(se);
    case "none":
      return se;
    default:
      throw new RangeError(`mseLoss: unknown reduction "${reduction}" (mean, sum or none)`);
  }
}
