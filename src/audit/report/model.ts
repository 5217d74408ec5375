import type { ExploredEntry, Json } from "../explore/index.js";
import { LineageSummary } from "../explore/index.js";
import type { AuditFailure } from "../verify.js";

/**
 * What the HTML report embeds (pure): the verdict as `audit verify` gave it, grouped by phase;
 * runs, epochs, executions, denials and executors from the read model; and one compact row per
 * entry (decoded view, who/why, raw bytes and inclusion path for the page to re-verify).
 */
export interface CheckGroup {
  readonly name: string;
  readonly result: "PASS" | "FAIL" | "SKIP";
  readonly failures: string[];
}

/** `audit verify`'s phases and the failure checks each reports (docs/audit.md). */
const PHASES: readonly { name: string; match: RegExp; keyChain?: true }[] = [
  { name: "bundle files (inventory)", match: /^(missing_file|unknown_file|origin_file)$/ },
  { name: "segments and records", match: /^(segment_|record)/ },
  { name: "entries and back-references", match: /^(entry_decode|backref)/ },
  { name: "log key and origin", match: /^(log_vkey|log_key|checkpoint_origin|host_origin)$/ },
  { name: "checkpoints, signatures and consistency", match: /^(checkpoint|intent_fork|trusted_checkpoint)/ },
  { name: "tiles and blobs", match: /^(tile|blob)/ },
  {
    name: "key chain: EK certificate → AK → signing key",
    match: /^(ek|ak|signing_key|hsm_key|token_ueid)/,
    keyChain: true,
  },
  { name: "attestation: quotes, allows, tokens, policies", match: /./, keyChain: true },
];

