import type { BigIntStats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { MAX_CGROUP_BYTES, MAX_FDINFO_BYTES, MAX_PROC_STAT_BYTES } from "./proc-parse.js";

/**
 * The /proc reads that identify a peer, behind one small interface so the identification
 * logic can be exercised against races it cannot provoke on demand (a wrapper that changes
 * the world between two reads). Production uses `procfs()`.
 */
export interface ProcSource {
  readStat(pid: number): Promise<string>;
  readCgroup(pid: number): Promise<string>;
  /** readlink(/proc/<pid>/exe): the path the kernel reports for the running image. */
  readExeLink(pid: number): Promise<string>;
  /** open(/proc/<pid>/exe): the running image itself, even if its path was replaced or deleted. */
  openExe(pid: number): Promise<FileHandle>;
  /** stat(/proc/<pid>/exe), which follows the link to the file the process runs now. */
  statExe(pid: number): Promise<BigIntStats>;
  /** /proc/self/fdinfo/<fd> of one of our own descriptors (a pidfd). */
  readOwnFdinfo(fd: number): Promise<string>;
}

/** Maps a failed /proc access to the project's error, naming the file. */
export function procError(e: unknown, what: string, pid: number): ExecgateError {
  if (e instanceof ExecgateError) return e;
  const code = e instanceof Error ? Reflect.get(e, "code") : undefined;
  if (code === "ENOENT" || code === "ESRCH") {
    return new ExecgateError(
      "verification_failed",
      `peer ${pid}: ${what} is gone (process exited)`,
      {
        check: "peer_exited",
        pid,
      },
      { cause: e },
    );
  }
  if (code === "EACCES" || code === "EPERM") {
    return new ExecgateError(
      "io_error",
      `peer ${pid}: no permission to read ${what} (the daemon needs CAP_SYS_PTRACE to inspect other users' processes)`,
      { pid, errno: code },
      { cause: e },
    );
  }
  return new ExecgateError(
    "io_error",
    `peer ${pid}: reading ${what}: ${e instanceof Error ? e.message : String(e)}`,
    { pid, errno: typeof code === "string" ? code : "unknown" },
    { cause: e },
  );
}

async function readBounded(path: string, max: number, what: string, pid: number): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw procError(e, what, pid);
  }
  if (text.length > max) throw new ExecgateError("limit_exceeded", `peer ${pid}: ${what} larger than ${max}`);
  return text;
}

function checkPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0)
    throw new ExecgateError("internal", `invalid pid ${String(pid)}`);
}

/** /proc as the kernel presents it (`root` is only for a differently mounted procfs). */
export function procfs(root = "/proc"): ProcSource {
  return {
    readStat(pid) {
      checkPid(pid);
      // +1: a stat line over the bound is still reported as over the bound by the parser
      return readBounded(join(root, String(pid), "stat"), MAX_PROC_STAT_BYTES + 1, "stat", pid);
    },
    readCgroup(pid) {
      checkPid(pid);
      return readBounded(join(root, String(pid), "cgroup"), MAX_CGROUP_BYTES + 1, "cgroup", pid);
    },
    async readExeLink(pid) {
      checkPid(pid);
      try {
        return await readlink(join(root, String(pid), "exe"));
      } catch (e) {
        throw procError(e, "exe link", pid);
      }
    },
    async openExe(pid) {
      checkPid(pid);
      try {
        return await open(join(root, String(pid), "exe"), "r");
      } catch (e) {
        throw procError(e, "exe", pid);
      }
    },
    async statExe(pid) {
      checkPid(pid);
      try {
        return await stat(join(root, String(pid), "exe"), { bigint: true });
      } catch (e) {
        throw procError(e, "exe", pid);
      }
    },
    readOwnFdinfo(fd) {
      if (!Number.isInteger(fd) || fd < 0) throw new ExecgateError("internal", `invalid fd ${String(fd)}`);
      return readBounded(join(root, "self", "fdinfo", String(fd)), MAX_FDINFO_BYTES + 1, "pidfd fdinfo", 0);
    },
  };
}
