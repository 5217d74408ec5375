import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { eventLogFacts } from "../../src/measure/eventlog-decode.js";
import { parseEventLog } from "../../src/measure/eventlog-parse.js";
import { replayEventLog, replayToPcrValues } from "../../src/measure/eventlog-replay.js";
import { buildAllowlist } from "../../src/measure/ima-allowlist.js";
import { parseImaList } from "../../src/measure/ima-parse.js";
import { replayIma } from "../../src/measure/ima-replay.js";
import { evaluateIntegrity, type IntegrityPolicy } from "../../src/policy/integrity.js";
import { parseIntegrityPolicyToml } from "../../src/policy/integrity-load.js";
import { checkQuotedPcrs, goldenFromPcrs } from "../../src/policy/integrity-schema.js";
import { CORPUS } from "../helpers/corpus.js";

const bin = (p: string) => new Uint8Array(readFileSync(join(CORPUS, p)));
const txt = (p: string) => readFileSync(join(CORPUS, p), "utf8");

// Windows GCP Shielded VM: SHA-1 log + the 24 quoted SHA-1 PCRs (go-attestation testdata).
const winLog = parseEventLog(bin("eventlog/go-attestation/windows_gcp_shielded_vm.eventlog.bin"));
const winPcrs = JSON.parse(txt("eventlog/go-attestation/expected/windows_gcp_shielded_vm.pcrs.json"))
  .pcrs as {
  sha1: Record<string, string>;
};

const noRules: IntegrityPolicy = { pcrs: {}, eventlog: undefined, ima: undefined };

