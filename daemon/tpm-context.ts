import { HANDLES, parsePersistentHandle } from "../src/tpm/ops/handles.js";
import { TpmRunner } from "../src/tpm/runner.js";
import { type Parsed, str } from "./args.js";
import { usageError } from "./exit.js";

/** Options every TPM command takes. */
export const TPM_OPTIONS = {
  tcti: { type: "string" },
  "ak-handle": { type: "string" },
  "timeout-ms": { type: "string" },
} as const;

export const TPM_USAGE =
  "[--tcti TCTI] [--ak-handle 0x81000010] [--timeout-ms 10000]   (TCTI default: $TPM2TOOLS_TCTI, else device:/dev/tpmrm0)";

/** The TCTI from --tcti, else TPM2TOOLS_TCTI, else the kernel resource manager. */
export function resolveTcti(p: Parsed): string {
  return str(p, "tcti") ?? process.env.TPM2TOOLS_TCTI ?? "device:/dev/tpmrm0";
}

export function runnerFrom(p: Parsed): TpmRunner {
  const t = str(p, "timeout-ms");
  const timeoutMs = t === undefined ? undefined : Number(t);
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 100)) {
    throw usageError("--timeout-ms must be an integer >= 100");
  }
  return new TpmRunner({ tcti: resolveTcti(p), ...(timeoutMs ? { timeoutMs } : {}) });
}

export function akHandleFrom(p: Parsed): number {
  const s = str(p, "ak-handle");
  if (s === undefined) return HANDLES.ak;
  const h = parsePersistentHandle(s);
  if (h === undefined) throw usageError(`--ak-handle ${s} is not a persistent handle (0x81xxxxxx)`);
  return h;
}
