/**
 * Creating tensors from CPU data.
 *
 * @module
 */
import { fromData } from "../graph.ts";
import type { DType } from "../dtype.ts";
import type { Shape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";

/**
 * A tensor holding `data` (uploaded now, in queue order). f16/bf16 data are given as their
 * 16-bit patterns (`Uint16Array`), i32/u32 as integer arrays.
 *
 * @example
 * ```ts ignore
 * const x = tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 * ```
 */
export function tensor(
  data: Float32Array | Int32Array | Uint32Array | Uint16Array | number[],
  shape: Shape,
  dtype?: DType,
): Tensor {
  const dt: DType = dtype ??
    (data instanceof Int32Array
      ? "i32"
      : data instanceof Uint32Array
      ? "u32"
      : data instanceof Uint16Array
      ? "bf16"
      : "f32");
  const arr = Array.isArray(data) ? new Float32Array(data) : data;
  const expected: Record<DType, string> = {
    f32: "Float32Array",
    f16: "Uint16Array",
    bf16: "Uint16Array",
    i32: "Int32Array",
    u32: "Uint32Array",
  };
  if (arr.constructor.name !== expected[dt]) {
    throw new TypeError(
      `tensor: dtype ${dt} needs a ${expected[dt]}, got a ${arr.constructor.name}`,
    );
  }
  return fromData(arr, shape, dt);
}
