import { createHash } from "node:crypto";
import { truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { encode } from "../../src/cbor/index.js";
import { MAX_BLOB_BYTES } from "../../src/lineage/blobs.js";
import { loadPolicy, policyBlobs } from "../../src/policy/load.js";
import {
  decodePolicyRecord,
  encodePolicyRecord,
  isPolicyRecord,
  POLICY_DOMAIN,
} from "../../src/policy/record.js";
import { scratchDirs } from "../helpers/scratch.js";

const scratch = scratchDirs("execgate-policy-record-");
const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash("sha256").update(b).digest());
const line = (name: string) => `${createHash("sha256").update(name).digest("hex")}  ${name}\n`;
const KEYLIME = (name: string) =>
  JSON.stringify({
    meta: { version: 1 },
    digests: { [name]: [createHash("sha256").update(name).digest("hex")] },
  });

/** A policy file naming an allowlist (and a Keylime policy) next to it; the policy file never changes. */
async function policyDir(opts: { keylime?: boolean } = {}) {
  const dir = await scratch();
  const policy = join(dir, "policy.toml");
  await writeFile(
    policy,
    `[integrity.ima]\nallowlist = "allow.txt"\n${opts.keylime ? 'keylime_policy = "runtime.json"\n' : ""}`,
  );
  return { dir, policy };
}

describe("policy digest: the policy file and the files its integrity part names", () => {
  it("changes when only the allowlist's content changes", async () => {
    const { dir, policy } = await policyDir();
    await writeFile(join(dir, "allow.txt"), line("/usr/bin/python3"));
    const before = await loadPolicy(policy);
    await writeFile(join(dir, "allow.txt"), line("/usr/bin/python3") + line("/usr/bin/trainer"));
    const after = await loadPolicy(policy);
    expect(after.digest).not.toEqual(before.digest);
    expect(after.files.policy).toEqual(before.files.policy);
    // The same bytes again: the same digest (it is a function of the contents only).
    await writeFile(join(dir, "allow.txt"), line("/usr/bin/python3"));
    expect((await loadPolicy(policy)).digest).toEqual(before.digest);
  });

  it("changes when only the Keylime runtime policy's content changes", async () => {
    const { dir, policy } = await policyDir({ keylime: true });
    await writeFile(join(dir, "allow.txt"), line("/usr/bin/python3"));
    await writeFile(join(dir, "runtime.json"), KEYLIME("/usr/bin/a"));
    const before = await loadPolicy(policy);
    await writeFile(join(dir, "runtime.json"), KEYLIME("/usr/bin/b"));
    expect((await loadPolicy(policy)).digest).not.toEqual(before.digest);
  });

  it("is SHA-256 of the record, which names each file by its SHA-256; the blobs are the record and the files", async () => {
    const { dir, policy } = await policyDir({ keylime: true });
    await writeFile(join(dir, "allow.txt"), line("/usr/bin/python3"));
    await writeFile(join(dir, "runtime.json"), KEYLIME("/usr/bin/a"));
    const loaded = await loadPolicy(policy);
    expect(loaded.digest).toEqual(sha256(loaded.record));
    const rec = decodePolicyRecord(loaded.record);
    expect(rec).toEqual({
      policy: sha256(loaded.files.policy),
      allowlist: sha256(line("/usr/bin/python3")),
      keylimePolicy: sha256(KEYLIME("/usr/bin/a")),
    });
    expect(policyBlobs(loaded).map((b) => Buffer.from(sha256(b)).toString("hex"))).toEqual(
      [loaded.digest, rec.policy, rec.allowlist!, rec.keylimePolicy!].map((d) =>
        Buffer.from(d).toString("hex"),
      ),
    );
    // The allowlist judged is the one digested.
    expect(loaded.integrity.ima?.allowlist).toBeDefined();
  });

  it("a named file larger than a blob is config_invalid, naming it", async () => {
    const { dir, policy } = await policyDir();
    const big = join(dir, "allow.txt");
    await writeFile(big, "");
    await truncate(big, MAX_BLOB_BYTES + 1);
    await expect(loadPolicy(policy)).rejects.toMatchObject({
      code: "config_invalid",
      message: expect.stringContaining(big),
    });
  });
});

describe("policy record encoding", () => {
  const d = (c: number) => new Uint8Array(32).fill(c);
  it("is deterministic CBOR with the domain; absent files have no key", () => {
    const bytes = encodePolicyRecord({ policy: new Uint8Array([1]) });
    expect(bytes).toEqual(encode({ domain: POLICY_DOMAIN, policy: sha256(new Uint8Array([1])) }));
    expect(isPolicyRecord(bytes)).toBe(true);
    expect(decodePolicyRecord(bytes)).toEqual({ policy: sha256(new Uint8Array([1])) });
  });

  it("the auditor's decoder is strict; a policy file is not a record", () => {
    const bad: [string, Record<string, unknown>][] = [
      ["wrong domain", { domain: "execgate/epoch/v1", policy: d(1) }],
      ["unknown field", { domain: POLICY_DOMAIN, policy: d(1), extra: d(2) }],
      ["short digest", { domain: POLICY_DOMAIN, policy: d(1), allowlist: new Uint8Array(31) }],
      ["no policy", { domain: POLICY_DOMAIN, allowlist: d(1) }],
    ];
    for (const [why, m] of bad)
      expect(() => decodePolicyRecord(encode(m as never)), why).toThrow(
        expect.objectContaining({ code: "malformed" }),
      );
    expect(isPolicyRecord(new TextEncoder().encode("[scopes.dev]\nttl_s = 60\n"))).toBe(false);
  });
});
