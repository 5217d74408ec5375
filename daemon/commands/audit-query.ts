import {
  ExplainCache,
  type ExploredEntry,
  explainEntry,
  matches,
  parseTokenId,
  parseWhen,
  type QueryFilter,
} from "../../src/audit/explore/index.js";
import { DENIAL_REASONS } from "../../src/core/denial.js";
import { asExecgateError } from "../../src/core/errors.js";
import { ENTRY_TYPES } from "../../src/lineage/entry.js";
import { flag, type Parsed, parseCommandArgs, str } from "../args.js";
import type { Command } from "../cli.js";
import { EXIT, usageError } from "../exit.js";
import { BundleLookup, bundleEntries, fileDigest } from "../explore-bundle.js";
import { rowText, tableHeader } from "../explore-format.js";
import { EXPLORE_OPTIONS, EXPLORE_USAGE, verifyFirst } from "../explore-gate.js";

/**
 * `audit query`: the entries of a verified bundle that match every filter given, streamed in log
 * order (one segment and a few entry bundles in memory), as a table or NDJSON.
 */

function list(p: Parsed, name: string): string[] | undefined {
  const v = p.values[name];
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [String(v)])
    .flatMap((x) => x.split(","))
    .map((x) => x.trim())
    .filter((x) => x !== "");
}

function when(p: Parsed, name: string, nowMs: number): number | undefined {
  const s = str(p, name);
  if (s === undefined) return undefined;
  try {
    return parseWhen(s, nowMs);
  } catch (e) {
    throw usageError(`--${name}: ${asExecgateError(e).message}`);
  }
}

/** The filters from the flags; every value checked against its closed set (a typo is exit 2). */
export function filterOf(p: Parsed, nowMs: number): QueryFilter {
  const types = list(p, "type");
  for (const t of types ?? [])
    if (!(ENTRY_TYPES as readonly string[]).includes(t))
      throw usageError(`--type ${t}: one of ${ENTRY_TYPES.join(", ")}`);
  const reasons = list(p, "reason");
  for (const r of reasons ?? [])
    if (!(DENIAL_REASONS as readonly string[]).includes(r))
      throw usageError(`--reason ${r}: one of ${DENIAL_REASONS.join(", ")}`);
  const uidText = str(p, "uid");
  if (uidText !== undefined && !/^\d{1,10}$/.test(uidText)) throw usageError("--uid must be a number");
  const exe = str(p, "exe");
  let exeDigest: string | undefined;
  let exePath: string | undefined;
  if (exe !== undefined) {
    if (/^(sha256:)?[0-9a-fA-F]{64}$/.test(exe)) exeDigest = exe.replace(/^sha256:/, "").toLowerCase();
    else {
      exePath = exe;
      exeDigest = fileDigest(exe);
      if (exeDigest === undefined)
        process.stderr.write(
          `note: ${exe} cannot be read here; matching entries that record this path only\n`,
        );
    }
  }
  let tokenId: string | undefined;
  try {
    if (str(p, "token") !== undefined) tokenId = parseTokenId(str(p, "token")!).tokenId;
  } catch (e) {
    throw usageError(`--token: ${asExecgateError(e).message}`);
  }
  const epoch = str(p, "epoch")?.toLowerCase();
  if (epoch !== undefined && !/^[0-9a-f]{64}$/.test(epoch))
    throw usageError("--epoch: the epoch id, 64 hex digits");
  const sinceMs = when(p, "since", nowMs);
  const untilMs = when(p, "until", nowMs);
  return {
    ...(types ? { types } : {}),
    ...(reasons ? { reasons } : {}),
    ...(flag(p, "denials") ? { denials: true } : {}),
    ...(uidText !== undefined ? { uid: Number(uidText) } : {}),
    ...(exeDigest !== undefined ? { exeDigest } : {}),
    ...(exePath !== undefined ? { exePath } : {}),
    ...(str(p, "scope") !== undefined ? { scope: str(p, "scope")! } : {}),
    ...(sinceMs !== undefined ? { sinceMs } : {}),
    ...(untilMs !== undefined ? { untilMs } : {}),
    ...(epoch !== undefined ? { epochId: epoch } : {}),
    ...(tokenId !== undefined ? { tokenId } : {}),
  };
}

/** `--since -1h` as `--since=-1h`: parseArgs would take a value starting with "-" for an option. */
function relativeTimes(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if ((a === "--since" || a === "--until") && next !== undefined && /^-\d+[smhd]$/.test(next)) {
      out.push(`${a}=${next}`);
      i += 1;
    } else out.push(a);
  }
  return out;
}

