/**
 * Reading a training dataset CSV (`data.md` §1–2) with csv-parse.
 *
 * Columns: `path` and `text` are required; `num_frames`, `height`, `width`, `fps` are used when
 * present (missing ones are probed later with ffprobe); `aspect_ratio` and `resolution` are read
 * but, as in the reference, not used; `score_vmafmotion` gives the motion-score caption suffix;
 * `neg` is passed through. Other columns are reported once and ignored. Relative paths are
 * resolved against the CSV's folder. A row that cannot be used as written (wrong field count,
 * empty path or text, a non-numeric or non-positive size) is reported with its line number and
 * skipped; the rest of the file is still read.
 *
 * @module
 */
import { parse } from "npm:csv-parse@5.6.0/sync";
import { dirname, isAbsolute, resolve } from "node:path";

/** Columns this reader understands. */
export const KNOWN_COLUMNS = [
  "path",
  "text",
  "num_frames",
  "height",
  "width",
  "aspect_ratio",
  "resolution",
  "fps",
  "score_vmafmotion",
  "neg",
] as const;

/** One well-formed CSV row. Size fields are undefined when their column is absent or empty. */
export interface CsvRow {
  /** 0-based data-row number (the pandas index): keys the row's random streams. */
  index: number;
  /** 1-based line of the row in the file. */
  line: number;
  /** The `path` cell as written. */
  rawPath: string;
  /** `path` resolved against the CSV's folder. */
  path: string;
  text: string;
  numFrames?: number;
  height?: number;
  width?: number;
  /**
   * NaN for a literal `nan`/`NA` cell (unknown rate, as for images); undefined when the column is
   * absent or the cell empty (then probed, as `scripts/cnv/meta.py` would fill it).
   */
  fps?: number;
  motionScore?: number;
  neg?: string;
}

/** A row that could not be read, or a file-level remark. */
export interface CsvProblem {
  line: number;
  /** Data-row number when the record was parsed. */
  index?: number;
  detail: string;
}

/** A parsed dataset CSV. */
export interface CsvTable {
  csvPath: string;
  columns: string[];
  /** Columns not in {@linkcode KNOWN_COLUMNS} (ignored). */
  unknownColumns: string[];
  rows: CsvRow[];
  /** Malformed rows (skipped), with line numbers. */
  problems: CsvProblem[];
  /** Data records in the file (good and malformed). */
  records: number;
  /** Whether pandas would read `fps` as float (decimal point, exponent or missing values). */
  fpsIsFloat: boolean;
}

/** A CSV that cannot be used at all (unreadable, empty, missing required columns). */
export class DatasetCsvError extends Error {
  override name = "DatasetCsvError";
}

const NA = new Set(["", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "<NA>"]);

function isNa(s: string): boolean {
  return NA.has(s.trim());
}

interface ParsedRecord {
  record: string[];
  info: { lines: number; error?: { code?: string } };
}

/**
 * Parses CSV text. `csvPath` is used for messages and to resolve relative media paths.
 * Throws {@linkcode DatasetCsvError} for an empty file or missing `path`/`text` columns.
 */
