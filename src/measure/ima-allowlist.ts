import { ExecgateError } from "../core/errors.js";
import { toHex } from "../core/hex.js";
import {
  AllowlistPathIndex,
  globLiteralPrefix,
  hashAscii,
  NOT_ASCII,
  startsWithAny,
} from "./ima-allowlist-index.js";
import { ImaRecord } from "./ima-entry.js";
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
  /**
   * Built by buildAllowlist: `digests` indexed by path bytes, and the exclusion globs' literal
   * starts (undefined when a Keylime regex is among the exclusions). checkAllowlist uses it for
   * a binary list's entries while `digests` and `exclude` are the ones it was built with.
   */
  readonly fast?: AllowlistFast;
}

export interface AllowlistFast {
  readonly index: AllowlistPathIndex;
  readonly exclude: RegExp | undefined;
  readonly excludePrefixes: readonly string[] | undefined;
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
  const onlyGlobs = regexes.length === 0;
  const prefixes: string[] = [];
  for (const g of src.excludeGlobs ?? []) {
    regexes.push(`(?:${globToRegexSource(g)})`);
    sources.push(`glob:${g}`);
    prefixes.push(globLiteralPrefix(g));
  }
  if (regexes.length > MAX_EXCLUDES) throw new ExecgateError("limit_exceeded", "too many excludes");
  const exclude = regexes.length > 0 ? new RegExp(`^(?:${regexes.join("|")})`) : undefined;
  const fast = {
    index: new AllowlistPathIndex(digests),
    exclude,
    excludePrefixes: onlyGlobs ? prefixes : undefined,
  };
  return { digests, keyrings, exclude, excludeSources: sources, fast };
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
  const exclude = list.exclude;
  const digests = list.digests;
  const fast = list.fast?.index.source === digests && list.fast.exclude === exclude ? list.fast : undefined;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    // A binary list's file entry, its name ASCII: looked up by its bytes in place (see
    // AllowlistPathIndex for why that is the same answer as the Map's).
    if (fast !== undefined && e instanceof ImaRecord && e.seq !== 0 && !e.violation && e.buf === undefined) {
      const u8 = e.src.u8;
      const h = hashAscii(u8, e.nameAt, e.nameEnd);
      if (h !== NOT_ASCII) {
        if (
          exclude !== undefined &&
          (fast.excludePrefixes === undefined ||
            startsWithAny(u8, e.nameAt, e.nameEnd, fast.excludePrefixes)) &&
          exclude.test(e.name)
        )
          continue;
        const slot = fast.index.find(u8, e.nameAt, e.nameEnd, h);
        if (slot === -1) {
          out.push({ seq: e.seq, kind: "not_in_allowlist", path: e.name, digest: toHex(e.fileDigest) });
        } else if (!fast.index.digestAllowed(slot, u8, e.digestAt, e.digestLen)) {
          out.push({ seq: e.seq, kind: "digest_mismatch", path: e.name, digest: toHex(e.fileDigest) });
        }
        continue;
      }
    }
    const name = e.name; // decoded on each read: read once
    if (e.seq === 0 && name === "boot_aggregate") continue;
    if (e.violation) {
      out.push({ seq: e.seq, kind: "invalidated", path: name, digest: "" });
      continue;
    }
    if (e.buf !== undefined) {
      const allowed = list.keyrings.get(name);
      if (allowed && !anyHexEquals(allowed, e)) {
        out.push({ seq: e.seq, kind: "keyring_digest_mismatch", path: name, digest: toHex(e.fileDigest) });
      }
      continue;
    }
    if (exclude?.test(name)) continue;
    const allowed = digests.get(name);
    if (allowed === undefined) {
      out.push({ seq: e.seq, kind: "not_in_allowlist", path: name, digest: toHex(e.fileDigest) });
    } else if (typeof allowed === "string" ? !e.fileDigestHexEquals(allowed) : !anyHexEquals(allowed, e)) {
      out.push({ seq: e.seq, kind: "digest_mismatch", path: name, digest: toHex(e.fileDigest) });
    }
  }
  return out;
}

/** The entry's file digest equals one of the lowercase hex digests (as the allowlist stores them). */
function anyHexEquals(hexes: readonly string[], e: ImaEntry): boolean {
  for (const h of hexes) if (e.fileDigestHexEquals(h)) return true;
  return false;
}
