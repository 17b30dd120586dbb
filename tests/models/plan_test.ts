/**
 * The memory planner on the real presets (`hcae` MMDiT, `f32t4c128` DC-AE, T5-XXL + CLIP), no
 * GPU: each mode (resident, streamed, segmented, chunked) where the limits call for it, the
 * split and the largest tensor after it, and a tensor over `maxBufferSize` that no split avoids
 * failing with its name, bytes and the limit.
 */
import { MMDiT } from "../../models/mmdit/model.ts";
import { DcAe } from "../../models/dc_ae/model.ts";
import { mmditPreset } from "../../models/mmdit/config.ts";
import { dcAePreset } from "../../models/dc_ae/config.ts";
import {
  fitsBuffer,
  type MemoryPlan,
  modelSizes,
  PlanError,
  type PlanInput,
  planMemory,
  RELEASE_TEXT_ENCODERS,
  type StagePlan,
} from "../../models/plan.ts";

const GiB = 2 ** 30, MiB = 2 ** 20;
const dit = mmditPreset("hcae");
const ae = dcAePreset("f32t4c128");
const sizes = modelSizes(new MMDiT(dit).params.list(), new DcAe(ae).params.list());

/** Videos of the release presets: 768px 16:9 (576×1024) and 256px 1:1, latents [128, T', h, w]. */
const V768 = (frames: number) => ({
  video: { frames, height: 576, width: 1024 },
  latent: [128, frames === 1 ? 1 : frames / 4, 18, 32] as [number, number, number, number],
});
const V256 = (frames: number) => ({
  video: { frames, height: 256, width: 256 },
  latent: [128, frames === 1 ? 1 : frames / 4, 8, 8] as [number, number, number, number],
});

function plan(
  v: Pick<PlanInput, "video" | "latent">,
  limits: { gpu: number; binding: number; buffer: number },
  text: PlanInput["text"] = RELEASE_TEXT_ENCODERS,
): MemoryPlan {
  return planMemory({
    ...sizes,
    dit,
    ae,
    text,
    weightBytes: 2,
    batch: 3,
    ...v,
    gpuBytes: limits.gpu,
    maxBinding: limits.binding,
    maxBuffer: limits.buffer,
  });
}

const stage = (p: MemoryPlan, name: string): StagePlan => {
  const s = p.stages.find((x) => x.stage === name);
  if (!s) throw new Error(`no stage ${name} in ${p.stages.map((x) => x.stage)}`);
  return s;
};

function expect(cond: boolean, msg: string, p?: MemoryPlan): void {
  if (!cond) throw new Error(`${msg}${p ? `\n${p.lines.join("\n")}` : ""}`);
}

function planError(fn: () => unknown): PlanError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PlanError) return e;
    throw e;
  }
  throw new Error("expected a PlanError, the plan succeeded");
}

Deno.test("plan: the release presets' sizes (weights, streaming group, largest weights)", () => {
  expect(sizes.ditParams === 11_891_971_200, `MMDiT params ${sizes.ditParams}`);
  expect(sizes.aeParams === 459_462_147, `DC-AE params ${sizes.aeParams}`);
  // one double block: 2 streams × (qkv 3H² + proj H² + MLP 8H² + modulation 6H²) plus biases
  expect(
    sizes.ditLargestGroup > 36 * 3072 ** 2 && sizes.ditLargestGroup < 36.1 * 3072 ** 2,
    `largest group ${sizes.ditLargestGroup}`,
  );
  // the largest MMDiT weight, a double block's modulation [6H, H], is 108 MiB in bf16: it fits a
  // 128 MiB binding
  const w = sizes.ditLargestWeight;
  expect(
    w.name === "double_blocks.0.img_mod.lin.weight" && w.shape.join() === "18432,3072",
    `largest MMDiT weight ${w.name} [${w.shape}]`,
  );
});

Deno.test("plan: resident, no split, nothing over the binding limit on a large GPU", () => {
  const p = plan(V256(1), { gpu: 80 * GiB, binding: 4 * GiB, buffer: 16 * GiB });
  for (const s of p.stages) {
    expect(s.modes.join() === "resident" && s.fits && s.split === null, `${s.stage}`, p);
  }
  expect(p.mode === "resident" && p.fitsBinding, `plan mode ${p.mode}`, p);
  // the stages run one after the other: the peak is the largest stage (the MMDiT's 22 GiB)
  const dt = stage(p, "MMDiT denoising");
  expect(p.peak === dt.total && dt.weights === sizes.ditParams * 2, "peak", p);
});

