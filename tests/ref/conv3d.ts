/**
 * Float64 reference of a 3-D convolution (NCTHW, PyTorch weight layout) and its vector-Jacobian
 * products, written as plain loops over every output element and tap.
 */

/** Geometry of a reference convolution. */
export interface RefConv {
  n: number;
  cin: number;
  cout: number;
  groups: number;
  /** input T, H, W */
  size: [number, number, number];
  k: [number, number, number];
  stride: [number, number, number];
  padding: [number, number, number];
  dilation: [number, number, number];
}

type T3 = [number, number, number];

/** A test case of a convolution: the geometry with PyTorch's defaults left out, a label, a bias. */
export interface ConvCase {
  label: string;
  n: number;
  cin: number;
  cout: number;
  size: T3;
  k: T3;
  /** Default [1, 1, 1]. */
  stride?: T3;
  /** Default [0, 0, 0]. */
  padding?: T3;
  /** Default [1, 1, 1]. */
  dilation?: T3;
  /** Default 1. */
  groups?: number;
  bias?: boolean;
}

/** The full geometry of a case (defaults filled in). */
export function refConv(c: ConvCase): RefConv {
  return {
    n: c.n,
    cin: c.cin,
    cout: c.cout,
    groups: c.groups ?? 1,
    size: c.size,
    k: c.k,
    stride: c.stride ?? [1, 1, 1],
    padding: c.padding ?? [0, 0, 0],
    dilation: c.dilation ?? [1, 1, 1],
  };
}

/** Output T, H, W (PyTorch's floor rule). */
export function convOutSize(c: RefConv): [number, number, number] {
  return c.size.map((s, a) =>
    Math.floor((s + 2 * c.padding[a]! - c.dilation[a]! * (c.k[a]! - 1) - 1) / c.stride[a]!) + 1
  ) as [number, number, number];
}

/**
 * Calls `f(n, co, ci, outIndex, inIndex, weightIndex)` for every (output, tap) pair whose input
 * position is inside the (unpadded) input.
 */
function forEachTap(
  c: RefConv,
  f: (outIdx: number, inIdx: number, wIdx: number, co: number) => void,
): void {
  const [T, H, W] = c.size;
  const [To, Ho, Wo] = convOutSize(c);
  const [kT, kH, kW] = c.k;
  const crg = c.cin / c.groups, cog = c.cout / c.groups;
  for (let n = 0; n < c.n; n++) {
    for (let co = 0; co < c.cout; co++) {
      const g = Math.floor(co / cog);
      for (let ot = 0; ot < To; ot++) {
        for (let oh = 0; oh < Ho; oh++) {
          for (let ow = 0; ow < Wo; ow++) {
            const oi = (((n * c.cout + co) * To + ot) * Ho + oh) * Wo + ow;
            for (let r = 0; r < crg; r++) {
              const ci = g * crg + r;
              for (let kt = 0; kt < kT; kt++) {
                const it = ot * c.stride[0] - c.padding[0] + kt * c.dilation[0];
                if (it < 0 || it >= T) continue;
                for (let kh = 0; kh < kH; kh++) {
                  const ih = oh * c.stride[1] - c.padding[1] + kh * c.dilation[1];
                  if (ih < 0 || ih >= H) continue;
                  for (let kw = 0; kw < kW; kw++) {
                    const iw = ow * c.stride[2] - c.padding[2] + kw * c.dilation[2];
                    if (iw < 0 || iw >= W) continue;
                    const ii = (((n * c.cin + ci) * T + it) * H + ih) * W + iw;
                    const wi = (((co * crg + r) * kT + kt) * kH + kh) * kW + kw;
                    f(oi, ii, wi, co);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

/** Forward: `y = conv3d(x, w) + bias`. */
export function conv3dRef(
  c: RefConv,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  bias?: ArrayLike<number>,
): Float64Array {
  const [To, Ho, Wo] = convOutSize(c);
  const y = new Float64Array(c.n * c.cout * To * Ho * Wo);
  const per = To * Ho * Wo;
  if (bias) { for (let i = 0; i < y.length; i++) y[i] = bias[Math.floor(i / per) % c.cout]!; }
  forEachTap(c, (o, i, wi) => {
    y[o]! += x[i]! * w[wi]!;
  });
  return y;
}

/** The three gradients for an output gradient `dy`. */
export function conv3dGradRef(
  c: RefConv,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  dy: ArrayLike<number>,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const [To, Ho, Wo] = convOutSize(c);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(c.cout);
  const per = To * Ho * Wo;
  for (let i = 0; i < dy.length; i++) db[Math.floor(i / per) % c.cout]! += dy[i]!;
  forEachTap(c, (o, i, wi) => {
    dx[i]! += dy[o]! * w[wi]!;
    dw[wi]! += dy[o]! * x[i]!;
  });
  return { dx, dw, db };
}
