import type { Logger } from "pino";
import { asExecgateError } from "../src/core/errors.js";
import { EXIT } from "./exit.js";

/** One step of the daemon's stop sequence: its name (for the log) and what it does. */
export type StopStep = readonly [step: string, run: () => unknown];

/**
 * Runs the steps in order, each whatever happened to the ones before it: a step that fails must
 * not skip the later ones (recording `daemon_stop`, closing the lineage), nor escape as a
 * rejection, which Node ends the process on before the lineage is closed. Resolves with the exit
 * code: EXIT.ok when every step succeeded, EXIT.io when one failed (each failure is logged).
 */
export async function runStopSteps(steps: readonly StopStep[], log: Logger): Promise<number> {
  let code: number = EXIT.ok;
  for (const [step, run] of steps) {
    try {
      await run();
    } catch (e) {
      code = EXIT.io;
      log.error({ step, err: asExecgateError(e).message }, "stop_step_failed");
    }
  }
  return code;
}
