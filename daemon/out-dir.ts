import { lstat, stat } from "node:fs/promises";
import { ExecgateError } from "../src/core/errors.js";
import { makeDirs } from "../src/core/mkdirs.js";
import { usageError } from "./exit.js";

/**
 * The commands that write a directory (`enroll --out`, `audit export --out`) answer alike
 * (the exit codes of docs/fail-closed.md): a path that cannot be a new or existing directory — an existing
 * file, a parent that is a file, a place no directory can be made (under /proc, below a dangling
 * symlink) — is the operator naming the wrong thing, a usage error (exit 2) that running again
 * will not fix; a filesystem that refuses (permissions, read-only, full) is I/O (exit 3).
 */
const WRONG_PATH = new Set(["EEXIST", "ENOTDIR", "ENOENT", "ELOOP", "ENAMETOOLONG"]);

function outError(path: string, e: unknown): ExecgateError {
  const code = (e as NodeJS.ErrnoException).code;
  const why = `cannot create --out ${path}: ${(e as Error).message}`;
  if (code !== undefined && WRONG_PATH.has(code)) return usageError(why);
  return new ExecgateError("io_error", why, { path }, { cause: e });
}

async function isNonDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => !s.isDirectory(),
    () => false,
  );
}

/** `enroll --out DIR`: DIR and its parents are made unless they exist; an existing DIR is reused. */
export async function makeOutDir(path: string): Promise<void> {
  if (await isNonDirectory(path))
    throw usageError(`--out ${path} is an existing file; --out names a directory`);
  try {
    await makeDirs(path);
  } catch (e) {
    throw outError(path, e);
  }
}

/** `audit export --out DIR`: DIR must not exist yet (a bundle is never merged into old files). */
export async function requireNewOutDir(path: string): Promise<void> {
  let exists = true;
  try {
    await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") throw outError(path, e);
    exists = false;
  }
  if (exists) throw usageError(`--out ${path} already exists; give a directory that does not exist yet`);
}
