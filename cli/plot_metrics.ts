/**
 * `deno task plot-metrics OUT.png RUN/metrics.csv[:column] ...`: draws training curves (loss by
 * default; a moving average over 1% of the steps in a darker shade) from one or more
 * `metrics.csv` files into a PNG, one panel per file, with labelled axis ticks and grid lines (a
 * 3×5 pixel digit font drawn here) and each panel's range printed to the console. No plotting
 * library: lines and labels are rasterised here.
 */
import { parseArgs } from "node:util";
import { encodePng } from "../io/png.ts";

const HELP = `Usage: deno task plot-metrics OUT.png RUN/metrics.csv[:column] [...] [--log]

Draws one panel per metrics file (column default "loss"; e.g. metrics.csv:psnr), raw values in
light grey and a moving average in colour; --log uses a log10 y axis. Prints each panel's range.`;

/** Reads `step` and one column of a metrics CSV. */
export async function readSeries(
  spec: string,
): Promise<{ name: string; x: number[]; y: number[] }> {
  const m = /^(.*?)(?::([A-Za-z0-9_.]+))?$/.exec(spec)!;
  const path = m[1]!;
  const col = m[2] ?? "loss";
  const lines = (await Deno.readTextFile(path)).trim().split("\n");
  const header = lines[0]!.split(",");
  const ci = header.indexOf(col);
  const si = header.indexOf("step");
  if (ci < 0 || si < 0) throw new Error(`${path} has no "${col}" or "step" column`);
  const x: number[] = [], y: number[] = [];
  for (const l of lines.slice(1)) {
    const f = l.split(",");
    const v = Number(f[ci]);
    if (Number.isFinite(v)) {
      x.push(Number(f[si]));
      y.push(v);
    }
  }
  return { name: `${path}:${col}`, x, y };
}

/** 3×5 bitmaps (rows top to bottom, 3 bits each, MSB left) of the characters tick labels use. */
const GLYPHS: Record<string, number[]> = {
  "0": [7, 5, 5, 5, 7],
  "1": [2, 6, 2, 2, 7],
  "2": [7, 1, 7, 4, 7],
  "3": [7, 1, 7, 1, 7],
  "4": [5, 5, 7, 1, 1],
  "5": [7, 4, 7, 1, 7],
  "6": [7, 4, 7, 5, 7],
  "7": [7, 1, 1, 2, 2],
  "8": [7, 5, 7, 5, 7],
  "9": [7, 5, 7, 1, 7],
  ".": [0, 0, 0, 0, 2],
  "-": [0, 0, 7, 0, 0],
  "e": [0, 7, 7, 4, 7],
  "k": [4, 5, 6, 5, 5],
};

/**
 * Up to about `n` + 1 "nice" tick values (multiples of 1, 2 or 5 × 10^k) inside `[lo, hi]`.
 *
 * @example
 * ```ts ignore
 * niceTicks(0.31, 0.71, 4); // [0.4, 0.5, 0.6, 0.7]
 * ```
 */
export function niceTicks(lo: number, hi: number, n = 4): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw)!;
  const out: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) {
    out.push(Number((k * step).toPrecision(12)));
  }
  return out;
}

/** Ticks of a log axis over `[lo, hi]` (both > 0): 1, 2, 3, 5 × 10^k, thinned to 1 × 10^k when
 * the range spans many decades. */
export function logTicks(lo: number, hi: number): number[] {
  if (!(lo > 0) || !(hi > lo)) return [lo];
  const k0 = Math.floor(Math.log10(lo)), k1 = Math.ceil(Math.log10(hi));
  const ms = k1 - k0 > 3 ? [1] : [1, 2, 3, 5];
  const out: number[] = [];
  for (let k = k0; k <= k1; k++) {
    for (const m of ms) {
      const v = Number((m * 10 ** k).toPrecision(12));
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
    }
  }
  return out;
}

/**
 * A short tick label: integers as is (thousands as `k` from 10000), others to 3 significant
 * digits, exponent form below 1e-3.
 */
