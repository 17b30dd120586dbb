/**
 * The model-level splits of the memory plan (issue 18, "beyond one buffer") change nothing in the
 * result: token-chunked MLPs and wide projections give the MMDiT's output bit for bit, with the
 * separate and the fused single-block layouts; the three guidance branches run one at a time give
 * the sampler's latent bit for bit; and the plan says which splits a case needs.
 */
import { ok as assert } from "node:assert/strict";
import { fromData } from "../../engine/graph.ts";
import { read } from "../../engine/ops/movement.ts";
import { keep, noGrad, tidy } from "../../engine/tensor.ts";
import { MMDiT } from "../../models/mmdit/model.ts";
import { type MMDiTConfig, mmditPreset } from "../../models/mmdit/config.ts";
import type { MMDiTInputs } from "../../models/mmdit/inputs.ts";
import { denoise } from "../../models/sampling/sampler.ts";
import { positionIds, textIds } from "../../models/sampling/pack.ts";
import { modelSizes, planMemory } from "../../models/plan.ts";
import { DcAe } from "../../models/dc_ae/model.ts";
import { dcAePreset } from "../../models/dc_ae/config.ts";
import { gpuTest } from "../_gpu.ts";
import { assertClose, randomArray } from "../_assert_close.ts";

const T = 2, H = 3, W = 4, N = T * H * W, LT = 7;

function inputs(cfg: MMDiTConfig, rows: number, seed: number): MMDiTInputs {
  const f = (shape: number[], s: number) =>
    fromData(randomArray(shape.reduce((a, b) => a * b), s), shape, "f32");
  return {
    img: f([rows, N, cfg.inChannels * cfg.patchSize ** 2], seed),
    imgIds: positionIds(rows, T, H, W),
    txt: f([rows, LT, cfg.contextInDim], seed + 1),
    txtIds: textIds(rows, LT),
    timesteps: fromData(new Float32Array(rows).fill(0.6), [rows], "f32"),
    yVec: f([rows, cfg.vecInDim], seed + 2),
    cond: f([rows, N, (cfg.inChannels + 1) * cfg.patchSize ** 2], seed + 3),
  };
}

async function forward(dit: MMDiT, x: MMDiTInputs): Promise<Float32Array> {
  const y = noGrad(() => tidy(() => keep(dit.forward(x))));
  const v = await read(y);
  y.dispose();
  return v;
}

gpuTest("MMDiT token chunks: the same output, separate and fused single blocks", async () => {
  for (const fusedQkv of [false, true]) {
    const cfg = { ...mmditPreset("tiny"), fusedQkv };
    const dit = new MMDiT(cfg);
    dit.params.initialize(3);
    const x = inputs(cfg, 2, 10);
    const whole = await forward(dit, x);
    for (const chunk of [1, 5, 13]) { // 31 joint tokens, 24 image tokens: uneven last chunks
      dit.tokenChunk = chunk;
      const got = await forward(dit, x);
      assertClose(got, whole, { atol: 0, rtol: 0, label: `fused ${fusedQkv}, chunk ${chunk}` });
    }
    dit.tokenChunk = null;
    for (const t of [x.img, x.txt, x.timesteps, x.yVec, x.cond!]) t.dispose();
    dit.params.dispose();
  }
});

gpuTest("denoise: guidance branches one at a time give the same latent", async () => {
  const cfg = mmditPreset("tiny");
  const dit = new MMDiT(cfg);
  dit.params.initialize(4);
  const x0 = inputs(cfg, 3, 20);
  const first = fromData(randomArray(N * cfg.inChannels, 30), [1, N, cfg.inChannels], "f32");
  const run = async (branchesOneAtATime: boolean) => {
    const calls: number[] = [];
    const out = await denoise((inp) => {
      calls.push(inp.img.shape[0]!);
      return dit.forward(inp);
    }, {
      x: first,
      imgIds: x0.imgIds,
      txt: x0.txt,
      txtIds: x0.txtIds,
      yVec: x0.yVec,
      cond: x0.cond!,
    }, {
      timesteps: [1, 0.6, 0],
      latentFrames: T,
      guidance: 5,
      sync: false,
      branchesOneAtATime,
    });
    const v = await read(out);
    out.dispose();
    return { v, calls };
  };
  const together = await run(false);
  const apart = await run(true);
  assert(together.calls.join() === "3,3", `together: ${together.calls}`);
  assert(apart.calls.join() === "1,1,1,1,1,1", `one at a time: ${apart.calls}`);
  assertClose(apart.v, together.v, { atol: 0, rtol: 0, label: "branches one at a time" });
  for (const t of [first, x0.img, x0.txt, x0.timesteps, x0.yVec, x0.cond!]) t.dispose();
  dit.params.dispose();
});

Deno.test("plan: the chunks generate applies follow the buffer limit", () => {
  const dit = mmditPreset("hcae");
  const ae = dcAePreset("f32t4c128");
  const sizes = modelSizes(new MMDiT(dit).params.list(), new DcAe(ae).params.list());
  const plan = (frames: number, maxBuffer: number) =>
    planMemory({
      dit,
      ...sizes,
      ae,
      text: null,
      weightBytes: 2,
      batch: 3,
      video: { frames, height: 576, width: 1024 },
      latent: [128, frames / 4, 18, 32],
      gpuBytes: Number.MAX_SAFE_INTEGER,
      maxBinding: 128 * 2 ** 20,
      maxBuffer,
    });
  const stage = (p: ReturnType<typeof plan>, name: string) =>
    p.stages.find((s) => s.stage === name)!.chunks;
  // 768px, 128 frames: the single blocks' wide projection of 3 rows is 3.25 GiB
  const big = plan(128, 2 ** 31 - 1);
  assert(stage(big, "MMDiT denoising").branches === true, JSON.stringify(big.stages));
  assert(stage(big, "DC-AE decoding").tileFrames === 16, JSON.stringify(big.stages));
  // with 1 GiB buffers even one branch must be token-chunked
  const small = plan(128, 2 ** 30);
  const c = stage(small, "MMDiT denoising");
  assert(c.branches === true && c.tokenChunk! > 0 && c.tokenChunk! < 18944, JSON.stringify(c));
  // 32 frames fit unsplit
  assert(Object.keys(stage(plan(32, 2 ** 31 - 1), "MMDiT denoising")).length === 0);
});
