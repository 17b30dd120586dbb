/**
 * The tiny Video DC-AE (`tiny/dc_ae_tiny`) end to end: weights loaded by checkpoint name, the
 * model built from the case's own config, `encode(video)` → `latent`, `decode(latent)` →
 * `decoded`, the T = 1 image path, and every stored intermediate, at 1e-4 abs + 1e-4 rel.
 */
import { fixtureTest } from "../_gpu.ts";
import { assertClose, assertThrows, maxErrors } from "../_assert_close.ts";
import { loadSafetensors } from "../../engine/safetensors.ts";
import { fromData } from "../../engine/graph.ts";
import { read, readAll } from "../../engine/ops/movement.ts";
import { concat } from "../../engine/ops/concat.ts";
import { keep, noGrad, type Tensor, tidy } from "../../engine/tensor.ts";
import { fromReferenceConfig } from "../../models/dc_ae/config.ts";
import { DcAe } from "../../models/dc_ae/model.ts";

const TOL = { atol: 1e-4, rtol: 1e-4 };

/** Largest error as a fraction of the allowed `atol + rtol·|expected|` (< 1 passes). */
function toleranceUsed(a: Float32Array, e: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < e.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - e[i]!) / (TOL.atol + TOL.rtol * Math.abs(e[i]!)));
  }
  return worst;
}
type Stored = Map<string, { shape: number[]; data: Float32Array }>;

async function setup(dir: string) {
  const caseDir = `${dir}tiny/dc_ae_tiny/`;
  const kase = JSON.parse(await Deno.readTextFile(`${caseDir}case.json`));
  const ae = new DcAe(fromReferenceConfig(kase.config, kase.case));
  const t0 = performance.now();
  const report = await ae.params.load(`${caseDir}weights.safetensors`);
  if (report.loaded !== ae.params.list().length || !ae.params.ready) {
    throw new Error(`loaded ${report.loaded} of ${ae.params.list().length}`);
  }
  const loadMs = performance.now() - t0;
  const stored: Stored = await loadSafetensors(`${caseDir}tensors.safetensors`);
  const storedInters: string[] = kase.intermediates.stored;
  return { ae, stored, storedInters, loadMs };
}

/** Runs `fn` (recording taps named `inter.<name>` that the fixture stores), then compares. */
async function runAndCompare(
  stored: Stored,
  storedInters: string[],
  label: string,
  outputName: string,
  fn: (tap: (name: string, t: Tensor) => void) => Tensor,
): Promise<string[]> {
  const taps = new Map<string, Tensor>();
  const t0 = performance.now();
  const out = noGrad(() =>
    tidy(() => {
      const y = fn((name, t) => {
        const key = `inter.${name}`;
        if (storedInters.includes(key)) taps.set(key, keep(t));
      });
      return y;
    })
  );
  const names = [outputName, ...taps.keys()];
  const tensors = [out, ...taps.values()];
  const values = await readAll(tensors);
  const ms = performance.now() - t0;
  const lines = [`${label}: ${ms.toFixed(0)} ms`];
  names.forEach((k, i) => {
    const want = stored.get(k)!;
    if (tensors[i]!.shape.join() !== want.shape.join()) {
      throw new Error(`${label} ${k}: shape [${tensors[i]!.shape}] != stored [${want.shape}]`);
    }
    const m = maxErrors(values[i]!, want.data);
    const used = toleranceUsed(values[i]!, want.data);
    lines.push(
      `  ${k}: max abs ${m.abs.toExponential(2)}, max rel ${m.rel.toExponential(2)}, ` +
        `${(100 * used).toFixed(1)}% of the tolerance`,
    );
    assertClose(values[i]!, want.data, { ...TOL, shape: want.shape, label: `${label} ${k}` });
  });
  for (const t of tensors) t.dispose();
  return lines;
}

function input(stored: Stored, name: string): Tensor {
  const v = stored.get(name)!;
  return fromData(v.data, v.shape, "f32");
}

fixtureTest(
  "DcAe reproduces dc_ae_tiny: encode, decode, T = 1, every intermediate",
  async (dir) => {
    const { ae, stored, storedInters, loadMs } = await setup(dir);
    const log = [`dc_ae_tiny: weights loaded in ${loadMs.toFixed(0)} ms`];
    const seen = new Set<string>();
    const track = (tap: (n: string, t: Tensor) => void) => (n: string, t: Tensor) => {
      if (storedInters.includes(`inter.${n}`)) seen.add(`inter.${n}`);
      tap(n, t);
    };
    const video = input(stored, "video");
    log.push(
      ...await runAndCompare(
        stored,
        storedInters,
        "encode video [1, 3, 8, 64, 96]",
        "latent",
        (tap) => ae.encode(video, { tap: track(tap) }),
      ),
    );
    const latent = input(stored, "latent");
    log.push(
      ...await runAndCompare(
        stored,
        storedInters,
        "decode latent [1, 16, 2, 2, 3]",
        "decoded",
        (tap) => ae.decode(latent, { tap: track(tap) }),
      ),
    );
    const image = input(stored, "image");
    log.push(
      ...await runAndCompare(
        stored,
        [],
        "encode image [1, 3, 1, 64, 96]",
        "image_latent",
        () => ae.encode(image),
      ),
    );
    const imageLatent = input(stored, "image_latent");
    log.push(
      ...await runAndCompare(
        stored,
        [],
        "decode image latent [1, 16, 1, 2, 3]",
        "image_decoded",
        () => ae.decode(imageLatent),
      ),
    );
    // a batch of two runs like the reference's per-sample loop: both rows give the stored latent
    const pair = concat([image, image], 0);
    const both = await read(noGrad(() => tidy(() => ae.encode(pair))));
    const one = stored.get("image_latent")!.data;
    assertClose(both.subarray(0, one.length), one, { ...TOL, label: "batch row 0" });
    assertClose(both.subarray(one.length), one, { ...TOL, label: "batch row 1" });
    const missing = storedInters.filter((k) => !seen.has(k));
    if (missing.length) throw new Error(`intermediates never produced: ${missing.join(", ")}`);
    console.log(log.join("\n"));
    // an impossible frame count is refused before anything runs, naming the sizes that work
    const bad = fromData(new Float32Array(3 * 6 * 64 * 96), [1, 3, 6, 64, 96], "f32");
    await assertThrows(
      () => ae.encode(bad),
      "T = 6",
      "T = 1 or a multiple of 4",
      "multiples of 32",
    );
    for (const t of [video, latent, image, imageLatent, bad, pair]) t.dispose();
    ae.params.dispose();
  },
);
