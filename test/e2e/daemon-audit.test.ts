import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseSegment } from "../../src/lineage/bundle-files.js";
import { leafHash } from "../../src/lineage/hash.js";
import { frameRecord, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../../src/lineage/record.js";
import { entryBundles, hashTiles } from "../../src/lineage/tiles.js";
import { ensureAk } from "../../src/tpm/ops/keys.js";
import { execgate } from "../helpers/cli.js";
import { startTestDaemon, type TestDaemon } from "../helpers/daemon.js";
import { describeTpm } from "../helpers/hardware.js";

/** Rewrites a bundle's only segment with `edit` applied to its entries (valid CRCs: only the audit can tell). */
async function rewriteEntries(dir: string, edit: (e: Uint8Array[]) => Uint8Array[]): Promise<void> {
  const segDir = join(dir, "segments");
  const [name] = await readdir(segDir);
  const bytes = new Uint8Array(await readFile(join(segDir, name!)));
  const entries = edit([...parseSegment({ name: name!, bytes }).entries]);
  const size = entries.reduce((n, e) => n + RECORD_HEADER_BYTES + e.length, SEGMENT_HEADER_BYTES);
  const out = new Uint8Array(size);
  out.set(bytes.subarray(0, SEGMENT_HEADER_BYTES));
  let at = SEGMENT_HEADER_BYTES;
  for (const e of entries) at = frameRecord(e, out, at);
  await writeFile(join(segDir, name!), out);
}

async function verify(
  dir: string,
  trust?: string,
): Promise<{
  code: number;
  report: { ok: boolean; failures: { check: string }[]; attestation: Record<string, number> };
}> {
  const r = await execgate(["audit", "verify", dir, "--json", ...(trust ? ["--trust", trust] : [])]);
  return { code: r.code, report: JSON.parse(r.stdout) };
}

describeTpm("export → offline audit of a real daemon's lineage, and tampered bundles", () => {
  let d: TestDaemon;
  let bundle: string;
  /** The EK trust anchors an auditor would hold: swtpm_localca's root and its intermediate. */
  let trust: string;
  beforeAll(async () => {
    d = await startTestDaemon();
    const c = await d.client();
    try {
      for (let i = 0; i < 3; i++) {
        const t = await c.requestToken({ scope: "dev", argv: ["/bin/echo", String(i)] });
        const r = await c.redeem(t.token);
        await c.report({ tokenId: r.tokenId, exitStatus: 0, durationMs: 1 });
      }
      await c.requestToken({ scope: "nope", argv: ["/bin/true"] }).catch(() => undefined);
    } finally {
      await c.close();
    }
    trust = join(d.dir, "ek-ca.pem");
    await writeFile(
      trust,
      `${await readFile(d.tpm.paths.rootCa, "utf8")}${await readFile(d.tpm.paths.issuerCa, "utf8")}`,
    );
    bundle = join(d.dir, "bundle");
    const ex = await execgate(["audit", "export", "--out", bundle, "--json"], d.env);
    expect(ex.stderr).toBe("");
    expect(ex.code).toBe(0);
  });
  afterAll(async () => {
    await d?.dispose();
  });

  const copyOf = async (name: string) => {
    const to = join(d.dir, name);
    await cp(bundle, to, { recursive: true });
    return to;
  };

  it("verifies: log, checkpoints, EK chain, AK-certified checkpoint key, every epoch and redeemed token", async () => {
    const { code, report } = await verify(bundle, trust);
    expect(report.failures).toEqual([]);
    expect(code).toBe(0);
    expect(report.attestation.tokensRedeemed).toBe(3);
    expect(report.attestation.verifiedEpochs).toBeGreaterThan(0);
    const files = await readdir(bundle);
    for (const f of [
      "segments",
      "checkpoints.log",
      "checkpoint",
      "log.vkey",
      "origin",
      "blobs",
      "tile",
      "enrollment",
    ])
      expect(files).toContain(f);
    // the tiles the daemon streamed are those of the bundle's entries
    const entries: Uint8Array[] = [];
    for (const name of (await readdir(join(bundle, "segments"))).sort())
      entries.push(
        ...parseSegment({ name, bytes: new Uint8Array(await readFile(join(bundle, "segments", name))) })
          .entries,
      );
    expect(entries.length).toBeGreaterThan(0);
    for (const t of [...hashTiles(entries.map((e) => leafHash(e))), ...entryBundles(entries)])
      expect(Buffer.from(await readFile(join(bundle, t.path))).equals(Buffer.from(t.bytes))).toBe(true);
    // the policy file is in the bundle under its SHA-256 (and the record naming it under the policy digest)
    const policy = await readFile(d.policy);
    const { createHash } = await import("node:crypto");
    expect(await readdir(join(bundle, "blobs"))).toContain(createHash("sha256").update(policy).digest("hex"));
  });

  it("single proofs: inclusion of an entry and consistency from an earlier size or a kept checkpoint", async () => {
    const inc = await execgate(["audit", "inclusion", bundle, "--index", "5", "--json"]);
    expect(inc.code).toBe(0);
    expect(JSON.parse(inc.stdout)).toMatchObject({ valid: true, index: 5 });
    const con = await execgate(["audit", "consistency", bundle, "--from", "3", "--json"]);
    expect(con.code).toBe(0);
    expect(JSON.parse(con.stdout).valid).toBe(true);
    const kept = await execgate([
      "audit",
      "consistency",
      bundle,
      "--old-checkpoint",
      join(bundle, "checkpoint"),
      "--json",
    ]);
    expect(kept.code).toBe(0);
    expect((await execgate(["audit", "inclusion", bundle, "--index", "999999"])).code).toBe(2);
  });

  it("without trust anchors the EK cannot be checked: exit 1, ek_chain", async () => {
    const { code, report } = await verify(bundle);
    expect(code).toBe(1);
    expect(report.failures.map((f) => f.check)).toContain("ek_chain");
  });

  it("an AK swapped for another of the same TPM is caught (certification and every quote)", async () => {
    const other = await ensureAk(d.tpm.runner, { handle: 0x81000011 });
    const dir = await copyOf("swapped-ak");
    await writeFile(join(dir, "enrollment", "ak.pub"), other.public);
    const { code, report } = await verify(dir, trust);
    expect(code).toBe(1);
    const checks = report.failures.map((f) => f.check);
    expect(checks).toContain("signing_key_certify");
    expect(checks).toContain("epoch_quote");
  });

  it("--ak-pub pins the enrolled AK: its ak.pub or its PEM passes, another AK fails ak_pin", async () => {
    const kept = join(d.dir, "enrolled-ak.pub");
    await cp(join(bundle, "enrollment", "ak.pub"), kept);
    const pem = join(bundle, "enrollment", "ak.pem");
    for (const pin of [kept, pem]) {
      const r = await execgate(["audit", "verify", bundle, "--json", "--trust", trust, "--ak-pub", pin]);
      expect(JSON.parse(r.stdout).failures, pin).toEqual([]);
      expect(r.code).toBe(0);
    }
    const other = await ensureAk(d.tpm.runner, { handle: 0x81000011 });
    const otherFile = join(d.dir, "other-ak.pub");
    await writeFile(otherFile, other.public);
    const r = await execgate(["audit", "verify", bundle, "--json", "--trust", trust, "--ak-pub", otherFile]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).failures.map((f: { check: string }) => f.check)).toEqual(["ak_pin"]);
  });

  it("a dropped entry, two reordered entries and a truncated log are each caught", async () => {
    const dropped = await copyOf("dropped");
    await rewriteEntries(dropped, (e) => [...e.slice(0, 3), ...e.slice(4)]);
    const dr = await verify(dropped, trust);
    expect(dr.code).toBe(1);
    // The signed checkpoints no longer match: a root mismatch, or (when the only checkpoint
    // covers the whole log) a checkpoint larger than the log.
    expect(
      dr.report.failures.some((f) => f.check === "checkpoint_root" || f.check === "checkpoint_size"),
    ).toBe(true);
    expect(dr.report.failures.map((f) => f.check)).toContain("backref");
    const reordered = await copyOf("reordered");
    await rewriteEntries(reordered, (e) => [e[0]!, e[2]!, e[1]!, ...e.slice(3)]);
    const r = await verify(reordered, trust);
    expect(r.code).toBe(1);
    expect(r.report.failures.map((f) => f.check)).toContain("checkpoint_root");
    const truncated = await copyOf("truncated");
    await rewriteEntries(truncated, (e) => e.slice(0, e.length - 2));
    const t = await verify(truncated, trust);
    expect(t.code).toBe(1);
    expect(t.report.failures.map((f) => f.check)).toContain("checkpoint_size");
  });
});
