import { createHash } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { assertBundleDir } from "../lineage/export.js";
import { EntryBundleStream, HashTileStream, type TileFile } from "../lineage/tiles.js";
import {
  type Inventory,
  type InventoryRule,
  LOG_FILES,
  type OddPath,
  pathsOf,
  takeInventory,
} from "./inventory.js";
import type { AuditFailure } from "./verify.js";

/**
 * The auditor's reading of a bundle directory (docs/audit.md): every path listed and matched
 * against the inventory (src/audit/inventory.ts), then the small log files read for the pure
 * verifier (segments are streamed), and the checks that need the files themselves: tiles recomputed and compared byte for byte,
 * and every blob hashed against its name. A file that is absent is undefined here; whether that
 * fails is the inventory's call, made in one place.
 */

/** Deeper than any bundle path (tile/entries/x001/x002/003.p/7 is five levels). */
const MAX_DEPTH = 8;
/** More paths than a bundle of any plausible log holds; beyond it the walk stops, failed. */
const MAX_PATHS = 50_000_000;

export interface AuditBundle {
  readonly inventory: Inventory;
  /** segments/*.seg, bundle-relative, in order: read as a stream (readSegmentEvents). */
  readonly segmentPaths: readonly string[];
  readonly checkpointLog?: Uint8Array;
  readonly checkpointFile?: Uint8Array;
  readonly vkeyText?: string;
  readonly originText?: string;
}

/** Every regular file under dir as a relative path, and every other kind of path as odd. */
async function walk(dir: string): Promise<{ files: string[]; odd: OddPath[] }> {
  const files: string[] = [];
  const odd: OddPath[] = [];
  const visit = async (rel: string, depth: number): Promise<void> => {
    const names = (await readdir(join(dir, rel))).sort();
    if (names.length === 0 && rel !== "")
      odd.push({ path: `${rel}/`, kind: "an empty directory", emptyDir: true });
    for (const name of names) {
      const p = rel === "" ? name : `${rel}/${name}`;
      // lstat: a symlink in a bundle could point anywhere on the auditor's machine.
      const st = await lstat(join(dir, p));
      if (st.isDirectory() && depth < MAX_DEPTH) await visit(p, depth + 1);
      else if (st.isFile()) files.push(p);
      else
        odd.push({ path: p, kind: st.isDirectory() ? "a directory nested too deep" : "not a regular file" });
      if (files.length + odd.length > MAX_PATHS)
        throw new ExecgateError("limit_exceeded", `bundle ${dir} holds more than ${MAX_PATHS} paths`);
    }
  };
  await visit("", 0);
  return { files, odd };
}

export async function readAuditBundle(dir: string, opts: { keyChain: boolean }): Promise<AuditBundle> {
  await assertBundleDir(dir);
  const { files, odd } = await walk(dir);
  const inventory = takeInventory(files, odd, opts);
  const read = async (rel: string) => new Uint8Array(await readFile(join(dir, rel)));
  const one = async (rule: InventoryRule) => {
    const [p] = pathsOf(inventory, rule);
    return p === undefined ? undefined : read(p);
  };
  const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));
  const segmentPaths = [...pathsOf(inventory, LOG_FILES.segment)].sort();
  const checkpointLog = await one(LOG_FILES.checkpointLog);
  const checkpointFile = await one(LOG_FILES.checkpoint);
  const vkeyText = text(await one(LOG_FILES.vkey));
  const originText = text(await one(LOG_FILES.origin));
  return {
    inventory,
    segmentPaths,
    ...(checkpointLog ? { checkpointLog } : {}),
    ...(checkpointFile ? { checkpointFile } : {}),
    ...(vkeyText !== undefined ? { vkeyText } : {}),
    ...(originText !== undefined ? { originText } : {}),
  };
}

/**
 * tile/ recomputed from the log's entries as they stream past and compared byte for byte: every
 * tile the log has must be there and equal (`tile_missing`, `tile_mismatch`), and no other
 * (`tile_extra`). One tile is computed and one file read at a time.
 */
export class TileAudit {
  readonly failures: AuditFailure[] = [];
  private readonly left: Set<string>;
  private readonly hashes = new HashTileStream();
  private readonly bundles = new EntryBundleStream();

  constructor(
    private readonly dir: string,
    present: readonly string[],
  ) {
    this.left = new Set(present);
  }

  push(entry: Uint8Array, leaf: Uint8Array): void {
    for (const t of this.hashes.push(leaf)) this.compare(t);
    const b = this.bundles.push(entry);
    if (b) this.compare(b);
  }

  finish(): AuditFailure[] {
    for (const t of this.hashes.finish()) this.compare(t);
    const last = this.bundles.finish();
    if (last) this.compare(last);
    for (const p of [...this.left].sort())
      this.failures.push({ check: "tile_extra", path: p, reason: `${p} is no tile of the log's entries` });
    return this.failures;
  }

  private compare(t: TileFile): void {
    if (!this.left.delete(t.path)) {
      this.failures.push({ check: "tile_missing", path: t.path, reason: `${t.path} is not in the bundle` });
      return;
    }
    if (!readFileSync(join(this.dir, t.path)).equals(t.bytes))
      this.failures.push({
        check: "tile_mismatch",
        path: t.path,
        reason: `${t.path} differs from the log's entries`,
      });
  }
}

/** Every file in blobs/ hashes to its name, read as a stream (evidence blobs can be large). */
export async function auditBlobDigests(
  dir: string,
  blobs: readonly string[],
  onProgress?: (done: number) => void,
): Promise<AuditFailure[]> {
  const failures: AuditFailure[] = [];
  for (const [i, p] of blobs.entries()) {
    if (onProgress && i % 1024 === 0) onProgress(i);
    const h = createHash("sha256");
    for await (const chunk of createReadStream(join(dir, p))) h.update(chunk as Buffer);
    if (h.digest("hex") !== p.slice("blobs/".length))
      failures.push({ check: "blob_digest", path: p, reason: `${p} does not hash to its name` });
  }
  return failures;
}
