import { gpu, gpuTest } from "../_gpu.ts";
import { assertClose, assertThrows } from "../_assert_close.ts";
import { add, mul } from "../../engine/ops/elementwise.ts";
import { read } from "../../engine/ops/movement.ts";
import {
  normalCpu,
  randNormal,
  randUniform,
  seedWords,
  threefry2x32,
  uniformCpu,
} from "../../engine/ops/random.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

function hex(v: readonly number[]): string {
  return v.map((x) => "0x" + x.toString(16).padStart(8, "0")).join(" ");
}

Deno.test("threefry2x32: Random123 known-answer vectors (20 rounds)", () => {
  const kat: [[number, number], [number, number], [number, number]][] = [
    [[0, 0], [0, 0], [0x6b200159, 0x99ba4efe]],
    [[0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x1cb996fc, 0xbb002be7]],
    [[0x13198a2e, 0x03707344], [0x243f6a88, 0x85a308d3], [0xc4923a9c, 0x483df7a0]],
  ];
  for (const [key, ctr, want] of kat) {
    const got = threefry2x32(key, ctr);
    assert(
      got[0] === want[0] && got[1] === want[1],
      `key ${hex(key)} ctr ${hex(ctr)}: got ${hex(got)}, want ${hex(want)}`,
    );
  }
});

Deno.test("seedWords: 64-bit seeds split into (lo, hi) and are validated", async () => {
  assert(seedWords("t", 5).join() === "5,0", "small seed");
  assert(seedWords("t", 2 ** 40 + 7).join() === `7,${2 ** 8}`, "seed 2^40 + 7");
  assert(seedWords("t", 0xfedcba9876543210n).join() === `${0x76543210},${0xfedcba98}`, "bigint");
  await assertThrows(() => seedWords("randUniform", -1), "randUniform", "seed -1");
  await assertThrows(() => seedWords("randUniform", 1.5), "seed 1.5");
  await assertThrows(() => seedWords("randUniform", 1n << 64n), "2^64");
});

const SEEDS: { seed: number | bigint; offset: number }[] = [
  { seed: 0, offset: 0 },
  { seed: 42, offset: 3 },
  { seed: 2 ** 40 + 12345, offset: 0xffffffff },
  { seed: 0xfedcba9876543210n, offset: 65536 },
];

gpuTest("randUniform: GPU bits equal the CPU twin exactly (scalar and vec4 kernels)", async () => {
  for (const shape of [[1], [7], [33], [257], [4, 64], [3, 5, 7]]) {
    for (const s of SEEDS) {
      const got = await read(randUniform(shape, s));
      const want = uniformCpu(shape, s);
      for (let i = 0; i < want.length; i++) {
        const g = got[i]!;
        assert(
          g === want[i] && g >= 0 && g < 1 && Number.isInteger(g * 2 ** 24),
          `[${shape}] seed ${s.seed} offset ${s.offset} at ${i}: got ${g}, want ${want[i]}`,
        );
      }
    }
  }
});

gpuTest("randUniform: streams, determinism, ranges and fusion", async () => {
  const a = await read(randUniform([1000], { seed: 9 }));
  const a2 = await read(randUniform([1000], { seed: 9 }));
  const b = await read(randUniform([1000], { seed: 9, offset: 1 }));
  const c = await read(randUniform([1000], { seed: 10 }));
  assert(a.every((v, i) => v === a2[i]), "same seed, same numbers");
  const same = (x: Float32Array, y: Float32Array) => x.filter((v, i) => v === y[i]).length;
  assert(same(a, b) < 5 && same(a, c) < 5, `streams overlap: ${same(a, b)}, ${same(a, c)}`);
  // other ranges: low + u * (high - low). A GPU may fuse it into one FMA (NVIDIA's Vulkan driver
  // does), skipping the product's rounding: up to half an ulp of a product below 8, 2^-22,
  // absolute (seen: 2.4e-7 on an H100), then one rounding of the sum
  const r = await read(randUniform([257], { seed: 3, low: -2, high: 5 }));
  const rc = uniformCpu(257, { seed: 3, low: -2, high: 5 });
  assertClose(r, rc, { atol: 2 ** -22, rtol: 2 ** -23, label: "[-2, 5)" });
  assert(r.every((v) => v >= -2 && v < 5), "range [-2, 5)");
  // fused into its consumer: one dispatch, same values
  const rt = gpu();
  const y = add(mul(randUniform([64], { seed: 4 }), 2), 1);
  const before = rt.counters.dispatches;
  const yv = await read(y);
  assert(
    rt.counters.dispatches - before === 1,
    `fused: ${rt.counters.dispatches - before} dispatches`,
  );
  const u = uniformCpu(64, { seed: 4 });
  assertClose(yv, u.map((v) => v * 2 + 1), { atol: 0, rtol: 0, label: "fused uniform" });
  await assertThrows(() => randUniform([2], { seed: 1, offset: 2 ** 32 }), "randUniform", "offset");
  await assertThrows(() => randUniform([2], { seed: 1, low: 1, high: 0 }), "randUniform", "high");
});

gpuTest("randNormal: within 1e-5 of the CPU twin (scalar and vec4 kernels)", async () => {
  for (const shape of [[1], [7], [33], [4097], [16, 64]]) {
    for (const s of SEEDS) {
      const got = await read(randNormal(shape, s));
      const want = normalCpu(shape, s);
      assertClose(got, want, {
        atol: 1e-5,
        rtol: 0,
        shape,
        label: `normal [${shape}] seed ${s.seed}`,
      });
    }
  }
  const g = await read(randNormal([333], { seed: 5, offset: 2, mean: 3, std: 0.5 }));
  const w = normalCpu(333, { seed: 5, offset: 2, mean: 3, std: 0.5 });
  assertClose(g, w, { atol: 1e-5, rtol: 0, label: "mean 3, std 0.5" });
  await assertThrows(() => randNormal([2], { seed: 1, std: -1 }), "randNormal", "std");
});

gpuTest("randNormal / randUniform: statistics of 1e5 samples", async () => {
  const n = 100_000;
  const z = await read(randNormal([n], { seed: 1234 }));
  let m = 0;
  for (const v of z) m += v;
  m /= n;
  let v2 = 0;
  for (const v of z) v2 += (v - m) ** 2;
  const sd = Math.sqrt(v2 / n);
  assert(Math.abs(m) < 0.01, `normal mean ${m}`);
  assert(Math.abs(sd - 1) < 0.01, `normal std ${sd}`);
  const within1 = z.filter((v) => Math.abs(v) < 1).length / n;
  assert(Math.abs(within1 - 0.6827) < 0.01, `P(|z| < 1) = ${within1}`);
  const u = await read(randUniform([n], { seed: 1234, offset: 1 }));
  let um = 0;
  for (const v of u) um += v;
  um /= n;
  let uv = 0;
  for (const v of u) uv += (v - um) ** 2;
  assert(Math.abs(um - 0.5) < 0.01, `uniform mean ${um}`);
  assert(Math.abs(uv / n - 1 / 12) < 0.003, `uniform var ${uv / n}`);
});
