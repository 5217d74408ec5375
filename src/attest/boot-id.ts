import { readFile } from "node:fs/promises";
import { ExecgateError } from "../core/errors.js";

/** The kernel's boot id is a UUID (36 characters); anything past this is not one. */
const MAX_BOOT_ID = 64;

/**
 * Reads the kernel's boot id (daemon.boot_id_path). A file that cannot be read, or is empty,
 * proves nothing about the boot: io_error, never a stand-in value that could match itself.
 */
export async function readBootId(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new ExecgateError("io_error", `boot id ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const id = text.trim().slice(0, MAX_BOOT_ID);
  if (id === "") throw new ExecgateError("io_error", `boot id ${path} is empty`);
  return id;
}
