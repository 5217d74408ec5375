import { type Logger, pino } from "pino";
import { readBootId } from "../../src/attest/boot-id.js";
import { type Config, loadConfig } from "../../src/config/index.js";
import { algById, type BankName } from "../../src/measure/hash.js";
import { loadNative } from "../../src/native/index.js";
import { PolicyHolder } from "../../src/policy/holder.js";
import { checkQuotedPcrs } from "../../src/policy/integrity-schema.js";
import { type LoadedPolicy, loadPolicy } from "../../src/policy/load.js";
import { watchdogUsecFromEnv } from "../../src/server/activation.js";
import { type PcrSelection, pcrIndices } from "../../src/tpm/structures/pcr-selection.js";
import { refuse } from "./refusal.js";

/** What the daemon reads before it opens any hardware: each one a refusal to start when it fails. */
export interface Settings {
  readonly config: Config;
  readonly log: Logger;
  /** WATCHDOG_USEC, when systemd watches this process. */
  readonly watchdogUsec: number | undefined;
  readonly policy: PolicyHolder;
  /** Refuses a policy with rules about PCRs the quotes never sign (at start and reload). */
  readonly checkQuoted: (p: LoadedPolicy) => LoadedPolicy;
  /** Tokens are bound to this boot: a boot id that cannot be read now could never be matched. */
  readonly bootId: string;
}

/** Configuration, logger, native addon, watchdog, policy and boot id, in that order. */
export async function readSettings(configPath: string, logger?: Logger): Promise<Settings> {
  let config: Config;
  try {
    config = await loadConfig(configPath);
  } catch (e) {
    throw refuse(`configuration ${configPath}`, e);
  }
  const log =
    logger ?? pino({ level: config.daemon.logLevel, base: { service: "execgate" } }, pino.destination(2));
  try {
    loadNative();
  } catch (e) {
    throw refuse("native addon", e);
  }
  let watchdogUsec: number | undefined;
  try {
    watchdogUsec = watchdogUsecFromEnv(process.env, process.pid);
  } catch (e) {
    throw refuse("systemd watchdog (WATCHDOG_USEC)", e);
  }
  const checkQuoted = quotedPcrsCheck(config);
  let policy: PolicyHolder;
  try {
    policy = new PolicyHolder(checkQuoted(await loadPolicy(config.daemon.policy)), Date.now());
  } catch (e) {
    throw refuse(`policy ${config.daemon.policy}`, e);
  }
  let bootId: string;
  try {
    bootId = await readBootId(config.daemon.bootIdPath);
  } catch (e) {
    throw refuse("daemon.boot_id_path", e);
  }
  return { config, log, watchdogUsec, policy, checkQuoted, bootId };
}

/** With a TPM root, rules about PCRs the quotes never sign are refused; without one, nothing is quoted. */
function quotedPcrsCheck(config: Config): (p: LoadedPolicy) => LoadedPolicy {
  const quotedPcrs = config.hsm.require !== "hsm" ? selectedPcrs(config.tpm.pcrs) : undefined;
  return (p) => {
    if (quotedPcrs) checkQuotedPcrs(p.policy.integrity, quotedPcrs);
    return p;
  };
}

/** tpm.pcrs as bank name → PCR indices. */
function selectedPcrs(selection: PcrSelection): Partial<Record<BankName, number[]>> {
  const out: Partial<Record<BankName, number[]>> = {};
  for (const b of selection) {
    const alg = algById(b.hashAlg);
    if (alg) out[alg.name] = pcrIndices(b);
  }
  return out;
}
