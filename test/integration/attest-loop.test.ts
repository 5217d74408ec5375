import { appendFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { epochHash } from "../../src/attest/binding.js";
import { evaluateEpoch } from "../../src/attest/epoch.js";
import { AttestationLoop } from "../../src/attest/loop.js";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { HsmKey } from "../../src/hsm/hsm.js";
import { BlobStore } from "../../src/lineage/blobs.js";
import { type Lineage, openLineage } from "../../src/lineage/lineage.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import { buildAllowlist } from "../../src/measure/ima-allowlist.js";
import type { IntegrityPolicy } from "../../src/policy/integrity.js";
import { enroll } from "../../src/tpm/enroll.js";
import { quote } from "../../src/tpm/ops/attest.js";
import { DEFAULT_PCR_SELECTION } from "../../src/tpm/ops/pcr.js";
import { type PcrSelection, parsePcrSelectionText } from "../../src/tpm/structures/pcr-selection.js";
import { parsePcrsFile, serializePcrsFile } from "../../src/tpm/structures/pcrs-file.js";
import { parseTpm2bPublic, tpmPublicKey } from "../../src/tpm/structures/public.js";
import { describeHsm, describeTpm, startSoftHsm, startSwtpm } from "../helpers/hardware.js";
import { fileHash, imaNg, measure } from "../helpers/ima.js";

// The attestation loop on swtpm: what one epoch's failure must not cost the next ones.

/**
 * What every loop here shares: a long epoch period (the tests run epochs by hand), silent logs.
 * A policy given as a function is read at every epoch, as the daemon's is (a reload swaps it).
 */
function commonOptions(o: {
  policy: IntegrityPolicy | (() => IntegrityPolicy);
  lineage: Lineage;
  blobs: BlobStore;
  bootIdPath: string;
  imaPath: string;
}) {
  const policy = o.policy;
  return {
    policy: () => ({
      integrity: typeof policy === "function" ? policy() : policy,
      digest: new Uint8Array(32),
    }),
    issuerKey: new Uint8Array(32),
    lineage: o.lineage,
    blobs: o.blobs,
    bootIdPath: o.bootIdPath,
    imaPath: o.imaPath,
    epochMs: 60_000,
    idleEpochMs: 60_000,
    now: Date.now,
    monoUs: () => Math.floor(performance.now() * 1000),
    log: pino({ level: "silent" }),
  };
}

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

  async function loopWith(
    policy: IntegrityPolicy | (() => IntegrityPolicy),
    imaPath: string,
    opts: { tpm?: Swtpm; blobs?: BlobStore; selection?: PcrSelection } = {},
  ): Promise<AttestationLoop> {
    const on = opts.tpm ?? tpm;
    const e = await enroll(on.runner);
    const lineage = await openLineage({
      dir: join(dir, `lineage-${lineages.length}`),
      origin: "execgate.test/loop",
      signer: softwareEd25519Signer("execgate.test/loop"),
      now: Date.now,
    });
    lineages.push(lineage);
    await writeFile(join(dir, "boot_id"), "6b1f0a52-1f0e-4a7e-9c55-0d2b8f1e9a01\n");
    return new AttestationLoop({
      runner: on.runner,
      akHandle: e.akHandle,
      akPublic: tpmPublicKey(parseTpm2bPublic(e.akPublic)),
      selection: opts.selection ?? DEFAULT_PCR_SELECTION,
      ...commonOptions({
        policy,
        lineage,
        blobs: opts.blobs ?? (await BlobStore.open(join(dir, "blobs"))),
        bootIdPath: join(dir, "boot_id"),
        imaPath,
      }),
    });
  }

  /** Two file measurements, extended into `on`'s PCR 10 and written as the list `name`. */
  async function measuredList(on: Swtpm, name: string): Promise<{ list: Buffer; imaPath: string }> {
    const list = Buffer.concat([
      imaNg("/usr/bin/python3", fileHash("python")),
      imaNg("/usr/bin/trainer", fileHash("trainer")),
    ]);
    await measure(on, list);
    const imaPath = join(dir, name);
    await writeFile(imaPath, list);
    return { list, imaPath };
  }

  it("IMA entries read by an epoch that failed are judged by the next one, not lost", async () => {
    const { list, imaPath } = await measuredList(tpm, "ima.bin");
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

  it("IMA entries read while their evidence blob could not be stored are read again, not lost", async () => {
    // Its own TPM: PCR 10 must hold exactly this list.
    const own = await startSwtpm({ timeoutMs: 1500 });
    try {
      const { imaPath } = await measuredList(own, "ima-blob-fails.bin");
      // A blob store whose first put fails, as on a full disk.
      class FailingOnce extends BlobStore {
        failed = false;
        override async put(bytes: Uint8Array): Promise<Uint8Array> {
          if (!this.failed) {
            this.failed = true;
            throw new Error("ENOSPC: no space left on device");
          }
          return super.put(bytes);
        }
      }
      const blobs = new FailingOnce((await BlobStore.open(join(dir, "blobs-fail"))).dir);
      const loop = await loopWith(
        {
          pcrs: {},
          eventlog: undefined,
          ima: { mode: "observe", allowlist: undefined, bootAggregate: false },
        },
        imaPath,
        { tpm: own, blobs },
      );
      expect((await loop.runEpoch()).integrity).toMatchObject({ ok: false, reason: "ima_violation" });
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      await loop.stop();
    } finally {
      await own.stop();
    }
  });

  /** An enforcing IMA policy whose allowlist holds these files, each with fileHash(its name). */
  function imaRules(files: Record<string, string>): IntegrityPolicy {
    const text = Object.entries(files)
      .map(([path, content]) => `${fileHash(content).toString("hex")}  ${path}\n`)
      .join("");
    return {
      pcrs: {},
      eventlog: undefined,
      ima: { mode: "enforce", allowlist: buildAllowlist({ texts: [text] }), bootAggregate: false },
    };
  }
  const noImaRules: IntegrityPolicy = { pcrs: {}, eventlog: undefined, ima: undefined };

  /** Measures `record` into `on`'s PCR 10 and appends it to the list at `imaPath`, as the kernel does. */
  async function measureMore(on: Swtpm, imaPath: string, record: Buffer): Promise<void> {
    await measure(on, record);
    await appendFile(imaPath, record);
  }

  it("IMA entries measured while a reloaded policy had no IMA rules are judged once the rules come back", async () => {
    // Its own TPM: PCR 10 must hold exactly this list.
    const own = await startSwtpm({ timeoutMs: 1500 });
    try {
      const { imaPath } = await measuredList(own, "ima-reload.bin");
      const withIma = imaRules({
        "/usr/bin/python3": "python",
        "/usr/bin/trainer": "trainer",
        "/usr/bin/evaluator": "evaluator",
      });
      let policy = withIma;
      const loop = await loopWith(() => policy, imaPath, { tpm: own });
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      // Reloaded without IMA rules; IMA goes on measuring.
      policy = noImaRules;
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      await measureMore(own, imaPath, imaNg("/usr/bin/evaluator", fileHash("evaluator")));
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      // Without rules no epoch notes measurements, so callers are not checked against them.
      expect(loop.imaMeasurements("/usr/bin/python3")).toBeUndefined();
      // The rules are back: the replay covers what was measured meanwhile and reaches PCR 10.
      policy = withIma;
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      expect(loop.imaMeasurements("/usr/bin/evaluator")).toEqual(
        new Set([fileHash("evaluator").toString("hex")]),
      );
      // What was noted before the rules went away still counts: those files are not measured again.
      expect(loop.imaMeasurements("/usr/bin/python3")).toEqual(new Set([fileHash("python").toString("hex")]));
      await measureMore(own, imaPath, imaNg("/usr/bin/trainer", fileHash("trainer")));
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      await loop.stop();
    } finally {
      await own.stop();
    }
  });

  it("a file outside the allowlist, measured while a reloaded policy had no IMA rules, fails the epochs once the rules come back", async () => {
    const own = await startSwtpm({ timeoutMs: 1500 });
    try {
      const { imaPath } = await measuredList(own, "ima-reload-violation.bin");
      const withIma = imaRules({ "/usr/bin/python3": "python", "/usr/bin/trainer": "trainer" });
      let policy = withIma;
      const loop = await loopWith(() => policy, imaPath, { tpm: own });
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      policy = noImaRules;
      await measureMore(own, imaPath, imaNg("/tmp/miner", fileHash("miner")));
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      policy = withIma;
      // Caught by the allowlist (not by a replay short of PCR 10), and the boot stays tainted.
      expect((await loop.runEpoch()).integrity).toEqual({
        ok: false,
        reason: "ima_violation",
        detail: "ima.allowlist: 1 files not allowed: /tmp/miner (not_in_allowlist)",
      });
      expect((await loop.runEpoch()).integrity).toEqual({
        ok: false,
        reason: "ima_violation",
        detail: "ima.allowlist: 1 files not allowed: /tmp/miner (not_in_allowlist)",
      });
      await loop.stop();
    } finally {
      await own.stop();
    }
  });

  // The current policy judges everything measured this boot: a reload with another allowlist
  // judges again the files measured (and judged) before it.

  it("a reload with a stricter allowlist fails the next epoch on a file measured before it", async () => {
    const own = await startSwtpm({ timeoutMs: 1500 });
    try {
      const { imaPath } = await measuredList(own, "ima-stricter.bin");
      let policy = imaRules({ "/usr/bin/python3": "python", "/usr/bin/trainer": "trainer" });
      const loop = await loopWith(() => policy, imaPath, { tpm: own });
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      // The trainer that ran is found vulnerable: only a fixed build is allowed now. Nothing
      // new is measured; the trainer's measurement was judged two epochs ago.
      policy = imaRules({ "/usr/bin/python3": "python", "/usr/bin/trainer": "trainer, fixed" });
      const denied = {
        ok: false,
        reason: "ima_violation",
        detail: "ima.allowlist: 1 files not allowed: /usr/bin/trainer (digest_mismatch)",
      };
      expect((await loop.runEpoch()).integrity).toEqual(denied);
      expect((await loop.runEpoch()).integrity).toEqual(denied);
      // What callers' executables are checked against is unchanged: what IMA measured.
      expect(loop.imaMeasurements("/usr/bin/trainer")).toEqual(
        new Set([fileHash("trainer").toString("hex")]),
      );
      await loop.stop();
    } finally {
      await own.stop();
    }
  });

  it("a reload with an allowlist that allows what was denied clears the violation: the next epoch passes", async () => {
    const own = await startSwtpm({ timeoutMs: 1500 });
    try {
      const { imaPath } = await measuredList(own, "ima-looser.bin");
      let policy = imaRules({ "/usr/bin/python3": "python" });
      const loop = await loopWith(() => policy, imaPath, { tpm: own });
      const denied = {
        ok: false,
        reason: "ima_violation",
        detail: "ima.allowlist: 1 files not allowed: /usr/bin/trainer (not_in_allowlist)",
      };
      expect((await loop.runEpoch()).integrity).toEqual(denied);
      expect((await loop.runEpoch()).integrity).toEqual(denied);
      // The operator adds the trainer's hash that was missing.
      policy = imaRules({ "/usr/bin/python3": "python", "/usr/bin/trainer": "trainer" });
      expect((await loop.runEpoch()).integrity).toEqual({ ok: true });
      // And files measured from then on are judged by it as usual.
      await measureMore(own, imaPath, imaNg("/tmp/miner", fileHash("miner")));
      expect((await loop.runEpoch()).integrity).toEqual({
        ok: false,
        reason: "ima_violation",
        detail: "ima.allowlist: 1 files not allowed: /tmp/miner (not_in_allowlist)",
      });
      await loop.stop();
    } finally {
      await own.stop();
    }
  });

  it("a boot_aggregate that does not match PCRs 0–9 fails every later epoch, across reloads of the allowlist", async () => {
    const own = await startSwtpm({ timeoutMs: 1500 });
    try {
      // All zeros: what IMA lists when it found no TPM at boot; never PCRs 0–9's hash.
      const list = Buffer.concat([
        imaNg("boot_aggregate", Buffer.alloc(32)),
        imaNg("/usr/bin/python3", fileHash("python")),
      ]);
      await measure(own, list);
      const imaPath = join(dir, "ima-boot-aggregate.bin");
      await writeFile(imaPath, list);
      const withBootAggregate = (files: Record<string, string>): IntegrityPolicy => {
        const rules = imaRules(files);
        return { ...rules, ima: { ...rules.ima!, bootAggregate: true } };
      };
      // The allowlist allows every file measured: boot_aggregate is the only thing wrong.
      let policy = withBootAggregate({ "/usr/bin/python3": "python" });
      const loop = await loopWith(() => policy, imaPath, {
        tpm: own,
        selection: parsePcrSelectionText("sha256:0,1,2,3,4,5,6,7,8,9,10"),
      });
      const first = (await loop.runEpoch()).integrity;
      expect(first).toMatchObject({ ok: false, reason: "ima_violation" });
      expect(!first.ok && first.detail).toMatch(/^ima\.boot_aggregate: listed 0{64}, expected [0-9a-f]{64}$/);
      const later = {
        ok: false,
        reason: "ima_violation",
        detail: `${!first.ok && first.detail} (earlier epoch)`,
      };
      expect((await loop.runEpoch()).integrity).toEqual(later);
      // Reloads with another allowlist (looser, then the same again) re-judge the files; not this.
      policy = withBootAggregate({ "/usr/bin/python3": "python", "/usr/bin/trainer": "trainer" });
      expect((await loop.runEpoch()).integrity).toEqual(later);
      policy = withBootAggregate({ "/usr/bin/python3": "python" });
      expect((await loop.runEpoch()).integrity).toEqual(later);
      await loop.stop();
    } finally {
      await own.stop();
    }
  });

  it("PCR values in the pcrs file that the quote did not sign never reach the integrity policy", async () => {
    const e = await enroll(tpm.runner);
    const binding = {
      seq: 0,
      prev: new Uint8Array(32),
      issuer: new Uint8Array(32),
      checkpoint: { size: 0, root: new Uint8Array(32) },
      bootId: "b",
      nonce: new Uint8Array(32).fill(1),
    };
    const q = await quote(tpm.runner, {
      akHandle: e.akHandle,
      selection: DEFAULT_PCR_SELECTION,
      qualifyingData: epochHash(binding),
    });
    // The same file with a value for PCR 16 added: the signed digest still verifies (it covers
    // the signed selection only), but PCR 16 was never quoted.
    const file = parsePcrsFile(q.pcrsFile);
    const values = new Map(file.values);
    const sha256 = new Map(values.get(0x000b));
    sha256.set(16, new Uint8Array(32).fill(0xab));
    values.set(0x000b, sha256);
    const wider = serializePcrsFile(parsePcrSelectionText("sha256:0,1,2,3,4,5,6,7,10,16"), values);
    const input = {
      binding,
      akPublic: tpmPublicKey(parseTpm2bPublic(e.akPublic)),
      selection: DEFAULT_PCR_SELECTION,
      policy: { pcrs: { sha256: { 16: ["ab".repeat(32)] } }, eventlog: undefined, ima: undefined },
      policyDigest: new Uint8Array(32),
      startedAtMs: 0,
      startedMonoUs: 0,
      verifiedAtMs: 0,
    };
    expect(evaluateEpoch({ ...input, quote: q }).state.integrity).toMatchObject({
      ok: false,
      reason: "pcr_mismatch",
    });
    expect(evaluateEpoch({ ...input, quote: { ...q, pcrsFile: wider } }).state.integrity).toMatchObject({
      ok: false,
      reason: "quote_invalid",
    });
  });
});

describeHsm("attestation loop, HSM-only", () => {
  it("does not read the IMA list, whose entries no quote could ever judge: the IMA rules fail closed", async () => {
    const hsm = await startSoftHsm();
    process.env.SOFTHSM2_CONF = hsm.conf;
    await hsm.generateKey("epoch", "ec");
    const key = await HsmKey.open({
      module: hsm.module,
      tokenLabel: hsm.label,
      keyLabel: "epoch",
      pin: hsm.pin,
    });
    const dir = await mkdtemp(join(tmpdir(), "execgate-loop-hsm-"));
    const lineage = await openLineage({
      dir: join(dir, "lineage"),
      origin: "execgate.test/loop-hsm",
      signer: softwareEd25519Signer("execgate.test/loop-hsm"),
      now: Date.now,
    });
    try {
      await writeFile(join(dir, "boot_id"), "6b1f0a52-1f0e-4a7e-9c55-0d2b8f1e9a01\n");
      const imaPath = join(dir, "ima.bin");
      await writeFile(imaPath, imaNg("/usr/bin/python3", fileHash("python")));
      const blobsDir = join(dir, "blobs");
      const loop = new AttestationLoop({
        hsm: key,
        ...commonOptions({
          policy: {
            pcrs: {},
            eventlog: undefined,
            ima: { mode: "enforce", allowlist: buildAllowlist({ texts: [] }), bootAggregate: false },
          },
          lineage,
          blobs: await BlobStore.open(blobsDir),
          bootIdPath: join(dir, "boot_id"),
          imaPath,
        }),
      });
      for (let i = 0; i < 3; i++)
        expect((await loop.runEpoch()).integrity).toMatchObject({ ok: false, reason: "ima_violation" });
      await loop.stop();
      // Read lists are stored as evidence blobs: none was.
      expect(await readdir(blobsDir).then((names) => names.filter((n) => !n.startsWith(".")))).toEqual([]);
    } finally {
      await lineage.close();
      await key.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * A loop with no root of trust in a fresh directory: each epoch fails (internal_error) but runs
 * to its end, listeners and waiters included. Logs at info into `logged`.
 */
async function rootlessLoop(
  name: string,
  policy: IntegrityPolicy | (() => IntegrityPolicy) = { pcrs: {}, eventlog: undefined, ima: undefined },
  monoUs?: () => number,
) {
  const dir = await mkdtemp(join(tmpdir(), `execgate-loop-${name}-`));
  const lineage = await openLineage({
    dir: join(dir, "lineage"),
    origin: `execgate.test/loop-${name}`,
    signer: softwareEd25519Signer(`execgate.test/loop-${name}`),
    now: Date.now,
  });
  await writeFile(join(dir, "boot_id"), "6b1f0a52-1f0e-4a7e-9c55-0d2b8f1e9a01\n");
  const logged: { msg: string; err?: string; seq?: number; failures?: number; inRow?: number }[] = [];
  const loop = new AttestationLoop({
    ...commonOptions({
      policy,
      lineage,
      blobs: await BlobStore.open(join(dir, "blobs")),
      bootIdPath: join(dir, "boot_id"),
      imaPath: join(dir, "ima.bin"),
    }),
    log: pino({ level: "info" }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
    ...(monoUs ? { monoUs } : {}),
  });
  const dispose = async () => {
    await lineage.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { loop, logged, dispose };
}

describe("attestation loop, listeners", () => {
  it("a listener that throws is logged; the later listeners and the fresh-epoch waiters still hear of the epoch", async () => {
    const { loop, logged, dispose } = await rootlessLoop("listeners");
    try {
      const heard: number[] = [];
      loop.onEpoch(() => {
        throw new Error("metrics broke");
      });
      loop.onEpoch((s) => void heard.push(s.epochSeq));
      // A fresh-quote request waiting for the next epoch (the timeout is far beyond the test's).
      const waiting = loop.waitForEpochAfter(Math.floor(performance.now() * 1000), 600_000);
      const state = await loop.runEpoch();
      expect(heard).toEqual([state.epochSeq]);
      await expect(waiting).resolves.toBe(state);
      expect(logged).toContainEqual(
        expect.objectContaining({ msg: "epoch_listener_failed", err: "metrics broke", seq: state.epochSeq }),
      );
      expect(logged.filter((l) => l.msg === "epoch_crashed")).toEqual([]);
      await loop.stop();
    } finally {
      await dispose();
    }
  });
});

describe("attestation loop, failing epochs in the log", () => {
  it("epoch_failed is logged at the first failure, then once a minute (monotonic clock) with the count", async () => {
    let nowUs = 0;
    const { loop, logged, dispose } = await rootlessLoop("flood", undefined, () => nowUs);
    try {
      for (let i = 0; i < 3; i++) await loop.runEpoch();
      nowUs = 60_000_000;
      await loop.runEpoch();
      expect(loop.stats.failed).toBe(4);
      expect(logged.filter((l) => l.msg === "epoch_failed")).toEqual([
        expect.objectContaining({ seq: 0, reason: "internal_error", failures: 1, inRow: 1 }),
        expect.objectContaining({ seq: 3, reason: "internal_error", failures: 3, inRow: 4 }),
      ]);
      await loop.stop();
    } finally {
      await dispose();
    }
  });
});

describe("attestation loop, stopping", () => {
  it("stop() while an epoch runs resolves even though that epoch throws; the scheduler logs the failure", async () => {
    let stopped: Promise<void> | undefined;
    // The policy read in the middle of the epoch throws, and the daemon's SIGTERM arrives just
    // then: stop() waits for that epoch. The daemon calls stop() with `void`: a rejection would end it.
    const { loop, logged, dispose } = await rootlessLoop("stop", () => {
      stopped ??= loop.stop();
      throw new Error("policy unreadable");
    });
    try {
      loop.start();
      await vi.waitFor(() => expect(stopped).toBeDefined());
      await expect(stopped).resolves.toBeUndefined();
      await vi.waitFor(() =>
        expect(logged).toContainEqual(
          expect.objectContaining({ msg: "epoch_crashed", err: "policy unreadable" }),
        ),
      );
      // Whoever runs an epoch by hand still gets its failure.
      await expect(loop.runEpoch()).rejects.toThrow("policy unreadable");
      expect(loop.stats.epochs).toBe(0);
    } finally {
      await dispose();
    }
  });
});