export function parseDatasetCsv(text: string, csvPath: string): CsvTable {
  const problems: CsvProblem[] = [];
  const errorLines = new Set<number>();
  let records: ParsedRecord[];
  try {
    // `on_skip` works at run time but is missing from csv-parse 5.6's typings, hence the cast.
    const options = {
      bom: true,
      relax_column_count: true,
      relax_quotes: true,
      skip_empty_lines: true,
      info: true,
      skip_records_with_error: true,
      on_skip: (err: { lines?: number; message?: string } | undefined) => {
        const line = err?.lines ?? 0;
        if (errorLines.has(line)) return;
        errorLines.add(line);
        problems.push({ line, detail: `unreadable CSV record: ${err?.message ?? "parse error"}` });
      },
    };
    records = parse(text, options as Parameters<typeof parse>[1]) as unknown as ParsedRecord[];
  } catch (e) {
    throw new DatasetCsvError(`${csvPath}: not a readable CSV file: ${(e as Error).message}`);
  }
  if (records.length === 0) {
    throw new DatasetCsvError(
      `${csvPath}: the CSV is empty: it needs a header line with at least 'path,text' ` +
        `and one row per video or image`,
    );
  }
  const columns = records[0]!.record.map((c) => c.trim());
  for (const req of ["path", "text"]) {
    if (!columns.includes(req)) {
      throw new DatasetCsvError(
        `${csvPath}: required column '${req}' is missing (header has: ${columns.join(", ")}); ` +
          `the header must contain at least 'path,text'`,
      );
    }
  }
  const dupes = columns.filter((c, i) => columns.indexOf(c) !== i);
  if (dupes.length) {
    throw new DatasetCsvError(`${csvPath}: duplicate column(s) ${[...new Set(dupes)].join(", ")}`);
  }
  const col = (name: string) => columns.indexOf(name);
  const known = new Set<string>(KNOWN_COLUMNS);
  const unknownColumns = columns.filter((c) => !known.has(c));
  const base = dirname(resolve(csvPath));
  const rows: CsvRow[] = [];
  const data = records.slice(1);
  // A skipped record (unclosed quote) is reported at the line where parsing stopped; say where it
  // started: right after the last good record.
  for (const p of problems) {
    const start = records.filter((r) => r.info.lines < p.line).at(-1)?.info.lines ?? 0;
    if (p.line > start + 1) p.detail += ` (the record starts after line ${start})`;
  }
  let fpsIsFloat = false;
  const fpsCol = col("fps");
  if (fpsCol >= 0) {
    for (const r of data) {
      const v = r.record[fpsCol] ?? "";
      if (isNa(v) || /[.eE]|inf/i.test(v)) fpsIsFloat = true;
    }
  }
  data.forEach((r, index) => {
    const line = r.info.lines;
    const bad = (detail: string) => problems.push({ line, index, detail });
    if (r.record.length !== columns.length) {
      return bad(`has ${r.record.length} fields, the header has ${columns.length}`);
    }
    const cell = (name: string): string | undefined => {
      const i = col(name);
      return i < 0 ? undefined : r.record[i];
    };
    const rawPath = cell("path")!.trim();
    if (rawPath === "" || isNa(rawPath)) return bad("empty 'path'");
    const txt = cell("text")!;
    if (isNa(txt)) return bad("empty 'text' (the caption is required)");
    const row: CsvRow = {
      index,
      line,
      rawPath,
      path: isAbsolute(rawPath) ? rawPath : resolve(base, rawPath),
      text: txt,
    };
    for (
      const [name, key] of [["num_frames", "numFrames"], ["height", "height"], [
        "width",
        "width",
      ]] as const
    ) {
      const s = cell(name);
      if (s === undefined || isNa(s)) continue;
      const v = Number(s);
      if (!(Number.isInteger(v) && v > 0)) {
        return bad(`'${name}' must be a positive integer, got '${s}'`);
      }
      row[key] = v;
    }
    const fps = cell("fps");
    if (fps !== undefined && fps.trim() !== "") {
      const v = isNa(fps) ? NaN : Number(fps);
      if (!isNa(fps) && !(v > 0)) {
        return bad(`'fps' must be a positive number or empty, got '${fps}'`);
      }
      row.fps = v;
    }
    const score = cell("score_vmafmotion");
    if (score !== undefined && !isNa(score)) {
      const v = Number(score);
      if (!Number.isFinite(v)) return bad(`'score_vmafmotion' must be a number, got '${score}'`);
      row.motionScore = v;
    }
    const neg = cell("neg");
    if (neg !== undefined && !isNa(neg)) row.neg = neg;
    rows.push(row);
  });
  problems.sort((a, b) => a.line - b.line);
  return {
    csvPath,
    columns,
    unknownColumns,
    rows,
    problems,
    records: data.length + problems.filter((p) => p.index === undefined).length,
    fpsIsFloat,
  };
}

/** Reads and parses a dataset CSV file (see {@linkcode parseDatasetCsv}). */
export async function readDatasetCsv(csvPath: string): Promise<CsvTable> {
  if (/\.parquet$/i.test(csvPath)) {
    throw new DatasetCsvError(
      `${csvPath}: parquet files are not supported; convert it to CSV (e.g. pandas ` +
        `read_parquet(...).to_csv(..., index=False))`,
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(csvPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DatasetCsvError(`${csvPath}: no such file`);
    throw new DatasetCsvError(`${csvPath}: cannot read it: ${(e as Error).message}`);
  }
  return parseDatasetCsv(text, csvPath);
}
