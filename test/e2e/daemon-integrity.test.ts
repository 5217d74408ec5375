import { createHash } from "node:crypto";
import { readFileSync, realpathSync } from "node:fs";
import { appendFile, copyFile, cp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { toHex } from "../../src/core/hex.js";
import type { Swtpm } from "../../src/dev/swtpm.js";
import { parseEventLog } from "../../src/measure/eventlog-parse.js";
import { decodePolicyRecord } from "../../src/policy/record.js";
import { pcrExtend } from "../../src/tpm/ops/pcr.js";
import { execgate } from "../helpers/cli.js";
import { corpusPath } from "../helpers/corpus.js";
import {
  eventually,
  lineageEntries,
  tokenOutcome as outcome,
  recordedDenials,
  startTestDaemon,
  type TestDaemon,
} from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";
import { fileHash, imaNg, measure } from "../helpers/ima.js";

// A real crypto-agile event log (go-tpm-tools, Apache-2.0; test/corpus/eventlog/MANIFEST.md).
const EVENTLOG = corpusPath("eventlog/go-tpm-tools/ubuntu-2104-no-dbx.bin");
const EV_NO_ACTION = 0x3;
const BANKS: Record<number, "sha1" | "sha256"> = { 4: "sha1", 11: "sha256" };

/** Extends every measured event's sha1 and sha256 digests into the swtpm, as firmware would. */
async function replayIntoTpm(tpm: Swtpm, log: Uint8Array): Promise<void> {
  for (const e of parseEventLog(log).events) {
    if (e.eventType === EV_NO_ACTION) continue;
    for (const d of e.digests) {
      const bank = BANKS[d.algId];
      if (bank) await pcrExtend(tpm.runner, e.pcrIndex, bank, d.digest);
    }
  }
}

const daemons: TestDaemon[] = [];

describeTpm("runtime integrity end to end on swtpm: event log and IMA against the daemon's quotes", () => {
  afterAll(async () => {
    for (const d of daemons) await d.dispose().catch(() => undefined);
  });

  describe("a policy reload", () => {
    // Epochs only when asked: without the reload's own epoch none would come for a minute.
    const slow = { attest: ["epoch_ms = 60000", "idle_epoch_ms = 60000", "max_evidence_age_ms = 120000"] };
    const epochOf = async (d: TestDaemon) =>
      JSON.parse((await execgate(["status", "--json"], d.env)).stdout).epoch;
    /** The policy with PCR 0's golden value (every bank) one the TPM does not have. */
    const stricter = async (d: TestDaemon) => {
      const policy = await readFile(d.policy, "utf8");
      const next = policy.replace(
        /^"0" = \["([0-9a-f]+)"\]$/gm,
        (_, h: string) => `"0" = ["${"f".repeat(h.length)}"]`,
      );
      expect(next).not.toBe(policy);
      await writeFile(d.policy, next);
    };

    it("starts an epoch that judges the PCRs under the new policy at once", async () => {
      const d = await startTestDaemon({ config: slow });
      daemons.push(d);
      await eventually("the start's epochs", async () => (await epochOf(d))?.seq >= 1);
      expect(await epochOf(d)).toMatchObject({ verified: true });
      await stricter(d);
      d.child()!.kill("SIGHUP");
      await eventually("an epoch under the reloaded policy", async () => {
        const e = await epochOf(d);
        return e?.verified === false && e?.reason === "pcr_mismatch";
      });
      await d.stop();
    });

    it("no token is issued on evidence judged under the old policy", async () => {
      const d = await startTestDaemon({ config: slow });
      daemons.push(d);
      await eventually("the start's epochs", async () => (await epochOf(d))?.seq >= 1);
      const c = await d.client();
      try {
        expect(await outcome(c)).toBe("allow");
        // The request's own epoch (activity after idling) is done before the reload.
        await eventually("the request's epoch", async () => (await epochOf(d))?.seq >= 2);
        await stricter(d);
        d.child()!.kill("SIGHUP");
        await eventually("policy_reloaded", async () => d.stderr().includes('"policy_reloaded"'));
        expect(await outcome(c)).toBe("pcr_mismatch");
      } finally {
        await c.close();
      }
      await d.stop();
      expect(await recordedDenials(d.lineageDir)).toContain("pcr_mismatch");
    });

    it("that changes only the allowlist: a new epoch judges by it, and the bundle carries both allowlists", async () => {
      const allow = (...names: string[]) =>
        names.map((n) => `${fileHash(n).toString("hex")}  /usr/bin/${n}\n`).join("");
      const d = await startTestDaemon({
        golden: false,
        prepare: async (tpm, dir) => {
          const records = Buffer.concat([
            imaNg("boot_aggregate", Buffer.alloc(32)),
            imaNg("/usr/bin/python3", fileHash("python3")),
          ]);
          await writeFile(join(dir, "ima.bin"), records);
          await measure(tpm, records);
          await writeFile(join(dir, "allow.txt"), allow("python3", "tool"));
        },
        policyExtra:
          '[integrity.ima]\nallowlist = "$DIR/allow.txt"\nmode = "enforce"\nboot_aggregate = false\n',
        config: { attest: [...slow.attest, 'ima = "$DIR/ima.bin"'] },
      });
      daemons.push(d);
      const policyFile = await readFile(d.policy);
      await eventually("the start's epochs", async () => (await epochOf(d))?.seq >= 1);
      const c = await d.client();
      try {
        expect(await outcome(c)).toBe("allow");
        await eventually("the request's epoch", async () => (await epochOf(d))?.seq >= 2);
        // /usr/bin/tool runs (listed, measured) before any epoch judges it, and the list then
        // drops it; the policy file stays as it was.
        const tool = imaNg("/usr/bin/tool", fileHash("tool"));
        await measure(d.tpm, tool);
        await appendFile(join(d.dir, "ima.bin"), tool);
        await writeFile(join(d.dir, "allow.txt"), allow("python3"));
        // The reload's epoch cannot finish while the TPM is frozen: a request meanwhile must not
        // be decided on the epoch the old allowlist judged (it would be allowed).
        d.tpm.freeze();
        try {
          d.child()!.kill("SIGHUP");
          await eventually("policy_reloaded", async () => d.stderr().includes('"policy_reloaded"'));
          const pending = outcome(c);
          await new Promise((r) => setTimeout(r, 500));
          d.tpm.resume();
          expect(await pending).toBe("ima_violation");
        } finally {
          d.tpm.resume();
        }
      } finally {
        await c.close();
      }
      expect(await readFile(d.policy)).toEqual(policyFile);

      // The exported bundle holds both allowlists under the records that name them, and verifies.
      const bundle = join(d.dir, "bundle");
      expect((await execgate(["audit", "export", "--out", bundle], d.env)).code).toBe(0);
      const trust = join(d.dir, "ek-ca.pem");
      await writeFile(
        trust,
        `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
      );
      const verify = async (dir: string) => {
        const r = await execgate(["audit", "verify", dir, "--json", "--trust", trust]);
        return { code: r.code, failures: JSON.parse(r.stdout).failures as { check: string }[] };
      };
      expect(await verify(bundle)).toEqual({ code: 0, failures: [] });
      const sha256 = (b: string | Uint8Array) => createHash("sha256").update(b).digest("hex");
      const blobs = await readdir(join(bundle, "blobs"));
      for (const f of [policyFile, allow("python3", "tool"), allow("python3")])
        expect(blobs).toContain(sha256(f));
      await d.stop();

      const entries = await lineageEntries(d.lineageDir);
      const loaded = entries.flatMap((e) => (e.type === "policy_loaded" ? [e.body.policyDigest] : []));
      expect(loaded).toHaveLength(2);
      expect(loaded[1]).not.toEqual(loaded[0]);
      for (const digest of loaded) {
        expect(blobs).toContain(Buffer.from(digest).toString("hex"));
        const record = decodePolicyRecord(
          new Uint8Array(await readFile(join(bundle, "blobs", toHex(digest)))),
        );
        expect(toHex(record.policy)).toBe(sha256(policyFile));
      }
      // The denial was decided on an epoch judged under the reloaded policy.
      const denial = entries.find((e) => e.type === "decision" && e.body.reason === "ima_violation")!;
      const epochs = denial.refs.map((r) => entries[r.index]!).filter((e) => e.type === "epoch");
      expect(epochs.map((e) => e.type === "epoch" && e.body.policyDigest)).toEqual([loaded[1]]);

      // A bundle without the new allowlist cannot show what judged: policy_blob.
      const partial = join(d.dir, "bundle-partial");
      await cp(bundle, partial, { recursive: true });
      await rm(join(partial, "blobs", sha256(allow("python3"))));
      const r = await verify(partial);
      expect(r.code).toBe(1);
      expect(r.failures.map((f) => f.check)).toEqual(["policy_blob"]);

      // The IMA list segments the epochs read are in the bundle; one missing or altered is
      // evidence_blob (the first epoch's, which the bundle holds).
      const evidence = entries.flatMap((e) => (e.type === "epoch" ? (e.body.evidence ?? []) : []));
      expect(evidence.length).toBeGreaterThan(0);
      const first = toHex(evidence[0]!);
      expect(blobs).toContain(first);
      for (const [name, damage] of [
        ["bundle-evidence-missing", (f: string) => rm(f)],
        ["bundle-evidence-altered", (f: string) => writeFile(f, "another list\n")],
      ] as const) {
        const copy = join(d.dir, name);
        await cp(bundle, copy, { recursive: true });
        await damage(join(copy, "blobs", first));
        const v = await verify(copy);
        expect(v.code).toBe(1);
        expect(new Set(v.failures.map((f) => f.check))).toEqual(new Set(["evidence_blob"]));
      }
    });
  });

  it("a real event log replayed into the TPM verifies against the quotes; one changed event → eventlog_mismatch", async () => {
    const original = new Uint8Array(await readFile(EVENTLOG));
    const d = await startTestDaemon({
      golden: false,
      prepare: async (tpm, dir) => {
        await replayIntoTpm(tpm, original);
        await copyFile(EVENTLOG, join(dir, "binary_bios_measurements"));
      },
      policyExtra: "[integrity.eventlog]\npcrs = [0, 1, 2, 3, 4, 5, 6, 7]\n",
      config: { attest: ['eventlog = "$DIR/binary_bios_measurements"'] },
    });
    daemons.push(d);
    const c = await d.client();
    try {
      expect(await outcome(c)).toBe("allow");
      // Change one measured event's sha256 digest in the log the daemon reads.
      const ev = parseEventLog(original).events.find(
        (e) => e.pcrIndex === 4 && e.eventType !== EV_NO_ACTION,
      )!;
      const digest = Buffer.from(ev.digests.find((x) => x.algId === 0x000b)!.digest);
      const tampered = Buffer.from(original);
      const at = tampered.indexOf(digest);
      expect(at).toBeGreaterThan(0);
      tampered[at]! ^= 0x01;
      await writeFile(join(d.dir, "binary_bios_measurements"), tampered);
      await eventually("eventlog_mismatch", async () => (await outcome(c)) === "eventlog_mismatch");
    } finally {
      await c.close();
    }
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("eventlog_mismatch");
  });

  it("an IMA list measured into PCR 10 in step passes the allowlist; an unlisted executable → ima_violation", async () => {
    const listed = [
      imaNg("boot_aggregate", Buffer.alloc(32)),
      imaNg("/usr/bin/python3", fileHash("python")),
      imaNg("/usr/bin/trainer", fileHash("trainer")),
    ];
    const d = await startTestDaemon({
      golden: false,
      prepare: async (tpm, dir) => {
        const records = Buffer.concat(listed);
        await writeFile(join(dir, "ima.bin"), records);
        await measure(tpm, records);
        await writeFile(
          join(dir, "allow.txt"),
          `${fileHash("python").toString("hex")}  /usr/bin/python3\n${fileHash("trainer").toString("hex")}  /usr/bin/trainer\n`,
        );
      },
      policyExtra:
        '[integrity.ima]\nallowlist = "$DIR/allow.txt"\nmode = "enforce"\nboot_aggregate = false\n',
      config: { attest: ['ima = "$DIR/ima.bin"'] },
    });
    daemons.push(d);
    const c = await d.client();
    try {
      expect(await outcome(c)).toBe("allow");
      // More allowed measurements keep it allowed (incremental replay).
      const more = imaNg("/usr/bin/python3", fileHash("python"));
      await measure(d.tpm, more);
      await appendFile(join(d.dir, "ima.bin"), more);
      await eventually("a later epoch", async () => (await outcome(c)) === "allow");
      // An executable not on the list.
      const evil = imaNg("/tmp/evil", fileHash("evil"));
      await measure(d.tpm, evil);
      await appendFile(join(d.dir, "ima.bin"), evil);
      await eventually("ima_violation", async () => (await outcome(c)) === "ima_violation");
    } finally {
      await c.close();
    }
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("ima_violation");
  });

  it("a caller's executable must be one IMA measured at its path, once a quote covers that measurement", async () => {
    // This test's own process is the caller: node, at the path /proc/<pid>/exe names. IMA first
    // lists another build at that path.
    const exe = realpathSync(process.execPath);
    const exeSha256 = createHash("sha256").update(readFileSync(exe)).digest();
    const d = await startTestDaemon({
      golden: false,
      prepare: async (tpm, dir) => {
        const records = Buffer.concat([
          imaNg("boot_aggregate", Buffer.alloc(32)),
          imaNg(exe, fileHash("another build")),
        ]);
        await writeFile(join(dir, "ima.bin"), records);
        await measure(tpm, records);
      },
      // Observe mode: the allowlist does not decide here, the caller check does.
      policyExtra: '[integrity.ima]\nmode = "observe"\nboot_aggregate = false\n',
      config: { attest: ['ima = "$DIR/ima.bin"'] },
    });
    daemons.push(d);
    const outcomeOfNewConnection = async () => {
      const c = await d.client();
      try {
        return await outcome(c);
      } finally {
        await c.close().catch(() => undefined);
      }
    };
    expect(await outcomeOfNewConnection()).toBe("peer_unknown");
    // The kernel measures this build too (as when it is installed in place): accepted as soon as
    // an epoch covers it (a refusal starts one).
    const installed = imaNg(exe, exeSha256);
    await measure(d.tpm, installed);
    await appendFile(join(d.dir, "ima.bin"), installed);
    await eventually("accepted", async () => (await outcomeOfNewConnection()) === "allow");
    await d.stop();
    expect(await recordedDenials(d.lineageDir)).toContain("peer_unknown");
  });
});
