/**
 * Training metrics: one record per optimiser update, appended to `metrics.jsonl` (one JSON
 * object a line) and `metrics.csv` (fixed columns, header first) in the run's output folder.
 *
 * Besides the reference's logged values (`training.md` §13: loss, global grad norm, lr), each
 * record has the loss per timestep range (t in [0, .25), [.25, .5), [.5, .75), [.75, 1]: the
 * flow-matching loss depends strongly on t, so the mean alone hides where a model improves),
 * throughput (samples/s and image tokens/s) and GPU memory (bytes in use and the peak of the
 * update, from the engine's buffer pool).
 *
 * @module
 */
import { join } from "node:path";

/** Edges of the timestep ranges of {@linkcode StepMetrics.lossByT} (the last range includes 1). */
export const T_EDGES: readonly number[] = [0, 0.25, 0.5, 0.75, 1];

/** One optimiser update's record. */
export interface StepMetrics {
  /** Updates completed, counting this one (1 for the first). */
  step: number;
  /** Mean loss of the update (mean over its micro-batches). */
  loss: number;
  /** Mean per-sample loss in each timestep range of {@linkcode T_EDGES}; NaN when empty. */
  lossByT: number[];
  /** Global L2 gradient norm before clipping. */
  gradNorm: number;
  /** Learning rate used by the update. */
  lr: number;
  /** Samples in the update (all micro-batches). */
  samples: number;
  /** Image tokens in the update (`B·N` summed over micro-batches). */
  tokens: number;
  /** Wall time of the update in seconds (recording + GPU + the one read-back). */
  seconds: number;
  /** Samples per second of wall time. */
  samplesPerSec: number;
  /** Image tokens per second of wall time. */
  tokensPerSec: number;
  /** GPU bytes held by live tensors after the update. */
  memInUse: number;
  /** Highest GPU bytes in use during the update. */
  memPeak: number;
}

/**
 * Mean of `values` per range of `edges` by `t` (`[e_i, e_{i+1})`, the last range closed); NaN for
 * an empty range.
 */
export function meanByRange(
  values: ArrayLike<number>,
  t: ArrayLike<number>,
  edges: readonly number[] = T_EDGES,
): number[] {
  if (values.length !== t.length) {
    throw new RangeError(`meanByRange: ${values.length} values for ${t.length} timesteps`);
  }
  const k = edges.length - 1;
  const sum = new Array<number>(k).fill(0);
  const n = new Array<number>(k).fill(0);
  for (let i = 0; i < values.length; i++) {
    const x = t[i]!;
    for (let r = 0; r < k; r++) {
      const last = r === k - 1;
      if (x >= edges[r]! && (x < edges[r + 1]! || (last && x <= edges[r + 1]!))) {
        sum[r]! += values[i]!;
        n[r]!++;
        break;
      }
    }
  }
  return sum.map((s, r) => (n[r] ? s / n[r]! : NaN));
}

/** CSV columns, in order. */
export const CSV_COLUMNS: readonly string[] = [
  "step",
  "loss",
  ...T_EDGES.slice(0, -1).map((e, i) => `loss_t${e}_${T_EDGES[i + 1]}`),
  "grad_norm",
  "lr",
  "samples",
  "tokens",
  "seconds",
  "samples_per_s",
  "tokens_per_s",
  "mem_in_use_mb",
  "mem_peak_mb",
];

const MB = 1024 * 1024;

/** A record as a flat object with the CSV column names (NaN → null). */
export function flatten(m: StepMetrics): Record<string, number | null> {
  const num = (x: number) => (Number.isFinite(x) ? x : null);
  const row: Record<string, number | null> = { step: m.step, loss: num(m.loss) };
  m.lossByT.forEach((x, i) => (row[CSV_COLUMNS[2 + i]!] = num(x)));
  Object.assign(row, {
    grad_norm: num(m.gradNorm),
    lr: m.lr,
    samples: m.samples,
    tokens: m.tokens,
    seconds: num(m.seconds),
    samples_per_s: num(m.samplesPerSec),
    tokens_per_s: num(m.tokensPerSec),
    mem_in_use_mb: m.memInUse / MB,
    mem_peak_mb: m.memPeak / MB,
  });
  return row;
}

