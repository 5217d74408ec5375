import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { ExecgateError } from "../src/core/errors.js";
import { usageError } from "./exit.js";

export type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** parseArgs with strict checking; unknown flags and missing values become usage errors. */
export function parseCommandArgs(
  argv: readonly string[],
  options: OptionSpec,
  allowPositionals = false,
): Parsed {
  try {
    const r = parseArgs({ args: [...argv], options, allowPositionals, strict: true });
    return { values: r.values as Parsed["values"], positionals: r.positionals };
  } catch (e) {
    throw usageError(e instanceof Error ? e.message : String(e));
  }
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === "string" ? v : undefined;
}

export function requireStr(p: Parsed, name: string): string {
  const v = str(p, name);
  if (v === undefined || v === "") throw usageError(`--${name} is required`);
  return v;
}

/** A hex-valued option; bad hex is a usage error (exit 2). */
export function hexArg(p: Parsed, name: string): Uint8Array {
  const v = requireStr(p, name);
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(v)) throw usageError(`--${name} must be an even-length hex string`);
  return new Uint8Array(Buffer.from(v, "hex"));
}

/** `--config`, else `$EXECGATE_CONFIG` (the flag wins); undefined when neither is given. */
export function configArg(p: Parsed, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = str(p, "config") ?? env.EXECGATE_CONFIG;
  if (v === "") throw usageError("--config is empty");
  return v;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** Reads an input file; a missing or unreadable file is an I/O error (exit 3). */
export async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `cannot read ${what} ${path}: ${(e as Error).message}`,
      {},
      { cause: e },
    );
  }
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** Writes an output file; failure is an I/O error (exit 3). */
export async function writeOutput(path: string, data: Uint8Array | string, what: string): Promise<void> {
  const { writeFile } = await import("node:fs/promises");
  try {
    await writeFile(path, data);
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `cannot write ${what} ${path}: ${(e as Error).message}`,
      {},
      { cause: e },
    );
  }
}
