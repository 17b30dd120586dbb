import {
  encodeSafetensors,
  loadSafetensors,
  MAX_HEADER_BYTES,
  parseSafetensorsHeader,
  SafetensorsError,
  SafeTensorsFile,
  saveSafetensors,
} from "../../engine/safetensors.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`Assertion failed: ${msg}`);
}

function assertArrayEquals(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
): void {
  assert(
    actual.length === expected.length,
    `${what}: length ${actual.length} != ${expected.length}`,
  );
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert(Object.is(a, e) || a === e, `${what}[${i}]: ${a} != ${e}`);
  }
}

function hex(bits: ArrayLike<number>): string {
  return Array.from(bits, (b) => "0x" + b.toString(16).padStart(4, "0")).join(", ");
}

/** Runs `fn`, expects a SafetensorsError whose message contains every one of `words`. */
async function assertRejects(
  fn: () => unknown,
  words: string[],
): Promise<SafetensorsError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert(err !== undefined, `expected an error containing ${JSON.stringify(words)}`);
  assert(err instanceof SafetensorsError, `expected SafetensorsError, got ${err}`);
  for (const w of words) {
    assert(err.message.includes(w), `message "${err.message}" lacks "${w}"`);
  }
  return err;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kino_safetensors_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Builds a raw file from a header object and data bytes (no validation). */
function rawFile(header: unknown, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("safetensors: round-trip F32, F16, BF16, I32 with metadata", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const f32 = new Float32Array([1.5, -2.25, 3e-3, 1e20, 0, -0, 7, 8]);
    const f16bits = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00]);
    const bf16vals = new Float32Array([1, -2.5, 0.15625, 1024]);
    const i32 = new Int32Array([-1, 0, 2147483647, -2147483648]);
    const meta = { format: "pt", note: "héllo ✓", step: "12" };
    await saveSafetensors(path, {
      "z.weight": { dtype: "F32", shape: [2, 4], data: f32 },
      "a.half": { dtype: "F16", shape: [3, 2], data: f16bits },
      "m.bf": { dtype: "BF16", shape: [4], data: bf16vals },
      "idx": { dtype: "I32", shape: [2, 2], data: i32 },
      "scalar": { dtype: "F32", shape: [], data: new Float32Array([42]) },
      "empty": { dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
    }, meta);

    // Header on disk: length is a multiple of 8 and names are sorted.
    const bytes = await Deno.readFile(path);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert(n % 8 === 0, `header length ${n} is not a multiple of 8`);
    const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    const keys = Object.keys(JSON.parse(headerText)).filter((k) => k !== "__metadata__");
    assertArrayEquals(
      keys.map((k) => keys.indexOf(k)),
      [...keys].sort().map((k) => keys.indexOf(k)),
      "sorted names",
    );

    using st = await SafeTensorsFile.open(path);
    assert(JSON.stringify(st.metadata) === JSON.stringify(meta), "metadata kept");
    assert(st.names().length === 6, `6 tensors, got ${st.names()}`);
    assertArrayEquals(await st.readF32("z.weight"), f32, "f32");
    assertArrayEquals(st.info("z.weight").shape, [2, 4], "f32 shape");
    const half = await st.readAs("a.half", "f16");
    assert(half.data instanceof Uint16Array, "f16 kept compact");
    assertArrayEquals(half.data, f16bits, "f16 bits");
    assertArrayEquals(half.shape, [3, 2], "f16 shape");
    assertArrayEquals(
      await st.readF32("a.half"),
      [1, -2, 65504, 2 ** -24, -0, Infinity],
      "f16 widened",
    );
    assertArrayEquals(await st.readF32("m.bf"), bf16vals, "bf16 widened");
    const bf = await st.readAs("m.bf", "bf16");
    assertArrayEquals(bf.data, [0x3f80, 0xc020, 0x3e20, 0x4480], "bf16 bits");
    assertArrayEquals(
      (await st.readAs("m.bf", "f16")).data,
      [0x3c00, 0xc100, 0x3100, 0x6400],
      "bf16->f16",
    );
    assertArrayEquals(await st.readF32("idx"), Float32Array.from(i32), "i32");
    assertArrayEquals(new Int32Array((await st.readRaw("idx")).buffer), i32, "i32 raw");
    assertArrayEquals(await st.readF32("scalar"), [42], "scalar");
    assertArrayEquals(st.info("scalar").shape, [], "scalar shape");
    assert((await st.readF32("empty")).length === 0, "empty tensor");

    // Concurrent reads on one handle must not interleave seeks.
    const [x, y, z] = await Promise.all([
      st.readF32("z.weight"),
      st.readF32("idx"),
      st.readF32("m.bf"),
    ]);
    assertArrayEquals(x, f32, "concurrent f32");
    assertArrayEquals(y, Float32Array.from(i32), "concurrent i32");
    assertArrayEquals(z, bf16vals, "concurrent bf16");

    const all = await loadSafetensors(path);
    assertArrayEquals(all.get("z.weight")!.data, f32, "loadSafetensors");
    assertArrayEquals(all.get("idx")!.shape, [2, 2], "loadSafetensors shape");

    // In-memory encoding matches the streamed file byte for byte.
    const mem = encodeSafetensors(
      new Map([["z.weight", { dtype: "F32" as const, shape: [2, 4], data: f32 }]]),
    );
    const parsed = parseSafetensorsHeader(mem, mem.length);
    assert(parsed.tensors.get("z.weight")!.begin === parsed.dataStart, "begin is absolute");
  });
});

