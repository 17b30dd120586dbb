/**
 * Safetensors reader and writer (CPU only).
 *
 * Layout: an 8-byte little-endian u64 header length `N`, then `N` bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {key: value}}` (padded with
 * spaces), then the raw little-endian C-contiguous tensor bytes. Offsets in the JSON are relative
 * to the first byte after the header.
 *
 * Reading never loads the whole file: {@link SafeTensorsFile.open} reads only the header and each
 * tensor is read with a seek. Writing streams tensor by tensor into a temporary file that is
 * synced and renamed into place, so a crash never leaves a half-written checkpoint behind.
 *
 * The host is assumed to be little-endian (true of every platform Deno and WebGPU run on).
 *
 * @module
 */

import { bf16ToF32, type DType, f16ToF32, f32ToBf16, f32ToF16 } from "./dtype.ts";

/** Element types of the safetensors format that this module understands. */
export type SafetensorsDType =
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E5M2"
  | "F8_E4M3"
  | "F8_E8M0"
  | "I16"
  | "U16"
  | "F16"
  | "BF16"
  | "I32"
  | "U32"
  | "F32"
  | "I64"
  | "U64"
  | "F64"
  | "C64";

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
  C64: 8,
};

/** Largest header this module accepts (the Python and Rust libraries use the same limit). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Where one tensor lives in a safetensors file. */
export interface TensorInfo {
  /** Tensor name (the JSON key). */
  name: string;
  /** Element type as spelled in the file. */
  dtype: SafetensorsDType;
  /** Dimensions, outermost first; `[]` for a scalar. */
  shape: number[];
  /** Absolute byte offset of the first byte in the file. */
  begin: number;
  /** Absolute byte offset one past the last byte in the file. */
  end: number;
}

/** A malformed or unreadable safetensors file; the message names the file, the problem and a fix. */
export class SafetensorsError extends Error {
  /** The file concerned, or `undefined` for in-memory data. */
  readonly path: string | undefined;