describe("integrity policy schema", () => {
  it("accepts the documented keys and the daemon's top-level tables", () => {
    const cfg = parseIntegrityPolicyToml(`
[executors.a]
anything = 1
[scopes.b]
x = "y"
[integrity.pcrs.sha256]
"0" = ["${"ab".repeat(32)}", "${"CD".repeat(32)}"]
[integrity.eventlog]
secure_boot = true
boot_applications = ["${"11".repeat(32)}"]
required_dbx = ["${"22".repeat(32)}"]
pcrs = [0, 7]
[integrity.ima]
allowlist = "allow.txt"
mode = "observe"
excludes = ["/tmp/**"]
`);
    expect(cfg.pcrs.sha256?.[0]).toEqual(["ab".repeat(32), "cd".repeat(32)]);
    expect(cfg.eventlog).toEqual({
      secureBoot: true,
      bootApplications: ["11".repeat(32)],
      requiredDbx: ["22".repeat(32)],
      pcrs: [0, 7],
    });
    expect(cfg.ima).toMatchObject({
      allowlist: "allow.txt",
      mode: "observe",
      excludes: ["/tmp/**"],
      bootAggregate: true,
    });
  });

  it.each([
    ["[other]\nx = 1", "other"],
    ["[integrity]\nextra = 1", "integrity.extra"],
    ["[integrity.eventlog]\nsecureboot = true", "integrity.eventlog.secureboot"],
    ["[integrity.ima]\nmode = 'enforce'\nallow = 'x'", "integrity.ima.allow"],
    ["[integrity.pcrs.md5]\n'0' = []", "integrity.pcrs.md5"],
    ["[integrity.pcrs.sha1]\n'24' = ['00']", "integrity.pcrs.sha1.24"],
    // One spelling per PCR: "07" would silently replace "7" (or be replaced by it).
    [
      `[integrity.pcrs.sha1]\n'7' = ['${"00".repeat(20)}']\n'07' = ['${"11".repeat(20)}']`,
      "integrity.pcrs.sha1.07",
    ],
    ["[integrity.pcrs.sha1]\n'+7' = ['00']", "integrity.pcrs.sha1.+7"],
    [`[integrity.pcrs.sha1]\n'0' = ['${"00".repeat(32)}']`, "integrity.pcrs.sha1.0[0]"],
    ["[integrity.ima]\nmode = 'audit'", "integrity.ima.mode"],
  ])("rejects %j naming %s", (toml, key) => {
    try {
      parseIntegrityPolicyToml(toml);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ExecgateError);
      expect((e as ExecgateError).code).toBe("config_invalid");
      expect((e as ExecgateError).detail.key).toBe(key);
      expect((e as ExecgateError).message).toContain(key);
    }
  });

  it("refuses rules about PCRs the quotes never sign (tpm.pcrs), naming the key", () => {
    const quoted = { sha256: [0, 1, 2, 3, 4, 5, 6, 7, 10] };
    const rules = (toml: string) => () => checkQuotedPcrs(parseIntegrityPolicyToml(toml), quoted);
    expect(
      rules(
        `[integrity.pcrs.sha256]\n"7" = ["${"ab".repeat(32)}"]\n[integrity.eventlog]\npcrs = [0, 7]\n[integrity.ima]\n`,
      ),
    ).not.toThrow();
    for (const [toml, key] of [
      [`[integrity.pcrs.sha256]\n"16" = ["${"ab".repeat(32)}"]`, "integrity.pcrs.sha256.16"],
      [`[integrity.pcrs.sha1]\n"0" = ["${"ab".repeat(20)}"]`, "integrity.pcrs.sha1.0"],
      ["[integrity.eventlog]\npcrs = [0, 8]", "integrity.eventlog.pcrs[1]"],
    ] as const) {
      expect(rules(toml)).toThrow(expect.objectContaining({ code: "config_invalid", detail: { key } }));
    }
    expect(() =>
      checkQuotedPcrs(parseIntegrityPolicyToml("[integrity.ima]\n"), { sha256: [0, 1, 2, 3, 4, 5, 6, 7] }),
    ).toThrow(/integrity.ima: PCR 10/);
    // The event-log facts need the PCR their events are in: 7 (Secure Boot, dbx), 4 (boot apps).
    const without = (pcr: number) => ({ sha256: [0, 1, 2, 3, 4, 5, 6, 7, 10].filter((i) => i !== pcr) });
    for (const [toml, key, pcr] of [
      ["[integrity.eventlog]\nsecure_boot = true", "integrity.eventlog.secure_boot", 7],
      [`[integrity.eventlog]\nrequired_dbx = ["${"ab".repeat(32)}"]`, "integrity.eventlog.required_dbx", 7],
      [
        `[integrity.eventlog]\nboot_applications = ["${"ab".repeat(32)}"]`,
        "integrity.eventlog.boot_applications",
        4,
      ],
    ] as const) {
      const cfg = parseIntegrityPolicyToml(toml);
      expect(() => checkQuotedPcrs(cfg, quoted)).not.toThrow();
      expect(() => checkQuotedPcrs(cfg, without(pcr))).toThrow(
        expect.objectContaining({ code: "config_invalid", detail: { key } }),
      );
      // Quoted, but left out of the PCRs the log is compared on.
      const others = [0, 1, 2, 3, 4, 5, 6, 7].filter((i) => i !== pcr);
      expect(() =>
        checkQuotedPcrs(parseIntegrityPolicyToml(`${toml}\npcrs = [${others.join(", ")}]`), quoted),
      ).toThrow(/not in integrity\.eventlog\.pcrs/);
    }
  });

  it("rejects text that is not TOML as config_invalid", () => {
    expect(() => parseIntegrityPolicyToml("[integrity")).toThrow(/not valid TOML/);
  });

  it("goldenFromPcrs writes a section the schema reads back to the same values", () => {
    const text = goldenFromPcrs({
      sha256: { "7": "aa".repeat(32), "0": "BB".repeat(32) },
      sha1: { "4": "cc".repeat(20) },
    });
    expect(text).toBe(
      `[integrity.pcrs.sha1]\n"4" = ["${"cc".repeat(20)}"]\n\n[integrity.pcrs.sha256]\n"0" = ["${"bb".repeat(32)}"]\n"7" = ["${"aa".repeat(32)}"]\n`,
    );
    const cfg = parseIntegrityPolicyToml(text);
    expect(cfg.pcrs).toEqual({
      sha1: { 4: ["cc".repeat(20)] },
      sha256: { 0: ["bb".repeat(32)], 7: ["aa".repeat(32)] },
    });
    expect(goldenFromPcrs({ sha1: winPcrs.sha1 }, [0, 7])).toContain(`"7" = ["${winPcrs.sha1["7"]}"]`);
  });
});