Deno.test("plan: segmented when a tensor is over the binding limit but fits a buffer", () => {
  const p = plan(V256(32), { gpu: 80 * GiB, binding: 128 * MiB, buffer: 16 * GiB });
  const dt = stage(p, "MMDiT denoising");
  // 8 latent frames of 8×8 = 512 image tokens + 512 text tokens; the single block's v_mlp
  // output is [3, 1024, 3072 + 12288] f32
  expect(dt.modes.join() === "resident,segmented" && dt.split === null, `modes ${dt.modes}`, p);
  expect(
    dt.largest.what === "single-block v_mlp output" &&
      dt.largest.shape.join() === "3,1024,15360" && dt.largest.bytes === 3 * 1024 * 15360 * 4,
    `largest ${JSON.stringify(dt.largest)}`,
    p,
  );
  expect(!p.fitsBinding, "fitsBinding", p);
  expect(
    p.lines.some((l) => /over the binding limit: ops bind it as 2 or more windows/.test(l)),
    "line",
    p,
  );
  // the same video with a 1 GiB binding limit is not segmented
  const q = plan(V256(32), { gpu: 80 * GiB, binding: 1 * GiB, buffer: 16 * GiB });
  expect(stage(q, "MMDiT denoising").modes.join() === "resident", "1 GiB binding", q);
});

Deno.test("plan: chunked when a tensor would be over the buffer limit (768px, 128 frames)", () => {
  const p = plan(V768(128), { gpu: 80 * GiB, binding: 1 * GiB, buffer: 2 * GiB - 1 });
  const dt = stage(p, "MMDiT denoising");
  // 32 × 18 × 32 = 18432 image tokens + 512: [3, 18944, 15360] f32 is 3.25 GiB, over 2 GiB;
  // one guidance branch at a time gives [1, 18944, 15360] = 1.08 GiB, over the 1 GiB binding
  expect(
    dt.unsplit.bytes === 3 * 18944 * 15360 * 4 && dt.largest.shape.join() === "1,18944,15360",
    `unsplit ${JSON.stringify(dt.unsplit)} largest ${JSON.stringify(dt.largest)}`,
    p,
  );
  expect(
    dt.modes.join() === "resident,chunked,segmented" &&
      /guidance branches one at a time/.test(dt.split!),
    `modes ${dt.modes} split ${dt.split}`,
    p,
  );
  // the DC-AE's 32-frame tiles up-sample 256 channels to [1, 256, 32, 256, 256] f32 = 2^31 bytes,
  // one byte over this limit: temporal tiles of 16 frames halve it
  const a = stage(p, "DC-AE decoding");
  expect(
    a.unsplit.bytes === 2 ** 31 && a.split === "temporal tiles of 16 frames" &&
      a.largest.shape.join() === "1,256,16,256,256" && a.modes.includes("chunked"),
    `DC-AE ${a.split} ${JSON.stringify(a.largest)}`,
    p,
  );
  // with a 4 GiB buffer neither needs a split (the MMDiT fits 80 GiB unsplit)
  const q = plan(V768(128), { gpu: 80 * GiB, binding: 1 * GiB, buffer: 4 * GiB });
  expect(
    stage(q, "MMDiT denoising").split === null && stage(q, "DC-AE decoding").split === null,
    "4 GiB buffer",
    q,
  );
  // a buffer limit that leaves even one branch's v_mlp output (1.08 GiB, in the 1.125 GiB size
  // class) too large: the projections in token chunks, the largest tensor is then [1, L, H]
  const r = plan(V768(128), { gpu: 80 * GiB, binding: 128 * MiB, buffer: 1 * GiB });
  const rt = stage(r, "MMDiT denoising");
  expect(
    /token chunks/.test(rt.split!) && rt.largest.shape.join() === "1,18944,3072" &&
      rt.modes.join() === "resident,chunked,segmented",
    `token chunks ${rt.split} ${JSON.stringify(rt.largest)}`,
    r,
  );
});

