/**
 * `deno task init-bundle --out DIR`: writes a fresh bundle of Kino's small default model
 * (kino.json, a word-level tokenizer over the synthetic captions' vocabulary, seeded frozen
 * T5/CLIP text encoders, seeded initial DC-AE and MMDiT weights). Step 1 of the default model's
 * recipe (`weights/default/MODEL_CARD.md`); the training tasks then replace the DC-AE and MMDiT
 * weights.
 */
import { parseArgs } from "node:util";
import { writeDefaultBundle } from "../train/synthetic/default_model.ts";

const HELP = `Usage: deno task init-bundle --out DIR [--seed N]

Writes a fresh, untrained bundle of Kino's small default model into DIR: kino.json, t5/ and
clip/ (config, tokenizer, seeded frozen weights), dc_ae.safetensors and mmdit.safetensors
(seeded initial weights). Train them with deno task train-ae and deno task train.

  --out DIR    folder to write (created; existing files are replaced)
  --seed N     seed of every initial weight (default 0)
  -h, --help   this text`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        out: { type: "string" },
        seed: { type: "string", default: "0" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`init-bundle: ${(e as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!values.out) {
    console.error(`init-bundle: give --out DIR\n${HELP}`);
    return 2;
  }
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) {
    console.error(`init-bundle: --seed must be an integer, got "${values.seed}"`);
    return 2;
  }
  const m = await writeDefaultBundle(values.out, seed);
  console.log(
    `wrote ${values.out}: ${m.name} (kino.json, t5/, clip/, dc_ae.safetensors, mmdit.safetensors)`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
