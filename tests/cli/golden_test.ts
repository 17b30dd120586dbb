/**
 * `deno task golden` on the dc_ae_tiny case: passes as shipped, and fails (exit 1) when a stored
 * output is perturbed beyond the tolerance, so the runner really compares.
 */
import { fixtureTest } from "../_gpu.ts";
import { loadSafetensors, saveSafetensors } from "../../engine/safetensors.ts";

const CLI = new URL("../../cli/golden.ts", import.meta.url).pathname;

async function golden(dir: string): Promise<{ code: number; out: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, dir],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const r = await p.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

fixtureTest("deno task golden passes dc_ae_tiny and fails a perturbed copy", async (fx) => {
  const src = `${fx}tiny/dc_ae_tiny`;
  const ok = await golden(src);
  if (ok.code !== 0 || !/14 passed, 0 failed/.test(ok.out)) {
    throw new Error(`golden on ${src} exited ${ok.code}:\n${ok.out}`);
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(`${src}/case.json`, `${dir}/case.json`);
    await Deno.copyFile(`${src}/weights.safetensors`, `${dir}/weights.safetensors`);
    const tensors = await loadSafetensors(`${src}/tensors.safetensors`);
    const out: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [k, v] of tensors) out[k] = { dtype: "F32", shape: v.shape, data: v.data };
    out["latent"]!.data[5] = out["latent"]!.data[5]! + 1e-2;
    await saveSafetensors(`${dir}/tensors.safetensors`, out);
    const bad = await golden(dir);
    if (bad.code !== 1 || !/latent .* FAIL/.test(bad.out)) {
      throw new Error(`perturbed case should fail with exit 1, got ${bad.code}:\n${bad.out}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
