import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { buildAllowlist, checkAllowlist, type ImaViolation } from "../../src/measure/ima-allowlist.js";
import { checkMeasured, ImaMeasuredSet, sha256FileDigests } from "../../src/measure/ima-measured.js";
import { parseImaList } from "../../src/measure/ima-parse.js";
import { imaRecord } from "../helpers/ima.js";

// The compact record of what IMA measured this boot, and the allowlist's verdict on it: what
// the attestation loop judges again when a reload brings another allowlist.

const fd = (s: string): Buffer => createHash("sha256").update(s).digest();
const field = (s: string | Buffer): Buffer => Buffer.concat([Buffer.from(s), Buffer.from([0])]);
const dng = (d: Buffer, alg = "sha256"): Buffer => Buffer.concat([Buffer.from(`${alg}:\0`), d]);
const ng = (name: string, d: Buffer, opts: { violation?: boolean; alg?: string } = {}): Buffer =>
  imaRecord("ima-ng", [dng(d, opts.alg), field(name)], opts);

const list = Buffer.concat([
  ng("boot_aggregate", Buffer.alloc(32)),
  ng("/usr/bin/ok", fd("ok")),
  ng("/usr/bin/ok", fd("ok")), // measured again, unchanged: one measurement
  ng("/usr/bin/python3", fd("python 3.11.4")),
  ng("/usr/bin/python3", fd("python 3.11.9")), // updated in place
  ng("/usr/bin/unlisted", fd("x")),
  ng("/tmp/scratch/a.out", fd("tmp")),
  ng("/usr/bin/violated", fd("v"), { violation: true }),
  ng("/usr/bin/sha1", fd("sha1").subarray(0, 20), { alg: "sha1" }),
  imaRecord("ima-buf", [dng(fd("key")), field(".ima"), Buffer.from("key")]),
  imaRecord("ima-ngv2", [Buffer.concat([Buffer.from("verity:sha256:\0"), fd("v2")]), field("/usr/bin/v2")]),
]);
const entries = parseImaList(list).entries;
const measured = new ImaMeasuredSet();
measured.add(entries);

const allowAll = buildAllowlist({
  texts: [
    [
      `${fd("ok").toString("hex")}  /usr/bin/ok`,
      `${fd("python 3.11.4").toString("hex")}  /usr/bin/python3`,
      `${fd("python 3.11.9").toString("hex")}  /usr/bin/python3`,
      `${fd("x").toString("hex")}  /usr/bin/unlisted`,
      `${fd("sha1").subarray(0, 20).toString("hex")}  /usr/bin/sha1`,
      `${fd("v2").toString("hex")}  /usr/bin/v2`,
    ].join("\n"),
  ],
  excludeGlobs: ["/tmp/**"],
});
// The vulnerable python 3.11.4 is taken off the list, and the .ima keyring pinned to another key.
const stricter = buildAllowlist({
  texts: [
    [
      `${fd("ok").toString("hex")}  /usr/bin/ok`,
      `${fd("python 3.11.9").toString("hex")}  /usr/bin/python3`,
      `${fd("sha1").subarray(0, 20).toString("hex")}  /usr/bin/sha1`,
      `${fd("v2").toString("hex")}  /usr/bin/v2`,
    ].join("\n"),
  ],
  keylimePolicies: [JSON.stringify({ keyrings: { ".ima": [fd("another key").toString("hex")] } })],
  excludeGlobs: ["/tmp/**"],
});
const empty = buildAllowlist({});

/** checkAllowlist's verdict on the entries, one per distinct (path, digest), violation entries aside. */
function perMeasurement(vs: readonly ImaViolation[]): ImaViolation[] {
  const seen = new Set<string>();
  return vs.filter((v) => {
    const k = `${v.path}\0${v.digest}`;
    if (v.kind === "invalidated" || seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

describe("ImaMeasuredSet", () => {
  it("keeps each distinct measurement once, with the seq of its first entry; not boot_aggregate, not violation entries", () => {
    expect(measured.size).toBe(8);
    expect(measured.of("/usr/bin/ok")).toEqual([
      { seq: 1, digestAlg: "sha256", hex: fd("ok").toString("hex"), buf: false, ngv2: false },
    ]);
    expect(measured.of("/usr/bin/python3").map((m) => m.seq)).toEqual([3, 4]);
    expect(measured.of("boot_aggregate")).toEqual([]);
    expect(measured.of("/usr/bin/violated")).toEqual([]);
    expect(measured.of(".ima")).toMatchObject([{ buf: true }]);
    // Adding the same entries again (a list read twice) changes nothing.
    const again = new ImaMeasuredSet();
    again.add(entries);
    again.add(entries);
    expect([...again]).toEqual([...measured]);
  });

  it("sha256FileDigests: the plain SHA-256 file digests of a name, or undefined when one is not", () => {
    expect(sha256FileDigests(measured, "/usr/bin/python3")).toEqual(
      new Set([fd("python 3.11.4").toString("hex"), fd("python 3.11.9").toString("hex")]),
    );
    expect(sha256FileDigests(measured, "/usr/bin/sha1")).toBeUndefined(); // another algorithm
    expect(sha256FileDigests(measured, "/usr/bin/v2")).toBeUndefined(); // maybe an fs-verity digest
    expect(sha256FileDigests(measured, ".ima")).toBeUndefined(); // a buffer, not a file
    expect(sha256FileDigests(measured, "/usr/bin/never-run")).toBeUndefined();
  });
});

describe("checkMeasured: the allowlist's verdict on everything measured", () => {
  it.each([
    ["the allowlist the files were run under", allowAll],
    ["a stricter one", stricter],
    ["an empty one", empty],
    ["one without exclusions", buildAllowlist({ texts: [`${fd("ok").toString("hex")}  /usr/bin/ok`] })],
  ])("answers as checkAllowlist over the entries, per distinct measurement: %s", (_, allowlist) => {
    expect(checkMeasured(measured, allowlist)).toEqual(perMeasurement(checkAllowlist(entries, allowlist)));
  });

  it("a stricter allowlist catches a file measured before it; a looser one clears it", () => {
    expect(checkMeasured(measured, allowAll)).toEqual([]);
    expect(checkMeasured(measured, stricter)).toEqual([
      {
        seq: 3,
        kind: "digest_mismatch",
        path: "/usr/bin/python3",
        digest: fd("python 3.11.4").toString("hex"),
      },
      { seq: 5, kind: "not_in_allowlist", path: "/usr/bin/unlisted", digest: fd("x").toString("hex") },
      { seq: 9, kind: "keyring_digest_mismatch", path: ".ima", digest: fd("key").toString("hex") },
    ]);
  });

  it("an empty set has nothing to judge", () => {
    expect(checkMeasured(new ImaMeasuredSet(), empty)).toEqual([]);
  });
});
