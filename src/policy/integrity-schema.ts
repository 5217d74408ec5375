import { ExecgateError } from "../core/errors.js";
import { fromHex, toHex } from "../core/hex.js";
import { MAX_PCR_INDEX, pcrIndexFromKey } from "../measure/eventlog-types.js";
import { algByName, type BankName } from "../measure/hash.js";
import { IMA_PCR } from "../measure/ima-replay.js";

/**
 * The `[integrity]` part of the policy file (TOML), a closed schema:
 *
 *   [integrity.pcrs.sha256]            golden values: PCR index → allowed digests
 *   "0" = ["<hex>", …]
 *   [integrity.eventlog]
 *   secure_boot = true                 the verified SecureBoot variable must be 1
 *   boot_applications = ["<hex>", …]   every EV_EFI_BOOT_SERVICES_APPLICATION digest in this set
 *   required_dbx = ["<hex>", …]        SHA-256 entries that must be in the measured dbx
 *   pcrs = [0, 1, …]                   PCRs the replay must reproduce (default: those the log extends)
 *   [integrity.ima]
 *   allowlist = "path"                 sha256sum-style file (relative to the policy file)
 *   keylime_policy = "path"            Keylime runtime-policy JSON (optional, merged)
 *   mode = "enforce" | "observe"       default "enforce"
 *   excludes = ["/tmp/**", …]          globs: ** any depth, * and ? within a segment
 *   boot_aggregate = true              check boot_aggregate against PCRs 0–7/0–9 (default true)
 *
 * Unknown keys are config_invalid naming the key. Top-level tables other than integrity are
 * accepted only if they are `executors` or `scopes` (the daemon's part), and ignored here.
 */

export type ImaMode = "enforce" | "observe";

export interface EventLogRules {
  readonly secureBoot: boolean | undefined;
  /** Allowed boot application digests, lowercase hex (bank from the length). */
  readonly bootApplications: readonly string[] | undefined;
  readonly requiredDbx: readonly string[];
  readonly pcrs: readonly number[] | undefined;
}

export interface ImaRulesConfig {
  readonly allowlist: string | undefined;
  readonly keylimePolicy: string | undefined;
  readonly mode: ImaMode;
  readonly excludes: readonly string[];
  readonly bootAggregate: boolean;
}

export interface IntegrityPolicyConfig {
  /** Golden PCR values: bank → PCR index → allowed digests (lowercase hex). */
  readonly pcrs: Readonly<Partial<Record<BankName, Readonly<Record<number, readonly string[]>>>>>;
  readonly eventlog: EventLogRules | undefined;
  readonly ima: ImaRulesConfig | undefined;
}

export const TOP_LEVEL_IGNORED = ["executors", "scopes"] as const;
export const MAX_GOLDEN_PER_PCR = 1024;
export const MAX_LIST_ENTRIES = 100_000;

function bad(key: string, why: string): ExecgateError {
  return new ExecgateError("config_invalid", `policy: ${key}: ${why}`, { key });
}

function table(v: unknown, key: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Date)
    throw bad(key, "must be a table");
  return v as Record<string, unknown>;
}

function closed(t: Record<string, unknown>, key: string, allowed: readonly string[]): void {
  for (const k of Object.keys(t)) if (!allowed.includes(k)) throw bad(`${key}.${k}`, "unknown key");
}

function hexList(v: unknown, key: string, sizes: readonly number[]): string[] {
  if (!Array.isArray(v)) throw bad(key, "must be an array of hex strings");
  if (v.length > MAX_LIST_ENTRIES) throw bad(key, "too many entries");
  return v.map((x, i) => {
    if (typeof x !== "string") throw bad(`${key}[${i}]`, "must be a hex string");
    let b: Uint8Array;
    try {
      b = fromHex(x);
    } catch {
      throw bad(`${key}[${i}]`, "not hex");
    }
    if (!sizes.includes(b.length)) throw bad(`${key}[${i}]`, `digest of ${b.length} bytes`);
    return toHex(b);
  });
}

function bool(v: unknown, key: string): boolean {
  if (typeof v !== "boolean") throw bad(key, "must be true or false");
  return v;
}

function string(v: unknown, key: string): string {
  if (typeof v !== "string" || v === "") throw bad(key, "must be a non-empty string");
  return v;
}

const DIGEST_SIZES = [20, 32, 48, 64];

