import { posix } from "node:path";
import { ExecgateError } from "../core/errors.js";

/**
 * The access part of the policy file (TOML), a closed schema (docs/policy.md):
 *
 *   [[executors]]
 *   name = "trainer"
 *   uids = [1000]                      at least one of uids / gids is non-empty
 *   gids = []
 *   exe_sha256 = ["<hex>"]             optional: SHA-256 of the caller's executable
 *   exe_paths = ["/usr/bin/python3.12"] optional: the kernel's path of the executable, verified
 *                                      in the daemon's mount namespace (PeerIdentity.exePathVerified)
 *   units = ["trainer.service"]        optional: the caller's systemd (system manager) unit
 *   scopes = ["train", "dev"]
 *
 *   [scopes.train]
 *   ttl_s = 30                         required, 1..3600
 *   fresh = false                      true: needs an epoch started after the request was logged
 *   audiences = ["execgate"]           optional, default: the daemon's token.audience
 *   actions = ["<hex sha256>"]         optional allowlist of action digests
 *
 * Every scope an executor names must exist. An optional list that is present must not be
 * empty (an empty list would match nothing; leave the key out instead) — except uids/gids,
 * where an empty list means "not constrained by this attribute".
 */

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
export const MAX_NAME_LENGTH = 128;
export const MAX_EXECUTORS = 1024;
export const MAX_SCOPES = 1024;
export const MAX_LIST_ITEMS = 4096;
export const MIN_TTL_S = 1;
export const MAX_TTL_S = 3600;
/** uid_t/gid_t are 32-bit; (uid_t)-1 means "no id" to the kernel and never names a caller. */
export const MAX_ID = 0xffff_fffe;
export const EXECUTOR_KEYS = ["name", "uids", "gids", "exe_sha256", "exe_paths", "units", "scopes"] as const;
export const SCOPE_KEYS = ["ttl_s", "fresh", "audiences", "actions"] as const;
const UNIT_RE = /^[A-Za-z0-9:_.\\@-]+\.(?:service|scope)$/;
const AUDIENCE_RE = /^[\x21-\x7e]{1,256}$/;

export interface Executor {
  readonly name: string;
  readonly uids: readonly number[];
  readonly gids: readonly number[];
  /** Lowercase hex SHA-256 digests. */
  readonly exeSha256?: readonly string[];
  readonly exePaths?: readonly string[];
  readonly units?: readonly string[];
  readonly scopes: readonly string[];
}

export interface Scope {
  readonly name: string;
  readonly ttlS: number;
  readonly fresh: boolean;
  /** Absent: the daemon's default audience only. */
  readonly audiences?: readonly string[];
  /** Lowercase hex SHA-256 action digests; absent: any action. */
  readonly actions?: readonly string[];
}

export interface AccessPolicy {
  /** In file order; a caller may match several. */
  readonly executors: readonly Executor[];
  /** A Map, not an object: scope names like "constructor" must not reach a prototype. */
  readonly scopes: ReadonlyMap<string, Scope>;
}

function bad(source: string, key: string, why: string): ExecgateError {
  return new ExecgateError("config_invalid", `${source}: ${key}: ${why}`, { file: source, key });
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function closed(source: string, t: Record<string, unknown>, key: string, allowed: readonly string[]): void {
  for (const k of Object.keys(t)) if (!allowed.includes(k)) throw bad(source, `${key}.${k}`, "unknown key");
}

function name(source: string, v: unknown, key: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > MAX_NAME_LENGTH || !NAME_RE.test(v)) {
    throw bad(source, key, `must be a name of 1..${MAX_NAME_LENGTH} characters [A-Za-z0-9][A-Za-z0-9._:-]*`);
  }
  return v;
}

function list<T>(
  source: string,
  v: unknown,
  key: string,
  item: (x: unknown, key: string) => T,
  allowEmpty: boolean,
): T[] {
  if (!Array.isArray(v)) throw bad(source, key, "must be an array");
  if (v.length === 0 && !allowEmpty) throw bad(source, key, "is empty and would match nothing; leave it out");
  if (v.length > MAX_LIST_ITEMS) throw bad(source, key, `more than ${MAX_LIST_ITEMS} entries`);
  const out = v.map((x, i) => item(x, `${key}[${i}]`));
  const seen = new Set<T>();
  out.forEach((x, i) => {
    if (seen.has(x)) throw bad(source, `${key}[${i}]`, "duplicate entry");
    seen.add(x);
  });
  return out;
}

