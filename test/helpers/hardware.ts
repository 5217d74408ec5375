import { accessSync, constants } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe } from "vitest";
import { SoftHsm } from "../../src/dev/softhsm.js";
import { Swtpm } from "../../src/dev/swtpm.js";

/**
 * Integration tests need swtpm and tpm2-tools. On a developer's machine without them the
 * tests are skipped; with CI=true a missing tool fails the run instead.
 */
const TPM_TOOLS = ["/usr/bin/swtpm", "/usr/bin/swtpm_setup", "/usr/bin/swtpm_localca", "/usr/bin/tpm2_quote"];

function missing(paths: readonly string[]): string[] {
  return paths.filter((p) => {
    try {
      accessSync(p, constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
}

const missingTpm = missing(TPM_TOOLS);
if (missingTpm.length > 0 && process.env.CI === "true") {
  throw new Error(
    `CI=true but TPM tools are missing: ${missingTpm.join(", ")} (run scripts/setup.sh as root)`,
  );
}

export const describeTpm: typeof describe =
  missingTpm.length === 0 ? describe : (describe.skip as typeof describe);

/** SoftHSM2 and opensc, for the HSM tests: skipped without them, a failure with CI=true. */
const HSM_TOOLS = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/bin/softhsm2-util", "/usr/bin/pkcs11-tool"];
const missingHsm = HSM_TOOLS.filter((p) => {
  try {
    accessSync(p, constants.R_OK);
    return false;
  } catch {
    return true;
  }
});
if (missingHsm.length > 0 && process.env.CI === "true") {
  throw new Error(`CI=true but SoftHSM2 is missing: ${missingHsm.join(", ")} (run scripts/setup.sh as root)`);
}

export const describeHsm: typeof describe =
  missingHsm.length === 0 ? describe : (describe.skip as typeof describe);

/** A fresh SoftHSM2 token (own SOFTHSM2_CONF and token directory) in the run's scratch directory. */
export async function startSoftHsm(opts: { label?: string; pin?: string } = {}): Promise<SoftHsm> {
  return SoftHsm.create({ dir: await scratch("hsm-"), ...opts });
}

async function scratch(prefix: string): Promise<string> {
  const root = process.env.EXECGATE_TEST_RUN_DIR ?? tmpdir();
  return mkdtemp(join(root, prefix));
}

/** A fresh manufactured swtpm in the run's scratch directory; the caller stops it in afterAll. */
export async function startSwtpm(
  opts: { banks?: readonly string[]; timeoutMs?: number } = {},
): Promise<Swtpm> {
  const root = process.env.EXECGATE_TEST_RUN_DIR;
  return Swtpm.start({
    dir: await scratch("tpm-"),
    ...(opts.banks ? { banks: opts.banks } : {}),
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    ...(root ? { pidDir: join(root, "pids") } : {}),
  });
}
