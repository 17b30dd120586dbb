/**
 * `deno run -A cli/plan_table.ts`: the README's table of which resolutions and frame counts fit
 * on typical GPU limits, computed by the memory planner ({@linkcode planMemory}) for the release
 * presets (no weights, no GPU). Prints markdown.
 *
 * Options: `--preset NAME` (MMDiT preset, default `hcae`), `--frames 1,32,64,128`,
 * `--resolutions 256px,768px`, `--aspect-ratios 16:9,1:1`, `--dtype bf16|f32`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { MMDiT } from "../models/mmdit/model.ts";
import { DcAe } from "../models/dc_ae/model.ts";
import { mmditPreset } from "../models/mmdit/config.ts";
import { dcAePreset } from "../models/dc_ae/config.ts";
import {
  DEFAULT_SETTINGS,
  type GenerationSettings,
  RELEASE_LAYOUT,
  resolveSettings,
} from "../models/pipeline.ts";
import {
  type MemoryPlan,
  modelSizes,
  PlanError,
  planMemory,
  RELEASE_TEXT_ENCODERS,
  type StagePlan,
} from "../models/plan.ts";

const GiB = 2 ** 30, MiB = 2 ** 20;

/**
 * The adapter classes of the table: storage-binding limit and buffer limit (the 2 GiB class as
 * llvmpipe and many drivers report it, 2^31 − 1 bytes).
 */
export const ADAPTERS: { name: string; maxBinding: number; maxBuffer: number }[] = [
  { name: "binding 128 MiB, buffer 2 GiB", maxBinding: 128 * MiB, maxBuffer: 2 * GiB - 1 },
  { name: "binding 1 GiB, buffer 4 GiB", maxBinding: 1 * GiB, maxBuffer: 4 * GiB },
  { name: "binding 4 GiB, buffer 16 GiB", maxBinding: 4 * GiB, maxBuffer: 16 * GiB },
];
/** GPU memory sizes of the table, GiB. */
export const MEMORY_GB = [8, 16, 24, 80];

/** Short code of a stage's mode: R/S, then the split and `seg` (see the legend). */
export function stageCode(s: StagePlan): string {
  if (!s.fits) return "no";
  const parts = [s.modes[0] === "streamed" ? "S" : "R"];
  if (s.split) {
    if (s.stage === "MMDiT denoising") parts.push(/token chunks/.test(s.split) ? "BT" : "B");
    else {
      const t = /temporal tiles of (\d+)/.exec(s.split)?.[1];
      const px = /spatial tiles of (\d+)/.exec(s.split)?.[1];
      parts.push([t ? `t${t}` : "", px ? `s${px}` : ""].filter((x) => x).join(""));
    }
  }
  if (s.modes.includes("segmented")) parts.push("seg");
  return parts.join("+");
}

function cell(plan: MemoryPlan | PlanError): string {
  if (plan instanceof PlanError) return `error: ${plan.tensor.what}`;
  const dit = plan.stages.find((s) => s.stage === "MMDiT denoising")!;
  const ae = plan.stages.find((s) => s.stage === "DC-AE decoding")!;
  return `${stageCode(dit)} / ${stageCode(ae)} (${
    (Math.max(dit.total, ae.total) / GiB).toFixed(1)
  })`;
}

