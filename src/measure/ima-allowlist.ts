import { ExecgateError } from "../core/errors.js";
import { toHex } from "../core/hex.js";
import type { ImaEntry } from "./ima-parse.js";

/** Bounds on operator-supplied lists (a 20 MiB allowlist is ~200k lines). */
export const MAX_ALLOWLIST_BYTES = 512 * 1024 * 1024;
export const MAX_EXCLUDES = 10_000;

/**
 * Allowed file digests per path. Values are lowercase hex of any algorithm (the digest length
 * tells them apart); a path may have several (package updates, multiple algorithms).
 */
export interface Allowlist {
  readonly digests: ReadonlyMap<string, string | readonly string[]>;
  /** Keylime `keyrings`: allowed ima-buf digests per keyring name. */
  readonly keyrings: ReadonlyMap<string, readonly string[]>;
  /** Exclusions: our globs and Keylime's regexes, compiled into one anchored RegExp (or none). */
  readonly exclude: RegExp | undefined;
  readonly excludeSources: readonly string[];
}

function add(m: Map<string, string | string[]>, path: string, hex: string): void {
  const cur = m.get(path);
  if (cur === undefined) m.set(path, hex);
  else if (typeof cur === "string") {
    if (cur !== hex) m.set(path, [cur, hex]);
  } else if (!cur.includes(hex)) cur.push(hex);
}

const HEX_DIGEST = /^[0-9a-fA-F]{32,128}$/;

/**
 * `sha256sum`-style lines: `HEX  /path` (a `*` before the path marks binary mode; Keylime's files also
 * carry relative names). Blank lines and `#`
 * comments are skipped; anything else is config_invalid naming the line.
 */
export function parseAllowlistText(
  text: string,
  into?: Map<string, string | string[]>,
): Map<string, string | string[]> {
  if (text.length > MAX_ALLOWLIST_BYTES) throw new ExecgateError("limit_exceeded", "allowlist too large");
  const m = into ?? new Map<string, string | string[]>();
  // Paths are cut as flat strings: slices of a 20 MiB text are V8 SlicedStrings, and a Map
  // keyed by those made the allowlist check ~10% slower (measured). An ASCII text (the normal
  // case) is copied once into a Buffer and the paths decoded from there.
  const ascii = Buffer.byteLength(text, "utf8") === text.length;
  const flat = ascii ? Buffer.from(text, "latin1") : undefined;
  const cutPath = (a: number, z: number): string => (flat ? flat.toString("latin1", a, z) : text.slice(a, z));
  let lineNo = 0;
  let pos = 0;
  while (pos < text.length) {
    let nl = text.indexOf("\n", pos);
    if (nl === -1) nl = text.length;
    const start = pos;
    const end = text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
    pos = nl + 1;
    lineNo++;
    if (end === start || text.charCodeAt(start) === 35) continue;
    let sp = text.indexOf(" ", start);
    if (sp >= end) sp = -1;
    const hex = sp === -1 ? "" : text.slice(start, sp);
    let pathAt = sp === -1 ? end : sp + 1;
    if (pathAt < end && (text.charCodeAt(pathAt) === 32 || text.charCodeAt(pathAt) === 42)) pathAt++;
    if (!HEX_DIGEST.test(hex) || hex.length % 8 !== 0 || pathAt >= end) {
      throw new ExecgateError("config_invalid", `allowlist line ${lineNo}: expected 'HEX  /path'`, {
        line: lineNo,
      });
    }
    add(m, cutPath(pathAt, end), hex.toLowerCase());
  }
  return m;
}

/** Glob → regex source: `**` any characters, `*` and `?` within one path segment. */
export function globToRegexSource(glob: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === "*") {
      if (glob[i + 1] === "*") {
        out += ".*";
        i++;
      } else out += "[^/]*";
    } else if (ch === "?") out += "[^/]";
    else out += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return `${out}$`;
}

export interface AllowlistSources {
  /** Contents of sha256sum-style files. */
  readonly texts?: readonly string[];
  /** Contents of Keylime runtime-policy JSON files. */
  readonly keylimePolicies?: readonly string[];
  readonly excludeGlobs?: readonly string[];
}

/**
 * Builds an allowlist. Keylime runtime policy (keylime/ima/ima.py, runtime_policy schema):
 * `digests` {path: [hex…]}, `excludes` [Python regex, matched at the start of the path],
 * `keyrings` {name: [hex…]}; other keys (meta, release, ima, ima-buf, verification-keys) are
 * accepted and not used.
 */
