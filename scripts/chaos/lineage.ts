import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { toHex } from "../../src/core/hex.js";
import { parseSegment } from "../../src/lineage/bundle-files.js";
import { decodeEntry } from "../../src/lineage/entry.js";
import { type Acknowledged, tokenHash } from "./load.js";

/**
 * What an exported bundle's log holds of tokens, read entry by entry: token_issued carries the
 * SHA-256 of the token it released, token_redeemed the token itself. Append-only, so each read
 * decodes only the entries after the last one it saw.
 */
export interface LineageSeen {
  readonly issued: Set<string>;
  readonly redeemed: Set<string>;
  /** Entries read so far (the next read starts here). */
  size: number;
  /** daemon_start entries: one per start of the daemon. */
  starts: number;
  /** recovery entries whose daemon cut a torn tail, and the bytes cut. */
  tornTails: number;
  tornBytes: number;
}

export function newLineageSeen(): LineageSeen {
  return { issued: new Set(), redeemed: new Set(), size: 0, starts: 0, tornTails: 0, tornBytes: 0 };
}

const SEGMENT_NAME = /^(\d{20})\.seg$/;

/** Reads the entries of the bundle in `dir` from `seen.size` on into `seen`. */
export async function readBundleEntries(dir: string, seen: LineageSeen): Promise<void> {
  const segDir = join(dir, "segments");
  const names = (await readdir(segDir)).filter((n) => SEGMENT_NAME.test(n)).sort();
  for (const [i, name] of names.entries()) {
    const next = names[i + 1];
    // A segment followed by one that starts at or before what was read holds nothing new.
    if (next !== undefined && Number(SEGMENT_NAME.exec(next)![1]) <= seen.size) continue;
    const seg = parseSegment({ name, bytes: new Uint8Array(await readFile(join(segDir, name))) });
    if (seg.badOffset !== undefined)
      throw new Error(`bundle segment ${name}: bad record at ${seg.badOffset}`);
    if (seg.first > seen.size)
      throw new Error(`bundle segment ${name} starts at ${seg.first}, after ${seen.size}`);
    for (let k = seen.size - seg.first; k < seg.entries.length; k++) {
      const e = decodeEntry(seg.entries[k]!);
      if (e.type === "token_issued") seen.issued.add(toHex(e.body.digest));
      else if (e.type === "token_redeemed") seen.redeemed.add(tokenHash(e.body.token));
      else if (e.type === "daemon_start") seen.starts += 1;
      else if (e.type === "recovery" && e.body.truncatedBytes > 0) {
        seen.tornTails += 1;
        seen.tornBytes += e.body.truncatedBytes;
      }
    }
    seen.size = Math.max(seen.size, seg.first + seg.entries.length);
  }
}

/** Acknowledged tokens and redeems that the log does not hold (each must be empty). */
export function lost(acked: Acknowledged, seen: LineageSeen): { tokens: string[]; redeems: string[] } {
  return {
    tokens: [...acked.tokens].filter((h) => !seen.issued.has(h)),
    redeems: [...acked.redeems].filter((h) => !seen.redeemed.has(h)),
  };
}