function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: "string", default: "hcae" },
      frames: { type: "string", default: "1,32,64,128" },
      resolutions: { type: "string", default: "256px,768px" },
      "aspect-ratios": { type: "string", default: "16:9,1:1" },
      dtype: { type: "string", default: "bf16" },
    },
  });
  const info = {
    dir: "",
    manifest: RELEASE_LAYOUT,
    dit: mmditPreset(values.preset!),
    ae: dcAePreset("f32t4c128"),
  };
  const sizes = modelSizes(new MMDiT(info.dit).params.list(), new DcAe(info.ae).params.list());
  const weightBytes = values.dtype === "f32" ? 4 : 2;
  const out: string[] = [
    `Computed by the memory planner (\`models/plan.ts\`) for the \`${info.dit.name}\` MMDiT and ` +
    `the \`${info.ae.name}\` DC-AE, weights in ${values.dtype}, one prompt (3 guidance rows); ` +
    `regenerate with \`deno run -A cli/plan_table.ts\`. Each cell: MMDiT mode / DC-AE mode ` +
    `(estimated peak GiB of the two). **R** resident; **S** streamed (MMDiT weights in host ` +
    `memory, one block on the GPU at a time); **seg** segmented (a tensor over the binding limit, ` +
    `bound as windows); chunked: **B** the three guidance branches one at a time, **BT** also ` +
    `token-chunked projections, **t16**/**t8** DC-AE temporal tiles of 16/8 frames; **no** does ` +
    `not fit. GB are GiB; the 2 GiB buffer class is 2^31 − 1 bytes.`,
    "",
  ];
  let textNote = "";
  // one row per video: its label, tokens, and the cells of every adapter class
  const rows: { label: string; frames: number; tokens: string; cells: string[][] }[] = [];
  for (const res of values.resolutions!.split(",")) {
    for (const ar of values["aspect-ratios"]!.split(",")) {
      for (const f of values.frames!.split(",").map(Number)) {
        const r = resolveSettings(info, {
          ...DEFAULT_SETTINGS,
          resolution: res,
          aspectRatio: ar,
          numFrames: f,
        } as GenerationSettings);
        const [, T, h, w] = r.latent;
        const ps = info.dit.patchSize;
        const cells = ADAPTERS.map((a) =>
          MEMORY_GB.map((g) => {
            try {
              const plan = planMemory({
                ...sizes,
                dit: info.dit,
                ae: info.ae,
                text: RELEASE_TEXT_ENCODERS,
                weightBytes,
                batch: 3,
                video: { frames: r.numFrames, height: r.height, width: r.width },
                latent: r.latent,
                gpuBytes: g * GiB,
                maxBinding: a.maxBinding,
                maxBuffer: a.maxBuffer,
              });
              const text = plan.stages.find((s) => s.stage === "text encoders")!;
              const no = MEMORY_GB.filter((m) => text.total > m * GiB);
              textNote = `The text encoders (T5-XXL + CLIP, resident, ~${
                (text.total / GiB).toFixed(1)
              } GiB) run before the MMDiT${
                no.length
                  ? ` and do not fit ${
                    no.map((m) => `${m} GB`).join(", ")
                  }: there, precompute the embeddings elsewhere (\`--embeddings\`)`
                  : ""
              }.`;
              return cell(plan);
            } catch (e) {
              if (e instanceof PlanError) return cell(e);
              throw e;
            }
          })
        );
        const label = `${r.height}×${r.width}`;
        const tokens = `${T * (h / ps) * (w / ps)}`;
        // sizes whose plans agree everywhere share a row (768px 16:9 and 1:1 have equal tokens)
        const same = rows.find((x) => x.frames === f && x.cells.join() === cells.join());
        if (same) {
          same.label += ` or ${label}`;
          if (!same.tokens.split(" or ").includes(tokens)) same.tokens += ` or ${tokens}`;
        } else rows.push({ label, frames: f, tokens, cells });
      }
    }
  }
  out.push(
    `| limits | video | tokens | ${MEMORY_GB.map((g) => `${g} GB`).join(" | ")} |`,
    `| ------ | ----- | -----: | ${MEMORY_GB.map(() => "----").join(" | ")} |`,
  );
  ADAPTERS.forEach((a, i) => {
    rows.forEach((row, k) => {
      const video = `${row.label}, ${row.frames} frame${row.frames > 1 ? "s" : ""}`;
      out.push(
        `| ${k === 0 ? a.name : ""} | ${video} | ${row.tokens} | ${row.cells[i]!.join(" | ")} |`,
      );
    });
  });
  out.push("", textNote);
  console.log(out.join("\n"));
  return 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
