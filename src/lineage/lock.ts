import { readFileSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { ExecgateError } from "../core/errors.js";
import { loadNative } from "../native/index.js";
import { ioError } from "./fsutil.js";

/**
 * One writer per lineage directory: an exclusive flock(2) on `<dir>/LOCK`, held for as long as
 * the journal is open. The kernel releases it when its holder closes the file or ends, however
 * it ends (crash, SIGKILL, a container stopped), so there are no stale locks to judge: no pid
 * checks, no PID reuse, no PID namespaces, no window in which two processes take over one lock.
 * A second open within one process is refused as well (flock locks belong to the open file, and
 * each acquire opens its own). The file's content, "<pid> <boot id>\n" of the holder, only names
 * it in the refusal; LOCK itself is never removed (a removal could race an opener of the old file).
 */
export class LockFile {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** `what` names the directory in the refusal ("lineage directory" unless told). */
  static async acquire(dir: string, what = "lineage directory"): Promise<LockFile> {
    const path = `${dir}/LOCK`;
    let fh: FileHandle;
    try {
      fh = await open(path, "a+", 0o640);
    } catch (e) {
      throw ioError(`lock ${path}`, e);
    }
    try {
      if (!loadNative().lockExclusive(fh.fd)) {
        const holder = (await fh.readFile("utf8").catch(() => "")).trim();
        throw new ExecgateError("io_error", `${what} ${dir} is locked by ${holder || "another process"}`, {
          lock: path,
          holder,
        });
      }
      await fh.truncate(0);
      await fh.write(`${process.pid} ${bootId()}\n`, 0);
      await fh.datasync();
      return new LockFile(path, fh);
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e instanceof ExecgateError ? e : ioError(`lock ${path}`, e);
    }
  }

  /** Releases the lock (closing the file releases the flock). */
  async release(): Promise<void> {
    await this.fh.close();
  }
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown-boot";
  }
}
