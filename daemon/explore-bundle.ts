import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { EntryLookup } from "../src/audit/explore/index.js";
import { ExecgateError } from "../src/core/errors.js";
import { toHex } from "../src/core/hex.js";
import { parseSegment } from "../src/lineage/bundle-files.js";
import { type Checkpoint, parseCheckpoint } from "../src/lineage/checkpoint.js";
import { MAX_ENTRY_READ_BYTES } from "../src/lineage/entry.js";
import { leafHash } from "../src/lineage/hash.js";
import { MerkleTree, verifyInclusion } from "../src/lineage/merkle.js";
import { parseNote } from "../src/lineage/note.js";
import { checkRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../src/lineage/record.js";
import { TILE_WIDTH, tileIndexPath } from "../src/lineage/tiles.js";

/**
 * The explorer's reading of a bundle directory (effects only; the model is src/audit/explore):
 * entries in log order one segment at a time, references looked up in the tile/entries bundles
 * (256 entries a file, a few cached), and inclusion proofs against the bundle's checkpoint.
 */

/** Entries kept from the stream for back-references (a decision names the request just before it). */
const RECENT = 4096;
/** Entry bundles kept for references further back. */
const BUNDLES_CACHED = 16;

/** Segment files of a bundle, in index order. */
async function segmentNames(dir: string): Promise<string[]> {
  try {
    return (await readdir(join(dir, "segments"))).filter((n) => /^\d{20}\.seg$/.test(n)).sort();
  } catch (e) {
    throw new ExecgateError("io_error", `not a lineage bundle: ${dir} has no segments/`, {}, { cause: e });
  }
}

/** Bytes read from a segment file at a time: the stream holds this much, not the segment. */
const CHUNK = 1 << 20;

/**
 * The records of one segment file, read in chunks (each entry copied out of the chunk), so memory
 * does not grow with the segment; stops at the first record that is not intact (as parseSegment).
 */
async function* segmentRecords(
  path: string,
  name: string,
  end: { bad: boolean },
): AsyncGenerator<{ first: number; bytes: Uint8Array }> {
  const fh = await open(path, "r");
  try {
    let buf = new Uint8Array(0);
    let eof = false;
    /** Makes at least n bytes available in buf (fewer only at end of file). */
    const fill = async (n: number) => {
      while (buf.length < n && !eof) {
        const chunk = new Uint8Array(Math.max(CHUNK, n - buf.length));
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) eof = true;
        const joined = new Uint8Array(buf.length + bytesRead);
        joined.set(buf);
        joined.set(chunk.subarray(0, bytesRead), buf.length);
        buf = joined;
      }
    };
    await fill(SEGMENT_HEADER_BYTES);
    // The header alone, through the same parser audit verify uses (magic, first index).
    const first = parseSegment({ name, bytes: buf.subarray(0, SEGMENT_HEADER_BYTES) }).first;
    buf = buf.subarray(SEGMENT_HEADER_BYTES);
    for (;;) {
      await fill(RECORD_HEADER_BYTES);
      if (buf.length === 0) return;
      end.bad = true;
      if (buf.length < RECORD_HEADER_BYTES) return;
      const len = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0);
      if (len > MAX_ENTRY_READ_BYTES) return;
      await fill(RECORD_HEADER_BYTES + len);
      if (checkRecord(buf, 0, MAX_ENTRY_READ_BYTES) !== len) return;
      end.bad = false;
      yield { first, bytes: buf.slice(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + len) };
      buf = buf.subarray(RECORD_HEADER_BYTES + len);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Every entry of the bundle in log order, streamed (a chunk of one segment file in memory at a
 * time); entries after a bad record are not reached (audit verify reports it; with --unverified
 * the listing stops there).
 */
export async function* bundleEntries(
  dir: string,
  from = 0,
): AsyncGenerator<{ index: number; bytes: Uint8Array }> {
  const names = await segmentNames(dir);
  for (let k = 0; k < names.length; k++) {
    const next = names[k + 1];
    // Skip whole segments before `from` by their names (each names its first index).
    if (next !== undefined && Number(next.slice(0, 20)) <= from) continue;
    let i = 0;
    const end = { bad: false };
    for await (const r of segmentRecords(join(dir, "segments", names[k]!), names[k]!, end)) {
      const index = r.first + i++;
      if (index >= from) yield { index, bytes: r.bytes };
    }
    // A segment cut short by a bad record: nothing after it is in sequence.
    if (end.bad) return;
  }
}

/** Looks entries up by index: recently streamed ones first, then tile/entries bundles. */
export class BundleLookup {
  private readonly recent = new Map<number, Uint8Array>();
  private readonly bundles = new Map<number, Uint8Array[] | undefined>();

  constructor(private readonly dir: string) {}

  /** Remembers an entry just streamed (the stream's entries are what the lookup must agree with). */
  saw(index: number, bytes: Uint8Array): void {
    this.recent.set(index, bytes);
    if (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value!);
  }

  readonly lookup: EntryLookup = (index) => {
    const r = this.recent.get(index);
    if (r !== undefined) return r;
    const n = Math.floor(index / TILE_WIDTH);
    if (!this.bundles.has(n)) {
      this.bundles.set(n, this.readBundle(n));
      if (this.bundles.size > BUNDLES_CACHED) this.bundles.delete(this.bundles.keys().next().value!);
    }
    return this.bundles.get(n)?.[index % TILE_WIDTH];
  };

  /** The entries of tile/entries bundle n (full, else the partial one), or undefined if absent. */
  private readBundle(n: number): Uint8Array[] | undefined {
    const base = join(this.dir, "tile", "entries", tileIndexPath(n));
    let bytes: Uint8Array | undefined;
    try {
      bytes = readFileSync(base);
    } catch {
      try {
        const widths = readdirSync(`${base}.p`).filter((w) => /^\d{1,3}$/.test(w));
        const w = widths.sort((a, b) => Number(b) - Number(a))[0];
        if (w !== undefined) bytes = readFileSync(join(`${base}.p`, w));
      } catch {
        return undefined;
      }
    }
    if (bytes === undefined) return undefined;
    const out: Uint8Array[] = [];
    let at = 0;
    while (at + 2 <= bytes.length && out.length < TILE_WIDTH) {
      const len = (bytes[at]! << 8) | bytes[at + 1]!;
      if (at + 2 + len > bytes.length) break;
      out.push(bytes.subarray(at + 2, at + 2 + len));
      at += 2 + len;
    }
    return out;
  }
}

/** The bundle's `checkpoint` file: the latest signed checkpoint (verified by audit verify). */
export function readLatestCheckpoint(dir: string): { checkpoint: Checkpoint; note: string } {
  let note: string;
  try {
    note = readFileSync(join(dir, "checkpoint"), "utf8");
  } catch (e) {
    throw new ExecgateError("io_error", `not a lineage bundle: ${dir} has no checkpoint`, {}, { cause: e });
  }
  return { checkpoint: parseCheckpoint(parseNote(note).text), note };
}

export interface InclusionView {
  readonly index: number;
  readonly treeSize: number;
  readonly root: string;
  readonly leafHash: string;
  readonly path: readonly string[];
  /** The path recomputes the checkpoint's root from the entry's leaf hash (RFC 9162 §2.1.3.2). */
  readonly verified: boolean;
  readonly reason?: string;
}

/**
 * Leaf hashes of the whole bundle as a tree, for inclusion proofs to its checkpoint. Memory is
 * two hashes a leaf (src/lineage/merkle.ts); `audit show` builds it once per run.
 */
export async function bundleTree(dir: string): Promise<MerkleTree> {
  const tree = new MerkleTree();
  for await (const { bytes } of bundleEntries(dir)) tree.append(leafHash(bytes));
  return tree;
}

/** RFC 9162 inclusion of entry `index` (its bytes) in the tree the checkpoint signs, verified. */
export function inclusionOf(
  tree: MerkleTree,
  index: number,
  bytes: Uint8Array,
  cp: Checkpoint,
): InclusionView {
  const leaf = leafHash(bytes);
  const base = { index, treeSize: cp.size, root: toHex(cp.rootHash), leafHash: toHex(leaf) };
  if (cp.size > tree.size)
    return {
      ...base,
      path: [],
      verified: false,
      reason: `the bundle's entries end at ${tree.size}, short of the ${cp.size} the checkpoint signs`,
    };
  if (index >= cp.size)
    return { ...base, path: [], verified: false, reason: `the checkpoint covers entries 0..${cp.size - 1}` };
  const path = tree.inclusionProof(index, cp.size);
  try {
    verifyInclusion(index, cp.size, leaf, path, cp.rootHash);
    return { ...base, path: path.map(toHex), verified: true };
  } catch (e) {
    return { ...base, path: path.map(toHex), verified: false, reason: (e as Error).message };
  }
}

/** Reads entry `index` straight from its segment (show's target, whatever the tiles say). */
export async function entryAt(dir: string, index: number): Promise<Uint8Array | undefined> {
  for await (const e of bundleEntries(dir, index)) return e.index === index ? e.bytes : undefined;
  return undefined;
}

/** SHA-256 of a file on the auditor's machine, for --exe PATH (undefined if it cannot be read). */
export function fileDigest(path: string): string | undefined {
  let fd: number | undefined;
  try {
    const h = createHash("sha256");
    fd = openSync(path, "r");
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
    return h.digest("hex");
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
