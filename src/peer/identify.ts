import { stat } from "node:fs/promises";
import type { Socket } from "node:net";
import { ExecgateError } from "../core/errors.js";
import type { Native } from "../native/index.js";
import { loadNative, socketFd } from "../native/index.js";
import type { ExeFile } from "./exe-digest.js";
import { ExeDigestCache } from "./exe-digest.js";
import { parseCgroup, parsePidfdInfoPid, parseProcStat } from "./proc-parse.js";
import type { ProcSource } from "./procfs.js";
import { procfs } from "./procfs.js";

/**
 * Who is on the other end of an accepted Unix socket, from the kernel only: SO_PEERCRED
 * (recorded by the kernel at connect(2)), then /proc for that pid. Nothing the client sends
 * is consulted.
 *
 * PID reuse: the pid from SO_PEERCRED may belong to a different process by the time /proc is
 * read. With SO_PEERPIDFD (Linux ≥ 6.5) the kernel hands us a pidfd for the process that
 * connected; we check that it names the same pid before reading, and that it is still alive
 * after reading — a pid cannot be reused while its process (or zombie) exists, so every read
 * in between was of the connecting process. Without a pidfd, the start time (stat field 22)
 * is read before and after the other files and must not change, which catches reuse during
 * the lookup but not reuse between connect and the first read.
 *
 * The executable is opened and hashed first and /proc/<pid>/exe is stat'ed again at the end,
 * so an exec() of another file during the lookup is refused (exec keeps pid and start time).
 *
 * The path readlink(/proc/<pid>/exe) gives is the file's place in the CALLER's mount
 * namespace: anyone can unshare one (user namespaces) and bind-mount any binary over any path.
 * The path is therefore vouched for (`exePathVerified`) only when the same path, stat'ed in the
 * daemon's own mount namespace, is the very file the process runs (device and inode of the
 * image opened for hashing). Other namespaces, replaced or deleted files, and paths the daemon
 * cannot see (ProtectHome=, PrivateTmp=) leave it unverified.
 *
 * Limits that no lookup can remove: identity is that of the process that called connect(),
 * as it is at lookup time, not of whoever writes to the socket. A process that connects,
 * forks (the child keeps the socket) and exec()s an allowed image is reported as that image
 * while its child sends the requests; identifying at accept (net.Server `pauseOnConnect`, as
 * the server does) narrows the window but does not close it, and a same-uid ptrace needs no
 * window at all. So the executable separates callers of different uids only
 * (docs/threat-model.md); `execgate policy check` warns about executors relying on it alone.
 */

/** An executable digest as IMA measured it; filled in by the IMA component's hook. */
export interface ImaExeDigest {
  /** IMA hash algorithm name, e.g. "sha256" */
  readonly algorithm: string;
  /** lowercase hex */
  readonly digest: string;
}

/**
 * Hook for the IMA-measured digest of the peer's executable (the measure component supplies
 * it). Called during the lookup, so the PID-reuse re-check also covers it. Returning
 * undefined means "IMA has no measurement for this file"; throwing fails the lookup.
 */
export type ImaExeDigestHook = (peer: {
  readonly pid: number;
  readonly exe: string;
  readonly file: ExeFile;
  readonly exeSha256: string;
}) => Promise<ImaExeDigest | undefined>;

export interface PeerIdentity {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** /proc/<pid>/stat field 22: start time after boot in clock ticks; (pid, startTime) names one process per boot. */
  readonly startTime: number;
  /**
   * readlink(/proc/<pid>/exe), as the kernel reports it (may end in " (deleted)"): the path in
   * the caller's mount namespace, for logs. Only with `exePathVerified` does it name the file.
   */
  readonly exe: string;
  /**
   * True when stat(exe) in the daemon's mount namespace is the file the process runs (same
   * device and inode); false otherwise (another mount namespace, a file replaced or deleted
   * since, a path hidden from the daemon). Policy matches `exe_paths` only on a verified path.
   */
  readonly exePathVerified: boolean;
  /** SHA-256 (hex) of the file the process executes. */
  readonly exeSha256: string;
  /** System manager unit: "foo.service", "session-3.scope", or "user@UID.service" for user-manager processes. */
  readonly unit?: string;
  /** Unit inside a user manager; never equal in meaning to a system unit of the same name. */
  readonly userUnit?: string;
  /** Present only when an `imaExeDigest` hook was given and IMA had a measurement. */
  readonly imaExeDigest?: ImaExeDigest;
  /** True when the pidfd defence applied (SO_PEERPIDFD available); false when only the start-time re-check did. */
  readonly pidfdChecked: boolean;
}

export interface IdentifyOptions {
  /** Defaults to the loaded addon (throws ExecgateError when it is missing). */
  readonly native?: Native;
  /** Defaults to /proc. */
  readonly proc?: ProcSource;
  /** Defaults to one cache shared by the process. */
  readonly exeDigests?: ExeDigestCache;
  /**
   * "prefer" (default): use SO_PEERPIDFD when the kernel has it; "require": fail without it;
   * "off": start-time re-check only.
   */
  readonly pidfd?: "prefer" | "require" | "off";
  readonly imaExeDigest?: ImaExeDigestHook;
  /** Stops the executable's hash when it aborts (the lookup then fails with `timeout`). */
  readonly signal?: AbortSignal;
}

const sharedExeDigests = new ExeDigestCache();

function failed(check: string, message: string, detail: Record<string, unknown>): ExecgateError {
  return new ExecgateError("verification_failed", message, { check, ...detail });
}

