import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * `mkdir -p` that always ends. Node's `mkdir(path, { recursive: true })` never returns (and spins
 * a thread at 100% CPU) when a parent exists but cannot hold the child — a dangling symlink, a
 * path under /proc: mkdir answers ENOENT, Node creates the parent (EEXIST) and tries again, for
 * ever (measured with Node 20.20: `--out /proc/x` hung `enroll`, and a state_dir under a dangling
 * symlink would hang the daemon's start). Here each directory is tried once after its parent
 * exists, and a second ENOENT is the answer. Existing non-directories fail with ENOTDIR.
 */
export async function makeDirs(path: string, mode?: number): Promise<void> {
  const options = mode === undefined ? {} : { mode };
  try {
    await mkdir(path, options);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return requireDirectory(path, e);
    const parent = dirname(path);
    if (code !== "ENOENT" || parent === path) throw e;
    await makeDirs(parent, mode);
  }
  try {
    await mkdir(path, options);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return requireDirectory(path, e);
    throw e;
  }
}

async function requireDirectory(path: string, cause: unknown): Promise<void> {
  if ((await stat(path)).isDirectory()) return;
  const err: NodeJS.ErrnoException = new Error(`ENOTDIR: not a directory, mkdir '${path}'`, { cause });
  err.code = "ENOTDIR";
  err.path = path;
  throw err;
}
