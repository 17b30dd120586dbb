/**
 * Token ids as the text encoders take them: a row-major `[batch, length]` block of integers on
 * the host (the tokenizers produce it; the embedding lookup happens on the host too).
 *
 * @module
 */

/** A `[batch, length]` block of token ids, row-major. */
export interface TokenIds {
  /** `batch · length` ids, row-major. */
  ids: Int32Array;
  /** Rows. */
  batch: number;
  /** Ids per row. */
  length: number;
}

/**
 * Builds {@linkcode TokenIds} from rows of equal length.
 *
 * @example
 * ```ts ignore
 * const t = tokenIds([[37, 1, 0], [8, 5, 1]]); // batch 2, length 3
 * ```
 */
export function tokenIds(rows: readonly (readonly number[])[]): TokenIds {
  const length = rows[0]?.length ?? 0;
  if (rows.length === 0 || length === 0) {
    throw new RangeError("tokenIds: need at least one non-empty row");
  }
  const ids = new Int32Array(rows.length * length);
  rows.forEach((r, b) => {
    if (r.length !== length) {
      throw new RangeError(
        `tokenIds: row ${b} has ${r.length} ids but row 0 has ${length}; pad the rows to one length`,
      );
    }
    ids.set(r, b * length);
  });
  return { ids, batch: rows.length, length };
}

/** Throws a clear error unless `t` is a consistent, non-empty block. */
export function checkTokenIds(op: string, t: TokenIds): void {
  if (
    !Number.isInteger(t.batch) || !Number.isInteger(t.length) || t.batch < 1 || t.length < 1 ||
    t.ids.length !== t.batch * t.length
  ) {
    throw new RangeError(
      `${op}: token ids of ${t.ids.length} values do not form [${t.batch}, ${t.length}]`,
    );
  }
}