/** The uid SO_PEERCRED gives for an accepted AF_UNIX stream socket (what the server counts connections by). */
export function peerUid(socket: Socket, native: Native = loadNative()): number {
  return native.peerCred(socketFd(socket)).uid;
}

/** Identifies the peer of an accepted AF_UNIX stream socket (a net.Socket from a net.Server on a path). */
export async function identifyPeer(socket: Socket, options: IdentifyOptions = {}): Promise<PeerIdentity> {
  const native = options.native ?? loadNative();
  return identifyPeerFd(socketFd(socket), native, options);
}

/** identifyPeer for a raw connected socket descriptor. */
export async function identifyPeerFd(
  fd: number,
  native: Native,
  options: IdentifyOptions = {},
): Promise<PeerIdentity> {
  const cred = native.peerCred(fd);
  if (!Number.isSafeInteger(cred.pid) || cred.pid <= 0) {
    // 0: the peer's pid is not visible in our pid namespace (or this is not a connected socket)
    throw failed("peer_no_pid", "peer has no pid visible to the daemon", { pid: cred.pid });
  }
  const mode = options.pidfd ?? "prefer";
  const pidfd = mode === "off" ? null : peerPidfd(native, fd, cred.pid);
  if (pidfd === null && mode === "require") {
    throw new ExecgateError(
      "unsupported",
      "SO_PEERPIDFD is required but the kernel does not provide it (Linux < 6.5)",
    );
  }
  try {
    return await lookup(cred, pidfd, native, options);
  } finally {
    if (pidfd !== null) native.closeFd(pidfd);
  }
}

/**
 * SO_PEERPIDFD, or null when the kernel lacks it (the addon answers null only for ENOPROTOOPT).
 * EINVAL and ESRCH mean the kernel has the option but the peer is already gone (reaped).
 */
function peerPidfd(native: Native, fd: number, pid: number): number | null {
  try {
    return native.peerPidfd(fd);
  } catch (e) {
    if (e instanceof ExecgateError && (e.detail.errno === "EINVAL" || e.detail.errno === "ESRCH"))
      throw failed("peer_exited", `peer ${pid} exited before it was identified`, { pid });
    throw e;
  }
}

async function lookup(
  cred: { pid: number; uid: number; gid: number },
  pidfd: number | null,
  native: Native,
  options: IdentifyOptions,
): Promise<PeerIdentity> {
  const proc = options.proc ?? procfs();
  const exeDigests = options.exeDigests ?? sharedExeDigests;
  const { pid } = cred;

  if (pidfd !== null) {
    const pidfdPid = parsePidfdInfoPid(await proc.readOwnFdinfo(pidfd));
    if (pidfdPid === null)
      throw failed("peer_exited", `peer ${pid} exited before it was identified`, { pid });
    if (pidfdPid !== pid) {
      throw failed("peer_pidfd_mismatch", `peer pidfd names pid ${pidfdPid}, SO_PEERCRED says ${pid}`, {
        pid,
        pidfdPid,
      });
    }
  }

  const first = parseProcStat(await proc.readStat(pid));
  if (first.pid !== pid) throw failed("peer_stat_mismatch", `stat of ${pid} names pid ${first.pid}`, { pid });
  if (first.state === "Z" || first.state === "X") {
    throw failed("peer_exited", `peer ${pid} has exited (zombie)`, { pid });
  }

  // The image is opened and hashed before its path is read, and re-stat'ed at the end: an
  // exec() to another file anywhere in between shows up as a different dev/ino.
  const digest = await exeDigests.digest(pid, proc, options.signal);
  const exe = await proc.readExeLink(pid);
  const exePathVerified = await isFileAt(exe, digest.file);
  const cgroup = parseCgroup(await proc.readCgroup(pid));
  const ima = options.imaExeDigest
    ? await options.imaExeDigest({ pid, exe, file: digest.file, exeSha256: digest.sha256 })
    : undefined;

  // Re-check after every read: same start time, same image, and (with a pidfd) the process
  // still exists — checked last, so it vouches for every read before it.
  const again = parseProcStat(await proc.readStat(pid));
  if (again.pid !== pid || again.startTime !== first.startTime) {
    throw failed("peer_pid_reused", `pid ${pid} now belongs to another process`, {
      pid,
      startTime: first.startTime,
      nowStartTime: again.startTime,
    });
  }
  const image = await proc.statExe(pid);
  if (image.dev !== digest.file.dev || image.ino !== digest.file.ino) {
    throw failed("peer_exe_changed", `peer ${pid} executed another file while it was being identified`, {
      pid,
    });
  }
  if (pidfd !== null && !native.pidfdIsAlive(pidfd)) {
    throw failed("peer_exited", `peer ${pid} exited while it was being identified`, { pid });
  }

  return {
    pid,
    uid: cred.uid,
    gid: cred.gid,
    startTime: first.startTime,
    exe,
    exePathVerified,
    exeSha256: digest.sha256,
    ...(cgroup?.unit !== undefined ? { unit: cgroup.unit } : {}),
    ...(cgroup?.userUnit !== undefined ? { userUnit: cgroup.userUnit } : {}),
    ...(ima !== undefined ? { imaExeDigest: ima } : {}),
    pidfdChecked: pidfd !== null,
  };
}

/**
 * Whether `path`, resolved in the daemon's mount namespace, is `file`. Any failure to stat it
 * (missing, " (deleted)", hidden, not permitted) is a no: the path then vouches for nothing.
 */
async function isFileAt(path: string, file: ExeFile): Promise<boolean> {
  try {
    const st = await stat(path, { bigint: true });
    return st.dev === file.dev && st.ino === file.ino;
  } catch {
    return false;
  }
}