export function accessPolicyFromToml(doc: Record<string, unknown>, source = "policy"): AccessPolicy {
  const id = (x: unknown, key: string): number => {
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0 || x > MAX_ID)
      throw bad(source, key, `must be an integer id 0..${MAX_ID}`);
    return x;
  };
  const sha256 = (x: unknown, key: string): string => {
    if (typeof x !== "string" || !/^[0-9a-fA-F]{64}$/.test(x))
      throw bad(source, key, "must be a SHA-256 digest (64 hex digits)");
    return x.toLowerCase();
  };
  const exePath = (x: unknown, key: string): string => {
    if (typeof x !== "string" || !x.startsWith("/") || x.includes("\0") || x.length > 4095)
      throw bad(source, key, "must be an absolute path");
    if (posix.normalize(x) !== x || (x.length > 1 && x.endsWith("/")))
      throw bad(
        source,
        key,
        `must be normalized (the kernel reports ${posix.normalize(x).replace(/\/$/, "")})`,
      );
    return x;
  };
  const unit = (x: unknown, key: string): string => {
    if (typeof x !== "string" || x.length > 256 || !UNIT_RE.test(x))
      throw bad(
        source,
        key,
        'must be a systemd unit name ending in .service or .scope, e.g. "trainer.service"',
      );
    return x;
  };
  const audience = (x: unknown, key: string): string => {
    if (typeof x !== "string" || !AUDIENCE_RE.test(x))
      throw bad(source, key, "must be 1..256 printable ASCII characters without spaces");
    return x;
  };

  const scopes = new Map<string, Scope>();
  if (doc.scopes !== undefined) {
    if (!isTable(doc.scopes)) throw bad(source, "scopes", "must be a table of [scopes.<name>] tables");
    const entries = Object.entries(doc.scopes);
    if (entries.length > MAX_SCOPES) throw bad(source, "scopes", `more than ${MAX_SCOPES} scopes`);
    for (const [sname, v] of entries) {
      const key = `scopes.${sname}`;
      name(source, sname, key);
      if (!isTable(v)) throw bad(source, key, "must be a table");
      closed(source, v, key, SCOPE_KEYS);
      if (v.ttl_s === undefined) throw bad(source, `${key}.ttl_s`, "is required (token lifetime in seconds)");
      if (
        typeof v.ttl_s !== "number" ||
        !Number.isSafeInteger(v.ttl_s) ||
        v.ttl_s < MIN_TTL_S ||
        v.ttl_s > MAX_TTL_S
      )
        throw bad(source, `${key}.ttl_s`, `must be an integer ${MIN_TTL_S}..${MAX_TTL_S}`);
      if (v.fresh !== undefined && typeof v.fresh !== "boolean")
        throw bad(source, `${key}.fresh`, "must be true or false");
      scopes.set(sname, {
        name: sname,
        ttlS: v.ttl_s,
        fresh: v.fresh ?? false,
        ...(v.audiences === undefined
          ? {}
          : { audiences: list(source, v.audiences, `${key}.audiences`, audience, false) }),
        ...(v.actions === undefined
          ? {}
          : { actions: list(source, v.actions, `${key}.actions`, sha256, false) }),
      });
    }
  }

  const executors: Executor[] = [];
  if (doc.executors !== undefined) {
    if (!Array.isArray(doc.executors))
      throw bad(source, "executors", "must be an array of tables ([[executors]])");
    if (doc.executors.length > MAX_EXECUTORS)
      throw bad(source, "executors", `more than ${MAX_EXECUTORS} executors`);
    const names = new Set<string>();
    doc.executors.forEach((v: unknown, i) => {
      const key = `executors[${i}]`;
      if (!isTable(v)) throw bad(source, key, "must be a table ([[executors]])");
      closed(source, v, key, EXECUTOR_KEYS);
      if (v.name === undefined) throw bad(source, `${key}.name`, "is required");
      const ename = name(source, v.name, `${key}.name`);
      if (names.has(ename)) throw bad(source, `${key}.name`, `executor "${ename}" is defined twice`);
      names.add(ename);
      const uids = v.uids === undefined ? [] : list(source, v.uids, `${key}.uids`, id, true);
      const gids = v.gids === undefined ? [] : list(source, v.gids, `${key}.gids`, id, true);
      if (uids.length === 0 && gids.length === 0)
        throw bad(source, key, `executor "${ename}" names no uid and no gid (at least one is required)`);
      if (v.scopes === undefined) throw bad(source, `${key}.scopes`, "is required");
      const granted = list(source, v.scopes, `${key}.scopes`, (x, k) => name(source, x, k), false);
      granted.forEach((s, j) => {
        if (!scopes.has(s))
          throw bad(source, `${key}.scopes[${j}]`, `scope "${s}" is not defined ([scopes.${s}])`);
      });
      executors.push({
        name: ename,
        uids,
        gids,
        ...(v.exe_sha256 === undefined
          ? {}
          : { exeSha256: list(source, v.exe_sha256, `${key}.exe_sha256`, sha256, false) }),
        ...(v.exe_paths === undefined
          ? {}
          : { exePaths: list(source, v.exe_paths, `${key}.exe_paths`, exePath, false) }),
        ...(v.units === undefined ? {} : { units: list(source, v.units, `${key}.units`, unit, false) }),
        scopes: granted,
      });
    });
  }
  return { executors, scopes };
}