Deno.test("plan: streamed when the MMDiT's weights do not fit next to the activations", () => {
  const p = plan(V768(32), { gpu: 16 * GiB, binding: 4 * GiB, buffer: 16 * GiB });
  const dt = stage(p, "MMDiT denoising");
  expect(dt.modes.join() === "streamed" && dt.fits && p.mode === "streamed", `${dt.modes}`, p);
  expect(
    dt.total === sizes.ditLargestGroup * 2 + dt.activations && dt.total < 16 * GiB,
    `streamed total ${dt.total}`,
    p,
  );
  expect(p.lines.some((l) => /streamed: weights in host memory, one block of/.test(l)), "line", p);
  // at 128 frames on 8 GiB even streaming needs the guidance branches one at a time (memory,
  // not the buffer limit, asks for the split)
  const q = plan(V768(128), { gpu: 8 * GiB, binding: 4 * GiB, buffer: 16 * GiB }, null);
  const qt = stage(q, "MMDiT denoising");
  expect(
    qt.modes.join() === "streamed,chunked" && fitsBuffer(qt.unsplit.bytes, 4 * GiB, 16 * GiB) &&
      q.lines.some((l) => /fits a buffer but not the memory/.test(l)),
    `8 GiB ${qt.modes} ${qt.split}`,
    q,
  );
  // resident beats streamed: on 24 GiB, 32 frames run resident with the branches one at a time
  const r = plan(V768(32), { gpu: 24 * GiB, binding: 4 * GiB, buffer: 16 * GiB });
  expect(stage(r, "MMDiT denoising").modes.join() === "resident,chunked", "24 GiB", r);
});

Deno.test("plan: a stage that does not fit is marked, not thrown; no text stage with embeddings", () => {
  const p = plan(V256(1), { gpu: 8 * GiB, binding: 128 * MiB, buffer: 2 * GiB - 1 });
  const t = stage(p, "text encoders");
  // T5-XXL + CLIP minus the host token tables: ~8.8 GiB of bf16 weights
  expect(!t.fits && p.mode === "does-not-fit", `text ${t.fits} ${p.mode}`, p);
  expect(p.lines.some((l) => /does not fit .*--embeddings/.test(l)), "hint", p);
  const q = plan(V256(1), { gpu: 8 * GiB, binding: 128 * MiB, buffer: 2 * GiB - 1 }, null);
  expect(
    q.stages.length === 2 && q.mode === "streamed" && q.stages.every((s) => s.fits),
    `without text: ${q.mode}`,
    q,
  );
});

Deno.test("plan: a tensor over maxBufferSize that no split avoids fails, naming it", () => {
  // a weight has no split: T5's feed-forward weight [10240, 4096] bf16
  const e1 = planError(() => plan(V256(1), { gpu: 80 * GiB, binding: 16 * MiB, buffer: 32 * MiB }));
  expect(
    e1.stage === "text encoders" && /^weight .*wi_0/.test(e1.tensor.what) &&
      e1.tensor.shape.join() === "10240,4096" &&
      e1.message.includes(`${10240 * 4096 * 2} bytes`) &&
      e1.message.includes(`maxBufferSize of ${32 * MiB} bytes`),
    e1.message,
  );
  // the MMDiT's [1, L, H] sequence (q, k, v, attention output) cannot be cut
  const e2 = planError(() =>
    plan(V768(128), { gpu: 80 * GiB, binding: 16 * MiB, buffer: 128 * MiB }, null)
  );
  expect(
    e2.stage === "MMDiT denoising" && e2.tensor.shape.join() === "1,18944,3072" &&
      e2.message.includes(`${18944 * 3072 * 4} bytes`) &&
      e2.message.includes(`${128 * MiB} bytes`) && /token chunks/.test(e2.message),
    e2.message,
  );
  // the decoded video is joined on the GPU: smaller tiles do not shrink it
  const e3 = planError(() =>
    plan(V768(128), { gpu: 80 * GiB, binding: 128 * MiB, buffer: 512 * MiB }, null)
  );
  expect(
    e3.stage === "DC-AE decoding" && e3.tensor.what === "decoded video" &&
      e3.message.includes(`${3 * 128 * 576 * 1024 * 4} bytes`) &&
      e3.message.includes(`${512 * MiB} bytes`),
    e3.message,
  );
});

Deno.test("plan: fitsBuffer follows the buffer pool's size classes", () => {
  // 2^31 bytes is over a 2^31 − 1 limit; 1.1 GiB rounds up to the 1.125 GiB class
  expect(!fitsBuffer(2 ** 31, 128 * MiB, 2 ** 31 - 1), "2^31");
  expect(fitsBuffer(2 ** 31 - 2 ** 28, 128 * MiB, 2 ** 31 - 1), "1.75 GiB");
  expect(!fitsBuffer(1.1 * GiB, 128 * MiB, 1.12 * GiB), "1.1 GiB in 1.12 GiB");
  expect(fitsBuffer(1.1 * GiB, 128 * MiB, 1.125 * GiB), "1.1 GiB in 1.125 GiB");
  // a tensor within the binding limit is never rounded above it
  expect(fitsBuffer(100 * MiB + 256, 101 * MiB, 101 * MiB), "within the binding limit");
});
