import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parse, TomlError } from "smol-toml";
import { ExecgateError } from "../core/errors.js";
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

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new ExecgateError(
      "io_error",
      `cannot read ${what} ${path}: ${(e as Error).message}`,
      {},
      { cause: e },
    );
  }
}

/**
 * Effects: reads the policy file and the allowlists it names (paths relative to the policy
 * file), and returns the loaded policy for evaluateIntegrity.
 */
export async function loadIntegrityPolicy(path: string): Promise<IntegrityPolicy> {
  const cfg = parseIntegrityPolicyToml(await readText(path, "policy"));
  return loadIntegrityFromConfig(cfg, dirname(path));
}

export async function loadIntegrityFromConfig(
  cfg: IntegrityPolicyConfig,
  baseDir: string,
): Promise<IntegrityPolicy> {
  let ima: IntegrityPolicy["ima"];
  if (cfg.ima) {
    const texts = cfg.ima.allowlist ? [await readText(resolve(baseDir, cfg.ima.allowlist), "allowlist")] : [];
    const kl = cfg.ima.keylimePolicy
      ? [await readText(resolve(baseDir, cfg.ima.keylimePolicy), "Keylime runtime policy")]
      : [];
    const hasList = texts.length > 0 || kl.length > 0;
    ima = {
      mode: cfg.ima.mode,
      bootAggregate: cfg.ima.bootAggregate,
      allowlist: hasList
        ? buildAllowlist({ texts, keylimePolicies: kl, excludeGlobs: cfg.ima.excludes })
        : undefined,
    };
  }
  return { pcrs: cfg.pcrs, eventlog: cfg.eventlog, ima };
}
