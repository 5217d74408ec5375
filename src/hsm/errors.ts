import { ExecgateError } from "../core/errors.js";

/**
 * PKCS#11 return values (PKCS#11 v2.40 §11.1, pkcs11t.h) mapped into the project's closed set.
 * A PIN the token refuses is the operator's configuration (config_invalid: the daemon refuses
 * to start); a mechanism the token lacks is `unsupported`; everything else — session or device
 * lost, module errors, a token that is gone — is `hardware_unavailable`, which the daemon turns
 * into denials and a re-open on the next attempt.
 */
const PIN_ERRORS = new Map<number, string>([
  [0xa0, "CKR_PIN_INCORRECT"],
  [0xa1, "CKR_PIN_INVALID"],
  [0xa2, "CKR_PIN_LEN_RANGE"],
  [0xa3, "CKR_PIN_EXPIRED"],
  [0xa4, "CKR_PIN_LOCKED"],
]);
const UNSUPPORTED = new Map<number, string>([
  [0x70, "CKR_MECHANISM_INVALID"],
  [0x71, "CKR_MECHANISM_PARAM_INVALID"],
]);

/** The CKR_* code of a pkcs11js error, if it carries one. */
export function pkcs11Code(e: unknown): number | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const code = (e as { code?: unknown }).code;
  return typeof code === "number" && code !== 0 ? code : undefined;
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const method = (e as { method?: unknown }).method;
    return typeof method === "string" && method !== "" ? `${method}: ${e.message}` : e.message;
  }
  return String(e);
}

export function mapPkcs11Error(e: unknown, what: string): ExecgateError {
  if (e instanceof ExecgateError) return e;
  const code = pkcs11Code(e);
  const detail = { ...(code !== undefined ? { ckr: code } : {}) };
  const pin = code !== undefined ? PIN_ERRORS.get(code) : undefined;
  if (pin !== undefined) {
    return new ExecgateError("config_invalid", `${what}: the token refused the PIN (${pin})`, detail, {
      cause: e,
    });
  }
  if (code !== undefined && UNSUPPORTED.has(code)) {
    return new ExecgateError("unsupported", `${what}: ${describe(e)}`, detail, { cause: e });
  }
  return new ExecgateError("hardware_unavailable", `${what}: ${describe(e)}`, detail, { cause: e });
}
