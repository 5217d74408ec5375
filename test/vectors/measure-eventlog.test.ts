import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { ExecgateError } from "../../src/core/errors.js";
import { eventLogFacts } from "../../src/measure/eventlog-decode.js";
import { parseEventLog } from "../../src/measure/eventlog-parse.js";
import { compareWithQuote, replayEventLog, replayToPcrValues } from "../../src/measure/eventlog-replay.js";
import type { PcrHexValues } from "../../src/measure/hash.js";
import { corpusPath } from "../helpers/corpus.js";

// test/corpus/eventlog (provenance and expected results in its MANIFEST.md). A missing file fails.
const CORPUS = corpusPath("eventlog");
const read = (p: string) => new Uint8Array(readFileSync(join(CORPUS, p)));
const json = (p: string) => JSON.parse(readFileSync(join(CORPUS, p), "utf8")) as Record<string, unknown>;

type Oracle = { source: string; pcrs: Record<string, Record<string, string>> };

/** The final `pcrs:` section of a tpm2_eventlog YAML fixture. */
function yamlPcrs(p: string): Record<string, Record<string, string>> {
  const text = readFileSync(join(CORPUS, p), "utf8");
  const at = text.lastIndexOf("\npcrs:");
  expect(at).toBeGreaterThan(0);
  const out: Record<string, Record<string, string>> = {};
  let bank = "";
  for (const line of text.slice(at + 6).split("\n")) {
    const b = /^ {2}(\w+):\s*$/.exec(line);
    if (b) {
      bank = b[1]!;
      out[bank] = {};
      continue;
    }
    const v = /^ {4}(\d+)\s*:\s*0x([0-9a-f]+)\s*$/.exec(line);
    if (v && bank) out[bank]![v[1]!] = v[2]!;
  }
  return out;
}

function tssPcrDump(p: string): Record<string, Record<string, string>> {
  const sha1: Record<string, string> = {};
  for (const line of readFileSync(join(CORPUS, p), "utf8").split("\n")) {
    const m = /^(\d+): ([0-9a-f]+)$/.exec(line.trim());
    if (m) sha1[m[1]!] = m[2]!;
  }
  return { sha1 };
}

const goTpmTools = readdirSync(join(CORPUS, "go-tpm-tools/expected")).map((f) => ({
  log: `go-tpm-tools/${f.replace(/\.expected\.json$/, "")}`,
  oracle: `go-tpm-tools/expected/${f}`,
}));

/** Every log with an upstream PCR oracle: the replay must give exactly these values. */
const ORACLES: {
  log: string;
  source: string;
  pcrs: () => Record<string, Record<string, string>>;
  only?: number[];
}[] = [
  ...goTpmTools.map((g) => ({
    log: g.log,
    source: g.oracle,
    pcrs: () => (json(g.oracle) as unknown as Oracle).pcrs,
  })),
  {
    log: "go-attestation/option_rom_eventlog",
    source: "go-attestation/expected/option_rom_eventlog.pcrs.json",
    pcrs: () => (json("go-attestation/expected/option_rom_eventlog.pcrs.json") as unknown as Oracle).pcrs,
  },
  {
    log: "go-attestation/windows_gcp_shielded_vm.eventlog.bin",
    source: "go-attestation/expected/windows_gcp_shielded_vm.pcrs.json (PCRs the log touches)",
    pcrs: () => (json("go-attestation/expected/windows_gcp_shielded_vm.pcrs.json") as unknown as Oracle).pcrs,
    only: [0, 4, 5, 7, 11, 12, 13, 14],
  },
  ...[
    "event-arch-linux",
    "event-bootorder",
    "event-postcode",
    "event-uefi-sha1-log",
    "event-uefiaction",
    "event-uefivar",
  ].map((n) => ({
    log: `tpm2-tools/${n}.bin`,
    source: `tpm2-tools/event-raw/${n}.bin.yaml`,
    pcrs: () => yamlPcrs(`tpm2-tools/event-raw/${n}.bin.yaml`),
  })),
  ...["event-arch-linux", "event-bootorder", "event-postcode", "event-uefi-sha1-log"].map((n) => ({
    log: `tpm2-tools/${n}.bin`,
    source: `tpm2-tools/event-pretty-39/${n}.bin.yaml`,
    pcrs: () => yamlPcrs(`tpm2-tools/event-pretty-39/${n}.bin.yaml`),
  })),
  {
    log: "tpm2-tools/event.bin",
    source: "tpm2-tools/event-raw/event.bin.yaml",
    pcrs: () => yamlPcrs("tpm2-tools/event-raw/event.bin.yaml"),
  },
  {
    log: "go-tpm-tools/ubuntu-2104-no-dbx.bin",
    source: "tpm2-tools/event-raw/event-gce-ubuntu-2104-log.bin.yaml",
    pcrs: () => yamlPcrs("tpm2-tools/event-raw/event-gce-ubuntu-2104-log.bin.yaml"),
  },
  {
    log: "tpm2-tss/binary_measurements_hcrtm.bin",
    source: "tpm2-tss/expected/binary_measurements_hcrtm.pcr0.json",
    pcrs: () => (json("tpm2-tss/expected/binary_measurements_hcrtm.pcr0.json") as unknown as Oracle).pcrs,
  },
  {
    log: "ima-evm-utils/sample-binary_bios_measurements-pcrs-8-9",
    source: "ima-evm-utils/sample-tpm-2.0-pcrs-8-9 (SHA-1 PCR 0-9, 14)",
    pcrs: () => tssPcrDump("ima-evm-utils/sample-tpm-2.0-pcrs-8-9"),
    only: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14],
  },
];