export function formatTick(v: number): string {
  if (Number.isInteger(v)) {
    return Math.abs(v) >= 10000 && v % 1000 === 0 ? `${v / 1000}k` : String(v);
  }
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

/** Rasterises panels of series into an RGB image. */
export function plot(series: { x: number[]; y: number[] }[], log: boolean, W = 640, PH = 240): {
  rgb: Uint8Array;
  w: number;
  h: number;
} {
  const H = PH * series.length;
  const rgb = new Uint8Array(W * H * 3).fill(255);
  const px = (x: number, y: number, c: [number, number, number]) => {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const i = (Math.round(y) * W + Math.round(x)) * 3;
    rgb[i] = c[0];
    rgb[i + 1] = c[1];
    rgb[i + 2] = c[2];
  };
  const line = (x0: number, y0: number, x1: number, y1: number, c: [number, number, number]) => {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    for (let k = 0; k <= n; k++) px(x0 + ((x1 - x0) * k) / n, y0 + ((y1 - y0) * k) / n, c);
  };
  // text of GLYPHS at scale 2 (8 px per character); (x, y) is the top-left corner
  const S = 2;
  const textWidth = (t: string) => t.length * 4 * S - S;
  const text = (x: number, y: number, t: string) => {
    for (const [i, ch] of [...t].entries()) {
      const g = GLYPHS[ch];
      if (!g) continue;
      for (let r = 0; r < 5; r++) {
        for (let c = 0; c < 3; c++) {
          if (!((g[r]! >> (2 - c)) & 1)) continue;
          for (let a = 0; a < S; a++) {
            for (let b = 0; b < S; b++) px(x + (i * 4 + c) * S + b, y + r * S + a, [0, 0, 0]);
          }
        }
      }
    }
  };
  series.forEach((s, p) => {
    const top = p * PH + 10, bottom = (p + 1) * PH - 24, left = 64, right = W - 16;
    const f = (v: number) => (log ? Math.log10(Math.max(v, 1e-12)) : v);
    const ys = s.y.map(f);
    const ymin = Math.min(...ys), ymax = Math.max(...ys);
    const xmin = Math.min(...s.x), xmax = Math.max(...s.x);
    const sx = (x: number) => left + ((x - xmin) / Math.max(1e-12, xmax - xmin)) * (right - left);
    const sy = (y: number) => bottom - ((y - ymin) / Math.max(1e-12, ymax - ymin)) * (bottom - top);
    // grid lines and tick labels (log axis: ticks at nice values of the data itself)
    const yTicks = log
      ? logTicks(10 ** ymin, 10 ** ymax).map((v) => [f(v), v])
      : niceTicks(ymin, ymax, 4).map((v) => [v, v]);
    for (const [at, v] of yTicks) {
      const y = sy(at!);
      line(left, y, right, y, [235, 235, 235]);
      const t = formatTick(v!);
      text(left - 6 - textWidth(t), y - 5, t);
    }
    for (const v of niceTicks(xmin, xmax, 5)) {
      const x = sx(v);
      line(x, top, x, bottom, [235, 235, 235]);
      const t = formatTick(v);
      text(Math.min(W - textWidth(t), Math.max(0, x - textWidth(t) / 2)), bottom + 6, t);
    }
    line(left, top, left, bottom, [0, 0, 0]);
    line(left, bottom, right, bottom, [0, 0, 0]);
    for (let k = 1; k < ys.length; k++) {
      line(sx(s.x[k - 1]!), sy(ys[k - 1]!), sx(s.x[k]!), sy(ys[k]!), [200, 200, 200]);
    }
    const win = Math.max(1, Math.round(ys.length / 100));
    const avg = ys.map((_, k) => {
      const a = Math.max(0, k - win + 1);
      return ys.slice(a, k + 1).reduce((u, v) => u + v, 0) / (k + 1 - a);
    });
    for (let k = 1; k < avg.length; k++) {
      line(sx(s.x[k - 1]!), sy(avg[k - 1]!), sx(s.x[k]!), sy(avg[k]!), [20, 90, 200]);
    }
  });
  return { rgb, w: W, h: H };
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    strict: true,
    options: { log: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help || positionals.length < 2) {
    console.log(HELP);
    return values.help ? 0 : 2;
  }
  const [out, ...specs] = positionals as [string, ...string[]];
  const series = await Promise.all(specs.map(readSeries));
  const { rgb, w, h } = plot(series, !!values.log);
  await Deno.writeFile(out, await encodePng(rgb, w, h));
  for (const [i, s] of series.entries()) {
    const first = s.y.slice(0, 10), last = s.y.slice(-10);
    const mean = (a: number[]) => a.reduce((u, v) => u + v, 0) / a.length;
    console.log(
      `panel ${i + 1}: ${s.name}, steps ${s.x[0]}..${s.x.at(-1)}, first-10 mean ${
        mean(first).toFixed(4)
      }, last-10 mean ${mean(last).toFixed(4)}`,
    );
  }
  console.log(`wrote ${out}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