Deno.test("safetensors: bf16 rounding matches hand-computed bits", async () => {
  const vals = new Float32Array([
    1.0, // 0x3F80
    1.00390625, // 0x3F808000: tie, rounds to even 0x3F80
    1.01171875, // 0x3F818000: tie, rounds to even 0x3F82
    1.0078125, // exactly 0x3F81
    -2.5, // 0xC020
    NaN, // 0x7FC0
    Infinity, // 0x7F80
    -Infinity, // 0xFF80
    3.4028234663852886e38, // max f32 rounds up to Inf
  ]);
  const want = [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xc020, 0x7fc0, 0x7f80, 0xff80, 0x7f80];
  const bytes = encodeSafetensors({ v: { dtype: "BF16", shape: [vals.length], data: vals } });
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/b.safetensors`, bytes);
    using st = await SafeTensorsFile.open(`${dir}/b.safetensors`);
    const got = (await st.readAs("v", "bf16")).data;
    assert(hex(got) === hex(want), `bf16 bits ${hex(got)} != ${hex(want)}`);
  });
});

Deno.test("safetensors: f16 rounding matches hand-computed bits", async () => {
  const vals = new Float32Array([65504, 65520, 6.1e-5, 1 / 3, -2.5, 1e-8, Infinity, NaN]);
  // 65520 is the tie between 65504 and 65536 and rounds (to even) to Inf; 6.1e-5 is subnormal.
  const want = [0x7bff, 0x7c00, 0x03ff, 0x3555, 0xc100, 0x0000, 0x7c00, 0x7e00];
  const bytes = encodeSafetensors({ v: { dtype: "F16", shape: [vals.length], data: vals } });
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/h.safetensors`, bytes);
    using st = await SafeTensorsFile.open(`${dir}/h.safetensors`);
    const got = (await st.readAs("v", "f16")).data;
    assert(hex(got) === hex(want), `f16 bits ${hex(got)} != ${hex(want)}`);
    const back = await st.readF32("v");
    assert(back[2] === 1023 * 2 ** -24, `subnormal widened to ${back[2]}`);
  });
});

Deno.test("safetensors: truncated file is reported with sizes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/t.safetensors`;
    await saveSafetensors(path, {
      w: { dtype: "F32", shape: [100], data: new Float32Array(100) },
    });
    const full = await Deno.readFile(path);
    await Deno.writeFile(path, full.subarray(0, full.length - 100));
    await assertRejects(
      () => SafeTensorsFile.open(path),
      [path, "truncated", "400 bytes", "300 bytes", "re-download"],
    );
    await Deno.writeFile(path, full.subarray(0, 5));
    await assertRejects(() => SafeTensorsFile.open(path), [path, "too short", "8"]);
    await Deno.writeFile(path, full.subarray(0, 20));
    await assertRejects(() => SafeTensorsFile.open(path), ["header length", "larger"]);
  });
});

Deno.test("safetensors: corrupt header JSON is reported", async () => {
  const garbage = new TextEncoder().encode("{not json at all!");
  const bytes = new Uint8Array(8 + garbage.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(garbage.length), true);
  bytes.set(garbage, 8);
  await assertRejects(() => parseSafetensorsHeader(bytes, bytes.length, "bad.st"), [
    "bad.st",
    "not valid JSON",
  ]);
  const arr = rawFile([1, 2], new Uint8Array());
  await assertRejects(() => parseSafetensorsHeader(arr, arr.length), ["not an object"]);
  const utf = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0xff]);
  await assertRejects(() => parseSafetensorsHeader(utf, utf.length), ["UTF-8"]);
});

