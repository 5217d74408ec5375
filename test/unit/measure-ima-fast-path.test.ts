import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { toHex } from "../../src/core/hex.js";
import { type Allowlist, buildAllowlist, checkAllowlist } from "../../src/measure/ima-allowlist.js";
import { AllowlistPathIndex, globLiteralPrefix, hashAscii } from "../../src/measure/ima-allowlist-index.js";
import { type ImaEntry, parseImaList } from "../../src/measure/ima-parse.js";
import { applyEntries, initialImaState, replayUntilQuote } from "../../src/measure/ima-replay.js";
import { imaRecord } from "../helpers/ima.js";

// The fast paths of the IMA pipeline (entry methods that make no views, the byte-level
// allowlist index, the one-pass replay) checked against the plain definitions.

const fd = (s: string): Buffer => createHash("sha256").update(s).digest();
const dng = (d: Buffer, alg = "sha256"): Buffer => Buffer.concat([Buffer.from(`${alg}:\0`), d]);
const nng = (name: Buffer | string): Buffer => Buffer.concat([Buffer.from(name), Buffer.from([0])]);
const ng = (name: Buffer | string, d: Buffer, opts: { violation?: boolean; pcr?: number } = {}): Buffer =>
  imaRecord("ima-ng", [dng(d), nng(name)], opts);

const list = Buffer.concat([
  ng("boot_aggregate", Buffer.alloc(32)),
  ng("/usr/bin/ok", fd("ok")),
  ng("/usr/bin/wrong", fd("not what is listed")),
  ng("/usr/bin/unlisted", fd("x")),
  ng("/tmp/scratch/a.out", fd("tmp")),
  ng("/tmpx/not-excluded", fd("tmpx")),
  ng("/usr/bin/multi", fd("multi-2")),
  ng("/usr/bin/multi-none", fd("multi-3")),
  ng("/opt/caf\u00e9", fd("utf8")), // UTF-8 name
  ng(Buffer.from([0x2f, 0x62, 0xff, 0x61, 0x64]), fd("bad utf8")), // invalid UTF-8: decodes with U+FFFD
  ng("/usr/bin/odd", fd("odd")),
  ng("/usr/bin/violated", fd("v"), { violation: true }),
  ng("/usr/bin/pcr11", fd("p11"), { pcr: 11 }),
  imaRecord("ima-buf", [dng(fd("key")), nng(".ima"), Buffer.from("key")]),
  imaRecord("ima-sig", [dng(fd("sig")), nng("/usr/bin/signed"), Buffer.from([1, 2, 3])]),
  ng("/usr/bin/sha1", fd("sha1").subarray(0, 20)),
]);

const sha256sum = [
  `${fd("ok").toString("hex")}  /usr/bin/ok`,
  `${fd("listed").toString("hex")}  /usr/bin/wrong`,
  `${fd("multi-1").toString("hex")}  /usr/bin/multi`,
  `${fd("multi-2").toString("hex")}  /usr/bin/multi`,
  `${fd("multi-1").toString("hex")}  /usr/bin/multi-none`,
  `${fd("multi-4").toString("hex")}  /usr/bin/multi-none`,
  `${fd("utf8").toString("hex")}  /opt/caf\u00e9`,
  `${fd("bad utf8").toString("hex")}  /b\ufffdad`,
  `${fd("sig").toString("hex")}  /usr/bin/signed`,
  `${fd("sha1").subarray(0, 20).toString("hex")}  /usr/bin/sha1`,
  `${fd("tmpx").toString("hex").toUpperCase()}  /tmpx/not-excluded`,
].join("\n");
// Keylime accepts hex of any length 32–128: an odd-length one can never match.
const keylime = JSON.stringify({
  digests: {
    "/usr/bin/odd": [fd("odd").toString("hex").slice(0, 63)],
    "/usr/bin/ok": [fd("ok").toString("hex")],
  },
  keyrings: { ".ima": [fd("key").toString("hex")] },
});

