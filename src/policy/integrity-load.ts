import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parse, TomlError } from "smol-toml";
import { ExecgateError } from "../core/errors.js";
import { MAX_BLOB_BYTES } from "../lineage/blobs.js";
import { buildAllowlist } from "../measure/ima-allowlist.js";
import type { IntegrityPolicy } from "./integrity.js";
import { type IntegrityPolicyConfig, integrityConfigFromToml } from "./integrity-schema.js";

/** Parses policy TOML text into the integrity config (pure; unknown keys → config_invalid). */
export function parseIntegrityPolicyToml(text: string): IntegrityPolicyConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (e) {
    const msg = e instanceof TomlError ? e.message.split("\n")[0] : String(e);
    throw new ExecgateError("config_invalid", `policy is not valid TOML: ${msg}`, {}, { cause: e });
  }
  return integrityConfigFromToml(doc);
}

/**
 * The daemon keeps each file a policy names in the blob store (record.ts), so one larger than a
 * blob is refused here, naming the file, rather than when the daemon stores it.
 */
async function readNamed(path: string, what: string): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `cannot read ${what} ${path}: ${(e as Error).message}`,
      {},
      { cause: e },
    );
  }
  if (bytes.length > MAX_BLOB_BYTES)
    throw new ExecgateError("config_invalid", `${what} ${path}: larger than ${MAX_BLOB_BYTES} bytes`, {
      file: path,
    });
  return bytes;
}

/**
 * Effects: reads the policy file and the allowlists it names (paths relative to the policy
 * file), and returns the loaded policy for evaluateIntegrity.
 */
export async function loadIntegrityPolicy(path: string): Promise<IntegrityPolicy> {
  const cfg = parseIntegrityPolicyToml((await readNamed(path, "policy")).toString("utf8"));
  return (await loadIntegrityFromConfig(cfg, dirname(path))).integrity;
}

/** The files the integrity rules name, as read: what judged, so the policy digest covers them (record.ts). */
export interface IntegrityFiles {
  readonly allowlist?: Uint8Array;
  readonly keylimePolicy?: Uint8Array;
}

export async function loadIntegrityFromConfig(
  cfg: IntegrityPolicyConfig,
  baseDir: string,
): Promise<{ integrity: IntegrityPolicy; files: IntegrityFiles }> {
  if (!cfg.ima) return { integrity: { pcrs: cfg.pcrs, eventlog: cfg.eventlog, ima: undefined }, files: {} };
  // Read once: the bytes parsed are the bytes digested, whatever happens to the files meanwhile.
  const allowlist = cfg.ima.allowlist
    ? await readNamed(resolve(baseDir, cfg.ima.allowlist), "allowlist")
    : undefined;
  const keylimePolicy = cfg.ima.keylimePolicy
    ? await readNamed(resolve(baseDir, cfg.ima.keylimePolicy), "Keylime runtime policy")
    : undefined;
  const texts = allowlist ? [allowlist.toString("utf8")] : [];
  const kl = keylimePolicy ? [keylimePolicy.toString("utf8")] : [];
  const ima: IntegrityPolicy["ima"] = {
    mode: cfg.ima.mode,
    bootAggregate: cfg.ima.bootAggregate,
    allowlist:
      allowlist || keylimePolicy
        ? buildAllowlist({ texts, keylimePolicies: kl, excludeGlobs: cfg.ima.excludes })
        : undefined,
  };
  return {
    integrity: { pcrs: cfg.pcrs, eventlog: cfg.eventlog, ima },
    files: { ...(allowlist ? { allowlist } : {}), ...(keylimePolicy ? { keylimePolicy } : {}) },
  };
}
