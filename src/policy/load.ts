import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { digest } from "../core/digest.js";
import { ExecgateError, isExecgateError } from "../core/errors.js";
import { parseTomlDocument } from "../core/toml.js";
import { type AccessPolicy, accessPolicyFromToml } from "./access-schema.js";
import type { IntegrityPolicy } from "./integrity.js";
import { loadIntegrityFromConfig } from "./integrity-load.js";
import { type IntegrityPolicyConfig, integrityConfigFromToml } from "./integrity-schema.js";

/**
 * The policy file: `[[executors]]` and `[scopes.*]` (access-schema.ts) and `[integrity]`
 * (integrity-schema.ts, another engineer's), one file, one digest.
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
  /** SHA-256 of the policy file's bytes (the lineage's policy_loaded entry and the token's pold). */
  readonly digest: Uint8Array;
  readonly path: string;
  /** The file's bytes (the daemon keeps each policy it loads in the blob store, by digest). */
  readonly bytes: Uint8Array;
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

/** SHA-256 of the policy file's bytes. */
export function policyDigest(bytes: Uint8Array): Uint8Array {
  return digest("sha256", bytes);
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
  const integrity = await loadIntegrityFromConfig(policy.integrity, policy.baseDir);
  return { policy, integrity, digest: policyDigest(bytes), path: abs, bytes };
}
