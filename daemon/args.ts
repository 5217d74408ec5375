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
    throw usageError(parseArgsMessage(e));
  }
}

/** Node's parseArgs errors, said in our words (the command name and `--help` come from the CLI). */
function parseArgsMessage(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const msg = err.message ?? String(e);
  const quoted = /'([^']*)'/.exec(msg)?.[1];
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${quoted ?? ""} (--help lists the options)`.replace("  ", " ");
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${quoted ?? ""}: this command takes options only (--help)`.replace(
        "  ",
        " ",
      );
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return /argument missing/.test(msg)
        ? `${quoted?.split(" ")[0] ?? "an option"} needs a value`
        : `${quoted?.split(" ")[0] ?? "an option"} takes no value`;
    default:
      return msg;
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
