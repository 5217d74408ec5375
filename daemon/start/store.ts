import { join } from "node:path";
import { configDigest } from "../../src/config/index.js";
import { ExecgateError } from "../../src/core/errors.js";
import { hsmNoteSigner } from "../../src/hsm/note-signer.js";
import { BlobStore } from "../../src/lineage/blobs.js";
import { DISK_SAMPLE_MS, DiskSpaceWatch } from "../../src/lineage/disk-space.js";
import { makeEntry } from "../../src/lineage/entry.js";
import { type Lineage, openLineage } from "../../src/lineage/lineage.js";
import type { NoteSigner } from "../../src/lineage/signer.js";
import { type LoadedPolicy, policyBlobs } from "../../src/policy/load.js";
import { hostIdOf, lineageOrigin } from "../../src/token/ueid.js";
import { tpmNoteSigner } from "../../src/tpm/note-signer.js";
import type { StopStep } from "../stop.js";
import { entryTime } from "./clock.js";
import { refuse, refuseOpened } from "./refusal.js";
import type { Settings } from "./settings.js";
import type { TrustRoots } from "./trust-roots.js";

/** The lineage and what sits beside it, open and with this start recorded. */
export interface Store {
  readonly lineage: Lineage;
  readonly blobs: BlobStore;
  readonly disk: DiskSpaceWatch;
  /** The end of every stop once the lineage is open, a refused start included: it records why and closes. */
  closeSteps(reason: string): StopStep[];
  /** The policy's record and files, each by its digest, before a policy_loaded entry names them (for auditors). */
  storePolicy(p: LoadedPolicy): Promise<void>;
}

/**
 * Opens the lineage (checkpoints signed by the configured key), its blob store, records the
 * start (a recovery when a torn tail was cut, daemon_start, policy_loaded) and starts the disk
 * watch. A refusal before the lineage opens closes the HSM; after, it records daemon_stop.
 */
export async function openStore(s: Settings, roots: TrustRoots): Promise<Store> {
  const { config, log } = s;
  let lineage: Lineage;
  try {
    lineage = await openLineage({
      dir: config.lineage.dir,
      origin: lineageOrigin(roots.ueid),
      ...checkpointSigners(roots, config.tpm.signingKeyHandle),
      now: Date.now,
      checkpointMs: config.lineage.checkpointMs,
      segmentBytes: config.lineage.segmentBytes,
    });
  } catch (e) {
    await roots.hsmKey?.close();
    throw refuse(`lineage store ${config.lineage.dir}`, e);
  }
  const closeSteps = (reason: string): StopStep[] => [
    ["daemon_stop", () => lineage.add([makeEntry("daemon_stop", entryTime(), { reason })])],
    ["lineage", () => lineage.close()],
    ["hsm", () => roots.hsmKey?.close()],
  ];
  let blobs: BlobStore;
  try {
    blobs = await BlobStore.open(join(config.lineage.dir, "blobs"));
  } catch (e) {
    throw await refuseOpened(`lineage store ${config.lineage.dir}`, e, closeSteps, log);
  }
  const storePolicy = async (p: LoadedPolicy): Promise<void> => {
    for (const b of policyBlobs(p)) await blobs.put(b);
  };
  try {
    await recordStart(lineage, s, storePolicy);
  } catch (e) {
    throw await refuseOpened("lineage store is not writable", e, closeSteps, log);
  }
  // The lineage grows with every token and a full disk denies everything: its free space is
  // sampled for status and metrics, and logged when low (src/lineage/disk-space.ts).
  const disk = new DiskSpaceWatch(config.lineage.dir, DISK_SAMPLE_MS, log.child({ component: "lineage" }));
  await disk.start();
  return { lineage, blobs, disk, closeSteps, storePolicy };
}

/** The log key and co-signers: checkpoints = "both" is the TPM key co-signed by the HSM key. */
function checkpointSigners(
  roots: TrustRoots,
  signingKeyHandle: number,
): { signer: NoteSigner; cosigners?: NoteSigner[] } {
  const name = `execgate-${hostIdOf(roots.ueid)}`;
  const { hsmKey, tpm } = roots;
  if (roots.checkpointSigner === "hsm" && hsmKey) return { signer: hsmNoteSigner(hsmKey, name) };
  // The configuration refuses TPM-signed checkpoints without a TPM root.
  if (!tpm) throw new ExecgateError("config_invalid", "checkpoints signed by the TPM need a TPM root");
  const signer = tpmNoteSigner(roots.runner, signingKeyHandle, tpm.signingPublic, name);
  return roots.checkpointSigner === "both" && hsmKey
    ? { signer, cosigners: [hsmNoteSigner(hsmKey, `${name}-hsm`)] }
    : { signer };
}

/** The start's entries, in order; the policy's blobs are stored before the entry naming them. */
async function recordStart(
  lineage: Lineage,
  s: Settings,
  storePolicy: (p: LoadedPolicy) => Promise<void>,
): Promise<void> {
  const rec = lineage.recovery;
  if (rec.truncatedBytes > 0 || rec.removedSegments.length > 0) {
    await lineage.add([
      makeEntry("recovery", entryTime(), {
        reason: "torn tail after a crash",
        truncatedBytes: rec.truncatedBytes,
        recoveredSize: rec.size,
      }),
    ]);
  }
  await lineage.add([
    makeEntry("daemon_start", entryTime(), {
      reason: "start",
      configDigest: configDigest(s.config),
      policyDigest: s.policy.current.digest,
    }),
  ]);
  await storePolicy(s.policy.current);
  await lineage.add([
    makeEntry("policy_loaded", entryTime(), {
      policyDigest: s.policy.current.digest,
      source: s.config.daemon.policy,
    }),
  ]);
}
