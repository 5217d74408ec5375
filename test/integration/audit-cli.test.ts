import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeEntry } from "../../src/lineage/entry.js";
import { exportBundle } from "../../src/lineage/export.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { verifierFromSigner } from "../../src/lineage/note.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import { execgate } from "../helpers/cli.js";

const ORIGIN = "execgate.test/audit-cli";
let dir: string;
let bundle: string;
let vkeyFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "execgate-audit-cli-"));
  const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(8));
  const lin = await openLineage({ dir: join(dir, "lineage"), origin: ORIGIN, signer, now: () => 0 });
  for (let i = 0; i < 12; i++) {
    await lin.add([makeEntry("daemon_stop", { wallMs: i, monoUs: i }, { reason: `entry ${i}` })]);
  }
  bundle = join(dir, "bundle");
  await exportBundle({ lineage: lin, out: bundle });
  await lin.close();
  vkeyFile = join(dir, "trusted.vkey");
  await writeFile(vkeyFile, `${verifierFromSigner(signer).vkey}\n`);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("execgate audit verify", () => {
  it("exit 0 and a JSON report for a good bundle, with the pinned key", async () => {
    const r = await execgate(["audit", "verify", bundle, "--log-only", "--vkey", vkeyFile, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { ok: boolean; entries: number; keySource: string };
    expect(report).toMatchObject({ ok: true, entries: 12, keySource: "argument" });
  });

  it("exit 1 with the failing entry listed when a record is altered; exit 1 for a foreign key", async () => {
    const seg = join(bundle, "segments", (await readdir(join(bundle, "segments")))[0]!);
    const original = await readFile(seg);
    const bad = Buffer.from(original);
    bad[30]! ^= 0x40;
    await writeFile(seg, bad);
    try {
      const r = await execgate(["audit", "verify", bundle, "--log-only", "--vkey", vkeyFile]);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/^FAILED/);
      expect(r.stdout).toContain("record");
    } finally {
      await writeFile(seg, original);
    }
    const other = join(dir, "other.vkey");
    await writeFile(other, `${verifierFromSigner(softwareEd25519Signer(ORIGIN)).vkey}\n`);
    const r2 = await execgate(["audit", "verify", bundle, "--log-only", "--vkey", other, "--json"]);
    expect(r2.code).toBe(1);
    expect(JSON.parse(r2.stdout)).toMatchObject({ ok: false });
  });

  it("exit 2 without a directory, or with a key to pin beside --log-only (it would be ignored); exit 3 for a missing one", async () => {
    expect((await execgate(["audit", "verify"])).code).toBe(2);
    const pinned = await execgate([
      "audit",
      "verify",
      bundle,
      "--log-only",
      "--vkey",
      vkeyFile,
      "--ak-pub",
      vkeyFile,
    ]);
    expect(pinned.code).toBe(2);
    expect(pinned.stderr).toContain("--ak-pub has no effect with --log-only");
    expect((await execgate(["audit", "verify", join(dir, "nope")])).code).toBe(3);
    // A --trust file without a certificate is named, not reported as a failed chain.
    const noCert = await execgate(["audit", "verify", bundle, "--vkey", vkeyFile, "--trust", vkeyFile]);
    expect(noCert.code).toBe(2);
    expect(noCert.stderr).toContain(`--trust ${vkeyFile} holds no PEM certificate`);
  });
});
