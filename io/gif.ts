/**
 * An animated GIF89a encoder in plain TypeScript (works without ffmpeg).
 *
 * Colours map to one global, fixed 252-colour palette: a 6x7x6 RGB cube (6 red, 7 green, 6 blue
 * levels, padded to 256 entries), so the worst per-channel error is about 26 levels (red/blue)
 * and 21 (green). Every frame is a full-size image compressed with variable-width LZW
 * (8-bit minimum code size, clear and end codes, codes up to 12 bits, a clear code when the
 * table is full). A NETSCAPE2.0 extension makes the animation loop forever.
 */

const R_LEVELS = 6;
const G_LEVELS = 7;
const B_LEVELS = 6;

/** The 256-entry global palette (RGB triples); entries 252..255 are black padding. */
export const GIF_PALETTE: Uint8Array = (() => {
  const p = new Uint8Array(256 * 3);
  let i = 0;
  for (let r = 0; r < R_LEVELS; r++) {
    for (let g = 0; g < G_LEVELS; g++) {
      for (let b = 0; b < B_LEVELS; b++) {
        p[i++] = Math.round((r * 255) / (R_LEVELS - 1));
        p[i++] = Math.round((g * 255) / (G_LEVELS - 1));
        p[i++] = Math.round((b * 255) / (B_LEVELS - 1));
      }
    }
  }
  return p;
})();

/** Index in {@linkcode GIF_PALETTE} of the nearest cube colour to (r, g, b). */
export function paletteIndex(r: number, g: number, b: number): number {
  const ri = Math.round((r * (R_LEVELS - 1)) / 255);
  const gi = Math.round((g * (G_LEVELS - 1)) / 255);
  const bi = Math.round((b * (B_LEVELS - 1)) / 255);
  return (ri * G_LEVELS + gi) * B_LEVELS + bi;
}

/** The RGB data as it will look in the GIF (each pixel replaced by its palette colour). */
export function quantizeRgb(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i += 3) {
    const k = paletteIndex(rgb[i], rgb[i + 1], rgb[i + 2]) * 3;
    out[i] = GIF_PALETTE[k];
    out[i + 1] = GIF_PALETTE[k + 1];
    out[i + 2] = GIF_PALETTE[k + 2];
  }
  return out;
}

