/**
 * Elementwise ops: each is one row of a table (WGSL expression + backward rule written with other
 * elementwise ops), so forward *and* backward chains fuse into single kernels.
 *
 * Binary ops broadcast numpy-style; a `number` operand becomes a run-time scalar (a uniform, not
 * compiled in).
 *
 * @module
 */
import { apply1 } from "../graph.ts";
import { broadcastShapes, numel, type Shape } from "../shape.ts";
import { checkAlive, type OpDef, type Tensor } from "../tensor.ts";
import { expand, sumTo } from "./movement.ts";
import { checkDType } from "../dtype.ts";

type Ew<A = unknown> = OpDef<A>;

function ew<A = unknown>(def: Omit<Ew<A>, "kind">): Ew<A> {
  return { kind: "elementwise", ...def };
}

/** Applies a unary elementwise op. */
function unary<A>(op: Ew<A>, x: Tensor, attrs: A): Tensor {
  checkAlive(op.name, x);
  checkDType(op.name, x.dtype, ["f32", "f16", "bf16", "i32", "u32"]);
  return apply1(op, [x], attrs, { shape: x.shape, dtype: "f32" });
}

/** Applies an n-ary elementwise op after broadcasting the inputs to one shape. */
function nary(op: Ew<unknown>, xs: Tensor[]): Tensor {
  let shape: Shape = xs[0]!.shape;
  for (const x of xs.slice(1)) shape = broadcastShapes(op.name, shape, x.shape);
  const ins = xs.map((x) => sameShape(x.shape, shape) ? x : expand(x, shape));
  return apply1(op, ins, undefined, { shape, dtype: "f32" });
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// ---------------------------------------------------------------- sources

const FULL: Ew<{ value: number }> = ew({
  name: "full",
  expr: (_a, s) => s[0]!,
  scalars: (a) => [a.value],
});

/** A tensor filled with `value` (lazy: it costs no memory when consumed by elementwise ops). */
export function full(shape: Shape, value: number): Tensor {
  return apply1(FULL, [], { value }, { shape, dtype: "f32" });
}
/** Zeros of a shape. */
export function zeros(shape: Shape): Tensor {
  return full(shape, 0);
}
/** Ones of a shape. */
export function ones(shape: Shape): Tensor {
  return full(shape, 1);
}

// ---------------------------------------------------------------- unary ops

const GELU_HELPERS = `
fn k_tanh(x: VT) -> VT { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn k_sigmoid(x: VT) -> VT { let e = exp(-abs(x)); return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= VT(0.0)); }
fn k_erf(x: VT) -> VT {
  // Abramowitz & Stegun 7.1.26 refined: |error| < 1.2e-7
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.5 * a);
  let y = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return sign(x) * (1.0 - y);
}
fn k_gelu_tanh(x: VT) -> VT { return 0.5 * x * (1.0 + k_tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
fn k_gelu_tanh_grad(x: VT) -> VT {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let t = k_tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x);
}
fn k_gelu_erf(x: VT) -> VT { return 0.5 * x * (1.0 + k_erf(x * 0.7071067811865476)); }
fn k_gelu_erf_grad(x: VT) -> VT {
  return 0.5 * (1.0 + k_erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
fn k_silu_grad(x: VT) -> VT { let s = k_sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
`;

function u(
  name: string,
  expr: (a: string) => string,
  grad?: (x: Tensor, y: Tensor, g: Tensor) => Tensor,
): Ew {
  return ew({
    name,
    expr: (a) => expr(a[0]!),
    helpers: GELU_HELPERS,
    backward: grad
      ? ({ inputs, outputs, grads }) => [grad(inputs[0]!, outputs[0]!, grads[0]!)]
      : undefined,
  });
}

const OPS: Record<string, Ew> = {
  copy: u("copy", (a) => a, (_x, _y, g) => g),
  neg: u("neg", (a) => `(-${a})`, (_x, _y, g) => neg(g)),
  abs: u("abs", (a) => `abs(${a})`, (x, _y, g) => mul(g, sign(x))),
  sign: u("sign", (a) => `sign(${a})`),
  exp: u("exp", (a) => `exp(${a})`, (_x, y, g) => mul(g, y)),
  log: u("log", (a) => `log(${a})`, (x, _y, g) => div(g, x)),
  sqrt: u("sqrt", (a) => `sqrt(${a})`, (_x, y, g) => div(mul(g, 0.5), y)),
  rsqrt: u("rsqrt", (a) => `inverseSqrt(${a})`, (_x, y, g) => mul(g, mul(cube(y), -0.5))),
  square: u("square", (a) => `(${a} * ${a})`, (x, _y, g) => mul(g, mul(x, 2))),
  recip: u("recip", (a) => `(1.0 / ${a})`, (_x, y, g) => neg(mul(g, square(y)))),
  sin: u("sin", (a) => `sin(${a})`, (x, _y, g) => mul(g, cos(x))),
  cos: u("cos", (a) => `cos(${a})`, (x, _y, g) => neg(mul(g, sin(x)))),
  tanh: u("tanh", (a) => `k_tanh(${a})`, (_x, y, g) => mul(g, sub(1, square(y)))),
  sigmoid: u("sigmoid", (a) => `k_sigmoid(${a})`, (_x, y, g) => mul(g, mul(y, sub(1, y)))),
  relu: u("relu", (a) => `max(${a}, VT(0.0))`, (x, _y, g) => mul(g, gt(x, 0))),
  silu: u(
    "silu",
    (a) => `(${a} * k_sigmoid(${a}))`,
    (x, _y, g) => mul(g, unary(OPS.siluGrad!, x, undefined)),
  ),
  siluGrad: u("silu_grad", (a) => `k_silu_grad(${a})`),
  geluTanh: u(
    "gelu_tanh",
    (a) => `k_gelu_tanh(${a})`,
    (x, _y, g) => mul(g, unary(OPS.geluTanhGrad!, x, undefined)),
  ),
  geluTanhGrad: u("gelu_tanh_grad", (a) => `k_gelu_tanh_grad(${a})`),
  geluErf: u(
    "gelu_erf",
    (a) => `k_gelu_erf(${a})`,
    (x, _y, g) => mul(g, unary(OPS.geluErfGrad!, x, undefined)),
  ),
  geluErfGrad: u("gelu_erf_grad", (a) => `k_gelu_erf_grad(${a})`),
};

function cube(x: Tensor): Tensor {
  return mul(square(x), x);
}

/** Identity copy (materializes a view densely when consumed by a kernel op). */
export function copy(x: Tensor): Tensor {
  return unary(OPS.copy!, x, undefined);
}
/** -x */
export function neg(x: Tensor): Tensor {
  return unary(OPS.neg!, x, undefined);
}
/** |x| */
export function abs(x: Tensor): Tensor {
  return unary(OPS.abs!, x, undefined);
}
/** sign(x) ∈ {-1, 0, 1} (no gradient). */
export function sign(x: Tensor): Tensor {
  return unary(OPS.sign!, x, undefined);
}
/** e^x */
export function exp(x: Tensor): Tensor {
  return unary(OPS.exp!, x, undefined);
}
/** Natural logarithm. */
export function log(x: Tensor): Tensor {
  return unary(OPS.log!, x, undefined);
}
/** √x */
export function sqrt(x: Tensor): Tensor {
  return unary(OPS.sqrt!, x, undefined);
}
/** 1/√x */
export function rsqrt(x: Tensor): Tensor {
  return unary(OPS.rsqrt!, x, undefined);
}
/** x² */
export function square(x: Tensor): Tensor {
  return unary(OPS.square!, x, undefined);
}
/** 1/x */
export function recip(x: Tensor): Tensor {
  return unary(OPS.recip!, x, undefined);
}
/** sin(x) */
export function sin(x: Tensor): Tensor {
  return unary(OPS.sin!, x, undefined);
}
/** cos(x) */
export function cos(x: Tensor): Tensor {
  return unary(OPS.cos!, x, undefined);
}
/** tanh(x) */
export function tanh(x: Tensor): Tensor {
  return unary(OPS.tanh!, x, undefined);
}
/** 1 / (1 + e^-x) */
export function sigmoid(x: Tensor): Tensor {
  return unary(OPS.sigmoid!, x, undefined);
}
/** max(x, 0) */
export function relu(x: Tensor): Tensor {
  return unary(OPS.relu!, x, undefined);
}
/** x · sigmoid(x) */
export function silu(x: Tensor): Tensor {
  return unary(OPS.silu!, x, undefined);
}
/**
 * GELU. `approximate: "tanh"` is `0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))`, `"none"` the exact
 * `0.5x(1 + erf(x/√2))` (erf to 1.2e-7).
 */
export function gelu(x: Tensor, approximate: "tanh" | "none" = "tanh"): Tensor {
  return unary(approximate === "tanh" ? OPS.geluTanh : OPS.geluErf, x, undefined);
}

// ---------------------------------------------------------------- binary ops

function b(
  name: string,
  expr: (a: string, b: string) => string,
  grad?: (a: Tensor, b: Tensor, y: Tensor, g: Tensor) => [Tensor | null, Tensor | null],
): Ew {
  return ew({
    name,
    expr: (x) => expr(x[0]!, x[1]!),
    backward: grad
      ? ({ inputs, outputs, grads }) => {
        const [ga, gb] = grad(inputs[0]!, inputs[1]!, outputs[0]!, grads[0]!);
        return [ga && sumTo(ga, inputs[0]!.shape), gb && sumTo(gb, inputs[1]!.shape)];
      }
      : undefined,
  });
}

const BIN = {
  add: b("add", (x, y) => `(${x} + ${y})`, (_a, _b, _y, g) => [g, g]),
  sub: b("sub", (x, y) => `(${x} - ${y})`, (_a, _b, _y, g) => [g, neg(g)]),
  mul: b("mul", (x, y) => `(${x} * ${y})`, (a, bb, _y, g) => [mul(g, bb), mul(g, a)]),
  div: b(
    "div",
    (x, y) => `(${x} / ${y})`,
    (a, bb, _y, g) => [div(g, bb), neg(div(mul(g, a), square(bb)))],
  ),
  pow: b(
    "pow",
    (x, y) => `pow(${x}, ${y})`,
    (a, bb, y, g) => [mul(g, mul(bb, pow(a, sub(bb, 1)))), mul(g, mul(y, log(a)))],
  ),
  maximum: b(
    "maximum",
    (x, y) => `max(${x}, ${y})`,
    (a, bb, _y, g) => [mul(g, ge(a, bb)), mul(g, lt(a, bb))],
  ),
  minimum: b(
    "minimum",
    (x, y) => `min(${x}, ${y})`,
    (a, bb, _y, g) => [mul(g, le(a, bb)), mul(g, gt(a, bb))],
  ),
  gt: b("gt", (x, y) => `select(VT(0.0), VT(1.0), ${x} > ${y})`),
  ge: b("ge", (x, y) => `select(VT(0.0), VT(1.0), ${x} >= ${y})`),
  lt: b("lt", (x, y) => `select(VT(0.0), VT(1.0), ${x} < ${y})`),
  le: b("le", (x, y) => `select(VT(0.0), VT(1.0), ${x} <= ${y})`),
  eq: b("eq", (x, y) => `select(VT(0.0), VT(1.0), ${x} == ${y})`),
};

/** Scalar-operand variants: the number travels as a uniform. */
function bs(
  name: string,
  expr: (a: string, s: string) => string,
  grad?: (a: Tensor, s: number, y: Tensor, g: Tensor) => Tensor,
): Ew<{ s: number }> {
  return ew<{ s: number }>({
    name,
    expr: (x, s) => expr(x[0]!, s[0]!),
    scalars: (a) => [a.s],
    backward: grad
      ? ({ inputs, outputs, grads, attrs }) => [grad(inputs[0]!, attrs.s, outputs[0]!, grads[0]!)]
      : undefined,
  });
}

const SCAL = {
  add: bs("add_s", (x, s) => `(${x} + ${s})`, (_a, _s, _y, g) => g),
  rsub: bs("rsub_s", (x, s) => `(${s} - ${x})`, (_a, _s, _y, g) => neg(g)),
  mul: bs("mul_s", (x, s) => `(${x} * ${s})`, (_a, s, _y, g) => mul(g, s)),
  rdiv: bs("rdiv_s", (x, s) => `(${s} / ${x})`, (a, _s, y, g) => neg(div(mul(g, y), a))),
  pow: bs(
    "pow_s",
    (x, s) => `pow(${x}, ${s})`,
    (a, s, _y, g) => mul(g, mul(powScalar(a, s - 1), s)),
  ),
  rpow: bs("rpow_s", (x, s) => `pow(${s}, ${x})`, (_a, s, y, g) => mul(g, mul(y, Math.log(s)))),
  maximum: bs("maximum_s", (x, s) => `max(${x}, ${s})`, (a, s, _y, g) => mul(g, ge(a, s))),
  minimum: bs("minimum_s", (x, s) => `min(${x}, ${s})`, (a, s, _y, g) => mul(g, le(a, s))),
  gt: bs("gt_s", (x, s) => `select(VT(0.0), VT(1.0), ${x} > ${s})`),
  ge: bs("ge_s", (x, s) => `select(VT(0.0), VT(1.0), ${x} >= ${s})`),
  lt: bs("lt_s", (x, s) => `select(VT(0.0), VT(1.0), ${x} < ${s})`),
  le: bs("le_s", (x, s) => `select(VT(0.0), VT(1.0), ${x} <= ${s})`),
};

/** A binary-op argument: a tensor, or a number applied as a scalar (broadcast to every element). */
export type Operand = Tensor | number;

function binary(
  t: Ew,
  scalarOp: Ew<{ s: number }> | null,
  revOp: Ew<{ s: number }> | null,
  x: Operand,
  y: Operand,
  revFn?: (s: number, t: Tensor) => Tensor,
): Tensor {
  if (typeof x === "number" && typeof y === "number") {
    throw new TypeError(`${t.name}: at least one operand must be a tensor`);
  }
  if (typeof y === "number") return unary(scalarOp!, x as Tensor, { s: y });
  if (typeof x === "number") {
    if (revFn) return revFn(x, y);
    return unary(revOp ?? scalarOp!, y, { s: x });
  }
  return nary(t, [x, y]);
}

/** x + y (broadcasting). */
export function add(x: Operand, y: Operand): Tensor {
  return binary(BIN.add, SCAL.add, SCAL.add, x, y);
}
/** x - y (broadcasting). */
export function sub(x: Operand, y: Operand): Tensor {
  if (typeof y === "number") return unary(SCAL.add, x as Tensor, { s: -y });
  return binary(BIN.sub, null, SCAL.rsub, x, y);
}
/** x · y (broadcasting). */
export function mul(x: Operand, y: Operand): Tensor {
  return binary(BIN.mul, SCAL.mul, SCAL.mul, x, y);
}
/** x / y (broadcasting). */
export function div(x: Operand, y: Operand): Tensor {
  if (typeof y === "number") return unary(SCAL.mul, x as Tensor, { s: 1 / y });
  return binary(BIN.div, null, SCAL.rdiv, x, y);
}
/** x^y (broadcasting). */
export function pow(x: Operand, y: Operand): Tensor {
  return binary(BIN.pow, SCAL.pow, SCAL.rpow, x, y);
}
/** x^p for a scalar p. */
export function powScalar(x: Tensor, p: number): Tensor {
  return unary(SCAL.pow, x, { s: p });
}
/** Elementwise maximum (the gradient goes to x where x ≥ y). */
export function maximum(x: Operand, y: Operand): Tensor {
  return binary(BIN.maximum, SCAL.maximum, SCAL.maximum, x, y);
}
/** Elementwise minimum (the gradient goes to x where x ≤ y). */
export function minimum(x: Operand, y: Operand): Tensor {
  return binary(BIN.minimum, SCAL.minimum, SCAL.minimum, x, y);
}
/** 1 where x > y else 0. */
export function gt(x: Operand, y: Operand): Tensor {
  return binary(BIN.gt, SCAL.gt, SCAL.lt, x, y);
}
/** 1 where x ≥ y else 0. */
export function ge(x: Operand, y: Operand): Tensor {
  return binary(BIN.ge, SCAL.ge, SCAL.le, x, y);
}
/** 1 where x < y else 0. */
export function lt(x: Operand, y: Operand): Tensor {
  return binary(BIN.lt, SCAL.lt, SCAL.gt, x, y);
}
/** 1 where x ≤ y else 0. */
export function le(x: Operand, y: Operand): Tensor {
  return binary(BIN.le, SCAL.le, SCAL.ge, x, y);
}
/** 1 where x == y else 0. */
export function eq(x: Tensor, y: Tensor): Tensor {
  return nary(BIN.eq, [x, y]);
}
/** Clamps to [lo, hi]. */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  return minimum(maximum(x, lo), hi);
}

// ---------------------------------------------------------------- ternary

const WHERE: Ew = ew({
  name: "where",
  expr: (x) => `select(${x[2]}, ${x[1]}, ${x[0]} != VT(0.0))`,
  backward: ({ inputs, grads }) => {
    const [c, a, bb] = inputs as [Tensor, Tensor, Tensor];
    const g = grads[0]!;
    return [null, sumTo(where(c, g, 0), a.shape), sumTo(where(c, 0, g), bb.shape)];
  },
});

/** `cond ? a : b` elementwise (cond is nonzero = true), broadcasting all three. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const shape = cond.shape;
  const ta = typeof a === "number" ? full(shape, a) : a;
  const tb = typeof b === "number" ? full(shape, b) : b;
  return nary(WHERE, [cond, ta, tb]);
}

/** Number of elements (helper for mean-style scalings). */
export function count(shape: Shape): number {
  return numel(shape);
}