describe("event log corpus: upstream PCR oracles", () => {
  it.each(ORACLES)("$log replays to $source", ({ log, pcrs, only }) => {
    const parsed = parseEventLog(read(log));
    const got = replayToPcrValues(replayEventLog(parsed));
    const want = pcrs();
    let compared = 0;
    for (const [bank, values] of Object.entries(want)) {
      for (const [idx, hex] of Object.entries(values)) {
        if (only && !only.includes(Number(idx))) continue;
        expect(got[bank as keyof PcrHexValues]?.[idx], `${bank} PCR ${idx}`).toBe(hex.toLowerCase());
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(0);
  });
});

describe("event log corpus: go-tpm-tools EFI application digests", () => {
  it.each(goTpmTools)("$log", ({ log, oracle }) => {
    const want = (json(oracle).expectedEFIAppDigests ?? {}) as Record<string, string[]>;
    const facts = eventLogFacts(parseEventLog(read(log)));
    for (const [bank, digests] of Object.entries(want)) {
      const got = facts.bootApplications
        .filter((a) => a.pcrIndex === 4)
        .map((a) => a.digests[bank as "sha1"])
        .filter((d) => d !== undefined);
      expect(got.slice(0, digests.length)).toEqual(digests);
    }
  });
});

describe("event log corpus: quirks", () => {
  it("ebs_event_missing_eventlog matches PCR 5 only with the ExitBootServices quirk, and says so", () => {
    const log = parseEventLog(read("go-attestation/ebs_event_missing_eventlog"));
    const oracle = json("go-attestation/expected/ebs_event_missing_eventlog.pcr5.json") as unknown as Oracle;
    const plain = replayToPcrValues(replayEventLog(log));
    expect(plain.sha1?.["5"]).toBe("e5781a2fd49c23a33b16bf0ba5f10efa1aa5d43c");
    const r = compareWithQuote(log, { sha1: oracle.pcrs.sha1! }, [5]);
    expect(r.ok).toBe(true);
    expect(r.quirks).toEqual(["ebs_events_missing"]);
  });

  it("a quirk is not applied when it does not make the replay match", () => {
    const log = parseEventLog(read("go-attestation/ebs_event_missing_eventlog"));
    const r = compareWithQuote(log, { sha1: { "5": "00".repeat(20) } }, [5]);
    expect(r.ok).toBe(false);
    expect(r.quirks).toEqual([]);
    expect(r.mismatches).toHaveLength(1);
  });

  it("a log that already matches uses no quirk", () => {
    const log = parseEventLog(read("go-tpm-tools/debian-10.bin"));
    const oracle = json("go-tpm-tools/expected/debian-10.bin.expected.json") as unknown as Oracle;
    const r = compareWithQuote(log, oracle.pcrs);
    expect(r).toMatchObject({ ok: true, quirks: [] });
    // go-tpm-tools TestParseMachineStateFail: a wrong PCR 0 must fail.
    const bad = compareWithQuote(log, { sha1: { ...oracle.pcrs.sha1, "0": "00".repeat(20) } });
    expect(bad.ok).toBe(false);
    expect(bad.mismatches.map((m) => m.pcr)).toEqual([0]);
  });
});

describe("event log corpus: facts", () => {
  it("windows_gcp_shielded_vm: Secure Boot on", () => {
    expect(
      eventLogFacts(parseEventLog(read("go-attestation/windows_gcp_shielded_vm.eventlog.bin"))).secureBoot,
    ).toBe(true);
  });
  it("option_rom_eventlog: Secure Boot on, authority events present", () => {
    const f = eventLogFacts(parseEventLog(read("go-attestation/option_rom_eventlog")));
    expect(f.secureBoot).toBe(true);
    expect(f.authorities.length).toBeGreaterThanOrEqual(2);
  });
  it("arch-linux-workstation: empty SecureBoot variable is not Secure Boot", () => {
    expect(eventLogFacts(parseEventLog(read("go-tpm-tools/arch-linux-workstation.bin"))).secureBoot).toBe(
      false,
    );
  });
  it("ubuntu-2104-no-secure-boot: Secure Boot off", () => {
    expect(eventLogFacts(parseEventLog(read("go-tpm-tools/ubuntu-2104-no-secure-boot.bin"))).secureBoot).toBe(
      false,
    );
  });
  it.each(["tpm2-tools/event-arch-linux.bin", "go-tpm-tools/arch-linux-workstation.bin"])(
    "%s: event 24's digest does not match its payload (tpm2-tools event-arch-linux.bin.warn)",
    (l) => {
      expect(readFileSync(join(CORPUS, "tpm2-tools/event-arch-linux.bin.warn"), "utf8")).toContain(
        "Event 24's digest",
      );
      const f = eventLogFacts(parseEventLog(read(l)));
      expect(f.digestMismatches).toEqual([{ seq: 24, pcr: 8, type: "EV_IPL" }]);
      expect(f.ipl).toEqual([]);
    },
  );
  it("short_no_action_eventlog: StartupLocality 3 sets PCR 0's initial value", () => {
    const log = parseEventLog(read("go-attestation/short_no_action_eventlog"));
    expect(log).toMatchObject({ format: "sha1-legacy", startupLocality: 3 });
    expect(log.events).toHaveLength(1);
    expect(replayToPcrValues(replayEventLog(log)).sha1?.["0"]).toBe(`${"00".repeat(19)}03`);
  });
  it("tpm2-tss specid-vendordata: Spec ID with vendor info, no measurements", () => {
    const log = parseEventLog(read("tpm2-tss/specid-vendordata.bin"));
    expect(log.specId?.vendorInfo.length).toBe(4);
    expect(log.events).toHaveLength(1);
  });
});

/** Every log in the corpus: the DERIVED replay (secondary evidence), format, event count. */
const derived = json("DERIVED-replay-pcrs.json").logs as Record<
  string,
  { facts: Record<string, unknown>; replayedPCRs: Record<string, Record<string, string>> | null }
>;

const MUST_FAIL: Record<string, string> = {
  // 34 bytes of garbage: the first event's size field is absurd.
  "keylime/binary_bios_measurements-bogus": "limit_exceeded",
  "keylime/binary_bios_measurements-empty": "malformed",
  // Deliberate: its EventSize omits the 4 vendorInfo bytes (tpm2-tools accepts it).
  "tpm2-tools/specid-vendordata.bin": "truncated",
};

function allLogs(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) {
        if (f !== "expected" && f !== "event-raw" && f !== "event-pretty-39") walk(p);
      } else if (!/\.(json|md|yaml|warn)$/.test(f) && f !== "sample-tpm-2.0-pcrs-8-9") {
        out.push(relative(CORPUS, p));
      }
    }
  };
  walk(CORPUS);
  return out.sort();
}