Deno.test("safetensors: malformed entries are reported", async () => {
  const cases: [unknown, string[]][] = [
    [{ a: { dtype: "F32", shape: [1] } }, ['"a"', "missing", "data_offsets"]],
    [{ a: { dtype: "Q4", shape: [1], data_offsets: [0, 4] } }, ["unknown dtype", "Q4"]],
    [{ a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, ["shape", "non-negative"]],
    [{ a: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, ["shape", "non-negative"]],
    [{ a: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, ["end before begin"]],
    [{ __metadata__: { n: 3 } }, ["__metadata__", '"n"', "strings"]],
  ];
  for (const [header, words] of cases) {
    const f = rawFile(header, new Uint8Array(16));
    await assertRejects(() => parseSafetensorsHeader(f, f.length, "m.st"), ["m.st", ...words]);
  }
});

Deno.test("safetensors: overlapping offsets are reported", async () => {
  const f = rawFile({
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
  }, new Uint8Array(12));
  await assertRejects(() => parseSafetensorsHeader(f, f.length), [
    "overlapping",
    '"a"',
    '"b"',
  ]);
});

Deno.test("safetensors: wrong byte length is reported", async () => {
  const f = rawFile(
    { a: { dtype: "BF16", shape: [2, 3], data_offsets: [0, 8] } },
    new Uint8Array(8),
  );
  await assertRejects(() => parseSafetensorsHeader(f, f.length), [
    "byte length mismatch",
    "12 bytes",
    "8 bytes",
  ]);
});

Deno.test("safetensors: oversized header length is reported", async () => {
  const f = rawFile({}, new Uint8Array(), 1n << 40n);
  await assertRejects(() => parseSafetensorsHeader(f, f.length, "h.st"), [
    "h.st",
    "header length",
    "100 MB",
  ]);
  const g = rawFile({}, new Uint8Array(), BigInt(MAX_HEADER_BYTES) + 1n);
  await assertRejects(() => parseSafetensorsHeader(g, 1e12), ["header length", "limit"]);
  const h = rawFile({}, new Uint8Array(), 1000n);
  await assertRejects(() => parseSafetensorsHeader(h, h.length), ["header length", "larger"]);
});

Deno.test("safetensors: missing tensor error lists names; closed file throws", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/n.safetensors`;
    await saveSafetensors(path, {
      "blocks.0.attn.weight": { dtype: "F32", shape: [1], data: new Float32Array(1) },
      "blocks.1.attn.weight": { dtype: "F32", shape: [1], data: new Float32Array(1) },
    });
    const st = await SafeTensorsFile.open(path);
    await assertRejects(() => st.info("model.blocks.0.attn.weight"), [
      'no tensor named "model.blocks.0.attn.weight"',
      '"blocks.0.attn.weight"',
    ]);
    st.close();
    st.close();
    await assertRejects(() => st.readRaw("blocks.0.attn.weight"), ["closed"]);
  });
});

Deno.test("safetensors: invalid tensors are refused on write", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/w.safetensors`;
    await assertRejects(
      () => saveSafetensors(path, { a: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
      ['"a"', "3 elements", "2 data elements"],
    );
    await assertRejects(
      () => saveSafetensors(path, { a: { dtype: "I32", shape: [2], data: new Float32Array(2) } }),
      ['"a"', "Int32Array"],
    );
    const left = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert(left.length === 0, `nothing written on failure, found ${left}`);
  });
});

Deno.test("safetensors: save is atomic and leaves no temp files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/ckpt.safetensors`;
    for (let step = 0; step < 3; step++) {
      await saveSafetensors(path, {
        w: { dtype: "F32", shape: [4], data: new Float32Array([step, 1, 2, 3]) },
      }, { step: String(step) });
    }
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert(names.length === 1 && names[0] === "ckpt.safetensors", `dir holds ${names}`);
    assert(!names.some((n) => n.includes(".tmp-")), "no .tmp- files");
    using st = await SafeTensorsFile.open(path);
    assert(st.metadata.step === "2", "last save wins");
    assertArrayEquals(await st.readF32("w"), [2, 1, 2, 3], "last data");
  });
});

const fixture = new URL("../../../shared/fixtures/tiny/ops/norms.safetensors", import.meta.url);
let haveFixture = false;
try {
  haveFixture = Deno.statSync(fixture).isFile;
} catch {
  haveFixture = false;
}

if (haveFixture) {
  Deno.test("safetensors: reads the Python-generated norms fixture", async () => {
    using st = await SafeTensorsFile.open(decodeURIComponent(fixture.pathname));
    const t = st.info("mmdit_rmsnorm.x");
    assert(t.dtype === "F32", `dtype ${t.dtype}`);
    assertArrayEquals(t.shape, [2, 3, 5, 16], "shape");
    const x = await st.readF32("mmdit_rmsnorm.x");
    assert(x.length === 480, `length ${x.length}`);
    // First 4 values as read by Python's struct module.
    const want = [1.2077817916870117, -0.39779025316238403, 0.5693293809890747, 1.9866366386413574];
    assertArrayEquals(x.subarray(0, 4), new Float32Array(want), "first values");
  });
} else {
  Deno.test({
    ignore: true,
    name:
      "safetensors: reads the Python-generated norms fixture (skipped: ../shared/fixtures not found)",
    fn() {},
  });
}
