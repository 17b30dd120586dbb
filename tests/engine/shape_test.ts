/**
 * Shape arithmetic (CPU only): broadcasting, reshape inference, view strides, axis normalisation
 * and contiguity. `reshapeStrides` is also checked exhaustively against the float64 strided-index
 * reference on many random views.
 */
import {
  broadcastShapes,
  checkShape,
  contiguousStrides,
  fmtShape,
  inferReshape,
  isContiguous,
  normAxes,
  normAxis,
  numel,
  reshapeStrides,
} from "../../engine/shape.ts";
import { assertThrows, randomArray } from "../_assert_close.ts";
import { gatherView } from "../ref/elementwise.ts";

function assertEq(got: unknown, want: unknown, what = ""): void {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, expected ${w}`);
}

Deno.test("shape: numel, contiguousStrides, fmtShape", () => {
  assertEq(numel([]), 1, "numel scalar");
  assertEq(numel([2, 0, 3]), 0, "numel empty");
  assertEq(numel([7, 33, 1]), 231, "numel");
  assertEq(contiguousStrides([2, 3, 4]), [12, 4, 1], "strides");
  assertEq(contiguousStrides([]), [], "strides scalar");
  assertEq(contiguousStrides([5, 1, 7]), [7, 7, 1], "strides with 1");
  assertEq(fmtShape([2, 3]), "[2, 3]", "fmt");
  assertEq(fmtShape([]), "[]", "fmt scalar");
});

Deno.test("shape: checkShape rejects negative and fractional sizes", async () => {
  checkShape("op", [0, 3, 1]);
  const e = await assertThrows(() => checkShape("zeros", [2, -1]), "zeros", "[2, -1]");
  assertEq(e instanceof RangeError, true, "RangeError");
  await assertThrows(() => checkShape("full", [1.5]), "full", "invalid shape");
});

Deno.test("shape: broadcastShapes follows numpy rules", () => {
  assertEq(broadcastShapes("add", [3, 1, 33], [7, 1]), [3, 7, 33], "[3,1,33]+[7,1]");
  assertEq(broadcastShapes("add", [7, 1], [3, 1, 33]), [3, 7, 33], "commuted");
  assertEq(broadcastShapes("mul", [], [2, 3]), [2, 3], "scalar");
  assertEq(broadcastShapes("mul", [2, 3], [2, 3]), [2, 3], "same");
  assertEq(broadcastShapes("mul", [1], [0]), [0], "empty");
  assertEq(broadcastShapes("mul", [4, 1, 1], [1, 5, 1]), [4, 5, 1], "both sides");
});

Deno.test("shape: broadcastShapes error names the op, both shapes and the axis", async () => {
  const e = await assertThrows(
    () => broadcastShapes("add", [2, 3], [4]),
    "add:",
    "[2, 3]",
    "[4]",
    "axis 1: 3 vs 4",
  );
  assertEq(e instanceof RangeError, true, "RangeError");
  await assertThrows(
    () => broadcastShapes("where", [3, 2, 5], [4, 1]),
    "where",
    "[3, 2, 5]",
    "[4, 1]",
  );
});

Deno.test("shape: inferReshape resolves -1 and rejects bad targets", async () => {
  assertEq(inferReshape("reshape", [2, 3, 4], [-1, 4]), [6, 4], "-1 first");
  assertEq(inferReshape("reshape", [2, 3, 4], [2, -1]), [2, 12], "-1 last");
  assertEq(inferReshape("reshape", [7], [7, 1, -1]), [7, 1, 1], "-1 as 1");
  assertEq(inferReshape("reshape", [0, 3], [-1]), [0], "empty");
  assertEq(inferReshape("reshape", [2, 3], [3, 2]), [3, 2], "no -1");
  await assertThrows(() => inferReshape("reshape", [5], [-1, 2]), "reshape", "[5]", "[-1, 2]");
  await assertThrows(
    () => inferReshape("view", [2, 3], [4, 2]),
    "view",
    "[2, 3] (6 elements)",
    "[4, 2] (8 elements)",
  );
  await assertThrows(() => inferReshape("reshape", [0, 3], [-1, 0]), "reshape", "[0, 3]");
  await assertThrows(() => inferReshape("reshape", [4], [-1, -1]), "reshape");
});

Deno.test("shape: reshapeStrides view cases", () => {
  // contiguous: always a view with dense strides
  assertEq(reshapeStrides([2, 3, 4], [12, 4, 1], [6, 4]), [4, 1], "dense");
  // transpose of [6, 4] is [4, 6] with strides [1, 4]: splitting an axis is a view
  assertEq(reshapeStrides([4, 6], [1, 4], [2, 2, 6]), [2, 1, 4], "split permuted axis");
  // adding size-1 axes to a permuted tensor is a view
  assertEq(reshapeStrides([4, 3], [1, 4], [4, 3, 1]), [1, 4, 1], "unsqueeze permuted");
  assertEq(reshapeStrides([4, 3], [1, 4], [1, 4, 1, 3]), [1, 1, 1, 4], "unsqueeze twice");
  // a column slice of [4, 8]: rows can be split, not merged with columns
  assertEq(reshapeStrides([4, 4], [8, 1], [2, 2, 4]), [16, 8, 1], "split sliced rows");
  // expanded (stride 0) axis can be split
  assertEq(reshapeStrides([3, 4], [0, 1], [3, 2, 2]), [0, 2, 1], "split expanded");
  // size-1 axes with arbitrary strides are ignored
  assertEq(reshapeStrides([4, 1, 3], [1, 99, 4], [4, 3]), [1, 4], "drop size-1 axis");
});

Deno.test("shape: reshapeStrides returns null where a copy is needed", () => {
  assertEq(reshapeStrides([4, 3], [1, 4], [12]), null, "flatten transposed");
  assertEq(reshapeStrides([4, 6], [1, 4], [6, 4]), null, "regroup transposed");
  assertEq(reshapeStrides([4, 4], [8, 1], [16]), null, "flatten column slice");
  assertEq(reshapeStrides([3, 4], [0, 1], [12]), null, "flatten expanded");
  assertEq(reshapeStrides([2, 3, 4], [12, 1, 3], [2, 12]), null, "merge permuted inner axes");
});

/** Random view layouts (permutations and slices of random shapes) checked against the reference. */
Deno.test("shape: reshapeStrides agrees with the strided-index reference on random views", () => {
  let seed = 1;
  const rnd = (n: number) => Math.floor(randomArray(1, seed++, 0, n)[0]!);
  const factorizations = (n: number): number[][] => {
    const out: number[][] = [[n]];
    for (let a = 2; a < n; a++) {
      if (n % a === 0) { for (const rest of factorizations(n / a)) out.push([a, ...rest]); }
    }
    return out;
  };
  let views = 0;
  let copies = 0;
  for (let trial = 0; trial < 300; trial++) {
    const rank = 1 + rnd(3);
    const base = Array.from({ length: rank }, () => 1 + rnd(4));
    const bs = contiguousStrides(base);
    // permute, then maybe slice one axis
    const perm = [...Array(rank).keys()].sort(() => rnd(3) - 1);
    const shape = perm.map((p) => base[p]!);
    const strides = perm.map((p) => bs[p]!);
    let offset = 0;
    const ax = rnd(rank);
    if (shape[ax]! > 1 && rnd(2) === 1) {
      const s = rnd(shape[ax]!);
      offset = s * strides[ax]!;
      shape[ax] = shape[ax]! - s;
    }
    const n = numel(shape);
    const data = Array.from({ length: numel(base) }, (_, i) => i);
    const want = gatherView(data, shape, strides, offset);
    const fs = factorizations(n);
    const to = fs[rnd(fs.length)]!;
    if (rnd(2) === 1) to.splice(rnd(to.length + 1), 0, 1);
    const st = reshapeStrides(shape, strides, to);
    if (st === null) {
      copies++;
      // a copy is only acceptable when the permuted layout is not contiguous
      if (isContiguous(shape, strides)) throw new Error(`contiguous ${shape} -> ${to} gave null`);
      continue;
    }
    views++;
    const got = gatherView(data, to, st, offset);
    assertEq([...got], [...want], `view ${fmtShape(shape)}/${strides} -> ${fmtShape(to)}`);
  }
  if (views < 50 || copies < 10) throw new Error(`weak sample: ${views} views, ${copies} copies`);
});

Deno.test("shape: normAxis and normAxes", async () => {
  assertEq(normAxis("sum", -1, 3), 2, "negative");
  assertEq(normAxes("sum", undefined, 3), [0, 1, 2], "all");
  assertEq(normAxes("sum", -1, 2), [1], "number");
  assertEq(normAxes("sum", [2, 0, -3], 3), [0, 2], "sorted, deduplicated");
  assertEq(normAxes("sum", [], 3), [], "none");
  await assertThrows(() => normAxes("mean", [3], 3), "mean", "axis 3", "rank 3");
  await assertThrows(() => normAxes("max", -4, 3), "max", "axis -4", "rank 3");
  await assertThrows(() => normAxis("sum", 0.5, 2), "sum", "axis 0.5");
});

Deno.test("shape: isContiguous", () => {
  assertEq(isContiguous([2, 3, 4], [12, 4, 1]), true, "dense");
  assertEq(isContiguous([], []), true, "scalar");
  assertEq(isContiguous([4, 2], [1, 4]), false, "transposed");
  assertEq(isContiguous([3, 1, 4], [4, 99, 1]), true, "size-1 axis stride ignored");
  assertEq(isContiguous([4, 4], [8, 1]), false, "column slice");
  assertEq(isContiguous([2, 4], [4, 1]), true, "row slice (offset is not part of it)");
  assertEq(isContiguous([3, 4], [0, 1]), false, "expanded");
  assertEq(isContiguous([1, 4], [0, 1]), true, "expanded from 1 to 1");
});
