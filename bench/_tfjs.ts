/**
 * The peer of Kino's benchmarks: TensorFlow.js with its WebGPU backend
 * (`npm:@tensorflow/tfjs@4.22.0` + `npm:@tensorflow/tfjs-backend-webgpu@4.22.0`). The union
 * package `@tensorflow/tfjs` is imported rather than `@tensorflow/tfjs-core` alone because only its
 * bundle registers the gradient functions (`tf.grads` of BatchMatMul / Conv3D fail with bare
 * tfjs-core, whose `register_all_gradients.js` uses extensionless ESM imports that Deno cannot
 * load); it pulls in tfjs-core 4.22.0, and its CPU/WebGL backends stay unused. Both run in Deno 2
 * as they are: no `window`/`navigator` shims; TF.js finds `navigator.gpu` and asks for a
 * `high-performance` adapter, the same request as Kino's, so both run on the same adapter (with
 * a device each). TF.js flags are left at their defaults.
 *
 * Every timing function builds its inputs once, warms up (2 runs unless told), then times `iters`
 * back-to-back runs and returns the mean milliseconds per run. The timed region ends when the GPU
 * has finished: TF.js batches dispatches into a command encoder, so the sync submits what is
 * pending and awaits `queue.onSubmittedWorkDone()` (nothing is read back, nothing subtracted).
 * Each run is wrapped in `tf.tidy`, so memory stays flat.
 *
 * What each case runs (Kino runs the same math):
 * - `matmul(m, n, k)`: `tf.matMul([m,k], [k,n])`.
 * - `softmax(rows, cols)`: `tf.softmax` over the last axis.
 * - `layerNorm(rows, cols)`: TF.js has no fused layer norm, so it is composed:
 *   `{mean, variance} = tf.moments(x, -1, keepDims)`; `y = (x - mean) * rsqrt(variance + 1e-5) *
 *   gamma + beta` (gamma, beta of shape `[cols]`; biased variance) — about 7 kernels.
 * - `elementwiseChain(n)`: `y = relu(x * 1.5 + 0.25) * sigmoid(x) - tanh(x)` ({@linkcode CHAIN_A},
 *   {@linkcode CHAIN_B}), 7 kernels in TF.js, one fused kernel in Kino.
 * - `attention(b, h, l, d)`: q, k, v `[b,h,l,d]`;
 *   `tf.matMul(tf.softmax(tf.matMul(q, k, false, true) * (1/sqrt(d))), v)` (batched, no mask).
 * - `attentionFwdBwd`: `tf.grads` of the same w.r.t. q, k, v, with a fixed upstream gradient.
 * - `conv3d(n, cin, cout, t, h, w, k, pad)`: `tf.conv3d`, stride 1, layout NDHWC: input
 *   `[n,t,h,w,cin]`, filter `[k,k,k,cin,cout]` (DHWIO). `pad = (k-1)/2` uses `'same'`; any other
 *   pad is an explicit `tf.pad` then `'valid'` (the pad is timed too).
 * - `conv3dFwdBwd`: `tf.grads` of the same w.r.t. input and filter.
 *   Its time is dominated by TF.js's Conv3DBackpropFilterV2 kernel (about 8x the forward here).
 *
 * @module
 */

import type { TimeOptions } from "./_report.ts";
import { timeIt } from "./_report.ts";

/** npm versions of the peer (pinned in the import specifiers below). */
export const TFJS_VERSION = "4.22.0";

/** Scale of the elementwise chain `relu(x * CHAIN_A + CHAIN_B) * sigmoid(x) - tanh(x)`. */
export const CHAIN_A = 1.5;
/** Offset of the elementwise chain `relu(x * CHAIN_A + CHAIN_B) * sigmoid(x) - tanh(x)`. */
export const CHAIN_B = 0.25;
/** Epsilon of the layer norm. */
export const LAYER_NORM_EPS = 1e-5;

/** Timing options of one peer case: warm-up runs (default 2) and timed runs (default 5). */
export type PeerTimeOptions = Pick<TimeOptions, "warmup" | "iters">;

