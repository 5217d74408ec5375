import type { AuditFailure } from "../src/audit/verify.js";
import { flag, type OptionSpec, type Parsed } from "./args.js";
import { VERIFY_OPTIONS, verifyDir } from "./commands/audit-verify.js";
import { usageError } from "./exit.js";

/**
 * Every explorer command verifies the bundle before it answers, exactly as `audit verify` does
 * (same function, same pinning flags), and refuses a bundle that does not verify unless the
 * auditor says --unverified, which is then printed on every line and in every JSON record.
 */
export const EXPLORE_OPTIONS = {
  json: { type: "boolean" },
  unverified: { type: "boolean" },
  ...VERIFY_OPTIONS,
} as const satisfies OptionSpec;

export const EXPLORE_USAGE =
  "  Before answering, the bundle is verified as `audit verify` does, with its flags (--trust CA.pem,\n" +
  "  --ak-pub, --hsm-key, --vkey, --origin, --trusted-checkpoint, or --log-only); a bundle that does\n" +
  "  not verify is refused (exit 1, its first failure printed first) unless --unverified is given,\n" +
  "  which skips verification and marks every line (and every JSON record) UNVERIFIED.\n";

export type Verdict =
  | { readonly proceed: true; readonly unverified: boolean; readonly note: string }
  | { readonly proceed: false; readonly text: string; readonly json: unknown };

function failureLine(f: AuditFailure): string {
  return `${f.check}${f.path !== undefined ? ` ${f.path}` : ""}${f.index !== undefined ? ` entry ${f.index}` : ""}${
    f.checkpoint !== undefined ? ` checkpoint #${f.checkpoint}` : ""
  }${f.segment !== undefined ? ` (${f.segment})` : ""}: ${f.reason}`;
}

export async function verifyFirst(dir: string, p: Parsed): Promise<Verdict> {
  if (flag(p, "unverified")) {
    for (const k of Object.keys(VERIFY_OPTIONS))
      if (p.values[k] !== undefined && p.values[k] !== false)
        throw usageError(`--${k} has no effect with --unverified (nothing is verified)`);
    return {
      proceed: true,
      unverified: true,
      note: "UNVERIFIED: the bundle was not verified (--unverified)",
    };
  }
  const v = await verifyDir(dir, p);
  if (!v.report.ok) {
    const first = v.report.failures[0];
    const text =
      `FAILED: the bundle does not verify; refusing to answer (--unverified shows it anyway)\n` +
      (first ? `first failure: ${failureLine(first)}\n` : "") +
      `${v.report.failures.length} failure(s): execgate audit verify ${dir} lists them all\n`;
    return { proceed: false, text, json: { verified: false, failures: v.report.failures } };
  }
  const key =
    v.keySource === "bundle" ? "log key from the bundle; pass --vkey to pin it" : "log key pinned (--vkey)";
  return {
    proceed: true,
    unverified: false,
    note: `verified: ${v.report.entries} entries${flag(p, "log-only") ? " (log only)" : ""}, ${key}`,
  };
}