export function buildAllowlist(src: AllowlistSources): Allowlist {
  const digests = new Map<string, string | string[]>();
  for (const t of src.texts ?? []) parseAllowlistText(t, digests);
  const keyrings = new Map<string, string[]>();
  const regexes: string[] = [];
  const sources: string[] = [];
  for (const j of src.keylimePolicies ?? []) {
    let doc: unknown;
    try {
      doc = JSON.parse(j);
    } catch (e) {
      throw new ExecgateError(
        "config_invalid",
        `Keylime runtime policy is not JSON: ${(e as Error).message}`,
      );
    }
    if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
      throw new ExecgateError("config_invalid", "Keylime runtime policy must be a JSON object");
    }
    const o = doc as Record<string, unknown>;
    const d = o.digests ?? {};
    if (typeof d !== "object" || d === null || Array.isArray(d)) {
      throw new ExecgateError("config_invalid", "Keylime runtime policy: digests must be an object");
    }
    for (const [path, list] of Object.entries(d as Record<string, unknown>)) {
      if (!Array.isArray(list))
        throw new ExecgateError("config_invalid", `Keylime digests for ${path} not a list`);
      for (const h of list) {
        // Keylime writes plain hex, or "alg:hex" (e.g. its boot_aggregate entries).
        const hex = typeof h === "string" ? h.slice(h.indexOf(":") + 1) : "";
        if (!HEX_DIGEST.test(hex))
          throw new ExecgateError("config_invalid", `Keylime digest for ${path} is not hex`);
        add(digests, path, hex.toLowerCase());
      }
    }
    const k = o.keyrings ?? {};
    if (typeof k === "object" && k !== null && !Array.isArray(k)) {
      for (const [name, list] of Object.entries(k as Record<string, unknown>)) {
        if (!Array.isArray(list) || !list.every((h) => typeof h === "string")) {
          throw new ExecgateError("config_invalid", `Keylime keyrings.${name} must be a list of hex strings`);
        }
        keyrings.set(name, [
          ...(keyrings.get(name) ?? []),
          ...(list as string[]).map((h) => h.toLowerCase()),
        ]);
      }
    }
    const ex = o.excludes ?? [];
    if (!Array.isArray(ex) || !ex.every((x) => typeof x === "string")) {
      throw new ExecgateError("config_invalid", "Keylime excludes must be a list of strings");
    }
    for (const r of ex as string[]) {
      try {
        new RegExp(r);
      } catch {
        throw new ExecgateError("config_invalid", `Keylime exclude '${r}' is not a valid regex`);
      }
      regexes.push(`(?:${r})`);
      sources.push(`regex:${r}`);
    }
  }
  for (const g of src.excludeGlobs ?? []) {
    regexes.push(`(?:${globToRegexSource(g)})`);
    sources.push(`glob:${g}`);
  }
  if (regexes.length > MAX_EXCLUDES) throw new ExecgateError("limit_exceeded", "too many excludes");
  const exclude = regexes.length > 0 ? new RegExp(`^(?:${regexes.join("|")})`) : undefined;
  return { digests, keyrings, exclude, excludeSources: sources };
}

export type ImaViolationKind =
  | "not_in_allowlist"
  | "digest_mismatch"
  | "keyring_digest_mismatch"
  | "invalidated";

export interface ImaViolation {
  readonly seq: number;
  readonly kind: ImaViolationKind;
  readonly path: string;
  readonly digest: string;
}

/**
 * Checks file entries against the allowlist: every measured file (not boot_aggregate, not an
 * ima-buf buffer) must be excluded or listed with its digest. ima-buf entries are checked
 * only for keyrings the policy names. Violation (invalidated) entries are reported with kind
 * "invalidated": their digest is void, so they cannot be matched and are left to the caller.
 */
export function checkAllowlist(entries: readonly ImaEntry[], list: Allowlist): ImaViolation[] {
  const out: ImaViolation[] = [];
  for (const e of entries) {
    if (e.name === "boot_aggregate" && e.seq === 0) continue;
    if (e.violation) {
      out.push({ seq: e.seq, kind: "invalidated", path: e.name, digest: "" });
      continue;
    }
    if (e.buf !== undefined) {
      const allowed = list.keyrings.get(e.name);
      if (allowed && !anyHexEquals(allowed, e.fileDigest)) {
        out.push({ seq: e.seq, kind: "keyring_digest_mismatch", path: e.name, digest: toHex(e.fileDigest) });
      }
      continue;
    }
    if (list.exclude?.test(e.name)) continue;
    const allowed = list.digests.get(e.name);
    if (allowed === undefined) {
      out.push({ seq: e.seq, kind: "not_in_allowlist", path: e.name, digest: toHex(e.fileDigest) });
    } else if (
      typeof allowed === "string" ? !hexEquals(allowed, e.fileDigest) : !anyHexEquals(allowed, e.fileDigest)
    ) {
      out.push({ seq: e.seq, kind: "digest_mismatch", path: e.name, digest: toHex(e.fileDigest) });
    }
  }
  return out;
}

/**
 * Lowercase hex (as the allowlist stores it) equals the bytes — compared in place, so a
 * matching entry (all of them, normally) costs no hex string.
 */
function hexEquals(hex: string, b: Uint8Array): boolean {
  if (hex.length !== 2 * b.length) return false;
  for (let i = 0; i < b.length; i++) {
    const x = b[i]!;
    if (hex.charCodeAt(2 * i) !== HEX_CHAR[x >> 4] || hex.charCodeAt(2 * i + 1) !== HEX_CHAR[x & 15])
      return false;
  }
  return true;
}

function anyHexEquals(hexes: readonly string[], b: Uint8Array): boolean {
  for (const h of hexes) if (hexEquals(h, b)) return true;
  return false;
}

const HEX_CHAR = Uint8Array.from("0123456789abcdef", (c) => c.charCodeAt(0));
