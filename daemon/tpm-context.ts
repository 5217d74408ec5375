import type { Config } from "../src/config/index.js";
import { HANDLES, handleHex, parsePersistentHandle } from "../src/tpm/ops/handles.js";
import { TpmRunner } from "../src/tpm/runner.js";
import { type Parsed, str } from "./args.js";
import { usageError } from "./exit.js";

/** Options every TPM command takes. */
export const TPM_OPTIONS = {
  tcti: { type: "string" },
  "ak-handle": { type: "string" },
  "timeout-ms": { type: "string" },
  config: { type: "string" },
} as const;

export const TPM_USAGE =
  "[--tcti TCTI] [--ak-handle 0x81000010] [--timeout-ms 10000] [--config F]\n" +
  "  TPM settings: the flag, else [tpm] of --config (else of $EXECGATE_CONFIG) with its defaults,\n" +
  "  else for the TCTI $TPM2TOOLS_TCTI, else device:/dev/tpmrm0 (handles and timeout: the defaults)";

/** The default TCTI without a flag or a config: the kernel resource manager. */
const DEFAULT_TCTI = "device:/dev/tpmrm0";

/**
 * Which TPM and keys a TPM command uses, as the daemon would with the same config: a flag wins;
 * else the config's [tpm] (defaults applied, as the daemon applies them — so a config without
 * `tcti` means device:/dev/tpmrm0, not $TPM2TOOLS_TCTI, because that is the TPM its daemon
 * talks to); else $TPM2TOOLS_TCTI for the TCTI; else the built-in defaults.
 */
export interface TpmSettings {
  readonly tcti: string;
  readonly akHandle: number;
  readonly timeoutMs?: number;
}

export function tpmSettings(
  p: Parsed,
  config: Config | undefined,
  env: NodeJS.ProcessEnv = process.env,
): TpmSettings {
  const t = str(p, "timeout-ms");
  const timeoutMs = t === undefined ? config?.tpm.timeoutMs : Number(t);
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 100)) {
    throw usageError("--timeout-ms must be an integer >= 100");
  }
  return {
    tcti: str(p, "tcti") ?? config?.tpm.tcti ?? env.TPM2TOOLS_TCTI ?? DEFAULT_TCTI,
    akHandle: handleArg(p, "ak-handle") ?? config?.tpm.akHandle ?? HANDLES.ak,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  };
}

export function runnerFor(s: TpmSettings): TpmRunner {
  return new TpmRunner({ tcti: s.tcti, ...(s.timeoutMs !== undefined ? { timeoutMs: s.timeoutMs } : {}) });
}

/** A `0x81xxxxxx` option; anything else is a usage error (exit 2). */
export function handleArg(p: Parsed, name: string): number | undefined {
  const s = str(p, name);
  if (s === undefined) return undefined;
  const h = parsePersistentHandle(s);
  if (h === undefined) throw usageError(`--${name} ${s} is not a persistent handle (0x81xxxxxx)`);
  return h;
}

/**
 * The checkpoint signing key's handle: --signing-key-handle, else the config's
 * tpm.signing_key_handle, else the default. It must differ from the AK's, as the config schema
 * demands: one handle cannot hold both keys.
 */
export function signingKeyHandle(p: Parsed, config: Config | undefined, akHandle: number): number {
  const h = handleArg(p, "signing-key-handle") ?? config?.tpm.signingKeyHandle ?? HANDLES.signingKey;
  if (h === akHandle) {
    throw usageError(
      `the signing key handle ${handleHex(h)} must differ from the AK handle ${handleHex(akHandle)}` +
        " (set --signing-key-handle or tpm.signing_key_handle)",
    );
  }
  return h;
}
