import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import type { SignedCheckpoint } from "./checkpointer.js";
import { fsyncDir, ioError, writeAll, writeNewFileSynced } from "./fsutil.js";
import type { Lineage } from "./lineage.js";

/**
 * Bundle export: a self-contained directory an auditor verifies offline (src/audit):
 *
 *   <out>/segments/<first index>.seg   journal segments holding exactly entries [0, N)
 *   <out>/checkpoints.log              intents and signed checkpoints, up to the one for N
 *   <out>/log.vkey                     the checkpoint key (signed-note vkey), one line
 *   <out>/origin                       the checkpoint origin, one line
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
  const { journal, checkpointer } = opts.lineage;
  await journal.drain();
  const cp = (await checkpointer.signNow()) ?? checkpointer.latest();
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

/** Reads an exported bundle's files for the pure verifier (src/audit/verify.ts). */
export async function readBundle(dir: string): Promise<BundleFiles> {
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
