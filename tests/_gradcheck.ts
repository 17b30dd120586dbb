/**
 * Gradient check: compares the engine's backward with central finite differences of a float64
 * CPU reference of the same function (so the difference quotient is not polluted by f32 error).
 */
import { backward, parameter } from "../engine/autograd.ts";
import { read } from "../engine/ops/movement.ts";
import { sum } from "../engine/ops/reduce.ts";
import { mul } from "../engine/ops/elementwise.ts";
import { fromData } from "../engine/graph.ts";
import { type Tensor, tidy } from "../engine/tensor.ts";
import { assertClose, randomArray } from "./_assert_close.ts";

/** An input of a gradient check. */
export interface GradInput {
  shape: number[];
  data?: Float32Array;
}

/**
 * Checks d(sum(f(x) * w))/dx for every input, with a fixed random weighting `w` so that every
 * output element matters. `ref` computes f on float64 arrays (row-major), returning the flat
 * output. Returns the largest absolute error found.
 */
export async function gradcheck(
  label: string,
  inputs: GradInput[],
  f: (xs: Tensor[]) => Tensor,
  ref: (xs: Float64Array[]) => ArrayLike<number>,
  opts: { eps?: number; atol?: number; rtol?: number; seed?: number } = {},
): Promise<void> {
  const { eps = 1e-3, atol = 2e-3, rtol = 2e-3, seed = 7 } = opts;
  const data = inputs.map((inp, i) =>
    inp.data ?? randomArray(inp.shape.reduce((a, b) => a * b, 1), seed + i)
  );
  const params = inputs.map((inp, i) => parameter(`x${i}`, data[i]!, inp.shape));
  const outProbe = ref(data.map((d) => Float64Array.from(d)));
  const wData = randomArray(outProbe.length, seed + 100, 0.5, 1.5);
  const loss = (xs: Float64Array[]) => {
    const y = ref(xs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * wData[i]!;
    return s;
  };
  tidy(() => {
    const y = f(params);
    const w = fromData(wData, y.shape, "f32");
    backward(sum(mul(y, w)));
  });
  for (let i = 0; i < params.length; i++) {
    const got = await read(params[i]!.grad!);
    const xs = data.map((d) => Float64Array.from(d));
    const num = new Float64Array(xs[i]!.length);
    for (let j = 0; j < xs[i]!.length; j++) {
      const v = xs[i]![j]!;
      xs[i]![j] = v + eps;
      const lp = loss(xs);
      xs[i]![j] = v - eps;
      const lm = loss(xs);
      xs[i]![j] = v;
      num[j] = (lp - lm) / (2 * eps);
    }
    assertClose(got, num, { atol, rtol, shape: inputs[i]!.shape, label: `${label}: d/dx${i}` });
  }
  for (const p of params) p.dispose();
}