/** Validates the parsed TOML document (any object) against the closed schema. */
export function integrityConfigFromToml(doc: Record<string, unknown>): IntegrityPolicyConfig {
  for (const k of Object.keys(doc)) {
    if (k !== "integrity" && !(TOP_LEVEL_IGNORED as readonly string[]).includes(k))
      throw bad(k, "unknown key");
  }
  if (doc.integrity === undefined) return { pcrs: {}, eventlog: undefined, ima: undefined };
  const it = table(doc.integrity, "integrity");
  closed(it, "integrity", ["pcrs", "eventlog", "ima"]);
  const pcrs: Partial<Record<BankName, Record<number, string[]>>> = {};
  if (it.pcrs !== undefined) {
    const banks = table(it.pcrs, "integrity.pcrs");
    for (const [bank, v] of Object.entries(banks)) {
      const alg = algByName(bank);
      if (!alg) throw bad(`integrity.pcrs.${bank}`, "unknown key (not a PCR bank)");
      const m: Record<number, string[]> = {};
      for (const [idx, list] of Object.entries(table(v, `integrity.pcrs.${bank}`))) {
        const key = `integrity.pcrs.${bank}.${idx}`;
        const i = pcrIndexFromKey(idx);
        if (i === undefined) throw bad(key, "unknown key (not a PCR index: 0..23, no leading zeros)");
        const values = hexList(list, key, [alg.size]);
        if (values.length === 0) throw bad(key, "empty set of allowed values");
        if (values.length > MAX_GOLDEN_PER_PCR) throw bad(key, "too many values");
        m[i] = values;
      }
      pcrs[alg.name] = m;
    }
  }
  let eventlog: EventLogRules | undefined;
  if (it.eventlog !== undefined) {
    const e = table(it.eventlog, "integrity.eventlog");
    closed(e, "integrity.eventlog", ["secure_boot", "boot_applications", "required_dbx", "pcrs"]);
    let pcrList: number[] | undefined;
    if (e.pcrs !== undefined) {
      if (!Array.isArray(e.pcrs)) throw bad("integrity.eventlog.pcrs", "must be an array of PCR indices");
      pcrList = e.pcrs.map((x, i) => {
        const n = typeof x === "bigint" ? Number(x) : x;
        if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_PCR_INDEX) {
          throw bad(`integrity.eventlog.pcrs[${i}]`, "not a PCR index");
        }
        return n;
      });
    }
    eventlog = {
      secureBoot:
        e.secure_boot === undefined ? undefined : bool(e.secure_boot, "integrity.eventlog.secure_boot"),
      bootApplications:
        e.boot_applications === undefined
          ? undefined
          : hexList(e.boot_applications, "integrity.eventlog.boot_applications", DIGEST_SIZES),
      requiredDbx:
        e.required_dbx === undefined ? [] : hexList(e.required_dbx, "integrity.eventlog.required_dbx", [32]),
      pcrs: pcrList,
    };
  }
  let ima: ImaRulesConfig | undefined;
  if (it.ima !== undefined) {
    const m = table(it.ima, "integrity.ima");
    closed(m, "integrity.ima", ["allowlist", "keylime_policy", "mode", "excludes", "boot_aggregate"]);
    const mode = m.mode === undefined ? "enforce" : m.mode;
    if (mode !== "enforce" && mode !== "observe")
      throw bad("integrity.ima.mode", "must be enforce or observe");
    let excludes: string[] = [];
    if (m.excludes !== undefined) {
      if (!Array.isArray(m.excludes) || !m.excludes.every((x) => typeof x === "string" && x !== "")) {
        throw bad("integrity.ima.excludes", "must be an array of globs");
      }
      excludes = m.excludes as string[];
    }
    ima = {
      allowlist: m.allowlist === undefined ? undefined : string(m.allowlist, "integrity.ima.allowlist"),
      keylimePolicy:
        m.keylime_policy === undefined ? undefined : string(m.keylime_policy, "integrity.ima.keylime_policy"),
      mode,
      excludes,
      bootAggregate:
        m.boot_aggregate === undefined ? true : bool(m.boot_aggregate, "integrity.ima.boot_aggregate"),
    };
  }
  return { pcrs, eventlog, ima };
}

