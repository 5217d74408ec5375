import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ExecgateError } from "../core/errors.js";

/**
 * Loader and typed wrapper for native/ (execgate_native.node): SO_PEERCRED, SO_PEERPIDFD,
 * pidfd liveness and sd_notify datagrams. There is no JavaScript fallback: without the addon
 * the daemon cannot tell who is calling, so `loadNative()` throws and the daemon refuses to
 * start.
 */

/** Peer credentials as the kernel recorded them when the peer called connect(2). */
export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

export interface Native {
  /** getsockopt(SO_PEERCRED) on a connected AF_UNIX stream socket. */
  peerCred(fd: number): PeerCred;
  /** getsockopt(SO_PEERPIDFD): a new pidfd the caller must close, or null when the kernel lacks it (< 6.5); a reaped peer throws (errno EINVAL/ESRCH). */
  peerPidfd(fd: number): number | null;
  /** False once the process behind the pidfd has exited. */
  pidfdIsAlive(pidfd: number): boolean;
  /** close(2) a descriptor this module handed out (a pidfd). */
  closeFd(fd: number): void;
  /** Sends one sd_notify datagram to an explicit NOTIFY_SOCKET address ('/path' or '@abstract'). */
  sdNotifyTo(socketPath: string, message: string): boolean;
  /**
   * flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another open file holds it. The
   * kernel releases it when the file is closed, however the holder ends.
   */
  lockExclusive(fd: number): boolean;
}

/** The addon's raw exports (native/src/execgate_native.c). */
interface RawAddon {
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  peerPidfd(fd: number): number | null;
  pidfdIsAlive(pidfd: number): boolean;
  closeFd(fd: number): void;
  sdNotify(socketPath: string, message: string): boolean;
  lockExclusive(fd: number): boolean;
}

const ADDON_FILE = join("native", "build", "Release", "execgate_native.node");
const RAW_FUNCTIONS = [
  "peerCred",
  "peerPidfd",
  "pidfdIsAlive",
  "closeFd",
  "sdNotify",
  "lockExclusive",
] as const;

/**
 * Where the addon may be: this file runs from src/native/ (tests, tsx) or dist/src/native/
 * (the built daemon); both resolve to the repository's native/ folder.
 */
export function nativeAddonCandidates(moduleUrl: string = import.meta.url): string[] {
  const here = dirname(fileURLToPath(moduleUrl));
  return [join(here, "..", "..", ADDON_FILE), join(here, "..", "..", "..", ADDON_FILE)];
}

let cached: Native | undefined;

/** Loads the addon once; throws ExecgateError("unsupported") when it is missing or stale. */
export function loadNative(): Native {
  cached ??= loadNativeFrom(nativeAddonCandidates());
  return cached;
}

/** Loads the first existing addon among `candidates` (uncached; loadNative is the normal entry). */
export function loadNativeFrom(candidates: readonly string[]): Native {
  const path = candidates.find((p) => existsSync(p));
  if (path === undefined) {
    throw new ExecgateError(
      "unsupported",
      `native addon not built (looked for ${candidates.join(", ")}): run scripts/setup.sh to build native/`,
      { candidates },
    );
  }
  let raw: unknown;
  try {
    raw = createRequire(import.meta.url)(path);
  } catch (e) {
    throw new ExecgateError(
      "unsupported",
      `native addon ${path} failed to load: ${e instanceof Error ? e.message : String(e)}; run scripts/setup.sh to rebuild native/`,
      { path },
      { cause: e },
    );
  }
  return wrap(checkShape(raw, path));
}

function checkShape(raw: unknown, path: string): RawAddon {
  const missing = RAW_FUNCTIONS.filter(
    (name) => typeof raw !== "object" || raw === null || typeof Reflect.get(raw, name) !== "function",
  );
  if (missing.length > 0) {
    throw new ExecgateError(
      "unsupported",
      `native addon ${path} lacks ${missing.join(", ")} (stale build?): run scripts/setup.sh to rebuild native/`,
      { path, missing },
    );
  }
  return raw as RawAddon;
}

