import { readFileSync, readlinkSync } from "node:fs";
import { link, open, readFile, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { fsyncDir, ioError } from "./fsutil.js";

/** The LOCK paths this process holds (resolved); per thread, and lineage opens on the main one. */
const held = new Set<string>();

/**
 * One writer per lineage directory: `<dir>/LOCK` holding "<pid> <boot id> <pid namespace>\n".
 * Node has no flock(2).
 * The content is written and fsynced in `LOCK.<pid>` first, then hard-linked to `LOCK`: link(2)
 * fails with EEXIST atomically like O_EXCL, and LOCK is never visible half-written.
 *
 * Stale locks: a LOCK whose boot id differs from the running kernel's, or whose pid no longer
 * exists (kill(pid, 0) → ESRCH), is stale and is replaced. A live pid (or EPERM: someone else's
 * live process) means the directory is in use: refuse. A pid of another PID namespace (another
 * container sharing the directory) cannot be checked from here: refuse. A LOCK naming our own
 * pid in our namespace that this process does not hold (`held`) is stale too: an earlier
 * process with the same pid left it (a SIGKILLed `dev up` in a container where node is pid 1);
 * a second acquire within this process is refused by `held`, not by the pid. PID reuse after a
 * crash can make a stale lock look
 * live; that fails closed (the operator removes LOCK). Two processes taking over the same
 * stale lock at the same instant could both succeed; systemd runs one daemon per directory, so
 * that window is accepted and documented rather than closed with a second protocol.
 */
export class LockFile {
  private constructor(
    readonly path: string,
    private readonly content: string,
  ) {}

  static async acquire(dir: string): Promise<LockFile> {
    const path = `${dir}/LOCK`;
    const key = resolve(path);
    if (held.has(key))
      throw new ExecgateError("io_error", `lineage directory ${dir} is locked by this process`, {
        lock: path,
      });
    held.add(key); // before any await: a concurrent acquire in this process must see it
    try {
      return await LockFile.take(dir, path);
    } catch (e) {
      held.delete(key);
      throw e;
    }
  }

  private static async take(dir: string, path: string): Promise<LockFile> {
    const content = `${process.pid} ${bootId()} ${pidNamespace()}\n`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const tmp = `${path}.${process.pid}`;
      try {
        const fh = await open(tmp, "w", 0o640);
        try {
          await fh.writeFile(content);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await link(tmp, path);
        await rm(tmp, { force: true });
        await fsyncDir(dir);
        return new LockFile(path, content);
      } catch (e) {
        await rm(tmp, { force: true });
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw ioError(`lock ${path}`, e);
      }
      const holder = await readFile(path, "utf8").catch(() => "");
      if (!isStale(holder)) {
        throw new ExecgateError(
          "io_error",
          `lineage directory ${dir} is locked by ${holder.trim() || "another process"}`,
          {
            lock: path,
          },
        );
      }
      await rm(path, { force: true });
    }
    throw new ExecgateError("io_error", `cannot acquire lock ${path}`);
  }

  async release(): Promise<void> {
    // Remove only our own lock (a stale-lock takeover may have replaced it).
    const now = await readFile(this.path, "utf8").catch(() => "");
    if (now === this.content) await rm(this.path, { force: true });
    held.delete(resolve(this.path));
  }
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown-boot";
  }
}

/** This process's PID namespace ("pid:[4026531836]"): the pids a LOCK names are its pids. */
function pidNamespace(): string {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return "-";
  }
}

function isStale(holder: string): boolean {
  const m = /^(\d+) (\S+)(?: (\S+))?\n?$/.exec(holder);
  if (m === null) return true; // not written by us: no live holder can be identified
  if (m[2] !== bootId()) return true;
  const pid = Number(m[1]);
  const ns = m[3];
  // A pid from another PID namespace (another container sharing the directory) says nothing
  // here: its holder may be alive, so the lock stands (the operator removes LOCK if not). Where
  // a namespace could not be read ("-") it is not compared: the pid alone decides, as in a LOCK
  // written before namespaces were recorded.
  const ours = pidNamespace();
  const comparable = ns !== undefined && ns !== "-" && ours !== "-";
  if (comparable && ns !== ours) return false;
  // Our own pid in our namespace, and this process does not hold the lock (acquire checked):
  // a predecessor's (a restarted pid 1). Without namespaces to compare it is not assumed ours.
  if (pid === process.pid) return comparable;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
}
