import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { auditEvidenceBlobs, auditPolicyBlobs } from "../../src/audit/files.js";
import { digest } from "../../src/core/digest.js";
import { toHex } from "../../src/core/hex.js";
import { BlobStore } from "../../src/lineage/blobs.js";
import { type Entry, makeEntry } from "../../src/lineage/entry.js";
import { encodePolicyRecord, type PolicyFiles } from "../../src/policy/record.js";
import { scratchDirs } from "../helpers/scratch.js";

const scratch = scratchDirs("execgate-audit-policies-");
const text = (s: string) => new TextEncoder().encode(s);
const time = { wallMs: 1, monoUs: 1 };
const loaded = (policyDigest: Uint8Array): Entry =>
  makeEntry("policy_loaded", time, { policyDigest, source: "/etc/execgate/policy.toml" });

/** A bundle directory whose blobs/ holds `blobs`. */
async function bundleWith(blobs: readonly Uint8Array[]): Promise<{ dir: string; store: BlobStore }> {
  const dir = await scratch();
  const store = await BlobStore.open(join(dir, "blobs"));
  for (const b of blobs) await store.put(b);
  return { dir, store };
}

const files: PolicyFiles = {
  policy: text('[integrity.ima]\nallowlist = "allow.txt"\n'),
  allowlist: text(`${"ab".repeat(32)}  /usr/bin/python3\n`),
};
const record = encodePolicyRecord(files);
const policyDigest = digest("sha256", record);

describe("audit: every loaded policy's record and files are in blobs/ (policy_blob)", () => {
  it("passes with the record, the policy file and the allowlist", async () => {
    const { dir } = await bundleWith([record, files.policy, files.allowlist!]);
    expect(await auditPolicyBlobs(dir, [loaded(policyDigest), loaded(policyDigest)])).toEqual([]);
  });

  it("a missing allowlist, a missing record and a blob that is not what its name says each fail", async () => {
    const noAllowlist = await bundleWith([record, files.policy]);
    expect(await auditPolicyBlobs(noAllowlist.dir, [loaded(policyDigest)])).toEqual([
      { check: "policy_blob", index: 0, reason: expect.stringContaining("the policy's allowlist") },
    ]);
    const noRecord = await bundleWith([files.policy, files.allowlist!]);
    expect(await auditPolicyBlobs(noRecord.dir, [loaded(policyDigest)])).toEqual([
      { check: "policy_blob", index: 0, reason: expect.stringContaining("the policy it loaded") },
    ]);
    const swapped = await bundleWith([record, files.policy, files.allowlist!]);
    await writeFile(swapped.store.pathOf(digest("sha256", files.allowlist!)), text("another allowlist\n"));
    const f = await auditPolicyBlobs(swapped.dir, [loaded(policyDigest)]);
    expect(f.map((x) => x.check)).toEqual(["policy_blob"]);
    expect(f[0]!.reason).toMatch(/does not match its digest/);
  });

  it("a policy blob that is no record is a policy file from a log written before records", async () => {
    const legacy = text("[scopes.dev]\nttl_s = 60\n");
    const { dir, store } = await bundleWith([legacy]);
    expect(await auditPolicyBlobs(dir, [loaded(digest("sha256", legacy))])).toEqual([]);
    await rm(store.pathOf(digest("sha256", legacy)));
    expect((await auditPolicyBlobs(dir, [loaded(digest("sha256", legacy))])).map((x) => x.check)).toEqual([
      "policy_blob",
    ]);
  });
});

describe("audit: every epoch's evidence is in blobs/ (evidence_blob)", () => {
  const list = text("10 ab sha256:00 boot_aggregate\n");
  const eventlog = text("an event log");
  const epoch = (evidence: Uint8Array[]): Entry =>
    makeEntry("epoch", time, {
      quote: new Uint8Array(0),
      issuerKey: new Uint8Array(32),
      verified: true,
      evidence,
    });
  const both = [digest("sha256", eventlog), digest("sha256", list)];

  it("passes when each is there, however many epochs name it", async () => {
    const { dir } = await bundleWith([eventlog, list]);
    expect(await auditEvidenceBlobs(dir, [epoch(both), epoch(both), loaded(policyDigest)])).toEqual([]);
  });

  it("a missing blob fails for each epoch naming it; an altered one fails too", async () => {
    const missing = await bundleWith([eventlog]);
    expect(await auditEvidenceBlobs(missing.dir, [epoch(both), epoch([both[1]!])])).toEqual([
      { check: "evidence_blob", index: 0, reason: expect.stringContaining(toHex(both[1]!)) },
      { check: "evidence_blob", index: 1, reason: expect.stringContaining(toHex(both[1]!)) },
    ]);
    const altered = await bundleWith([eventlog, list]);
    await writeFile(altered.store.pathOf(both[0]!), text("another event log"));
    const f = await auditEvidenceBlobs(altered.dir, [epoch(both)]);
    expect(f.map((x) => x.check)).toEqual(["evidence_blob"]);
    expect(f[0]!.reason).toMatch(/does not match its digest/);
  });
});