describe("evaluateIntegrity: golden PCRs and event log", () => {
  it("golden values: pass when quoted value is in the set, pcr_mismatch otherwise", () => {
    const policy = { ...noRules, pcrs: { sha1: { 0: [winPcrs.sha1["0"]!], 7: ["00".repeat(20)] } } };
    const d = evaluateIntegrity(policy, { pcrs: winPcrs });
    expect(d).toMatchObject({ ok: false, deny: "pcr_mismatch", rule: "pcrs.sha1.7" });
    expect(d.results.map((r) => [r.rule, r.status])).toEqual([
      ["pcrs.sha1.0", "pass"],
      ["pcrs.sha1.7", "fail"],
    ]);
    expect(evaluateIntegrity(policy, { pcrs: {} })).toMatchObject({ ok: false, deny: "pcr_mismatch" });
  });

  const facts = eventLogFacts(winLog);
  const el = {
    secureBoot: true,
    bootApplications: facts.bootApplications.map((a) => a.digests.sha1!),
    requiredDbx: facts.dbxSha256.slice(0, 3),
    pcrs: undefined,
  };

  it("a log that replays to the quote, Secure Boot on, known boot app, dbx entries present: allow", () => {
    const d = evaluateIntegrity({ ...noRules, eventlog: el }, { pcrs: winPcrs, eventlog: winLog });
    expect(d.ok).toBe(true);
    expect(d.results.map((r) => r.status)).toEqual(["pass", "pass", "pass", "pass"]);
  });

  it("no event log in the evidence: eventlog_mismatch", () => {
    expect(evaluateIntegrity({ ...noRules, eventlog: el }, { pcrs: winPcrs })).toMatchObject({
      ok: false,
      deny: "eventlog_mismatch",
      rule: "eventlog.replay",
    });
  });

  it("a quote the log does not reproduce: eventlog_mismatch, facts not read", () => {
    const d = evaluateIntegrity(
      { ...noRules, eventlog: el },
      { pcrs: { sha1: { ...winPcrs.sha1, "7": "00".repeat(20) } }, eventlog: winLog },
    );
    expect(d).toMatchObject({ ok: false, deny: "eventlog_mismatch", rule: "eventlog.replay" });
    expect(d.results.slice(1).every((r) => r.status === "skip")).toBe(true);
  });

  it("Secure Boot required but off; unknown boot application; missing dbx entry", () => {
    const log = parseEventLog(bin("eventlog/go-tpm-tools/ubuntu-2104-no-secure-boot.bin"));
    const oracle = JSON.parse(
      txt("eventlog/go-tpm-tools/expected/ubuntu-2104-no-secure-boot.bin.expected.json"),
    );
    const d = evaluateIntegrity(
      {
        ...noRules,
        eventlog: {
          secureBoot: true,
          bootApplications: ["00".repeat(32)],
          requiredDbx: ["11".repeat(32)],
          pcrs: undefined,
        },
      },
      { pcrs: oracle.pcrs, eventlog: log },
    );
    expect(d).toMatchObject({ ok: false, deny: "eventlog_mismatch", rule: "eventlog.secure_boot" });
    expect(d.results.map((r) => [r.rule, r.status])).toEqual([
      ["eventlog.replay", "pass"],
      ["eventlog.secure_boot", "fail"],
      ["eventlog.boot_applications", "fail"],
      ["eventlog.required_dbx", "fail"],
    ]);
  });

  describe("eventlog.boot_applications covers every event in PCR 4, whatever its type", () => {
    // go-tpm-tools ubuntu-2104-no-secure-boot.bin: PCR 4 holds an EV_EFI_ACTION (seq 14), an
    // EV_SEPARATOR (seq 19) and two boot applications (shim seq 23, grub seq 27).
    const log = parseEventLog(bin("eventlog/go-tpm-tools/ubuntu-2104-no-secure-boot.bin"));
    const oracle = JSON.parse(
      txt("eventlog/go-tpm-tools/expected/ubuntu-2104-no-secure-boot.bin.expected.json"),
    );
    const apps = eventLogFacts(log).bootApplications;
    const sha256 = apps.map((a) => a.digests.sha256!);
    // The event type is not extended into the PCR: relabelling keeps the replay matching.
    const relabelled = (type: number) => ({
      ...log,
      events: log.events.map((e) => (e.seq === 23 || e.seq === 27 ? { ...e, eventType: type } : e)),
    });
    const rule = (bootApplications: string[], eventlog: typeof log) =>
      evaluateIntegrity(
        {
          ...noRules,
          eventlog: { secureBoot: undefined, bootApplications, requiredDbx: [], pcrs: undefined },
        },
        { pcrs: oracle.pcrs, eventlog },
      );

    it("the listed boot applications pass, the action and separator need no listing", () => {
      expect(apps.map((a) => a.seq)).toEqual([23, 27]);
      const d = rule(sha256, log);
      expect(d.ok).toBe(true);
      expect(d.results.find((r) => r.rule === "eventlog.boot_applications")?.detail).toBe(
        "2 boot applications allowed",
      );
      expect(rule(sha256, relabelled(0x80000004)).ok).toBe(true);
    });

    it.each([
      ["EV_EFI_BOOT_SERVICES_DRIVER", 0x80000004],
      ["EV_EFI_ACTION (data not hashing to the digest)", 0x80000007],
      ["EV_POST_CODE", 0x00000001],
      ["an undefined type", 0x12345678],
    ])("an unlisted boot application relabelled as %s still fails", (_, type) => {
      const d = rule([sha256[0]!], relabelled(type));
      expect(d.results.find((r) => r.rule === "eventlog.replay")?.status).toBe("pass");
      expect(d).toMatchObject({ ok: false, deny: "eventlog_mismatch", rule: "eventlog.boot_applications" });
      expect(d.results.find((r) => r.rule === "eventlog.boot_applications")?.detail).toContain(`event 27 `);
      expect(d.results.find((r) => r.rule === "eventlog.boot_applications")?.detail).not.toContain(
        `event 23 `,
      );
    });

    it("a separator or action is passed only when its digest is the hash of its short data", () => {
      // The EV_EFI_ACTION at seq 14 given grub's digest: its data no longer hashes to it.
      const grub = log.events.find((e) => e.seq === 27)!;
      const forged = {
        ...log,
        events: log.events.map((e) =>
          e.seq === 14
            ? { ...e, digests: grub.digests }
            : e.seq === 27
              ? { ...e, digests: log.events.find((x) => x.seq === 14)!.digests }
              : e,
        ),
      };
      const facts = eventLogFacts(forged).bootPath;
      expect(facts.map((e) => [e.seq, e.type, e.plainData])).toEqual([
        [14, "EV_EFI_ACTION", false],
        [19, "EV_SEPARATOR", true],
        [23, "EV_EFI_BOOT_SERVICES_APPLICATION", false],
        [27, "EV_EFI_BOOT_SERVICES_APPLICATION", false],
      ]);
    });
  });

  it("facts from a PCR the quote does not cover are not trusted", () => {
    const d = evaluateIntegrity(
      { ...noRules, eventlog: { ...el, pcrs: undefined } },
      { pcrs: { sha1: { "0": winPcrs.sha1["0"]! } }, eventlog: winLog },
    );
    expect(d).toMatchObject({ ok: false, deny: "eventlog_mismatch", rule: "eventlog.secure_boot" });
    expect(d.results.find((r) => r.rule === "eventlog.secure_boot")?.detail).toBe(
      "PCR 7 is not covered by the quote",
    );
  });

  it("the ExitBootServices quirk is reported when it was needed", () => {
    const log = parseEventLog(bin("eventlog/go-attestation/ebs_event_missing_eventlog"));
    const pcr5 = JSON.parse(txt("eventlog/go-attestation/expected/ebs_event_missing_eventlog.pcr5.json")).pcrs
      .sha1["5"];
    const d = evaluateIntegrity(
      {
        ...noRules,
        eventlog: { secureBoot: undefined, bootApplications: undefined, requiredDbx: [], pcrs: [5] },
      },
      { pcrs: { sha1: { "5": pcr5 } }, eventlog: log },
    );
    expect(d.ok).toBe(true);
    expect(d.eventlogQuirks).toEqual(["ebs_events_missing"]);
  });
});