/** A growable byte buffer. */
class Bytes {
  buf = new Uint8Array(1 << 16);
  len = 0;
  push(b: number): void {
    if (this.len === this.buf.length) this.grow(1);
    this.buf[this.len++] = b;
  }
  pushAll(a: ArrayLike<number>): void {
    if (this.len + a.length > this.buf.length) this.grow(a.length);
    this.buf.set(a, this.len);
    this.len += a.length;
  }
  u16(v: number): void {
    this.push(v & 0xff);
    this.push((v >> 8) & 0xff);
  }
  ascii(s: string): void {
    for (let i = 0; i < s.length; i++) this.push(s.charCodeAt(i));
  }
  private grow(extra: number): void {
    const n = new Uint8Array(Math.max(this.buf.length * 2, this.len + extra));
    n.set(this.buf.subarray(0, this.len));
    this.buf = n;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/**
 * LZW-compresses palette indices (GIF flavour) and appends them to `out` as data sub-blocks
 * (at most 255 bytes each) followed by the zero-length block terminator.
 */
function lzwEncode(indices: Uint8Array, minCodeSize: number, out: Bytes, table: Int16Array): void {
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  let codeSize = minCodeSize + 1;
  let next = eoi + 1;
  table.fill(-1);

  const block = new Uint8Array(255);
  let blockLen = 0;
  let bitBuf = 0;
  let bitCount = 0;
  const flushBlock = () => {
    out.push(blockLen);
    out.pushAll(block.subarray(0, blockLen));
    blockLen = 0;
  };
  const emit = (code: number, size: number) => {
    bitBuf |= code << bitCount; // LSB first
    bitCount += size;
    while (bitCount >= 8) {
      block[blockLen++] = bitBuf & 0xff;
      if (blockLen === 255) flushBlock();
      bitBuf >>>= 8;
      bitCount -= 8;
    }
  };

  out.push(minCodeSize);
  emit(clear, codeSize);
  let cur = indices[0];
  for (let i = 1; i < indices.length; i++) {
    const k = indices[i];
    const key = (cur << 8) | k;
    const found = table[key];
    if (found >= 0) {
      cur = found;
      continue;
    }
    emit(cur, codeSize);
    if (next === 4096) {
      // Table full: reset it (the decoder sees the clear code at 12 bits).
      emit(clear, codeSize);
      table.fill(-1);
      next = eoi + 1;
      codeSize = minCodeSize + 1;
    } else {
      // The decoder lags one entry behind, so the width grows as the new code is created.
      if (next >= 1 << codeSize) codeSize++;
      table[key] = next++;
    }
    cur = k;
  }
  emit(cur, codeSize);
  emit(eoi, codeSize);
  if (bitCount > 0) {
    block[blockLen++] = bitBuf & 0xff;
    if (blockLen === 255) flushBlock();
  }
  if (blockLen > 0) flushBlock();
  out.push(0);
}

/**
 * Encodes `t` RGB frames (`frames` is T*H*W*3 uint8, frame-major, rows top first) as an animated,
 * endlessly looping GIF89a at `fps` frames per second. GIF delays are in hundredths of a second,
 * so the delay is rounded (and at least 2, since most viewers slow down shorter delays).
 */
export function encodeGif(
  frames: Uint8Array,
  t: number,
  h: number,
  w: number,
  fps: number,
): Uint8Array {
  for (const [name, v] of [["t", t], ["h", h], ["w", w]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`encodeGif: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (w > 65535 || h > 65535) throw new RangeError(`encodeGif: ${w}x${h} exceeds 65535`);
  if (!(fps > 0)) throw new RangeError(`encodeGif: fps must be positive, got ${fps}`);
  if (frames.length !== t * h * w * 3) {
    throw new RangeError(
      `encodeGif: expected T*H*W*3 = ${t}*${h}*${w}*3 = ${
        t * h * w * 3
      } bytes, got ${frames.length}`,
    );
  }
  const delay = Math.max(2, Math.min(65535, Math.round(100 / fps)));
  const out = new Bytes();
  out.ascii("GIF89a");
  out.u16(w);
  out.u16(h);
  out.push(0xf7); // global colour table, 8-bit colour resolution, 2^(7+1) = 256 entries
  out.push(0); // background colour index
  out.push(0); // pixel aspect ratio: unspecified
  out.pushAll(GIF_PALETTE);
  if (t > 1) {
    out.pushAll([0x21, 0xff, 0x0b]);
    out.ascii("NETSCAPE2.0");
    out.pushAll([0x03, 0x01, 0x00, 0x00, 0x00]); // loop count 0 = forever
  }
  const table = new Int16Array(4096 * 256);
  const n = h * w;
  const indices = new Uint8Array(n);
  for (let f = 0; f < t; f++) {
    const base = f * n * 3;
    for (let p = 0; p < n; p++) {
      const o = base + p * 3;
      indices[p] = paletteIndex(frames[o], frames[o + 1], frames[o + 2]);
    }
    // Graphic control extension: disposal 1 (leave in place), no transparency, the delay.
    out.pushAll([0x21, 0xf9, 0x04, 0x04]);
    out.u16(delay);
    out.pushAll([0x00, 0x00]);
    // Image descriptor: the full canvas, no local colour table, not interlaced.
    out.push(0x2c);
    out.u16(0);
    out.u16(0);
    out.u16(w);
    out.u16(h);
    out.push(0);
    lzwEncode(indices, 8, out, table);
  }
  out.push(0x3b); // trailer
  return out.bytes();
}
