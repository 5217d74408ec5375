import { ExecgateError } from "../../core/errors.js";
import type { ExploredEntry } from "./entry-view.js";

/**
 * `audit query` filters (pure). Every given filter must hold (AND); an entry that does not say
 * the thing a filter asks about (a daemon_start has no uid) does not match it.
 */
export interface QueryFilter {
  readonly types?: readonly string[];
  readonly reasons?: readonly string[];
  /** Denials only: decisions that deny, denial_repeats, epochs that failed. */
  readonly denials?: boolean;
  readonly uid?: number;
  /** An executable's SHA-256 (hex, lowercase) or path; either matches what the entry records. */
  readonly exeDigest?: string;
  readonly exePath?: string;
  readonly scope?: string;
  readonly sinceMs?: number;
  readonly untilMs?: number;
  readonly epochId?: string;
  readonly tokenId?: string;
}

export function matches(e: ExploredEntry, f: QueryFilter): boolean {
  if (f.types && !f.types.includes(e.type)) return false;
  if (f.denials && e.denial === undefined) return false;
  if (f.reasons && (e.denial === undefined || !f.reasons.includes(e.denial.reason))) return false;
  if (f.uid !== undefined && e.caller?.uid !== f.uid) return false;
  if (f.exeDigest !== undefined || f.exePath !== undefined) {
    const byDigest = f.exeDigest !== undefined && e.caller?.exeDigest === f.exeDigest;
    const byPath = f.exePath !== undefined && e.caller?.exePath === f.exePath;
    if (!byDigest && !byPath) return false;
  }
  if (f.scope !== undefined && e.scope !== f.scope) return false;
  // denial_repeats span a window: it matches if any counted denial falls in the range.
  const first = e.denial?.firstMs ?? e.time.wallMs;
  const last = e.denial?.lastMs ?? e.time.wallMs;
  if (f.sinceMs !== undefined && Math.max(last, e.time.wallMs) < f.sinceMs) return false;
  if (f.untilMs !== undefined && Math.min(first, e.time.wallMs) > f.untilMs) return false;
  if (f.epochId !== undefined && e.epochId !== f.epochId) return false;
  if (f.tokenId !== undefined && e.tokenId !== f.tokenId) return false;
  return true;
}

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A point in time for --since / --until, in ms since the Unix epoch. Accepted: ISO 8601 with a
 * date (2026-12-08, 2026-12-08T01:00:00Z, …+01:00; without a zone it is UTC), a relative time
 * before `nowMs` (-90s, -15m, -1h, -2d), `now`, `today` (00:00 UTC of nowMs's day) and a plain
 * integer of ms since the epoch. Anything else is `malformed`.
 */
export function parseWhen(text: string, nowMs: number): number {
  const t = text.trim();
  const rel = /^-(\d{1,9})([smhd])$/.exec(t);
  if (rel) return nowMs - Number(rel[1]) * UNIT_MS[rel[2]!]!;
  if (t === "now") return nowMs;
  if (t === "today") return Math.floor(nowMs / UNIT_MS.d!) * UNIT_MS.d!;
  if (/^\d{1,15}$/.test(t)) return Number(t);
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,3})?)?)?(Z|[+-]\d{2}:\d{2})?$/.exec(t);
  if (m) {
    const zone = m[8] ?? "Z";
    const iso = `${m[1]}-${m[2]}-${m[3]}T${m[4] ?? "00"}:${m[5] ?? "00"}:${m[6] ?? "00"}${m[7] ?? ""}${zone}`;
    const ms = Date.parse(iso);
    // Date.parse rolls 2026-02-30 over to March: the round trip catches it.
    if (
      !Number.isNaN(ms) &&
      new Date(Date.parse(`${m[1]}-${m[2]}-${m[3]}T00:00:00Z`)).toISOString().slice(0, 10) ===
        `${m[1]}-${m[2]}-${m[3]}`
    )
      return ms;
  }
  throw new ExecgateError(
    "malformed",
    `time ${JSON.stringify(text)}: give ISO 8601 (2026-12-08T01:00:00Z), a relative time (-1h, -30m, -2d), today or now`,
  );
}