/** Options of {@linkcode MetricsWriter.open}. */
export interface MetricsOpenOptions {
  /**
   * Resuming at this many completed updates: records with a larger `step` (written after the
   * checkpoint by the interrupted run) are dropped from both files.
   */
  resumeStep?: number;
}

/**
 * A pair of metric files in a run folder, `metrics.jsonl` and `metrics.csv` with fixed columns.
 * Opening with `resumeStep` drops the records an interrupted run wrote after that checkpoint; a
 * CSV with other columns is moved aside (`metrics.csv.old-<time>`).
 */
export class MetricsFiles {
  private constructor(
    readonly jsonlPath: string,
    readonly csvPath: string,
    readonly columns: readonly string[],
  ) {}

  /** Opens (creating the folder and the CSV header when needed) the two files in `dir`. */
  static async open(
    dir: string,
    columns: readonly string[],
    options: MetricsOpenOptions = {},
  ): Promise<MetricsFiles> {
    await Deno.mkdir(dir, { recursive: true });
    const w = new MetricsFiles(join(dir, "metrics.jsonl"), join(dir, "metrics.csv"), columns);
    const header = columns.join(",") + "\n";
    const keep = options.resumeStep;
    // jsonl: keep records up to resumeStep
    const jl = await readOr(w.jsonlPath);
    if (jl !== null && keep !== undefined) {
      const lines = jl.split("\n").filter((l) => l.trim() && JSON.parse(l).step <= keep);
      await Deno.writeTextFile(w.jsonlPath, lines.map((l) => l + "\n").join(""));
    }
    const csv = await readOr(w.csvPath);
    if (csv === null || !csv.startsWith(header)) {
      if (csv) await Deno.rename(w.csvPath, `${w.csvPath}.old-${Date.now()}`);
      await Deno.writeTextFile(w.csvPath, header);
    } else if (keep !== undefined) {
      const rows = csv.slice(header.length).split("\n").filter((l) =>
        l.trim() && Number(l.split(",")[0]) <= keep
      );
      await Deno.writeTextFile(w.csvPath, header + rows.map((l) => l + "\n").join(""));
    }
    return w;
  }

  /** Appends one flat record to both files (CSV in the column order; null → empty cell). */
  async write(row: Record<string, unknown>): Promise<void> {
    await Deno.writeTextFile(this.jsonlPath, JSON.stringify(row) + "\n", { append: true });
    const csv = this.columns.map((c) => (row[c] === null ? "" : String(row[c]))).join(",");
    await Deno.writeTextFile(this.csvPath, csv + "\n", { append: true });
  }
}

/**
 * Appends {@linkcode StepMetrics} to `<dir>/metrics.jsonl` and `<dir>/metrics.csv`.
 *
 * @example
 * ```ts ignore
 * const log = await MetricsWriter.open("outputs/run1", { resumeStep: trainer.steps });
 * await log.write(await trainer.step(batch));
 * ```
 */
export class MetricsWriter {
  private constructor(private readonly files: MetricsFiles) {}

  /** Opens (creating the folder and the CSV header when needed) the two files in `dir`. */
  static async open(dir: string, options: MetricsOpenOptions = {}): Promise<MetricsWriter> {
    return new MetricsWriter(await MetricsFiles.open(dir, CSV_COLUMNS, options));
  }

  /** Path of `metrics.jsonl`. */
  get jsonlPath(): string {
    return this.files.jsonlPath;
  }

  /** Path of `metrics.csv`. */
  get csvPath(): string {
    return this.files.csvPath;
  }

  /** Appends one record to both files. */
  write(m: StepMetrics): Promise<void> {
    return this.files.write(flatten(m));
  }
}

async function readOr(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}
