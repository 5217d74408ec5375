import type { AuditFailure } from "../src/audit/verify.js";
import type { VerifyReport } from "../src/audit/verify-dir.js";

export type { VerifyReport };

/** Lines shown per check in the text output; --json lists every failure. */
const SHOWN_PER_CHECK = 8;

function line(f: AuditFailure): string {
  return (
    `${f.check}${f.path !== undefined ? ` ${f.path}` : ""}` +
    `${f.index !== undefined ? ` entry ${f.index}` : ""}` +
    `${f.checkpoint !== undefined ? ` checkpoint #${f.checkpoint}` : ""}` +
    `${f.segment !== undefined ? ` (${f.segment})` : ""}: ${f.reason}`
  );
}

/**
 * The text report. Failures are listed in check order, so the first is the root cause (one
 * flipped byte in a segment is a `record` failure, and every checkpoint past it fails after):
 * it is printed first, then every failure grouped by check, a few lines per check.
 */
export function formatVerifyReport(
  r: VerifyReport,
  unverified: readonly string[],
  keySource: "bundle" | "argument",
  hsmKeySource?: "bundle" | "argument",
): string {
  const out = [`${r.ok ? "OK" : "FAILED"}: ${r.entries} entries, root ${r.root}`];
  const first = r.failures[0];
  if (first !== undefined) out.push(`first failure: ${line(first)}`);
  out.push(
    `checkpoints verified: ${r.checkpointsVerified}` +
      (r.latestCheckpoint ? `, latest size ${r.latestCheckpoint.size}` : ""),
    `attestation: ${r.attestation.verifiedEpochs}/${r.attestation.epochs} epochs verified, ${r.attestation.allows} allows, ${r.attestation.tokensRedeemed} tokens redeemed`,
  );
  if (r.logKey !== undefined)
    out.push(
      `log key: ${r.logKey} (from the ${keySource}${keySource === "bundle" ? "; pass --vkey to pin it" : ""})`,
    );
  // Like the log key, an HSM key the bundle brings vouches only for itself.
  if (hsmKeySource === "bundle")
    out.push("HSM key: enrollment/hsm-key.pem (from the bundle; pass --hsm-key to pin it)");
  else if (hsmKeySource === "argument") out.push("HSM key: from the argument (--hsm-key)");
  const groups = new Map<string, AuditFailure[]>();
  for (const f of r.failures) groups.set(f.check, [...(groups.get(f.check) ?? []), f]);
  if (groups.size > 0) out.push("failures by check:");
  for (const [check, fs] of groups) {
    out.push(`  ${check} (${fs.length}):`);
    for (const f of fs.slice(0, SHOWN_PER_CHECK)) out.push(`    ${line(f)}`);
    if (fs.length > SHOWN_PER_CHECK) out.push(`    … ${fs.length - SHOWN_PER_CHECK} more (--json lists all)`);
  }
  if (unverified.length > 0) out.push(`unverified (informational, not checked): ${unverified.join(", ")}`);
  return `${out.join("\n")}\n`;
}
