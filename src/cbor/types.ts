/**
 * The values our deterministic CBOR codec (RFC 8949 §4.2.1) carries.
 *
 * Decisions (docs/lineage.md, "CBOR"):
 * - Integers: a JS `number` when it is a safe integer, otherwise a `bigint` (range −2^64 … 2^64−1).
 *   The decoder returns `number` whenever the value fits, so decode∘encode is the identity up to
 *   that normalisation. Non-integer numbers and floats are not supported (never needed; rejected).
 * - Maps: the decoder returns `Map<CborKey, CborValue>`; keys are restricted to integers and text
 *   strings (what COSE, CWT and our own records use). The encoder also accepts plain objects, whose
 *   own enumerable string keys become text-string keys, and skips properties whose value is
 *   `undefined` (so optional fields can be written naturally).
 * - Tags: `CborTag` (needed for COSE_Sign1 tag 18 / CWT tag 61); simple values only false, true, null.
 */
export type CborKey = number | bigint | string;

export type CborValue =
  | number
  | bigint
  | string
  | boolean
  | null
  | Uint8Array
  | readonly CborValue[]
  | ReadonlyMap<CborKey, CborValue>
  | CborObject
  | CborTag;

/** A plain-object map with text-string keys (encode only; decode yields a Map). */
export interface CborObject {
  readonly [key: string]: CborValue | undefined;
}

export class CborTag {
  constructor(
    readonly tag: number,
    readonly value: CborValue,
  ) {}
}

export interface DecodeLimits {
  /** Maximum nesting depth of arrays, maps and tags (the top-level item is depth 1). */
  readonly maxDepth?: number;
  /** Maximum number of data items in the whole input (keys count as items). */
  readonly maxItems?: number;
  /** Maximum length of one byte or text string, in bytes. */
  readonly maxLength?: number;
}

export const DEFAULT_MAX_DEPTH = 32;
export const DEFAULT_MAX_ITEMS = 1 << 20;
export const DEFAULT_MAX_LENGTH = 16 << 20;
