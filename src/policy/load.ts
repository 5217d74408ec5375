import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { digest } from "../core/digest.js";
import { ExecgateError, isExecgateError } from "../core/errors.js";
import { parseTomlDocument } from "../core/toml.js";
import { type AccessPolicy, accessPolicyFromToml } from "./access-schema.js";
import type { IntegrityPolicy } from "./integrity.js";
import { loadIntegrityFromConfig } from "./integrity-load.js";
import { type IntegrityPolicyConfig, integrityConfigFromToml } from "./integrity-schema.js";
import { encodePolicyRecord, type PolicyFiles } from "./record.js";

/**
 * The policy file: `[[executors]]` and `[scopes.*]` (access-schema.ts) and `[integrity]`
 * (integrity-schema.ts, another engineer's), one file; its digest also covers the files the
 * integrity part names (record.ts).
 */
export interface Policy {
  readonly access: AccessPolicy;
  /** The integrity rules as written; allowlist files are read by loadPolicy. */
  readonly integrity: IntegrityPolicyConfig;
  /** Where the integrity rules' relative paths (allowlists) resolve. */
  readonly baseDir: string;
}

export interface LoadedPolicy {
  readonly policy: Policy;
  /** The integrity rules with their allowlists read, for evaluateIntegrity. */
  readonly integrity: IntegrityPolicy;
  /** SHA-256 of `record` (the lineage's policy_loaded entry, each epoch's, and the token's pold). */
  readonly digest: Uint8Array;
  readonly path: string;
  /** The policy record: the digests of the policy file and of the files it names. */
  readonly record: Uint8Array;
  /** The bytes that judge: the policy file and the files it names. */
  readonly files: PolicyFiles;
}

export const MAX_POLICY_BYTES = 16 << 20;
const TOP_LEVEL = ["executors", "scopes", "integrity"];

/** Parses policy text (pure): both parts validated; unknown keys anywhere are config_invalid. */
export function parsePolicy(text: string, baseDir: string, source = "policy"): Policy {
  if (!isAbsolute(baseDir))
    throw new ExecgateError("internal", `policy base directory ${baseDir} is not absolute`);
  const doc = parseTomlDocument(text, source);
  for (const k of Object.keys(doc)) {
    if (!TOP_LEVEL.includes(k))
      throw new ExecgateError("config_invalid", `${source}: ${k}: unknown key`, { file: source, key: k });
  }
  const access = accessPolicyFromToml(doc, source);
  let integrity: IntegrityPolicyConfig;
  try {
    integrity = integrityConfigFromToml(doc);
  } catch (e) {
    // integrity-schema names its errors "policy: <key>: …"; name the file instead.
    if (!isExecgateError(e, "config_invalid")) throw e;
    throw new ExecgateError(
      "config_invalid",
      `${source}: ${e.message.replace(/^policy: /, "")}`,
      { ...e.detail, file: source },
      { cause: e },
    );
  }
  return { access, integrity, baseDir };
}

/**
 * What the daemon keeps in the blob store for a policy it loads, each under its SHA-256: the
 * record (under the policy digest) and every file the record names, so an auditor can read the
 * very allowlist an epoch was judged by.
 */
export function policyBlobs(p: LoadedPolicy): Uint8Array[] {
  const { policy, allowlist, keylimePolicy } = p.files;
  return [p.record, policy, ...(allowlist ? [allowlist] : []), ...(keylimePolicy ? [keylimePolicy] : [])];
}

/**
 * Effects: reads the policy file, parses it, reads the allowlists the integrity part names
 * (relative to the file). io_error when a file cannot be read; config_invalid naming the file
 * and key for anything wrong inside.
 */
export async function loadPolicy(path: string): Promise<LoadedPolicy> {
  const abs = resolve(path);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(abs));
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `cannot read policy ${abs}: ${(e as Error).message}`,
      { file: abs },
      { cause: e },
    );
  }
  if (bytes.length > MAX_POLICY_BYTES)
    throw new ExecgateError("config_invalid", `${abs}: larger than ${MAX_POLICY_BYTES} bytes`, { file: abs });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new ExecgateError("config_invalid", `${abs}: not UTF-8`, { file: abs }, { cause: e });
  }
  const policy = parsePolicy(text, dirname(abs), abs);
  const { integrity, files: named } = await loadIntegrityFromConfig(policy.integrity, policy.baseDir);
  const files = { policy: bytes, ...named };
  const record = encodePolicyRecord(files);
  return { policy, integrity, digest: digest("sha256", record), path: abs, record, files };
}
