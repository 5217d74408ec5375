import type { DenialReason } from "../core/denial.js";
import { fromHex } from "../core/hex.js";
import { BOOT_APPLICATION_PCR, type BootPathEvent, eventLogFacts } from "../measure/eventlog-decode.js";
import type { EventLog } from "../measure/eventlog-parse.js";
import { compareWithQuote } from "../measure/eventlog-replay.js";
import type { BankName, PcrHexValues } from "../measure/hash.js";
import { type Allowlist, checkAllowlist, type ImaViolation } from "../measure/ima-allowlist.js";
import type { ImaEntry } from "../measure/ima-parse.js";
import {
  checkBootAggregate,
  IMA_PCR,
  type ImaState,
  initialImaState,
  replayUntilQuote,
} from "../measure/ima-replay.js";
import type { EventLogRules, ImaMode, IntegrityPolicyConfig } from "./integrity-schema.js";

/** The integrity policy with its allowlist loaded (integrity-load.ts does the reading). */
export interface IntegrityPolicy {
  readonly pcrs: IntegrityPolicyConfig["pcrs"];
  readonly eventlog: EventLogRules | undefined;
  readonly ima:
    | {
        readonly mode: ImaMode;
        readonly allowlist: Allowlist | undefined;
        readonly bootAggregate: boolean;
      }
    | undefined;
}

export interface ImaEvidence {
  /** Where the previous epoch stopped (default: the start of the list). */
  readonly state?: ImaState;
  /** Entries after `state` (the quote may cover only a prefix of them). */
  readonly entries: readonly ImaEntry[];
  /**
   * The allowlist's verdict on the entries judged in earlier epochs of this boot (they taint
   * the boot): the attestation loop keeps it, and re-judges those entries when the allowlist
   * changes (checkMeasured), so that it is always the current allowlist's.
   */
  readonly priorViolations?: PriorImaViolations;
  /** The boot_aggregate check of an earlier epoch (ImaOutcome.bootAggregate), kept for the boot. */
  readonly bootAggregate?: BootAggregateVerdict;
}

export interface PriorImaViolations {
  readonly count: number;
  /** The first few of them (at most MAX_DETAIL_ITEMS), for the denial's detail. */
  readonly first: readonly ImaViolation[];
}

/** Whether the list's first entry matched PCRs 0–7/0–9, and the rule's detail. */
export interface BootAggregateVerdict {
  readonly ok: boolean;
  readonly detail: string;
}

/** Verified evidence: PCR values from a verified quote, and the logs read at the same time. */
export interface IntegrityEvidence {
  readonly pcrs: PcrHexValues;
  readonly eventlog?: EventLog;
  readonly ima?: ImaEvidence;
}

export type RuleStatus = "pass" | "fail" | "warn" | "skip";

export interface RuleResult {
  readonly rule: string;
  readonly status: RuleStatus;
  readonly detail: string;
  /** The denial a failure maps to. */
  readonly reason?: DenialReason;
}

export interface ImaOutcome {
  /** State after the entries the quote covers: the next epoch starts here. */
  readonly state: ImaState;
  /** Entries beyond the quote, for the next epoch. */
  readonly pending: readonly ImaEntry[];
  readonly violations: readonly ImaViolation[];
  /**
   * The boot_aggregate check, when this epoch covered the list's first entry — made whether
   * the policy asks for it or not, so that a later policy that does can still be answered:
   * the first entry is judged only once, and its verdict is kept for the boot.
   */
  readonly bootAggregate?: BootAggregateVerdict;
  readonly quirks?: never;
}

export type IntegrityDecision = (
  | { readonly ok: true }
  | { readonly ok: false; readonly deny: DenialReason; readonly rule: string; readonly detail: string }
) & {
  readonly results: readonly RuleResult[];
  readonly eventlogQuirks: readonly string[];
  readonly ima: ImaOutcome | undefined;
};

export const MAX_DETAIL_ITEMS = 5;

function list<T>(xs: readonly T[], f: (x: T) => string): string {
  const shown = xs.slice(0, MAX_DETAIL_ITEMS).map(f).join(", ");
  return xs.length > MAX_DETAIL_ITEMS ? `${shown} … (${xs.length} in all)` : shown;
}

/**
 * Evaluates the integrity policy against verified evidence. Pure: no I/O, no clock. Rules run
 * in a fixed order and every rule's result is returned (for `policy check`); the decision is
 * the first failing rule's denial. A rule whose evidence is missing fails (fail closed);
 * event-log facts are only read once the log has been shown to reproduce the quoted PCRs.
 */
