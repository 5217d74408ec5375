import { chmod, chown, lstat, readFile, unlink } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { ExecgateError } from "../core/errors.js";

/**
 * Binds a Unix stream socket at `path` safely: an existing path is removed only when it is a
 * socket nobody is listening on (a stale one from a crash); a live socket means another daemon
 * runs (refuse), and anything that is not a socket is never unlinked (refuse).
 */
export async function listenUnix(
  path: string,
  opts: { mode: number; gid?: number; onConnection: (s: Socket) => void },
): Promise<Server> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw new ExecgateError("io_error", `cannot inspect socket path ${path}: ${e.message}`);
  });
  if (st) {
    if (!st.isSocket()) {
      throw new ExecgateError("config_invalid", `${path} exists and is not a socket; refusing to remove it`);
    }
    if (await isLive(path))
      throw new ExecgateError("config_invalid", `another daemon is listening on ${path}`);
    await unlink(path);
  }
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: false }, opts.onConnection);
  // bind(2) creates the path with 0777 & ~umask: under a umask of 0177 it is at most 0600 (owner
  // only) until the chmod below, never wider than asked for while a client could connect. bind
  // runs synchronously inside listen(), so the umask is restored in the same turn.
  const umask = process.umask(0o177);
  const listening = new Promise<void>((resolve, reject) => {
    server.once("error", (e) =>
      reject(new ExecgateError("io_error", `cannot listen on ${path}: ${e.message}`)),
    );
    try {
      server.listen(path, () => resolve());
    } finally {
      process.umask(umask);
    }
  });
  await listening;
  try {
    await chmod(path, opts.mode);
    // Changing the group needs membership of it or CAP_CHOWN (the unit has neither, and its
    // syscall filter refuses chown: under systemd, execgate.socket sets the group instead).
    if (opts.gid !== undefined) await chown(path, -1, opts.gid);
  } catch (e) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw new ExecgateError(
      "io_error",
      `cannot set mode/group of ${path}: ${(e as Error).message}`,
      { path },
      { cause: e },
    );
  }
  return server;
}

function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/** Longest /etc/group read; a group database is kilobytes. */
const MAX_GROUP_FILE_BYTES = 4 << 20;

/** The gid of `group` in an /etc/group text (name:password:gid:members), or undefined. Pure. */
export function gidFromGroupFile(text: string, group: string): number | undefined {
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 3 || f[0] !== group) continue;
    const gid = f[2]!;
    if (!/^[0-9]{1,10}$/.test(gid) || Number(gid) > 0xfffffffe) return undefined;
    return Number(gid);
  }
  return undefined;
}

/**
 * daemon.socket_group as a gid: a number is taken as is, a name is looked up in /etc/group
 * (local groups only: the group of a system socket is a local system group; sysusers.d makes
 * execgate-clients). Unknown groups are a configuration error, not a silent default.
 */
export async function resolveGroup(group: string, groupFile = "/etc/group"): Promise<number> {
  if (/^[0-9]{1,10}$/.test(group)) return Number(group);
  let text: string;
  try {
    const bytes = await readFile(groupFile);
    if (bytes.length > MAX_GROUP_FILE_BYTES) throw new Error("too large");
    text = bytes.toString("utf8");
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `cannot read ${groupFile} to find group ${group}: ${(e as Error).message}`,
    );
  }
  const gid = gidFromGroupFile(text, group);
  if (gid === undefined)
    throw new ExecgateError("config_invalid", `daemon.socket_group: no group ${group} in ${groupFile}`);
  return gid;
}
