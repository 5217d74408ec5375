import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { execgate } from "../helpers/cli.js";
import { corpusPath } from "../helpers/corpus.js";

// The built CLI against the corpus in test/corpus (a missing file fails).
const c = (p: string) => corpusPath(p);
const tmp = mkdtempSync(join(tmpdir(), "execgate-measure-"));

describe("execgate measure eventlog", () => {
  it("prints format, events, PCRs per bank and exits 0", async () => {
    const r = await execgate([
      "measure",
      "eventlog",
      c("eventlog/go-tpm-tools/cos-85-amd-sev.bin"),
      "--json",
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const oracle = JSON.parse(
      readFileSync(c("eventlog/go-tpm-tools/expected/cos-85-amd-sev.bin.expected.json"), "utf8"),
    );
    expect(out).toMatchObject({ format: "crypto-agile", events: 46, secureBoot: true, quirks: [] });
    expect(Object.keys(out.pcrs)).toEqual(["sha1", "sha256", "sha384"]);
    expect(out.pcrs.sha1).toEqual(oracle.pcrs.sha1);
    expect(out.pcrs.sha256).toEqual(oracle.pcrs.sha256);
  });

  it("a malformed log exits 1 with the offset and reason", async () => {
    const r = await execgate([
      "measure",
      "eventlog",
      c("eventlog/keylime/binary_bios_measurements-bogus"),
      "--json",
    ]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: "limit_exceeded", offset: 32 });
    expect(r.stderr).toMatch(/at offset 32: eventDataSize/);
  });

  it("--pcrs: compares with quoted values, applies and reports the EBS quirk", async () => {
    const pcrs = join(tmp, "pcr5.json");
    writeFileSync(pcrs, JSON.stringify({ sha1: { "5": "31245808d6d35849bc394f6343f2b3ff908ed5e3" } }));
    const r = await execgate([
      "measure",
      "eventlog",
      c("eventlog/go-attestation/ebs_event_missing_eventlog"),
      "--json",
      "--pcrs",
      pcrs,
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ quirks: ["ebs_events_missing"], quote: { ok: true } });
    writeFileSync(pcrs, JSON.stringify({ sha1: { "0": "00".repeat(20) } }));
    const bad = await execgate([
      "measure",
      "eventlog",
      c("eventlog/go-attestation/ebs_event_missing_eventlog"),
      "--pcrs",
      pcrs,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain("DOES NOT match");
  });

  it("usage errors exit 2, a missing file exits 3", async () => {
    expect((await execgate(["measure", "eventlog"])).code).toBe(2);
    expect((await execgate(["measure", "eventlog", join(tmp, "nope")])).code).toBe(3);
  });
});

describe("execgate measure ima", () => {
  it("prints entries, template, PCR 10 for sha1 and sha256, boot_aggregate", async () => {
    const r = await execgate(["measure", "ima", c("ima/ibmtss/sha256.log"), "--json"]);
    expect(r.code).toBe(0);
    const kvt = readFileSync(c("ima/ibmtss/imakvtpcr10.txt"), "utf8")
      .trim()
      .split("\n")
      .map((l) => l.replace("PCR 10:", "").replace(/\s+/g, ""));
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      entries: 362,
      template: "ima-sig",
      pcrs: { sha1: { "10": kvt[0] }, sha256: { "10": kvt[1] } },
      violations: [],
    });
    expect(out.bootAggregate).toMatch(/^[0-9a-f]{40,64}$/);
  });

  it("--allowlist: files not listed are violations (exit 1); --exclude removes them", async () => {
    const list = c("ima/keylime/test_ima_verification/measurements.txt");
    const allow = join(tmp, "allow.txt");
    writeFileSync(
      allow,
      "cd026b58efdf66658685430ff526490d54a430a3f0066a35ac26a8acab66c55d  /lib/modules/5.4.48-openpower1/kernel/drivers/gpu/drm/drm_panel_orientation_quirks.ko\n",
    );
    const r = await execgate(["measure", "ima", list, "--json", "--allowlist", allow]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).violations.map((v: { kind: string }) => v.kind)).toEqual([
      "not_in_allowlist",
    ]);
    const ok = await execgate([
      "measure",
      "ima",
      list,
      "--json",
      "--allowlist",
      allow,
      "--exclude",
      "/lib/modules/**/usb/**",
    ]);
    expect(ok.code).toBe(0);
  });

  it("an invalid list exits 1", async () => {
    const r = await execgate(["measure", "ima", c("ima/rust-keylime/invalid_ima_log.txt")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/malformed at offset 0/);
  });
});

describe("execgate policy check", () => {
  // A valid access part (the daemon refuses a policy file whose access part is wrong).
  const ACCESS =
    '[[executors]]\nname = "trainer"\nuids = [1000]\nscopes = ["default"]\n\n[scopes.default]\nttl_s = 30\n';
  const win = JSON.parse(
    readFileSync(c("eventlog/go-attestation/expected/windows_gcp_shielded_vm.pcrs.json"), "utf8"),
  );
  const pcrs = join(tmp, "win-pcrs.json");
  writeFileSync(pcrs, JSON.stringify(win.pcrs));
  const log = c("eventlog/go-attestation/windows_gcp_shielded_vm.eventlog.bin");

  it("prints every rule's result and allows when all pass", async () => {
    const policy = join(tmp, "ok.toml");
    writeFileSync(
      policy,
      `${ACCESS}\n[integrity.pcrs.sha1]\n"0" = ["${win.pcrs.sha1["0"]}"]\n\n[integrity.eventlog]\nsecure_boot = true\n`,
    );
    const r = await execgate([
      "policy",
      "check",
      "--policy",
      policy,
      "--pcrs",
      pcrs,
      "--eventlog",
      log,
      "--json",
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(true);
    expect(out.results.map((x: { rule: string; status: string }) => `${x.rule}=${x.status}`)).toEqual([
      "pcrs.sha1.0=pass",
      "eventlog.replay=pass",
      "eventlog.secure_boot=pass",
    ]);
  });

  it("denies with the reason of the first failing rule (exit 1)", async () => {
    const policy = join(tmp, "bad.toml");
    writeFileSync(
      policy,
      `[integrity.pcrs.sha1]\n"7" = ["${"00".repeat(20)}"]\n[integrity.ima]\nmode = "enforce"\n`,
    );
    const r = await execgate(["policy", "check", "--policy", policy, "--pcrs", pcrs]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("FAIL  pcrs.sha1.7");
    // No --ima: the IMA rule was not run (a dry run judges only the evidence it was given).
    expect(r.stdout).toContain("SKIP  ima.pcr10: no --ima given");
    expect(r.stdout).toContain("result: deny (pcr_mismatch, pcrs.sha1.7)");
  });

  // What the daemon refuses to load (exit 2 naming the key), policy check refuses too, before
  // evaluating anything — it used to judge only [integrity] and print "result: allow".
  it.each([
    ["an unknown key in a scope", ACCESS.replace("ttl_s = 30", "ttl_s = 30\nttl = 60"), "scopes.default.ttl"],
    [
      "an executor naming an undefined scope",
      ACCESS.replace('scopes = ["default"]', 'scopes = ["default", "serve"]'),
      "executors[0].scopes[1]",
    ],
    ["a user name as a uid", ACCESS.replace("uids = [1000]", 'uids = ["root"]'), "executors[0].uids[0]"],
    ["a scope without ttl_s", ACCESS.replace("ttl_s = 30", 'audiences = ["a"]'), "scopes.default.ttl_s"],
  ])("refuses %s as the daemon does (exit 2, names the key)", async (_what, access, key) => {
    const policy = join(tmp, "access-bad.toml");
    writeFileSync(policy, `${access}\n[integrity.pcrs.sha1]\n"0" = ["${win.pcrs.sha1["0"]}"]\n`);
    const r = await execgate(["policy", "check", "--policy", policy, "--pcrs", pcrs]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${policy}: ${key}: `);
    expect(r.stdout).not.toContain("result: allow");
  });

  it("warns (exit code unchanged) for each executor that relies on exe_sha256 / exe_paths without units", async () => {
    const policy = join(tmp, "exe-only.toml");
    const H = "ab".repeat(32);
    writeFileSync(
      policy,
      [
        `[[executors]]\nname = "by-digest"\nuids = [1000]\nexe_sha256 = ["${H}"]\nscopes = ["default"]`,
        '[[executors]]\nname = "by-path"\ngids = [50]\nexe_paths = ["/usr/bin/python3.12"]\nscopes = ["default"]',
        `[[executors]]\nname = "in-unit"\nuids = [1000]\nexe_sha256 = ["${H}"]\nunits = ["t.service"]\nscopes = ["default"]`,
        '[[executors]]\nname = "uid-only"\nuids = [1001]\nscopes = ["default"]',
        `[scopes.default]\nttl_s = 30\n\n[integrity.pcrs.sha1]\n"0" = ["${win.pcrs.sha1["0"]}"]\n`,
      ].join("\n\n"),
    );
    const text = await execgate(["policy", "check", "--policy", policy, "--pcrs", pcrs]);
    expect(text.code).toBe(0);
    const warned = text.stdout.split("\n").filter((l) => l.startsWith("WARN"));
    expect(warned).toEqual([
      expect.stringMatching(
        /^WARN {2}executors\.by-digest: exe_sha256 without units only distinguishes the executable from callers of other uids/,
      ),
      expect.stringMatching(/^WARN {2}executors\.by-path: exe_paths without units only distinguishes/),
    ]);
    expect(text.stdout).toContain("result: allow");

    const json = await execgate(["policy", "check", "--policy", policy, "--pcrs", pcrs, "--json"]);
    expect(json.code).toBe(0);
    const out = JSON.parse(json.stdout);
    expect(out.ok).toBe(true);
    expect(out.results.map((x: { rule: string; status: string }) => `${x.rule}=${x.status}`)).toEqual([
      "executors.by-digest=warn",
      "executors.by-path=warn",
      "pcrs.sha1.0=pass",
    ]);
  });

  it("an unknown key is a configuration error naming it (exit 2)", async () => {
    const policy = join(tmp, "unknown.toml");
    writeFileSync(policy, "[integrity.eventlog]\nsecure_bot = true\n");
    const r = await execgate(["policy", "check", "--policy", policy]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("integrity.eventlog.secure_bot");
  });
});
