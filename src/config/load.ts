import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ExecgateError } from "../core/errors.js";
import { type Config, parseConfig } from "./config.js";

/** Largest config file read; a daemon config is a few kilobytes. */
export const MAX_CONFIG_BYTES = 1 << 20;

/**
 * Effects: reads the config file and parses it, resolving relative paths against the file's
 * directory. A missing or unreadable file is io_error (exit 3); anything wrong inside it is
 * config_invalid (exit 2) naming the file and the key.
 */
export async function loadConfig(path: string): Promise<Config> {
  const abs = resolve(path);
  let bytes: Buffer;
  try {
    bytes = await readFile(abs);
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `cannot read config ${abs}: ${(e as Error).message}`,
      { file: abs },
      { cause: e },
    );
  }
  if (bytes.length > MAX_CONFIG_BYTES) {
    throw new ExecgateError("config_invalid", `${abs}: larger than ${MAX_CONFIG_BYTES} bytes`, { file: abs });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new ExecgateError("config_invalid", `${abs}: not UTF-8`, { file: abs }, { cause: e });
  }
  return parseConfig(text, dirname(abs), abs);
}
