import type { Logger } from "pino";
import { asExecgateError } from "../../src/core/errors.js";
import { EXIT } from "../exit.js";
import { runStopSteps, type StopStep } from "../stop.js";

/** A refusal to start: a message for the operator and the exit code (2 configuration, 3 I/O). */
export class StartupError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

export function refuse(what: string, e: unknown): StartupError {
  const err = asExecgateError(e);
  const code = err.code === "config_invalid" || err.code === "usage" ? EXIT.usage : EXIT.io;
  return new StartupError(code, `refusing to start: ${what}: ${err.message}`);
}

/**
 * A refusal to start once the lineage is open: `steps` stop what was started, in the stop
 * order, and record the refusal as the daemon_stop reason (each step whatever failed before it).
 */
export async function refuseOpened(
  what: string,
  e: unknown,
  steps: (reason: string) => StopStep[],
  log: Logger,
): Promise<StartupError> {
  const refusal = refuse(what, e);
  await runStopSteps(steps(refusal.message), log);
  return refusal;
}
