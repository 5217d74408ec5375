import { parse, TomlError } from "smol-toml";
import { ExecgateError } from "./errors.js";

/** Parses TOML text; a syntax error is config_invalid naming the file, line and column. */
export function parseTomlDocument(text: string, source: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (e) {
    const msg = e instanceof TomlError ? (e.message.split("\n")[0] ?? "") : String(e);
    const at = e instanceof TomlError ? ` (line ${e.line}, column ${e.column})` : "";
    throw new ExecgateError(
      "config_invalid",
      `${source}: not valid TOML${at}: ${msg}`,
      { file: source },
      { cause: e },
    );
  }
}
