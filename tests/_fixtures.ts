/** Loading the op-level fixture families of `../shared/fixtures/tiny/ops` (cached per family). */
import { loadSafetensors } from "../engine/safetensors.ts";

/** Stored tensors of a fixture file, by name. */
export type Stored = Map<string, { shape: number[]; data: Float32Array }>;

const cache = new Map<string, Promise<{ t: Stored; cases: Record<string, unknown> }>>();

/**
 * The tensors and the per-case parameters (`cases` of `<family>.json`) of one family, e.g.
 * `loadOpsFamily(dir, "conv3d")`; `dir` is the fixtures folder (ending in `/`).
 */
export function loadOpsFamily<C>(
  dir: string,
  family: string,
): Promise<{ t: Stored; cases: Record<string, C> }> {
  let p = cache.get(family);
  if (!p) {
    p = (async () => {
      const t = await loadSafetensors(`${dir}tiny/ops/${family}.safetensors`);
      const json = JSON.parse(await Deno.readTextFile(`${dir}tiny/ops/${family}.json`));
      return { t, cases: json.cases };
    })();
    cache.set(family, p);
  }
  return p as Promise<{ t: Stored; cases: Record<string, C> }>;
}
