import type { Logger } from "pino";
import { asExecgateError } from "../../src/core/errors.js";
import { makeEntry } from "../../src/lineage/entry.js";
import type { Lineage } from "../../src/lineage/lineage.js";
import type { PolicyHolder } from "../../src/policy/holder.js";
import { type LoadedPolicy, loadPolicy } from "../../src/policy/load.js";
import { entryTime } from "./clock.js";

export interface ReloadParts {
  readonly path: string;
  readonly holder: PolicyHolder;
  /** Refuses a policy the quotes cannot answer (Settings.checkQuoted). */
  readonly check: (p: LoadedPolicy) => LoadedPolicy;
  readonly storePolicy: (p: LoadedPolicy) => Promise<void>;
  readonly lineage: Lineage;
  /** Starts an epoch under the new policy. */
  readonly refresh: () => void;
  readonly log: Logger;
}

/**
 * SIGHUP: the policy file read again; in force once its blobs are stored and policy_loaded
 * recorded. A policy that fails any step is refused and the old one stays (the holder says so).
 */
export async function reloadPolicy(r: ReloadParts): Promise<void> {
  try {
    const next = r.check(await loadPolicy(r.path));
    await r.storePolicy(next);
    await r.lineage.add([
      makeEntry("policy_loaded", entryTime(), { policyDigest: next.digest, source: r.path }),
    ]);
    r.holder.replaced(next, Date.now());
    // Evidence judged under the old policy is not used from now on (decide); a new epoch
    // judges the state under this one at once.
    r.refresh();
    r.log.info({ digest: Buffer.from(next.digest).toString("hex") }, "policy_reloaded");
  } catch (e) {
    const err = asExecgateError(e).message;
    r.holder.refused(err, Date.now());
    r.log.error({ err }, "policy_reload_failed_keeping_old");
  }
}
