import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ExecgateError } from "../core/errors.js";

/** Longest PIN file accepted (PKCS#11 PINs are short; this only bounds the read). */
const MAX_PIN_BYTES = 256;

/**
 * Where a credential is read outside systemd (no $CREDENTIALS_DIRECTORY, e.g. `execgate enroll
 * --hsm` as root): the files execgate.service loads, LoadCredential=hsm-pin:<this dir>/hsm-pin.
 */
export const CREDENTIALS_FALLBACK_DIR = "/etc/execgate/credentials";

export interface PinSource {
  /** A file holding the PIN (hsm.pin_file). */
  readonly pinFile?: string;
  /** A systemd credential name: $CREDENTIALS_DIRECTORY/<name>, else CREDENTIALS_FALLBACK_DIR/<name>. */
  readonly pinCredential?: string;
}

/**
 * Reads the user PIN from a file or a systemd credential (LoadCredential=/SetCredential=).
 * The PIN is never in the configuration and never logged: errors name the source, not the value.
 * One trailing newline is dropped; an empty PIN is a configuration error.
 */
export async function readPin(src: PinSource, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  let path: string;
  if (src.pinFile !== undefined) path = src.pinFile;
  else if (src.pinCredential !== undefined) {
    path = join(env.CREDENTIALS_DIRECTORY || CREDENTIALS_FALLBACK_DIR, src.pinCredential);
  } else {
    throw new ExecgateError("config_invalid", "the HSM needs a PIN: set hsm.pin_file or hsm.pin_credential");
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new ExecgateError(
      "config_invalid",
      `HSM PIN ${path}: ${(e as NodeJS.ErrnoException).code ?? "unreadable"}`,
    );
  }
  if (bytes.length > MAX_PIN_BYTES) throw new ExecgateError("config_invalid", `HSM PIN ${path}: too long`);
  const pin = bytes.toString("utf8").replace(/\r?\n$/, "");
  if (pin.length === 0 || pin.includes("\n"))
    throw new ExecgateError("config_invalid", `HSM PIN ${path}: empty or several lines`);
  return pin;
}
