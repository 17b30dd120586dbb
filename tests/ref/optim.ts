/**
 * Float64 reference of the optimizer: PyTorch's AdamW with global grad-norm clipping.
 *
 * @module
 */

/** Options of {@linkcode RefAdamW}. */
export interface RefOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  maxGradNorm?: number;
}

/** Float64 AdamW (PyTorch formula) with global grad-norm clipping. */
export class RefAdamW {
  m: Float64Array[];
  v: Float64Array[];
  step = 0;
  lastNorm = 0;
  constructor(public p: Float64Array[], private o: RefOptions) {
    this.m = p.map((x) => new Float64Array(x.length));
    this.v = p.map((x) => new Float64Array(x.length));
  }
  update(grads: ArrayLike<number>[]): void {
    const { lr, betas: [b1, b2], eps, weightDecay, maxGradNorm } = this.o;
    let sq = 0;
    for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
    this.lastNorm = Math.sqrt(sq);
    const coef = maxGradNorm === undefined ? 1 : Math.min(1, maxGradNorm / (this.lastNorm + 1e-6));
    this.step++;
    const bc1 = 1 - b1 ** this.step;
    const bc2 = 1 - b2 ** this.step;
    this.p.forEach((p, k) => {
      const m = this.m[k]!;
      const v = this.v[k]!;
      const g = grads[k]!;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]! * coef;
        p[i] = p[i]! * (1 - lr * weightDecay);
        m[i] = b1 * m[i]! + (1 - b1) * gi;
        v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        p[i] = p[i]! - (lr / bc1) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + eps);
      }
    });
  }
}