/** Turns the addon's errno-named errors (and argument TypeErrors) into ExecgateError. */
function mapNativeError(e: unknown, what: string): ExecgateError {
  if (e instanceof ExecgateError) return e;
  if (e instanceof TypeError) return new ExecgateError("internal", `${what}: ${e.message}`, {}, { cause: e });
  if (e instanceof Error) {
    const errno = Reflect.get(e, "code");
    const syscall = Reflect.get(e, "syscall");
    return new ExecgateError(
      "io_error",
      `${what}: ${e.message}`,
      {
        errno: typeof errno === "string" ? errno : "unknown",
        syscall: typeof syscall === "string" ? syscall : what,
      },
      { cause: e },
    );
  }
  return new ExecgateError("internal", `${what}: ${String(e)}`);
}

function call<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw mapNativeError(e, what);
  }
}

function checkFd(fd: number, what: string): void {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new ExecgateError("internal", `${what}: invalid file descriptor ${String(fd)}`);
  }
}

function wrap(raw: RawAddon): Native {
  return {
    peerCred(fd) {
      checkFd(fd, "peerCred");
      const c = call("peerCred", () => raw.peerCred(fd));
      return { pid: c.pid, uid: c.uid, gid: c.gid };
    },
    peerPidfd(fd) {
      checkFd(fd, "peerPidfd");
      return call("peerPidfd", () => raw.peerPidfd(fd));
    },
    pidfdIsAlive(pidfd) {
      checkFd(pidfd, "pidfdIsAlive");
      return call("pidfdIsAlive", () => raw.pidfdIsAlive(pidfd));
    },
    closeFd(fd) {
      checkFd(fd, "closeFd");
      call("closeFd", () => raw.closeFd(fd));
    },
    lockExclusive(fd) {
      checkFd(fd, "lockExclusive");
      return call("lockExclusive", () => raw.lockExclusive(fd));
    },
    sdNotifyTo(socketPath, message) {
      checkNotifyAddress(socketPath);
      if (message.includes("\0"))
        throw new ExecgateError("internal", "sd_notify message contains a NUL byte");
      return call("sdNotify", () => raw.sdNotify(socketPath, message));
    },
  };
}

/** sd_notify(3) addresses this module sends to: an absolute path or an '@' abstract name. */
function checkNotifyAddress(socketPath: string): void {
  if (socketPath.length < 2 || (socketPath[0] !== "/" && socketPath[0] !== "@")) {
    throw new ExecgateError(
      "unsupported",
      `NOTIFY_SOCKET '${socketPath}' is neither an absolute path nor an abstract '@' name (vsock is not supported)`,
    );
  }
  // sun_path is 108 bytes: a path needs its NUL terminator, an abstract name ('@' → NUL) does not.
  if (Buffer.byteLength(socketPath) > (socketPath[0] === "/" ? 107 : 108)) {
    throw new ExecgateError("unsupported", "NOTIFY_SOCKET address is longer than sun_path allows");
  }
}

/**
 * Sends `message` (e.g. "READY=1", "STATUS=…", "STOPPING=1", "WATCHDOG=1") to systemd.
 * Returns false, doing nothing, when NOTIFY_SOCKET is unset or empty (not run by systemd,
 * or Type= is not notify). Throws ExecgateError if the datagram cannot be sent.
 */
export function sdNotify(message: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const socketPath = env.NOTIFY_SOCKET;
  if (socketPath === undefined || socketPath === "") return false;
  return loadNative().sdNotifyTo(socketPath, message);
}

/**
 * The file descriptor behind a connected net.Socket. Node does not document it; `_handle.fd`
 * is the libuv pipe's descriptor on Linux. Anything else (no handle yet, a destroyed socket,
 * -1) is refused rather than guessed.
 */
export function socketFd(socket: Socket): number {
  if (socket.destroyed) throw new ExecgateError("io_error", "socket is already closed");
  const handle: unknown = Reflect.get(socket, "_handle");
  const fd: unknown = typeof handle === "object" && handle !== null ? Reflect.get(handle, "fd") : undefined;
  if (typeof fd !== "number" || !Number.isInteger(fd) || fd < 0) {
    throw new ExecgateError(
      "unsupported",
      "socket has no usable file descriptor (closed, or not a Unix socket)",
    );
  }
  return fd;
}
