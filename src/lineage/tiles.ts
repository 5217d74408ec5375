import { ExecgateError } from "../core/errors.js";
import { concatBytes } from "../core/hex.js";
import { MAX_ENTRY_BYTES } from "./entry.js";
import { rootOfLeaves } from "./merkle.js";

/*
 * C2SP tlog-tiles layout (c2sp.org/tlog-tiles) of a tree, so transparency-log tools can read an
 * exported bundle:
 *   tile/<L>/<N>[.p/<W>]      hash tiles: 256 hashes of level-L subtrees (L = 0: the leaf hashes),
 *                             each hash covering 256^L leaves; a partial tile has W < 256 hashes
 *   tile/entries/<N>[.p/<W>]  entry bundles: each entry as a big-endian uint16 length, then the bytes
 * <N> is written in groups of three digits, all but the last prefixed with "x" (x001/x234/067).
 * Only the tiles for the final tree size are produced (full tiles plus one partial per level).
 */
export const TILE_WIDTH = 256;

export interface TileFile {
  readonly path: string;
  readonly bytes: Uint8Array;
}

export function tileIndexPath(n: number): string {
  const digits = String(n).padStart(3, "0");
  const pad =
    digits.length % 3 === 0 ? digits : digits.padStart(digits.length + (3 - (digits.length % 3)), "0");
  const groups: string[] = [];
  for (let i = 0; i < pad.length; i += 3) groups.push(pad.slice(i, i + 3));
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join("/");
}

function tilePath(prefix: string, n: number, width: number): string {
  return `${prefix}/${tileIndexPath(n)}${width < TILE_WIDTH ? `.p/${width}` : ""}`;
}

/**
 * Hash tiles of a growing tree, leaf hash by leaf hash, holding at most one tile's hashes per
 * level: push() returns the full tiles a leaf completes, finish() the partial tile of each level.
 */
export class HashTileStream {
  /** Per level: the hashes of the tile being filled, and how many full tiles came before it. */
  private readonly pending: Uint8Array[][] = [];
  private readonly full: number[] = [];

  push(leafHash: Uint8Array): TileFile[] {
    const out: TileFile[] = [];
    let hash = leafHash;
    for (let L = 0; ; L++) {
      if (this.pending.length === L) {
        this.pending.push([]);
        this.full.push(0);
      }
      const tile = this.pending[L]!;
      tile.push(hash);
      if (tile.length < TILE_WIDTH) return out;
      // A complete tile: written, and its root is the next level's next hash.
      out.push({ path: tilePath(`tile/${L}`, this.full[L]!, TILE_WIDTH), bytes: concatBytes(...tile) });
      this.full[L]! += 1;
      hash = rootOfLeaves(tile);
      this.pending[L] = [];
    }
  }

  finish(): TileFile[] {
    const out: TileFile[] = [];
    this.pending.forEach((tile, L) => {
      if (tile.length > 0)
        out.push({ path: tilePath(`tile/${L}`, this.full[L]!, tile.length), bytes: concatBytes(...tile) });
    });
    return out;
  }
}

/** Entry bundles (uint16 length-prefixed entries, 256 per bundle), entry by entry. */
export class EntryBundleStream {
  private parts: Uint8Array[] = [];
  private full = 0;

  push(entry: Uint8Array): TileFile | undefined {
    // Unreachable for journal entries (MAX_ENTRY_BYTES is the uint16 maximum); kept for callers.
    if (entry.length > MAX_ENTRY_BYTES)
      throw new ExecgateError("limit_exceeded", `entry of ${entry.length} bytes does not fit a tile bundle`);
    this.parts.push(Uint8Array.of(entry.length >> 8, entry.length & 0xff), entry);
    if (this.parts.length < 2 * TILE_WIDTH) return undefined;
    const bundle = {
      path: tilePath("tile/entries", this.full, TILE_WIDTH),
      bytes: concatBytes(...this.parts),
    };
    this.full += 1;
    this.parts = [];
    return bundle;
  }

  finish(): TileFile | undefined {
    if (this.parts.length === 0) return undefined;
    return {
      path: tilePath("tile/entries", this.full, this.parts.length / 2),
      bytes: concatBytes(...this.parts),
    };
  }
}

/** Hash tiles for a tree with these leaf hashes (RFC 9162 leaf hashes, in order). */
export function hashTiles(leafHashes: readonly Uint8Array[]): TileFile[] {
  const s = new HashTileStream();
  return [...leafHashes.flatMap((h) => s.push(h)), ...s.finish()];
}

/** Entry bundles for these entries. */
export function entryBundles(entries: readonly Uint8Array[]): TileFile[] {
  const s = new EntryBundleStream();
  const out = entries.flatMap((e) => s.push(e) ?? []);
  const last = s.finish();
  return last ? [...out, last] : out;
}