/** The same allowlist without its index: checkAllowlist's Map path for every entry. */
function slow(a: Allowlist): Allowlist {
  const { fast: _, ...rest } = a;
  return rest;
}

const entries = parseImaList(list).entries;

describe("checkAllowlist: the byte-level index answers as the Map", () => {
  const cases: [string, Allowlist][] = [
    ["globs", buildAllowlist({ texts: [sha256sum], excludeGlobs: ["/tmp/**", "/var/*/cache?", "*.pyc"] })],
    ["no excludes", buildAllowlist({ texts: [sha256sum] })],
    [
      "keylime regex",
      buildAllowlist({ texts: [sha256sum], keylimePolicies: [keylime], excludeGlobs: ["/tmp/**"] }),
    ],
    [
      "keylime regex excludes",
      buildAllowlist({
        texts: [sha256sum],
        keylimePolicies: [JSON.stringify({ digests: {}, excludes: ["/usr/bin/un.*", ".*scratch"] })],
      }),
    ],
  ];
  for (const [what, a] of cases) {
    it(what, () => {
      expect(a.fast).toBeDefined();
      const fast = checkAllowlist(entries, a);
      expect(fast).toEqual(checkAllowlist(entries, slow(a)));
      expect(fast.length).toBeGreaterThan(0);
    });
  }

  it("reports what the plain definition says", () => {
    const a = buildAllowlist({ texts: [sha256sum], keylimePolicies: [keylime], excludeGlobs: ["/tmp/**"] });
    expect(checkAllowlist(entries, a).map((v) => [v.kind, v.path])).toEqual([
      ["digest_mismatch", "/usr/bin/wrong"],
      ["not_in_allowlist", "/usr/bin/unlisted"],
      ["digest_mismatch", "/usr/bin/multi-none"],
      ["digest_mismatch", "/usr/bin/odd"],
      ["invalidated", "/usr/bin/violated"],
      ["not_in_allowlist", "/usr/bin/pcr11"],
    ]);
    // "/b\ufffdad" is listed, and the entry's name bytes (invalid UTF-8) are not its UTF-8:
    // it matches as the decoded string, on the Map path, as it always did.
  });

  it("an index is not used with another map or regex than its own", () => {
    const a = buildAllowlist({ texts: [sha256sum], excludeGlobs: ["/tmp/**"] });
    const other = buildAllowlist({ texts: [`${fd("x").toString("hex")}  /usr/bin/unlisted`] });
    const mixed: Allowlist = { ...a, digests: other.digests };
    expect(checkAllowlist(entries, mixed)).toEqual(checkAllowlist(entries, slow(mixed)));
    const noExclude: Allowlist = { ...a, exclude: undefined };
    expect(checkAllowlist(entries, noExclude)).toEqual(checkAllowlist(entries, slow(noExclude)));
    expect(checkAllowlist(entries, noExclude).some((v) => v.path === "/tmp/scratch/a.out")).toBe(true);
  });

  it("index lookups: every ASCII path found with its digests, others not", () => {
    const a = buildAllowlist({ texts: [sha256sum], keylimePolicies: [keylime] });
    const idx = new AllowlistPathIndex(a.digests);
    for (const [path, v] of a.digests) {
      const b = Buffer.from(path);
      const h = hashAscii(b, 0, b.length);
      if (b.length !== path.length) {
        expect(h).toBe(0x100000000);
        continue;
      }
      const slot = idx.find(b, 0, b.length, h);
      expect(slot).toBeGreaterThanOrEqual(0);
      for (const hex of typeof v === "string" ? [v] : v) {
        const d = Buffer.from(hex.length % 2 === 0 ? hex : `${hex}0`, "hex");
        expect(idx.digestAllowed(slot, d, 0, d.length)).toBe(hex.length % 2 === 0);
      }
      expect(idx.digestAllowed(slot, Buffer.alloc(32), 0, 32)).toBe(false);
    }
    const miss = Buffer.from("/usr/bin/nope");
    expect(idx.find(miss, 0, miss.length, hashAscii(miss, 0, miss.length))).toBe(-1);
  });

  it("globLiteralPrefix: the characters before the first wildcard", () => {
    expect(globLiteralPrefix("/tmp/**")).toBe("/tmp/");
    expect(globLiteralPrefix("/var/*/cache?")).toBe("/var/");
    expect(globLiteralPrefix("*.pyc")).toBe("");
    expect(globLiteralPrefix("/a?b")).toBe("/a");
    expect(globLiteralPrefix("/exact")).toBe("/exact");
  });
});

