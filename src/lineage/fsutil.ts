import { type FileHandle, open, rename } from "node:fs/promises";
import { ExecgateError } from "../core/errors.js";

/** Wraps a filesystem failure into the project's error type (exit code 3). */
export function ioError(what: string, e: unknown): ExecgateError {
  const msg = e instanceof Error ? e.message : String(e);
  return new ExecgateError("io_error", `${what}: ${msg}`, {}, { cause: e });
}

/** fsync a directory so a rename or create inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } finally {
    await fh?.close();
  }
}

export async function writeAll(fh: FileHandle, data: Uint8Array, position: number | null): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(
      data,
      off,
      data.length - off,
      position === null ? null : position + off,
    );
    if (bytesWritten <= 0) throw new ExecgateError("io_error", "short write");
    off += bytesWritten;
  }
}

/** Creates `path` (which must not exist, mode 0640) holding `data`, fsynced before it returns. */
export async function writeNewFileSynced(path: string, data: Uint8Array): Promise<void> {
  const fh = await open(path, "wx", 0o640);
  try {
    await writeAll(fh, data, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Puts `data` at `final` durably: written and fsynced as `tmp`, renamed over `final`, and the
 * directory fsynced so the rename survives a crash. A crash before the rename leaves only `tmp`.
 */
export async function replaceFileDurably(
  dir: string,
  tmp: string,
  final: string,
  data: Uint8Array,
): Promise<void> {
  await writeNewFileSynced(tmp, data);
  await rename(tmp, final);
  await fsyncDir(dir);
}
