import type { AuditFailure } from "./verify.js";

/**
 * The one table of what a bundle may hold (docs/audit.md, "Bundle files"). Every path in a
 * bundle matches exactly one rule, and each rule names the checks that verify the file; a path
 * no rule matches is the failure `unknown_file`, a required one that is absent `missing_file`.
 * A rule with no checks is informational: the file is listed as unverified, never trusted.
 * Pure: the caller walks the directory and passes the relative paths ("/"-separated).
 */

export interface InventoryRule {
  /** The path pattern, relative to the bundle, anchored. */
  readonly pattern: RegExp;
  /** A human name for the file kind (docs/audit.md uses the same words). */
  readonly what: string;
  /** The checks that verify such a file; empty: informational, printed as unverified. */
  readonly checks: readonly string[];
  /** A bundle without a file matching the pattern fails `missing_file` (named by `path`). */
  readonly required?: string;
  /** Checked only when the key chain and attestation are (not with --log-only). */
  readonly keyChain?: boolean;
}

const LOG_CHECKS = [
  "segment_header",
  "segment_name",
  "segment_sequence",
  "record",
  "entry_decode",
  "backref",
];

/** The log-side rules by name, so readers take their files from the rule, not a string. */
export const LOG_FILES = {
  // An export needs a signed checkpoint, so a bundle holds at least one entry, in a segment.
  segment: {
    pattern: /^segments\/\d{20}\.seg$/,
    what: "journal segment",
    checks: LOG_CHECKS,
    required: "segments/",
  },
  checkpointLog: {
    pattern: /^checkpoints\.log$/,
    what: "checkpoint log",
    checks: [
      "checkpoint_log",
      "intent_fork",
      "checkpoint_signature",
      "checkpoint_fork",
      "checkpoint_size",
      "checkpoint_root",
      "checkpoint_rollback",
      "checkpoint_consistency",
      "checkpoint_missing",
      "checkpoint_coverage",
    ],
    required: "checkpoints.log",
  },
  checkpoint: {
    pattern: /^checkpoint$/,
    what: "latest checkpoint",
    checks: [
      "checkpoint_file_signature",
      "checkpoint_file_size",
      "checkpoint_file_fork",
      "checkpoint_file_stale",
    ],
    required: "checkpoint",
  },
  vkey: { pattern: /^log\.vkey$/, what: "log verifier key", checks: ["log_vkey"], required: "log.vkey" },
  origin: { pattern: /^origin$/, what: "log origin", checks: ["origin_file"], required: "origin" },
  tile: {
    pattern: /^tile\/(\d+|entries)\/(x\d{3}\/)*\d{3}(\.p\/\d+)?$/,
    what: "tlog tile",
    checks: ["tile_mismatch", "tile_missing", "tile_extra"],
  },
  // policy_blob and evidence_blob (presence of what the log references) run with the key chain.
  blob: {
    pattern: /^blobs\/[0-9a-f]{64}$/,
    what: "blob",
    checks: ["blob_digest", "policy_blob", "evidence_blob"],
  },
} as const satisfies Record<string, InventoryRule>;

export const BUNDLE_INVENTORY: readonly InventoryRule[] = [
  ...Object.values(LOG_FILES),
  // enrollment/: the key chain (src/audit/enrollment.ts, ek-binding.ts, hsm-key.ts).
  {
    pattern: /^enrollment\/ek\.pub$/,
    what: "EK public area",
    checks: ["ek", "ek_cert_key", "token_ueid", "host_origin"],
    keyChain: true,
  },
  {
    pattern: /^enrollment\/ek-cert-0x[0-9a-f]{8}\.der$/,
    what: "EK certificate",
    checks: ["ek_chain", "ek_cert_key"],
    keyChain: true,
  },
  {
    pattern: /^enrollment\/ak\.pub$/,
    what: "AK public area",
    checks: ["ak", "ak_pin", "epoch_quote"],
    keyChain: true,
  },
  { pattern: /^enrollment\/ak\.pem$/, what: "AK public key (PEM)", checks: ["ak_pem"], keyChain: true },
  {
    pattern: /^enrollment\/signing-key\.pub$/,
    what: "checkpoint signing key public area",
    checks: ["signing_key", "log_key"],
    keyChain: true,
  },
  {
    pattern: /^enrollment\/signing-key\.pem$/,
    what: "checkpoint signing key (PEM)",
    checks: ["signing_key_pem"],
    keyChain: true,
  },
  {
    pattern: /^enrollment\/signing-key\.certify\.(attest|sig|qd)$/,
    what: "TPM2_Certify of the signing key",
    checks: ["signing_key_certify"],
    keyChain: true,
  },
  {
    pattern: /^enrollment\/hsm-key\.pem$/,
    what: "HSM root key",
    checks: ["hsm_key", "epoch_hsm", "checkpoint_hsm"],
    keyChain: true,
  },
];

/**
 * Directories a bundle has, which may be empty (a log with no blobs; tile/ of nothing). A
 * directory under tile/ exists only to hold a tile, so an empty one is junk.
 */
const BUNDLE_DIRS = /^(segments|blobs|enrollment|tile)\/$/;

export interface Inventory {
  /** Paths by the rule they match. */
  readonly byRule: ReadonlyMap<InventoryRule, readonly string[]>;
  /** Present files no check verifies (informational rules, or key-chain files with --log-only). */
  readonly unverified: readonly string[];
  readonly failures: readonly AuditFailure[];
}

/** A path the walk found that is not a regular file (a symlink, a device, an empty directory). */
export interface OddPath {
  readonly path: string;
  readonly kind: string;
  readonly emptyDir?: boolean;
}

export function takeInventory(
  paths: readonly string[],
  odd: readonly OddPath[],
  opts: { readonly keyChain: boolean },
): Inventory {
  const byRule = new Map<InventoryRule, string[]>();
  const failures: AuditFailure[] = [];
  const unverified: string[] = [];
  for (const o of odd.filter((o) => !(o.emptyDir === true && BUNDLE_DIRS.test(o.path))))
    failures.push({
      check: "unknown_file",
      path: o.path,
      reason: `${o.path} is ${o.kind}, not a bundle file`,
    });
  for (const p of [...paths].sort()) {
    const rule = BUNDLE_INVENTORY.find((r) => r.pattern.test(p));
    if (rule === undefined) {
      failures.push({ check: "unknown_file", path: p, reason: `${p} is no file a bundle holds` });
      continue;
    }
    const list = byRule.get(rule);
    if (list) list.push(p);
    else byRule.set(rule, [p]);
    if (rule.checks.length === 0 || (rule.keyChain === true && !opts.keyChain)) unverified.push(p);
  }
  for (const r of BUNDLE_INVENTORY)
    if (r.required !== undefined && !byRule.has(r))
      failures.push({
        check: "missing_file",
        path: r.required,
        reason: `the bundle has no ${r.required} (${r.what})`,
      });
  return { byRule, unverified, failures };
}

/** The paths a rule matched. */
export function pathsOf(inv: Inventory, rule: InventoryRule): readonly string[] {
  return inv.byRule.get(rule) ?? [];
}
