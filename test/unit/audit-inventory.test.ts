import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BUNDLE_INVENTORY, takeInventory } from "../../src/audit/inventory.js";

const HONEST = [
  "segments/00000000000000000000.seg",
  "segments/00000000000000004096.seg",
  "checkpoints.log",
  "checkpoint",
  "log.vkey",
  "origin",
  "tile/0/000",
  "tile/0/x001/234.p/7",
  "tile/1/000.p/2",
  "tile/entries/000",
  "tile/entries/001.p/209",
  `blobs/${"ab".repeat(32)}`,
  "enrollment/ek.pub",
  "enrollment/ek-cert-0x01c00002.der",
  "enrollment/ak.pub",
  "enrollment/ak.pem",
  "enrollment/signing-key.pub",
  "enrollment/signing-key.pem",
  "enrollment/signing-key.certify.attest",
  "enrollment/signing-key.certify.sig",
  "enrollment/signing-key.certify.qd",
  "enrollment/hsm-key.pem",
];

describe("audit: the bundle inventory", () => {
  it("an exported bundle's paths each match one rule, and every one is verified by some check", () => {
    const inv = takeInventory(HONEST, [], { keyChain: true });
    expect(inv.failures).toEqual([]);
    // The enrollment checks bind ek.pub (certificates, ueid, origin) and the PEM copies too.
    expect(inv.unverified).toEqual([]);
    for (const p of HONEST)
      expect(
        BUNDLE_INVENTORY.filter((r) => r.pattern.test(p)),
        p,
      ).toHaveLength(1);
    // --log-only: no enrollment file is checked, so all are listed
    expect(takeInventory(HONEST, [], { keyChain: false }).unverified).toHaveLength(10);
  });

  it("junk anywhere is unknown_file, a required file absent is missing_file, bundle dirs may be empty", () => {
    const junk = [
      "README",
      "segments/1.seg",
      "segments/x.txt",
      "tile/README",
      "tile/0/0001",
      "blobs/abc",
      "enrollment/x.pem",
    ];
    const inv = takeInventory(
      [...HONEST.filter((p) => p !== "checkpoint" && !p.startsWith("segments/")), ...junk],
      [
        { path: "blobs/", kind: "an empty directory", emptyDir: true },
        { path: "spare/", kind: "an empty directory", emptyDir: true },
        { path: "tile/", kind: "an empty directory", emptyDir: true },
        // A directory of tile shape holds tiles; empty, it is junk (a level the log may not have).
        { path: "tile/9/", kind: "an empty directory", emptyDir: true },
        { path: "tile/0/x001/", kind: "an empty directory", emptyDir: true },
        { path: "log.link", kind: "not a regular file" },
      ],
      { keyChain: true },
    );
    const by = (c: string) => inv.failures.filter((f) => f.check === c).map((f) => f.path);
    expect(by("unknown_file").sort()).toEqual(
      [...junk, "spare/", "tile/9/", "tile/0/x001/", "log.link"].sort(),
    );
    expect(by("missing_file").sort()).toEqual(["checkpoint", "segments/"]);
  });

  it("docs/audit.md names every check the inventory relies on", () => {
    const doc = readFileSync("docs/audit.md", "utf8");
    for (const r of BUNDLE_INVENTORY) for (const c of r.checks) expect(doc, c).toContain(`\`${c}\``);
    for (const c of ["unknown_file", "missing_file", "trusted_checkpoint_signature", "checkpoint_file_size"])
      expect(doc).toContain(`\`${c}\``);
  });
});