/** stdout, waiting for the pipe to drain so a large result streams in constant memory. */
async function write(s: string): Promise<void> {
  if (!process.stdout.write(s)) await new Promise<void>((r) => process.stdout.once("drain", () => r()));
}

export const command: Command = {
  summary: "list the entries of a bundle that match filters (who, why, when), as a table or NDJSON",
  usage:
    "DIR [--type T[,T]] [--denials] [--reason R[,R]] [--uid U] [--exe PATH|SHA256] [--scope S]\n" +
    "    [--since TIME] [--until TIME] [--epoch ID] [--token CTI] [--limit N] [--json] [--unverified | VERIFY FLAGS]\n" +
    "  Filters combine (AND). --denials: every denial (deny decisions, counted repeats, failed epochs).\n" +
    "  --type: daemon_start, epoch, request, decision, token_issued, token_redeemed, execution_report,\n" +
    "    policy_loaded, recovery, daemon_stop, denial_repeats. --reason: a denial reason (docs/fail-closed.md).\n" +
    "  --exe: the executable's SHA-256, or a path (matched by the path an entry records, and by the\n" +
    "    SHA-256 of the file at that path on this machine, if readable). --uid, --exe, --scope match the\n" +
    "    caller an entry names directly or through its references (a decision's request, a token's claims).\n" +
    "  TIME: ISO 8601 (2026-12-08, 2026-12-08T13:00:00Z, …+01:00; no zone = UTC), relative to now\n" +
    "    (-30s, -15m, -1h, -2d), today (00:00 UTC), now, or ms since the epoch; by the entry's wall clock.\n" +
    "  Every denial in the last hour and why:  execgate audit query DIR --denials --since -1h --trust CA.pem\n" +
    "  Everything executable X did today:    execgate audit query DIR --exe /usr/bin/X --since today --trust CA.pem\n" +
    "  --json: one JSON object per line (NDJSON), the entry decoded with its references, caller and denial.\n" +
    EXPLORE_USAGE +
    "Exit: 0 answered (also with no match), 1 the bundle does not verify, 2 usage, 3 unreadable bundle.",
  async run(argv) {
    const p = parseCommandArgs(
      relativeTimes(argv),
      {
        ...EXPLORE_OPTIONS,
        type: { type: "string", multiple: true },
        reason: { type: "string", multiple: true },
        denials: { type: "boolean" },
        uid: { type: "string" },
        exe: { type: "string" },
        scope: { type: "string" },
        since: { type: "string" },
        until: { type: "string" },
        epoch: { type: "string" },
        token: { type: "string" },
        limit: { type: "string" },
      },
      true,
    );
    const dir = p.positionals[0];
    if (dir === undefined || p.positionals.length !== 1) throw usageError("expected one bundle DIR");
    const limitText = str(p, "limit");
    if (limitText !== undefined && !/^\d{1,12}$/.test(limitText))
      throw usageError("--limit must be a number");
    const limit = limitText === undefined ? Number.POSITIVE_INFINITY : Number(limitText);
    const filter = filterOf(p, Date.now());
    const verdict = await verifyFirst(dir, p);
    if (!verdict.proceed) {
      if (flag(p, "json")) process.stdout.write(`${JSON.stringify(verdict.json)}\n`);
      else process.stdout.write(verdict.text);
      return EXIT.failed;
    }
    const json = flag(p, "json");
    const unverified = verdict.unverified;
    process.stderr.write(`${verdict.note}\n`);
    if (!json) await write(`${tableHeader(unverified)}\n`);
    let shown = 0;
    const lookup = new BundleLookup(dir);
    const cache = new ExplainCache();
    for await (const { index, bytes } of bundleEntries(dir)) {
      if (shown >= limit) break;
      lookup.saw(index, bytes);
      let e: ExploredEntry;
      try {
        e = explainEntry(index, bytes, lookup.lookup, cache);
      } catch {
        continue; // undecodable: only reachable with --unverified (audit verify names it)
      }
      if (!matches(e, filter)) continue;
      shown += 1;
      if (json) await write(`${JSON.stringify(unverified ? { unverified: true, ...e } : e)}\n`);
      else await write(`${rowText(e, unverified)}\n`);
    }
    if (!json) process.stderr.write(`${shown} entr${shown === 1 ? "y" : "ies"}\n`);
    return EXIT.ok;
  },
};
