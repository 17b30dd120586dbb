/**
 * The DC-AE blocks against the PyTorch module-level fixtures (`tiny/ops/dc_ae_blocks`): forward
 * output, the stored intermediate, the input gradient and every parameter gradient for a
 * random upstream gradient, at 1e-4 abs + 1e-4 rel. Parameters are set by their names relative
 * to the block (`param.<name>`), so the block's declared names are checked too.
 */
import { loadOpsFamily } from "../_fixtures.ts";
import { fixtureTest } from "../_gpu.ts";
import { assertClose, maxErrors } from "../_assert_close.ts";
import { fromData } from "../../engine/graph.ts";
import { backward, parameter } from "../../engine/autograd.ts";
import { readAll } from "../../engine/ops/movement.ts";
import { keep, type Tensor, tidy } from "../../engine/tensor.ts";
import { ParamSet } from "../../models/params.ts";
import {
  DownsampleBlock,
  EfficientViTBlock,
  ResBlock,
  UpsampleBlock,
} from "../../models/dc_ae/layers.ts";

const TOL = { atol: 1e-4, rtol: 1e-4 };

function load(dir: string) {
  return loadOpsFamily<{ tensors: string[] }>(dir, "dc_ae_blocks");
}

interface Block {
  forward(x: Tensor, afterContext?: (t: Tensor) => void): Tensor;
}

async function runCase(
  dir: string,
  name: string,
  build: (ps: ParamSet) => Block,
): Promise<void> {
  const { t, cases } = await load(dir);
  const listed = cases[name]!.tensors;
  const get = (k: string) => {
    const v = t.get(`${name}.${k}`);
    if (!v) throw new Error(`fixture ${name}.${k} missing`);
    return v;
  };
  const ps = new ParamSet();
  const block = build(ps);
  // the block declares exactly the stored parameters, under the same names and shapes
  const stored = listed.filter((k) => k.startsWith("param.")).map((k) => k.slice(6)).sort();
  const declared = ps.list().map((s) => s.name).sort();
  if (stored.join() !== declared.join()) {
    throw new Error(`${name}: declared [${declared}] but the fixture stores [${stored}]`);
  }
  for (const p of ps.list()) {
    const v = get(`param.${p.name}`);
    if (v.shape.join() !== p.shape.join()) {
      throw new Error(`${name}: ${p.name} declared [${p.shape}], stored [${v.shape}]`);
    }
    ps.set(p.name, v.data);
  }
  const x = get("x");
  const px = parameter(`${name}.x`, x.data, x.shape);
  const got: { inter?: Tensor } = {};
  const y = tidy(() => {
    const out = block.forward(px, (h) => (got.inter = keep(h)));
    const gy = get("grad_y");
    backward(out, fromData(gy.data, gy.shape, "f32"));
    return keep(out);
  });
  const checks: [string, Tensor][] = [["y", y], ["grad_x", px.grad!]];
  if (listed.includes("inter.after_context_module")) {
    if (!got.inter) throw new Error(`${name}: the block gave no after-context intermediate`);
    checks.push(["inter.after_context_module", got.inter]);
  }
  for (const p of ps.list()) checks.push([`grad.${p.name}`, ps.get(p.name).grad!]);
  for (const k of listed) {
    if (!checks.some(([c]) => c === k) && !k.startsWith("param.") && k !== "x" && k !== "grad_y") {
      throw new Error(`${name}: stored ${k} is not checked`);
    }
  }
  const values = await readAll(checks.map(([, v]) => v));
  const report: string[] = [];
  let worst = 0;
  checks.forEach(([k, v], i) => {
    const want = get(k);
    if (v.shape.join() !== want.shape.join()) {
      throw new Error(`${name} ${k}: shape [${v.shape}] != stored [${want.shape}]`);
    }
    const m = maxErrors(values[i]!, want.data);
    let used = 0; // largest error as a fraction of atol + rtol·|expected|
    want.data.forEach((e, j) => {
      used = Math.max(used, Math.abs(values[i]![j]! - e) / (TOL.atol + TOL.rtol * Math.abs(e)));
    });
    worst = Math.max(worst, used);
    report.push(`${k} ${m.abs.toExponential(1)}/${m.rel.toExponential(1)}`);
    assertClose(values[i]!, want.data, { ...TOL, shape: want.shape, label: `${name} ${k}` });
  });
  console.log(
    `${name}: worst ${(100 * worst).toFixed(1)}% of the tolerance; max abs/rel: ` +
      report.join(", "),
  );
  for (const v of [y, px, got.inter]) v?.dispose();
  ps.dispose();
}

const EVIT = {
  dim: 32,
  scales: [5],
  expandRatio: 4,
  norm: "rms3d",
  act: "silu",
  eps: 1e-15,
} as const;

fixtureTest(
  "ResBlock matches dc_ae_blocks/resblock (forward, input and parameter grads)",
  (dir) => runCase(dir, "resblock", (ps) => new ResBlock(ps.root, 8, "rms3d", "silu")),
);

fixtureTest("EfficientViTBlock (1 head) matches dc_ae_blocks/evit_block_1head", (dir) =>
  runCase(
    dir,
    "evit_block_1head",
    (ps) => new EfficientViTBlock(ps.root, 32, { ...EVIT, scales: [5], heads: 1 }),
  ));

fixtureTest("EfficientViTBlock (2 heads) matches dc_ae_blocks/evit_block_2heads", (dir) =>
  runCase(
    dir,
    "evit_block_2heads",
    (ps) => new EfficientViTBlock(ps.root, 64, { ...EVIT, scales: [5], heads: 2 }),
  ));

fixtureTest(
  "DownsampleBlock (temporal) matches dc_ae_blocks/downsample_temporal",
  (dir) =>
    runCase(dir, "downsample_temporal", (ps) => new DownsampleBlock(ps.root, 16, 32, true, true)),
);

fixtureTest(
  "UpsampleBlock (temporal) matches dc_ae_blocks/upsample_temporal",
  (dir) =>
    runCase(dir, "upsample_temporal", (ps) => new UpsampleBlock(ps.root, 32, 16, true, true)),
);
