import { asExecgateError, type ErrorCode, ExecgateError } from "../src/core/errors.js";

/** Exit codes (docs/fail-closed.md): 0 ok, 1 verification failed / denied, 2 usage or config, 3 I/O or hardware. */
export const EXIT = { ok: 0, failed: 1, usage: 2, io: 3 } as const;

const EXIT_BY_CODE: Record<ErrorCode, number> = {
  malformed: EXIT.failed,
  truncated: EXIT.failed,
  trailing_bytes: EXIT.failed,
  limit_exceeded: EXIT.failed,
  unsupported: EXIT.failed,
  verification_failed: EXIT.failed,
  hardware_unavailable: EXIT.io,
  hardware_error: EXIT.io,
  tpm_lockout: EXIT.io,
  io_error: EXIT.io,
  timeout: EXIT.io,
  usage: EXIT.usage,
  config_invalid: EXIT.usage,
  internal: EXIT.io,
};

export function exitCodeFor(e: unknown): number {
  return EXIT_BY_CODE[asExecgateError(e).code];
}

export function usageError(message: string): ExecgateError {
  return new ExecgateError("usage", message);
}