  /**
   * Builds the message from the file, the problem and an optional fix.
   *
   * @param path File concerned (`undefined` for in-memory data).
   * @param problem What is wrong.
   * @param fix What to do about it, if there is something sensible to suggest.
   */
  constructor(path: string | undefined, problem: string, fix?: string) {
    super(`${path ?? "Safetensors data"}: ${problem}${fix ? ` — ${fix}` : ""}`);
    this.name = "SafetensorsError";
    this.path = path;
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(path: string | undefined): void {
  if (!LITTLE_ENDIAN) {
    throw new SafetensorsError(path, "big-endian hosts are not supported");
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isDType(v: unknown): v is SafetensorsDType {
  return typeof v === "string" && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, v);
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function fmtBytes(n: number): string {
  return `${n} byte${n === 1 ? "" : "s"}`;
}

/**
 * Reads the u64 header length from the first 8 bytes and checks it against the file size and
 * the 100 MB limit. Returns the header length as a number.
 */
function checkHeaderLength(bytes: Uint8Array, fileSize: number, path?: string): number {
  if (fileSize < 8 || bytes.length < 8) {
    throw new SafetensorsError(
      path,
      `file is too short to be safetensors: ${fmtBytes(Math.min(fileSize, bytes.length))}, ` +
        "need at least 8 for the header length",
      "the file is empty or truncated; re-download or re-export it",
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      path,
      `header length ${n} bytes exceeds the ${MAX_HEADER_BYTES / 1e6} MB limit`,
      "this is probably not a safetensors file, or its first 8 bytes are corrupt",
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new SafetensorsError(
      path,
      `header length ${len} bytes is larger than the rest of the file (${fmtBytes(fileSize - 8)})`,
      "the file is truncated or not a safetensors file; re-download it",
    );
  }
  return len;
}

/**
 * Validates a safetensors header. `bytes` starts at byte 0 of the file and holds at least the
 * 8-byte length and the JSON header (it may hold more, e.g. the whole file); `fileSize` is the
 * size of the whole file, used to detect truncation. Pure: touches no files.
 *
 * @returns The tensors (absolute offsets, in file order), the `__metadata__` map and the offset
 *   of the first data byte.
 * @throws {SafetensorsError} When anything about the header is malformed.
 *
 * @example
 * ```ts
 * import { encodeSafetensors, parseSafetensorsHeader } from "./safetensors.ts";
 * const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array(2) } });
 * const { tensors, dataStart } = parseSafetensorsHeader(bytes, bytes.length);
 * console.log(tensors.get("w")!.begin === dataStart); // true
 * ```
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  fileSize: number,
  path?: string,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string>; dataStart: number } {
  const headerLen = checkHeaderLength(bytes, fileSize, path);
  const dataStart = 8 + headerLen;
  if (bytes.length < dataStart) {
    throw new SafetensorsError(
      path,
      `header needs ${fmtBytes(headerLen)} but only ${fmtBytes(bytes.length - 8)} were given`,
    );
  }
  const corrupt = "the header is corrupt; re-download or re-export the file";
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    throw new SafetensorsError(path, "header is not valid UTF-8", corrupt);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const snippet = JSON.stringify(text.slice(0, 40));
    throw new SafetensorsError(
      path,
      `header is not valid JSON (${(e as Error).message}; starts with ${snippet})`,
      corrupt,
    );
  }
  if (!isObject(json)) {
    throw new SafetensorsError(path, "header JSON is not an object", corrupt);
  }

  const metadata: Record<string, string> = {};
  const raw = json.__metadata__;
  if (raw !== undefined) {
    if (!isObject(raw)) {
      throw new SafetensorsError(path, "__metadata__ is not an object of strings", corrupt);
    }
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== "string") {
        throw new SafetensorsError(
          path,
          `__metadata__ value for "${k}" is ${
            v === null ? "null" : typeof v
          }, but metadata values must be strings`,
          "store numbers and objects as JSON strings",
        );
      }
      metadata[k] = v;
    }
  }

  const dataSize = fileSize - dataStart;
  const list: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") continue;
    const where = `tensor "${name}"`;
    if (!isObject(entry)) {
      throw new SafetensorsError(path, `${where} entry is not an object`, corrupt);
    }
    for (const key of ["dtype", "shape", "data_offsets"]) {
      if (!(key in entry)) {
        throw new SafetensorsError(path, `${where} entry is missing "${key}"`, corrupt);
      }
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isDType(dtype)) {
      throw new SafetensorsError(
        path,
        `${where} has unknown dtype ${JSON.stringify(dtype)} (known: ${
          Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")
        })`,
        "convert the checkpoint to a supported dtype such as F32, F16 or BF16",
      );
    }
    if (
      !Array.isArray(shape) ||
      !shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new SafetensorsError(
        path,
        `${where} has shape ${JSON.stringify(shape)}, expected an array of non-negative integers`,
        corrupt,
      );
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new SafetensorsError(
        path,
        `${where} has data_offsets ${
          JSON.stringify(offsets)
        }, expected [begin, end] non-negative integers`,
        corrupt,
      );
    }
    const [b, e] = offsets as [number, number];
    if (e < b) {
      throw new SafetensorsError(
        path,
        `${where} has data_offsets [${b}, ${e}] with end before begin`,
        corrupt,
      );
    }
    const numel = numelOf(shape as number[]);
    const want = numel * SAFETENSORS_DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(want) || want !== e - b) {
      throw new SafetensorsError(
        path,
        `${where} byte length mismatch: shape [${
          (shape as number[]).join(", ")
        }] of ${dtype} needs ${fmtBytes(want)} but data_offsets [${b}, ${e}] span ${
          fmtBytes(e - b)
        }`,
        corrupt,
      );
    }
    list.push({ name, dtype, shape: [...(shape as number[])], begin: b, end: e });
  }

  list.sort((x, y) => x.begin - y.begin || x.end - y.end);
  let prev: TensorInfo | undefined; // sorted by begin, so with no overlap the previous one ends last
  for (const t of list) {
    if (prev && t.begin < prev.end) {
      throw new SafetensorsError(
        path,
        `tensors "${prev.name}" [${prev.begin}, ${prev.end}] and "${t.name}" [${t.begin}, ${t.end}] have overlapping data_offsets`,
        corrupt,
      );
    }
    prev = t;
  }
  const maxEnd = prev?.end ?? 0;
  if (maxEnd > dataSize) {
    throw new SafetensorsError(
      path,
      `file is truncated: header says ${fmtBytes(maxEnd)} of data, file has ${
        fmtBytes(Math.max(0, dataSize))
      }`,
      "re-download it",
    );
  }

  const tensors = new Map<string, TensorInfo>();
  for (const t of list) {
    tensors.set(t.name, { ...t, begin: t.begin + dataStart, end: t.end + dataStart });
  }
  return { tensors, metadata, dataStart };
}

async function readExact(
  file: Deno.FsFile,
  buf: Uint8Array,
  path: string,
  what: string,
): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await file.read(buf.subarray(off));
    if (n === null) {
      throw new SafetensorsError(
        path,
        `unexpected end of file while reading ${what} (got ${fmtBytes(off)} of ${buf.length})`,
        "the file is truncated or was changed while open; re-download it",
      );
    }
    off += n;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/**
 * An open safetensors file. Only the header is read on open; tensors are read one at a time with
 * a seek, so files larger than memory are fine. Reads on one instance are serialised, so
 * concurrent `readRaw` calls are safe.
 *
 * @example
 * ```ts ignore
 * using st = await SafeTensorsFile.open("model.safetensors");
 * console.log(st.names(), st.metadata);
 * const w = await st.readF32("proj.weight");
 * const { data } = await st.readAs("proj.weight", "bf16"); // Uint16Array bits, not widened
 * ```
 */
export class SafeTensorsFile implements Disposable {
  /** Path the file was opened from. */
  readonly path: string;
  /** The `__metadata__` strings (empty when the file has none). */
  readonly metadata: Record<string, string>;
  /** Every tensor, in file (offset) order. */
  readonly tensors: Map<string, TensorInfo>;
  /** Total file size in bytes at open time. */
  readonly size: number;
  #file: Deno.FsFile | null;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    path: string,
    file: Deno.FsFile,
    size: number,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.path = path;
    this.#file = file;
    this.size = size;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /**
   * Opens `path` and reads and validates its header only.
   *
   * @throws {SafetensorsError} When the header is malformed or the file is truncated.
   */
  static async open(path: string): Promise<SafeTensorsFile> {
    requireLittleEndian(path);
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const prefix = new Uint8Array(Math.min(8, size));
      await readExact(file, prefix, path, "the header length");
      const headerLen = checkHeaderLength(prefix, size, path);
      const head = new Uint8Array(8 + headerLen);
      head.set(prefix);
      await readExact(file, head.subarray(8), path, "the header");
      const { tensors, metadata } = parseSafetensorsHeader(head, size, path);
      return new SafeTensorsFile(path, file, size, tensors, metadata);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  /** True when the file has a tensor called `name`. */
  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /**
   * Location, dtype and shape of `name`.
   *
   * @throws {SafetensorsError} Listing a few available names when there is no such tensor.
   */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (t) return t;
    const all = this.names();
    const leaf = name.split(".").pop()!;
    const similar = all.filter((n) => n.split(".").pop() === leaf);
    const shown = (similar.length ? similar : all).slice(0, 5).map((n) => `"${n}"`);
    const more = (similar.length || all.length) > shown.length ? ", ..." : "";
    throw new SafetensorsError(
      this.path,
      `no tensor named "${name}" among ${all.length}` +
        (all.length ? ` (${similar.length ? "similar" : "e.g."}: ${shown.join(", ")}${more})` : ""),
      "check the name and any prefix the checkpoint uses",
    );
  }

  /** Reads the raw little-endian bytes of `name` (a fresh, 8-byte-aligned buffer). */
  readRaw(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    return this.#exclusive(async () => {
      const file = this.#file;
      if (!file) throw new SafetensorsError(this.path, "file is closed", "open it again");
      const out = new Uint8Array(t.end - t.begin);
      if (out.length === 0) return out;
      await file.seek(t.begin, Deno.SeekMode.Start);
      await readExact(file, out, this.path, `tensor "${name}"`);
      return out;
    });
  }

  /**
   * Reads `name` as f32: F32 as is, F16/BF16 widened, integer/bool/F64 types converted
   * (I64/U64 beyond 2^53 lose precision).
   *
   * @throws {SafetensorsError} For dtypes with no f32 conversion (F8 variants, C64).
   */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    const raw = await this.readRaw(name);
    return toF32(raw, t, this.path);
  }

  /** Reads `name` as f32. */
  readAs(name: string, dtype: "f32"): Promise<{ data: Float32Array; shape: number[] }>;
  /** Reads `name` as half bits; stored F16/BF16 of the same kind is returned without widening. */
  readAs(name: string, dtype: "f16" | "bf16"): Promise<{ data: Uint16Array; shape: number[] }>;
  /**
   * Reads `name` converted to a Kino storage dtype. When the file already stores that dtype
   * (F16 asked as `"f16"`, BF16 as `"bf16"`) the bits are returned as is, without widening.
   */
  readAs(
    name: string,
    dtype: Extract<DType, "f32" | "f16" | "bf16">,
  ): Promise<{ data: Float32Array | Uint16Array; shape: number[] }>;
  async readAs(
    name: string,
    dtype: Extract<DType, "f32" | "f16" | "bf16">,
  ): Promise<{ data: Float32Array | Uint16Array; shape: number[] }> {
    const t = this.info(name);
    const shape = [...t.shape];
    if ((dtype === "f16" && t.dtype === "F16") || (dtype === "bf16" && t.dtype === "BF16")) {
      const raw = await this.readRaw(name);
      return { data: new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2), shape };
    }
    const f32 = await this.readF32(name);
    if (dtype === "f32") return { data: f32, shape };
    return { data: dtype === "f16" ? f32ToF16(f32) : f32ToBf16(f32), shape };
  }

  /** Closes the file; later reads throw. Safe to call twice. */
  close(): void {
    const f = this.#file;
    this.#file = null;
    f?.close();
  }

  /** Same as {@link SafeTensorsFile.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}

function toF32(raw: Uint8Array, t: TensorInfo, path: string | undefined): Float32Array {
  const buf = raw.buffer as ArrayBuffer;
  const o = raw.byteOffset;
  const n = raw.length / SAFETENSORS_DTYPE_BYTES[t.dtype];
  switch (t.dtype) {
    case "F32":
      return new Float32Array(buf, o, n);
    case "F16":
      return f16ToF32(new Uint16Array(buf, o, n));
    case "BF16":
      return bf16ToF32(new Uint16Array(buf, o, n));
    case "F64":
      return Float32Array.from(new Float64Array(buf, o, n));
    case "I32":
      return Float32Array.from(new Int32Array(buf, o, n));
    case "U32":
      return Float32Array.from(new Uint32Array(buf, o, n));
    case "I16":
      return Float32Array.from(new Int16Array(buf, o, n));
    case "U16":
      return Float32Array.from(new Uint16Array(buf, o, n));
    case "I8":
      return Float32Array.from(new Int8Array(buf, o, n));
    case "U8":
      return Float32Array.from(new Uint8Array(buf, o, n));
    case "BOOL":
      return Float32Array.from(new Uint8Array(buf, o, n), (v) => (v ? 1 : 0));
    case "I64":
      return Float32Array.from(new BigInt64Array(buf, o, n), Number);
    case "U64":
      return Float32Array.from(new BigUint64Array(buf, o, n), Number);
    default:
      throw new SafetensorsError(
        path,
        `tensor "${t.name}" has dtype ${t.dtype}, which cannot be read as f32`,
        "convert it to F32, F16 or BF16 before loading",
      );
  }
}

/**
 * Reads every tensor of a safetensors file as f32 (see {@link SafeTensorsFile.readF32}).
 *
 * @example
 * ```ts ignore
 * const weights = await loadSafetensors("tiny.safetensors");
 * const { shape, data } = weights.get("proj.weight")!;
 * ```
 */
export async function loadSafetensors(
  path: string,
): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  using st = await SafeTensorsFile.open(path);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of st.tensors) {
    out.set(name, { shape: [...t.shape], data: await st.readF32(name) });
  }
  return out;
}