describe("event log corpus: every log", () => {
  const logs = allLogs();
  it("covers the whole corpus and the DERIVED file lists each log", () => {
    expect(logs.length).toBeGreaterThanOrEqual(37);
    expect(logs.sort()).toEqual(Object.keys(derived).sort());
  });

  it.each(logs.filter((l) => !(l in MUST_FAIL)))("%s parses and matches DERIVED-replay-pcrs.json", (l) => {
    const log = parseEventLog(read(l));
    const d = derived[l]!;
    expect(log.format).toBe(d.facts.format);
    expect(log.events.length).toBe(d.facts.events);
    expect(log.startupLocality).toBe(d.facts.StartupLocality);
    const facts = eventLogFacts(log);
    const crtm = d.facts["S-CRTM version"] as string | undefined;
    // binary versions: DERIVED shows a prefix of the bytes, we show all of them
    if (crtm !== undefined) expect(facts.scrtmVersion?.startsWith(crtm)).toBe(true);
    if ("SecureBoot var" in d.facts) expect(facts.secureBoot).toBe(d.facts["SecureBoot var"] === "01");
    else expect(facts.secureBoot).toBeNull();
    expect(log.hcrtm).toBe(d.facts["H-CRTM event"] === true);
    expect(log.sp800155Events).toBe(d.facts["SP800-155 events"] ?? 0);
    const got = replayToPcrValues(replayEventLog(log));
    for (const [bank, values] of Object.entries(d.replayedPCRs ?? {})) {
      if (Object.keys(values).length === 0) continue;
      expect(got[bank as keyof PcrHexValues], bank).toEqual(values);
    }
  });

  it.each(Object.entries(MUST_FAIL))("%s is rejected with a typed error (%s)", (l, code) => {
    let err: unknown;
    try {
      parseEventLog(read(l));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ExecgateError);
    expect((err as ExecgateError).code).toBe(code);
    expect(typeof (err as ExecgateError).detail.offset).toBe("number");
  });

  it.each(allLogs().filter((l) => l.startsWith("ibmtss/")))(
    "%s: every data-defined digest verifies (IBM TSS eventextend -checkhash)",
    (l) => {
      expect(eventLogFacts(parseEventLog(read(l))).digestMismatches).toEqual([]);
    },
  );
});