describe("evaluateIntegrity: IMA", () => {
  const entries = parseImaList(bin("ima/keylime/test_ima_verification/measurements.txt")).entries;
  const pcr10 = replayIma(entries);
  const allow = buildAllowlist({
    keylimePolicies: [txt("ima/keylime/test_ima_verification/runtime-policy-test.json")],
  });
  const empty = buildAllowlist({});
  const ima = (mode: "enforce" | "observe", allowlist = allow) => ({
    ...noRules,
    ima: { mode, allowlist, bootAggregate: false },
  });

  it("list reproduces PCR 10 and every file is allowed: allow", () => {
    const d = evaluateIntegrity(ima("enforce"), { pcrs: pcr10, ima: { entries } });
    expect(d.ok).toBe(true);
    expect(d.ima?.state.entries).toBe(3);
  });

  it("enforce: a file not on the list is ima_violation; observe: a warning", () => {
    const d = evaluateIntegrity(ima("enforce", empty), { pcrs: pcr10, ima: { entries } });
    expect(d).toMatchObject({ ok: false, deny: "ima_violation", rule: "ima.allowlist" });
    const o = evaluateIntegrity(ima("observe", empty), { pcrs: pcr10, ima: { entries } });
    expect(o.ok).toBe(true);
    expect(o.results.find((r) => r.rule === "ima.allowlist")?.status).toBe("warn");
    expect(o.ima?.violations).toHaveLength(2);
  });

  it("violations from earlier epochs keep denying in enforce mode, naming the files", () => {
    const earlier = { seq: 7, kind: "not_in_allowlist" as const, path: "/tmp/miner", digest: "ab" };
    const d = evaluateIntegrity(ima("enforce"), {
      pcrs: pcr10,
      ima: { entries, priorViolations: { count: 1, first: [earlier] } },
    });
    expect(d).toMatchObject({
      ok: false,
      deny: "ima_violation",
      detail: "1 files not allowed: /tmp/miner (not_in_allowlist)",
    });
  });

  it("PCR 10 not reproduced, or missing: ima_violation", () => {
    const bad = { sha1: { "10": "11".repeat(20) } };
    expect(evaluateIntegrity(ima("enforce"), { pcrs: bad, ima: { entries } })).toMatchObject({
      ok: false,
      rule: "ima.pcr10",
    });
    expect(evaluateIntegrity(ima("enforce"), { pcrs: {}, ima: { entries } })).toMatchObject({
      ok: false,
      rule: "ima.pcr10",
    });
    expect(evaluateIntegrity(ima("enforce"), { pcrs: pcr10 })).toMatchObject({
      ok: false,
      rule: "ima.pcr10",
    });
  });

  it("a list ahead of the quote: only the covered prefix is checked, the rest is pending", () => {
    const quoted = replayIma(entries.slice(0, 1));
    const d = evaluateIntegrity(ima("enforce", empty), { pcrs: quoted, ima: { entries } });
    expect(d.ok).toBe(true); // boot_aggregate only: nothing to allowlist yet
    expect(d.ima?.pending).toHaveLength(2);
    expect(d.ima?.state.entries).toBe(1);
  });

  it("boot_aggregate is checked against PCRs 0-9 of the sha256 bank", () => {
    const list = parseImaList(bin("ima/ima-evm-utils/sample-ascii_runtime_measurements-pcrs-8-9")).entries;
    const log = parseEventLog(bin("eventlog/ima-evm-utils/sample-binary_bios_measurements-pcrs-8-9"));
    const pcrs = { ...replayToPcrValues(replayEventLog(log)), sha1: replayIma(list, ["sha1"]).sha1 ?? {} };
    const policy = {
      ...noRules,
      ima: { mode: "enforce" as const, allowlist: undefined, bootAggregate: true },
    };
    const d = evaluateIntegrity(policy, { pcrs, ima: { entries: list } });
    expect(d.ok).toBe(true);
    expect(d.results.map((r) => [r.rule, r.status])).toEqual([
      ["ima.pcr10", "pass"],
      ["ima.boot_aggregate", "pass"],
      ["ima.allowlist", "skip"],
    ]);
    const bad = { ...pcrs, sha256: { ...pcrs.sha256, "8": "00".repeat(32) } };
    expect(evaluateIntegrity(policy, { pcrs: bad, ima: { entries: list } })).toMatchObject({
      ok: false,
      deny: "ima_violation",
      rule: "ima.boot_aggregate",
    });
  });

  it("boot_aggregate is judged once, and its verdict kept: a failure fails every later epoch while the policy checks it", () => {
    const list = parseImaList(bin("ima/ima-evm-utils/sample-ascii_runtime_measurements-pcrs-8-9")).entries;
    const log = parseEventLog(bin("eventlog/ima-evm-utils/sample-binary_bios_measurements-pcrs-8-9"));
    const good = { ...replayToPcrValues(replayEventLog(log)), sha1: replayIma(list, ["sha1"]).sha1 ?? {} };
    const pcrs = { ...good, sha256: { ...good.sha256, "8": "00".repeat(32) } };
    const checks = (bootAggregate: boolean) => ({
      ...noRules,
      ima: { mode: "enforce" as const, allowlist: undefined, bootAggregate },
    });
    // The first epoch covers the first entry: judged even when the policy does not ask.
    const first = evaluateIntegrity(checks(false), { pcrs, ima: { entries: list.slice(0, 1) } });
    expect(first.ok).toBe(true);
    const verdict = first.ima?.bootAggregate;
    expect(verdict).toMatchObject({ ok: false });
    // A later epoch (nothing new measured): the kept verdict fails it under a policy that checks.
    const later = { state: first.ima!.state, entries: list.slice(1) };
    expect(
      evaluateIntegrity(checks(true), { pcrs, ima: { ...later, bootAggregate: verdict! } }),
    ).toMatchObject({
      ok: false,
      deny: "ima_violation",
      rule: "ima.boot_aggregate",
      detail: `${verdict!.detail} (earlier epoch)`,
    });
    expect(evaluateIntegrity(checks(false), { pcrs, ima: { ...later, bootAggregate: verdict! } }).ok).toBe(
      true,
    );
  });
});
