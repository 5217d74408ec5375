import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AttestationLoop } from "../../src/attest/loop.js";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { BlobStore } from "../../src/lineage/blobs.js";
import { type Lineage, openLineage } from "../../src/lineage/lineage.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import { buildAllowlist } from "../../src/measure/ima-allowlist.js";
import type { IntegrityPolicy } from "../../src/policy/integrity.js";
import { enroll } from "../../src/tpm/enroll.js";
import { DEFAULT_PCR_SELECTION } from "../../src/tpm/ops/pcr.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { describeTpm, startSwtpm } from "../helpers/hardware.js";
import { fileHash, imaNg, measure } from "../helpers/ima.js";

// The attestation loop on swtpm: what one epoch's failure must not cost the next ones.

describeTpm("attestation loop on swtpm", () => {
  let tpm: Swtpm;
  let dir: string;
  const lineages: Lineage[] = [];
  beforeAll(async () => {
    // A short tpm2-tools timeout: a frozen swtpm fails an epoch quickly.
    tpm = await startSwtpm({ timeoutMs: 1500 });
    dir = await mkdtemp(join(tmpdir(), "execgate-loop-"));
  });
  afterAll(async () => {
    for (const l of lineages) await l.close().catch(() => undefined);
    tpm.resume();
    await tpm.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function loopWith(policy: IntegrityPolicy, imaPath: string): Promise<AttestationLoop> {
    const e = await enroll(tpm.runner);
    const lineage = await openLineage({
      dir: join(dir, "lineage"),
      origin: "execgate.test/loop",
      signer: softwareEd25519Signer("execgate.test/loop"),
      now: Date.now,
    });
    lineages.push(lineage);
    await writeFile(join(dir, "boot_id"), "6b1f0a52-1f0e-4a7e-9c55-0d2b8f1e9a01\n");
    return new AttestationLoop({
      runner: tpm.runner,
      akHandle: e.akHandle,
      akPublic: tpmPublicKey(parseTpm2bPublic(e.akPublic)),
      selection: DEFAULT_PCR_SELECTION,
      policy: () => ({ integrity: policy, digest: new Uint8Array(32) }),
      issuerKey: new Uint8Array(32),
      lineage,
      blobs: await BlobStore.open(join(dir, "blobs")),
      bootIdPath: join(dir, "boot_id"),
      imaPath,
      epochMs: 60_000,
      idleEpochMs: 60_000,
      now: Date.now,
      monoUs: () => Math.floor(performance.now() * 1000),
      log: pino({ level: "silent" }),
    });
  }

  it("IMA entries read by an epoch that failed are judged by the next one, not lost", async () => {
    const list = Buffer.concat([
      imaNg("/usr/bin/python3", fileHash("python")),
      imaNg("/usr/bin/trainer", fileHash("trainer")),
    ]);
    await measure(tpm, list);
    const imaPath = join(dir, "ima.bin");
    await writeFile(imaPath, list);
    const loop = await loopWith(
      {
        pcrs: {},
        eventlog: undefined,
        ima: {
          mode: "enforce",
          allowlist: buildAllowlist({
            texts: [
              `${fileHash("python").toString("hex")}  /usr/bin/python3\n${fileHash("trainer").toString("hex")}  /usr/bin/trainer\n`,
            ],
          }),
          bootAggregate: false,
        },
      },
      imaPath,
    );
    // Epoch 0: the TPM does not answer; the list is read all the same.
    tpm.freeze();
    try {
      expect((await loop.runEpoch()).integrity).toMatchObject({ ok: false, reason: "hardware_unavailable" });
    } finally {
      tpm.resume();
    }
    expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
    // And the list goes on from there.
    const more = imaNg("/usr/bin/python3", fileHash("python"));
    await measure(tpm, more);
    await writeFile(imaPath, Buffer.concat([list, more]));
    expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
    await loop.stop();
  });
});