export function evaluateIntegrity(policy: IntegrityPolicy, evidence: IntegrityEvidence): IntegrityDecision {
  const results: RuleResult[] = [];
  const push = (rule: string, status: RuleStatus, detail: string, reason?: DenialReason) =>
    results.push(
      reason === undefined || status !== "fail" ? { rule, status, detail } : { rule, status, detail, reason },
    );

  // 1. Golden PCR values.
  for (const [bank, pcrs] of Object.entries(policy.pcrs) as [BankName, Record<number, readonly string[]>][]) {
    for (const [idx, allowed] of Object.entries(pcrs)) {
      const rule = `pcrs.${bank}.${idx}`;
      const quoted = evidence.pcrs[bank]?.[idx];
      if (quoted === undefined) push(rule, "fail", "PCR not in the quote", "pcr_mismatch");
      else if (allowed.includes(quoted.toLowerCase())) push(rule, "pass", quoted);
      else push(rule, "fail", `quoted ${quoted} is not a golden value`, "pcr_mismatch");
    }
  }

  // 2. Event log.
  let eventlogQuirks: readonly string[] = [];
  const el = policy.eventlog;
  if (el) {
    const log = evidence.eventlog;
    if (!log) {
      push("eventlog.replay", "fail", "no event log in the evidence", "eventlog_mismatch");
    } else {
      const cmp = compareWithQuote(log, evidence.pcrs, el.pcrs);
      eventlogQuirks = cmp.quirks;
      if (!cmp.ok) {
        const why =
          cmp.banksCompared.length === 0
            ? "no PCR bank in common between the log and the quote"
            : `replay differs: ${list(cmp.mismatches, (m) => `${m.bank}:${m.pcr}`)}`;
        push("eventlog.replay", "fail", why, "eventlog_mismatch");
        for (const r of ["eventlog.secure_boot", "eventlog.boot_applications", "eventlog.required_dbx"]) {
          push(r, "skip", "event log does not match the quote");
        }
      } else {
        const q = cmp.quirks.length ? ` (quirks: ${cmp.quirks.join(", ")})` : "";
        push("eventlog.replay", "pass", `banks ${cmp.banksCompared.join(", ")}${q}`);
        const facts = eventLogFacts(log);
        // Event data is bound to the quote only through the PCR it was extended into.
        const uncovered = (pcr: number, rule: string): boolean => {
          if (cmp.pcrsCompared.includes(pcr)) return false;
          push(rule, "fail", `PCR ${pcr} is not covered by the quote`, "eventlog_mismatch");
          return true;
        };
        if (el.secureBoot !== undefined && !uncovered(7, "eventlog.secure_boot")) {
          const ok = facts.secureBoot === el.secureBoot;
          push(
            "eventlog.secure_boot",
            ok ? "pass" : "fail",
            `SecureBoot ${facts.secureBoot === null ? "not measured (or unverified)" : facts.secureBoot ? "on" : "off"}`,
            "eventlog_mismatch",
          );
        }
        if (
          el.bootApplications !== undefined &&
          !uncovered(BOOT_APPLICATION_PCR, "eventlog.boot_applications")
        ) {
          const allowed = new Set(el.bootApplications);
          // Only digests in a bank the quote verified are bound; another bank's digest in the
          // same event could be anything. Event types are not bound at all: every event in PCR 4
          // is a boot application unless it is a short data event whose digest is its data's
          // hash, and boot application events elsewhere are checked too.
          const listed = (d: BootPathEvent["digests"]) =>
            cmp.banksCompared.some((b) => d[b] !== undefined && allowed.has(d[b]));
          const apps = facts.bootPath.filter((e) => !e.plainData);
          const bad = [
            ...apps.filter((e) => !listed(e.digests)),
            ...facts.bootApplications
              .filter((a) => a.pcrIndex !== BOOT_APPLICATION_PCR && !listed(a.digests))
              .map((a) => ({ seq: a.seq, type: "EV_EFI_BOOT_SERVICES_APPLICATION", digests: a.digests })),
          ];
          push(
            "eventlog.boot_applications",
            bad.length === 0 ? "pass" : "fail",
            bad.length === 0
              ? `${apps.length} boot applications allowed`
              : `not allowed: ${list(bad, (a) => `event ${a.seq} ${a.type} ${a.digests.sha256 ?? a.digests.sha1 ?? "?"}`)}`,
            "eventlog_mismatch",
          );
        }
        if (el.requiredDbx.length > 0 && !uncovered(7, "eventlog.required_dbx")) {
          const have = new Set(facts.dbxSha256);
          const missing = el.requiredDbx.filter((d) => !have.has(d));
          push(
            "eventlog.required_dbx",
            missing.length === 0 ? "pass" : "fail",
            missing.length === 0
              ? `${el.requiredDbx.length} required entries present`
              : `missing: ${list(missing, (d) => d)}`,
            "eventlog_mismatch",
          );
        }
      }
    }
  }

  // 3. IMA.
  let ima: ImaOutcome | undefined;
  const ip = policy.ima;
  if (ip) {
    const ev = evidence.ima;
    const bank: BankName | undefined = evidence.pcrs.sha256?.[String(IMA_PCR)]
      ? "sha256"
      : evidence.pcrs.sha1?.[String(IMA_PCR)]
        ? "sha1"
        : undefined;
    if (!ev) push("ima.pcr10", "fail", "no IMA list in the evidence", "ima_violation");
    else if (!bank) push("ima.pcr10", "fail", "PCR 10 not in the quote", "ima_violation");
    else {
      const state = ev.state ?? initialImaState("binary");
      const m = replayUntilQuote(state, ev.entries, bank, fromHex(evidence.pcrs[bank]![String(IMA_PCR)]!));
      const covered = ev.entries.slice(0, ev.entries.length - m.pending.length);
      if (!m.matched) {
        push(
          "ima.pcr10",
          "fail",
          `no prefix of the list reproduces the quoted ${bank} PCR 10`,
          "ima_violation",
        );
        ima = { state, pending: ev.entries, violations: [] };
      } else {
        push(
          "ima.pcr10",
          "pass",
          `${bank}: ${m.state.entries} entries (${m.pending.length} after the quote)`,
        );
        const first = covered.find((e) => e.seq === 0);
        let bootAggregate: BootAggregateVerdict | undefined;
        if (first) {
          const b = checkBootAggregate(first, evidence.pcrs);
          bootAggregate = {
            ok: b.ok,
            detail: b.ok
              ? `${b.bank} over PCRs ${b.pcrs[0]}–${b.pcrs[b.pcrs.length - 1]}`
              : (b.detail ?? `listed ${b.listed}, expected ${b.expected}`),
          };
        }
        if (ip.bootAggregate) {
          // Judged once, when the epoch covers the first entry; a failure stays for the boot.
          const earlier = ev.bootAggregate;
          if (bootAggregate)
            push(
              "ima.boot_aggregate",
              bootAggregate.ok ? "pass" : "fail",
              bootAggregate.detail,
              "ima_violation",
            );
          else if (earlier && !earlier.ok)
            push("ima.boot_aggregate", "fail", `${earlier.detail} (earlier epoch)`, "ima_violation");
          else push("ima.boot_aggregate", "skip", "checked in an earlier epoch");
        }
        const violations = ip.allowlist
          ? checkAllowlist(covered, ip.allowlist).filter((v) => v.kind !== "invalidated")
          : [];
        const prior = ev.priorViolations ?? { count: 0, first: [] };
        const total = prior.count + violations.length;
        if (!ip.allowlist) push("ima.allowlist", "skip", "no allowlist configured");
        else if (total === 0) push("ima.allowlist", "pass", `${covered.length} entries checked`);
        else {
          const shown = [...prior.first, ...violations].slice(0, MAX_DETAIL_ITEMS);
          const more = total > shown.length ? ` … (${total} in all)` : "";
          const names = shown.length > 0 ? `: ${shown.map((v) => `${v.path} (${v.kind})`).join(", ")}` : "";
          const detail = `${total} files not allowed${names}${more}`;
          push("ima.allowlist", ip.mode === "enforce" ? "fail" : "warn", detail, "ima_violation");
        }
        ima = { state: m.state, pending: m.pending, violations, ...(bootAggregate ? { bootAggregate } : {}) };
      }
    }
  }

  const failed = results.find((r) => r.status === "fail");
  if (failed) {
    return {
      ok: false,
      deny: failed.reason ?? "internal_error",
      rule: failed.rule,
      detail: failed.detail,
      results,
      eventlogQuirks,
      ima,
    };
  }
  return { ok: true, results, eventlogQuirks, ima };
}