/** TF.js WebGPU, ready to time; every function returns mean ms per run (see the module doc). */
export interface TfjsPeer {
  /** `tfjs-webgpu@4.22.0`, for the `peer` column. */
  name: string;
  /** Adapter TF.js runs on (its description, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`). */
  adapter: string;
  matmul(m: number, n: number, k: number, opts?: PeerTimeOptions): Promise<number>;
  softmax(rows: number, cols: number, opts?: PeerTimeOptions): Promise<number>;
  layerNorm(rows: number, cols: number, opts?: PeerTimeOptions): Promise<number>;
  elementwiseChain(n: number, opts?: PeerTimeOptions): Promise<number>;
  attention(b: number, h: number, l: number, d: number, opts?: PeerTimeOptions): Promise<number>;
  attentionFwdBwd(
    b: number,
    h: number,
    l: number,
    d: number,
    opts?: PeerTimeOptions,
  ): Promise<number>;
  conv3d(
    n: number,
    cin: number,
    cout: number,
    t: number,
    h: number,
    w: number,
    k: number,
    pad: number,
    opts?: PeerTimeOptions,
  ): Promise<number>;
  conv3dFwdBwd(
    n: number,
    cin: number,
    cout: number,
    t: number,
    h: number,
    w: number,
    k: number,
    pad: number,
    opts?: PeerTimeOptions,
  ): Promise<number>;
  /** Number of live TF.js tensors (should not grow between cases). */
  numTensors(): number;
}

/** The parts of TF.js's WebGPUBackend the sync needs (internal, but stable across 4.x). */
interface WebGpuBackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  commandEncoder: GPUCommandEncoder | null;
  adapterInfo?: { vendor?: string; architecture?: string };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/**
 * Loads TF.js with the WebGPU backend and checks that it really runs on WebGPU (a small matmul
 * checked against the CPU result); returns null, after printing why, if it cannot.
 */