/**
 * Refuses rules about PCRs the daemon's quotes never sign (`tpm.pcrs`): such a rule could only
 * fail, epoch after epoch. `quoted` is each bank of the selection with its PCR indices. The
 * IMA rules need PCR 10 in the sha256 or sha1 bank (evaluateIntegrity reads it from there).
 */
export function checkQuotedPcrs(
  cfg: IntegrityPolicyConfig,
  quoted: Readonly<Partial<Record<BankName, readonly number[]>>>,
): void {
  const selected = (bank: BankName, i: number) => quoted[bank]?.includes(i) === true;
  const anyBank = (i: number) => Object.values(quoted).some((idx) => idx?.includes(i));
  for (const [bank, pcrs] of Object.entries(cfg.pcrs) as [BankName, Record<number, unknown>][]) {
    for (const idx of Object.keys(pcrs).map(Number)) {
      if (!selected(bank, idx))
        throw bad(`integrity.pcrs.${bank}.${idx}`, "PCR not in tpm.pcrs (never quoted)");
    }
  }
  cfg.eventlog?.pcrs?.forEach((i, k) => {
    if (!anyBank(i)) throw bad(`integrity.eventlog.pcrs[${k}]`, `PCR ${i} not in tpm.pcrs (never quoted)`);
  });
  // The event-log facts come from events in PCR 7 (Secure Boot variables, dbx) and PCR 4 (boot
  // applications): a quote without that PCR cannot vouch for them.
  const e = cfg.eventlog;
  const needs: [string, boolean, number][] = [
    ["secure_boot", e?.secureBoot !== undefined, 7],
    ["required_dbx", (e?.requiredDbx.length ?? 0) > 0, 7],
    ["boot_applications", e?.bootApplications !== undefined, 4],
  ];
  for (const [key, set, pcr] of needs) {
    if (!set) continue;
    if (!anyBank(pcr))
      throw bad(`integrity.eventlog.${key}`, `needs PCR ${pcr}, which is not in tpm.pcrs (never quoted)`);
    // eventlog.pcrs limits the PCRs the log is compared on: the fact's PCR must be one of them.
    if (e?.pcrs && !e.pcrs.includes(pcr))
      throw bad(`integrity.eventlog.${key}`, `needs PCR ${pcr}, which is not in integrity.eventlog.pcrs`);
  }
  if (cfg.ima && !selected("sha256", 10) && !selected("sha1", 10))
    throw bad("integrity.ima", "PCR 10 of the sha256 or sha1 bank is not in tpm.pcrs (never quoted)");
}

/**
 * The PCRs given golden values unless the operator names others: all but PCR 10, which IMA
 * extends with every measurement (a golden value would soon deny `pcr_mismatch`); the
 * `[integrity.ima]` rules judge it. `execgate enroll --golden-out` and the `dev up` policy use it.
 */
export const DEFAULT_GOLDEN_PCRS: readonly number[] = Array.from(
  { length: MAX_PCR_INDEX + 1 },
  (_, i) => i,
).filter((i) => i !== IMA_PCR);

/**
 * The `[integrity.pcrs.<bank>]` TOML section holding the given PCR values as the only allowed
 * value of each PCR — what `execgate enroll` writes from the machine's current PCRs.
 * `indices` limits the PCRs (default: all given); banks and indices come out sorted.
 */
export function goldenFromPcrs(
  pcrs: Readonly<Partial<Record<string, Readonly<Record<string, string>>>>>,
  indices?: readonly number[],
): string {
  const out: string[] = [];
  for (const bank of Object.keys(pcrs).sort()) {
    const alg = algByName(bank);
    if (!alg) throw new ExecgateError("unsupported", `PCR bank ${bank}`);
    const values = pcrs[bank]!;
    const idx = Object.keys(values)
      .map(Number)
      .filter((i) => indices === undefined || indices.includes(i))
      .sort((a, b) => a - b);
    if (idx.length === 0) continue;
    if (out.length > 0) out.push("");
    out.push(`[integrity.pcrs.${alg.name}]`);
    for (const i of idx) {
      const v = fromHex(values[String(i)]!, `PCR ${bank}:${i}`);
      if (v.length !== alg.size)
        throw new ExecgateError("malformed", `PCR ${bank}:${i} has ${v.length} bytes`);
      out.push(`"${i}" = ["${toHex(v)}"]`);
    }
  }
  return `${out.join("\n")}\n`;
}
