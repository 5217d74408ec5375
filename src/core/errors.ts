/**
 * The project's one error type. Every failure that crosses a module boundary is an
 * ExecgateError with a stable `code`; callers switch on the code, never on the message.
 * Parsers throw only this (a property test checks it for every parser).
 */
export const ERROR_CODES = [
  // input that does not parse or violates a bound
  "malformed",
  "truncated",
  "trailing_bytes",
  "limit_exceeded",
  "unsupported",
  // verification failures (the `check` detail names which one)
  "verification_failed",
  // effects
  "hardware_unavailable",
  "hardware_error",
  "tpm_lockout",
  "io_error",
  "timeout",
  "usage",
  "config_invalid",
  "internal",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class ExecgateError extends Error {
  readonly code: ErrorCode;
  readonly detail: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    detail: Record<string, unknown> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ExecgateError";
    this.code = code;
    this.detail = detail;
  }
}

export function isExecgateError(e: unknown, code?: ErrorCode): e is ExecgateError {
  return e instanceof ExecgateError && (code === undefined || e.code === code);
}

/** Wraps anything thrown into an ExecgateError, keeping the original as `cause`. */
export function asExecgateError(e: unknown, fallback: ErrorCode = "internal"): ExecgateError {
  if (e instanceof ExecgateError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ExecgateError(fallback, message, {}, { cause: e });
}
