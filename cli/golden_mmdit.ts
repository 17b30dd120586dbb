/**
 * The `mmdit*` kind of `deno task golden`: builds the MMDiT from the case's `model_args`, loads
 * `weights.safetensors`, runs the forward on the stored inputs comparing `out` and every stored
 * `inter.*` intermediate, and where `grads.safetensors` exists computes
 * `loss = mean((out − target)²)` and compares the loss, every parameter's gradient and the
 * gradients of the inputs (`grad.img`, `grad.txt`, `grad.y_vec`, `grad.cond`).
 *
 * @module
 */
import { join } from "node:path";
import { fromData } from "../engine/graph.ts";
import { backward, parameter } from "../engine/autograd.ts";
import { readAll } from "../engine/ops/movement.ts";
import { mseLoss } from "../engine/ops/loss.ts";
import { keep, type Tensor, tidy } from "../engine/tensor.ts";
import { loadSafetensors } from "../engine/safetensors.ts";
import { MMDiT } from "../models/mmdit/model.ts";
import { mmditFromReferenceConfig } from "../models/mmdit/config.ts";
import { compare, type Row } from "./_compare.ts";

/** Runs one MMDiT case directory; returns one row per compared tensor. */
export async function runMMDiTCase(
  dir: string,
  kase: Record<string, unknown>,
  tol: { atol: number; rtol: number },
): Promise<Row[]> {
  const cfg = mmditFromReferenceConfig(
    kase.model_args as Record<string, unknown>,
    String(kase.case),
  );
  const dit = new MMDiT(cfg);
  console.log(`model: MMDiT ${cfg.name}, ${dit.params.count().toLocaleString()} parameters`);
  await dit.params.load(join(dir, "weights.safetensors"));
  const stored = await loadSafetensors(join(dir, "tensors.safetensors"));
  const get = (k: string) => {
    const v = stored.get(k);
    if (!v) throw new Error(`${dir}: tensors.safetensors lacks ${k}`);
    return v;
  };
  let grads: Map<string, { shape: number[]; data: Float32Array }> | null = null;
  try {
    grads = await loadSafetensors(join(dir, "grads.safetensors"));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const withGrad = grads !== null;
  const input = (k: string) =>
    withGrad ? parameter(k, get(k).data, get(k).shape) : fromData(get(k).data, get(k).shape, "f32");
  const img = input("img"), txt = input("txt"), yVec = input("y_vec"), cond = input("cond");
  const timesteps = fromData(get("timesteps").data, get("timesteps").shape, "f32");
  const names: string[] = [];
  const outs: Tensor[] = [];
  const t0 = performance.now();
  tidy(() => {
    const out = dit.forward({
      img,
      imgIds: get("img_ids").data,
      txt,
      txtIds: get("txt_ids").data,
      timesteps,
      yVec,
      cond,
    }, (name, t) => {
      const key = `inter.${name}`;
      if (stored.has(key)) {
        names.push(key);
        outs.push(keep(t));
      }
    });
    names.push("out");
    outs.push(keep(out));
    if (withGrad) {
      const target = fromData(get("target").data, get("target").shape, "f32");
      const loss = mseLoss(out, target);
      backward(loss);
      names.push("loss");
      outs.push(keep(loss));
    }
  });
  const params = dit.params.list().map((s) => s.name);
  const gradTensors: Tensor[] = [];
  const gradNames: string[] = [];
  if (withGrad) {
    for (const n of params) {
      const g = dit.params.get(n).grad;
      gradNames.push(`grad(${n})`);
      if (!g) throw new Error(`parameter ${n} received no gradient`);
      gradTensors.push(g);
    }
    for (const [k, t] of [["img", img], ["txt", txt], ["y_vec", yVec], ["cond", cond]] as const) {
      if (!stored.has(`grad.${k}`)) continue;
      gradNames.push(`grad.${k}`);
      gradTensors.push(t.grad!);
    }
  }
  const values = await readAll([...outs, ...gradTensors]);
  console.log(`forward${withGrad ? " + backward" : ""}: ${(performance.now() - t0).toFixed(0)} ms`);
  const rows: Row[] = [];
  const all = [...names, ...gradNames];
  all.forEach((n, i) => {
    let want: { shape: number[]; data: Float32Array };
    if (n === "loss") {
      want = { shape: [], data: new Float32Array([kase.loss_value as number]) };
    } else if (n.startsWith("grad(")) want = grads!.get(n.slice(5, -1))!;
    else want = get(n);
    if (!want) throw new Error(`${dir}: no stored value for ${n}`);
    rows.push(compare(n, values[i]!, want.data, want.shape, tol.atol, tol.rtol));
  });
  const missing = [...stored.keys()].filter((k) => k.startsWith("inter.") && !names.includes(k));
  for (const k of missing) {
    console.log(`  ${k}: stored but never produced by the model`);
    rows.push({ name: k, shape: get(k).shape, abs: Infinity, rel: Infinity, ok: false });
  }
  for (const t of [...outs, img, txt, yVec, cond, timesteps]) t.dispose();
  dit.params.dispose();
  return rows;
}