export async function initTfjs(): Promise<TfjsPeer | null> {
  const fail = (why: string): null => {
    console.error(`TF.js peer disabled: ${why}`);
    return null;
  };
  if (!(globalThis.navigator as Navigator | undefined)?.gpu) {
    return fail("navigator.gpu is missing (WebGPU not available in this runtime)");
  }
  let tf: typeof import("npm:@tensorflow/tfjs@4.22.0");
  try {
    tf = await import("npm:@tensorflow/tfjs@4.22.0");
    await import("npm:@tensorflow/tfjs-backend-webgpu@4.22.0");
  } catch (e) {
    return fail(`cannot load @tensorflow/tfjs/-backend-webgpu@${TFJS_VERSION}: ${e}`);
  }
  try {
    if (!(await tf.setBackend("webgpu")) || tf.getBackend() !== "webgpu") {
      return fail(`tf.setBackend("webgpu") failed (backend is ${tf.getBackend()})`);
    }
    await tf.ready();
  } catch (e) {
    return fail(`WebGPU backend did not start: ${e}`);
  }
  const backend = tf.backend() as unknown as WebGpuBackendInternals;
  if (!backend.queue || typeof backend.submitQueue !== "function") {
    return fail("unexpected WebGPU backend internals (no queue/submitQueue)");
  }

  /** Submits TF.js's pending commands and waits until the GPU has run them. */
  const sync = async (): Promise<void> => {
    if (backend.commandEncoder) {
      backend.endComputePassEncoder();
      backend.submitQueue();
    }
    await backend.queue.onSubmittedWorkDone();
  };

  // Sanity check: a 64x64 matmul on WebGPU equals the plain JS result.
  try {
    const n = 64;
    const a = new Float32Array(n * n).map((_, i) => ((i * 7) % 13) / 13 - 0.5);
    const b = new Float32Array(n * n).map((_, i) => ((i * 5) % 11) / 11 - 0.5);
    const c = tf.tidy(() => tf.matMul(tf.tensor2d(a, [n, n]), tf.tensor2d(b, [n, n])));
    const got = await c.data();
    c.dispose();
    let err = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < n; p++) s += a[i * n + p] * b[p * n + j];
        err = Math.max(err, Math.abs(s - got[i * n + j]));
      }
    }
    if (!(err < 1e-3)) return fail(`WebGPU matmul is wrong (max error ${err})`);
  } catch (e) {
    return fail(`WebGPU matmul failed: ${e}`);
  }

  type Tensor = import("npm:@tensorflow/tfjs@4.22.0").Tensor;
  /** Builds inputs once, times `run` under tf.tidy, then disposes the inputs. */
  const bench = async (
    make: () => Tensor[],
    run: (xs: Tensor[]) => void,
    opts: PeerTimeOptions = {},
  ): Promise<number> => {
    const xs = make();
    try {
      await sync(); // the uploads are not timed
      return await timeIt(() => {
        tf.tidy(() => {
          run(xs);
        });
      }, { warmup: opts.warmup ?? 2, iters: opts.iters ?? 5, sync });
    } finally {
      tf.dispose(xs);
      await sync();
    }
  };
  const rnd = (shape: number[]) => tf.randomUniform(shape, -1, 1, "float32", 1234);

  const attentionFwd = (q: Tensor, k: Tensor, v: Tensor, d: number): Tensor => {
    const s = tf.mul(tf.matMul(q, k, false, true), tf.scalar(1 / Math.sqrt(d)));
    return tf.matMul(tf.softmax(s), v);
  };
  const conv = (
    x: Tensor,
    f: Tensor,
    k: number,
    pad: number,
  ): Tensor => {
    const x5 = x as import("npm:@tensorflow/tfjs@4.22.0").Tensor5D;
    const f5 = f as import("npm:@tensorflow/tfjs@4.22.0").Tensor5D;
    if (2 * pad === k - 1) return tf.conv3d(x5, f5, 1, "same");
    if (pad === 0) return tf.conv3d(x5, f5, 1, "valid");
    const p: [number, number][] = [[0, 0], [pad, pad], [pad, pad], [pad, pad], [0, 0]];
    return tf.conv3d(tf.pad(x5, p), f5, 1, "valid");
  };
  const convOut = (x: number, k: number, pad: number) => x + 2 * pad - k + 1;

  // GPUDevice.adapterInfo (newer spec, Deno has it) names the adapter; TF.js keeps only vendor.
  const info = (backend.device as unknown as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return {
    name: `tfjs-webgpu@${TFJS_VERSION}`,
    adapter: info?.description || info?.device || backend.adapterInfo?.vendor || "unknown",
    numTensors: () => tf.memory().numTensors,

    matmul: (m, n, k, opts) =>
      bench(() => [rnd([m, k]), rnd([k, n])], ([a, b]) => tf.matMul(a, b), opts),

    softmax: (rows, cols, opts) => bench(() => [rnd([rows, cols])], ([x]) => tf.softmax(x), opts),

    layerNorm: (rows, cols, opts) =>
      bench(
        () => [rnd([rows, cols]), rnd([cols]), rnd([cols]), tf.scalar(LAYER_NORM_EPS)],
        ([x, gamma, beta, eps]) => {
          const { mean, variance } = tf.moments(x, -1, true);
          const y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
          tf.add(tf.mul(y, gamma), beta);
        },
        opts,
      ),

    elementwiseChain: (n, opts) =>
      bench(
        () => [rnd([n]), tf.scalar(CHAIN_A), tf.scalar(CHAIN_B)],
        ([x, a, b]) => {
          tf.sub(tf.mul(tf.relu(tf.add(tf.mul(x, a), b)), tf.sigmoid(x)), tf.tanh(x));
        },
        opts,
      ),

    attention: (b, h, l, d, opts) =>
      bench(
        () => [rnd([b, h, l, d]), rnd([b, h, l, d]), rnd([b, h, l, d])],
        ([q, k, v]) => attentionFwd(q, k, v, d),
        opts,
      ),

    attentionFwdBwd: (b, h, l, d, opts) => {
      const g = tf.grads((q: Tensor, k: Tensor, v: Tensor) => attentionFwd(q, k, v, d));
      return bench(
        () => [rnd([b, h, l, d]), rnd([b, h, l, d]), rnd([b, h, l, d]), rnd([b, h, l, d])],
        ([q, k, v, dy]) => g([q, k, v], dy),
        opts,
      );
    },

    conv3d: (n, cin, cout, t, h, w, k, pad, opts) =>
      bench(
        () => [rnd([n, t, h, w, cin]), rnd([k, k, k, cin, cout])],
        ([x, f]) => conv(x, f, k, pad),
        opts,
      ),

    conv3dFwdBwd: (n, cin, cout, t, h, w, k, pad, opts) => {
      const g = tf.grads((x: Tensor, f: Tensor) => conv(x, f, k, pad));
      const out = [n, convOut(t, k, pad), convOut(h, k, pad), convOut(w, k, pad), cout];
      return bench(
        () => [rnd([n, t, h, w, cin]), rnd([k, k, k, cin, cout]), rnd(out)],
        ([x, f, dy]) => g([x, f], dy),
        opts,
      );
    },
  };
}