describe("IMA entry methods", () => {
  const ascii = Buffer.from(
    entries
      .filter((e) => e.template === "ima-ng" && !e.name.includes("\ufffd")) // invalid UTF-8 does not round-trip
      .map(
        (e) => `${e.pcr} ${toHex(e.templateHash)} ima-ng ${e.digestAlg}:${toHex(e.fileDigest)} ${e.name}\n`,
      )
      .join(""),
  );
  const all: [string, readonly ImaEntry[]][] = [
    ["binary", entries],
    ["ascii", parseImaList(ascii, "ascii").entries],
  ];
  for (const [what, es] of all) {
    it(`${what}: copyTemplateHash and fileDigestHexEquals agree with the views`, () => {
      for (const e of es) {
        const out = new Uint8Array(e.templateHash.length + 3).fill(0xaa);
        e.copyTemplateHash(out, 3);
        expect(toHex(out.subarray(3))).toBe(toHex(e.templateHash));
        expect(out.subarray(0, 3)).toEqual(new Uint8Array(3).fill(0xaa));
        const hex = toHex(e.fileDigest);
        expect(e.fileDigestHexEquals(hex)).toBe(true);
        expect(e.fileDigestHexEquals(hex.toUpperCase())).toBe(hex === hex.toUpperCase());
        expect(e.fileDigestHexEquals(hex.slice(0, -2))).toBe(false);
        expect(e.fileDigestHexEquals(`${hex.slice(0, -1)}${hex.endsWith("0") ? "1" : "0"}`)).toBe(false);
        // name reads are stable
        expect(e.name).toBe(e.name);
      }
    });
  }
});

describe("applyEntries: one pass over all banks", () => {
  /** The kernel's replay, written out: per bank, H(PCR ‖ H_bank(template data) or 0xFF…). */
  function reference(es: readonly ImaEntry[], bank: "sha1" | "sha256"): string {
    const size = bank === "sha1" ? 20 : 32;
    let pcr = Buffer.alloc(size);
    for (const e of es) {
      if (e.pcr !== 10) continue;
      const v = e.violation ? Buffer.alloc(size, 0xff) : createHash(bank).update(e.templateData).digest();
      pcr = createHash(bank).update(pcr).update(v).digest();
    }
    return pcr.toString("hex");
  }

  it("equals the kernel's replay per bank, and incremental application", () => {
    const s = applyEntries(initialImaState("binary"), entries);
    expect(toHex(s.pcr10.get("sha1")!)).toBe(reference(entries, "sha1"));
    expect(toHex(s.pcr10.get("sha256")!)).toBe(reference(entries, "sha256"));
    let inc = initialImaState("binary");
    for (const e of entries) inc = applyEntries(inc, [e]);
    expect(inc.pcr10).toEqual(s.pcr10);
    const only256 = applyEntries(initialImaState("binary", ["sha256", "sha384"]), entries);
    expect(toHex(only256.pcr10.get("sha256")!)).toBe(reference(entries, "sha256"));
  });

  it("replayUntilQuote stops where the quote matches", () => {
    const half = entries.slice(0, 6);
    const quoted = Buffer.from(reference(half, "sha256"), "hex");
    const m = replayUntilQuote(initialImaState("binary"), entries, "sha256", quoted);
    expect(m.matched).toBe(true);
    expect(m.pending.length).toBe(entries.length - 6);
    expect(toHex(m.state.pcr10.get("sha1")!)).toBe(reference(half, "sha1"));
  });
});
