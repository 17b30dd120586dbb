/**
 * Hugging Face model folders: `config.json`, the safetensors weights (one file, a sharded set with
 * `model.safetensors.index.json`, or the other names the Hub uses) and the checks that turn a
 * mismatching checkpoint into one clear error.
 *
 * Full-model checkpoints hold more than the text encoders need (the T5 decoder, CLIP's vision
 * tower): keys the model does not declare are ignored, but every declared key must be present
 * with the right shape.
 *
 * @module
 */
import { join } from "node:path";
import type { DType } from "../../engine/dtype.ts";
import { SafeTensorsFile } from "../../engine/safetensors.ts";
import { CheckpointMismatchError, type ParamSet } from "../params.ts";
import type { HostEmbedding } from "./embedding.ts";

/** Storage type of the encoders' weights: f32 (small models), bf16/f16 (real checkpoints). */
export type TextStorage = Extract<DType, "f32" | "f16" | "bf16">;

/** A model folder that cannot be used (missing, incomplete, unsupported format). */
export class HfFolderError extends Error {
  /** The error's name. */
  override name = "HfFolderError";
}

/** One tensor of a checkpoint: which file holds it, its shape and dtype. */
export interface CheckpointEntry {
  /** The safetensors file. */
  path: string;
  /** Dimensions. */
  shape: number[];
  /** Safetensors dtype (`F32`, `BF16`, ...). */
  dtype: string;
}

async function stat(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Throws a clear error unless `dir` is an existing folder. */
export async function requireFolder(dir: string, what = "model"): Promise<void> {
  const s = await stat(dir);
  if (!s) {
    throw new HfFolderError(
      `${what} folder ${dir} does not exist: download the model into it (\`huggingface-cli ` +
        `download <repo, e.g. google/t5-v1_1-xxl> --local-dir ${dir}\`) or fix the path`,
    );
  }
  if (!s.isDirectory) {
    throw new HfFolderError(
      `${what} path ${dir} is a file; pass the folder that holds config.json`,
    );
  }
}

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new HfFolderError(`${path} is missing: the folder must hold the model's ${what}`);
    }
    throw e;
  }
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw new HfFolderError(`${path} is not a valid JSON object (${(e as Error).message})`);
  }
}

/**
 * Reads `config.json` of a model folder. With `section` (e.g. `"text_config"` for a full CLIP
 * model) the object under that key is returned when present, else the whole config.
 */
export async function readHfConfig(
  dir: string,
  section?: string,
): Promise<Record<string, unknown>> {
  await requireFolder(dir);
  const config = await readJson(join(dir, "config.json"), "config.json");
  const sub = section ? config[section] : undefined;
  if (sub && typeof sub === "object" && !Array.isArray(sub)) {
    return sub as Record<string, unknown>;
  }
  return config;
}

const OTHER_FORMATS = [
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
  "tf_model.h5",
  "flax_model.msgpack",
];

/**
 * The safetensors files of a model folder, in this order of preference: `model.safetensors`;
 * the shards listed by `model.safetensors.index.json` (`weight_map`); another
 * `*.safetensors.index.json`; the only `*.safetensors` file, or a complete `*-0000k-of-0000n`
 * shard set. Throws an {@linkcode HfFolderError} naming the fix otherwise.
 */
export async function findWeightFiles(dir: string): Promise<string[]> {
  await requireFolder(dir);
  const single = join(dir, "model.safetensors");
  if ((await stat(single))?.isFile) return [single];
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
  names.sort();
  const indexes = names.filter((n) => n.endsWith(".safetensors.index.json"));
  const index = indexes.includes("model.safetensors.index.json")
    ? "model.safetensors.index.json"
    : indexes[0];
  if (index) return await shardsOf(dir, index);
  const files = names.filter((n) => n.endsWith(".safetensors"));
  if (files.length === 1) return [join(dir, files[0]!)];
  const shard = /^(.*)-(\d+)-of-(\d+)\.safetensors$/;
  const groups = new Set(files.map((n) => n.match(shard)).map((m) => m ? `${m[1]}|${m[3]}` : ""));
  if (files.length > 1 && groups.size === 1 && !groups.has("")) {
    const total = Number(files[0]!.match(shard)![3]);
    if (files.length === total) return files.map((n) => join(dir, n));
    throw new HfFolderError(
      `${dir} holds ${files.length} of the ${total} shards ${files[0]!.match(shard)![1]}-*-of-*` +
        `.safetensors: download the missing ones`,
    );
  }
  if (files.length > 1) {
    throw new HfFolderError(
      `${dir} holds several safetensors files (${files.join(", ")}) and no index: keep one, or ` +
        `add model.safetensors.index.json`,
    );
  }
  const other = OTHER_FORMATS.filter((n) => names.includes(n));
  if (other.length) {
    throw new HfFolderError(
      `${dir} has weights only as ${other.join(", ")}: Kino reads safetensors; convert them once ` +
        `with transformers (\`Model.from_pretrained(dir).save_pretrained(dir, ` +
        `safe_serialization=True)\`) or download the model's .safetensors files`,
    );
  }
  throw new HfFolderError(
    `${dir} has no weights: expected model.safetensors or model.safetensors.index.json with its ` +
      `shards; download the model's .safetensors files into it`,
  );
}

