import { type CborValue, decode, encode } from "../cbor/index.js";
import { digest } from "../core/digest.js";
import { ExecgateError } from "../core/errors.js";

/*
 * The policy's identity covers every file that judges, not only the TOML: the IMA allowlist
 * and the Keylime runtime policy the integrity part names decide epochs as much as the golden
 * PCRs do. So the policy digest (policy_loaded, daemon_start, epochs, the token's pold) is
 *   SHA-256( deterministic-CBOR( PolicyRecord ) )
 *   PolicyRecord = {
 *     "domain": "execgate/policy/v1",   ; domain separation from every other hash we make
 *     "policy": bstr .size 32,          ; SHA-256 of the policy file's bytes
 *     ? "allowlist": bstr .size 32,     ; SHA-256 of the file integrity.ima.allowlist names
 *     ? "keylimePolicy": bstr .size 32, ; SHA-256 of the file integrity.ima.keylime_policy names
 *   }
 * The daemon keeps the record and each file it names in the blob store, each by its SHA-256,
 * so an auditor goes from a digest in the log to the very bytes that judged (docs/policy.md).
 */
export const POLICY_DOMAIN = "execgate/policy/v1";
export const POLICY_RECORD_KEYS = ["domain", "policy", "allowlist", "keylimePolicy"] as const;

/** The bytes of the files one loaded policy consists of. */
export interface PolicyFiles {
  readonly policy: Uint8Array;
  readonly allowlist?: Uint8Array;
  readonly keylimePolicy?: Uint8Array;
}

/** The SHA-256 of each file the record names. */
export interface PolicyRecord {
  readonly policy: Uint8Array;
  readonly allowlist?: Uint8Array;
  readonly keylimePolicy?: Uint8Array;
}

const sha256 = (b: Uint8Array): Uint8Array => digest("sha256", b);

/** The record of these files' digests, deterministic CBOR. */
export function encodePolicyRecord(files: PolicyFiles): Uint8Array {
  return encode({
    domain: POLICY_DOMAIN,
    policy: sha256(files.policy),
    // Absent keys are skipped by the encoder: a policy without an allowlist has no "allowlist".
    allowlist: files.allowlist && sha256(files.allowlist),
    keylimePolicy: files.keylimePolicy && sha256(files.keylimePolicy),
  });
}

/** True when `bytes` claim to be a policy record (a map with its domain); the auditor tells records from older policy blobs by this. */
export function isPolicyRecord(bytes: Uint8Array): boolean {
  try {
    const v = decode(bytes, { maxDepth: 2, maxItems: 16, maxLength: 1024 });
    return v instanceof Map && v.get("domain") === POLICY_DOMAIN;
  } catch {
    return false;
  }
}

/** Reads back what encodePolicyRecord wrote, strictly (the auditor's view); throws ExecgateError("malformed"). */
export function decodePolicyRecord(bytes: Uint8Array): PolicyRecord {
  const v = decode(bytes, { maxDepth: 2, maxItems: 16, maxLength: 1024 });
  const bad = (why: string) => new ExecgateError("malformed", `policy record: ${why}`);
  if (!(v instanceof Map)) throw bad("not a map");
  const m = v as ReadonlyMap<unknown, CborValue>;
  for (const k of m.keys())
    if (!(POLICY_RECORD_KEYS as readonly unknown[]).includes(k)) throw bad(`unknown field ${String(k)}`);
  if (m.get("domain") !== POLICY_DOMAIN) throw bad("wrong domain");
  const b32 = (k: string): Uint8Array | undefined => {
    const x = m.get(k);
    if (x === undefined) return undefined;
    if (!(x instanceof Uint8Array) || x.length !== 32) throw bad(`${k} must be 32 bytes`);
    return x;
  };
  const policy = b32("policy");
  if (!policy) throw bad("policy missing");
  const allowlist = b32("allowlist");
  const keylimePolicy = b32("keylimePolicy");
  return { policy, ...(allowlist ? { allowlist } : {}), ...(keylimePolicy ? { keylimePolicy } : {}) };
}