/**
 * One tensor to write. F16/BF16 data is either a `Uint16Array` of bits (written as is) or a
 * `Float32Array` (rounded to nearest even); F32 needs a `Float32Array`, I32 an `Int32Array`.
 */
export interface TensorToWrite {
  /** Element type in the file. */
  dtype: "F32" | "F16" | "BF16" | "I32";
  /** Dimensions, outermost first; `[]` for a scalar. */
  shape: number[];
  /** Elements in C order; length must equal the product of `shape`. */
  data: Float32Array | Uint16Array | Int32Array;
}

interface Plan {
  header: Uint8Array;
  entries: [string, TensorToWrite][];
  dataSize: number;
}

function planSafetensors(
  tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>,
  metadata: Record<string, string> | undefined,
  path: string | undefined,
): Plan {
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const json: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new SafetensorsError(
          path,
          `metadata value for "${k}" is ${typeof v}, but metadata values must be strings`,
          "store it as a JSON string",
        );
      }
    }
    json.__metadata__ = metadata;
  }
  let off = 0;
  for (const [name, t] of entries) {
    const where = `tensor "${name}"`;
    if (name === "__metadata__") {
      throw new SafetensorsError(path, `"__metadata__" is reserved and cannot name a tensor`);
    }
    if (!["F32", "F16", "BF16", "I32"].includes(t.dtype)) {
      throw new SafetensorsError(
        path,
        `${where} has dtype ${t.dtype}, but only F32, F16, BF16 and I32 can be written`,
      );
    }
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(
        path,
        `${where} has shape ${JSON.stringify(t.shape)}, expected non-negative integers`,
      );
    }
    const okType = t.dtype === "F32"
      ? t.data instanceof Float32Array
      : t.dtype === "I32"
      ? t.data instanceof Int32Array
      : t.data instanceof Uint16Array || t.data instanceof Float32Array;
    if (!okType) {
      const want = t.dtype === "F32"
        ? "Float32Array"
        : t.dtype === "I32"
        ? "Int32Array"
        : "Uint16Array (bits) or Float32Array (rounded)";
      throw new SafetensorsError(
        path,
        `${where} is ${t.dtype} but its data is a ${t.data.constructor.name}, expected ${want}`,
      );
    }
    const numel = numelOf(t.shape);
    if (t.data.length !== numel) {
      throw new SafetensorsError(
        path,
        `${where} has shape [${
          t.shape.join(", ")
        }] (${numel} elements) but ${t.data.length} data elements`,
      );
    }
    const bytes = numel * SAFETENSORS_DTYPE_BYTES[t.dtype];
    json[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let text = JSON.stringify(json);
  const enc = new TextEncoder();
  let len = enc.encode(text).length;
  if (len % 8) {
    text += " ".repeat(8 - (len % 8));
    len = enc.encode(text).length;
  }
  const header = new Uint8Array(8 + len);
  new DataView(header.buffer).setBigUint64(0, BigInt(len), true);
  enc.encodeInto(text, header.subarray(8));
  return { header, entries, dataSize: off };
}