async function shardsOf(dir: string, indexName: string): Promise<string[]> {
  const path = join(dir, indexName);
  const index = await readJson(path, "weight index");
  const map = index.weight_map;
  if (!map || typeof map !== "object" || Array.isArray(map)) {
    throw new HfFolderError(`${path} has no "weight_map" object: re-download the index file`);
  }
  const files = [...new Set(Object.values(map as Record<string, unknown>).map(String))].sort();
  if (files.length === 0) throw new HfFolderError(`${path} lists no shards`);
  const missing: string[] = [];
  for (const f of files) if (!(await stat(join(dir, f)))?.isFile) missing.push(f);
  if (missing.length) {
    throw new HfFolderError(
      `${dir} lacks ${missing.length} of the ${files.length} shards listed by ${indexName}: ` +
        `${missing.join(", ")}; download them`,
    );
  }
  return files.map((f) => join(dir, f));
}

/** Name → file, shape and dtype of every tensor in `paths` (headers only). */
export async function indexCheckpoint(
  paths: readonly string[],
): Promise<Map<string, CheckpointEntry>> {
  const out = new Map<string, CheckpointEntry>();
  for (const path of paths) {
    using f = await SafeTensorsFile.open(path);
    for (const [name, t] of f.tensors) {
      out.set(name, { path, shape: [...t.shape], dtype: t.dtype });
    }
  }
  return out;
}

/** A host table to load with the GPU parameters, under the first of `keys` the checkpoint has. */
export interface HostTable {
  /** The table to fill. */
  table: HostEmbedding;
  /** Checkpoint keys it may be stored under, in order of preference. */
  keys: readonly string[];
}

/**
 * Loads an encoder's weights from safetensors files: first checks that every parameter of
 * `params` (and each host table under one of its keys) is present with the right shape, throwing
 * one {@linkcode CheckpointMismatchError} that lists every missing key and wrong shape; keys the
 * model does not declare (a decoder, a vision tower) are ignored. Then reads the parameters in
 * the set's storage type and the tables into host memory.
 */
export async function loadEncoderWeights(
  params: ParamSet,
  tables: readonly HostTable[],
  paths: readonly string[],
  model: string,
): Promise<void> {
  const index = await indexCheckpoint(paths);
  const missing: string[] = [];
  const wrong: string[] = [];
  const check = (name: string, shape: readonly number[]) => {
    const e = index.get(name)!;
    if (e.shape.join() !== shape.join()) {
      wrong.push(`${name} expected [${shape.join(", ")}] found [${e.shape.join(", ")}]`);
    }
  };
  for (const spec of params.list()) {
    if (!index.has(spec.name)) missing.push(spec.name);
    else check(spec.name, spec.shape);
  }
  const tableKeys = tables.map(({ table, keys }) => {
    const key = keys.find((k) => index.has(k));
    if (key === undefined) {
      missing.push(keys.length > 1 ? `${keys[0]} (or ${keys.slice(1).join(", ")})` : keys[0]!);
    } else check(key, [table.vocab, table.dim]);
    return key;
  });
  if (missing.length || wrong.length) {
    const list = (xs: string[]) =>
      xs.slice(0, 8).join(", ") + (xs.length > 8 ? `, ... (${xs.length} in all)` : "");
    const parts = [`checkpoint ${paths.join(", ")} does not match the ${model}:`];
    if (missing.length) parts.push(`  missing keys (${missing.length}): ${list(missing)}`);
    if (wrong.length) parts.push(`  wrong shapes (${wrong.length}): ${list(wrong)}`);
    parts.push(
      `  check that the folder holds a ${model} checkpoint and that config.json describes it`,
    );
    throw new CheckpointMismatchError(parts.join("\n"));
  }
  await params.load([...paths], { strict: false });
  for (let i = 0; i < tables.length; i++) {
    const key = tableKeys[i]!;
    using f = await SafeTensorsFile.open(index.get(key)!.path);
    await tables[i]!.table.load(f, key);
  }
}

/** Reads a numeric field of a config; `fallback` when absent, else a clear error. */
export function configNumber(
  config: Record<string, unknown>,
  key: string,
  fallback?: number,
): number {
  const v = config[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new HfFolderError(`config.json lacks "${key}": use the model's original config.json`);
  }
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new HfFolderError(`config.json "${key}" is ${JSON.stringify(v)}, expected a number`);
  }
  return v;
}

/** A storage choice: a type, or `"auto"` (bf16 when the f32 weights exceed 1 GiB, else f32). */
export type StorageChoice = TextStorage | "auto";

/** The storage type for a model whose weights take `f32Bytes` in f32. */
export function resolveStorage(choice: StorageChoice | undefined, f32Bytes: number): TextStorage {
  if (choice === undefined || choice === "auto") return f32Bytes > 2 ** 30 ? "bf16" : "f32";
  return choice;
}
