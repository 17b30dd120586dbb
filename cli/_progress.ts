/**
 * A terminal progress bar for long work (sampling steps, training steps, dataset passes):
 * `label [#####.....] 12/50 2.31 it/s ETA 0:16 loss 0.41`. Redraws in place on a terminal;
 * when stderr is not a terminal (CI, logs) it prints a line every `logEvery` steps and at the end.
 *
 * @module
 */

/** Formats seconds as `m:ss` or `h:mm:ss`. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? `${h}:` : ""}${mm}:${String(sec).padStart(2, "0")}`;
}

/** Options of {@linkcode ProgressBar}. */
export interface ProgressOptions {
  /** Line-mode interval when not on a terminal (default: about 10 lines per run). */
  logEvery?: number;
  /** Silences the bar (e.g. `--quiet`). */
  quiet?: boolean;
  /** Where to write (default stderr). */
  write?: (s: string) => void;
  /** Forces terminal mode on or off (default: whether stderr is a terminal). */
  tty?: boolean;
}

/** See the module doc. */
export class ProgressBar {
  private readonly start = performance.now();
  private done = 0;
  private readonly tty: boolean;
  private readonly write: (s: string) => void;
  private readonly logEvery: number;

  constructor(
    readonly label: string,
    readonly total: number,
    private readonly o: ProgressOptions = {},
  ) {
    this.tty = o.tty ?? Deno.stderr.isTerminal();
    const enc = new TextEncoder();
    this.write = o.write ?? ((s) => Deno.stderr.writeSync(enc.encode(s)));
    this.logEvery = o.logEvery ?? Math.max(1, Math.ceil(total / 10));
  }

  /** The current line (without control characters). */
  line(extra = ""): string {
    const el = (performance.now() - this.start) / 1000;
    const rate = this.done / Math.max(el, 1e-9);
    const eta = rate > 0 ? (this.total - this.done) / rate : Infinity;
    const width = 24;
    const fill = Math.round((width * this.done) / Math.max(1, this.total));
    const speed = rate >= 1
      ? `${rate.toFixed(2)} it/s`
      : `${(1 / Math.max(rate, 1e-9)).toFixed(2)} s/it`;
    return `${this.label} [${"#".repeat(fill)}${
      ".".repeat(width - fill)
    }] ${this.done}/${this.total} ` +
      `${this.done ? speed : "-"} elapsed ${formatDuration(el)} ETA ${
        this.done ? formatDuration(eta) : "?"
      }` +
      (extra ? ` ${extra}` : "");
  }

  /** Marks `n` more steps done; `extra` is appended (e.g. `loss 0.41`). */
  tick(n = 1, extra = ""): void {
    this.done = Math.min(this.total, this.done + n);
    if (this.o.quiet) return;
    if (this.tty) this.write(`\r\x1b[2K${this.line(extra)}`);
    else if (this.done % this.logEvery === 0 || this.done === this.total) {
      this.write(`${this.line(extra)}\n`);
    }
  }

  /** Ends the bar (newline on a terminal); returns elapsed seconds. */
  finish(): number {
    if (this.tty && !this.o.quiet) this.write("\n");
    return (performance.now() - this.start) / 1000;
  }
}
