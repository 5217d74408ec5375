import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { makeDirs } from "../core/mkdirs.js";
import { parseSegment } from "./bundle-files.js";
import type { SignedCheckpoint } from "./checkpointer.js";
import { fsyncDir, ioError, writeAll, writeNewFileSynced } from "./fsutil.js";
import { leafHash } from "./hash.js";
import { type Lineage, lineageParts } from "./lineage.js";
import { EntryBundleStream, HashTileStream, type TileFile } from "./tiles.js";

/**
 * Bundle export: a self-contained directory an auditor verifies offline (src/audit):
 *
 *   <out>/segments/<first index>.seg   journal segments holding exactly entries [0, N)
 *   <out>/checkpoints.log              intents and signed checkpoints, up to the one for N
 *   <out>/log.vkey                     the checkpoint key (signed-note vkey), one line
 *   <out>/origin                       the checkpoint origin, one line
 *   <out>/checkpoint                   the signed checkpoint for N (the last one in checkpoints.log)
 *   <out>/tile/…                       C2SP tlog-tiles view of entries [0, N)
 *   <out>/blobs/<sha256 hex>           evidence referenced by digest (when a blob dir is given)
 *
 * N is the size of a checkpoint signed for the export (the tree at the time of the call), so
 * every exported entry is covered by a signature; appends may continue meanwhile. The vkey in
 * the bundle is a convenience: an auditor must compare it with the key they enrolled.
 */

export interface ExportOptions {
  readonly lineage: Lineage;
  /** Output directory; must not exist yet. */
  readonly out: string;
  /** The blob store directory to copy, if any. */
  readonly blobsDir?: string;
}

export interface ExportResult {
  readonly size: number;
  readonly checkpoint: SignedCheckpoint;
  readonly segments: number;
  readonly blobs: number;
}

const COPY_CHUNK = 1 << 20;
const BLOB_NAME = /^[0-9a-f]{64}$/;

export async function exportBundle(opts: ExportOptions): Promise<ExportResult> {
  const { journal, checkpointer } = lineageParts(opts.lineage);
  await journal.drain();
  const cp = (await checkpointer.signCovering()) ?? checkpointer.latest();
  if (cp === undefined)
    throw new ExecgateError("io_error", "lineage export: the log is empty, nothing is signed yet");
  const size = cp.checkpoint.size;
  const extents = journal.extentsFor(size);

  try {
    await mkdir(opts.out, { mode: 0o750 });
    await mkdir(join(opts.out, "segments"), { mode: 0o750 });
  } catch (e) {
    throw ioError(`lineage export: create ${opts.out}`, e);
  }
  // Durability: every file is written and fsynced, then each directory is fsynced, so a bundle
  // that exists after a crash is complete or visibly missing files (never silently short).
  for (const x of extents) await copyPrefix(x.path, join(opts.out, "segments", x.name), x.length);
  // The log up to this checkpoint's record, copied in chunks (it grows with every checkpoint).
  await copyPrefix(checkpointer.logPath, join(opts.out, "checkpoints.log"), cp.logEnd);
  await writeFileSynced(
    join(opts.out, "log.vkey"),
    new TextEncoder().encode(`${checkpointer.verifier.vkey}\n`),
  );
  await writeFileSynced(join(opts.out, "origin"), new TextEncoder().encode(`${cp.checkpoint.origin}\n`));
  await writeFileSynced(join(opts.out, "checkpoint"), new TextEncoder().encode(cp.note));
  await writeTiles(opts.out);
  let blobs = 0;
  if (opts.blobsDir !== undefined) {
    await mkdir(join(opts.out, "blobs"), { mode: 0o750 });
    for (const name of await readdir(opts.blobsDir)) {
      if (!BLOB_NAME.test(name)) continue;
      await copyPrefix(join(opts.blobsDir, name), join(opts.out, "blobs", name), Number.POSITIVE_INFINITY);
      blobs += 1;
    }
    await fsyncDir(join(opts.out, "blobs"));
  }
  await fsyncDir(join(opts.out, "segments"));
  await fsyncDir(opts.out);
  return { size, checkpoint: cp, segments: extents.length, blobs };
}

/**
 * The tlog-tiles view of the bundle's segments, written as it is built: one segment in memory at
 * a time, one tile's hashes per level, and a write (a turn of the event loop, where token requests
 * go on being served) after every tile — never the whole log in memory or in one turn.
 */
