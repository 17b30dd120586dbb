import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { assertThrows as assertErr } from "../_assert_close.ts";
import { crc32 } from "../../io/png.ts";
import { encodeGif, encodePng, quantizeRgb, readVideo, writeVideo } from "../../io/mod.ts";

import { ffTest, movingSquare } from "./_helpers.ts";

function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

async function inflate(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("crc32 matches the standard check value", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assertEquals(crc32(new TextEncoder().encode("IEND")), 0xae426082);
});

Deno.test("encodePng: structure and filtered data inflate back to the pixels", async () => {
  const [w, h] = [7, 5];
  const rgb = noise(w * h * 3, 3);
  const png = await encodePng(rgb, w, h);
  assertEquals([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const dv = new DataView(png.buffer);
  assertEquals([dv.getUint32(16), dv.getUint32(20), png[24], png[25]], [w, h, 8, 2]);
  // Walk the chunks, check CRCs, collect IDAT.
  let o = 8;
  const types: string[] = [];
  let idat = new Uint8Array(0);
  while (o < png.length) {
    const len = dv.getUint32(o);
    const type = new TextDecoder().decode(png.subarray(o + 4, o + 8));
    assertEquals(dv.getUint32(o + 8 + len), crc32(png.subarray(o + 4, o + 8 + len)), type);
    if (type === "IDAT") idat = png.slice(o + 8, o + 8 + len);
    types.push(type);
    o += 12 + len;
  }
  assertEquals(types, ["IHDR", "IDAT", "IEND"]);
  const raw = await inflate(idat);
  assertEquals(raw.length, h * (w * 3 + 1));
  for (let y = 0; y < h; y++) {
    const row = raw.subarray(y * (w * 3 + 1));
    assertEquals(row[0], 1);
    for (let i = 0; i < w * 3; i++) {
      const left = i >= 3 ? rgb[y * w * 3 + i - 3] : 0;
      assertEquals((row[1 + i] + left) & 0xff, rgb[y * w * 3 + i]);
    }
  }
  await assertErr(() => encodePng(rgb, w + 1, h), "expected");
});

ffTest("PNG round trip through ffmpeg is exact (odd sizes, noise)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kino_png_" });
  try {
    for (const [w, h] of [[1, 1], [37, 23], [130, 3]]) {
      const rgb = noise(w * h * 3, w * 31 + h);
      const path = `${dir}/img_${w}x${h}.png`;
      await Deno.writeFile(path, await encodePng(rgb, w, h));
      const v = await readVideo(path);
      assertEquals([v.t, v.h, v.w], [1, h, w]);
      assertEquals(v.frames, rgb);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

ffTest("writeVideo PNG frames: folder, %05d pattern and plain name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kino_png_" });
  try {
    const [t, h, w] = [3, 9, 11];
    const clip = movingSquare(t, h, w);
    const a = await writeVideo(`${dir}/out/`, clip, { t, h, w, fps: 5 });
    assertEquals(a, [0, 1, 2].map((i) => `${dir}/out/frame_0000${i}.png`));
    const b = await writeVideo(`${dir}/f%03d.png`, clip, { t, h, w, fps: 5 });
    assertEquals(b, [0, 1, 2].map((i) => `${dir}/f00${i}.png`));
    const c = await writeVideo(`${dir}/one.png`, clip.subarray(0, h * w * 3), {
      t: 1,
      h,
      w,
      fps: 5,
    });
    assertEquals(c, [`${dir}/one.png`]);
    for (let i = 0; i < t; i++) {
      const v = await readVideo(b[i]);
      assertEquals(v.frames, clip.subarray(i * h * w * 3, (i + 1) * h * w * 3));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodeGif: header, loop extension, delay, trailer, argument checks", async () => {
  const [t, h, w] = [3, 5, 6];
  const gif = encodeGif(movingSquare(t, h, w), t, h, w, 20);
  assertEquals(new TextDecoder().decode(gif.subarray(0, 6)), "GIF89a");
  assertEquals([gif[6] | (gif[7] << 8), gif[8] | (gif[9] << 8)], [w, h]);
  const text = new TextDecoder("latin1").decode(gif);
  assert(text.includes("NETSCAPE2.0"));
  const gce = text.indexOf("\x21\xf9\x04");
  assertEquals(gif[gce + 4] | (gif[gce + 5] << 8), 5); // 100 / 20 fps = 5 cs
  assertEquals(text.split("\x21\xf9\x04").length - 1, t);
  assertEquals(gif[gif.length - 1], 0x3b);
  await assertErr(() => encodeGif(new Uint8Array(10), 1, 2, 2, 10), "T*H*W*3");
  await assertErr(() => encodeGif(new Uint8Array(12), 1, 2, 2, 0), "fps");
});

ffTest("GIF decodes in ffmpeg: frame count, size, colours close", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kino_gif_" });
  try {
    const [t, h, w] = [6, 33, 47];
    const clip = movingSquare(t, h, w);
    await writeVideo(`${dir}/c.gif`, clip, { t, h, w, fps: 10 });
    const v = await readVideo(`${dir}/c.gif`);
    assertEquals([v.t, v.h, v.w], [t, h, w]);
    assert(Math.abs(v.fps - 10) < 0.5, `fps ${v.fps}`);
    assertEquals(v.frames, quantizeRgb(clip)); // exactly the palette colours
    let maxErr = 0;
    for (let i = 0; i < clip.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(v.frames[i] - clip[i]));
    }
    assert(maxErr <= 26, `max colour error ${maxErr}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

ffTest("GIF LZW survives table resets (large noise frames, 12-bit codes)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kino_gif_" });
  try {
    const [t, h, w] = [2, 157, 203];
    const clip = noise(t * h * w * 3, 7);
    // Second frame: a flat region then noise, so long runs and resets mix.
    clip.fill(128, t * h * w * 3 / 2, t * h * w * 3 / 2 + 20000);
    await writeVideo(`${dir}/n.gif`, clip, { t, h, w, fps: 4 });
    const v = await readVideo(`${dir}/n.gif`);
    assertEquals([v.t, v.h, v.w], [t, h, w]);
    assertEquals(v.frames, quantizeRgb(clip));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