function tensorBytes(t: TensorToWrite): Uint8Array {
  let d: Float32Array | Uint16Array | Int32Array = t.data;
  if ((t.dtype === "F16" || t.dtype === "BF16") && d instanceof Float32Array) {
    d = t.dtype === "F16" ? f32ToF16(d) : f32ToBf16(d);
  }
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/**
 * Encodes tensors as an in-memory safetensors file (names sorted, header space-padded to a
 * multiple of 8). Use {@link saveSafetensors} for anything large.
 *
 * @example
 * ```ts
 * import { encodeSafetensors } from "./safetensors.ts";
 * const bytes = encodeSafetensors(
 *   { bias: { dtype: "BF16", shape: [3], data: new Float32Array([1, 2, 3]) } },
 *   { format: "pt" },
 * );
 * ```
 */
export function encodeSafetensors(
  tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array {
  requireLittleEndian(undefined);
  const plan = planSafetensors(tensors, metadata, undefined);
  const out = new Uint8Array(plan.header.length + plan.dataSize);
  out.set(plan.header);
  let off = plan.header.length;
  for (const [, t] of plan.entries) {
    const b = tensorBytes(t);
    out.set(b, off);
    off += b.length;
  }
  return out;
}

/**
 * Writes tensors to `path` atomically: streams them (sorted by name) into
 * `${path}.tmp-<random>`, syncs it to disk and renames it over `path`. On failure the temporary
 * file is removed and any existing `path` is left untouched.
 *
 * @example
 * ```ts ignore
 * await saveSafetensors("ckpt.safetensors", {
 *   "proj.weight": { dtype: "BF16", shape: [4, 4], data: new Float32Array(16) },
 *   step: { dtype: "I32", shape: [], data: new Int32Array([100]) },
 * }, { format: "pt" });
 * ```
 */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  requireLittleEndian(path);
  const plan = planSafetensors(tensors, metadata, path);
  const rand = crypto.getRandomValues(new Uint8Array(6));
  const tmp = `${path}.tmp-${Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  let closed = false;
  try {
    await writeAll(file, plan.header);
    for (const [, t] of plan.entries) await writeAll(file, tensorBytes(t));
    await file.sync();
    file.close();
    closed = true;
    await Deno.rename(tmp, path);
  } catch (e) {
    if (!closed) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
