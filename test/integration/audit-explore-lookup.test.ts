import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeEntry, makeEntry } from "../../src/lineage/entry.js";
import { exportBundle } from "../../src/lineage/export.js";
import { leafHash } from "../../src/lineage/hash.js";
import { openLineage } from "../../src/lineage/lineage.js";
import { verifierFromSigner } from "../../src/lineage/note.js";
import { softwareEd25519Signer } from "../../src/lineage/signer.js";
import { execgate } from "../helpers/cli.js";

// A reference further back than the entries `audit query` keeps from its stream is looked up in
// the bundle's tile/entries bundles: the caller of a denial whose request is 6,000 entries earlier.

const ORIGIN = "execgate.test/audit-explore";
const FILL = 6000;
let dir: string;
let bundle: string;
let vkey: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "execgate-explore-"));
  const signer = softwareEd25519Signer(ORIGIN, new Uint8Array(32).fill(5));
  const lin = await openLineage({ dir: join(dir, "lineage"), origin: ORIGIN, signer, now: () => 0 });
  const request = makeEntry(
    "request",
    { wallMs: 1000, monoUs: 1 },
    {
      requestId: "far",
      scope: "backup",
      actionDigest: new Uint8Array(32),
      peer: { uid: 77, gid: 78, pid: 79, exeDigest: new Uint8Array(32).fill(0xab) },
    },
  );
  const ref = { index: (await lin.add([request]))[0]!.index, leafHash: leafHash(encodeEntry(request)) };
  for (let i = 0; i < FILL; i += 500)
    await Promise.all(
      Array.from({ length: 500 }, (_, k) =>
        lin.add([makeEntry("daemon_stop", { wallMs: 2000 + i + k, monoUs: 2 }, { reason: "fill" })]),
      ),
    );
  await lin.add([
    makeEntry("decision", { wallMs: 9000, monoUs: 3 }, { allow: false, reason: "scope_not_allowed" }, [ref]),
  ]);
  bundle = join(dir, "bundle");
  await exportBundle({ lineage: lin, out: bundle });
  await lin.close();
  vkey = join(dir, "log.vkey");
  await writeFile(vkey, `${verifierFromSigner(signer).vkey}\n`);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("audit query and show: references far back", () => {
  it("the denial's caller comes from its request, 6,000 entries back, through the entry bundles", async () => {
    const r = await execgate(["audit", "query", bundle, "--denials", "--json", "--log-only", "--vkey", vkey]);
    expect(r.code).toBe(0);
    const rows = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      index: FILL + 1,
      denial: { reason: "scope_not_allowed" },
      scope: "backup",
      caller: { uid: 77, gid: 78, pid: 79, exeDigest: "ab".repeat(32), from: { index: 0, type: "request" } },
      refs: [{ index: 0, type: "request", status: "ok" }],
    });
    const byUid = await execgate([
      "audit",
      "query",
      bundle,
      "--uid",
      "77",
      "--json",
      "--log-only",
      "--vkey",
      vkey,
    ]);
    expect(
      byUid.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).index),
    ).toEqual([0, FILL + 1]);
    const show = await execgate([
      "audit",
      "show",
      bundle,
      "--index",
      String(FILL + 1),
      "--json",
      "--log-only",
    ]);
    expect(show.code).toBe(0);
    const e = JSON.parse(show.stdout).entries[0];
    expect(e.caller.uid).toBe(77);
    expect(e.inclusion).toMatchObject({ verified: true, treeSize: FILL + 2 });
  });
});