async function writeTiles(out: string): Promise<void> {
  const dirs = new Set<string>();
  const write = async (t: TileFile) => {
    const path = join(out, t.path);
    if (!dirs.has(dirname(path))) {
      await makeDirs(dirname(path), 0o750);
      dirs.add(dirname(path));
    }
    await writeFileSynced(path, t.bytes);
  };
  const hashes = new HashTileStream();
  const bundles = new EntryBundleStream();
  const segDir = join(out, "segments");
  for (const name of (await readdir(segDir)).filter((n) => n.endsWith(".seg")).sort()) {
    const seg = parseSegment({ name, bytes: new Uint8Array(await readFile(join(segDir, name))) });
    if (seg.badOffset !== undefined)
      throw new ExecgateError(
        "internal",
        `lineage export: segment ${name} does not parse at ${seg.badOffset}`,
      );
    for (const entry of seg.entries) {
      for (const t of hashes.push(leafHash(entry))) await write(t);
      const bundle = bundles.push(entry);
      if (bundle) await write(bundle);
    }
  }
  for (const t of hashes.finish()) await write(t);
  const last = bundles.finish();
  if (last) await write(last);
  for (const d of dirs) await fsyncDir(d);
}

async function copyPrefix(from: string, to: string, length: number): Promise<void> {
  let src: FileHandle | undefined;
  let dst: FileHandle | undefined;
  try {
    src = await open(from, "r");
    dst = await open(to, "wx", 0o640);
    const buf = new Uint8Array(COPY_CHUNK);
    let pos = 0;
    while (pos < length) {
      const want = Math.min(COPY_CHUNK, length - pos);
      const { bytesRead } = await src.read(buf, 0, want, pos);
      if (bytesRead === 0) {
        if (Number.isFinite(length))
          throw new ExecgateError("io_error", `lineage export: ${from} is shorter than expected`);
        break;
      }
      await writeAll(dst, buf.subarray(0, bytesRead), pos);
      pos += bytesRead;
    }
    await dst.sync();
  } catch (e) {
    if (e instanceof ExecgateError) throw e;
    throw ioError(`lineage export: copy ${from}`, e);
  } finally {
    await src?.close();
    await dst?.close();
  }
}

async function writeFileSynced(path: string, data: Uint8Array): Promise<void> {
  try {
    await writeNewFileSynced(path, data);
  } catch (e) {
    throw ioError(`lineage export: write ${path}`, e);
  }
}

export interface BundleFiles {
  readonly origin: string;
  readonly vkeys: readonly string[];
  readonly segments: readonly { readonly name: string; readonly bytes: Uint8Array }[];
  readonly checkpointLog: Uint8Array;
  readonly blobNames: readonly string[];
}

/**
 * A path that is no directory, or a directory with none of a bundle's lineage files, is not a
 * lineage bundle: said so (exit 3, unreadable bundle), rather than as the first failed read.
 */
export async function assertBundleDir(dir: string): Promise<void> {
  const notBundle = (why: string) => new ExecgateError("io_error", `not a lineage bundle: ${dir} ${why}`);
  const st = await stat(dir).catch(() => undefined);
  if (st === undefined) throw notBundle("does not exist");
  if (!st.isDirectory()) throw notBundle("is not a directory");
  const names = await readdir(dir).catch(() => undefined);
  if (names === undefined) throw notBundle("cannot be read");
  if (!["segments", "checkpoints.log", "checkpoint"].some((n) => names.includes(n)))
    throw notBundle("holds no segments/, checkpoints.log or checkpoint");
}

/** Reads an exported bundle's files for the pure verifier (src/audit/verify.ts). */
export async function readBundle(dir: string): Promise<BundleFiles> {
  await assertBundleDir(dir);
  try {
    const names = (await readdir(join(dir, "segments"))).filter((n) => n.endsWith(".seg")).sort();
    const segments = await Promise.all(
      names.map(async (name) => ({
        name,
        bytes: new Uint8Array(await readFile(join(dir, "segments", name))),
      })),
    );
    const vkeys = (await readFile(join(dir, "log.vkey"), "utf8")).split("\n").filter((l) => l.length > 0);
    const origin = (await readFile(join(dir, "origin"), "utf8")).replace(/\n$/, "");
    const checkpointLog = new Uint8Array(await readFile(join(dir, "checkpoints.log")));
    const blobNames = (await readdir(join(dir, "blobs")).catch(() => [] as string[])).filter((n) =>
      BLOB_NAME.test(n),
    );
    return { origin, vkeys, segments, checkpointLog, blobNames };
  } catch (e) {
    throw ioError(`read bundle ${dir}`, e);
  }
}
