import { type FileHandle, open } from "node:fs/promises";
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