export function failureLine(f: AuditFailure): string {
  return `${f.check}${f.path !== undefined ? ` ${f.path}` : ""}${f.index !== undefined ? ` entry ${f.index}` : ""}${
    f.checkpoint !== undefined ? ` checkpoint #${f.checkpoint}` : ""
  }${f.segment !== undefined ? ` (${f.segment})` : ""}: ${f.reason}`;
}

export function checkGroups(failures: readonly AuditFailure[], logOnly: boolean): CheckGroup[] {
  const groups = PHASES.map((p) => ({
    name: p.name,
    result: "PASS" as CheckGroup["result"],
    failures: [] as string[],
  }));
  for (const f of failures) {
    const k = PHASES.findIndex((p) => p.match.test(f.check));
    const g = groups[k]!;
    g.result = "FAIL";
    g.failures.push(failureLine(f));
  }
  PHASES.forEach((p, k) => {
    if (logOnly && p.keyChain && groups[k]!.result === "PASS") groups[k]!.result = "SKIP";
  });
  return groups;
}

export interface EntryRow {
  readonly type: string;
  readonly time: string;
  readonly who?: string;
  readonly why?: string;
  readonly denied?: true;
  /** Lowercased text the page's search matches. */
  readonly s: string;
  /** The entry's bytes (base64) and inclusion path (hex), for the page to recompute. */
  readonly b?: string;
  readonly path?: readonly string[];
  readonly cli?: { readonly ok: boolean; readonly why?: string };
  readonly view: Json;
}

export function whoOf(e: ExploredEntry): string | undefined {
  const c = e.caller;
  if (!c) return undefined;
  const parts: string[] = [];
  if (c.uid !== undefined) parts.push(`uid ${c.uid}`);
  if (c.gid !== undefined) parts.push(`gid ${c.gid}`);
  if (c.pid !== undefined) parts.push(`pid ${c.pid}`);
  if (c.exePath !== undefined) parts.push(c.exePath);
  if (c.exeDigest !== undefined) parts.push(`exe sha256:${c.exeDigest.slice(0, 16)}…`);
  if (c.unit !== undefined) parts.push(`unit ${c.unit}`);
  return parts.join(" ");
}

export function whyOf(e: ExploredEntry): string | undefined {
  const parts: string[] = [];
  if (e.denial) {
    parts.push(`DENY ${e.denial.reason}`);
    if (e.denial.code) parts.push(e.denial.code);
    if (e.denial.detail !== undefined) parts.push(JSON.stringify(e.denial.detail));
    if (e.denial.count !== undefined) parts.push(`×${e.denial.count}`);
  } else if (e.allow === true) parts.push("ALLOW");
  if (e.epoch) parts.push(`epoch ${e.epoch.seq} ${e.epoch.verified ? "verified" : "not verified"}`);
  if (e.scope !== undefined) parts.push(`scope=${e.scope}`);
  if (e.tokenId !== undefined) parts.push(`token ${e.tokenId}`);
  if (e.problems) parts.push(...e.problems);
  return parts.length > 0 ? parts.join(" ") : undefined;
}

function iso(ms: number | undefined): string {
  if (ms === undefined) return "";
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}

interface Executor {
  exe: string;
  uids: Set<number>;
  scopes: Set<string>;
  runs: number;
  denials: number;
}

export class ReportModel {
  readonly summary = new LineageSummary();
  readonly rows: EntryRow[] = [];
  private readonly types = new Set<string>();
  private readonly executors = new Map<string, Executor>();

  private executor(exe: string): Executor {
    let x = this.executors.get(exe);
    if (!x) {
      x = { exe, uids: new Set(), scopes: new Set(), runs: 0, denials: 0 };
      this.executors.set(exe, x);
    }
    return x;
  }

  /** One entry in log order; `proof` is the CLI's inclusion result for it. */
  observe(
    e: ExploredEntry,
    bytes: Uint8Array,
    proof: { ok: boolean; path: readonly string[]; why?: string } | undefined,
  ): void {
    this.summary.observe(e);
    this.types.add(e.type);
    const who = whoOf(e);
    const why = whyOf(e);
    const exe = e.caller?.exeDigest;
    if (exe !== undefined && e.type === "decision") {
      const x = this.executor(exe);
      if (e.caller?.uid !== undefined) x.uids.add(e.caller.uid);
      if (e.scope !== undefined) x.scopes.add(e.scope);
      if (e.allow === true) x.runs += 1;
      else x.denials += 1;
    }
    this.push(e.index, {
      type: e.type,
      time: e.time.iso,
      ...(who !== undefined ? { who } : {}),
      ...(why !== undefined ? { why } : {}),
      ...(e.denial !== undefined ? { denied: true as const } : {}),
      s: `#${e.index} ${e.type} ${who ?? ""} ${why ?? ""} ${e.caller?.exeDigest ?? ""}`.toLowerCase(),
      b: Buffer.from(bytes).toString("base64"),
      ...(proof ? { path: proof.path, cli: { ok: proof.ok, ...(proof.why ? { why: proof.why } : {}) } } : {}),
      view: e as unknown as Json,
    });
  }

  /** An entry the read model could not explain (it does not decode): shown as such. */
  undecodable(
    index: number,
    bytes: Uint8Array,
    why: string,
    proof: { ok: boolean; path: readonly string[]; why?: string } | undefined,
  ): void {
    this.types.add("undecodable");
    this.push(index, {
      type: "undecodable",
      time: "",
      why,
      s: `#${index} undecodable ${why}`.toLowerCase(),
      b: Buffer.from(bytes).toString("base64"),
      ...(proof ? { path: proof.path, cli: { ok: proof.ok, ...(proof.why ? { why: proof.why } : {}) } } : {}),
      view: { index, problem: why },
    });
  }

  private push(index: number, r: EntryRow): void {
    while (this.rows.length < index) this.rows.push({ type: "missing", time: "", s: "missing", view: null });
    this.rows[index] = r;
  }

  /** The page's data, apart from the verdict, checkpoint and key chain the shell adds. */
  data(): Record<string, Json> {
    const s = this.summary;
    const epochByIndex = new Map(s.epochs.map((e) => [e.index, e]));
    const runs = s.runs.map((r) => ({
      startIndex: r.startIndex,
      start: iso(r.startMs),
      startReason: r.startReason,
      ...(r.stopIndex !== undefined ? { stop: iso(r.stopMs), stopReason: r.stopReason ?? "" } : {}),
      epochs: r.epochs.flatMap((i) => {
        const e = epochByIndex.get(i);
        if (!e) return [];
        const v = e.epoch;
        return [
          {
            index: i,
            seq: v.seq,
            time: iso(e.wallMs),
            verified: v.verified,
            ...(v.reason !== undefined ? { reason: v.reason } : {}),
            ...(v.policyDigest !== undefined ? { policyDigest: v.policyDigest } : {}),
            boot: v.boot,
            pcrs: v.pcrs.map((p) => ({ bank: p.bank, index: p.index, value: p.value })),
            allows: e.allows,
            denials: e.denials,
          },
        ];
      }),
    }));
    const executions = [...s.executions.values()].map((x) => ({
      tokenId: x.tokenId,
      time: iso(x.decidedMs),
      decision: x.decision,
      ...(x.request !== undefined ? { request: x.request } : {}),
      ...(x.issued !== undefined ? { issued: x.issued } : {}),
      ...(x.redeemed !== undefined ? { redeemed: x.redeemed } : {}),
      ...(x.report !== undefined ? { report: x.report } : {}),
      ...(x.exitCode !== undefined ? { exitCode: x.exitCode } : {}),
      ...(x.signal !== undefined ? { signal: x.signal } : {}),
      ...(x.uid !== undefined ? { uid: x.uid } : {}),
      ...(x.scope !== undefined ? { scope: x.scope } : {}),
    }));
    const denials = [...s.denials.values()].map((g) => ({
      reason: g.reason,
      count: g.count,
      entries: [...g.entries],
    }));
    const executors = [...this.executors.values()].map((x) => ({
      exe: x.exe,
      uids: [...x.uids].map(String),
      scopes: [...x.scopes],
      runs: x.runs,
      denials: x.denials,
    }));
    return {
      runs,
      executions,
      denials,
      executors,
      types: [...this.types].sort(),
      entries: this.rows as unknown as Json,
    };
  }
}
