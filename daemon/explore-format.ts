import type { Caller, ExploredEntry } from "../src/audit/explore/index.js";
import type { InclusionView } from "./explore-bundle.js";

/** Text lines of the explorer (`audit show`, `audit query`); --json prints the model as is. */

function short(hex: string): string {
  return hex.length > 16 ? `${hex.slice(0, 16)}…` : hex;
}

export function callerText(c: Caller | undefined): string {
  if (c === undefined) return "-";
  const parts: string[] = [];
  if (c.uid !== undefined) parts.push(`uid ${c.uid}`);
  if (c.gid !== undefined) parts.push(`gid ${c.gid}`);
  if (c.pid !== undefined) parts.push(`pid ${c.pid}`);
  if (c.exePath !== undefined) parts.push(`exe ${c.exePath}`);
  if (c.exeDigest !== undefined) parts.push(`exe sha256:${short(c.exeDigest)}`);
  if (c.unit !== undefined) parts.push(`unit ${c.unit}`);
  if (c.executors !== undefined)
    parts.push(c.executors.length > 0 ? `executor ${c.executors.join(",")}` : "no executor");
  return parts.length > 0 ? parts.join(" ") : "-";
}

/** What happened, in a few words: DENY reason, ALLOW, an exit status, an epoch's verdict. */
export function whatText(e: ExploredEntry): string {
  const b = e.body as Record<string, unknown>;
  const d = e.denial;
  const deny = d
    ? `DENY ${d.reason}${d.code ? `/${d.code}` : ""}${d.count !== undefined ? ` ×${d.count}` : ""}${
        d.detail !== undefined
          ? ` (${typeof d.detail === "string" ? d.detail : JSON.stringify(d.detail)})`
          : ""
      }`
    : "";
  const scope = e.scope !== undefined ? ` scope=${e.scope}` : "";
  const token = e.tokenId !== undefined ? ` token=${e.tokenId}` : "";
  switch (e.type) {
    case "decision":
      return `${e.allow ? "ALLOW" : deny}${scope}${token}`;
    case "request":
      return `request ${String(b.requestId)}${scope}`;
    case "token_issued":
    case "token_redeemed":
      return `${e.type === "token_issued" ? "issued" : "redeemed"}${scope}${token}`;
    case "execution_report":
      return `${b.exitCode !== undefined ? `exit ${String(b.exitCode)}` : `signal ${String(b.signal)}`} in ${String(b.durationMs)} ms${token}`;
    case "epoch":
      return e.epoch
        ? `epoch ${e.epoch.seq} ${e.epoch.verified ? "verified" : `NOT verified (${e.epoch.reason ?? "?"})`} id ${short(e.epoch.id)}`
        : "epoch (unreadable record)";
    case "denial_repeats":
      return deny;
    case "daemon_start":
    case "daemon_stop":
    case "recovery":
      return String(b.reason ?? "");
    case "policy_loaded":
      return `policy ${short(String(b.policyDigest))} from ${String(b.source)}`;
    default:
      return "";
  }
}

/** One table row: index, time, type, who, what. */
export function rowText(e: ExploredEntry, unverified: boolean): string {
  return `${unverified ? "UNVERIFIED " : ""}${String(e.index).padStart(8)}  ${e.time.iso}  ${e.type.padEnd(16)}  ${callerText(e.caller).padEnd(28)}  ${whatText(e)}`;
}

export function tableHeader(unverified: boolean): string {
  return `${unverified ? "UNVERIFIED " : ""}${"INDEX".padStart(8)}  ${"TIME".padEnd(24)}  ${"TYPE".padEnd(16)}  ${"WHO".padEnd(28)}  WHAT`;
}

/** Entry types that concern a caller (the others are the daemon's own: start, epoch, policy…). */
const CALLER_TYPES = new Set([
  "request",
  "decision",
  "token_issued",
  "token_redeemed",
  "execution_report",
  "denial_repeats",
]);

/** Long hex (a quote, a token) shortened in text; --json carries it whole. */
function abbreviate(_key: string, v: unknown): unknown {
  return typeof v === "string" && v.length > 96 && /^[0-9a-f]+$/.test(v)
    ? `${v.slice(0, 32)}… (${v.length / 2} bytes; --json shows all)`
    : v;
}

/** The whole entry: fields, references, body, and its inclusion proof. */
export function entryText(e: ExploredEntry, proof: InclusionView | undefined, prefix: string): string[] {
  const out = [
    `entry ${e.index}: ${e.type} (v${e.version}) at ${e.time.iso}`,
    `  leaf hash: ${e.leafHash}`,
    `  what: ${whatText(e) || "-"}`,
    ...(e.caller
      ? [`  who: ${callerText(e.caller)} (from ${e.caller.from.type} ${e.caller.from.index})`]
      : CALLER_TYPES.has(e.type)
        ? ["  who: not recorded in this entry or the entries it references"]
        : []),
  ];
  if (e.epochId !== undefined) out.push(`  epoch: ${e.epochId}`);
  if (e.epoch) {
    const ep = e.epoch;
    out.push(
      `  epoch ${ep.seq}: ${ep.verified ? "verified" : `NOT verified: ${ep.reason ?? "?"}`}, quote ${ep.quoted ? "present" : "absent"}${ep.hsmSigned ? ", HSM-signed" : ""}`,
      `    boot ${ep.boot}, bound to checkpoint ${ep.checkpoint.size} ${short(ep.checkpoint.root)}`,
      ...(ep.policyDigest !== undefined ? [`    policy digest ${ep.policyDigest}`] : []),
      ...ep.pcrs.map((p) => `    PCR ${p.bank}:${p.index} = ${p.value}`),
    );
  }
  for (const r of e.refs)
    out.push(
      `  ref → ${r.index} ${r.type ?? ""} ${r.status === "ok" ? "(leaf hash matches)" : `(${r.status})`}`,
    );
  for (const p of e.problems ?? []) out.push(`  problem: ${p}`);
  out.push(`  body: ${JSON.stringify(e.body, abbreviate)}`);
  if (e.token !== undefined) out.push(`  token claims: ${JSON.stringify(e.token, abbreviate)}`);
  if (proof) out.push(...proofText(proof));
  return out.map((l) => `${prefix}${l}`);
}

export function proofText(p: InclusionView): string[] {
  return [
    `  inclusion: ${p.verified ? "VERIFIED" : `NOT verified${p.reason ? ` (${p.reason})` : ""}`} — entry ${p.index} in the tree of ${p.treeSize} signed by the latest checkpoint, root ${p.root}`,
    ...p.path.map((h, i) => `    path[${i}] ${h}`),
  ];
}
