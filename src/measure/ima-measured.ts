import { toHex } from "../core/hex.js";
import type { Allowlist, ImaViolation } from "./ima-allowlist.js";
import type { ImaEntry } from "./ima-parse.js";

/*
 * What IMA measured this boot, kept compactly so that a new allowlist can judge all of it
 * again (the attestation loop re-judges when the policy is reloaded) without the list being
 * read or parsed again: per name, each distinct (digest algorithm, digest) with the seq of its
 * first entry. The kernel measures a file again only when it changed, so a 100k-entry list
 * keeps about 100k of these, ~250 bytes each with a 50-character path (measured); the list's
 * bytes and entries are not kept.
 */

/** One distinct measurement of a name. */
export interface Measurement {
  /** The first entry that measured it. */
  readonly seq: number;
  readonly digestAlg: string;
  /** Lowercase hex, as the allowlist stores digests. */
  readonly hex: string;
  /** An ima-buf entry: the name is a keyring's (or another buffer's), the digest its buffer's. */
  readonly buf: boolean;
  /** An ima-ngv2 entry: the digest may be an fs-verity digest, not the file's. */
  readonly ngv2: boolean;
}

export class ImaMeasuredSet {
  private readonly byName = new Map<string, Measurement | Measurement[]>();
  private count = 0;

  /** Distinct measurements kept. */
  get size(): number {
    return this.count;
  }

  /**
   * Notes the entries a verified quote covers. Skipped as the allowlist skips them: the first
   * entry's boot_aggregate, and violation entries (their digest is void).
   */
  add(entries: readonly ImaEntry[]): void {
    for (const e of entries) {
      if (e.violation) continue;
      const name = e.name; // decoded on each read: read once
      if (e.seq === 0 && name === "boot_aggregate") continue;
      const m: Measurement = {
        seq: e.seq,
        digestAlg: e.digestAlg,
        hex: toHex(e.fileDigest),
        buf: e.buf !== undefined,
        ngv2: e.template === "ima-ngv2",
      };
      const cur = this.byName.get(name);
      if (cur === undefined) this.byName.set(name, m);
      else if (Array.isArray(cur)) {
        if (!cur.some((c) => same(c, m))) cur.push(m);
        else continue;
      } else if (!same(cur, m)) this.byName.set(name, [cur, m]);
      else continue;
      this.count++;
    }
  }

  /** The distinct measurements of `name`, first seen first. */
  of(name: string): readonly Measurement[] {
    const cur = this.byName.get(name);
    return cur === undefined ? [] : Array.isArray(cur) ? cur : [cur];
  }

  *[Symbol.iterator](): IterableIterator<[string, Measurement]> {
    for (const [name, cur] of this.byName) {
      if (Array.isArray(cur)) for (const m of cur) yield [name, m];
      else yield [name, cur];
    }
  }
}

function same(a: Measurement, b: Measurement): boolean {
  return a.hex === b.hex && a.digestAlg === b.digestAlg && a.buf === b.buf && a.ngv2 === b.ngv2;
}

/**
 * The SHA-256 digests (hex) of the file `name` as measured, or undefined when there is none or
 * one is not a plain SHA-256 file digest (another algorithm, an ima-ngv2 entry): what peer
 * identification checks a caller's executable against.
 */
export function sha256FileDigests(set: ImaMeasuredSet, name: string): ReadonlySet<string> | undefined {
  const out = new Set<string>();
  for (const m of set.of(name)) {
    if (m.buf) continue;
    if (m.digestAlg !== "sha256" || m.ngv2) return undefined;
    out.add(m.hex);
  }
  return out.size > 0 ? out : undefined;
}

/**
 * The allowlist's verdict on everything in `set`, in order of first measurement: the answer
 * checkAllowlist gives for the entries the set was built from (violation entries aside), one
 * violation per distinct measurement. Pure.
 */
export function checkMeasured(set: ImaMeasuredSet, list: Allowlist): ImaViolation[] {
  const out: ImaViolation[] = [];
  const exclude = list.exclude;
  for (const [name, m] of set) {
    if (m.buf) {
      const allowed = list.keyrings.get(name);
      if (allowed && !allowed.includes(m.hex))
        out.push({ seq: m.seq, kind: "keyring_digest_mismatch", path: name, digest: m.hex });
      continue;
    }
    if (exclude?.test(name)) continue;
    const allowed = list.digests.get(name);
    if (allowed === undefined) out.push({ seq: m.seq, kind: "not_in_allowlist", path: name, digest: m.hex });
    else if (typeof allowed === "string" ? allowed !== m.hex : !allowed.includes(m.hex))
      out.push({ seq: m.seq, kind: "digest_mismatch", path: name, digest: m.hex });
  }
  return out.sort((a, b) => a.seq - b.seq);
}
