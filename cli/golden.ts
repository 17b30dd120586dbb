/**
 * `deno task golden <case-dir>`: runs a reference case (the fixtures' format: `case.json` +
 * `weights.safetensors` + `tensors.safetensors`) through Kino's model built from the case's own
 * config, prints the largest absolute and relative error of every stored output and intermediate,
 * and exits non-zero when any exceeds 1e-4 absolute + 1e-4 relative.
 *
 * Kinds: `dc_ae*` (Video DC-AE: every `model.encode(x)` / `model.decode(x)` call listed in
 * `case.json.calls`, with the stored `inter.*` intermediates), `mmdit*` (MMDiT forward with every
 * stored intermediate, and where `grads.safetensors` exists the MSE loss against `target`, every
 * parameter's gradient and the input gradients) and `sampling*` (the case's denoising loop
 * replayed through Kino's sampler and the MMDiT).
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { init, runtime } from "../engine/runtime.ts";
import { fromData } from "../engine/graph.ts";
import { readAll } from "../engine/ops/movement.ts";
import { keep, noGrad, type Tensor, tidy } from "../engine/tensor.ts";
import { loadSafetensors } from "../engine/safetensors.ts";
import { fromReferenceConfig } from "../models/dc_ae/config.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import { runMMDiTCase } from "./golden_mmdit.ts";
import { runSamplingCase } from "./golden_sampling.ts";
import { compare, type Row } from "./_compare.ts";

const HELP = `Usage: deno task golden <case-dir> [--atol 1e-4] [--rtol 1e-4]

Runs a reference case directory (case.json, weights.safetensors, tensors.safetensors) through
Kino's model built from the case's config, prints the max abs/rel error of every stored tensor
(and, where case.json's float64_rerun_max_abs_diff has the tensor, that float64 rerun and the
ratio of Kino's error to it), and exits 1 when any exceeds atol + rtol * |expected|. Weights and
activations larger than one storage binding are fine (ops bind them as windows); the summary
gives the total time and the peak GPU memory of the buffer pool.

Supported kinds (case.json "case" field): dc_ae*, mmdit*, sampling*. Examples:
  deno task golden ../shared/fixtures/tiny/dc_ae_tiny
  deno task golden ../shared/fixtures/tiny/mmdit_tiny
  deno task golden /tmp/kino-release-cases/mmdit_release_1x1   (tools/make_release_cases.py)`;

async function runDcAe(
  dir: string,
  kase: Record<string, unknown>,
  atol: number,
  rtol: number,
): Promise<Row[]> {
  const ae = new DcAe(
    fromReferenceConfig(kase.config as Record<string, unknown>, String(kase.case)),
  );
  console.log(
    `model: Video DC-AE ${ae.config.name}, ${ae.params.count().toLocaleString()} parameters`,
  );
  await ae.params.load(join(dir, "weights.safetensors"));
  const stored = await loadSafetensors(join(dir, "tensors.safetensors"));
  const storedInters = new Set<string>(
    ((kase.intermediates as { stored?: string[] } | undefined)?.stored) ?? [],
  );
  const calls = (kase.calls ?? {}) as Record<string, string>;
  const rows: Row[] = [];
  // intermediates belong to the call whose activations have their shapes (e.g. the video call,
  // not the T = 1 image call); each is compared once
  const compared = new Set<string>();
  for (const [output, call] of Object.entries(calls)) {
    const m = /model\.(encode|decode)\((\w+)\)/.exec(call);
    if (!m) {
      console.log(`skipping ${output}: call "${call}" is not model.encode/decode`);
      continue;
    }
    const [, fn, inputName] = m as unknown as [string, "encode" | "decode", string];
    const inp = stored.get(inputName);
    const want = stored.get(output);
    if (!inp || !want) {
      throw new Error(`${dir}: tensors.safetensors lacks ${inp ? output : inputName}`);
    }
    const x = fromData(inp.data, inp.shape, "f32");
    const taps = new Map<string, Tensor>();
    const t0 = performance.now();
    const y = noGrad(() =>
      tidy(() =>
        ae[fn](x, {
          tap: (name: string, t: Tensor) => {
            const key = `inter.${name}`;
            const w = stored.get(key);
            if (!storedInters.has(key) || compared.has(key) || w?.shape.join() !== t.shape.join()) {
              return;
            }
            compared.add(key);
            taps.set(key, keep(t));
          },
        })
      )
    );
    const names = [output, ...taps.keys()];
    const tensors = [y, ...taps.values()];
    const values = await readAll(tensors);
    console.log(`${output} = model.${fn}(${inputName}): ${(performance.now() - t0).toFixed(0)} ms`);
    names.forEach((n, i) => {
      const w = stored.get(n)!;
      if (tensors[i]!.shape.join() !== w.shape.join()) {
        rows.push({
          name: n,
          shape: [...tensors[i]!.shape],
          abs: Infinity,
          rel: Infinity,
          ok: false,
        });
        console.log(`  ${n}: shape [${tensors[i]!.shape}] but stored [${w.shape}]`);
        return;
      }
      rows.push(compare(n, values[i]!, w.data, w.shape, atol, rtol));
    });
    for (const t of [x, ...tensors]) t.dispose();
  }
  ae.params.dispose();
  const never = [...storedInters].filter((k) => !compared.has(k));
  for (const k of never) {
    console.log(`  ${k}: stored but never produced by the model`);
    rows.push({
      name: k,
      shape: stored.get(k)?.shape ?? [],
      abs: Infinity,
      rel: Infinity,
      ok: false,
    });
  }
  return rows;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      atol: { type: "string", default: "1e-4" },
      rtol: { type: "string", default: "1e-4" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length !== 1) {
    console.log(HELP);
    return values.help ? 0 : 2;
  }
  const dir = positionals[0]!;
  const atol = Number(values.atol);
  const rtol = Number(values.rtol);
  let kase: Record<string, unknown>;
  try {
    kase = JSON.parse(await Deno.readTextFile(join(dir, "case.json")));
  } catch (e) {
    console.error(`golden: cannot read ${join(dir, "case.json")}: ${(e as Error).message}`);
    return 2;
  }
  const kind = String(kase.case ?? "");
  await init();
  const rt = runtime();
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  // weights larger than one storage binding are fine: ops bind them as windows (engine/window.ts)
  console.log(
    `device: ${rt.info.name}, storage-binding limit ${mib(rt.maxBinding)}, ` +
      `maxBufferSize ${mib(rt.maxBufferSize)}`,
  );
  const tStart = performance.now();
  let rows: Row[];
  if (kind.startsWith("dc_ae")) rows = await runDcAe(dir, kase, atol, rtol);
  else if (kind.startsWith("mmdit")) rows = await runMMDiTCase(dir, kase, { atol, rtol });
  else if (kind.startsWith("sampling")) {
    // deno-lint-ignore no-explicit-any
    rows = await runSamplingCase(dir, kase as any, { atol, rtol });
  } else {
    console.error(
      `golden: case kind "${kind}" is not supported (supported: dc_ae*, mmdit*, sampling*)`,
    );
    return 2;
  }
  const w = Math.max(...rows.map((r) => r.name.length));
  // the case's float64 rerun of a tensor (float32 roundoff of the reference itself), where stored
  const f64 = (kase.float64_rerun_max_abs_diff ?? {}) as Record<string, unknown>;
  const f64Of = (n: string) => typeof f64[n] === "number" ? f64[n] as number : null;
  const withF64 = rows.some((r) => f64Of(r.name) !== null);
  console.log(
    `\n${"tensor".padEnd(w)}  ${"max abs".padStart(9)}  ${"max rel".padStart(9)}  result` +
      (withF64 ? `  ${"f64 rerun".padStart(9)}  abs/f64` : ""),
  );
  for (const r of rows) {
    const ref = f64Of(r.name);
    const base = `${r.name.padEnd(w)}  ${r.abs.toExponential(2).padStart(9)}  ${
      r.rel.toExponential(2).padStart(9)
    }  ${r.ok ? "ok" : "FAIL"}`;
    const ratio = ref !== null && ref > 0 ? (r.abs / ref).toFixed(1) : "-";
    console.log(
      withF64 && ref !== null
        ? `${base.padEnd(w + 30)}  ${ref.toExponential(2).padStart(9)}  ${ratio.padStart(7)}`
        : base,
    );
  }
  const bad = rows.filter((r) => !r.ok).length;
  const mem = rt.pool.stats();
  console.log(
    `\ntotal ${
      ((performance.now() - tStart) / 1000).toFixed(1)
    } s (loading included); GPU memory: ` +
      `peak in use ${mib(mem.peakInUse)}, peak allocated ${mib(mem.peakAllocated)}`,
  );
  console.log(`${rows.length - bad} passed, ${bad} failed (atol ${atol}, rtol ${rtol})`);
  return bad ? 1 : 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  // a clear one-line message instead of a stack trace (KINO_DEBUG=1 shows the stack)
  console.error(
    `golden: ${Deno.env.get("KINO_DEBUG") ? (e as Error).stack : (e as Error).message}`,
  );
  Deno.exit(1);
}
