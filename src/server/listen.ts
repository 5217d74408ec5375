import { chmod, chown, lstat, unlink } from "node:fs/promises";
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
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) =>
      reject(new ExecgateError("io_error", `cannot listen on ${path}: ${e.message}`)),
    );
    server.listen(path, () => resolve());
  });
  await chmod(path, opts.mode);
  if (opts.gid !== undefined) await chown(path, -1, opts.gid);
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
