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

/** Hash tiles for a tree with these leaf hashes (RFC 9162 leaf hashes, in order). */
export function hashTiles(leafHashes: readonly Uint8Array[]): TileFile[] {
  const out: TileFile[] = [];
  let level: readonly Uint8Array[] = leafHashes;
  for (let L = 0; level.length > 0; L++) {
    for (let n = 0; n * TILE_WIDTH < level.length; n++) {
      const chunk = level.slice(n * TILE_WIDTH, (n + 1) * TILE_WIDTH);
      out.push({ path: tilePath(`tile/${L}`, n, chunk.length), bytes: concatBytes(...chunk) });
    }
    // The next level holds the roots of complete 256-wide subtrees of this one.
    const next: Uint8Array[] = [];
    for (let n = 0; (n + 1) * TILE_WIDTH <= level.length; n++)
      next.push(rootOfLeaves(level.slice(n * TILE_WIDTH, (n + 1) * TILE_WIDTH)));
    level = next;
  }
  return out;
}

/** Entry bundles (uint16 length-prefixed entries, 256 per bundle). */
export function entryBundles(entries: readonly Uint8Array[]): TileFile[] {
  const out: TileFile[] = [];
  for (let n = 0; n * TILE_WIDTH < entries.length; n++) {
    const chunk = entries.slice(n * TILE_WIDTH, (n + 1) * TILE_WIDTH);
    const parts: Uint8Array[] = [];
    for (const e of chunk) {
      // Unreachable for journal entries (MAX_ENTRY_BYTES is the uint16 maximum); kept for callers.
      if (e.length > MAX_ENTRY_BYTES)
        throw new ExecgateError("limit_exceeded", `entry of ${e.length} bytes does not fit a tile bundle`);
      parts.push(Uint8Array.of(e.length >> 8, e.length & 0xff), e);
    }
    out.push({ path: tilePath("tile/entries", n, chunk.length), bytes: concatBytes(...parts) });
  }
  return out;
}
