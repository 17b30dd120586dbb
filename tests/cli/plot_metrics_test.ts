/** `deno task plot-metrics`: tick values, labels, and that the labels are drawn. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { formatTick, logTicks, niceTicks, plot } from "../../cli/plot_metrics.ts";

Deno.test("niceTicks picks 1/2/5 x 10^k steps inside the range", () => {
  assertEquals(niceTicks(0.31, 0.71, 4), [0.4, 0.5, 0.6, 0.7]);
  assertEquals(niceTicks(1, 8575, 5), [2000, 4000, 6000, 8000]);
  assertEquals(niceTicks(-3, 7, 5), [-2, 0, 2, 4, 6]);
  assertEquals(niceTicks(-3, 7, 4), [0, 5]);
  assertEquals(niceTicks(5, 5), [5]);
});

Deno.test("logTicks uses 1, 2, 3, 5 per decade, and decades only over a wide range", () => {
  assertEquals(logTicks(0.24, 2.43), [0.3, 0.5, 1, 2]);
  assertEquals(logTicks(0.002, 300), [0.01, 0.1, 1, 10, 100]);
});

Deno.test("formatTick: integers, thousands, 3 significant digits, exponents", () => {
  assertEquals(formatTick(2000), "2000");
  assertEquals(formatTick(20000), "20k");
  assertEquals(formatTick(0.30000000000000004), "0.3");
  assertEquals(formatTick(0.12345), "0.123");
  assertEquals(formatTick(0.00025), "2.5e-4");
});

Deno.test("plot draws tick labels left of the y axis and below the x axis", () => {
  const x = Array.from({ length: 500 }, (_, i) => i + 1);
  const series = [{ x, y: x.map((s) => 2 / Math.sqrt(s)) }];
  const { rgb, w, h } = plot(series, false);
  const dark = (x0: number, x1: number, y0: number, y1: number) => {
    let n = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) if (rgb[(y * w + x) * 3]! < 50) n++;
    }
    return n;
  };
  assert(dark(0, 56, 0, h - 24) > 50, "y tick labels are drawn in the left margin");
  assert(dark(64, w, h - 18, h) > 50, "x tick labels are drawn under the axis");
  // nothing is drawn in the corner left of the x labels and below the y labels
  assertEquals(dark(0, 20, h - 12, h), 0);
});
