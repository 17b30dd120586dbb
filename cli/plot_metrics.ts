/**
 * `deno task plot-metrics OUT.png RUN/metrics.csv[:column] ...`: draws training curves (loss by
 * default; a moving average over 1% of the steps in a darker shade) from one or more
 * `metrics.csv` files into a PNG, one panel per file, with min/max labels in the file name list
 * printed to the console. No plotting library: lines are rasterised here.
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
  series.forEach((s, p) => {
    const top = p * PH + 10, bottom = (p + 1) * PH - 20, left = 40, right = W - 10;
    const f = (v: number) => (log ? Math.log10(Math.max(v, 1e-12)) : v);
    const ys = s.y.map(f);
    const ymin = Math.min(...ys), ymax = Math.max(...ys);
    const xmin = Math.min(...s.x), xmax = Math.max(...s.x);
    const sx = (x: number) => left + ((x - xmin) / Math.max(1e-12, xmax - xmin)) * (right - left);
    const sy = (y: number) => bottom - ((y - ymin) / Math.max(1e-12, ymax - ymin)) * (bottom - top);
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
